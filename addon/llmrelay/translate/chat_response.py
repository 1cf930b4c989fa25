"""OpenAI Chat Completions answer (stream or JSON) → Anthropic Messages stream events.

One `ChatTranslator` serves one response. A stream is fed as network reads arrive; a whole
JSON completion is read as a single chunk whose choice carries `message` instead of `delta`,
so both take the same path. The events it returns are what the Anthropic API would have
sent: `message_start`, then content blocks with consecutive indices, each started, given
deltas and stopped before the next one starts, then `message_delta` and `message_stop`.

Rules, source → target:
- `content` and `refusal` text → a `text` block (a refusal is what the user must read);
- `reasoning_content`, `reasoning`, typed `thinking` parts, and `<think>…</think>` at the
  start of the text → a `thinking` block;
- `tool_calls` → `tool_use` blocks, keyed by the upstream `index` (by id, then position, when
  a provider omits it). A call opens once its name is known and streams its arguments as
  `input_json_delta`. A second call starts only when the open one's arguments are complete
  JSON; until then its pieces wait, so parallel calls interleaved by index still come out as
  whole, consecutive blocks. Empty or non-Anthropic ids (`functions.add:0`) get a `toolu_` id;
  shortened tool names are mapped back;
- `finish_reason` → `stop_reason` by `STOP_REASONS`; any tool call means `tool_use`;
- usage (last seen) → `message_delta.usage`: `prompt_tokens` minus cached → `input_tokens`,
  cached (`prompt_tokens_details.cached_tokens`, DeepSeek's `prompt_cache_hit_tokens`) →
  `cache_read_input_tokens`, `completion_tokens` → `output_tokens`;
- an `error` object in a chunk, or an `event: error` → an Anthropic `error` event, and the
  stream ends there;
- `[DONE]` or a `finish_reason` closes open blocks and the message; a stream whose bytes end
  without either was cut short, and ends with an `error` event (never as a success);
- a tool call whose arguments are not complete JSON when the answer ends is never closed as a
  tool use: the answer ends with an `error` event instead, so no agent acts on half a command;
- a huge chunk (a whole answer in one line) is read in pieces as it arrives when the long
  string is a delta's text or a call's arguments (`SPLIT`), unless a `finish_reason` comes
  before it.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from .. import sse
from ..errors import anthropic_status, error_status_in
from ..protocols import anthropic as a
from ..protocols.openai_chat import Chunk, DecodeError, Delta, ToolCallDelta, anthropic_usage, decode_chunk, usage_of

STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
    "eos": "end_turn",  # some llama.cpp builds
}

_TOOL_ID = re.compile(r"[A-Za-z0-9_-]+")
SPLIT = frozenset({"content", "reasoning_content", "reasoning", "refusal"})  # delta texts read in pieces
_FINISHED = re.compile(rb'"finish_reason"\s*:\s*"')


def _splits(event: str | None, path: tuple, prefix: bytes) -> bool:
    """Whether a huge string in a chunk may be read in pieces (`split`): pieces of a delta's
    text, or of a call's arguments, mean what the whole does."""
    if path[:1] != ("choices",) or path[2:3] != ("delta",) or _FINISHED.search(prefix):
        return False
    return (len(path) == 4 and path[3] in SPLIT) or (path[3:4] == ("tool_calls",) and path[-2:] == ("function", "arguments"))


class TranslationError(Exception):
    """The upstream said something the Anthropic protocol cannot carry faithfully."""


class _Call:
    __slots__ = ("key", "id", "name", "args", "index", "closed")

    def __init__(self, key: Any) -> None:
        self.key = key
        self.id = ""
        self.name = ""
        self.args: list[str] = []
        self.index: int | None = None  # the Anthropic block index once opened
        self.closed = False


