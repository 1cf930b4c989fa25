"""Provider presets: every one validates, explicit keys win, and the quirks they encode
match what captured provider answers show."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from llmrelay import presets
from llmrelay.config import AnthropicProvider, ChatGPTProvider, ClaudeCliProvider, OpenAIProvider, parse_config
from llmrelay.presets import PRESETS, apply, clean_schema, for_cli, schema_drops

FIXTURES = Path(__file__).parent / "fixtures"
CHAT = FIXTURES / "openai-chat"
GEMINI_DROPS = schema_drops({"preset": "gemini"})
KEY_ENVS = sorted({p["key_env"] for p in PRESETS.values() if "key_env" in p})


@pytest.fixture
def keys(monkeypatch):
    for name in KEY_ENVS:
        monkeypatch.setenv(name, f"fake-{name.lower()}-for-tests")


def load(preset: str, **given):
    raw = {"p": {"preset": preset, **given}}
    return parse_config({"providers": apply(raw), "models": {"default": {"provider": "p", "model": "m"}}})


def chat(name: str) -> dict:
    return json.loads((CHAT / f"{name}.json").read_text(encoding="utf-8"))


def walk(node, found: set[str], parent: str | None = None) -> set[str]:
    """Every keyword used at a schema position (property names excluded)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if parent != "properties":
                found.add(key)
            walk(value, found, key)
    elif isinstance(node, list):
        for item in node:
            walk(item, found, parent)
    return found


# --- every preset --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_validates(name, keys) -> None:
    given = {"base_url": "https://res.openai.azure.com/openai/v1"} if name == "azure" else {}
    provider = load(name, **given).providers["p"]
    preset = PRESETS[name]
    assert provider.type == preset["type"]
    for key, value in preset.items():
        if key not in ("key_env", "type", "base_url"):
            assert getattr(provider, key) == value, key
    if "key_env" in preset:
        assert provider.key == f"fake-{preset['key_env'].lower()}-for-tests"
    else:
        assert provider.key is None


def test_the_expected_presets_exist() -> None:
    assert {"openai", "azure", "xai", "deepseek", "kimi", "glm", "minimax", "qwen", "nvidia", "ollama",
            "lmstudio", "openrouter", "gemini", "mistral", "groq", "together", "fireworks", "cerebras",
            "siliconflow", "chatgpt", "kimi-anthropic", "deepseek-anthropic", "glm-anthropic",
            "minimax-anthropic"} <= set(PRESETS)


def test_no_preset_holds_a_key() -> None:
    assert not [name for name, p in PRESETS.items() if "api_key" in p]


def test_types(keys) -> None:
    assert isinstance(load("deepseek").providers["p"], OpenAIProvider)
    assert isinstance(load("kimi-anthropic").providers["p"], AnthropicProvider)
    assert isinstance(load("chatgpt").providers["p"], ChatGPTProvider)
    assert isinstance(load("claude-cli").providers["p"], ClaudeCliProvider)


# --- apply -----------------------------------------------------------------------------------


def test_apply_fills_the_key_as_a_variable_reference() -> None:
    assert apply({"ds": {"preset": "deepseek"}}) == {"ds": {
        "type": "openai",
        "base_url": "https://api.deepseek.com",
        "reasoning": "thinking",
        "reasoning_history": True,
        "max_output_tokens": 8192,
        "api_key": "${DEEPSEEK_API_KEY}",
    }}


def test_no_key_for_local_servers_and_sign_ins() -> None:
    assert "api_key" not in apply({"o": {"preset": "ollama"}})["o"]
    assert apply({"c": {"preset": "chatgpt"}}) == {"c": {"type": "chatgpt"}}
    assert apply({"c": {"preset": "claude-cli"}}) == {"c": {"type": "claude-cli"}}


def test_explicit_keys_win(monkeypatch) -> None:
    monkeypatch.setenv("MY_KEY", "fake-mine-for-tests")
    raw = {"ds": {"preset": "deepseek", "base_url": "https://gw.example.com/v1", "api_key": "${MY_KEY}",
                  "max_output_tokens": 65536, "reasoning_history": False, "headers": {"X-Team": "a"}}}
    expanded = apply(raw)["ds"]
    assert expanded == {"type": "openai", "base_url": "https://gw.example.com/v1", "reasoning": "thinking",
                        "reasoning_history": False, "max_output_tokens": 65536, "api_key": "${MY_KEY}",
                        "headers": {"X-Team": "a"}}
    provider = parse_config({"providers": apply(raw), "models": {"default": {"provider": "ds", "model": "deepseek-reasoner"}}}).providers["ds"]
    assert (provider.host, provider.key, provider.max_output_tokens, provider.echoes_reasoning) == (
        "gw.example.com", "fake-mine-for-tests", 65536, False)


