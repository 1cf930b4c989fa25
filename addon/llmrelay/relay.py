"""What the relay does with one HTTP exchange, without any mitmproxy type.

`handle` looks at a client request and answers one of three ways:
- `Reply`: the relay answers itself (`/health`, `/v1/models`, `count_tokens`, bad requests);
- `Forward`: the request rewritten for a provider, with the `Exchange` that will translate
  the provider's answer back;
- `Pass`: not ours (`models.default: passthrough`); the request goes on to the reverse-mode
  target untouched.

The addon applies these to the flow. Keeping them plain data makes every decision testable
without a proxy, and keeps the addon to a handful of lines per hook.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import gate, sse, tokens
from .config import AnthropicProvider, Config, OpenAIProvider, Route
from .errors import RelayError, anthropic_status, error_body, scrub, status_of, upstream_message
from .protocols import anthropic as a
from .translate import anthropic_compat
from .translate.chat_request import to_chat
from .translate.chat_response import ChatTranslator

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
    exchange: Exchange


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    status, error_type = anthropic_status(status)
    return Reply(status, error_body(error_type, message), {"content-type": JSON, **(headers or {})})


def handle(config: Config, method: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> Reply | Forward | Pass:
    """`headers`: the client's request headers, names in lower case; `body` already decoded
    from any content-encoding."""
    headers = headers or {}
    path = path.split("?", 1)[0].rstrip("/")
    refused = gate.check(config.relay, method, path or "/", headers, len(body))
    if refused is not None:
        return Reply(refused[0], refused[1])
    try:
        if path in ("/v1/messages", "/v1/messages/count_tokens"):
            if method != "POST":
                return error_reply(405, f"{path} takes POST, not {method}")
            try:
                body.decode("utf-8")  # JSON is UTF-8; raw tool inputs and schemas are passed on as bytes
            except UnicodeDecodeError as e:
                raise RelayError(f"the request body is not valid UTF-8 (at byte {e.start})") from None
            counting = path.endswith("count_tokens")
            # An OpenAI-compatible route needs the whole request read, so read it once, up
            # front; what this relay cannot read may still go to an Anthropic-compatible
            # route or pass through, which only need the model.
            request: a.Request | RelayError | None = None if counting else _try(a.parse_request, body)
            envelope = request if isinstance(request, a.Request) else parse(a.parse_envelope, body)
            route = config.route(envelope.model)
            if route is None:
                return Pass(envelope.stream)  # on to the reverse-mode target, untouched
            provider = config.providers[route.provider]
            if isinstance(provider, AnthropicProvider) and (provider.count_tokens or not counting):
                return _anthropic(config, route, provider, path, body, headers, envelope)
            if counting:
                return _count_tokens(body)
            if isinstance(request, RelayError):
                raise request
            return _messages(config, route, provider, request, len(body))
        if path == "/v1/models" and method == "GET":
            return Reply(200, orjson.dumps(models_list(config)))
        if path.startswith("/v1/models/") and method == "GET":
            name = path.removeprefix("/v1/models/")
            if config.route(name) is not None:
                return Reply(200, orjson.dumps(_model_entry(name)))
            if config.models.default != "passthrough":
                return error_reply(404, f"model {name!r} does not route anywhere in this relay")
        if path in ("", "/health") and method in ("GET", "HEAD"):
            return Reply(200, b"" if method == "HEAD" else b'{"status":"ok"}')
    except RelayError as e:
        return error_reply(e.status, scrub(str(e), config.secrets))
    except Exception:  # a bug of ours must still answer in the client's protocol
        log.exception("llmrelay: handling %s %s failed", method, path)
        return error_reply(500, "the relay failed to handle this request; its log has the details")
    if config.models.default == "passthrough":
        return Pass(stream=False)
    if path in SERVED and method not in SERVED[path]:
        return error_reply(405, f"{path} takes {' or '.join(SERVED[path])}, not {method}")
    return error_reply(404, f"this relay does not serve {method} {path or '/'}")


# Paths the relay answers, and their methods (for a clear 405).
SERVED = {
    "/v1/messages": ("POST",),
    "/v1/messages/count_tokens": ("POST",),
    "/v1/models": ("GET",),
    "/health": ("GET", "HEAD"),
    "": ("GET", "HEAD"),
}


def parse(parser: Callable[[bytes], Any], body: bytes) -> Any:
    try:
        return parser(body)
    except a.InvalidRequest as e:
        raise RelayError(str(e)) from None


def _try(parser: Callable[[bytes], Any], body: bytes) -> Any:
    """What `parse` returns, or the error it would raise."""
    try:
        return parse(parser, body)
    except RelayError as e:
        return e


def _count_tokens(body: bytes) -> Reply:
    req = parse(a.parse_count_tokens, body)
    return Reply(200, orjson.dumps({"input_tokens": tokens.count_request(req)}))


def models_list(config: Config) -> dict[str, Any]:
    names = list(config.models.routes)
    data = [_model_entry(name) for name in names]
    return {"data": data, "has_more": False, "first_id": names[0] if names else None, "last_id": names[-1] if names else None}


def _model_entry(name: str) -> dict[str, Any]:
    return {"type": "model", "id": name, "display_name": name, "created_at": "2025-01-01T00:00:00Z"}



def _anthropic(
    config: Config,
    route: Route,
    provider: AnthropicProvider,
    path: str,
    body: bytes,
    headers: dict[str, str],
    envelope: a.Envelope | a.Request,
) -> Forward:
    upstream_body, upstream_headers = anthropic_compat.prepare(body, route, provider, headers)
    exchange = AnthropicExchange(
        client_model=envelope.model,
        route=route,
        provider=provider,
        client_stream=envelope.stream,
        secrets=config.secrets,
        secret_headers=("authorization", "x-api-key", *(name.lower() for name in provider.headers)),
        count_tokens_body=body if path.endswith("count_tokens") else None,
    )
    scheme, host, port, prefix = provider.target
    return Forward((scheme, host, port, prefix + path), upstream_headers, upstream_body, exchange)


def _messages(config: Config, route: Route, provider: OpenAIProvider, req: a.Request, size: int) -> Forward:
    try:
        req.max_tokens = a.checked_max_tokens(req.max_tokens)
    except a.InvalidRequest as e:
        raise RelayError(str(e)) from None
    upstream_stream = req.stream and provider.supports_streaming
    chat, names = to_chat(req, route, provider, stream=upstream_stream)
    headers = {
        "content-type": JSON,
        "accept": "text/event-stream" if upstream_stream else JSON,
        "accept-encoding": "identity",  # the stream hook reads raw bytes
    }
    if provider.key:
        headers["authorization"] = "Bearer " + provider.key
    headers.update(provider.headers)
    exchange = Exchange(
        client_model=req.model,
        route=route,
        provider=provider,
        client_stream=req.stream,
        tool_names=names.original,
        input_estimate=size // 4,
        secrets=config.secrets,
        secret_headers=("authorization", *(name.lower() for name in provider.headers)),
    )
    scheme, host, port, prefix = provider.target
    return Forward((scheme, host, port, prefix + "/chat/completions"), headers, orjson.dumps(chat), exchange)


class _Answers:
    """What every exchange does with an answer; each kind says how in `stream` and `_reply`."""

    provider: Any
    client_stream: bool

    def streams(self, status: int, headers: dict[str, str]) -> bool:
        """Whether the answer goes on as it arrives (else it is read whole, then `reply`)."""
        return (
            self.client_stream
            and 200 <= status < 300
            and headers.get("content-type", "").startswith("text/event-stream")
            and headers.get("content-encoding", "identity").lower() in ("", "identity")
        )

    def reply(self, status: int, headers: dict[str, str], body: bytes) -> Reply:
        """A whole upstream answer → the client's answer (message, stream or error)."""
        try:
            return self._reply(status, headers, body)
        except Exception:
            log.exception("llmrelay: reading a response from %s failed", self.provider.host)
            return error_reply(500, "the relay failed to read the provider's response; its log has the details")

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> Reply:
        raise NotImplementedError


