"""What every provider's exchange shares: the relay's answer types (`Reply`, `Forward`,
`Pass`), the base of an exchange (`Answers`), and the ways an answer becomes the client's
(`events_reply`, `message_reply`, `upstream_error`).

An exchange is one request in flight to a provider: it knows how to translate whatever comes
back, streamed (`translator()`, read by read), read whole for a client that wants one message
(`reader()`), or as one body (`reply()`). Each provider kind (`providers/`) has its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import sse, tokens
from .errors import RelayError, anthropic_status, error_body, scrub, status_of, upstream_message
from .protocols import anthropic as a

log = logging.getLogger("llmrelay")

JSON = "application/json"
EVENT_STREAM = "text/event-stream; charset=utf-8"


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": JSON})


@dataclass
class Pass:
    stream: bool  # whether the client asked for a stream


@dataclass
class Forward:
    target: tuple[str, str, int, str]  # scheme, host, port, path
    headers: dict[str, str]
    body: bytes
    exchange: Any
    # For a provider that signs in (OAuth): the account whose token `Answer` adds when it
    # sends the request, as (account name, issuer URL).
    account: tuple[str, str] | None = None
    # The route's fallbacks, in order: each makes the request for its own provider.
    fallbacks: list[Any] = field(default_factory=list)
    label: str | None = None  # what errors call the provider: its name, or "name key 2" in a key pool


def labelled(forward: Forward, label: str) -> Forward:
    """The forward, and its exchange, given the name errors call its provider by."""
    forward.label = label
    getattr(forward.exchange, "inner", forward.exchange).label = label
    return forward


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    status, error_type = anthropic_status(status)
    return Reply(status, error_body(error_type, message), {"content-type": JSON, **(headers or {})})


class Answers:
    """What every exchange does with an answer; each kind says how in `stream` and `_reply`."""

    provider: Any
    client_stream: bool
    label: str | None = None  # the provider's name in the configuration (`labelled`)

    @property
    def who(self) -> str:
        """The provider as the client's error messages name it: its name and host."""
        host = self.provider.host
        return f"{self.label} ({host})" if self.label and self.label != host else host

    def streams(self, status: int, headers: dict[str, str]) -> bool:
        """Whether the answer goes on as it arrives (else it is read whole, then `reply`)."""
        return (
            self.client_stream
            and 200 <= status < 300
            and headers.get("content-type", "").startswith("text/event-stream")
            and headers.get("content-encoding", "identity").lower() in ("", "identity")
        )

    def began(self, status: int, headers: dict[str, str]) -> None:
        """The provider's answer began: a kind that keeps something of its head does it here."""

    def reply(self, status: int, headers: dict[str, str], body: bytes) -> Reply:
        """A whole upstream answer → the client's answer (message, stream or error)."""
        try:
            return self._reply(status, headers, body)
        except Exception:
            log.exception("llmrelay: reading a response from %s failed", self.provider.host)
            return error_reply(500, "the relay failed to read the provider's response; its log has the details")

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> Reply:
        raise NotImplementedError


def events_reply(events: Iterable[dict[str, Any]], stream: bool) -> Reply:
    """Anthropic events → a stream, or the one message they make."""
    if stream:
        return Reply(200, encode(events), {"content-type": EVENT_STREAM, "cache-control": "no-cache"})
    acc = a.Accumulator()
    for event in events:
        acc.add(event)
    return message_reply(acc)


def message_reply(acc: a.Accumulator) -> Reply:
    """The message an accumulator rebuilt, or the error that ended it."""
    if acc.error is not None or acc.message is None:
        error = (acc.error or a.error_event("api_error", "the provider sent no answer"))["error"]
        return error_reply(status_of(error.get("type", "api_error")), error.get("message", ""))
    return Reply(200, orjson.dumps(acc.message))


def upstream_error(status: int, headers: dict[str, str], body: bytes, host: str, secrets: Iterable[str]) -> Reply:
    message = scrub(upstream_message(body, headers.get("content-type", "")), secrets)
    passed = {k: v for k, v in headers.items() if k in ("retry-after", "retry-after-ms")}
    return error_reply(status, f"{host}: {message}", passed)


def is_event_stream(headers: dict[str, str], body: bytes) -> bool:
    return headers.get("content-type", "").startswith("text/event-stream") or body.lstrip().startswith((b"data:", b"event:", b":"))


def encode(events: Iterable[dict[str, Any]]) -> bytes:
    return b"".join([sse.encode(event["type"], orjson.dumps(event)) for event in events])


def usage_in(events: Iterable[dict[str, Any]]) -> dict[str, int] | None:
    """Usage from message_start, updated by message_delta, as the SDK accumulates it."""
    usage: dict[str, Any] | None = None
    for event in events:
        if event.get("type") == "message_start":
            usage = dict(event.get("message", {}).get("usage") or {})
        elif event.get("type") == "message_delta" and usage is not None:
            usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
    return usage