def test_an_explicit_null_key_means_no_key() -> None:
    assert apply({"ds": {"preset": "deepseek", "api_key": None}})["ds"]["api_key"] is None


def test_apply_leaves_other_providers_and_its_input_alone() -> None:
    plain = {"type": "openai", "base_url": "https://api.openai.com/v1"}
    raw = {"plain": plain, "g": {"preset": "groq", "max_output_tokens": 1000}}
    before = copy.deepcopy(raw)
    out = apply(raw)
    assert raw == before
    assert out["plain"] is plain
    assert out["g"]["max_output_tokens"] == 1000 and out["g"]["base_url"] == "https://api.groq.com/openai/v1"
    out["g"]["type"] = "changed"
    assert PRESETS["groq"]["type"] == "openai"


def test_apply_passes_what_is_not_a_mapping_to_validation() -> None:
    assert apply(None) is None
    assert apply({"p": "not a mapping"}) == {"p": "not a mapping"}


@pytest.mark.parametrize("alias, preset", [("moonshot", "kimi"), ("zai", "glm"), ("z.ai", "glm"),
                                           ("dashscope", "qwen"), ("Moonshot", "kimi"), ("DeepSeek", "deepseek")])
def test_aliases_and_case(alias, preset) -> None:
    assert apply({"p": {"preset": alias}}) == apply({"p": {"preset": preset}})


def test_an_alias_expands_to_its_preset_values() -> None:
    assert apply({"k": {"preset": "moonshot"}})["k"]["base_url"] == "https://api.moonshot.ai/v1"
    assert apply({"z": {"preset": "z.ai"}})["z"]["api_key"] == "${ZAI_API_KEY}"
    assert apply({"q": {"preset": "dashscope"}})["q"]["max_output_tokens"] == 65536


def test_unknown_preset() -> None:
    with pytest.raises(ValueError) as e:
        apply({"mine": {"preset": "deepsek"}})
    message = str(e.value)
    assert message.startswith("providers.mine.preset: unknown preset 'deepsek' (known: azure, cerebras, chatgpt,")
    assert "deepseek, deepseek-anthropic," in message and message.endswith("xai)")


def test_a_different_type_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^providers.ds.type: preset 'deepseek' is of type 'openai'; "
                                         r"use a preset of type 'anthropic', or no preset$"):
        apply({"ds": {"preset": "deepseek", "type": "anthropic"}})
    assert apply({"ds": {"preset": "deepseek", "type": "openai"}})["ds"]["type"] == "openai"


def test_azure_needs_the_resource_url() -> None:
    with pytest.raises(ValueError, match=r"^providers.az.base_url: the azure preset needs your resource's endpoint"):
        apply({"az": {"preset": "azure"}})
    assert "YOUR-RESOURCE" in PRESETS["azure"]["base_url"]


def test_azure_foundry_hosts_get_max_completion_tokens(keys) -> None:
    provider = load("azure", base_url="https://name.services.ai.azure.com/openai/v1").providers["p"]
    assert provider.output_field == "max_completion_tokens"


def test_an_unset_key_variable_stops_start_up(monkeypatch) -> None:
    from llmrelay.config import ConfigError

    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"^config: providers.p.api_key: environment variable GROQ_API_KEY is not set$"):
        load("groq")


# --- for_cli ---------------------------------------------------------------------------------


def test_for_cli(keys) -> None:
    data = for_cli("deepseek", "deepseek-chat")
    assert data == {"providers": {"deepseek": apply({"x": {"preset": "deepseek"}})["x"]},
                    "models": {"default": {"provider": "deepseek", "model": "deepseek-chat"}}}
    config = parse_config(data)
    assert config.route("claude-sonnet-4-5").model == "deepseek-chat"
    assert config.providers["deepseek"].key == "fake-deepseek_api_key-for-tests"


def test_for_cli_resolves_aliases_and_sign_ins() -> None:
    assert list(for_cli("moonshot", "kimi-k2")["providers"]) == ["kimi"]
    config = parse_config(for_cli("chatgpt", "gpt-5.4"))
    assert config.providers["chatgpt"].account == "chatgpt"


def test_for_cli_errors() -> None:
    with pytest.raises(ValueError, match=r"^--preset: unknown preset 'nope' \(known: "):
        for_cli("nope", "m")
    with pytest.raises(ValueError, match=r"^--preset azure: needs base_url, which only a config file can give$"):
        for_cli("azure", "gpt-4.1")
    with pytest.raises(ValueError, match=r"^--model: "):
        for_cli("groq", " ")


