"""Anthropic Messages: the hub format every translator reads from or writes to.

Requests are validated into these models at the boundary. They keep unknown fields
(`extra="allow"`), because clients send more than a translator needs (`context_management`,
`output_config`, new block types) and a new field must never break a request; translators
decide explicitly what they drop.

Responses and stream events are produced as plain dicts by the builders at the end of this
module, in the exact shape the Anthropic API sends, and read back in the tests through the
official SDK.
"""

from __future__ import annotations

import secrets
import string
from typing import Annotated, Any, Literal, Union

import orjson
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag


class _In(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- request content blocks ---------------------------------------------------------------


class Base64Source(_In):
    type: Literal["base64"]
    media_type: str
    data: str


class URLSource(_In):
    type: Literal["url"]
    url: str


class OtherSource(_In):
    type: str


ImageSource = Annotated[
    Union[
        Annotated[Base64Source, Tag("base64")],
        Annotated[URLSource, Tag("url")],
        Annotated[OtherSource, Tag("other")],
    ],
    Discriminator(lambda v: _tag(v, ("base64", "url"))),
]


class TextBlock(_In):
    type: Literal["text"]
    text: str


class ImageBlock(_In):
    type: Literal["image"]
    source: ImageSource


class DocumentBlock(_In):
    type: Literal["document"]
    source: dict[str, Any]
    title: str | None = None


class ToolUseBlock(_In):
    type: Literal["tool_use"]
    id: str
    name: str
    input: Any = None


class ToolResultBlock(_In):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[Block] | None = None
    is_error: bool = False


class ThinkingBlock(_In):
    type: Literal["thinking"]
    thinking: str = ""
    signature: str | None = None


class RedactedThinkingBlock(_In):
    type: Literal["redacted_thinking"]
    data: str = ""


class ToolReferenceBlock(_In):
    """Inside a tool search's result: makes a deferred tool available from then on."""

    type: Literal["tool_reference"]
    tool_name: str


class OtherBlock(_In):
    """A block type this version does not model (server tool results, search results, ...)."""

    type: str


_BLOCK_TYPES = ("text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking", "tool_reference")


def _tag(value: Any, known: tuple[str, ...]) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in known else "other"


Block = Annotated[
    Union[
        Annotated[TextBlock, Tag("text")],
        Annotated[ImageBlock, Tag("image")],
        Annotated[DocumentBlock, Tag("document")],
        Annotated[ToolUseBlock, Tag("tool_use")],
        Annotated[ToolResultBlock, Tag("tool_result")],
        Annotated[ThinkingBlock, Tag("thinking")],
        Annotated[RedactedThinkingBlock, Tag("redacted_thinking")],
        Annotated[ToolReferenceBlock, Tag("tool_reference")],
        Annotated[OtherBlock, Tag("other")],
    ],
    Discriminator(lambda v: _tag(v, _BLOCK_TYPES)),
]
ToolResultBlock.model_rebuild()


# --- request ------------------------------------------------------------------------------


class Message(_In):
    # "system" appears inside `messages` from Claude Code 2.1.154 on.
    role: Literal["user", "assistant", "system"]
    content: str | list[Block]


class SystemText(_In):
    type: Literal["text"] = "text"
    text: str


class Tool(_In):
    name: str
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None  # "custom" or absent for client tools; server tools carry a version
    # Hidden from the model until a `tool_reference` block (from a tool search) names it.
    defer_loading: bool = False


class ToolChoice(_In):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


class Thinking(_In):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class Metadata(_In):
    user_id: str | None = None


class Request(_In):
    model: str
    messages: list[Message]
    max_tokens: int | None = None  # required by the API; a missing one gets the route's default
    system: str | list[SystemText] | None = None
    stream: bool = False
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    metadata: Metadata | None = None
    output_config: dict[str, Any] | None = None


class CountTokensRequest(_In):
    model: str = ""
    messages: list[Message]
    system: str | list[SystemText] | None = None
    tools: list[Tool] | None = None


def system_text(system: str | list[SystemText] | None) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    return "\n\n".join(block.text for block in system if block.text)


def is_server_tool(tool: Tool) -> bool:
    """Server tools (web_search_20250305, code_execution_...) run on Anthropic's side."""
    return tool.type not in (None, "custom") and tool.input_schema is None


# --- ids ----------------------------------------------------------------------------------

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """An id in Anthropic's style: `msg_` or `toolu_` and 24 base62 characters."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(24))


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


class Accumulator:
    """Rebuilds one message from stream events, for clients that did not ask for a stream.

    Rules: text and thinking deltas are appended to their block; `input_json_delta` pieces are
    joined and parsed when the block stops; `message_delta` sets the stop reason and merges
    usage; an `error` event is kept and wins over the message.
    """

    def __init__(self) -> None:
        self.message: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self._json: dict[int, list[str]] = {}

    def add(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "message_start":
            self.message = dict(event["message"], content=[])
        elif kind == "content_block_start":
            block = dict(event["content_block"])
            self._blocks().append(block)
            if block["type"] in ("tool_use", "server_tool_use"):
                self._json[event["index"]] = []
        elif kind == "content_block_delta":
            block = self._blocks()[event["index"]]
            delta = event["delta"]
            match delta["type"]:
                case "text_delta":
                    block["text"] += delta["text"]
                case "thinking_delta":
                    block["thinking"] += delta["thinking"]
                case "signature_delta":
                    block["signature"] = block.get("signature", "") + delta["signature"]
                case "input_json_delta":
                    self._json[event["index"]].append(delta["partial_json"])
                case "citations_delta":
                    block.setdefault("citations", []).append(delta["citation"])
        elif kind == "content_block_stop":
            pieces = self._json.pop(event["index"], None)
            if pieces is not None:
                joined = "".join(pieces)
                self._blocks()[event["index"]]["input"] = orjson.loads(joined) if joined else {}
        elif kind == "message_delta":
            assert self.message is not None
            self.message.update(event["delta"])
            usage = self.message["usage"]
            usage.update({k: v for k, v in event.get("usage", {}).items() if v is not None})
        elif kind == "error":
            self.error = event

    def _blocks(self) -> list[dict[str, Any]]:
        assert self.message is not None
        return self.message["content"]
