"""Provider kinds `openai-responses` (the Responses API with a key) and `chatgpt` (a ChatGPT
subscription through the Codex backend, signed in with OAuth: see `oauth`).

Rules for the Codex backend, beyond the translation (`translate/responses_request.py`):
- headers as the Codex CLI sends them: `originator: codex_cli_rs`, a Codex-style User-Agent,
  `OpenAI-Beta: responses=experimental`, `session_id` (the client's session, so the backend's
  prompt cache follows one conversation), `Accept: text/event-stream`; `Authorization` and
  `chatgpt-account-id` are added when the request is sent, from the account's fresh token;
- it always streams: a client that wants one message gets it rebuilt from the stream;
- a usage limit (429 `usage_limit_reached`) → Anthropic 429 `rate_limit_error` with
  `retry-after` from the reset time, and a message saying when the limit resets;
- the `x-codex-*` usage headers (plan, percent used, windows) are kept for the flow summary.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


import orjson

from ..config import ResponsesProvider, Route
from ..errors import scrub, upstream_message
from ..exchange import Answers, Ask, checked, provider_headers, Forward, Reply, error_reply, events_reply, is_event_stream, upstream_error
from ..protocols import openai_responses as r
from ..translate.responses_request import to_responses
from ..translate.responses_response import ResponsesTranslator, when_reset

needs_request = True

CODEX_VERSION = "0.144.0"  # the Codex CLI release whose client this one presents as
USER_AGENT = f"codex_cli_rs/{CODEX_VERSION} (Linux; x86_64) llmrelay"


def counts_tokens(provider: ResponsesProvider) -> bool:
    return False


def forward(ask: Ask) -> Forward:
    req, route, provider = checked(ask.request), ask.route, ask.provider
    stream = provider.codex or (req.stream and provider.supports_streaming)
    body, names, session = to_responses(req, route, provider, stream=stream)
    more, account = {}, None
    if provider.codex:
        more = {
            "authorization": "Bearer (added when sent)",
            "originator": "codex_cli_rs",
            "user-agent": USER_AGENT,
            "version": CODEX_VERSION,
            "openai-beta": "responses=experimental",
            "session_id": session or str(uuid.uuid4()),
        }
        account = (provider.account, provider.issuer.rstrip("/"))
    headers = provider_headers(provider, stream, more)
    exchange = ResponsesExchange(
        client_model=req.model,
        route=route,
        provider=provider,
        client_stream=req.stream,
        tool_names=names.original,
        input_estimate=len(ask.body) // 4,
        secrets=ask.config.secrets,
        secret_headers=("authorization", "chatgpt-account-id", *(name.lower() for name in provider.headers)),
    )
    scheme, host, port, prefix = provider.target
    return Forward((scheme, host, port, prefix + "/responses"), headers, orjson.dumps(body), exchange, account)


@dataclass
class ResponsesExchange(Answers):
    client_model: str
    route: Route
    provider: ResponsesProvider
    client_stream: bool
    tool_names: dict[str, str]
    input_estimate: int
    secrets: tuple[str, ...]
    secret_headers: tuple[str, ...] = ()
    started: float = field(default_factory=time.monotonic)
    count_tokens_body: bytes | None = None
    used: ResponsesTranslator | None = None
    first_byte: float | None = None
    limits: dict[str, str] = field(default_factory=dict)  # the x-codex-* usage headers

    @property
    def reasoning_tokens(self) -> int:
        return self.used.reasoning_tokens if self.used else 0

    @property
    def usage(self) -> dict[str, int] | None:
        return self.used.usage if self.used else None

    def began(self, status: int, headers: dict[str, str]) -> None:
        self.limits = {k: v for k, v in headers.items() if k.startswith("x-codex-")}

    def stream_ended(self, raw: list[bytes]) -> None:
        pass

    def translator(self) -> ResponsesTranslator:
        self.used = ResponsesTranslator(model=self.client_model, input_tokens=self.input_estimate, tool_names=self.tool_names,
                                        origin=self.provider.origin, summary_as_text=self.provider.codex)
        return self.used

    def reader(self) -> ResponsesTranslator:
        return self.translator()

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> Reply:
        if not 200 <= status < 300:
            return self.error(status, headers, body)
        translator = self.translator()
        if is_event_stream(headers, body):
            events = translator.feed(body) + translator.finish()
        else:
            events = translator.whole(body)
        return events_reply(events, self.client_stream)

    def error(self, status: int, headers: dict[str, str], body: bytes) -> Reply:
        """An HTTP error from the provider → the client's error; usage limits say when they
        reset, and `retry-after` carries it."""
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if status == 429 and isinstance(error, dict):
            reset = r.limit_reset(error, time.time())
            if reset is not None:
                plan = f" ({error['plan_type']} plan)" if isinstance(error.get("plan_type"), str) else ""
                message = scrub(upstream_message(body, headers.get("content-type", "")), self.secrets)
                text = f"{self.route.provider}: {message}{plan}; it resets {when_reset(reset)}"
                headers = {"retry-after": str(max(int(reset), 1))}
                if reset > 60:  # the SDKs would retry within a minute whatever retry-after says
                    headers["x-should-retry"] = "false"
                return error_reply(429, text, headers)
        return upstream_error(status, headers, body, self.who, self.secrets)