@dataclass
class Exchange(_Answers):
    """One /v1/messages request in flight: enough to translate whatever comes back."""

    client_model: str
    route: Route
    provider: OpenAIProvider
    client_stream: bool
    tool_names: dict[str, str]
    input_estimate: int
    secrets: tuple[str, ...]
    # The request headers that carry credentials (ours, and any configured per provider).
    secret_headers: tuple[str, ...] = ()
    started: float = field(default_factory=time.monotonic)
    count_tokens_body: bytes | None = None  # never set here: count_tokens is answered locally
    used: ChatTranslator | None = None  # the last translator, for its usage
    first_byte: float | None = None  # monotonic time the provider's answer began

    @property
    def reasoning_tokens(self) -> int:
        return self.used.reasoning_tokens if self.used else 0

    @property
    def usage(self) -> dict[str, int] | None:
        return self.used.usage if self.used else None

    def stream_ended(self, raw: bytes) -> None:
        pass  # the translator already read the usage on the way

    def translator(self) -> ChatTranslator:
        self.used = ChatTranslator(model=self.client_model, input_tokens=self.input_estimate, tool_names=self.tool_names)
        return self.used

    def reader(self) -> ChatTranslator:
        """Reads a streamed answer as it arrives, for a client that wants one message."""
        return self.translator()

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> Reply:
        if not 200 <= status < 300:
            return upstream_error(status, headers, body, self.provider.host, self.secrets)
        translator = self.translator()
        if is_event_stream(headers, body):
            events = translator.feed(body) + translator.finish()
        else:
            events = translator.whole(body)
        return events_reply(events, self.client_stream)


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


