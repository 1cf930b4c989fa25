"""A scripted mock of an OpenAI Chat Completions provider.

It stands in for a real remote provider in end-to-end tests and latency
benchmarks, so it speaks the exact wire format (JSON bodies, SSE streams sent
with chunked transfer encoding, OpenAI error bodies) and rejects with HTTP 400
the requests real providers reject. A translator bug then shows up as a failed
request here instead of only in production.

Standard library plus orjson only: a single asyncio HTTP/1.1 server, no thread
or log line per request, so it adds as little latency as possible.

In process::

    with MockOpenAI([{"text": "hi"}], api_key="sk-test") as mock:
        ...  # point a client at mock.base_url; inspect mock.requests

As a subprocess (prints ``READY <port>`` once listening)::

    python tests/mock_openai.py --port 0 [--script turns.json] [--api-key K]
        [--extra-field thinking] [--no-repeat-last] [--log]

A script is a list of turns, one consumed per accepted chat completion request
(the last one repeats when exhausted unless ``repeat_last`` is false):

* ``{"text", "reasoning"?, "tool_calls"?: [{"id"?, "name", "arguments"}],
  "finish_reason"?, "usage"?, "chunks"?, "interval_ms"?, "delay_ms"?}``
  rendered as a completion, or as an SSE stream when the request streams;
* ``{"raw_sse": str, "status"?, "headers"?, "interval_ms"?}`` replays exact
  stream bytes, one chunk per SSE event;
* ``{"raw_body": str, "status"?, "content_type"?, "headers"?}`` replays an
  exact body (e.g. a 502 HTML page);
* ``{"error_status": int, "error_body"?: {...}, "headers"?: {...}}``;
* in process, a callable ``(request_json) -> turn``.

A script file holds either that list or ``{"turns": [...], "api_key"?,
"extra_fields"?, "repeat_last"?, "models"?}``.
"""

from __future__ import annotations

import argparse
import asyncio
import http
import random
import re
import string
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import orjson

KNOWN_FIELDS = frozenset(
    "model messages stream stream_options max_tokens max_completion_tokens temperature top_p n stop "
    "presence_penalty frequency_penalty logit_bias logprobs top_logprobs user tools tool_choice "
    "parallel_tool_calls response_format seed reasoning_effort service_tier store metadata modalities "
    "prediction audio verbosity web_search_options safety_identifier prompt_cache_key".split()
)
ROLES = ("system", "developer", "user", "assistant", "tool")
TOOL_NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
DATA_URL_RE = re.compile(r"data:[\w.+-]+/[\w.+-]+;base64,")
TOOL_CHOICE_MODES = ("auto", "none", "required")
NUMBER_RANGES = {"temperature": (0, 2), "top_p": (0, 1), "presence_penalty": (-2, 2), "frequency_penalty": (-2, 2)}
POSITIVE_INTS = ("max_tokens", "max_completion_tokens", "n")
BOOLEANS = ("stream", "parallel_tool_calls")
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4.1", "mock-model")
DEFAULT_TURN = {"text": "Hello from the mock provider."}
DEFAULT_CHUNKS = 3
SYSTEM_FINGERPRINT = "fp_mock0001"
MAX_HEADER_BYTES = 1 << 20
ALNUM = string.ascii_letters + string.digits

Turn = dict[str, Any] | Callable[[dict], dict]


# --------------------------------------------------------------------------- errors


class RequestRejected(Exception):
    """An error answered with an OpenAI-shaped error body instead of a completion."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None,
                 status: int = 400, type: str = "invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type=type, param=param, code=code)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    """OpenAI's error envelope, which SDKs parse into exception attributes."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def default_error_body(status: int) -> dict:
    """A plausible provider error body for a scripted status without a body."""
    if status == 429:
        return error_body("Rate limit reached for requests. Please try again later.",
                          type="requests", code="rate_limit_exceeded")
    phrase = _reason(status)
    return error_body(phrase, type="server_error" if status >= 500 else "invalid_request_error")


# ----------------------------------------------------------------------- validation


