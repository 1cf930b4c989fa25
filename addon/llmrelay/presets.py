"""Provider presets: `preset: deepseek` in a provider fills in what that provider needs.

A preset is data: the provider settings it fills (the keys of the provider models in
`config.py`, `type` included) and `key_env`, the environment variable its key usually
lives in. `apply` expands the raw `providers` mapping from the YAML before it is validated;
`for_cli` builds a whole minimal configuration for `scripts/proxy --preset NAME --model M`.

Rules:
- the user's explicit keys win over the preset's, whole values (a `headers` mapping given
  replaces the preset's); `preset` itself is removed;
- a preset never holds a key: without an `api_key` (an explicit `api_key: null` counts as
  given), a preset with `key_env` gets the literal `${KEY_ENV}`, which the config loader
  interpolates afterwards, so an unset variable stops start-up naming it;
- a preset's `type` is fixed: another type takes other keys, so a different `type` is an
  error (pick the preset of that type, e.g. `deepseek-anthropic`);
- `MUST_SET` names keys a preset cannot guess (Azure's resource URL): they must be given;
- names are case-insensitive, and `ALIASES` name the same preset;
- values are what the provider documents or is reported to need; each non-obvious one says
  where it comes from. Where nothing is documented the choice is the one that cannot break
  a request (drop a field, estimate tokens locally) and the comment says so;
- `SCHEMA_DROPS`: JSON-schema keywords a provider refuses in tool parameters. `clean_schema`
  removes them at every schema level, never a property that merely has the same name
  (`properties: {format: ...}` is a property called format), and never looks inside values
  (`enum`, `const`, `default`, `examples`). An entry `key!=a|b` removes `key` unless its
  value is `a` or `b`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

# Claude Code asks for `max_tokens` up to 128000 and always sends `thinking` (adaptive,
# effort medium): hence the output caps below, and `reasoning: none` wherever some of a
# provider's models refuse the reasoning parameter (a route can still set it per model).
PRESETS: dict[str, dict[str, Any]] = {
    # --- Chat Completions (type: openai) ---------------------------------------------------
    "openai": {
        "type": "openai",
        "base_url": "https://api.openai.com/v1",
        "key_env": "OPENAI_API_KEY",
        "reasoning": "none",  # gpt-4.1 refuses reasoning_effort; routes to o-series/gpt-5 set `effort`
    },
    "azure": {
        "type": "openai",
        # A placeholder: your resource's v1 endpoint must be set (see MUST_SET). The v1 API
        # takes the key as a bearer token, as the plain OpenAI SDK sends it.
        "base_url": "https://YOUR-RESOURCE.openai.azure.com/openai/v1",
        "key_env": "AZURE_OPENAI_API_KEY",
        # The relay infers this for *.openai.azure.com only; Foundry hosts
        # (*.services.ai.azure.com, *.cognitiveservices.azure.com) serve the same models,
        # whose reasoning ones refuse `max_tokens`.
        "max_tokens_field": "max_completion_tokens",
        "reasoning": "none",  # as for openai
    },
    "xai": {
        "type": "openai",
        "base_url": "https://api.x.ai/v1",
        "key_env": "XAI_API_KEY",
        # Most Grok models answer 400 "does not support parameter reasoningEffort" (grok-3,
        # grok-4, grok-4-fast, grok-code-fast-1: NousResearch/hermes-agent PR #23435);
        # grok-3-mini takes it (captured: reasoning_effort high, 200): set it per route.
        "reasoning": "none",
    },
    "deepseek": {
        "type": "openai",
        "base_url": "https://api.deepseek.com",  # the documented root, and the captured URL
        "key_env": "DEEPSEEK_API_KEY",
        "reasoning": "thinking",  # documented: {"thinking": {"type": "enabled" | "disabled"}}
        # Documented: an assistant turn with tool calls must carry its reasoning_content back,
        # or the API answers 400 (musistudio/claude-code-router #1050).
        "reasoning_history": True,
        # deepseek-chat: "the valid range of max_tokens is [1, 8192]" (deepseek-ai/DeepSeek-V3
        # #69); deepseek-reasoner allows 65536, which a route may set.
        "max_output_tokens": 8192,
    },
    "kimi": {
        "type": "openai",
        "base_url": "https://api.moonshot.ai/v1",  # mainland China: https://api.moonshot.cn/v1
        "key_env": "MOONSHOT_API_KEY",
        # K2.5 and later think unasked, and thinking-only models refuse `thinking: disabled`
        # ("only type=enabled is allowed for this model", MoonshotAI/Kimi-K2 #141).
        "reasoning": "none",
        # Thinking models need their reasoning_content back on tool-call turns (the relay's
        # default for moonshot hosts; explicit so a gateway URL keeps it).
        "reasoning_history": True,
    },
    "glm": {
        "type": "openai",
        # Captured. GLM Coding Plan: https://api.z.ai/api/coding/paas/v4; mainland China:
        # https://open.bigmodel.cn/api/paas/v4.
        "base_url": "https://api.z.ai/api/paas/v4",
        "key_env": "ZAI_API_KEY",
        "reasoning": "thinking",  # captured: thinking {type: enabled} answered with reasoning_content
    },
    "minimax": {
        "type": "openai",
        "base_url": "https://api.minimax.io/v1",  # mainland China: https://api.minimaxi.com/v1
        "key_env": "MINIMAX_API_KEY",
        "reasoning": "none",  # M2 models always reason (in <think> tags within the content)
    },
    "qwen": {
        "type": "openai",
        # Alibaba Cloud Model Studio, international; mainland China:
        # https://dashscope.aliyuncs.com/compatible-mode/v1.
        "base_url": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        "key_env": "DASHSCOPE_API_KEY",
        "reasoning": "none",  # thinking is `enable_thinking` there, which no mode sends yet
        # DashScope refuses max_tokens above 65536 for Qwen models (NousResearch/hermes-agent
        # PR #19624); smaller models have lower caps.
        "max_output_tokens": 65536,
    },
    "nvidia": {
        "type": "openai",
        "base_url": "https://integrate.api.nvidia.com/v1",  # NVIDIA NIM, hosted
        "key_env": "NVIDIA_API_KEY",
        "reasoning": "none",  # each NIM model has its own reasoning switch, if any
    },
    "ollama": {
        "type": "openai",
        "base_url": "http://127.0.0.1:11434/v1",  # no key: a local server
        "max_output_tokens": 8192,  # as the shipped config: local models run with small contexts
        "reasoning": "none",  # models without thinking refuse to be asked for it
    },
    "lmstudio": {
        "type": "openai",
        "base_url": "http://127.0.0.1:1234/v1",  # no key: a local server
        "reasoning": "none",
    },
    "openrouter": {
        "type": "openai",
        "base_url": "https://openrouter.ai/api/v1",
        "key_env": "OPENROUTER_API_KEY",
        # Its own `reasoning` object, translated per model (captured: {effort: medium}, 200).
        "reasoning": "openrouter",
    },
    "gemini": {
        "type": "openai",
        "base_url": "https://generativelanguage.googleapis.com/v1beta/openai",  # captured
        "key_env": "GEMINI_API_KEY",
        # Gemini models think unasked, and gemini-3-pro refuses reasoning_effort "medium"
        # (discuss.ai.google.dev, "Gemini 3 Preview (OpenAI-compatible) rejects
        # reasoning_effort: medium"), the effort Claude Code's adaptive thinking maps to.
        "reasoning": "none",
        # "maxOutputTokens ... supported range is from 1 (inclusive) to 65536 (exclusive)"
        # (Gemini 2.5 Pro, BerriAI/litellm PR #10548).
        "max_output_tokens": 65535,
    },
    "mistral": {
        "type": "openai",
        "base_url": "https://api.mistral.ai/v1",  # captured
        "key_env": "MISTRAL_API_KEY",
        "reasoning": "none",  # Magistral reasons unasked (captured: thinking parts in content)
    },
    "groq": {
        "type": "openai",
        "base_url": "https://api.groq.com/openai/v1",  # captured
        "key_env": "GROQ_API_KEY",
        # Kimi K2 there: "max_tokens must be less than or equal to 16384" (anomalyco/opencode
        # #1000, RooCodeInc/Roo-Code #5739); larger caps (gpt-oss) go on a route.
        "max_output_tokens": 16384,
        # reasoning_effort is per model there (gpt-oss: low/medium/high; qwen3: none/default).
        "reasoning": "none",
    },
    "together": {
        "type": "openai",
        "base_url": "https://api.together.xyz/v1",
        "key_env": "TOGETHER_API_KEY",
        "reasoning": "none",
    },
    "fireworks": {
        "type": "openai",
        # "Requests with max_tokens > 4096 must have stream=true" (nullclaw/nullclaw PR #231):
        # keep supports_streaming on.
        "base_url": "https://api.fireworks.ai/inference/v1",
        "key_env": "FIREWORKS_API_KEY",
        "reasoning": "none",
    },
    "cerebras": {
        "type": "openai",
        "base_url": "https://api.cerebras.ai/v1",
        "key_env": "CEREBRAS_API_KEY",
        "max_tokens_field": "max_completion_tokens",  # the name its API documents
        # Its rate limiter counts max_completion_tokens up front; 16384 is the cap Cerebras
        # itself set for agentic clients (RooCodeInc/Roo-Code PR #10387).
        "max_output_tokens": 16384,
        "reasoning": "none",  # reasoning_effort exists for gpt-oss only
    },
    "siliconflow": {
        "type": "openai",
        "base_url": "https://api.siliconflow.com/v1",  # mainland China: https://api.siliconflow.cn/v1
        "key_env": "SILICONFLOW_API_KEY",
        "reasoning": "none",  # thinking is `enable_thinking` there
    },
    # --- Subscriptions -----------------------------------------------------------------------
    "chatgpt": {"type": "chatgpt"},  # signs in with `scripts/login`; the account is the provider's name
    "claude-cli": {"type": "claude-cli"},  # the local `claude` CLI and its own sign-in
    # --- Anthropic Messages (type: anthropic) --------------------------------------------------
    # Their contracts are partly undocumented. `cache_control.ttl` is refused with a 400 by
    # non-Anthropic "compatible" APIs (BerriAI/litellm PR #39355), so every one strips it, and
    # none documents /v1/messages/count_tokens, so the local estimate answers (a round trip
    # to a 404 saved).
    "kimi-anthropic": {
        "type": "anthropic",
        "base_url": "https://api.moonshot.ai/anthropic",
        "key_env": "MOONSHOT_API_KEY",
        "auth": "bearer",  # Moonshot's Claude Code setup uses ANTHROPIC_AUTH_TOKEN (a bearer token)
        # No published contract (MoonshotAI/Kimi-K2 #129: model, messages, system, tools,
        # tool_choice, max_tokens, temperature and stream are observed to work): conservative.
        "drop_fields": ["context_management", "output_config"],
        "drop_betas": "all",
        "strip_cache_ttl": True,
        "count_tokens": False,
    },
    "deepseek-anthropic": {
        "type": "anthropic",
        "base_url": "https://api.deepseek.com/anthropic",
        "key_env": "DEEPSEEK_API_KEY",
        "auth": "x-api-key",  # documented: x-api-key fully supported
        # output_config stays: it carries the thinking effort there (documented);
        # context_management is not in its compatibility table: dropped, to be safe.
        "drop_fields": ["context_management"],
        "drop_betas": [],  # documented: anthropic-beta is ignored
        "strip_cache_ttl": True,
        "count_tokens": False,
        "max_output_tokens": 8192,  # the models' caps, as for deepseek
    },
    "glm-anthropic": {
        "type": "anthropic",
        "base_url": "https://api.z.ai/api/anthropic",  # mainland China: https://open.bigmodel.cn/api/anthropic
        "key_env": "ZAI_API_KEY",
        "auth": "bearer",  # Z.ai's Claude Code setup uses ANTHROPIC_AUTH_TOKEN
        "drop_fields": ["context_management", "output_config"],  # undocumented there: conservative
        "drop_betas": "all",
        "strip_cache_ttl": True,
        "count_tokens": False,
    },
    "minimax-anthropic": {
        "type": "anthropic",
        "base_url": "https://api.minimax.io/anthropic",  # mainland China: https://api.minimaxi.com/anthropic
        "key_env": "MINIMAX_API_KEY",
        "auth": "bearer",  # MiniMax's HTTP example sends Authorization: Bearer
        "drop_fields": ["context_management", "output_config"],  # undocumented there: conservative
        "drop_betas": "all",
        "strip_cache_ttl": True,
        "count_tokens": False,
    },
}

ALIASES: dict[str, str] = {
    "moonshot": "kimi",
    "moonshot-anthropic": "kimi-anthropic",
    "zai": "glm",
    "z.ai": "glm",
    "zai-anthropic": "glm-anthropic",
    "dashscope": "qwen",
    "grok": "xai",
    "nim": "nvidia",
}

# Keys a preset cannot guess, with what to write.
MUST_SET: dict[str, dict[str, str]] = {
    "azure": {"base_url": "your resource's endpoint, e.g. https://NAME.openai.azure.com/openai/v1"},
}

# Preset keys that are no provider setting.
_META = ("key_env",)
# Provider types that send a key (chatgpt signs in, claude-cli uses the CLI's sign-in).
_KEYED_TYPES = ("openai", "anthropic", "openai-responses")

# JSON-schema keywords refused in tool parameters, by preset.
SCHEMA_DROPS: dict[str, tuple[str, ...]] = {
    # Gemini reads tool parameters as its own OpenAPI-subset Schema and answers 400 to the
    # rest ("Invalid JSON payload received. Unknown name ..."): `$schema` (QwenLM/qwen-code
    # #1186, zuisong/gemini-openai-proxy #67; through its OpenAI endpoint too: "Uncovering
    # limitations of Gemini over OpenAI", adam.strojek.info), `additionalProperties`
    # (pydantic/pydantic-ai #3538), `exclusiveMinimum` in Claude Code's own Read tool
    # (ruvnet/agentic-flow #55; `exclusiveMaximum` alike, databricks/unity-gateway #491),
    # `propertyNames` (openswarm-ai/openswarm #24), `const` (zed-industries/zed #44875),
    # `examples` (datastax/astra-assistants-api #73), and a `format` other than those its
    # Schema lists ("only 'enum' and 'date-time' are supported for STRING type",
    # google-gemini/gemini-cli #3178; int32/int64 and float/double for numbers).
    # A captured OpenAI-endpoint call accepted a top-level `additionalProperties: false`
    # (2025-06); removing it costs nothing, while one refusal fails the whole request.
    "gemini": (
        "$schema",
        "additionalProperties",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "propertyNames",
        "const",
        "examples",
        "format!=enum|date-time|int32|int64|float|double",
    ),
}

# Keywords whose value maps names (not keywords) to schemas.
_NAMED = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
# Keywords whose value is data, not a schema.
_DATA = frozenset({"enum", "const", "default", "examples", "example", "required"})


def _known() -> str:
    return ", ".join(sorted(PRESETS))


def canonical(name: Any) -> str | None:
    """The preset a name (or alias) means, or None."""
    if not isinstance(name, str):
        return None
    name = name.strip().lower()
    name = ALIASES.get(name, name)
    return name if name in PRESETS else None


def settings(name: str) -> dict[str, Any]:
    """A copy of a preset's provider settings, without its metadata."""
    return {key: copy.deepcopy(value) for key, value in PRESETS[name].items() if key not in _META}


