"""Provider kind `openai`: OpenAI Chat Completions and the many APIs compatible with it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson

from ..config import Config, OpenAIProvider, Route
from ..errors import RelayError
from ..exchange import JSON, Answers, Ask, Forward, Reply, events_reply, is_event_stream, upstream_error
from ..protocols import anthropic as a
from ..translate.chat_request import to_chat
from ..translate.chat_response import ChatTranslator

needs_request = True  # the parsed Anthropic request, not only its bytes


def counts_tokens(provider: OpenAIProvider) -> bool:
    return False  # no count_tokens there: the local estimate answers


def forward(ask: Ask) -> Forward:
    config, route, provider, req, size = ask.config, ask.route, ask.provider, ask.request, len(ask.body)
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


@dataclass
class Exchange(Answers):
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