def validate_chat_request(body: dict, extra_fields: Iterable[str] = ()) -> None:
    """Raise RequestRejected for anything a real Chat Completions endpoint refuses."""
    for key in body:
        if key not in KNOWN_FIELDS and key not in extra_fields:
            raise RequestRejected(f"Unrecognized request argument supplied: {key}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestRejected("you must provide a model parameter", param="model",
                              code="missing_required_parameter")
    _validate_scalars(body)
    if "messages" not in body:
        raise RequestRejected("Missing required parameter: 'messages'.", param="messages",
                              code="missing_required_parameter")
    _validate_messages(body["messages"])
    tool_names = _validate_tools(body.get("tools"))
    _validate_tool_choice(body, tool_names)
    if body.get("stream_options") is not None:
        if body.get("stream") is not True:
            raise RequestRejected("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                                  param="stream_options", code="invalid_value")
        if not isinstance(body["stream_options"], dict):
            raise _invalid_type("stream_options", "an object", body["stream_options"])


def _validate_scalars(body: dict) -> None:
    for key in BOOLEANS:
        if body.get(key) is not None and not isinstance(body[key], bool):
            raise _invalid_type(key, "a boolean", body[key])
    for key in POSITIVE_INTS:
        value = body.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise RequestRejected(f"Invalid '{key}': expected an integer greater than or equal to 1.",
                                  param=key, code="invalid_value")
    for key, (low, high) in NUMBER_RANGES.items():
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
            raise RequestRejected(f"Invalid '{key}': expected a number between {low} and {high}, got {value!r}.",
                                  param=key, code="invalid_value")


def _validate_messages(messages: Any) -> None:
    """Roles, content shapes, and the tool_calls -> tool answers pairing."""
    if not isinstance(messages, list):
        raise _invalid_type("messages", "an array", messages)
    if not messages:
        raise RequestRejected("Invalid 'messages': empty array. Expected an array with minimum length 1, "
                              "but got an empty array instead.", param="messages", code="empty_array")
    pending: dict[str, None] = {}  # ids of the last assistant tool_calls still awaiting a tool message
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _invalid_type(where, "an object", msg)
        role = msg.get("role")
        if role not in ROLES:
            raise RequestRejected(f"Invalid value: {role!r}. Supported values are: 'system', 'developer', "
                                  "'user', 'assistant', and 'tool'.", param=f"{where}.role", code="invalid_value")
        if pending and role != "tool":
            raise _unanswered(pending, where)
        if role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str):
                raise _missing(f"{where}.tool_call_id")
            if call_id not in pending:
                raise RequestRejected("Invalid parameter: messages with role 'tool' must be a response to a "
                                      "preceeding message with 'tool_calls'.", param=f"{where}.role")
            del pending[call_id]
        tool_calls = msg.get("tool_calls")
        if tool_calls is not None:
            if role != "assistant":
                raise RequestRejected(f"Invalid '{where}.tool_calls': only assistant messages may have tool_calls.",
                                      param=f"{where}.tool_calls", code="invalid_value")
            pending = _validate_tool_calls(tool_calls, where)
        _validate_content(msg, role, where, has_tool_calls=bool(tool_calls))
    if pending:
        raise _unanswered(pending, f"messages[{len(messages)}]")


