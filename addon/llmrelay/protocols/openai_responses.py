"""OpenAI Responses API wire facts the translators share: how reasoning travels in a thinking
block's signature, usage, and the errors (HTTP and in-stream) as Anthropic error types.

The Codex backend (a ChatGPT subscription) speaks the same protocol with stricter rules; see
`translate/responses_request.py`.
"""

from __future__ import annotations

import hashlib
from typing import Any

# A thinking block made from a Responses reasoning item carries the item's
# `encrypted_content` as its signature, after this prefix and the origin's mark: the client
# sends the block back on its next turn, and the model gets its reasoning back (with
# `store: false` nothing is kept server-side). The prefix tells these apart from Anthropic's
# own signatures; the mark says which provider (and account) can decrypt it, so reasoning is
# never sent to another one after the conversation moved (it would refuse the whole request).
SIGNED = "llmrelay.reasoning."


def origin(*parts: str) -> str:
    """A short mark of the provider that made a reasoning item (kind, URL, account)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def signature(encrypted: str, mark: str) -> str:
    return f"{SIGNED}{mark}.{encrypted}"


def encrypted(signature: str, mark: str) -> str | None:
    """The encrypted reasoning in a signature, if `mark`'s provider made it."""
    prefix = f"{SIGNED}{mark}."
    return signature[len(prefix) :] or None if signature.startswith(prefix) else None


def usage(raw: Any) -> tuple[dict[str, int], int]:
    """Responses usage → Anthropic usage (cached input apart, as Anthropic counts it) and the
    reasoning tokens (part of the output tokens)."""
    if not isinstance(raw, dict):
        return {"output_tokens": 0}, 0
    cached = (raw.get("input_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (raw.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
    total_in = raw.get("input_tokens") or 0
    return {
        "input_tokens": max(total_in - cached, 0),
        "cache_read_input_tokens": cached,
        "output_tokens": raw.get("output_tokens") or 0,
    }, reasoning


# Error codes and types (in `response.failed`, `error` events and HTTP bodies) → the HTTP
# status an Anthropic client reads them by.
ERROR_STATUS: dict[str, int] = {
    "rate_limit_exceeded": 429,
    "rate_limit_error": 429,
    "usage_limit_reached": 429,
    "usage_not_included": 429,
    "insufficient_quota": 429,
    "context_length_exceeded": 400,
    "invalid_prompt": 400,
    "invalid_request_error": 400,
    "server_is_overloaded": 529,
    "slow_down": 529,
    "service_unavailable_error": 529,
    "server_error": 500,
    "token_expired": 401,
    "token_invalidated": 401,
}


def error_status(error: Any) -> int:
    if isinstance(error, dict):
        for key in ("code", "type"):
            value = error.get(key)
            if isinstance(value, str) and value in ERROR_STATUS:
                return ERROR_STATUS[value]
        message = str(error.get("message") or "")
        if "at capacity" in message:
            return 529
    return 500


def limit_reset(error: Any, now: float) -> float | None:
    """Seconds until a usage limit resets (`resets_in_seconds` or `resets_at`), if said."""
    if not isinstance(error, dict):
        return None
    seconds = error.get("resets_in_seconds")
    if isinstance(seconds, (int, float)) and seconds >= 0:
        return float(seconds)
    at = error.get("resets_at")
    if isinstance(at, (int, float)):
        return max(float(at) - now, 0.0)
    return None
