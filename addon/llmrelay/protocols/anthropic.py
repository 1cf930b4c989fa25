"""Anthropic Messages: the hub format every translator reads from or writes to.

Requests are decoded into these types at the boundary, with msgspec: a Claude Code request
is 50 to 500 KB and arrives on every turn, and msgspec decodes it into typed structs several
times faster than pydantic. Unknown fields are skipped, so a field a client adds tomorrow
(`context_management`, `output_config`, ...) never breaks a request; translators decide
explicitly what they drop. Tool schemas and tool inputs stay raw JSON (`msgspec.Raw`): they
are only ever passed on, so they are neither parsed into Python objects nor encoded again.

Responses and stream events are produced as plain dicts by the builders at the end of this
module, in the exact shape the Anthropic API sends, and read back in the tests through the
official SDK.
"""

from __future__ import annotations

import os
import re
import string
from typing import Any, Literal

import msgspec
import orjson


class _Block(msgspec.Struct, tag_field="type"):
    pass


# --- request content blocks ---------------------------------------------------------------


class Base64Source(msgspec.Struct, tag="base64", tag_field="type"):
    media_type: str
    data: str


class URLSource(msgspec.Struct, tag="url", tag_field="type"):
    url: str


class TextBlock(_Block, tag="text"):
    text: str


class ImageBlock(_Block, tag="image"):
    source: Base64Source | URLSource


class DocumentBlock(_Block, tag="document"):
    source: dict[str, Any]
    title: str | None = None


class ToolUseBlock(_Block, tag="tool_use"):
    id: str
    name: str
    input: msgspec.Raw = msgspec.Raw(b"{}")


class ThinkingBlock(_Block, tag="thinking"):
    thinking: str = ""
    signature: str | None = None


class RedactedThinkingBlock(_Block, tag="redacted_thinking"):
    data: str = ""


class ToolReferenceBlock(_Block, tag="tool_reference"):
    """Inside a tool search's result: makes a deferred tool available from then on."""

    tool_name: str


class ToolResultBlock(_Block, tag="tool_result"):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock | DocumentBlock | ToolReferenceBlock] | None = None
    is_error: bool = False


Block = TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock


# --- request ------------------------------------------------------------------------------


class Message(msgspec.Struct):
    # "system" appears inside `messages` from Claude Code 2.1.154 on.
    role: Literal["user", "assistant", "system"]
    content: str | list[Block]


class SystemText(msgspec.Struct):
    text: str
    type: str = "text"


class Tool(msgspec.Struct):
    name: str
    description: str | None = None
    input_schema: msgspec.Raw = msgspec.Raw()  # empty when absent
    type: str | None = None  # "custom" or absent for client tools; server tools carry a version
    # Hidden from the model until a `tool_reference` block (from a tool search) names it.
    defer_loading: bool = False


class ToolChoice(msgspec.Struct):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


class Thinking(msgspec.Struct):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class Metadata(msgspec.Struct):
    user_id: str | None = None


class Request(msgspec.Struct):
    model: str
    messages: list[Message]
    max_tokens: int | None = None  # required by the API; a missing one gets the route's cap
    system: str | list[SystemText] | None = None
    stream: bool = False
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    # Raw: Claude Code sends the same tools on every turn, so their translation is cached
    # by these bytes (see translate.chat_request).
    tools: msgspec.Raw = msgspec.Raw()  # empty when absent
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    metadata: Metadata | None = None
    output_config: dict[str, Any] | None = None


class CountTokensRequest(msgspec.Struct):
    messages: list[Message]
    model: str = ""
    system: str | list[SystemText] | None = None
    tools: list[Tool] | None = None


class InvalidRequest(ValueError):
    """The body is not valid JSON, or not a valid request; the message says where."""