def sse_events(body: bytes) -> list[dict[str, Any]]:
    decoder = sse.Decoder()
    return [orjson.loads(e.data) for e in decoder.feed(body) + decoder.flush() if e.data.strip()]


EDGE = 16 * 1024  # bytes read at each end of a passed-through stream for its usage (its events there are small)


def edge_events(raw: list[bytes], window: int = EDGE) -> list[Any]:
    """The events in a passed-through stream's first and last `window` bytes, whole ones
    only, in order (a short stream: all of them). Its usage is there, in the first events
    (Anthropic's message_start) and the last (message_delta, Chat's usage chunk); decoding a
    long answer whole once it had ended held the event loop for one long turn. Data that is
    not JSON, and `[DONE]`, are left out."""
    if sum(map(len, raw)) <= 2 * window:
        return _decoded(b"".join(raw), whole=True)
    head, tail, size = [], [], 0
    for chunk in raw:
        head.append(chunk[: window - size])
        size += len(head[-1])
        if size >= window:
            break
    size = 0
    for chunk in reversed(raw):
        tail.append(chunk[max(len(chunk) - (window - size), 0) :])
        size += len(tail[-1])
        if size >= window:
            break
    tail_bytes = b"".join(reversed(tail))
    start = tail_bytes.find(b"\n\n")  # the first whole event of the tail begins after it
    return _decoded(b"".join(head), whole=False) + (_decoded(tail_bytes[start + 2 :], whole=True) if start >= 0 else [])


def _decoded(data: bytes, *, whole: bool) -> list[Any]:
    decoder = sse.Decoder()
    out = []
    for event in decoder.feed(data) + (decoder.flush() if whole else []):
        if event.data.strip() and event.data != b"[DONE]":
            try:
                out.append(orjson.loads(event.data))
            except orjson.JSONDecodeError:
                pass
    return out


@dataclass
class Ask:
    """One request for a provider, as every provider kind's `forward` takes it."""

    config: Any  # Config
    route: Any  # Route
    provider: Any  # the route's provider
    path: str  # /v1/messages or /v1/messages/count_tokens
    body: bytes  # the client's body, decoded from any content-encoding
    headers: dict[str, str]  # the client's headers, names in lower case
    envelope: a.Envelope | a.Request  # model and stream flag at least
    request: a.Request | None  # parsed whole, for the kinds that need it
    data: dict[str, Any] | None = None  # the body as JSON data, when a front already has it
    # Recording or replaying: bodies written the one canonical way, whatever the client's
    # spacing, so that a recording matches the same request from another version or client.
    canonical: bool = False


def parse(parser: Any, body: bytes) -> Any:
    try:
        return parser(body)
    except a.InvalidRequest as e:
        raise RelayError(str(e)) from None


def count_tokens_reply(body: bytes) -> Reply:
    """count_tokens answered here, with the local estimate."""
    req = parse(a.parse_count_tokens, body)
    return Reply(200, orjson.dumps({"input_tokens": tokens.count_request(req)}))


class FrontExchange:
    """A provider kind's exchange seen through a front other than Anthropic's: its answers,
    in hub form, come out in the client's protocol."""

    def __init__(self, inner: Any, front: Any) -> None:
        self.inner = inner
        self.front = front
        self.first_byte: float | None = None
        # Reasoning tokens are known to the provider's translator, at the end.
        front.reasoning_tokens = lambda: getattr(inner, "reasoning_tokens", 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def translator(self) -> Any:
        # A stream the kind would pass through as it is (Anthropic events) is read into
        # events too, for the front to write.
        translator = self.inner.translator()
        return translator if translator is not None else self.inner.reader()

    def reply(self, status: int, headers: dict[str, str], body: bytes) -> Reply:
        reply = self.inner.reply(status, headers, body)
        return Reply(*self.front.reply(reply.status, reply.body, reply.headers))


def provider_headers(provider: Any, stream: bool, more: dict[str, str] | None = None) -> dict[str, str]:
    """The headers of a JSON request to an OpenAI-style provider: what the answer may be, the
    provider's key as a Bearer token (unless `more` signs it otherwise), then its own headers."""
    headers = {
        "content-type": JSON,
        "accept": "text/event-stream" if stream else JSON,
        "accept-encoding": "identity",  # the answer is read as raw bytes
    }
    if provider.key:
        headers["authorization"] = "Bearer " + provider.key
    headers.update(more or {})
    headers.update(provider.headers)
    return headers


def checked(req: a.Request) -> a.Request:
    """The request with its `max_tokens` checked (below 1: a 400; huge: clamped)."""
    try:
        req.max_tokens = a.checked_max_tokens(req.max_tokens)
    except a.InvalidRequest as e:
        raise RelayError(str(e)) from None
    return req
