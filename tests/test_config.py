"""config.yaml: parsing, routing, and errors that name the file and key but never a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrelay.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).parent.parent


def config(**models):
    return parse_config(
        {
            "providers": {"openai": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key": "sk-secret-value-1"}},
            "models": {"default": {"provider": "openai", "model": "gpt-4.1"}, **models},
        }
    )


def test_the_shipped_config_loads(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    loaded = load_config(ROOT / "config.yaml")
    assert loaded.route("claude-haiku-4-5-20251001").model == "gpt-4.1-mini"


def test_routing_exact_then_longest_prefix_then_default() -> None:
    c = config(
        routes={
            "claude-haiku": {"provider": "openai", "model": "short-prefix"},
            "claude-haiku-4-5": {"provider": "openai", "model": "long-prefix"},
            "claude-haiku-4-5-20251001": {"provider": "openai", "model": "exact"},
        }
    )
    assert c.route("claude-haiku-4-5-20251001").model == "exact"
    assert c.route("claude-haiku-4-5-20990101").model == "long-prefix"
    assert c.route("claude-haiku-3").model == "short-prefix"
    assert c.route("claude-opus-4-1").model == "gpt-4.1"


def test_force_sends_everything_to_default() -> None:
    c = config(routes={"claude-haiku": {"provider": "openai", "model": "mini"}}, force=True)
    assert c.route("claude-haiku-4-5").model == "gpt-4.1"


def test_environment_interpolation(monkeypatch) -> None:
    monkeypatch.setenv("RELAY_TEST_KEY", "sk-from-env-123")
    c = parse_config(
        {
            "providers": {"p": {"type": "openai", "base_url": "${RELAY_TEST_URL:-http://127.0.0.1:1234/v1}", "api_key": "${RELAY_TEST_KEY}"}},
            "models": {"default": {"provider": "p", "model": "m"}},
        }
    )
    assert c.providers["p"].key == "sk-from-env-123"
    assert c.providers["p"].base_url == "http://127.0.0.1:1234/v1"
    assert "sk-from-env-123" not in repr(c)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("providers: {}\nmodels: {default: {provider: nope, model: m}}\n", "models.default.provider: unknown provider 'nope'"),
        (
            "providers: {p: {type: openai, base_url: ftp://x, api_key: sk-do-not-print-me}}\nmodels: {default: {provider: p, model: m}}\n",
            "providers.p.base_url: must be an http:// or https:// URL",
        ),
        (
            "providers: {p: {type: openai, base_url: http://x, api_kye: sk-do-not-print-me}}\nmodels: {default: {provider: p, model: m}}\n",
            "providers.p.api_kye: Extra inputs are not permitted",
        ),
        (
            "providers: {p: {type: openai, base_url: http://x, api_key: '${RELAY_UNSET_VAR}'}}\nmodels: {default: {provider: p, model: m}}\n",
            "providers.p.api_key: environment variable RELAY_UNSET_VAR is not set",
        ),
        ("providers: {p: {type: gemini, base_url: http://x}}\nmodels: {default: {provider: p, model: m}}\n", "providers.p: Input tag 'gemini' found using 'type'"),
        ("providers: [unclosed\n  api_key: sk-do-not-print-me", "not valid YAML at line"),
        ("just a string", "expected a mapping"),
    ],
)
def test_bad_configs_name_the_file_and_key_and_never_the_secret(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert message.startswith(str(path) + ": ")
    assert expected in message
    assert "sk-do-not-print-me" not in message


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="nowhere.yaml: file not found"):
        load_config("nowhere.yaml")


def test_anthropic_providers_and_passthrough() -> None:
    c = parse_config(
        {
            "providers": {"kimi": {"type": "anthropic", "base_url": "https://api.moonshot.ai/anthropic", "api_key": "sk-k", "auth": "bearer", "drop_betas": "all"}},
            "models": {"default": "passthrough", "routes": {"claude-haiku": {"provider": "kimi", "model": "kimi-k2"}}},
        }
    )
    assert c.route("claude-haiku-4-5").model == "kimi-k2"
    assert c.route("claude-opus-4-1") is None  # passes through
    assert c.providers["kimi"].target == ("https", "api.moonshot.ai", 443, "/anthropic")


ROUTED = {
    "providers": {"a": {"type": "openai", "base_url": "https://a.test/v1"}, "deepseek": {"type": "openai", "base_url": "https://d.test/v1"}},
    "models": {"default": {"provider": "a", "model": "fallback"},
               "routes": {"opus": {"provider": "a", "model": "big"}, "sonnet": {"provider": "deepseek", "model": "deepseek-chat"},
                          "haiku": {"provider": "a", "model": "small"}, "claude-sonnet-4-5": {"provider": "a", "model": "exact"}}},
}


@pytest.mark.parametrize("name, model", [
    ("claude-opus-4-8[1m]", "big"), ("claude-opus-5-5", "big"), ("claude-sonnet-5", "deepseek-chat"),
    ("claude-3-5-haiku-20241022", "small"), ("claude-sonnet-4-5-20250929", "exact"), ("claude-sonnet-4-5", "exact"),
    ("gpt-4o", "fallback"), ("claude-instant", "fallback"),
])
def test_family_routes_take_claude_code_s_moving_model_names(name: str, model: str) -> None:
    assert parse_config(ROUTED).route(name).model == model


@pytest.mark.parametrize("name, provider, model", [
    ("deepseek/deepseek-reasoner", "deepseek", "deepseek-reasoner"), ("deepseek,deepseek-chat", "deepseek", "deepseek-chat"),
    ("deepseek-chat", "deepseek", "deepseek-chat"), ("nobody/x", "a", "fallback"), ("deepseek-coder", "a", "fallback"),
])
def test_a_free_model_name_reaches_the_provider_it_names(name: str, provider: str, model: str) -> None:
    route = parse_config(ROUTED).route(name)
    assert (route.provider, route.model) == (provider, model)


def test_xml_tool_format_is_refused_where_it_would_do_nothing() -> None:
    with pytest.raises(ConfigError, match="providers.r.tool_format: xml is for providers of type openai"):
        parse_config({"providers": {"r": {"type": "openai-responses", "base_url": "https://r.test/v1", "tool_format": "xml"}},
                      "models": {"default": {"provider": "r", "model": "m"}}})