def _decoder(kind: type) -> Any:
    # Lax: a client sending 1.0 for an integer, as JavaScript may, is still understood.
    decode = msgspec.json.Decoder(kind, strict=False).decode

    def parse(body: bytes | str) -> Any:
        try:
            return decode(body)
        except msgspec.ValidationError as e:
            raise InvalidRequest(_where(str(e))) from None
        except msgspec.DecodeError as e:
            raise InvalidRequest(f"invalid JSON: {e}") from None
        except RecursionError:
            raise InvalidRequest("the request is nested too deeply") from None

    return parse


# No API takes more than this (a 32-bit int); larger values are clamped, not passed on to fail.
MAX_TOKENS = 2**31 - 1


def checked_max_tokens(value: Any) -> Any:
    """`max_tokens` below 1 is refused; a huge one is clamped."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise InvalidRequest("max_tokens: must be at least 1")
        return min(value, MAX_TOKENS)
    return value


def _where(message: str) -> str:
    """msgspec's "Expected `str`, got `int` - at `$.messages[0].role`" → "messages[0].role: …"."""
    text, sep, path = message.rpartition(" - at `$")
    return f"{path.rstrip('`').lstrip('.')}: {text}" if sep else message


class Envelope(msgspec.Struct):
    """What routing needs: read first, before deciding how (and whether) to translate."""

    model: str
    stream: bool = False


parse_envelope = _decoder(Envelope)
parse_request = _decoder(Request)
parse_count_tokens = _decoder(CountTokensRequest)
parse_tools = _decoder(list[Tool])


def system_text(system: str | list[SystemText] | None) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    return "\n\n".join(block.text for block in system if block.text)


def is_server_tool(tool: Tool) -> bool:
    """Server tools (web_search_20250305, code_execution_...) run on Anthropic's side."""
    return tool.type not in (None, "custom") and not tool.input_schema


# --- ids ----------------------------------------------------------------------------------

_ALPHABET = string.ascii_letters + string.digits


# Random bytes map onto the 62 characters through a 256-entry table: one system call and one
# C-level pass per id (a `secrets.choice` per character costs a system call each). The
# slight unevenness of 256 over 62 does not matter for ids that only need to be unique.
_ID_TABLE = bytes((_ALPHABET * 5)[:256], "ascii")


def new_id(prefix: str) -> str:
    """An id in Anthropic's style: `msg_` or `toolu_` and 24 base62 characters."""
    return prefix + os.urandom(24).translate(_ID_TABLE).decode()


_TOOL_ID = re.compile(r"[A-Za-z0-9_-]+")


def valid_tool_id(value: str) -> bool:
    """Whether an id can stand as a `tool_use` id (Anthropic's pattern); others get a new one."""
    return bool(value) and _TOOL_ID.fullmatch(value) is not None


# --- response and stream event builders ---------------------------------------------------

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"]


def message_start(message_id: str, model: str, input_tokens: int) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 0,
            },
        },
    }


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def block_delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": usage,
    }


MESSAGE_STOP: dict[str, Any] = {"type": "message_stop"}