@dataclass
class AnthropicExchange(_Answers):
    """One request to an Anthropic-compatible provider: answers pass through when the client
    asked for what came back, and are converted (stream ⇄ message) when not."""

    client_model: str
    route: Route
    provider: AnthropicProvider
    client_stream: bool
    secrets: tuple[str, ...]
    secret_headers: tuple[str, ...]
    count_tokens_body: bytes | None = None  # for the local estimate when the provider has none
    started: float = field(default_factory=time.monotonic)
    usage: dict[str, int] | None = None
    first_byte: float | None = None

    def stream_ended(self, raw: bytes) -> None:
        """The provider's stream, passed through whole: read its usage."""
        self.usage = _usage_in(_events(raw))

    def translator(self) -> None:
        """None: the stream goes to the client exactly as the provider sent it."""
        return None

    def reader(self) -> AnthropicEvents:
        return AnthropicEvents()

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> Reply:
        if self.count_tokens_body is not None:
            if status in (404, 405, 501):  # no count_tokens endpoint there
                return _count_tokens(self.count_tokens_body)
            if 200 <= status < 300:
                return Reply(status, body)
        if not 200 <= status < 300:
            return upstream_error(status, headers, body, self.provider.host, self.secrets)
        if is_event_stream(headers, body):
            events = _events(body)
            self.usage = _usage_in(events)
            if self.client_stream:
                return Reply(200, body, {"content-type": EVENT_STREAM, "cache-control": "no-cache"})
            return events_reply(events, stream=False)
        message = orjson.loads(body)
        self.usage = message.get("usage") if isinstance(message, dict) else None
        if not self.client_stream:
            return Reply(200, body)
        return events_reply(a.message_events(message), stream=True)


def _usage_in(events: Iterable[dict[str, Any]]) -> dict[str, int] | None:
    """Usage from message_start, updated by message_delta, as the SDK accumulates it."""
    usage: dict[str, Any] | None = None
    for event in events:
        if event.get("type") == "message_start":
            usage = dict(event.get("message", {}).get("usage") or {})
        elif event.get("type") == "message_delta" and usage is not None:
            usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
    return usage


def _events(body: bytes) -> list[dict[str, Any]]:
    decoder = sse.Decoder()
    return [orjson.loads(e.data) for e in decoder.feed(body) + decoder.flush() if e.data.strip()]


def encode(events: Iterable[dict[str, Any]]) -> bytes:
    return b"".join([sse.encode(event["type"], orjson.dumps(event)) for event in events])


class AnthropicEvents:
    """An Anthropic event stream read as it arrives (for a client that wants one message),
    with the translators' interface: `feed`, `finish`, `fail`. Like them, it never takes a
    stream that ends without `message_stop` (or an `error`) for a whole answer."""

    def __init__(self) -> None:
        self._decoder = sse.Decoder()
        self.ended = False
        self.error_type: str | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self._read(self._decoder.feed(data))

    def finish(self) -> list[dict[str, Any]]:
        events = self._read(self._decoder.flush())
        if not self.ended:
            events += self.fail(502, "the provider's stream ended before the answer was complete")
        return events

    def fail(self, status: int, message: str) -> list[dict[str, Any]]:
        self.ended = True
        self.error_type = anthropic_status(status)[1]
        return [a.error_event(self.error_type, message)]

    def _read(self, raw: list[sse.Event]) -> list[dict[str, Any]]:
        events = []
        for event in raw:
            if self.ended or not event.data.strip():
                continue
            try:
                data = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                return events + self.fail(502, "the provider sent an event that is not JSON")
            events.append(data)
            if data.get("type") == "message_stop":
                self.ended = True
            elif data.get("type") == "error":
                self.ended = True
                self.error_type = (data.get("error") or {}).get("type")
        return events


@dataclass
class PassExchange(_Answers):
    """A request for the reverse-mode target (`models.default: passthrough`), sent on with the
    client's own credentials; its answer comes back as it is."""

    client_stream: bool
    provider: Any  # what error messages name: the target's host
    first_byte: float | None = None

    def streams(self, status: int, headers: dict[str, str]) -> bool:
        return 200 <= status < 300 and headers.get("content-type", "").startswith("text/event-stream")

    def translator(self) -> None:
        return None

    def stream_ended(self, raw: bytes) -> None:
        pass

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> Reply:
        kept = {k: v for k, v in headers.items() if k not in HOP_BY_HOP}
        return Reply(status, body, kept)


HOP_BY_HOP = frozenset("connection keep-alive proxy-connection transfer-encoding te trailer upgrade content-length content-encoding".split())