class ChatTranslator:
    def __init__(self, *, model: str, input_tokens: int = 0, tool_names: dict[str, str] | None = None) -> None:
        self.model = model
        self.message_id = a.new_id("msg_")
        self._input_estimate = input_tokens
        self._tool_names = tool_names or {}
        self.decoder = sse.Decoder(_splits)
        self._events: list[dict[str, Any]] = []
        self._started = False
        self.ended = False  # message_stop or error sent
        self._open: str | None = None  # "text" | "thinking" | "tool"
        self._index = -1  # index of the last block started
        self._calls: dict[Any, _Call] = {}
        self._waiting: list[_Call] = []  # calls seen but not opened yet, in order
        self._current: _Call | None = None  # the open tool_use block
        self._think = _ThinkTags()
        self.finish_reason: str | None = None
        self.error_type: str | None = None  # of the error event that ended the answer
        self.usage: dict[str, int] | None = None
        self.reasoning_tokens = 0  # part of output_tokens; kept apart for usage records

    # --- input ------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Network bytes of an SSE stream → the Anthropic events they complete."""
        for event in self.decoder.feed(data):
            self._on_sse(event)
        return self._take()


    def finish(self) -> list[dict[str, Any]]:
        """End of the upstream bytes: whatever is still open is closed in protocol order."""
        for event in self.decoder.flush():
            self._on_sse(event)
        if not self.ended:
            if not self._started:
                self._fail(502, "the provider closed the stream before sending anything")
            elif self.finish_reason is None:
                self._fail(502, "the provider's stream ended before the answer was complete")
            else:
                try:
                    self._end()
                except TranslationError as e:
                    self._fail(502, str(e))
        return self._take()

    def whole(self, body: bytes) -> list[dict[str, Any]]:
        """A complete JSON `chat.completion` → the full event sequence."""
        try:
            self._on_json(body)
        except TranslationError as e:
            self._fail(502, str(e))
        return self.finish()

    def fail(self, status: int, message: str) -> list[dict[str, Any]]:
        """Stop with an error event (for failures outside the translator, e.g. a dead upstream)."""
        if not self.ended:
            self._fail(status, message)
        return self._take()

    def _take(self) -> list[dict[str, Any]]:
        events, self._events = self._events, []
        return events

    def _on_sse(self, event: sse.Event) -> None:
        if self.ended:
            return
        data = event.data
        try:
            if data == b"[DONE]":
                self._end()
            elif event.event == "error":
                self._on_error_payload(data)
            elif data:
                self._on_json(data)
        except TranslationError as e:
            self._fail(502, str(e))

    def _on_json(self, data: str | bytes) -> None:
        try:
            chunk = decode_chunk(data)
        except DecodeError:
            self._on_error_payload(data)
            return
        if chunk.error is not None:
            self._on_error(chunk.error)
            return
        self._on_chunk(chunk)

    def _on_error_payload(self, data: str | bytes) -> None:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = None
        if isinstance(payload, dict):
            self._on_error(payload.get("error", payload))
        else:
            text = data if isinstance(data, str) else data.decode("utf-8", "replace")
            self._fail(502, f"the provider sent something that is not a chat completion: {text[:200]}")

    def _on_error(self, error: Any) -> None:
        if isinstance(error, dict):
            message = error.get("message") or orjson.dumps(error).decode()
        else:
            message = str(error)
        self._fail(error_status_in(error), f"the provider reported an error mid-stream: {message}")

    def _fail(self, status: int, message: str) -> None:
        self.error_type = anthropic_status(status)[1]
        self._events.append(a.error_event(self.error_type, message))
        self.ended = True

    # --- chunks -----------------------------------------------------------------------

    def _on_chunk(self, chunk: Chunk) -> None:
        self._start()
        usage = usage_of(chunk)
        if usage is not None:
            self.usage, self.reasoning_tokens = anthropic_usage(usage)
        for choice in chunk.choices or ():
            if choice.index != 0:  # n > 1: Anthropic has one answer per message
                continue
            delta = choice.delta or choice.message
            if delta is not None:
                self._on_delta(delta)
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
                self._close_all()

    def _on_delta(self, delta: Delta) -> None:
        if delta.reasoning_content:
            self._thinking(delta.reasoning_content)
        if delta.reasoning:
            self._thinking(delta.reasoning)
        content = delta.content
        if isinstance(content, str):
            if self._think.done:  # past any <think> part: the common case, kept short
                self._text(content)
            elif content:
                for kind, text in self._think.split(content):
                    self._thinking(text) if kind == "thinking" else self._text(text)
        elif content:
            for part in content:  # typed parts (Mistral)
                if part.get("type") == "thinking":
                    self._thinking("".join(_texts(part.get("thinking"))))
                elif part.get("type") == "text":
                    self._text(part.get("text") or "")
        if delta.refusal:
            self._text(delta.refusal)
        if delta.tool_calls:
            for position, call in enumerate(delta.tool_calls):
                self._tool_delta(call, position)

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._events.append(a.message_start(self.message_id, self.model, self._input_estimate))

    # --- blocks -----------------------------------------------------------------------

    def _text(self, text: str) -> None:
        if text:
            if self._open != "text":
                self._open_block("text", {"type": "text", "text": ""})
            self._events.append(a.block_delta(self._index, {"type": "text_delta", "text": text}))

    def _thinking(self, text: str) -> None:
        if text:
            if self._open != "thinking":
                self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            self._events.append(a.block_delta(self._index, {"type": "thinking_delta", "thinking": text}))

    def _open_block(self, kind: str, block: dict[str, Any]) -> None:
        self._close()
        self._index += 1
        self._open = kind
        self._events.append(a.block_start(self._index, block))

    def _close(self) -> None:
        if self._open is not None:
            self._events.append(a.block_stop(self._index))
            if self._current is not None:
                self._current.closed = True
                self._current = None
            self._open = None

    def _close_all(self) -> None:
        """Finish reason or end: flush held text, open the calls still waiting (whole), close."""
        for call in self._calls.values():
            args = "".join(call.args)
            if args.strip() and not _complete_json(args):
                raise TranslationError(f"the answer ended before the arguments of tool call {call.name!r} were complete")
        for kind, text in self._think.flush():
            self._thinking(text) if kind == "thinking" else self._text(text)
        while self._waiting:
            self._open_call(self._waiting.pop(0))
        self._close()

    # --- tool calls -------------------------------------------------------------------

    def _tool_delta(self, delta: ToolCallDelta, position: int) -> None:
        call = self._call_for(delta, position)
        function = delta.function
        if delta.id and not call.id:
            call.id = delta.id
        piece = ""
        if function is not None:
            if function.name and not call.name:
                call.name = function.name
            arguments = function.arguments
            if isinstance(arguments, dict):
                piece = orjson.dumps(arguments).decode()
            elif arguments:
                piece = arguments
        if piece:
            if call.closed:
                raise TranslationError(f"the provider sent more arguments for tool call {call.name!r} after it ended")
            call.args.append(piece)
            if call is self._current:
                self._events.append(a.block_delta(self._index, {"type": "input_json_delta", "partial_json": piece}))
        self._advance()

    def _call_for(self, delta: ToolCallDelta, position: int) -> _Call:
        if delta.index is not None:
            key: Any = delta.index
        elif delta.id:
            key = ("id", delta.id)
        else:  # neither index nor id: only the position in this chunk says which call it is
            key = ("position", position)
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = _Call(key)
            self._waiting.append(call)
        return call

    def _advance(self) -> None:
        """Open waiting calls in order, as long as the open call's arguments are complete."""
        while self._waiting and self._waiting[0].name:
            current = self._current
            if current is not None and not _complete_json("".join(current.args)):
                return
            self._open_call(self._waiting.pop(0))

    def _open_call(self, call: _Call) -> None:
        if not _TOOL_ID.fullmatch(call.id):
            call.id = a.new_id("toolu_")
        name = self._tool_names.get(call.name, call.name)
        self._open_block("tool", {"type": "tool_use", "id": call.id, "name": name, "input": {}})
        self._current = call
        call.index = self._index
        if call.args:
            partial = "".join(call.args)
            self._events.append(a.block_delta(self._index, {"type": "input_json_delta", "partial_json": partial}))

    # --- end --------------------------------------------------------------------------

    def _end(self) -> None:
        self._start()
        self._close_all()
        stop = STOP_REASONS.get(self.finish_reason or "stop", "end_turn")
        if self._calls and stop != "max_tokens":
            stop = "tool_use"  # Ollama and others say "stop" after calling a tool
        usage = self.usage or {"output_tokens": 0}
        self._events.append(a.message_delta(stop, usage))
        self._events.append(a.MESSAGE_STOP)
        self.ended = True


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [t for item in value for t in _texts(item.get("text") if isinstance(item, dict) else item)]
    return []


