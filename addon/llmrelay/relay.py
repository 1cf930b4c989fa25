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

import functools
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from pydantic import SecretStr

from . import gate, health
from .config import Config, Route
from .errors import RelayError, scrub
from .exchange import Answers, Ask, Forward, FrontExchange, Pass, Reply, count_tokens_reply, error_reply, labelled, parse
from .protocols import anthropic as a
from .fronts import openai_chat
from .providers import KINDS, chat

log = logging.getLogger("llmrelay")


def handle(config: Config, method: str, path: str, body: bytes, headers: dict[str, str] | None = None, *,
           canonical: bool = False) -> Reply | Forward | Pass:
    """`headers`: the client's request headers, names in lower case; `body` already decoded
    from any content-encoding; `canonical`: flows are being recorded or replayed (`Ask`)."""
    headers = headers or {}
    path = path.split("?", 1)[0].rstrip("/")
    if path.startswith("/v1/v1/"):  # ANTHROPIC_BASE_URL or an OpenAI base URL written with /v1
        path = path[3:]
    refused = gate.check(config.relay, method, path or "/", headers, len(body))
    if refused is not None:
        if path in CHAT_PATHS:  # an OpenAI client reads OpenAI's errors
            return Reply(*openai_chat.ChatFront("", False).reply(refused[0], refused[1], {}))
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
            parsed = request if isinstance(request, a.Request) else None
            route, rule = config.routed(envelope.model, parsed, headers, body) if not counting else (config.route(envelope.model), None)
            if route is None:
                return Pass(envelope.stream)  # on to the reverse-mode target, untouched
            provider = config.providers[route.provider]
            kind = KINDS[provider.type]
            if counting and not kind.counts_tokens(provider):
                return count_tokens_reply(body)
            if isinstance(request, RelayError) and kind.needs_request:
                raise request
            def make(route: Route, provider: Any, label: str) -> Forward:
                return labelled(KINDS[provider.type].forward(Ask(config, route, provider, path, body, headers, envelope, parsed,
                                                                 canonical=canonical)), label)

            forward = _chain(config, route, make, lambda r: parsed is not None or not KINDS[config.providers[r.provider].type].needs_request)
            if rule is not None:
                forward.exchange.rule = f"rules.{rule}"  # for the summary and the usage record
            return forward
        if path in CHAT_PATHS:
            if method != "POST":
                return _chat_error(405, f"{path} takes POST, not {method}")
            return _chat(config, body, headers)
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


CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")


def _chat(config: Config, body: bytes, headers: dict[str, str]) -> Reply | Forward:
    """The OpenAI front: a Chat request, routed like any other (`fronts.openai_chat`)."""
    try:
        hub, options = openai_chat.to_hub(body)
    except RelayError as e:
        return _chat_error(e.status, scrub(str(e), config.secrets))
    if config.rules:
        try:
            facts = parse(a.parse_request, orjson.dumps(hub))
        except RelayError:
            facts = None
        route, _ = config.routed(hub["model"], facts, headers, orjson.dumps(hub))
    else:
        route = config.route(hub["model"])
    if route is None:
        return _chat_error(404, f"model {hub['model']!r} does not route anywhere in this relay")
    provider = config.providers[route.provider]
    front = openai_chat.ChatFront(hub["model"], options["include_usage"])
    structured = openai_chat.wants_format(options)

    def make(route: Route, provider: Any, label: str) -> Forward:
        kind = KINDS[provider.type]
        data = dict(hub)
        if provider.type == "anthropic":
            _for_anthropic(data)
        hub_body = orjson.dumps(data)
        request = parse(a.parse_request, hub_body) if kind.needs_request else None
        envelope = request or parse(a.parse_envelope, hub_body)
        forward = kind.forward(Ask(config, route, provider, "/v1/messages", hub_body, {}, envelope, request, data))
        forward.exchange = FrontExchange(forward.exchange, front)
        return labelled(forward, label)

    # A fallback that cannot give a structured answer is left out when one is asked for.
    usable = lambda r: not structured or config.providers[r.provider].type == "openai"  # noqa: E731
    if provider.type == "openai":  # the same protocol: passed through, not translated twice
        def passed(route: Route, provider: Any, label: str) -> Forward:
            return labelled(chat.passed(Ask(config, route, provider, "/v1/chat/completions", body, headers, None, None), options["chat"], front), label)

        forward = _chain(config, route, passed, usable, fallbacks=False)
        forward.fallbacks += _fallbacks(config, route, make, usable)  # (other providers: translated)
        return forward
    if structured:
        return _chat_error(400, f"response_format is not supported by the {provider.type} provider {route.provider!r}")
    try:
        return _chain(config, route, make, usable)
    except RelayError as e:
        return _chat_error(e.status, scrub(str(e), config.secrets))