def _validate_tool_calls(tool_calls: Any, where: str) -> dict[str, None]:
    """Check each call's shape; return its ids, which the next messages must answer."""
    if not isinstance(tool_calls, list) or not tool_calls:
        raise RequestRejected(f"Invalid '{where}.tool_calls': expected a non-empty array.",
                              param=f"{where}.tool_calls", code="empty_array")
    ids: dict[str, None] = {}
    for j, call in enumerate(tool_calls):
        at = f"{where}.tool_calls[{j}]"
        if not isinstance(call, dict):
            raise _invalid_type(at, "an object", call)
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise _missing(f"{at}.id")
        if call_id in ids:
            raise RequestRejected(f"Invalid '{at}.id': duplicate tool call id {call_id!r}.",
                                  param=f"{at}.id", code="invalid_value")
        if call.get("type") != "function":
            raise RequestRejected(f"Invalid value: {call.get('type')!r}. Supported values are: 'function'.",
                                  param=f"{at}.type", code="invalid_value")
        function = call.get("function")
        if not isinstance(function, dict):
            raise _missing(f"{at}.function")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise _missing(f"{at}.function.name")
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            raise _invalid_type(f"{at}.function.arguments", "a string", arguments)
        try:
            orjson.loads(arguments)
        except orjson.JSONDecodeError:
            raise RequestRejected(f"Invalid '{at}.function.arguments': expected a JSON-encoded string, "
                                  f"got {arguments[:60]!r}.", param=f"{at}.function.arguments",
                                  code="invalid_value") from None
        ids[call_id] = None
    return ids


def _validate_content(msg: dict, role: str, where: str, has_tool_calls: bool) -> None:
    at = f"{where}.content"
    if msg.get("content") is None:
        if role == "assistant" and has_tool_calls:
            return
        if "content" not in msg:
            raise _missing(at)
        raise RequestRejected(f"Invalid value for '{at}': expected a string, got null.", param=at,
                              code="invalid_type")
    content = msg["content"]
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _invalid_type(at, "one of a string or array of objects", content)
    if not content:
        raise RequestRejected(f"Invalid '{at}': empty array. Expected an array with minimum length 1, "
                              "but got an empty array instead.", param=at, code="empty_array")
    for k, part in enumerate(content):
        part_at = f"{at}[{k}]"
        part_type = part.get("type") if isinstance(part, dict) else None
        if part_type == "text":
            if not isinstance(part.get("text"), str):
                raise _missing(f"{part_at}.text")
        elif part_type == "image_url":
            if role != "user":
                raise RequestRejected(f"Image URLs are only allowed for messages with role 'user', but this "
                                      f"message with role '{role}' contains an image URL.", param=at,
                                      code="invalid_value")
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str) or not (url.startswith(("http://", "https://")) or DATA_URL_RE.match(url)):
                raise RequestRejected(f"Invalid '{part_at}.image_url.url': expected an http(s) URL or a "
                                      "base64 data URL.", param=f"{part_at}.image_url.url", code="invalid_value")
        else:
            raise RequestRejected(f"Invalid value: {part_type!r}. Supported values are: 'text' and 'image_url'.",
                                  param=f"{part_at}.type", code="invalid_value")


def _validate_tools(tools: Any) -> set[str]:
    """Check function tool definitions; return their names for tool_choice."""
    if tools is None:
        return set()
    if not isinstance(tools, list) or not tools:
        raise RequestRejected("Invalid 'tools': empty array. Expected an array with minimum length 1, "
                              "but got an empty array instead.", param="tools", code="empty_array")
    names = set()
    for j, tool in enumerate(tools):
        at = f"tools[{j}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise RequestRejected(f"Invalid value for '{at}.type': supported values are: 'function'.",
                                  param=f"{at}.type", code="invalid_value")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _missing(f"{at}.function")
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME_RE.fullmatch(name):
            raise RequestRejected(f"Invalid '{at}.function.name': string does not match pattern. Expected a "
                                  "string that matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.",
                                  param=f"{at}.function.name", code="invalid_value")
        parameters = function.get("parameters")
        if not isinstance(parameters, dict):
            raise _invalid_type(f"{at}.function.parameters", "an object", parameters)
        if parameters.get("type", "object") != "object":
            raise RequestRejected(f"Invalid schema for function '{name}': schema must be a JSON Schema of "
                                  f"'type: \"object\"', got 'type: \"{parameters['type']}\"'.",
                                  param=f"{at}.function.parameters", code="invalid_function_parameters")
        names.add(name)
    return names


