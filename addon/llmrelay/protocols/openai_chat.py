"""OpenAI Chat Completions: what providers answer, as chunks of a stream or as one completion.

Only what a translator reads is modelled; other fields are skipped, so a provider's new field
never breaks a response. The same types serve OpenAI and every "OpenAI-compatible" API,
whose variations are noted where they are read:

- reasoning arrives as `reasoning_content` (DeepSeek, Kimi, GLM, xAI), `reasoning` (OpenRouter,
  Groq, Ollama, llama.cpp) or typed `thinking` parts inside `content` (Mistral);
- usage can come in a final chunk with `choices: []`, inside `x_groq` (Groq), with DeepSeek's
  `prompt_cache_hit_tokens`, or not at all;
- a chunk may carry an `error` object instead of choices (OpenRouter, mid-stream);
- tool-call ids may be empty (Gemini) or not Anthropic-shaped (Kimi's `functions.add:0`).

Like every wire format here these are msgspec structs (pydantic serves the configuration):
every streamed chunk is decoded here, and msgspec validates one in about 1.3 µs where pydantic
takes about 5 µs, a third of the relay's whole per-event cost (scripts/bench).
"""

from __future__ import annotations

from typing import Any

import msgspec


class FunctionDelta(msgspec.Struct):
    name: str | None = None
    # A string everywhere but Ollama's native API, which sends an object.
    arguments: str | dict[str, Any] | None = None


class ToolCallDelta(msgspec.Struct):
    index: int | None = None
    id: str | None = None
    function: FunctionDelta | None = None


class Delta(msgspec.Struct):
    content: str | list[dict[str, Any]] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class Choice(msgspec.Struct):
    index: int = 0
    delta: Delta | None = None
    message: Delta | None = None  # a whole completion is read as one chunk with `message`
    finish_reason: str | None = None


class Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None
    prompt_cache_hit_tokens: int | None = None  # DeepSeek


class Chunk(msgspec.Struct):
    """One `chat.completion.chunk`, or a whole `chat.completion` (choices carry `message`)."""

    id: str | None = None
    choices: list[Choice] | None = None
    usage: Usage | None = None
    error: dict[str, Any] | str | None = None
    x_groq: dict[str, Any] | None = None


# Lax like pydantic: a provider sending 1.0 or "1" for an integer is still understood.
decode_chunk = msgspec.json.Decoder(Chunk, strict=False).decode
DecodeError = msgspec.ValidationError, msgspec.DecodeError


def usage_of(chunk: Chunk) -> Usage | None:
    if chunk.usage is not None:
        return chunk.usage
    if chunk.x_groq and isinstance(chunk.x_groq.get("usage"), dict):
        return msgspec.convert(chunk.x_groq["usage"], Usage, strict=False)
    return None


def anthropic_usage(usage: Usage) -> tuple[dict[str, int], int]:
    """Chat usage → Anthropic usage (cached input apart, as Anthropic counts it) and the
    reasoning tokens (part of the output tokens)."""
    cached = (usage.prompt_tokens_details or {}).get("cached_tokens") or 0
    if not cached and usage.prompt_cache_hit_tokens:
        cached = usage.prompt_cache_hit_tokens
    return {
        "input_tokens": max((usage.prompt_tokens or 0) - cached, 0),
        "cache_read_input_tokens": cached,
        "output_tokens": usage.completion_tokens or 0,
    }, (usage.completion_tokens_details or {}).get("reasoning_tokens") or 0
