"""A scripted mock of the Anthropic Messages API.

It stands in for api.anthropic.com and for Anthropic-compatible providers (Kimi, DeepSeek, GLM,
MiniMax endpoints) in end-to-end tests, and is the upstream of the latency benchmarks. So it
speaks the exact wire format (the Messages JSON, the SSE event sequence sent with chunked
transfer encoding, Anthropic's error envelope and status codes) and refuses with the real
status what the API refuses: a relay bug shows up as a failed request here, not in production.
Options make it refuse what some compatible providers refuse (fields, betas, cache TTLs), to
test that the relay cleans requests for them.

The server itself (one asyncio loop in a thread or a process, keep-alive HTTP/1.1, chunked SSE
flushed event by event, request recording, the script cursor) is MockOpenAI's, which is
protocol-neutral: MockAnthropic subclasses it and replaces only the protocol.

In process::

    with MockAnthropic([{"text": "hi"}], api_key="sk-ant-test") as mock:
        ...  # anthropic.Anthropic(base_url=mock.base_url, ...); inspect mock.requests

As a subprocess (prints ``READY <port>`` once listening)::

    python tests/mock_anthropic.py --port 0 [--script turns.json] [--api-key K] [--bearer]
        [--no-system-role] [--reject-field F] [--reject-beta B] [--reject-cache-ttl]
        [--no-count-tokens] [--no-repeat-last] [--log]

A script is a list of turns, one consumed per accepted ``POST /v1/messages`` (the last one
repeats when exhausted unless ``repeat_last`` is false):

* ``{"text"?, "thinking"?, "signature"?, "tool_calls"?: [{"id"?, "name", "input"}],
  "stop_reason"?, "usage"?, "chunks"?, "interval_ms"?, "delay_ms"?, "ping"?, "headers"?,
  "ignore_stream"?}`` rendered as a Message, or as its SSE stream when the request streams
  (or always, with ``ignore_stream``); ``chunks`` deltas per block, ``interval_ms`` between
  events, ``delay_ms`` before the response;
* ``{"raw_sse": str, "status"?, "headers"?, "interval_ms"?}`` replays exact stream bytes;
* ``{"raw_body": str, "status"?, "content_type"?, "headers"?}`` replays an exact body;
* ``{"error_status": int, "error_type"?, "message"?, "headers"?}`` answers an Anthropic error;
* in process, a callable ``(request_json) -> turn``.

A script file holds that list or ``{"turns": [...], **options}`` with MockAnthropic's keyword
options (api_key, bearer, system_role, reject_fields, reject_betas, reject_cache_ttl,
count_tokens, repeat_last, models).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Iterable

import orjson

from mock_openai import (DEFAULT_CHUNKS, MockOpenAI, RequestRejected, Turn, _as_bytes,
                         load_script_file, new_id, send_body, send_chunked, spawn_mock, split_sse, split_text)

DEFAULT_MODELS = ("claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805", "claude-haiku-4-5-20251001")
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               500: "api_error", 529: "overloaded_error"}
ERROR_MESSAGES = {404: "Not Found", 429: "Number of request tokens has exceeded your per-minute rate limit.",
                  500: "Internal server error", 529: "Overloaded"}
TOOL_NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,128}")
PING = b'event: ping\ndata: {"type": "ping"}\n\n'  # the API's own spacing, unlike its other events
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
ROUTES = {("POST", "/v1/messages"), ("POST", COUNT_TOKENS_PATH), ("GET", "/v1/models")}
EMPTY_CACHE_CREATION = {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}


# --------------------------------------------------------------------------- errors


class Rejected(RequestRejected):
    """A refused request. It carries an Anthropic error type (by default the status's) and is
    answered with Anthropic's envelope; the inherited OpenAI `body` is not used."""

    def __init__(self, message: str, status: int = 400, error_type: str | None = None):
        super().__init__(message, status=status)
        self.error_type = error_type


def error_body(message: str, error_type: str, request_id: str) -> dict:
    """Anthropic's error envelope, which the SDK turns into `APIStatusError.body`."""
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}


def new_request_id() -> str:
    return new_id("req_011C", 20)


# ----------------------------------------------------------------------- validation