def _validate_tool_choice(body: dict, tool_names: set[str]) -> None:
    for key in ("tool_choice", "parallel_tool_calls"):
        if body.get(key) is not None and not tool_names:
            raise RequestRejected(f"Invalid value for '{key}': '{key}' is only allowed when 'tools' are specified.",
                                  param=key, code="invalid_value")
    choice = body.get("tool_choice")
    if choice is None or choice in TOOL_CHOICE_MODES:
        return
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if name in tool_names:
            return
        raise RequestRejected(f"Invalid value for 'tool_choice': function {name!r} is not among the 'tools'.",
                              param="tool_choice", code="invalid_value")
    raise RequestRejected(f"Invalid value for 'tool_choice': {choice!r}. Supported values are: 'none', 'auto', "
                          "'required', or an object naming a function.", param="tool_choice", code="invalid_value")


def _missing(param: str) -> RequestRejected:
    return RequestRejected(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


def _invalid_type(param: str, expected: str, got: Any) -> RequestRejected:
    return RequestRejected(f"Invalid type for '{param}': expected {expected}, but got {type(got).__name__} instead.",
                           param=param, code="invalid_type")


def _unanswered(pending: dict[str, None], where: str) -> RequestRejected:
    return RequestRejected("An assistant message with 'tool_calls' must be followed by tool messages responding "
                           "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                           + ", ".join(pending), param=f"{where}.role")


# ------------------------------------------------------------------------ rendering


def new_id(prefix: str, length: int = 24) -> str:
    """Real-looking ids (chatcmpl-..., call_...) so clients that sniff them behave as in production."""
    return prefix + "".join(random.choices(ALNUM, k=length))


def split_text(text: str, parts: int) -> list[str]:
    """Split text into at most `parts` non-empty, nearly equal pieces."""
    if not text:
        return []
    parts = max(1, min(parts, len(text)))
    size, extra = divmod(len(text), parts)
    pieces, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        pieces.append(text[start:end])
        start = end
    return pieces


def normalize_tool_calls(turn: dict) -> list[dict]:
    """Turn the script's compact tool calls into wire-format ones (arguments as a JSON string)."""
    calls = []
    for call in turn.get("tool_calls") or ():
        arguments = call.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments).decode()
        calls.append({"id": call.get("id") or new_id("call_"), "type": "function",
                      "function": {"name": call["name"], "arguments": arguments}})
    return calls


def build_usage(turn: dict, prompt_bytes: int, completion_chars: int, reasoning_chars: int) -> dict:
    """Rough token counts (about 4 bytes a token), overridable by the turn's `usage`."""
    prompt = max(1, prompt_bytes // 4)
    reasoning = (reasoning_chars + 3) // 4
    completion = (completion_chars + 3) // 4 + reasoning
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
             "prompt_tokens_details": {"cached_tokens": 0},
             "completion_tokens_details": {"reasoning_tokens": reasoning}}
    override = turn.get("usage") or {}
    usage.update(override)
    if "total_tokens" not in override:
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return usage


def _turn_parts(turn: dict, prompt_bytes: int) -> tuple[str, str, list[dict], str, dict]:
    text, reasoning = turn.get("text") or "", turn.get("reasoning") or ""
    tool_calls = normalize_tool_calls(turn)
    finish_reason = turn.get("finish_reason") or ("tool_calls" if tool_calls else "stop")
    completion_chars = len(text) + sum(len(c["function"]["arguments"]) for c in tool_calls)
    usage = build_usage(turn, prompt_bytes, completion_chars, len(reasoning))
    return text, reasoning, tool_calls, finish_reason, usage


def render_completion(turn: dict, request: dict, prompt_bytes: int) -> dict:
    """A non-streaming `chat.completion` object."""
    text, reasoning, tool_calls, finish_reason, usage = _turn_parts(turn, prompt_bytes)
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not tool_calls else None,
                               "refusal": None, "annotations": []}
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"id": new_id("chatcmpl-", 29), "object": "chat.completion", "created": int(time.time()),
            "model": request["model"], "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage}


