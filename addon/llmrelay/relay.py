"""What the relay does with one HTTP exchange, without any mitmproxy type.

`handle` looks at a client request and answers one of three ways:
- `Reply`: the relay answers itself (`/health`, `/v1/models`, `count_tokens`, bad requests);
- `Forward`: the request rewritten for a provider, with the exchange that will translate the
  provider's answer back (each provider kind in `providers/` makes its own);
- `Pass`: not ours (`models.default: passthrough`); the request goes on to the reverse-mode
  target untouched.

The addon applies these to the flow. Keeping them plain data makes every decision testable
without a proxy, and keeps the addon to a handful of lines per hook.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from . import gate
from .config import Config
from .errors import RelayError, scrub
from .exchange import (  # noqa: F401  (the answer types, for the addon and the tests)
    EVENT_STREAM,
    JSON,
    Answers,
    Ask,
    Forward,
    Pass,
    Reply,
    count_tokens_reply,
    encode,
    error_reply,
    events_reply,
    is_event_stream,
    message_reply,
    parse,
    upstream_error,
)
from .protocols import anthropic as a
from .providers import KINDS
from .providers.anthropic import AnthropicEvents, AnthropicExchange  # noqa: F401
from .providers.chat import Exchange  # noqa: F401
from .providers.responses import ResponsesExchange  # noqa: F401

log = logging.getLogger("llmrelay")


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
            kind = KINDS[provider.type]
            if counting and not kind.counts_tokens(provider):
                return count_tokens_reply(body)
            if isinstance(request, RelayError) and kind.needs_request:
                raise request
            parsed = request if isinstance(request, a.Request) else None
            return kind.forward(Ask(config, route, provider, path, body, headers, envelope, parsed))
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


def _try(parser: Callable[[bytes], Any], body: bytes) -> Any:
    """What `parse` returns, or the error it would raise."""
    try:
        return parse(parser, body)
    except RelayError as e:
        return e


def models_list(config: Config) -> dict[str, Any]:
    names = list(config.models.routes)
    data = [_model_entry(name) for name in names]
    return {"data": data, "has_more": False, "first_id": names[0] if names else None, "last_id": names[-1] if names else None}


def _model_entry(name: str) -> dict[str, Any]:
    return {"type": "model", "id": name, "display_name": name, "created_at": "2025-01-01T00:00:00Z"}




@dataclass
class PassExchange(Answers):
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
