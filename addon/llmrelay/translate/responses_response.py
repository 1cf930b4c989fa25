"""OpenAI Responses answer (stream or JSON) → Anthropic Messages stream events.

One `ResponsesTranslator` serves one response, with the same interface as `ChatTranslator`
(`feed`, `finish`, `whole`, `fail`, `usage`, `error_type`). Each output item becomes one
content block; items arrive one after another, so blocks are started, given deltas and
stopped in order.

Rules, source → target:
- `message` items → a `text` block (`output_text` and `refusal` text alike: a refusal is
  what the user must read);
- `reasoning` items → a `thinking` block: the summary text (parts separated by a blank
  line), or the raw `reasoning_text` when there is no summary (OpenRouter, DeepSeek); the
  item's `encrypted_content` → the block's signature (`openai_responses.SIGNED`), so the
  client's next turn gives the model its reasoning back;
- `function_call` items → `tool_use` blocks: `call_id` → id (the round trip needs it back),
  shortened names mapped back, arguments streamed as `input_json_delta`; arguments that are
  not complete JSON when the item is done → an `error` event, never a tool use;
- deltas stream as they come; `response.output_item.done` completes an item with whatever
  its deltas did not carry (the Codex backend may send whole items only), and
  `response.completed`'s `output` stands in for items never streamed (the Codex backend's
  is `[]`, so done items are what counts);
- when a Codex answer completes with no text and no tool call but a reasoning summary (the
  backend sometimes leaves the message empty), the summary is also given as the text;
- `response.completed` → `end_turn`, or `tool_use` after a function call;
  `response.incomplete` → `max_tokens` (`max_output_tokens`) or `refusal` (`content_filter`);
  `response.failed` and `error` events → an Anthropic `error` event by `ERROR_STATUS` (rate
  and usage limits → `rate_limit_error`, the reset time in words);
- usage → `input_tokens` (cached apart as `cache_read_input_tokens`), `output_tokens`, and
  the reasoning tokens kept for usage records (a failed response's too);
- a stream whose bytes end before `response.completed` / `incomplete` / `failed` was cut
  short and ends with an `error` event, never as a success;
- a huge delta event (a whole answer in one line) is read in pieces as it arrives (`split`).
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec
import orjson

from .. import sse
from ..errors import anthropic_status
from ..protocols import anthropic as a
from ..protocols import openai_responses as r
from .chat_response import _complete_json as is_json

INCOMPLETE = {"max_output_tokens": "max_tokens", "content_filter": "refusal"}


class _Item:
    __slots__ = ("kind", "block", "sent", "summary_parts", "raw", "closed", "call_id", "name", "later")

    def __init__(self, kind: str) -> None:
        self.kind = kind  # message | reasoning | function_call | another type (ignored)
        self.block: int | None = None  # the Anthropic block index once opened
        self.sent: list[str] = []  # text, thinking or arguments sent so far
        self.summary_parts = 0
        self.raw = False  # thinking streamed from raw reasoning_text
        self.closed = False
        self.call_id = ""
        self.name = ""
        self.later: list[tuple[Any, tuple[Any, ...]]] = []  # what it did while another item was being written


class ResponsesTranslator:
    def __init__(self, *, model: str, input_tokens: int = 0, tool_names: dict[str, str] | None = None,
                 origin: str = "", summary_as_text: bool = False) -> None:
        self.model = model
        self.origin = origin  # the provider's mark in the signatures it gets back
        self.summary_as_text = summary_as_text
        self.message_id = a.new_id("msg_")
        self._input_estimate = input_tokens
        self._tool_names = tool_names or {}
        self.decoder = sse.Decoder(_splits)
        self._events: list[dict[str, Any]] = []
        self._started = False
        self._items: dict[int, _Item] = {}
        self._open: _Item | None = None
        self._waiting: list[_Item] = []  # items that began while another was open, in order
        self._index = -1
        self._texts = 0  # text blocks with something in them
        self._calls = 0
        self._summary: list[str] = []  # reasoning summaries, for an answer without text
        self.ended = False
        self.error_type: str | None = None
        self.usage: dict[str, int] | None = None
        self.reasoning_tokens = 0
        self.rate_limits: dict[str, Any] | None = None  # Codex's `codex.rate_limits` event

    # --- input ------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        for event in self.decoder.feed(data):
            self._on_sse(event)
        return self._take()

    def finish(self) -> list[dict[str, Any]]:
        for event in self.decoder.flush():
            self._on_sse(event)
        if not self.ended:
            if not self._started:
                self._fail(502, "the provider closed the stream before sending anything")
            else:
                self._fail(502, "the provider's stream ended before the answer was complete (no response.completed)")
        return self._take()

    def whole(self, body: bytes) -> list[dict[str, Any]]:
        """A complete JSON response object → the full event sequence."""
        try:  # (read for what the answer needs: the echoed instructions and tools are skipped)
            response = _WHOLE.decode(body)
        except msgspec.DecodeError:
            self._fail(502, "the provider's answer is not a JSON response object")
            return self._take()
        if isinstance(response.error, dict) and response.output is None:
            self._error(response.error)
            return self._take()
        if response.object not in ("response", None) or not isinstance(response.output, list):
            self._fail(502, "the provider's answer is not a response object")
            return self._take()
        self._guarded(self._on_done, response, response.status or "completed", response.output)
        return self.finish()

    def fail(self, status: int, message: str) -> list[dict[str, Any]]:
        if not self.ended:
            self._fail(status, message)
        return self._take()

    def _take(self) -> list[dict[str, Any]]:
        events, self._events = self._events, []
        return events

    def _fail(self, status: int, message: str) -> None:
        self.error_type = anthropic_status(status)[1]
        self._events.append(a.error_event(self.error_type, message))
        self.ended = True

    def _guarded(self, handler, *args: Any) -> None:
        try:
            handler(*args)
        except _Stop as e:
            self._fail(e.status, str(e))
        except _Refused as e:
            self._fail(502, str(e))

    def _on_sse(self, event: sse.Event) -> None:
        if self.ended or not event.data or event.data == b"[DONE]":
            return
        kind = event.event or _sniffed(event.data)
        # The events that carry the whole response object (which echoes the request's
        # instructions and tools, tens of KB from Claude Code) are read only for what the
        # answer needs, or not at all.
        if kind in _STARTS:
            return self._start()
        if kind in _ENDS:
            try:
                end = _END.decode(event.data).response or _End()
            except msgspec.DecodeError:
                return self._fail(502, "the provider sent an event that is not JSON")
            output = msgspec.json.decode(end.output)
            return self._guarded(self._on_done, end, end.status or kind.removeprefix("response."), output)
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            self._fail(502, "the provider sent an event that is not JSON")
            return
        if not isinstance(data, dict):
            self._fail(502, "the provider sent an event that is not a JSON object")
            return
        kind = data.get("type") or event.event or ""
        handler = _HANDLERS.get(kind)
        if handler is not None:
            self._guarded(handler, self, data)

    # --- events -----------------------------------------------------------------------

    def _on_created(self, data: dict[str, Any]) -> None:
        self._start()

    def _on_item_added(self, data: dict[str, Any]) -> None:
        item = data.get("item") or {}
        entry = self._item(data, new=True)
        entry.kind = item.get("type") or entry.kind
        if entry.kind == "function_call":
            entry.call_id, entry.name = item.get("call_id") or "", item.get("name") or ""
            self._act(entry, self._open_call, entry)

    def _on_text(self, data: dict[str, Any]) -> None:
        entry = self._item(data, "message")
        self._act(entry, self._send, entry, data.get("delta") or "")

    def _on_summary_part(self, data: dict[str, Any]) -> None:
        entry = self._item(data, "reasoning")
        self._act(entry, self._summary_part, entry)

    def _on_summary(self, data: dict[str, Any]) -> None:
        entry = self._item(data, "reasoning")
        self._act(entry, self._thinking, entry, data.get("delta") or "", False)

    def _on_reasoning_text(self, data: dict[str, Any]) -> None:
        entry = self._item(data, "reasoning")
        self._act(entry, self._thinking, entry, data.get("delta") or "", True)

    def _on_arguments(self, data: dict[str, Any]) -> None:
        entry = self._item(data, "function_call")
        self._act(entry, self._arguments, entry, data.get("delta") or "")

    def _on_item_done(self, data: dict[str, Any]) -> None:
        item = data.get("item")
        if isinstance(item, dict):
            entry = self._item(data, item.get("type") or "")
            self._act(entry, self._complete, entry, item)

    def _summary_part(self, entry: _Item) -> None:
        if entry.summary_parts and entry.sent:
            self._send(entry, "\n\n")
        entry.summary_parts += 1

    def _thinking(self, entry: _Item, text: str, raw: bool) -> None:
        if raw:
            if entry.summary_parts and not entry.raw:
                return  # the summary is what the client sees
            entry.raw = True
        elif entry.raw:
            return
        self._send(entry, text)

    def _arguments(self, entry: _Item, text: str) -> None:
        if entry.block is None:
            self._open_call(entry)
        self._send(entry, text)

    def _on_completed(self, data: dict[str, Any]) -> None:
        """(A final event whose type was not in its first bytes, read whole.)"""
        response = data.get("response") or {}
        self._on_done(_end_of(response), response.get("status") or data["type"].removeprefix("response."), response.get("output"))

    def _on_failed(self, data: dict[str, Any]) -> None:
        response = data.get("response") or {}
        if response.get("usage"):  # what the failed attempt cost, for the usage records
            self.usage, self.reasoning_tokens = r.usage(response["usage"])
        self._error(response.get("error") or data.get("error") or data)

    def _on_error(self, data: dict[str, Any]) -> None:
        self._error(data.get("error") if isinstance(data.get("error"), dict) else data)

    def _on_rate_limits(self, data: dict[str, Any]) -> None:
        self.rate_limits = data.get("rate_limits")

    # --- items and blocks -------------------------------------------------------------

    def _act(self, entry: _Item, action: Any, *args: Any) -> None:
        """Do what an event says to an item, or keep it for later: blocks go to the client
        one at a time, so an item that begins while another is being written (items done out
        of order, parallel calls whose deltas interleave) waits for that one to be done."""
        if entry in self._waiting or (self._open is not None and self._open is not entry):
            entry.later.append((action, args))
            if entry not in self._waiting:
                self._waiting.append(entry)
            return
        action(*args)
        self._drain()

    def _drain(self) -> None:
        while self._open is None and self._waiting:
            entry = self._waiting.pop(0)
            later, entry.later = entry.later, []
            for action, args in later:
                action(*args)

    def _item(self, data: dict[str, Any], kind: str = "", new: bool = False) -> _Item:
        index = data.get("output_index")
        if not isinstance(index, int):  # (not sent by some servers: the last item, or a new one)
            index = max(self._items, default=-1) + 1 if new else max(self._items, default=0)
        entry = self._items.get(index)
        if entry is None:
            entry = self._items[index] = _Item(kind)
        elif not entry.kind:
            entry.kind = kind
        return entry

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._events.append(a.message_start(self.message_id, self.model, self._input_estimate))

    def _open_block(self, entry: _Item, block: dict[str, Any]) -> None:
        self._start()
        if self._open is not None and self._open is not entry:
            self._close(self._open)
        self._index += 1
        entry.block = self._index
        self._open = entry
        self._events.append(a.block_start(self._index, block))

    def _open_call(self, entry: _Item) -> None:
        call_id = entry.call_id if a.valid_tool_id(entry.call_id) else a.new_id("toolu_")
        entry.call_id = call_id
        name = self._tool_names.get(entry.name, entry.name)
        self._open_block(entry, {"type": "tool_use", "id": call_id, "name": name, "input": {}})
        self._calls += 1

    def _send(self, entry: _Item, text: str) -> None:
        if not text:
            return
        if entry.closed:
            raise _Refused("the provider sent more of an output item after it was done")
        if entry.block is None or self._open is not entry:
            if entry.block is not None:
                raise _Refused("the provider interleaved output items")
            if entry.kind == "function_call":
                self._open_call(entry)
            elif entry.kind == "reasoning":
                self._open_block(entry, {"type": "thinking", "thinking": "", "signature": ""})
            else:
                self._open_block(entry, {"type": "text", "text": ""})
                self._texts += 1
        entry.sent.append(text)
        delta = {"function_call": ("input_json_delta", "partial_json"), "reasoning": ("thinking_delta", "thinking")}
        kind, field = delta.get(entry.kind, ("text_delta", "text"))
        self._events.append(a.block_delta(entry.block, {"type": kind, field: text}))

    def _complete(self, entry: _Item, item: dict[str, Any]) -> None:
        """An item is done: send what its deltas did not, then close its block."""
        if entry.closed:
            return
        kind = entry.kind = item.get("type") or entry.kind
        sent = "".join(entry.sent)
        if kind == "message":
            self._send(entry, _rest(sent, _message_text(item)))
        elif kind == "reasoning":
            summary = "\n\n".join(_text_of(part) for part in item.get("summary") or () if _text_of(part))
            raw = "".join(_text_of(part) for part in item.get("content") or () if _text_of(part))
            text = summary or raw
            if summary:
                self._summary.append(summary)
            self._send(entry, _rest(sent, text))
            secret = item.get("encrypted_content")
            if isinstance(secret, str) and secret:
                if entry.block is None:
                    self._open_block(entry, {"type": "thinking", "thinking": "", "signature": ""})
                self._events.append(a.block_delta(entry.block, {"type": "signature_delta", "signature": r.signature(secret, self.origin)}))
        elif kind == "function_call":
            if entry.block is None:
                entry.call_id, entry.name = item.get("call_id") or entry.call_id, item.get("name") or entry.name
                self._open_call(entry)
            arguments = item.get("arguments")
            if isinstance(arguments, dict):
                arguments = orjson.dumps(arguments).decode()
            self._send(entry, _rest(sent, arguments if isinstance(arguments, str) else ""))
            _check_arguments("".join(entry.sent), entry.name)
        else:
            return  # server-side items (web search, ...): nothing the client can act on
        self._close(entry)

    def _close(self, entry: _Item) -> None:
        if entry.kind == "function_call" and not entry.closed:
            _check_arguments("".join(entry.sent), entry.name)
        if entry.block is not None and not entry.closed:
            self._events.append(a.block_stop(entry.block))
        entry.closed = True
        if self._open is entry:
            self._open = None

    # --- end --------------------------------------------------------------------------

    def _on_done(self, response: _End, status: str, output: Any) -> None:
        self._start()
        if status == "failed":
            return self._error(response.error or {"message": "the response failed"})
        reason = (response.incomplete_details or {}).get("reason") if isinstance(response.incomplete_details, dict) else None
        if status == "incomplete" and reason != "content_filter":
            for entry in self._items.values():
                if entry.kind == "function_call" and not entry.closed and not is_json("".join(entry.sent) or "{}"):
                    # Asking again would hit the same limit: not a retryable error.
                    raise _Stop(400, f"the answer reached max_output_tokens inside the arguments of tool call {entry.name!r}; "
                                     "ask for more output tokens")
        if not any(entry.closed for entry in self._items.values()) and isinstance(output, list):
            # Nothing completed item by item: the response's own output is the answer.
            # (Its position is the output_index the deltas, if any, named.)
            for position, item in enumerate(output):
                if isinstance(item, dict):
                    entry = self._items.setdefault(position, _Item(item.get("type") or ""))
                    self._act(entry, self._complete, entry, item)
        while self._open is not None or self._waiting:  # items never done: closed as they stand
            if self._open is not None:
                self._close(self._open)
            self._drain()
        for entry in list(self._items.values()):
            self._close(entry)
        if self.summary_as_text and status == "completed" and not self._texts and not self._calls and self._summary:
            entry = self._items[-1] = _Item("message")
            self._send(entry, "\n\n".join(self._summary))
            self._close(entry)
        if response.usage:
            self.usage, self.reasoning_tokens = r.usage(response.usage)
        if status == "incomplete":
            stop = INCOMPLETE.get(reason, "max_tokens")
        else:
            stop = "tool_use" if self._calls else "end_turn"
        self._events.append(a.message_delta(stop, self.usage or {"output_tokens": 0}))
        self._events.append(a.MESSAGE_STOP)
        self.ended = True

    def _error(self, error: Any) -> None:
        status = r.error_status(error)
        message = _error_message(error)
        self._fail(status, f"the provider reported an error: {message}")


class _End(msgspec.Struct):
    """What the answer needs of a final response object; the rest (the echoed instructions,
    tools and metadata) is skipped unread."""

    status: str | None = None
    usage: Any = None
    incomplete_details: Any = None
    error: Any = None
    output: msgspec.Raw = msgspec.Raw(b"null")


class _Whole(_End):
    """A JSON response object, read the same way."""

    object: Any = None
    output: Any = None  # type: ignore[assignment]


class _Final(msgspec.Struct):
    response: _End | None = None


_END = msgspec.json.Decoder(_Final)
_WHOLE = msgspec.json.Decoder(_Whole)


def _end_of(response: dict[str, Any]) -> _End:
    return _End(**{k: response.get(k) for k in ("status", "usage", "incomplete_details", "error")})
_STARTS = frozenset({"response.created", "response.in_progress", "response.queued"})
_ENDS = frozenset({"response.completed", "response.incomplete"})
_TYPE = re.compile(rb'"type"\s*:\s*"([^"]+)"')


_DELTAS = frozenset({"response.output_text.delta", "response.refusal.delta", "response.reasoning_summary_text.delta",
                     "response.reasoning_text.delta", "response.function_call_arguments.delta"})


def _splits(event: str | None, path: tuple, prefix: bytes) -> bool:
    """Whether a huge string in an event may be read in pieces: a delta's, whose pieces mean
    what the whole does."""
    return path == ("delta",) and (_sniffed(prefix) or event) in _DELTAS


def _sniffed(data: bytes) -> str:
    """The event's type from its first bytes, for streams without `event:` lines (OpenRouter):
    `type` comes first in every event seen."""
    found = _TYPE.search(data, 0, 80)
    return found.group(1).decode() if found else ""


class _Refused(Exception):
    """The provider said something the Anthropic protocol cannot carry faithfully."""


class _Stop(Exception):
    """The answer cannot be given, for a reason with its own status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_HANDLERS = {
    "response.created": ResponsesTranslator._on_created,
    "response.in_progress": ResponsesTranslator._on_created,
    "response.output_item.added": ResponsesTranslator._on_item_added,
    "response.output_text.delta": ResponsesTranslator._on_text,
    "response.refusal.delta": ResponsesTranslator._on_text,
    "response.reasoning_summary_part.added": ResponsesTranslator._on_summary_part,
    "response.reasoning_summary_text.delta": ResponsesTranslator._on_summary,
    "response.reasoning_text.delta": ResponsesTranslator._on_reasoning_text,
    "response.function_call_arguments.delta": ResponsesTranslator._on_arguments,
    "response.output_item.done": ResponsesTranslator._on_item_done,
    "response.completed": ResponsesTranslator._on_completed,
    "response.incomplete": ResponsesTranslator._on_completed,
    "response.failed": ResponsesTranslator._on_failed,
    "error": ResponsesTranslator._on_error,
    "codex.rate_limits": ResponsesTranslator._on_rate_limits,
}


def _rest(sent: str, whole: str) -> str:
    """What of `whole` the deltas have not carried yet."""
    if not sent:
        return whole
    return whole[len(sent) :] if whole.startswith(sent) else ""


def _text_of(part: Any) -> str:
    if not isinstance(part, dict):
        return ""
    text = part.get("text", part.get("refusal", ""))
    if isinstance(text, dict):  # `{"value": …}`, seen from some servers
        text = text.get("value", "")
    return text if isinstance(text, str) else ""


def _message_text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    return "".join(_text_of(part) for part in content or ())


def _check_arguments(arguments: str, name: str) -> None:
    if not arguments.strip():
        return  # no arguments: the input is {}
    try:
        orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise _Refused(f"the arguments of tool call {name!r} are not complete JSON") from None


def _error_message(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    message = str(error.get("message") or error.get("code") or error.get("type") or "unknown error")
    reset = r.limit_reset(error, time.time())
    if reset is not None:
        message += f" (the limit resets {when_reset(reset)})"
    return message


def when_reset(seconds: float) -> str:
    at = time.strftime("%H:%M UTC", time.gmtime(time.time() + seconds))
    minutes = int(seconds // 60)
    span = f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{max(minutes, 1)} min"
    return f"at {at}, in {span}"