def render_stream_events(turn: dict, request: dict, prompt_bytes: int) -> list[bytes]:
    """The SSE events of a streamed completion, in the order OpenAI sends them."""
    text, reasoning, tool_calls, finish_reason, usage = _turn_parts(turn, prompt_bytes)
    parts = int(turn.get("chunks", DEFAULT_CHUNKS))
    include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
    base = {"id": new_id("chatcmpl-", 29), "object": "chat.completion.chunk", "created": int(time.time()),
            "model": request["model"], "system_fingerprint": SYSTEM_FINGERPRINT}

    def event(delta: dict, finish_reason: str | None = None) -> bytes:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
        if include_usage:
            chunk["usage"] = None  # OpenAI sends an explicit null until the final usage chunk
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    events = [event({"role": "assistant", "content": "" if text or not tool_calls else None, "refusal": None})]
    events += [event({"reasoning_content": piece}) for piece in split_text(reasoning, parts)]
    events += [event({"content": piece}) for piece in split_text(text, parts)]
    for index, call in enumerate(tool_calls):
        head = {"index": index, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""}}
        events.append(event({"tool_calls": [head]}))
        events += [event({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                   for piece in split_text(call["function"]["arguments"], parts)]
    events.append(event({}, finish_reason))
    if include_usage:
        events.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def split_sse(raw: bytes) -> list[bytes]:
    """Split captured SSE bytes into events so each is flushed as its own chunk."""
    pieces = raw.split(b"\n\n")
    events = [piece + b"\n\n" for piece in pieces[:-1]]
    return events + [pieces[-1]] if pieces[-1] else events


# ----------------------------------------------------------------------------- HTTP


@dataclass
class RecordedRequest:
    """One request as the provider saw it; `body` is the parsed JSON or None."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, str, dict[str, str], bytes] | None:
    """Read one HTTP/1.1 request (Content-Length or chunked body); None on a clean EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        return method, target, version, headers, bytes(body)
    length = int(headers.get("content-length") or 0)
    return method, target, version, headers, await reader.readexactly(length) if length else b""


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_reason(status)}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send_body(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str,
                    extra_headers: dict | None = None) -> None:
    headers = {"content-type": content_type, "content-length": str(len(body)), "x-request-id": new_id("req_")}
    headers.update(extra_headers or {})
    writer.write(_head(status, headers) + body)
    await writer.drain()


def _carries_tokens(event: bytes) -> bool:
    """A chunk with generated text (not the opening chunk's empty content)."""
    return (b'"content":"' in event and b'"content":""' not in event) or b'"reasoning_content":"' in event


async def send_chunked(writer: asyncio.StreamWriter, status: int, events: list[bytes], interval_s: float,
                       extra_headers: dict | None = None, paced: Callable[[bytes], bool] | None = None) -> None:
    """Flush each event as its own HTTP chunk so clients see real timing.

    With `paced`, only the events it picks (a model's generated tokens) wait `interval_s`
    after the previous such event; the others (a stream's opening and closing events) go
    out at once, as a real provider sends them.
    """
    headers = {"content-type": "text/event-stream; charset=utf-8", "transfer-encoding": "chunked",
               "cache-control": "no-cache", "x-request-id": new_id("req_")}
    headers.update(extra_headers or {})
    writer.write(_head(status, headers))
    await writer.drain()
    started = False
    for i, data in enumerate(events):
        if interval_s and (paced(data) if paced else i):
            if started or not paced:
                await asyncio.sleep(interval_s)
            started = True
        writer.write(b"%x\r\n%b\r\n" % (len(data), data))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


# --------------------------------------------------------------------------- server


class MockOpenAI:
    """A scripted OpenAI-compatible provider on 127.0.0.1, in a background thread or as a process."""

    def __init__(self, script: Iterable[Turn] = (), *, port: int = 0, api_key: str | None = None,
                 extra_fields: Iterable[str] = (), repeat_last: bool = True,
                 models: Iterable[str] = DEFAULT_MODELS, log: bool = False):
        self.port = port
        self.api_key = api_key
        self.extra_fields = frozenset(extra_fields)
        self.repeat_last = repeat_last
        self.models = list(models)
        self.log = log
        self.requests: list[RecordedRequest] = []
        self.set_script(script)
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.Task] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def set_script(self, turns: Iterable[Turn]) -> None:
        """Replace the script and start again from its first turn."""
        self.turns: list[Turn] = list(turns)
        self.turns_used = 0

    # -- lifecycle

    def start(self) -> MockOpenAI:
        """Serve from a background thread; returns once the port is bound."""
        ready = threading.Event()
        failure: list[BaseException] = []

        async def run() -> None:
            try:
                await self._listen()
                self._stopped = asyncio.Event()
            except BaseException as exc:
                failure.append(exc)
                return
            finally:
                ready.set()
            await self._stopped.wait()
            await self._shutdown()

        self._thread = threading.Thread(target=asyncio.run, args=(run(),), name="mock-openai", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._thread and self._loop and self._stopped:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> MockOpenAI:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def serve_as_process(self) -> None:
        """Subprocess mode: serve on this thread, saying `READY <port>` once listening."""
        try:
            asyncio.run(self.serve_forever(on_ready=lambda port: print(f"READY {port}", flush=True)))
        except KeyboardInterrupt:
            pass

    async def serve_forever(self, on_ready: Callable[[int], None] | None = None) -> None:
        """Serve on the current event loop (subprocess mode)."""
        await self._listen()
        if on_ready:
            on_ready(self.port)
        try:
            await self._server.serve_forever()
        finally:
            await self._shutdown()

    async def _listen(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle_connection, "127.0.0.1", self.port,
                                                  limit=MAX_HEADER_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    # -- request handling

    async def _handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve keep-alive requests on one connection until the client closes it."""
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            while True:
                try:
                    request = await read_request(reader)
                except (ValueError, asyncio.LimitOverrunError):
                    await send_body(writer, 400, orjson.dumps(error_body("Malformed HTTP request.")),
                                    "application/json", {"connection": "close"})
                    break
                if request is None:
                    break
                method, target, version, headers, raw = request
                await self._serve(writer, method, target.split("?", 1)[0], headers, raw)
                if version != "HTTP/1.1" or headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # client went away, or stop(): end quietly (3.11 logs cancelled connection tasks)
        finally:
            self._connections.discard(task)
            writer.close()

    def _record(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Any:
        """Log the request (rejected ones too) and return its JSON body, or None."""
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        self.requests.append(RecordedRequest(method, path, headers, body, raw))
        if self.log:
            print(f"{type(self).__name__}: {method} {path} ({len(raw)} bytes)", file=sys.stderr, flush=True)
        return body

    async def _serve(self, writer: asyncio.StreamWriter, method: str, path: str, headers: dict[str, str],
                     raw: bytes) -> None:
        body = self._record(method, path, headers, raw)
        try:
            self._check_auth(headers)
            if method == "POST" and path == "/v1/chat/completions":
                if not isinstance(body, dict):
                    raise RequestRejected("We could not parse the JSON body of your request. The OpenAI API "
                                          "expects a JSON payload, but what was sent was not valid JSON.")
                validate_chat_request(body, self.extra_fields)
                turn = self._next_turn(body)
            elif method == "GET" and path == "/v1/models":
                models = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "mock"} for m in self.models]
                return await send_body(writer, 200, orjson.dumps({"object": "list", "data": models}),
                                       "application/json")
            else:
                raise RequestRejected(f"Invalid URL ({method} {path})", status=404)
        except RequestRejected as rejected:
            return await send_body(writer, rejected.status, orjson.dumps(rejected.body), "application/json")
        except Exception as exc:  # a broken script or callable turn: make it loud, keep serving
            traceback.print_exc()
            return await send_body(writer, 500, orjson.dumps(error_body(f"mock error: {exc!r}", type="server_error")),
                                   "application/json")
        await self._play(writer, turn, body, len(raw))

    def _check_auth(self, headers: dict[str, str]) -> None:
        if self.api_key is None:
            return
        given = headers.get("authorization", "")
        if given == f"Bearer {self.api_key}":
            return
        if not given:
            raise RequestRejected("You didn't provide an API key. You need to provide your API key in an "
                                  "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                                  status=401)
        shown = given.removeprefix("Bearer ")
        shown = shown[:3] + "*" * 4 + shown[-4:] if len(shown) > 8 else "****"
        raise RequestRejected(f"Incorrect API key provided: {shown}. You can find your API key at "
                              "https://platform.openai.com/account/api-keys.", code="invalid_api_key", status=401)

    def _next_turn(self, request: dict) -> dict:
        """Consume the next scripted turn, resolving callables against the request."""
        if self.turns_used < len(self.turns):
            turn = self.turns[self.turns_used]
            self.turns_used += 1
        elif not self.turns:
            turn = DEFAULT_TURN
        elif self.repeat_last:
            turn = self.turns[-1]
        else:
            raise RequestRejected(f"mock script exhausted after {len(self.turns)} turns", status=500,
                                  type="server_error")
        return turn(request) if callable(turn) else turn

    async def _play(self, writer: asyncio.StreamWriter, turn: dict, request: dict, prompt_bytes: int) -> None:
        """Send the response a turn describes."""
        if turn.get("delay_ms"):
            await asyncio.sleep(turn["delay_ms"] / 1000)
        headers = turn.get("headers")
        interval_s = turn.get("interval_ms", 0) / 1000
        if "error_status" in turn:
            status = turn["error_status"]
            body = orjson.dumps(turn.get("error_body") or default_error_body(status))
            await send_body(writer, status, body, "application/json", headers)
        elif "raw_body" in turn:
            await send_body(writer, turn.get("status", 200), _as_bytes(turn["raw_body"]),
                            turn.get("content_type", "application/json"), headers)
        elif "raw_sse" in turn:
            await send_chunked(writer, turn.get("status", 200), split_sse(_as_bytes(turn["raw_sse"])),
                               interval_s, headers)
        elif request.get("stream"):
            await send_chunked(writer, 200, render_stream_events(turn, request, prompt_bytes), interval_s, headers,
                               paced=_carries_tokens)
        else:
            body = orjson.dumps(render_completion(turn, request, prompt_bytes))
            await send_body(writer, 200, body, "application/json", headers)


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


# ----------------------------------------------------------------------- subprocess


def spawn_mock(script: str | Path, *args: str, python: str = sys.executable) -> tuple[subprocess.Popen, int]:
    """Start a mock file as a subprocess on a free port (or `--port N` among `args`); return
    (process, port) once it says READY. The caller terminates the process."""
    proc = subprocess.Popen([python, str(script), "--port", "0", *args], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"{Path(script).name} did not start: {line!r}")
    return proc, int(line.split()[1])


def spawn_mock_openai(*args: str, python: str = sys.executable) -> tuple[subprocess.Popen, int]:
    """This mock as a subprocess; `args` are extra CLI flags, e.g. ("--script", "turns.json")."""
    return spawn_mock(Path(__file__).resolve(), *args, python=python)


def load_script_file(path: str) -> dict:
    """A script file is a list of turns or an object with `turns` and MockOpenAI options."""
    data = orjson.loads(Path(path).read_bytes())
    return {"turns": data} if isinstance(data, list) else data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Scripted mock OpenAI Chat Completions provider.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--script", help="JSON file: a list of turns, or {turns, api_key, extra_fields, ...}")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY'")
    parser.add_argument("--extra-field", action="append", default=[], help="accept this extra request field")
    parser.add_argument("--no-repeat-last", action="store_true", help="answer 500 once the script is exhausted")
    parser.add_argument("--log", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)
    config = load_script_file(args.script) if args.script else {}
    mock = MockOpenAI(config.get("turns", ()), port=args.port,
                      api_key=args.api_key or config.get("api_key"),
                      extra_fields=[*args.extra_field, *config.get("extra_fields", ())],
                      repeat_last=config.get("repeat_last", True) and not args.no_repeat_last,
                      models=config.get("models", DEFAULT_MODELS), log=args.log)
    mock.serve_as_process()


if __name__ == "__main__":
    main()
