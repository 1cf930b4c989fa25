"""The OpenAI Chat Completions front: an OpenAI client (the openai SDK, Cursor, Continue,
OpenClaw, Open WebUI) on any provider kind.

A Chat request becomes a hub request (Anthropic Messages, `to_hub`), which is routed and
sent like any Anthropic client's; the hub events that come back become Chat chunks
(`ChatFront.encode`) or one `chat.completion` (`ChatFront.message`), and every error an
OpenAI error. In front of an `openai` provider nothing is translated twice: the request
passes with its model and key rewritten, and the answer comes back untouched (`passed`).

Rules, request (Chat → hub):
- `system` and `developer` messages → the hub's `system` (leading ones) or `role: system`
  messages (later ones, which every provider kind already handles);
- user text → text; `image_url` → an image (a data URL → base64, an http URL → URL);
  `file` parts with PDF data → a document;
- assistant `content` (text and refusal parts) → text; `tool_calls` → `tool_use` blocks
  (arguments that are not a JSON object → a clear 400); `reasoning_content` → dropped (no
  provider can verify it);
- `tool` messages → `tool_result` blocks in one user turn with what follows; consecutive
  messages of one role are merged (Anthropic wants turns to alternate);
- `tools` → tools (`parameters` → `input_schema`); `tool_choice` auto / required / none /
  a function → auto / any / none / tool; `parallel_tool_calls: false` →
  `disable_parallel_tool_use`;
- `max_completion_tokens` or `max_tokens` → `max_tokens`; `stop` → `stop_sequences`;
  `temperature`, `top_p` kept; `user` → `metadata.user_id`;
- `reasoning_effort` → `thinking` with a budget the providers map back to the same effort
  (`EFFORT_BUDGET`); `none` / `minimal` → no thinking;
- `n > 1` → a clear 400; `response_format` other than text → a clear 400 unless the request
  passes through to an `openai` provider; `stream`, `stream_options.include_usage` kept.

Rules, answer (hub events → Chat):
- one `id` (`chatcmpl-…`) and `created` for the whole answer, `model` as the client named
  it; the first chunk carries `role: assistant`;
- text deltas → `content`; thinking → `reasoning_content`; a `tool_use` block → a
  `tool_calls` entry with `index` (0, 1, … per call), `id`, `type` and the name in its first
  fragment and the arguments after;
- `stop_reason` → one `finish_reason` (`FINISH`); usage → `prompt_tokens` (cached included,
  with `prompt_tokens_details.cached_tokens`) and `completion_tokens` (reasoning included,
  with `completion_tokens_details.reasoning_tokens`), in a last chunk with `choices: []`
  when `stream_options.include_usage` asks for it; then `data: [DONE]`;
- an error event → `data: {"error": {...}}`, as OpenAI streams its errors, and no `[DONE]`;
- errors before the answer → `{"error": {"message", "type", "code"}}` with the status kept.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import orjson

from .. import sse
from ..errors import RelayError, anthropic_status

FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
          "tool_use": "tool_calls", "refusal": "content_filter"}
EFFORT_BUDGET = {"low": 4096, "medium": 16384, "high": 32000, "xhigh": 32000}
# Anthropic error types → OpenAI's (the SDKs read the status; these are for people).
ERROR_TYPES = {"invalid_request_error": "invalid_request_error", "authentication_error": "authentication_error",
               "permission_error": "permission_error", "not_found_error": "not_found_error",
               "rate_limit_error": "rate_limit_exceeded", "request_too_large": "invalid_request_error",
               "timeout_error": "timeout", "overloaded_error": "server_error", "api_error": "server_error"}
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+);base64,(.*)", re.S)
DONE = b"data: [DONE]\n\n"
_FINISHED = re.compile(rb'"finish_reason":\s*"')
PING = b": ping\n\n"


# --- request ------------------------------------------------------------------------------


def to_hub(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Chat request → the hub request (an Anthropic Messages body) and what the answer
    needs of the original: `include_usage`, and the request itself for passing through."""
    try:
        chat = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise RelayError(f"the request body is not valid JSON: {e}") from None
    if not isinstance(chat, dict):
        raise RelayError("the request body must be a JSON object")
    model = chat.get("model")
    if not isinstance(model, str) or not model:
        raise RelayError("`model` is required")
    messages = chat.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RelayError("`messages` must be a non-empty array")
    n = chat.get("n")
    if n not in (None, 1):
        raise RelayError("`n` other than 1 is not supported: each answer is one message")
    hub: dict[str, Any] = {"model": model}
    system, turns = _turns(messages)
    if system:
        hub["system"] = system
    hub["messages"] = turns
    limit = chat.get("max_completion_tokens", chat.get("max_tokens"))
    if limit is not None:
        hub["max_tokens"] = limit
    stop = chat.get("stop")
    if stop:
        hub["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    for name in ("temperature", "top_p"):
        if chat.get(name) is not None:
            hub[name] = chat[name]
    if isinstance(chat.get("user"), str):
        hub["metadata"] = {"user_id": chat["user"]}
    if chat.get("tools"):
        hub["tools"] = [_tool(tool, i) for i, tool in enumerate(chat["tools"])]
        choice = _tool_choice(chat.get("tool_choice"), chat.get("parallel_tool_calls"))
        if choice:
            hub["tool_choice"] = choice
    effort = chat.get("reasoning_effort")
    if effort in EFFORT_BUDGET:
        hub["thinking"] = {"type": "enabled", "budget_tokens": EFFORT_BUDGET[effort]}
    elif effort not in (None, "none", "minimal"):
        raise RelayError(f"reasoning_effort {effort!r} is not one of none, minimal, low, medium, high, xhigh")
    hub["stream"] = bool(chat.get("stream"))
    options = chat.get("stream_options") or {}
    return hub, {"include_usage": bool(options.get("include_usage")) if isinstance(options, dict) else False,
                 "response_format": chat.get("response_format"), "chat": chat}


def wants_format(options: dict[str, Any]) -> bool:
    """Whether the request asks for a structured answer (JSON mode or a schema)."""
    fmt = options.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") not in (None, "text")


def _turns(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RelayError(f"messages[{i}] must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text(message.get("content"), f"messages[{i}].content")
            if not turns:
                system.append({"type": "text", "text": text})
            else:
                turns.append({"role": "system", "content": text})
            continue
        if role == "user":
            blocks = _user(message.get("content"), f"messages[{i}].content")
        elif role == "assistant":
            blocks = _assistant(message, i)
        elif role in ("tool", "function"):
            call_id = message.get("tool_call_id") or message.get("name")
            if not isinstance(call_id, str) or not call_id:
                raise RelayError(f"messages[{i}]: a tool message needs tool_call_id")
            blocks = [{"type": "tool_result", "tool_use_id": call_id, "content": _text(message.get("content"), f"messages[{i}].content")}]
            role = "user"
        else:
            raise RelayError(f"messages[{i}].role {role!r} is not one of system, developer, user, assistant, tool")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise RelayError("`messages` holds no user or assistant message")
    return system, turns


def _text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text", "refusal"):
                texts.append(str(part.get("text") or part.get("refusal") or ""))
            elif isinstance(part, str):
                texts.append(part)
        return "\n\n".join(texts)
    raise RelayError(f"{where} must be a string or an array of parts")


def _user(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise RelayError(f"{where} must be a string or an array of parts")
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise RelayError(f"{where}[{j}].image_url.url must be a string")
            data = _DATA_URL.match(url)
            if data:
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": data.group(1), "data": data.group(2)}})
            elif url.startswith(("http://", "https://")):
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
            else:
                raise RelayError(f"{where}[{j}].image_url.url must be a data: URL or an http(s) URL")
        elif kind == "file":
            file = part.get("file") or {}
            data = _DATA_URL.match(str(file.get("file_data") or ""))
            if not data or data.group(1) != "application/pdf":
                raise RelayError(f"{where}[{j}]: only PDF files given as file_data can be sent")
            blocks.append({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": data.group(2)}})
        else:
            raise RelayError(f"{where}[{j}]: a content part of type {kind!r} cannot be sent")
    return blocks


def _assistant(message: dict[str, Any], i: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = _text(message.get("content"), f"messages[{i}].content")
    if text:
        blocks.append({"type": "text", "text": text})
    for j, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RelayError(f"messages[{i}].tool_calls[{j}] needs a function with a name")
        arguments = function.get("arguments") or "{}"
        try:
            value = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            raise RelayError(f"messages[{i}].tool_calls[{j}].function.arguments is not valid JSON") from None
        if not isinstance(value, dict):
            raise RelayError(f"messages[{i}].tool_calls[{j}].function.arguments must be a JSON object")
        call_id = call.get("id") or f"call_{i}_{j}"
        blocks.append({"type": "tool_use", "id": call_id, "name": function["name"], "input": value})
    return blocks


def _tool(tool: Any, i: int) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, dict) and tool.get("type", "function") == "function" else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise RelayError(f"tools[{i}] must be a function tool with a name")
    out = {"name": function["name"], "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None:
        out = {"type": "auto"} if parallel is False else None
    elif choice in ("auto", "required", "none"):
        out = {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
    elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise RelayError("tool_choice must be auto, required, none or {type: function, function: {name}}")
    if out is not None and parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


# --- answer -------------------------------------------------------------------------------


class ChatFront:
    """Hub events → Chat chunks for one answer (`encode`), or one completion (`message`)."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = "chatcmpl-" + os.urandom(12).hex()
        self.created = int(time.time())
        self._calls: dict[int, int] = {}  # hub block index → tool call index
        self._usage: dict[str, int] = {}
        self._finish: str | None = None
        self.reasoning_tokens: Any = None  # () -> int: the provider's count, known at the end
        self.ended = False

    # The front's side of `Answer`.
    ping = PING

    def terminal(self, data: bytes) -> bool:
        """(A passed-through stream: `[DONE]`, or a finish reason, which is all some
        compatible servers end with.)"""
        return DONE.strip() in data or b'data: {"error"' in data or _FINISHED.search(data) is not None

    def error_event(self, error_type: str, message: str) -> bytes:
        return b"data: " + orjson.dumps({"error": _error(error_type, message)}) + b"\n\n"

    def error_reply(self, status: int, message: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        status, error_type = anthropic_status(status)
        return status, orjson.dumps({"error": _error(error_type, message)}), {"content-type": "application/json", **(headers or {})}

    def encode(self, events: list[dict[str, Any]]) -> list[bytes]:
        out = []
        for event in events:
            chunk = self._chunk(event)
            if chunk is not None:
                out.append(chunk)
        return [b"".join(out)] if out else []

    def _chunk(self, event: dict[str, Any]) -> bytes | None:
        kind = event["type"]
        if kind == "content_block_delta":
            delta = event["delta"]
            dtype = delta["type"]
            if dtype == "text_delta":
                return self._delta({"content": delta["text"]})
            if dtype == "thinking_delta":
                return self._delta({"reasoning_content": delta["thinking"]})
            if dtype == "input_json_delta" and event["index"] in self._calls:
                return self._delta({"tool_calls": [{"index": self._calls[event["index"]], "function": {"arguments": delta["partial_json"]}}]})
            return None
        if kind == "message_start":
            self._usage = dict(event["message"].get("usage") or {})
            return self._delta({"role": "assistant", "content": ""})
        if kind == "content_block_start":
            block = event["content_block"]
            if block["type"] != "tool_use":
                return None
            index = self._calls[event["index"]] = len(self._calls)
            call = {"index": index, "id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": ""}}
            return self._delta({"tool_calls": [call]})
        if kind == "message_delta":
            self._usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            self._finish = FINISH.get(event["delta"].get("stop_reason") or "end_turn", "stop")
            return self._delta({}, self._finish)
        if kind == "message_stop":
            self.ended = True
            usage = b""
            if self.include_usage:
                usage = self._line({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                    "model": self.model, "choices": [], "usage": self.usage()})
            return usage + DONE
        if kind == "error":
            self.ended = True
            error = event.get("error") or {}
            return self.error_event(error.get("type", "api_error"), error.get("message", ""))
        return None  # ping, content_block_stop

    def _delta(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return self._line({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                           "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    @staticmethod
    def _line(chunk: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def usage(self, usage: dict[str, Any] | None = None) -> dict[str, Any]:
        usage = self._usage if usage is None else usage
        cached = usage.get("cache_read_input_tokens") or 0
        prompt = (usage.get("input_tokens") or 0) + cached + (usage.get("cache_creation_input_tokens") or 0)
        completion = usage.get("output_tokens") or 0
        reasoning = self.reasoning_tokens() if callable(self.reasoning_tokens) else 0
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": cached},
                "completion_tokens_details": {"reasoning_tokens": reasoning}}

    def message(self, message: dict[str, Any]) -> bytes:
        """A whole hub message → one `chat.completion`."""
        texts, thinking, calls = [], [], []
        for block in message.get("content") or ():
            if block["type"] == "text":
                texts.append(block["text"])
            elif block["type"] == "thinking":
                thinking.append(block.get("thinking") or "")
            elif block["type"] == "tool_use":
                calls.append({"id": block["id"], "type": "function",
                              "function": {"name": block["name"], "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
        if thinking:
            out["reasoning_content"] = "".join(thinking)
        if calls:
            out["tool_calls"] = calls
        finish = FINISH.get(message.get("stop_reason") or "end_turn", "stop")
        return orjson.dumps({"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                             "choices": [{"index": 0, "message": out, "logprobs": None, "finish_reason": finish}],
                             "usage": self.usage(message.get("usage") or {})})

    def reply(self, status: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        """An answer in Anthropic's form (an error, a message, or a whole event stream) → the
        same in OpenAI's."""
        kept = {k: v for k, v in headers.items() if k in ("retry-after", "retry-after-ms")}
        if status >= 400:
            try:
                error = orjson.loads(body).get("error") or {}
            except (orjson.JSONDecodeError, AttributeError):
                error = {}
            return status, orjson.dumps({"error": _error(error.get("type", "api_error"), error.get("message", ""))}), {"content-type": "application/json", **kept}
        if headers.get("content-type", "").startswith("text/event-stream"):
            decoder = sse.Decoder()
            events = [orjson.loads(e.data) for e in decoder.feed(body) + decoder.flush() if e.data.strip()]
            return 200, b"".join(self.encode(events)), {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        return 200, self.message(orjson.loads(body)), {"content-type": "application/json"}


def _error(error_type: str, message: str) -> dict[str, Any]:
    return {"message": message, "type": ERROR_TYPES.get(error_type, "server_error"), "param": None, "code": error_type}