def error_event(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


_DELTA_PATHS = frozenset({("delta", "text"), ("delta", "thinking"), ("delta", "partial_json")})


def splits(event: str | None, path: tuple, prefix: bytes) -> bool:
    """Whether a huge string in an event may be read in pieces (`split`): a block delta's
    text, thinking or partial JSON, whose pieces mean what the whole does."""
    return path in _DELTA_PATHS and (event == "content_block_delta" or (event is None and b'"content_block_delta"' in prefix))


class Accumulator:
    """Rebuilds one message from stream events, for clients that did not ask for a stream.

    Rules: text and thinking deltas are collected per block and joined when the block stops
    (linear in the answer's size, however small the deltas); `input_json_delta` pieces are
    joined and parsed when the block stops, and input that is not complete JSON is an error,
    never a tool use; `message_delta` sets the stop reason and merges usage; an `error` event
    is kept and wins over the message.
    """

    _FIELDS = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}

    def __init__(self) -> None:
        self.message: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self._json: dict[int, list[str]] = {}
        self._parts: dict[tuple[int, str], list[str]] = {}

    def add(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if self.error is not None:
            return
        if kind == "message_start":
            self.message = dict(event["message"], content=[])
        elif kind == "content_block_start":
            block = dict(event["content_block"])
            self._blocks().append(block)
            if block["type"] in ("tool_use", "server_tool_use"):
                self._json[event["index"]] = []
        elif kind == "content_block_delta":
            index, delta = event["index"], event["delta"]
            field = self._FIELDS.get(delta["type"])
            if field is not None:
                self._parts.setdefault((index, field), []).append(delta[field])
            elif delta["type"] == "input_json_delta":
                self._json[index].append(delta["partial_json"])
            elif delta["type"] == "citations_delta":
                self._blocks()[index].setdefault("citations", []).append(delta["citation"])
        elif kind == "content_block_stop":
            self._stop(event["index"])
        elif kind == "message_delta":
            assert self.message is not None
            self.message.update(event["delta"])
            usage = self.message["usage"]
            usage.update({k: v for k, v in event.get("usage", {}).items() if v is not None})
        elif kind == "error":
            self.error = event

    def _stop(self, index: int) -> None:
        block = self._blocks()[index]
        for field in ("text", "thinking", "signature"):
            parts = self._parts.pop((index, field), None)
            if parts is not None:
                block[field] = block.get(field, "") + "".join(parts)
        pieces = self._json.pop(index, None)
        if pieces is not None:
            joined = "".join(pieces)
            try:
                block["input"] = orjson.loads(joined) if joined else {}
            except orjson.JSONDecodeError:
                self.error = error_event("api_error", f"the input of tool call {block.get('name')!r} is not complete JSON")

    def _blocks(self) -> list[dict[str, Any]]:
        assert self.message is not None
        return self.message["content"]


def message_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole message → the event sequence the API would have streamed for it.

    Rules: text → start with empty text (and `citations: []` when it has any), its citations as
    `citations_delta`, its text as one `text_delta`; thinking → empty start, one
    `thinking_delta`, one `signature_delta`; tool_use and server_tool_use → start with empty
    input, the input as one `input_json_delta`; any other block (redacted_thinking, web search
    results, ...) → started whole, as the API does; usage goes out in `message_delta`.
    """
    usage = dict(message.get("usage") or {})
    start = dict(message, content=[], stop_reason=None, stop_sequence=None)
    start["usage"] = {**usage, "output_tokens": min(usage.get("output_tokens", 0), 1)}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(message.get("content") or []):
        kind = block.get("type")
        if kind == "text":
            citations = block.get("citations")
            events.append(block_start(index, {"type": "text", "text": "", **({"citations": []} if citations else {})}))
            for citation in citations or ():
                events.append(block_delta(index, {"type": "citations_delta", "citation": citation}))
            if block.get("text"):
                events.append(block_delta(index, {"type": "text_delta", "text": block["text"]}))
        elif kind == "thinking":
            events.append(block_start(index, {"type": "thinking", "thinking": "", "signature": ""}))
            if block.get("thinking"):
                events.append(block_delta(index, {"type": "thinking_delta", "thinking": block["thinking"]}))
            if block.get("signature"):
                events.append(block_delta(index, {"type": "signature_delta", "signature": block["signature"]}))
        elif kind in ("tool_use", "server_tool_use"):
            events.append(block_start(index, dict(block, input={})))
            if block.get("input"):
                partial = orjson.dumps(block["input"]).decode()
                events.append(block_delta(index, {"type": "input_json_delta", "partial_json": partial}))
        else:
            events.append(block_start(index, block))
        events.append(block_stop(index))
    delta_usage = {k: v for k, v in usage.items() if k != "service_tier"}
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": message.get("stop_reason"), "stop_sequence": message.get("stop_sequence")},
            "usage": delta_usage,
        }
    )
    events.append(MESSAGE_STOP)
    return events