def _complete_json(text: str) -> bool:
    if not text:
        return False
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


class _ThinkTags:
    """Splits `<think>…</think>` at the start of the text into thinking (Groq, Ollama and
    llama.cpp reasoning models that put their reasoning in the text). Only a few characters
    that may be the start of a tag are ever held back; the newlines after the closing tag,
    which only separate the two parts, are dropped."""

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self._state = "start"  # start → (thinking → after →) text
        self._held = ""

    @property
    def done(self) -> bool:
        """Everything from now on is text."""
        return self._state == "text"

    def split(self, text: str) -> list[tuple[str, str]]:
        if self._state == "text":
            return [("text", text)]
        text = self._held + text
        self._held = ""
        if self._state == "start":
            stripped = text.lstrip()
            if stripped.startswith(self.OPEN):
                self._state = "thinking"
                text = stripped[len(self.OPEN) :]
            elif self.OPEN.startswith(stripped):  # maybe the tag, not complete yet
                self._held = text
                return []
            else:
                self._state = "text"
                return [("text", text)]
        out: list[tuple[str, str]] = []
        if self._state == "thinking":
            end = text.find(self.CLOSE)
            if end < 0:
                keep = _partial_suffix(text, self.CLOSE)
                self._held = text[len(text) - keep :] if keep else ""
                body = text[: len(text) - keep] if keep else text
                return [("thinking", body)] if body else []
            if end:
                out.append(("thinking", text[:end]))
            self._state, text = "after", text[end + len(self.CLOSE) :]
        text = text.lstrip("\r\n")
        if text:
            self._state = "text"
            out.append(("text", text))
        return out

    def flush(self) -> list[tuple[str, str]]:
        held, self._held = self._held, ""
        return [("thinking" if self._state == "thinking" else "text", held)] if held else []


def _partial_suffix(text: str, tag: str) -> int:
    """How many characters at the end of `text` could begin `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
