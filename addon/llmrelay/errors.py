"""Errors in the client's protocol, whatever the upstream sent.

Upstream HTTP status → Anthropic status and error type:

| upstream                 | client | error type              |
|--------------------------|--------|-------------------------|
| 400, 409, 422, other 4xx | 400    | invalid_request_error   |
| 401                      | 401    | authentication_error    |
| 402                      | 402    | billing_error           |
| 403                      | 403    | permission_error        |
| 404                      | 404    | not_found_error         |
| 405, 415                 | same   | invalid_request_error   |
| 413                      | 413    | request_too_large       |
| 429                      | 429    | rate_limit_error        |
| 408, 504, 524            | 504    | timeout_error           |
| 503, 529                 | 529    | overloaded_error        |
| other 5xx                | 500    | api_error               |

The message is read from whatever body came back (OpenAI's `{"error": {"message"}}`, a bare
`{"error": "..."}`, FastAPI's `{"detail"}`, HTML from a gateway, JSON sent as
`application/octet-stream` by DeepSeek) and prefixed with the provider's name. Secrets the
relay knows are scrubbed from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

_BY_STATUS: dict[int, tuple[int, str]] = {
    400: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    402: (402, "billing_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    405: (405, "invalid_request_error"),
    415: (415, "invalid_request_error"),
    408: (504, "timeout_error"),
    413: (413, "request_too_large"),
    429: (429, "rate_limit_error"),
    500: (500, "api_error"),
    503: (529, "overloaded_error"),
    504: (504, "timeout_error"),
    524: (504, "timeout_error"),
    529: (529, "overloaded_error"),
}


class RelayError(Exception):
    """A request the relay cannot serve; rendered as an Anthropic error with this status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    @property
    def error_type(self) -> str:
        return anthropic_status(self.status)[1]


def anthropic_status(upstream_status: int) -> tuple[int, str]:
    if upstream_status in _BY_STATUS:
        return _BY_STATUS[upstream_status]
    if upstream_status >= 500:
        return 500, "api_error"
    return 400, "invalid_request_error"


def status_of(error_type: str) -> int:
    """The HTTP status the Anthropic API uses with an error type."""
    return next((status for status, kind in _BY_STATUS.values() if kind == error_type), 500)


def error_body(error_type: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})


def upstream_message(body: bytes, content_type: str = "") -> str:
    """The human-readable part of an upstream error body, or a short description of it."""
    parsed: Any = None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    message = _message_in(parsed)
    if message:
        return message
    text = body.decode("utf-8", "replace").strip()
    if "html" in content_type or text.startswith("<"):
        title = re.search(r"<title>(.*?)</title>", text, re.S | re.I)
        text = title.group(1).strip() if title else re.sub(r"<[^>]+>", " ", text)
        text = " ".join(text.split())
    return text[:500] or "empty response body"


def _message_in(parsed: Any) -> str | None:
    if isinstance(parsed, list) and parsed:  # some gateways wrap the error in a list
        parsed = parsed[0]
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error", parsed)
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        for key in ("message", "detail", "msg", "error"):
            value = error.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, (dict, list)):
                nested = _message_in(value)
                if nested:
                    return nested
    return None


def error_status_in(error: Any) -> int:
    """The HTTP-like status inside an error object found in a 200 stream (OpenRouter puts one
    in `code`); 500 when there is none."""
    if isinstance(error, dict):
        for key in ("code", "status", "status_code"):
            value = error.get(key)
            if isinstance(value, int) and 400 <= value <= 599:
                return value
            if isinstance(value, str) and value.isdigit() and 400 <= int(value) <= 599:
                return int(value)
        if error.get("type") in ("rate_limit_error", "rate_limit_exceeded", "tokens"):
            return 429
    return 500


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every known secret in a text (providers echo a wrong key back in their errors)."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, "[REDACTED]")
    return text


def scrub_bytes(data: bytes, secrets: Iterable[bytes]) -> bytes:
    """`scrub` for bytes on their way out (a provider's answer, its headers)."""
    for secret in secrets:
        if secret in data:
            data = data.replace(secret, b"[REDACTED]")
    return data


def uncut(data: bytes, end: int, secrets: tuple[bytes, ...]) -> int:
    """The last place at or before `end` where `data` can be cut without cutting a secret in
    two: no secret runs across it, and what comes before it does not end with the start of
    one that may go on past the end of `data`."""
    moved = True
    while moved and end > 0:
        moved = False
        for secret in secrets:
            at = data.find(secret[:1], max(0, end - len(secret) + 1), end)
            while at >= 0 and not secret.startswith(data[at : at + len(secret)]):
                at = data.find(secret[:1], at + 1, end)
            if at >= 0:
                end, moved = at, True
    return end


class Scrubber:
    """`scrub_bytes` for a body read by read (the flow's copy of a provider's answer). A read
    that ends with what may be the start of a secret keeps those bytes back until the next
    read completes or refutes it, so a key cut in two by the reads is scrubbed too. Whole
    events end with a blank line, which no key starts with: they are never held back."""

    __slots__ = ("secrets", "_held")

    def __init__(self, secrets: tuple[bytes, ...]) -> None:
        self.secrets = secrets
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        if self._held:
            chunk, self._held = self._held + chunk, b""
        chunk = scrub_bytes(chunk, self.secrets)
        cut = uncut(chunk, len(chunk), self.secrets)
        if cut < len(chunk):
            chunk, self._held = chunk[:cut], chunk[cut:]
        return chunk

    def flush(self) -> bytes:
        """The body's end: what was held back was not a secret."""
        held, self._held = self._held, b""
        return held