# --- quirks, against captured answers --------------------------------------------------------


@pytest.mark.parametrize("preset, fixture", [
    ("deepseek", "deepseek-reasoning-stream"),
    ("gemini", "gemini-tool-call-empty-id-no-index-json"),
    ("groq", "groq-kimi-k2-parallel-whole-tool-calls-stream"),
    ("glm", "zai-glm-4.7-reasoning-no-finish-key-stream"),
    ("openai", "openai-gpt-4o-parallel-tools-stream"),
    ("openrouter", "openrouter-o3-encrypted-reasoning-stream"),
    ("xai", "xai-grok-4-text-after-tools-stream"),
    ("mistral", "mistral-magistral-thinking-parts-stream"),
])
def test_base_urls_are_the_captured_ones(preset, fixture) -> None:
    url = chat(fixture)["url"].partition("#")[0]
    assert PRESETS[preset]["base_url"] + "/chat/completions" == url


def test_local_ollama_is_the_captured_port_and_path() -> None:
    captured = urlsplit(chat("ollama-qwen3-reasoning-field-json")["url"])
    preset = urlsplit(PRESETS["ollama"]["base_url"] + "/chat/completions")
    assert (preset.port, preset.path) == (captured.port, captured.path) == (11434, "/v1/chat/completions")


def test_deepseek_answers_carry_reasoning_content(keys) -> None:
    assert load("deepseek").providers["p"].echoes_reasoning is True
    stream = chat("deepseek-reasoning-stream")["body"]
    assert '"reasoning_content":"H"' in stream
    message = json.loads(chat("deepseek-reasoning-tool-json")["body"])["choices"][0]["message"]
    assert message["content"] == "" and message["reasoning_content"].startswith("The user is asking for the weather")
    assert message["tool_calls"][0]["function"]["name"] == "weather"


def test_kimi_answers_carry_reasoning_content_and_clients_send_it_back(keys) -> None:
    assert load("kimi").providers["p"].echoes_reasoning is True
    # A gateway URL keeps it: the preset says so, not the host.
    assert load("kimi", base_url="https://api.avian.io/v1").providers["p"].echoes_reasoning is True
    assert '"reasoning_content": "I"' in chat("kimi-k2.5-reasoning-single-tool-stream")["body"]
    follow_up = chat("kimi-k2.5-text-after-single-tool-stream")["request"]
    assistant = next(m for m in follow_up["messages"] if m["role"] == "assistant")
    assert assistant["tool_calls"] and assistant["reasoning_content"]


def test_glm_accepts_thinking_enabled() -> None:
    captured = chat("zai-glm-4.7-reasoning-no-finish-key-stream")
    assert captured["status"] == 200 and captured["request"]["thinking"]["type"] == "enabled"
    assert "reasoning_content" in captured["body"]
    assert PRESETS["glm"]["reasoning"] == "thinking"


def test_xai_takes_effort_only_where_a_route_asks() -> None:
    assert PRESETS["xai"]["reasoning"] == "none"
    assert chat("xai-grok-3-mini-reasoning-text-stream")["request"]["reasoning_effort"] == "high"
    assert "reasoning_effort" not in chat("xai-grok-4-text-after-tools-stream")["request"]


def test_output_caps() -> None:
    caps = {name: p.get("max_output_tokens") for name, p in PRESETS.items()}
    assert (caps["deepseek"], caps["deepseek-anthropic"], caps["groq"], caps["cerebras"], caps["qwen"], caps["gemini"]) == (
        8192, 8192, 16384, 16384, 65536, 65535)
    assert PRESETS["cerebras"]["max_tokens_field"] == "max_completion_tokens"


def test_anthropic_endpoints() -> None:
    want = {
        "kimi-anthropic": ("https://api.moonshot.ai/anthropic", "bearer", ["context_management", "output_config"], "all"),
        "deepseek-anthropic": ("https://api.deepseek.com/anthropic", "x-api-key", ["context_management"], []),
        "glm-anthropic": ("https://api.z.ai/api/anthropic", "bearer", ["context_management", "output_config"], "all"),
        "minimax-anthropic": ("https://api.minimax.io/anthropic", "bearer", ["context_management", "output_config"], "all"),
    }
    for name, (base_url, auth, fields, betas) in want.items():
        p = PRESETS[name]
        assert (p["base_url"], p["auth"], p["drop_fields"], p["drop_betas"]) == (base_url, auth, fields, betas), name
        assert p["strip_cache_ttl"] is True and p["count_tokens"] is False, name


# --- tool schemas ------------------------------------------------------------------------------


