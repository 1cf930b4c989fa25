"""OpenAI Chat Completions: what providers answer, as chunks of a stream or as one completion.

Only what a translator reads is modelled; everything else is kept (`extra="allow"`), so a
provider's new field never breaks a response. The same models serve OpenAI and every
"OpenAI-compatible" API, whose variations are noted where they are read:

- reasoning arrives as `reasoning_content` (DeepSeek, Kimi, GLM, xAI), `reasoning` (OpenRouter,
  Groq, Ollama, llama.cpp) or typed `thinking` parts inside `content` (Mistral);
- usage can come in a final chunk with `choices: []`, inside `x_groq` (Groq), with DeepSeek's
  `prompt_cache_hit_tokens`, or not at all;
- a chunk may carry an `error` object instead of choices (OpenRouter, mid-stream);
- tool-call ids may be empty (Gemini) or not Anthropic-shaped (Kimi's `functions.add:0`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _In(BaseModel):
    model_config = ConfigDict(extra="allow")


class FunctionDelta(_In):
    name: str | None = None
    # A string everywhere but Ollama's native API, which sends an object.
    arguments: str | dict[str, Any] | None = None


class ToolCallDelta(_In):
    index: int | None = None
    id: str | None = None
    function: FunctionDelta | None = None


class Delta(_In):
    content: str | list[dict[str, Any]] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class Choice(_In):
    index: int = 0
    delta: Delta | None = None
    message: Delta | None = None  # a whole completion is read as one chunk with `message`
    finish_reason: str | None = None


class Usage(_In):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None
    prompt_cache_hit_tokens: int | None = None  # DeepSeek


class Chunk(_In):
    """One `chat.completion.chunk`, or a whole `chat.completion` (choices carry `message`)."""

    id: str | None = None
    choices: list[Choice] | None = None
    usage: Usage | None = None
    error: dict[str, Any] | str | None = None
    x_groq: dict[str, Any] | None = None


def usage_of(chunk: Chunk) -> Usage | None:
    if chunk.usage is not None:
        return chunk.usage
    if chunk.x_groq and isinstance(chunk.x_groq.get("usage"), dict):
        return Usage.model_validate(chunk.x_groq["usage"])
    return None