def _chain(config: Config, route: Route, make: Callable[..., Forward], usable: Callable[[Route], bool],
           fallbacks: bool = True) -> Forward:
    """The route's request, and what to try when its provider fails, each made only if it is
    needed: the other keys of a key pool, then the route's fallbacks (and their keys)."""
    first, *others = _keys(config, route)
    forward = make(route, *first)
    forward.fallbacks = [functools.partial(make, route, *option) for option in others]
    if fallbacks:
        forward.fallbacks += _fallbacks(config, route, make, usable)
    return forward


def _fallbacks(config: Config, route: Route, make: Callable[..., Forward], usable: Callable[[Route], bool]) -> list[Any]:
    return [functools.partial(make, fallback, *option)
            for fallback in route.fallbacks if usable(fallback) for option in _keys(config, fallback)]


_TURNS: dict[str, itertools.count] = {}  # a key pool's next first key, per provider
_KEYED: dict[tuple[int, int], Any] = {}  # (provider, key) → the provider with that key


def _keys(config: Config, route: Route) -> list[tuple[Any, str]]:
    """The provider's keys to try in order, as (provider with that key, label): a pool is used
    in turn, keys failing lately last."""
    provider = config.providers[route.provider]
    pool = getattr(provider, "pool", [])
    if len(pool) < 2:
        return [(provider, route.provider)]
    start = next(_TURNS.setdefault(route.provider, itertools.count()))
    order = [(start + i) % len(pool) for i in range(len(pool))]
    labels = {i: f"{route.provider} key {i + 1}" for i in order}
    order.sort(key=lambda i: health.cooling(labels[i]))  # (stable: the turn order otherwise)
    out = []
    for i in order:
        keyed = _KEYED.get((id(provider), i))
        if keyed is None:
            keyed = _KEYED[(id(provider), i)] = provider.model_copy(update={"api_key": SecretStr(pool[i]), "api_keys": []})
        out.append((keyed, labels[i]))
    return out


def _for_anthropic(hub: dict[str, Any]) -> None:
    """What the Anthropic API requires of a request an OpenAI client could leave out."""
    budget = (hub.get("thinking") or {}).get("budget_tokens") or 0
    limit = hub.get("max_tokens") or 16384
    hub["max_tokens"] = max(limit, budget + 4096) if budget else limit
    if budget:
        hub.pop("temperature", None)  # with thinking, only the default is accepted
        hub.pop("top_p", None)
    elif isinstance(hub.get("temperature"), (int, float)):
        hub["temperature"] = min(hub["temperature"], 1)  # OpenAI's range is 0–2, Anthropic's 0–1


def _chat_error(status: int, message: str) -> Reply:
    return Reply(*openai_chat.ChatFront("", False).error_reply(status, message))


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
    """The routed names, in a list both SDKs read: Anthropic's fields and OpenAI's side by side."""
    names = list(config.models.routes)
    data = [_model_entry(name) for name in names]
    return {"object": "list", "data": data, "has_more": False,
            "first_id": names[0] if names else None, "last_id": names[-1] if names else None}


def _model_entry(name: str) -> dict[str, Any]:
    return {"type": "model", "id": name, "display_name": name, "created_at": "2025-01-01T00:00:00Z",
            "object": "model", "created": 1735689600, "owned_by": "llmrelay"}




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

    def stream_ended(self, raw: list[bytes]) -> None:
        pass

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> Reply:
        kept = {k: v for k, v in headers.items() if k not in HOP_BY_HOP}
        return Reply(status, body, kept)


HOP_BY_HOP = frozenset("connection keep-alive proxy-connection transfer-encoding te trailer upgrade content-length content-encoding".split())
