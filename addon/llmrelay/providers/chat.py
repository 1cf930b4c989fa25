"""Provider kind `openai`: OpenAI Chat Completions and the many APIs compatible with it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from ..config import OpenAIProvider, Route
from ..errors import scrub, scrub_bytes, upstream_message
from ..exchange import JSON, Answers, Ask, checked, edge_events, provider_headers, Forward, Reply, events_reply, is_event_stream, upstream_error
from ..protocols.openai_chat import Chunk, anthropic_usage, usage_of
from ..translate.chat_request import to_chat
from ..translate.chat_response import ChatTranslator
from ..translate.tool_text import TextToolTranslator

needs_request = True  # the parsed Anthropic request, not only its bytes


def counts_tokens(provider: OpenAIProvider) -> bool:
    return False  # no count_tokens there: the local estimate answers


def forward(ask: Ask) -> Forward:
    config, route, provider, req, size = ask.config, ask.route, ask.provider, checked(ask.request), len(ask.body)
    upstream_stream = req.stream and provider.supports_streaming
    chat, names = to_chat(req, route, provider, stream=upstream_stream)
    headers = provider_headers(provider, upstream_stream)
    exchange = Exchange(
        client_model=req.model,
        route=route,
        provider=provider,
        client_stream=req.stream,
        tool_names=names.original,
        input_estimate=size // 4,
        secrets=config.secrets,
        secret_headers=("authorization", *(name.lower() for name in provider.headers)),
        text_tools=names.text_tools,
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
    text_tools: set[str] | None = None  # tool_format xml: the tools offered in the system prompt
    first_byte: float | None = None  # monotonic time the provider's answer began

    @property
    def reasoning_tokens(self) -> int:
        return self.used.reasoning_tokens if self.used else 0

    @property
    def usage(self) -> dict[str, int] | None:
        return self.used.usage if self.used else None

    def stream_ended(self, raw: list[bytes]) -> None:
        pass  # the translator already read the usage on the way

    def translator(self) -> ChatTranslator:
        self.used = ChatTranslator(model=self.client_model, input_tokens=self.input_estimate, tool_names=self.tool_names)
        if self.text_tools:  # tool_format xml: the model writes its calls in its text
            return TextToolTranslator(self.used, self.text_tools)
        return self.used

    def reader(self) -> ChatTranslator:
        """Reads a streamed answer as it arrives, for a client that wants one message."""
        return self.translator()

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> Reply:
        if not 200 <= status < 300:
            return upstream_error(status, headers, body, self.who, self.secrets)
        translator = self.translator()
        if is_event_stream(headers, body):
            events = translator.feed(body) + translator.finish()
        else:
            events = translator.whole(body)
        return events_reply(events, self.client_stream)




def passed(ask: Ask, chat: dict, front: Any) -> Forward:
    """An OpenAI client's request for this kind: nothing to translate. The model and the key
    are rewritten; the answer comes back as the provider sent it."""
    route, provider = ask.route, ask.provider
    stream = bool(chat.get("stream"))
    headers = provider_headers(provider, stream)
    exchange = ChatPassExchange(
        client_model=chat["model"], route=route, provider=provider, client_stream=stream, front=front,
        secrets=ask.config.secrets, secret_headers=("authorization", *(name.lower() for name in provider.headers)),
    )
    scheme, host, port, prefix = provider.target
    return Forward((scheme, host, port, prefix + "/chat/completions"), headers, orjson.dumps({**chat, "model": route.model}), exchange)


@dataclass
class ChatPassExchange(Answers):
    """An OpenAI client in front of an OpenAI-compatible provider: the stream goes on
    untouched, whole events at a time; usage is read from it on the way."""

    client_model: str
    route: Route
    provider: OpenAIProvider
    client_stream: bool
    front: Any
    secrets: tuple[str, ...]
    secret_headers: tuple[str, ...] = ()
    started: float = field(default_factory=time.monotonic)
    count_tokens_body: bytes | None = None
    usage: dict[str, int] | None = None
    reasoning_tokens: int = 0
    first_byte: float | None = None

    def translator(self) -> None:
        return None

    def reader(self) -> None:
        return None

    def streams(self, status: int, headers: dict[str, str]) -> bool:
        return 200 <= status < 300 and headers.get("content-type", "").startswith("text/event-stream")

    def stream_ended(self, raw: list[bytes]) -> None:
        for event in reversed(edge_events(raw)):
            if self._read_usage(event):
                return

    def _read_usage(self, answer: Any) -> bool:
        """Usage from a chunk or a whole answer, read as the translator reads it (Groq's
        `x_groq`, DeepSeek's cache hits); whether there was any."""
        if not isinstance(answer, dict):
            return False
        try:
            usage = usage_of(msgspec.convert({"usage": answer.get("usage"), "x_groq": answer.get("x_groq")}, Chunk, strict=False))
        except msgspec.ValidationError:
            return False
        if usage is None:
            return False
        self.usage, self.reasoning_tokens = anthropic_usage(usage)
        return True

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> Reply:
        kept = {k: v for k, v in headers.items() if k in ("content-type", "retry-after", "retry-after-ms")}
        if 200 <= status < 300:
            try:
                answer = orjson.loads(body)
            except orjson.JSONDecodeError:
                answer = None
            self._read_usage(answer)
            if is_event_stream(headers, body) and not self.client_stream:
                return Reply(*self.front.error_reply(502, f"{self.who}: the provider streamed an answer that was asked for as JSON"))
            return Reply(status, body, kept or {"content-type": JSON})
        try:
            error = orjson.loads(body)
        except orjson.JSONDecodeError:
            error = None
        if isinstance(error, dict) and isinstance(error.get("error"), dict):
            return Reply(status, scrub_bytes(body, tuple(s.encode() for s in self.secrets if len(s) >= 8)), kept)
        message = scrub(upstream_message(body, headers.get("content-type", "")), self.secrets)
        status_out, body_out, headers_out = self.front.error_reply(status, f"{self.who}: {message}", {k: v for k, v in kept.items() if k != "content-type"})
        return Reply(status_out, body_out, headers_out)