def validate_messages_request(body: dict, *, system_role: bool = True, reject_fields: Iterable[str] = (),
                              reject_cache_ttl: bool = False, count_tokens: bool = False) -> None:
    """Raise Rejected for what /v1/messages (or count_tokens, which needs no max_tokens) refuses."""
    for field in reject_fields:
        if field in body:
            raise Rejected(f"{field}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Rejected("model: Field required")
    if not count_tokens:
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise Rejected("max_tokens: Field required")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise Rejected("max_tokens: Input should be greater than or equal to 1")
    _validate_messages(body.get("messages"), system_role)
    _validate_tools(body.get("tools"))
    if reject_cache_ttl:
        for key in ("system", "messages", "tools"):
            where = _find_cache_ttl(body.get(key), key)
            if where:
                raise Rejected(f"{where}: Extra inputs are not permitted")


def _validate_messages(messages: Any, system_role: bool) -> None:
    """Roles, non-empty content, and each tool_use answered by a tool_result in the next message."""
    if messages is None:
        raise Rejected("messages: Field required")
    if not isinstance(messages, list):
        raise Rejected("messages: Input should be a valid list")
    if not messages:
        raise Rejected("messages: at least one message is required")
    roles = ("user", "assistant", "system") if system_role else ("user", "assistant")
    pending: list[str] = []  # tool_use ids of the previous assistant message
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise Rejected(f"messages.{i}: Input should be a valid dictionary")
        role = msg.get("role")
        if role not in roles:
            raise Rejected(f"messages.{i}.role: Input should be " + " or ".join(f"'{r}'" for r in roles))
        blocks = _content_blocks(msg.get("content"), i, is_last=i == len(messages) - 1, role=role)
        answered = set()
        for j, block in enumerate(blocks):
            if block["type"] == "tool_result":
                if block.get("tool_use_id") not in pending:
                    raise Rejected(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                                   f"blocks: {block.get('tool_use_id')}. Each `tool_result` block must have a "
                                   "corresponding `tool_use` block in the previous message.")
                answered.add(block["tool_use_id"])
        _require_answers(pending, answered, i - 1)
        pending = [b.get("id") for b in blocks if b["type"] == "tool_use"] if role == "assistant" else []
        if not all(isinstance(call_id, str) and call_id for call_id in pending):
            raise Rejected(f"messages.{i}.content: tool_use.id: Field required")
    _require_answers(pending, set(), len(messages) - 1)


def _content_blocks(content: Any, i: int, is_last: bool, role: str) -> list[dict]:
    """The message's blocks (none for string content), checking the shapes the API checks."""
    if isinstance(content, str):
        if not content and not (is_last and role == "assistant"):
            raise Rejected(f"messages.{i}: all messages must have non-empty content except for the "
                           "optional final assistant message")
        return []
    if not isinstance(content, list):
        raise Rejected(f"messages.{i}.content: Input should be a valid list")
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise Rejected(f"messages.{i}.content.{j}.type: Field required")
        if block["type"] == "text" and not block.get("text"):
            raise Rejected("messages: text content blocks must be non-empty")
    return content


def _require_answers(pending: list[str], answered: set[str], where: int) -> None:
    missing = [call_id for call_id in pending if call_id not in answered]
    if missing:
        raise Rejected(f"messages.{where}: `tool_use` ids were found without `tool_result` blocks immediately "
                       f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                       "`tool_result` block in the next message.")


def _validate_tools(tools: Any) -> None:
    """Every tool needs a name; custom tools (no type, or "custom") an object input_schema."""
    if tools is None:
        return
    if not isinstance(tools, list):
        raise Rejected("tools: Input should be a valid list")
    for j, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise Rejected(f"tools.{j}: Input should be a valid dictionary")
        kind = tool.get("type") or "custom"
        name = tool.get("name")
        if not isinstance(name, str):
            raise Rejected(f"tools.{j}.{kind}.name: Field required")
        if kind != "custom":
            continue  # server tools (web_search_..., bash_...) have fixed schemas
        if not TOOL_NAME_RE.fullmatch(name):
            raise Rejected(f"tools.{j}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise Rejected(f"tools.{j}.custom.input_schema: Field required")
        if schema.get("type") != "object":
            raise Rejected(f"tools.{j}.custom.input_schema.type: Input should be 'object'")


def _find_cache_ttl(value: Any, path: str) -> str | None:
    """Path of the first `cache_control` carrying a `ttl`, which some compatible providers refuse."""
    if isinstance(value, dict):
        cache_control = value.get("cache_control")
        if isinstance(cache_control, dict) and "ttl" in cache_control:
            return f"{path}.cache_control.ttl"
        items: Iterable = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, child in items:
        if isinstance(child, (dict, list)):
            found = _find_cache_ttl(child, f"{path}.{key}")
            if found:
                return found
    return None


# ------------------------------------------------------------------------ rendering


def content_blocks(turn: dict) -> list[dict]:
    """A turn's blocks in the order Claude produces them: thinking, text, tool_use."""
    blocks: list[dict] = []
    if turn.get("thinking"):
        signature = turn.get("signature") or "Eo" + new_id("", 86) + "=="
        blocks.append({"type": "thinking", "thinking": turn["thinking"], "signature": signature})
    if turn.get("text"):
        blocks.append({"type": "text", "text": turn["text"]})
    for call in turn.get("tool_calls") or ():
        blocks.append({"type": "tool_use", "id": call.get("id") or new_id("toolu_01", 22), "name": call["name"],
                       "input": call.get("input", {})})
    return blocks


def build_usage(turn: dict, prompt_bytes: int, blocks: list[dict]) -> dict:
    """Rough token counts (about 4 bytes a token), overridable by the turn's `usage`."""
    output_chars = sum(len(b.get("text") or b.get("thinking") or orjson.dumps(b.get("input"))) for b in blocks)
    usage = {"input_tokens": max(1, prompt_bytes // 4), "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0, "cache_creation": EMPTY_CACHE_CREATION,
             "output_tokens": max(1, (output_chars + 3) // 4), "service_tier": "standard"}
    usage.update(turn.get("usage") or {})
    return usage


def render_message(turn: dict, request: dict, prompt_bytes: int) -> dict:
    """A non-streaming Message object."""
    blocks = content_blocks(turn)
    stop_reason = turn.get("stop_reason") or ("tool_use" if turn.get("tool_calls") else "end_turn")
    return {"id": new_id("msg_01", 22), "type": "message", "role": "assistant", "model": request["model"],
            "content": blocks, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": build_usage(turn, prompt_bytes, blocks)}


def sse_event(data: dict) -> bytes:
    """`event: X\\ndata: {json}\\n\\n`, compact JSON as the API sends it."""
    return b"event: %b\ndata: %b\n\n" % (data["type"].encode(), orjson.dumps(data))


def _block_deltas(block: dict, parts: int) -> list[dict]:
    if block["type"] == "text":
        return [{"type": "text_delta", "text": piece} for piece in split_text(block["text"], parts)]
    if block["type"] == "thinking":
        return [*({"type": "thinking_delta", "thinking": piece} for piece in split_text(block["thinking"], parts)),
                {"type": "signature_delta", "signature": block["signature"]}]
    arguments = orjson.dumps(block["input"]).decode()  # the API opens with an empty piece
    return [{"type": "input_json_delta", "partial_json": piece} for piece in ["", *split_text(arguments, parts)]]


def _empty_block(block: dict) -> dict:
    if block["type"] == "text":
        return {"type": "text", "text": ""}
    if block["type"] == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    return {**block, "input": {}}


def render_stream_events(turn: dict, request: dict, prompt_bytes: int) -> list[bytes]:
    """The SSE events of a streamed Message, in the order the API sends them (a ping after the
    first content_block_start)."""
    message = render_message(turn, request, prompt_bytes)
    usage = message["usage"]
    parts = int(turn.get("chunks", DEFAULT_CHUNKS))
    ping = [PING] if turn.get("ping", True) else []
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events = [sse_event({"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        events.append(sse_event({"type": "content_block_start", "index": index, "content_block": _empty_block(block)}))
        if index == 0:
            events += ping
        events += [sse_event({"type": "content_block_delta", "index": index, "delta": delta})
                   for delta in _block_deltas(block, parts)]
        events.append(sse_event({"type": "content_block_stop", "index": index}))
    if not message["content"]:
        events += ping
    final_usage = {key: usage[key] for key in
                   ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")}
    events.append(sse_event({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"],
                                                                 "stop_sequence": None}, "usage": final_usage}))
    events.append(sse_event({"type": "message_stop"}))
    return events


# --------------------------------------------------------------------------- server


def api_key_of(headers: dict[str, str]) -> str | None:
    """The API key a request carries: `x-api-key`, or `Authorization: Bearer` (anthropic 2.x)."""
    bearer = headers.get("authorization", "")
    return headers.get("x-api-key") or (bearer[7:] if bearer.startswith("Bearer ") else None)


class MockAnthropic(MockOpenAI):
    """A scripted Anthropic Messages API on 127.0.0.1; lifecycle, `requests`, `set_script` and
    `turns_used` as in MockOpenAI. `base_url` has no /v1, as the Anthropic SDK expects."""

    def __init__(self, script: Iterable[Turn] = (), *, port: int = 0, api_key: str | None = None,
                 bearer: bool = False, system_role: bool = True, reject_fields: Iterable[str] = (),
                 reject_betas: Iterable[str] = (), reject_cache_ttl: bool = False, count_tokens: bool = True,
                 repeat_last: bool = True, models: Iterable[str] = DEFAULT_MODELS, log: bool = False):
        """`api_key`: the key, as `x-api-key` or, as the SDK sends it from 2.x on, a bearer token.
        `bearer`: expect `Authorization: Bearer <api_key>` only, like some compatible providers.
        `system_role`: accept role "system" inside `messages`, as the API now does.
        `reject_fields`, `reject_betas`, `reject_cache_ttl`: answer 400 to these top-level fields,
        `anthropic-beta` values, and `cache_control.ttl`, like some compatible providers.
        `count_tokens`: serve /v1/messages/count_tokens (404 otherwise, like most providers)."""
        super().__init__(script, port=port, api_key=api_key, repeat_last=repeat_last, models=models, log=log)
        self.bearer = bearer
        self.system_role = system_role
        self.reject_fields = tuple(reject_fields)
        self.reject_betas = frozenset(reject_betas)
        self.reject_cache_ttl = reject_cache_ttl
        self.count_tokens = count_tokens

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, writer: asyncio.StreamWriter, method: str, path: str, headers: dict[str, str],
                     raw: bytes) -> None:
        body = self._record(method, path, headers, raw)
        try:
            route = (method, path)
            if route not in ROUTES or (path == COUNT_TOKENS_PATH and not self.count_tokens):
                raise Rejected("Not Found", status=404)
            self._check_headers(headers)
            if path == COUNT_TOKENS_PATH:
                self._validate(body, headers, count_tokens=True)
                return await self._send_json(writer, {"input_tokens": max(1, len(raw) // 4)})
            if path == "/v1/models":
                return await self._send_json(writer, self._model_list())
            self._validate(body, headers)
            turn = self._next_turn(body)
        except RequestRejected as rejected:  # also the inherited "script exhausted" error
            return await self._send_error(writer, rejected.status, str(rejected), getattr(rejected, "error_type", None))
        except Exception as exc:  # a broken script or callable turn: make it loud, keep serving
            traceback.print_exc()
            return await self._send_error(writer, 500, f"mock error: {exc!r}")
        await self._play(writer, turn, body, len(raw))

    def _check_headers(self, headers: dict[str, str]) -> None:
        if self.api_key is not None:
            if self.bearer:
                if headers.get("authorization") != f"Bearer {self.api_key}":
                    raise Rejected("Invalid bearer token", status=401)
            elif (given := api_key_of(headers)) is None:
                raise Rejected("x-api-key header is required", status=401)
            elif given != self.api_key:
                raise Rejected("invalid x-api-key", status=401)
        if "anthropic-version" not in headers:
            raise Rejected("anthropic-version: header is required")

    def _validate(self, body: Any, headers: dict[str, str], count_tokens: bool = False) -> None:
        if not isinstance(body, dict):
            raise Rejected("There was an issue with your request body: expected a JSON object.")
        betas = {beta.strip() for beta in headers.get("anthropic-beta", "").split(",")}
        refused = sorted(betas & self.reject_betas)
        if refused:
            raise Rejected(f"Unexpected value(s) `{', '.join(refused)}` for the `anthropic-beta` header. Please "
                           "consult our documentation at docs.anthropic.com or try again without the header.")
        validate_messages_request(body, system_role=self.system_role, reject_fields=self.reject_fields,
                                  reject_cache_ttl=self.reject_cache_ttl, count_tokens=count_tokens)

    def _model_list(self) -> dict:
        models = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-09-29T00:00:00Z"}
                  for m in self.models]
        return {"data": models, "has_more": False, "first_id": self.models[0] if self.models else None,
                "last_id": self.models[-1] if self.models else None}

    async def _send_json(self, writer: asyncio.StreamWriter, data: dict, headers: dict | None = None) -> None:
        await send_body(writer, 200, orjson.dumps(data), "application/json",
                        {"request-id": new_request_id(), **(headers or {})})

    async def _send_error(self, writer: asyncio.StreamWriter, status: int, message: str,
                          error_type: str | None = None, headers: dict | None = None) -> None:
        request_id = new_request_id()
        body = error_body(message, error_type or ERROR_TYPES.get(status, "api_error"), request_id)
        await send_body(writer, status, orjson.dumps(body), "application/json",
                        {"request-id": request_id, **(headers or {})})

    async def _play(self, writer: asyncio.StreamWriter, turn: dict, request: dict, prompt_bytes: int) -> None:
        """Send the response a turn describes."""
        if turn.get("delay_ms"):
            await asyncio.sleep(turn["delay_ms"] / 1000)
        headers = {"request-id": new_request_id(), **(turn.get("headers") or {})}
        interval_s = turn.get("interval_ms", 0) / 1000
        if "error_status" in turn:
            status = turn["error_status"]
            message = turn.get("message") or ERROR_MESSAGES.get(status, "Error")
            await self._send_error(writer, status, message, turn.get("error_type"), turn.get("headers"))
        elif "raw_body" in turn:
            await send_body(writer, turn.get("status", 200), _as_bytes(turn["raw_body"]),
                            turn.get("content_type", "application/json"), headers)
        elif "raw_sse" in turn:
            await send_chunked(writer, turn.get("status", 200), split_sse(_as_bytes(turn["raw_sse"])),
                               interval_s, headers)
        elif request.get("stream") or turn.get("ignore_stream"):
            await send_chunked(writer, 200, render_stream_events(turn, request, prompt_bytes), interval_s, headers,
                               paced=lambda event: event.startswith(b"event: content_block_delta"))
        else:
            await send_body(writer, 200, orjson.dumps(render_message(turn, request, prompt_bytes)),
                            "application/json", headers)


# ----------------------------------------------------------------------- subprocess


def spawn_mock_anthropic(*args: str, python: str = sys.executable) -> tuple[subprocess.Popen, int]:
    """This mock as a subprocess; `args` are extra CLI flags, e.g. ("--script", "turns.json")."""
    return spawn_mock(Path(__file__).resolve(), *args, python=python)


OPTION_KEYS = ("api_key", "bearer", "system_role", "reject_fields", "reject_betas", "reject_cache_ttl",
               "count_tokens", "repeat_last", "models")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Scripted mock Anthropic Messages API.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--script", help="JSON file: a list of turns, or {turns, api_key, bearer, ...}")
    parser.add_argument("--api-key", help="require 'x-api-key: KEY'")
    parser.add_argument("--bearer", action="store_true", help="require 'Authorization: Bearer KEY' instead")
    parser.add_argument("--no-system-role", action="store_true", help='refuse role "system" in messages')
    parser.add_argument("--reject-field", action="append", default=[], help="answer 400 to this top-level field")
    parser.add_argument("--reject-beta", action="append", default=[], help="answer 400 to this anthropic-beta")
    parser.add_argument("--reject-cache-ttl", action="store_true", help="answer 400 to cache_control.ttl")
    parser.add_argument("--no-count-tokens", action="store_true", help="answer 404 to count_tokens")
    parser.add_argument("--no-repeat-last", action="store_true", help="answer 500 once the script is exhausted")
    parser.add_argument("--log", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)
    config = load_script_file(args.script) if args.script else {}
    options = {key: config[key] for key in OPTION_KEYS if key in config}
    options["reject_fields"] = [*options.get("reject_fields", ()), *args.reject_field]
    options["reject_betas"] = [*options.get("reject_betas", ()), *args.reject_beta]
    flags = {"api_key": args.api_key, "bearer": args.bearer or None,
             "reject_cache_ttl": args.reject_cache_ttl or None,
             "system_role": False if args.no_system_role else None,
             "count_tokens": False if args.no_count_tokens else None,
             "repeat_last": False if args.no_repeat_last else None}
    options.update({key: value for key, value in flags.items() if value is not None})  # set flags win
    mock = MockAnthropic(config.get("turns", ()), port=args.port, log=args.log, **options)
    mock.serve_as_process()


if __name__ == "__main__":
    main()
