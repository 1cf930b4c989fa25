"""Provider kind `anthropic`: APIs that speak Anthropic Messages themselves. Requests pass
cleaned of what the provider rejects; answers pass through, or are converted stream ⇄
message when the client asked for the other."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from .. import sse
from ..config import AnthropicProvider, Route
from ..errors import anthropic_status
from ..exchange import (EVENT_STREAM, Answers, Ask, Forward, Reply, count_tokens_reply, edge_events, events_reply, is_event_stream, sse_events,
                        upstream_error, usage_in)
from ..protocols import anthropic as a
from ..translate import anthropic_compat

needs_request = False  # the request's bytes go on; only its model and stream flag are read


def counts_tokens(provider: AnthropicProvider) -> bool:
    return provider.count_tokens


def forward(ask: Ask) -> Forward:
    config, route, provider, path, body, envelope = ask.config, ask.route, ask.provider, ask.path, ask.body, ask.envelope
    headers = ask.headers
    upstream_body, upstream_headers = anthropic_compat.prepare(body, route, provider, headers, ask.data, canonical=ask.canonical)
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


@dataclass
class AnthropicExchange(Answers):
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

    def stream_ended(self, raw: list[bytes]) -> None:
        """The provider's stream, passed through whole: read its usage."""
        self.usage = usage_in(edge_events(raw))

    def translator(self) -> None:
        """None: the stream goes to the client exactly as the provider sent it."""
        return None

    def reader(self) -> AnthropicEvents:
        return AnthropicEvents()

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> Reply:
        if self.count_tokens_body is not None:
            if status in (404, 405, 501):  # no count_tokens endpoint there
                return count_tokens_reply(self.count_tokens_body)
            if 200 <= status < 300:
                return Reply(status, body)
        if not 200 <= status < 300:
            return upstream_error(status, headers, body, self.who, self.secrets)
        if is_event_stream(headers, body):
            events = sse_events(body)
            self.usage = usage_in(events)
            if self.client_stream:
                return Reply(200, body, {"content-type": EVENT_STREAM, "cache-control": "no-cache"})
            return events_reply(events, stream=False)
        message = orjson.loads(body)
        self.usage = message.get("usage") if isinstance(message, dict) else None
        if not self.client_stream:
            return Reply(200, body)
        return events_reply(a.message_events(message), stream=True)


class AnthropicEvents:
    """An Anthropic event stream read as it arrives (for a client that wants one message),
    with the translators' interface: `feed`, `finish`, `fail`. Like them, it never takes a
    stream that ends without `message_stop` (or an `error`) for a whole answer."""

    def __init__(self) -> None:
        self.decoder = sse.Decoder(a.splits)
        self.ended = False
        self.error_type: str | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self._read(self.decoder.feed(data))

    def finish(self) -> list[dict[str, Any]]:
        events = self._read(self.decoder.flush())
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


