"""Tool calls written as text: for a model that has no function calling of its own (the
Claude Code CLI given a client's tools), the tools are described in the system prompt with a
strict call format, and the calls are read back out of the text as it streams.

The format:

    <tool_call name="get_weather">{"city": "Paris"}</tool_call>

Rules:
- `instructions(tools, choice)`: the tools (name, description, JSON schema) and the format,
  for the system prompt; `tool_choice` any/tool/none said in words;
- `ToolText`: text → pieces, `("text", s)` or `("call", name, arguments)`; a tag split across
  reads is held back until it is whole (only the few characters that may begin one); the
  call ends at the first `</tool_call>` after which its body is complete JSON, so quotes,
  code and markup inside the arguments do not end it early; several calls and text around
  them are kept in order; text that is only blank space next to a call is dropped;
- `ToolEvents`: hub events whose text holds such calls → the same events with the calls as
  `tool_use` blocks (new ids, consecutive indices) and `stop_reason: tool_use`; a call whose
  arguments are not a JSON object, or an answer that ends inside a call, → an `error` event,
  never half a tool call;
- `history_call`: earlier calls written the same way (and results as `<tool_result>`), so
  the model sees its own format in the conversation.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ..protocols import anthropic as a
from .chat_response import _complete_json, _partial_suffix

OPEN, CLOSE = "<tool_call", "</tool_call>"
_NAME = re.compile(r"""<tool_call\s+name\s*=\s*["']([^"']+)["']\s*>""")


def instructions(tools: list[dict[str, Any]], choice: dict[str, Any] | None = None) -> str:
    lines = [
        "# Tools",
        "You can call the tools below. To call one, write exactly this, with the arguments as one JSON object:",
        '<tool_call name="TOOL_NAME">{"argument": "value"}</tool_call>',
        "You may write several calls one after another. After your calls, stop: the results come in the next message,",
        "as <tool_result id=\"...\">...</tool_result>. Never write a tool result yourself.",
        "",
    ]
    kind = (choice or {}).get("type")
    if kind == "any":
        lines.append("You must call at least one tool in this answer.")
    elif kind == "tool":
        lines.append(f"You must call the tool {choice.get('name')} in this answer.")
    elif kind == "none":
        lines.append("Do not call any tool in this answer.")
    for tool in tools:
        lines.append(f"## {tool['name']}")
        if tool.get("description"):
            lines.append(str(tool["description"]))
        lines.append("Arguments (JSON schema): " + orjson.dumps(tool.get("input_schema") or {"type": "object"}).decode())
        lines.append("")
    return "\n".join(lines)


def history_call(name: str, arguments: str) -> str:
    return f'<tool_call name="{name}">{arguments or "{}"}</tool_call>'




class ToolText:
    """Text in any pieces → text and calls, in order."""

    def __init__(self) -> None:
        self._buf = ""
        self._name: str | None = None  # inside a call: its name
        self._calls = 0
        self._space = ""  # blank text after a call: kept only if more text follows

    def feed(self, text: str) -> list[tuple]:
        self._buf += text
        out: list[tuple] = []
        while True:
            if self._name is None:
                at = self._buf.find(OPEN)
                if at < 0:
                    keep = _partial_suffix(self._buf, OPEN)
                    self._text(out, self._buf[: len(self._buf) - keep])
                    self._buf = self._buf[len(self._buf) - keep :]
                    return out
                self._text(out, self._buf[:at])
                self._buf = self._buf[at:]
                head = _NAME.match(self._buf)
                if head is None:
                    if ">" in self._buf:  # `<tool_call` with no name: not a call after all
                        self._text(out, OPEN)
                        self._buf = self._buf[len(OPEN) :]
                        continue
                    return out  # the tag is still arriving
                self._name, self._buf = head.group(1), self._buf[head.end() :]
            end = self._close()
            if end is None:
                return out
            body, self._buf = self._buf[:end].strip(), self._buf[end + len(CLOSE) :]
            out.append(("call", self._name, body))
            self._name = None
            self._calls += 1
            self._space = ""

    def flush(self) -> list[tuple]:
        """The end of the text: what is held back; an unfinished call is an error."""
        if self._name is not None:
            return [("unfinished", self._name, self._buf)]
        out: list[tuple] = []
        self._text(out, self._buf)
        self._buf = self._space = ""
        return out

    def _close(self) -> int | None:
        start = 0
        while (end := self._buf.find(CLOSE, start)) >= 0:
            if _complete_json(self._buf[:end].strip() or "{}"):
                return end
            start = end + 1  # a `</tool_call>` inside the arguments
        return None

    def _text(self, out: list[tuple], text: str) -> None:
        if not text:
            return
        if self._calls and not (self._space + text).strip():
            self._space += text  # only space after a call so far: dropped unless text follows
            return
        out.append(("text", self._space + text))
        self._space = ""


class ToolEvents:
    """Hub events → the same with text-written calls as tool_use blocks."""

    def __init__(self, tool_names: set[str]) -> None:
        self.names = tool_names
        self._parser: ToolText | None = None
        self._next = 0  # the client's next block index
        self._open: str | None = None  # "text" while a text block is open for the client
        self._map: dict[int, int] = {}  # upstream index → client index, for blocks passed on
        self._calls = 0
        self.ended = False

    def feed(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for event in events:
            if self.ended:
                break
            out += self._event(event)
        return out

    def _event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event["type"]
        if kind == "content_block_start":
            block = event["content_block"]
            if block["type"] == "text":
                self._parser = ToolText()
                return []
            out = self._close_text()
            self._map[event["index"]] = self._next
            self._next += 1
            return out + [{**event, "index": self._map[event["index"]]}]
        if kind == "content_block_delta":
            if self._parser is not None and event["delta"]["type"] == "text_delta":
                return self._pieces(self._parser.feed(event["delta"]["text"]))
            if event["index"] in self._map:
                return [{**event, "index": self._map[event["index"]]}]
            return []
        if kind == "content_block_stop":
            if self._parser is not None and event["index"] not in self._map:
                parser, self._parser = self._parser, None
                return self._pieces(parser.flush()) + self._close_text()
            return [{**event, "index": self._map[event["index"]]}] if event["index"] in self._map else []
        if kind == "message_delta" and self._calls:
            return [{**event, "delta": {**event["delta"], "stop_reason": "tool_use"}}]
        if kind == "error":
            self.ended = True
        return [event]

    def _pieces(self, pieces: list[tuple]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for piece in pieces:
            if piece[0] == "text":
                if self._open != "text":
                    out.append(a.block_start(self._next, {"type": "text", "text": ""}))
                    self._open = "text"
                out.append(a.block_delta(self._next, {"type": "text_delta", "text": piece[1]}))
                continue
            out += self._close_text()
            _, name, body = piece
            arguments = _object(body) if piece[0] == "call" else None
            if arguments is None or name not in self.names:
                self.ended = True
                if piece[0] == "unfinished":
                    why = f"the answer ended inside a call of the tool {name!r}"
                elif arguments is None:
                    why = f"the model's call of {name!r} has arguments that are not a JSON object"
                else:
                    why = f"the model called a tool that was not offered: {name!r}"
                return out + [a.error_event("api_error", why)]
            index = self._next
            self._next += 1
            self._calls += 1
            out += [a.block_start(index, {"type": "tool_use", "id": a.new_id("toolu_"), "name": name, "input": {}}),
                    a.block_delta(index, {"type": "input_json_delta", "partial_json": orjson.dumps(arguments).decode()}),
                    a.block_stop(index)]
        return out

    def _close_text(self) -> list[dict[str, Any]]:
        if self._open != "text":
            return []
        self._open = None
        self._next += 1
        return [a.block_stop(self._next - 1)]


def _object(text: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


class TextToolTranslator:
    """A provider's translator whose model writes its tool calls as text: its events go
    through `ToolEvents`. The same interface as the translators (`feed`, `finish`, `whole`,
    `fail`, `error_type`, `usage`)."""

    def __init__(self, inner: Any, tool_names: set[str]) -> None:
        self.inner = inner
        self.tools = ToolEvents(tool_names)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def error_type(self) -> str | None:
        return "api_error" if self.tools.ended and self.inner.error_type is None else self.inner.error_type

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self.tools.feed(self.inner.feed(data))

    def finish(self) -> list[dict[str, Any]]:
        return self.tools.feed(self.inner.finish())

    def whole(self, body: bytes) -> list[dict[str, Any]]:
        return self.tools.feed(self.inner.whole(body))

    def fail(self, status: int, message: str) -> list[dict[str, Any]]:
        return [] if self.tools.ended else self.inner.fail(status, message)


def as_text(messages: list[dict[str, Any]], tools: list[dict[str, Any]], choice: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Chat messages for a model without function calling: the tools in the system message,
    earlier calls and results written as text, turns of one role merged."""
    out: list[dict[str, Any]] = []
    guide = instructions(tools, choice)
    if messages and messages[0]["role"] == "system":
        out.append({"role": "system", "content": f"{messages[0]['content']}\n\n{guide}"})
        messages = messages[1:]
    else:
        out.append({"role": "system", "content": guide})
    for message in messages:
        role, content = message["role"], message.get("content")
        if role == "assistant" and message.get("tool_calls"):
            calls = [history_call(c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]]
            content = "\n".join([content, *calls] if content else calls)
        elif role == "tool":
            role, content = "user", f'<tool_result id="{message["tool_call_id"]}">\n{content}\n</tool_result>'
        if not isinstance(content, str):  # parts (images): kept as they are
            out.append({"role": role, "content": content})
            continue
        if out[-1]["role"] == role and isinstance(out[-1]["content"], str) and role != "system":
            out[-1] = {"role": role, "content": out[-1]["content"] + "\n\n" + content}
        else:
            out.append({"role": role, "content": content})
    return out
