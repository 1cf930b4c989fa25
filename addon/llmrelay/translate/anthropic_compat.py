"""Anthropic Messages → an Anthropic-compatible provider: the same protocol, cleaned.

Rules:
- `model` → the route's model; `max_tokens` clamped to the route's or provider's cap;
- the provider's `drop_fields` (e.g. `context_management`, `output_config`) are removed, and
  with `strip_cache_ttl` every `cache_control.ttl` (several compatible APIs answer 400 to both);
- `anthropic-version` is kept (2023-06-01 when the client sent none); `anthropic-beta` keeps
  the values the provider accepts (`drop_betas`: a list, or "all");
- credentials: the client's are dropped, the provider's go in `x-api-key` or, with
  `auth: bearer`, in `Authorization: Bearer`;
- with `supports_streaming: false` the provider is asked for JSON and the stream built here;
- thinking blocks Anthropic cannot verify (made by this relay from another provider's
  reasoning: a `SIGNED` signature, or none) are removed, since one of them gets the whole
  request refused after a conversation moves here; if that empties the thinking of the last
  assistant turn, the request goes without `thinking` (a tool-use turn must otherwise start
  with a verified thinking block).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson

from ..config import AnthropicProvider, Route
from ..errors import RelayError
from ..protocols.anthropic import InvalidRequest, checked_max_tokens
from ..protocols.openai_responses import SIGNED


def prepare(body: bytes, route: Route, provider: AnthropicProvider, client_headers: dict[str, str],
            data: dict[str, Any] | None = None, *, canonical: bool = False) -> tuple[bytes, dict[str, str]]:
    """The request for the provider: body and headers (`data`: the body already parsed;
    `canonical`: the body always written whole by orjson, as recordings hold it)."""
    headers = _headers(provider, client_headers)
    if data is None and not canonical and not provider.strip_cache_ttl and not has_foreign_thinking(body):
        return _top_level(body, route, provider), headers
    try:
        data = orjson.loads(body) if data is None else data
    except orjson.JSONDecodeError as e:
        raise RelayError(f"invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise RelayError("the request body must be a JSON object")
    try:
        if "max_tokens" in data:
            data["max_tokens"] = checked_max_tokens(data["max_tokens"])
    except InvalidRequest as e:
        raise RelayError(str(e)) from None
    data["model"] = route.model
    if has_foreign_thinking(body):
        drop_foreign_thinking(data)
    for name in provider.drop_fields:
        data.pop(name, None)
    cap = route.max_output_tokens or provider.max_output_tokens
    if cap and isinstance(data.get("max_tokens"), int) and data["max_tokens"] > cap:
        data["max_tokens"] = cap
    if data.get("stream") and not provider.supports_streaming:
        data["stream"] = False  # the stream is built here from the JSON answer
    if provider.strip_cache_ttl:
        try:
            _strip_ttl(data)
        except RecursionError:
            raise RelayError("the request is nested too deeply") from None

    return orjson.dumps(data), headers


_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw])


def _top_level(body: bytes, route: Route, provider: AnthropicProvider) -> bytes:
    """The same rules for a request that needs nothing below its top level changed (the
    usual case): the other values are passed on as the client wrote them, unparsed, which
    costs a fifth of parsing and writing the whole 80 KB body again."""
    try:
        top = _TOP.decode(body)
    except msgspec.DecodeError as e:
        raise RelayError(f"invalid JSON: {e}" if body.lstrip()[:1] == b"{" else "the request body must be a JSON object") from None
    out: dict[str, Any] = dict(top)
    if "max_tokens" in top:
        try:
            max_tokens = checked_max_tokens(msgspec.json.decode(top["max_tokens"]))
        except InvalidRequest as e:
            raise RelayError(str(e)) from None
        cap = route.max_output_tokens or provider.max_output_tokens
        out["max_tokens"] = orjson.dumps(min(max_tokens, cap) if cap and isinstance(max_tokens, int) else max_tokens)
    out["model"] = orjson.dumps(route.model)
    for name in provider.drop_fields:
        out.pop(name, None)
    if not provider.supports_streaming and "stream" in top and msgspec.json.decode(top["stream"]):
        out["stream"] = b"false"  # the stream is built here from the JSON answer
    return b"{" + b",".join(b"%b:%b" % (orjson.dumps(name), value) for name, value in out.items()) + b"}"


def _headers(provider: AnthropicProvider, client_headers: dict[str, str]) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "accept-encoding": "identity",  # the stream hook reads raw bytes
        "anthropic-version": client_headers.get("anthropic-version") or "2023-06-01",
    }
    betas = _betas(client_headers.get("anthropic-beta", ""), provider.drop_betas)
    if betas:
        headers["anthropic-beta"] = betas
    if provider.key:
        if provider.auth == "bearer":
            headers["authorization"] = "Bearer " + provider.key
        else:
            headers["x-api-key"] = provider.key
    headers.update(provider.headers)
    return headers


_EMPTY = re.compile(rb'\s*:\s*""')
_SIGNED = SIGNED.encode()


def has_foreign_thinking(body: bytes) -> bool:
    """A cheap look at the bytes before any parsing: Claude Code's requests mostly have none.
    (`find` runs at memchr speed; a regular expression searching the whole body does not.)"""
    if _SIGNED in body:
        return True
    at = body.find(b'"signature"')
    while at >= 0:
        if _EMPTY.match(body, at + 11):
            return True
        at = body.find(b'"signature"', at + 11)
    return False


def drop_foreign_thinking(data: dict[str, Any]) -> None:
    messages = data.get("messages")
    if not isinstance(messages, list):
        return
    last = max((i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"), default=-1)
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        kept = [b for b in content if not (isinstance(b, dict) and b.get("type") == "thinking" and _foreign(b.get("signature")))]
        if len(kept) == len(content):
            continue
        message["content"] = kept or [{"type": "text", "text": "(thinking)"}]
        if i == last:
            data.pop("thinking", None)


def _foreign(signature: Any) -> bool:
    return not signature or (isinstance(signature, str) and signature.startswith(SIGNED))


def without_foreign_thinking(body: bytes) -> bytes:
    """The request with `drop_foreign_thinking` applied (passthrough: bytes in, bytes out)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(data, dict):
        return body
    drop_foreign_thinking(data)
    return orjson.dumps(data)


def _betas(value: str, drop: list[str] | str) -> str:
    if drop == "all":
        return ""
    return ",".join(beta for beta in (b.strip() for b in value.split(",")) if beta and beta not in drop)


def _strip_ttl(node: Any) -> None:
    if isinstance(node, dict):
        control = node.get("cache_control")
        if isinstance(control, dict):
            control.pop("ttl", None)
        for value in node.values():
            if isinstance(value, (dict, list)):
                _strip_ttl(value)
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, (dict, list)):
                _strip_ttl(value)