def apply(providers: dict[str, Any]) -> dict[str, Any]:
    """The raw `providers` mapping with every `preset:` expanded. Anything that is not a
    mapping of mappings is returned as it is, for validation to report."""
    if not isinstance(providers, Mapping):
        return providers
    return {name: _expand(name, raw) if isinstance(raw, Mapping) and "preset" in raw else raw
            for name, raw in providers.items()}


def _expand(name: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    preset = canonical(raw["preset"])
    if preset is None:
        raise ValueError(f"providers.{name}.preset: unknown preset {raw['preset']!r} (known: {_known()})")
    given = {key: value for key, value in raw.items() if key != "preset"}
    kind = PRESETS[preset]["type"]
    if "type" in given and given["type"] != kind:
        raise ValueError(f"providers.{name}.type: preset {preset!r} is of type {kind!r}; "
                         f"use a preset of type {given['type']!r}, or no preset")
    for key, what in MUST_SET.get(preset, {}).items():
        if key not in given:
            raise ValueError(f"providers.{name}.{key}: the {preset} preset needs {what}")
    result = settings(preset) | given
    key_env = PRESETS[preset].get("key_env")
    if key_env and kind in _KEYED_TYPES and "api_key" not in given:
        result["api_key"] = "${" + key_env + "}"
    return result


def for_cli(name: str, model: str) -> dict[str, Any]:
    """A whole configuration for a one-line start: one provider from a preset, and every
    model routed to it."""
    preset = canonical(name)
    if preset is None:
        raise ValueError(f"--preset: unknown preset {name!r} (known: {_known()})")
    if MUST_SET.get(preset):
        needs = ", ".join(MUST_SET[preset])
        raise ValueError(f"--preset {preset}: needs {needs}, which only a config file can give")
    if not isinstance(model, str) or not model.strip():
        raise ValueError("--model: name the provider's model")
    return {"providers": apply({preset: {"preset": preset}}),
            "models": {"default": {"provider": preset, "model": model.strip()}}}


_DROPS_BY_HOST = {urlsplit(PRESETS[name]["base_url"]).hostname: drops for name, drops in SCHEMA_DROPS.items()}


def schema_drops(provider: Any) -> tuple[str, ...]:
    """The schema keywords to drop for a provider: its raw settings (with or without
    `preset`) or a validated provider; known by the preset, else by the base URL's host."""
    if isinstance(provider, Mapping):
        preset = canonical(provider.get("preset"))
        if preset is not None:
            return SCHEMA_DROPS.get(preset, ())
        base_url = provider.get("base_url")
    else:
        base_url = getattr(provider, "base_url", None)
    if not isinstance(base_url, str):
        return ()
    return _DROPS_BY_HOST.get(urlsplit(base_url).hostname, ())


@lru_cache(maxsize=32)
def _rules(drops: tuple[str, ...]) -> dict[str, frozenset[str] | None]:
    """Keyword → the values it may keep (None: always dropped)."""
    rules: dict[str, frozenset[str] | None] = {}
    for entry in drops:
        key, sep, kept = entry.partition("!=")
        rules[key] = frozenset(kept.split("|")) if sep else None
    return rules


def clean_schema(schema: dict[str, Any], drops: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """A copy of a JSON schema without the keywords in `drops`, at every level."""
    if not drops:
        return copy.deepcopy(schema)
    return _clean(schema, _rules(tuple(drops)))


def _clean(node: Any, rules: dict[str, frozenset[str] | None]) -> Any:
    if isinstance(node, list):
        return [_clean(item, rules) for item in node]
    if not isinstance(node, dict):
        return node  # true/false schemas, and values
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in rules:
            kept = rules[key]
            if kept is None or not isinstance(value, str) or value not in kept:
                continue
        if key in _DATA:
            out[key] = copy.deepcopy(value)
        elif key in _NAMED and isinstance(value, dict):
            out[key] = {name: _clean(sub, rules) for name, sub in value.items()}
        else:
            out[key] = _clean(value, rules)
    return out
