"""Fronts: the protocols clients speak. Every provider kind answers in hub events (Anthropic
Messages stream events); a front turns them into its client's answer, and says how its
client is kept alive, how an error looks, and how a passed-through stream ends:

- `ping`: bytes that keep an idle stream alive;
- `encode(events) -> list[bytes]`: hub events → what the client gets, in one or more slices;
- `message(message) -> bytes`: a whole hub message → the client's JSON answer;
- `reply(status, body, headers)`: an answer in Anthropic's form → the client's;
- `error_event(type, message)`, `error_reply(status, message, headers)`: errors, inside a
  stream and before one;
- `terminal(data)`: whether whole passed-through events end the answer.

`ANTHROPIC` is the front of `/v1/messages` (hub events go out as they are);
`openai_chat.ChatFront` the front of `/v1/chat/completions`, one per answer.
"""

from __future__ import annotations

from typing import Any

import orjson

from .. import sse
from ..errors import anthropic_status, error_body
from ..protocols import anthropic as a

SLICE = 1 << 20  # characters written to the client between turns of the event loop
_DELTA_FIELDS = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}


class AnthropicFront:
    ping = sse.encode("ping", b'{"type": "ping"}')

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        self.secrets = secrets

    def terminal(self, data: bytes) -> bool:
        return b"message_stop" in data or b"event: error" in data

    def error_event(self, error_type: str, message: str) -> bytes:
        return sse.encode("error", orjson.dumps(a.error_event(error_type, message)))

    def error_reply(self, status: int, message: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        status, error_type = anthropic_status(status)
        return status, error_body(error_type, message), {"content-type": "application/json", **(headers or {})}

    def message(self, message: dict[str, Any]) -> bytes:
        return orjson.dumps(message)

    def reply(self, status: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        return status, body, headers

    def encode(self, events: list[dict[str, Any]]) -> list[bytes]:
        """Events as SSE bytes, in one piece, or in slices of about `SLICE` when a delta is
        huge (a provider that sends 20 MB in one event): the client gets the same text in
        several deltas, and the relay never spends one long turn of the event loop on it."""
        from ..exchange import encode  # (exchange imports fronts)

        big = [e for e in events if e["type"] == "content_block_delta"
               and len(e["delta"].get(_DELTA_FIELDS.get(e["delta"]["type"], ""), "")) > SLICE]
        if not big:
            return [encode(events)]
        from ..errors import scrub

        out = []
        for event in events:
            delta = event.get("delta") if event["type"] == "content_block_delta" else None
            name = _DELTA_FIELDS.get(delta["type"], "") if delta else ""
            value = delta.get(name, "") if delta else ""
            if len(value) <= SLICE:
                out.append(encode([event]))
                continue
            value = scrub(value, self.secrets)  # whole: a slice could cut a key in two
            for i in range(0, len(value), SLICE):
                out.append(encode([{**event, "delta": {**delta, name: value[i : i + SLICE]}}]))
        return out


ANTHROPIC = AnthropicFront()