def test_schema_drops_by_preset_host_or_provider(keys) -> None:
    assert GEMINI_DROPS == presets.SCHEMA_DROPS["gemini"]
    assert "$schema" in GEMINI_DROPS and "additionalProperties" in GEMINI_DROPS
    assert schema_drops({"preset": "google-nope"}) == ()
    assert schema_drops({"type": "openai", "base_url": "https://generativelanguage.googleapis.com/v1beta/openai/"}) == GEMINI_DROPS
    assert schema_drops(load("gemini").providers["p"]) == GEMINI_DROPS
    assert schema_drops(load("deepseek").providers["p"]) == ()
    assert schema_drops({"base_url": None}) == () and schema_drops(object()) == ()


def test_clean_schema_nested() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "format": {"type": "string", "format": "uri", "description": "a property called format"},
            "additionalProperties": {"type": "boolean"},
            "when": {"type": "string", "format": "date-time"},
            "count": {"type": "integer", "format": "int32", "exclusiveMinimum": 0},
            "items": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "string"},
                                                 "properties": {"const": {"const": "x", "type": "string"}}}},
            "either": {"anyOf": [{"type": "string", "format": "email"}, {"type": "null"}]},
            "mode": {"type": "string", "enum": ["a", "b"], "default": "a", "examples": ["a"]},
            "data": {"type": "object", "default": {"format": "kept: a value, not a schema"}},
        },
        "required": ["format", "items"],
    }
    before = copy.deepcopy(schema)
    assert clean_schema(schema, GEMINI_DROPS) == {
        "type": "object",
        "properties": {
            "format": {"type": "string", "description": "a property called format"},
            "additionalProperties": {"type": "boolean"},
            "when": {"type": "string", "format": "date-time"},
            "count": {"type": "integer", "format": "int32"},
            "items": {"type": "array", "items": {"type": "object", "properties": {"const": {"type": "string"}}}},
            "either": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
            "data": {"type": "object", "default": {"format": "kept: a value, not a schema"}},
        },
        "required": ["format", "items"],
    }
    assert schema == before


def test_clean_schema_without_drops_is_a_copy() -> None:
    schema = {"type": "object", "$schema": "x", "properties": {"a": {"type": "string"}}}
    cleaned = clean_schema(schema, ())
    assert cleaned == schema and cleaned is not schema and cleaned["properties"] is not schema["properties"]


def test_the_gemini_capture_sent_additional_properties() -> None:
    captured = chat("gemini-tool-call-empty-id-no-index-json")
    assert captured["url"] == "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"
    parameters = captured["request"]["tools"][0]["function"]["parameters"]
    assert parameters == {"additionalProperties": False, "properties": {}, "type": "object"}
    assert clean_schema(parameters, GEMINI_DROPS) == {"properties": {}, "type": "object"}


def test_claude_code_tool_schemas_for_gemini() -> None:
    request = json.loads((FIXTURES / "anthropic" / "requests" / "claude-code-default.json").read_text(encoding="utf-8"))
    tools = {tool["name"]: tool["input_schema"] for tool in request["tools"]}
    before = walk([s for s in tools.values()], set())
    assert {"$schema", "additionalProperties", "exclusiveMinimum"} <= before

    cleaned = {name: clean_schema(schema, GEMINI_DROPS) for name, schema in tools.items()}
    after = walk(list(cleaned.values()), set())
    assert not after & {"$schema", "additionalProperties", "exclusiveMinimum", "const", "propertyNames"}
    assert after == before - {"$schema", "additionalProperties", "exclusiveMinimum"}

    edit = tools["Edit"]
    assert cleaned["Edit"] == {key: value for key, value in edit.items() if key not in ("$schema", "additionalProperties")}
    assert cleaned["Read"]["properties"]["limit"] == {
        "description": "The number of lines to read. Only provide if the file is too large to read at once.",
        "type": "integer",
        "maximum": 9007199254740991,
    }
    assert cleaned["DeferredToolPlaceholder"] == {"type": "object", "properties": {}}
    # Property names are never keywords: Workflow has properties called title and description.
    assert set(cleaned["Workflow"]["properties"]) == set(tools["Workflow"]["properties"])


def test_claude_code_uri_format_is_dropped_for_gemini() -> None:
    request = json.loads((FIXTURES / "anthropic" / "requests" / "claude-code-bench.json").read_text(encoding="utf-8"))
    fetch = next(tool["input_schema"] for tool in request["tools"] if tool["name"] == "WebFetch")
    assert fetch["properties"]["url"] == {"description": "The URL to fetch content from", "type": "string", "format": "uri"}
    assert clean_schema(fetch, GEMINI_DROPS)["properties"]["url"] == {"description": "The URL to fetch content from", "type": "string"}
