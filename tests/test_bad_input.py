"""Bad input through a real mitmdump with the addon: the relay answers it in Anthropic's protocol.

Proven here, over HTTP with raw bytes and headers:
- every malformed, mistyped, oversized, wrongly encoded or absurdly nested request gets a 4xx
  that is a well-formed Anthropic error (JSON, `{"type": "error", "error": {"type", "message"}}`),
  never a 5xx, never HTML, and leaves no traceback of the relay's code in its log;
- gzip and deflate request bodies are decoded, a huge `max_tokens` is clamped to 2**31-1;
- a hypothesis fuzz of `/v1/messages` and `/v1/messages/count_tokens` (mutated fields, random
  block types, deep nesting, random bytes, compressed bodies) gets only 200 messages, streams
  or token counts, and well-formed 4xx errors;
- the relay's log holds no traceback through `llmrelay` or `adapter.py` from this module's
  requests, apart from those of the tests marked as known failures.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from functools import cache

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MESSAGES = "/v1/messages"
COUNT = "/v1/messages/count_tokens"
HEADERS = {"content-type": "application/json", "x-api-key": "sk-any"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
}
MAX_TOKENS = 2**31 - 1
DEPTH = 100_000
VALID = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


# --- request bodies ------------------------------------------------------------------------


def body(**fields) -> bytes:
    """The valid request with `fields` replaced (None values kept as JSON null)."""
    return json.dumps({**VALID, **fields}).encode()


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def tool_turns(tool_input: bytes) -> bytes:
    """A tool call whose input is `tool_input` (raw JSON bytes), followed by its result."""
    return (
        b'{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"go"},'
        b'{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"f","input":' + tool_input + b"}]},"
        b'{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"done"}]}]}'
    )


def with_tool_schema(schema: bytes) -> bytes:
    return body()[:-1] + b',"tools":[{"name":"f","input_schema":' + schema + b"}]}"


def with_raw_field(name: str, value: bytes) -> bytes:
    return body()[:-1] + b',"' + name.encode() + b'":' + value + b"}"


@cache
def oversized() -> bytes:
    """Valid JSON a little over the default 32 MB limit."""
    return body(messages=[{"role": "user", "content": "a" * (33 * 1024 * 1024)}])


def user_blocks(*blocks: dict) -> bytes:
    return body(messages=[{"role": "user", "content": list(blocks)}])


# --- answers ---------------------------------------------------------------------------------


def post(relay, path: str, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    sent = {**HEADERS, **(headers or {})}
    sent = {k: v for k, v in sent.items() if v is not None}
    return httpx.post(relay.url + path, content=content, headers=sent, timeout=60)


def error_problem(response: httpx.Response) -> str | None:
    """Why `response` is not a well-formed Anthropic error, or None."""
    if not 400 <= response.status_code < 500:
        return f"status {response.status_code}"
    if response.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return f"content-type {response.headers.get('content-type')!r}"
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return "body is not JSON"
    if not isinstance(data, dict) or data.get("type") != "error" or not isinstance(data.get("error"), dict):
        return "body is not {type: error, error: {...}}"
    error = data["error"]
    if error.get("type") != ERROR_TYPES.get(response.status_code):
        return f"error type {error.get('type')!r} with status {response.status_code}"
    if not isinstance(error.get("message"), str) or not error["message"]:
        return "error.message is not a non-empty string"
    return None


def success_problem(response: httpx.Response, path: str) -> str | None:
    """Why a 200 is not an Anthropic message, stream or token count, or None."""
    if response.status_code != 200:
        return f"status {response.status_code}"
    kind = response.headers.get("content-type", "")
    try:
        if kind.startswith("text/event-stream"):
            events = [orjson.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
        else:
            data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return "a body or event that is not JSON"
    if path == COUNT:
        tokens = data.get("input_tokens") if isinstance(data, dict) else None
        return None if isinstance(tokens, int) and tokens >= 0 else "no input_tokens"
    if kind.startswith("text/event-stream"):
        types = [event.get("type") if isinstance(event, dict) else None for event in events]
        if not types or types[0] != "message_start" or types[-1] not in ("message_stop", "error"):
            return f"stream events {types[:3]}…{types[-2:]}"
        return None
    if not kind.startswith("application/json"):
        return f"content-type {kind!r}"
    if not isinstance(data, dict) or data.get("type") != "message" or data.get("role") != "assistant" or not isinstance(data.get("content"), list):
        return "body is not an Anthropic message"
    return None


def answer_problem(response: httpx.Response, path: str) -> str | None:
    if response.status_code == 200:
        return success_problem(response, path)
    return error_problem(response)


# --- the relay's log ------------------------------------------------------------------------

TRACEBACK = re.compile(rb"^Traceback \(most recent call last\):\n(?:[ \t].*\n)*.*$", re.M)
OURS = (b"/addon/llmrelay/", b"adapter.py", b"both_sides.py")


def log_size(relay) -> int:
    return relay.log.stat().st_size if relay.log.exists() else 0


def log_since(relay, offset: int) -> bytes:
    with relay.log.open("rb") as f:
        f.seek(offset)
        return f.read()


def relay_tracebacks(log: bytes, skip: Sequence[tuple[int, int]] = (), offset: int = 0) -> list[str]:
    """Tracebacks in `log` (which starts at byte `offset` of the file) that pass through the
    relay's own code, leaving out those that begin inside a `skip` byte range."""
    return [
        match.group(0).decode(errors="replace")
        for match in TRACEBACK.finditer(log)
        if any(part in match.group(0) for part in OURS)
        and not any(start <= offset + match.start() < end for start, end in skip)
    ]


KNOWN_FAILURE_SPANS: list[tuple[int, int]] = []  # log byte ranges written during xfail tests


@pytest.fixture(scope="module")
def module_log_start(relay) -> int:
    return log_size(relay)


@pytest.fixture(autouse=True)
def log_span(request, relay, module_log_start):
    start = log_size(relay)
    yield
    if request.node.get_closest_marker("xfail") is not None:
        KNOWN_FAILURE_SPANS.append((start, log_size(relay)))


# --- 1. the table ------------------------------------------------------------------------------

BAD_UTF8_INPUT = tool_turns(b'{"path":"caf\xff\xfe"}')
BAD_UTF8_SCHEMA = with_tool_schema(b'{"type":"object","description":"\xff"}')
WEIRD_DOCUMENT = user_blocks({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": 5}})
WEIRD_RESULT = tool_turns(b"{}").replace(
    b'"content":"done"', b'"content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":[1]}}]'
)


def case(id: str, path: str, content, status: int, headers: dict | None = None, bug: str | None = None):
    """A row; `bug` marks a known relay bug (strict xfail: the row fails once it is fixed)."""
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(path, content, status, headers or {}, id=id, marks=marks)


BAD_INPUT = [
    case("max_tokens-0", MESSAGES, body(max_tokens=0), 400),
    case("max_tokens-negative", MESSAGES, body(max_tokens=-5), 400),
    case("max_tokens-float", MESSAGES, body(max_tokens=1.5), 400),
    case("max_tokens-bool", MESSAGES, body(max_tokens=True), 400),
    case("deep-tool-input", MESSAGES, tool_turns(nested(DEPTH)), 400),
    case("deep-tool-input-count", COUNT, tool_turns(nested(DEPTH)), 400),
    case("deep-input-schema", MESSAGES, with_tool_schema(nested(DEPTH)), 400),
    case("deep-input-schema-count", COUNT, with_tool_schema(nested(DEPTH)), 400),
    case("deep-unknown-field", MESSAGES, with_raw_field("extra", nested(DEPTH)), 400),
    case("deep-unknown-field-count", COUNT, with_raw_field("extra", nested(DEPTH)), 400),
    case("utf8-tool-input", MESSAGES, BAD_UTF8_INPUT, 400),
    case("utf8-tool-input-count", COUNT, BAD_UTF8_INPUT, 400),
    case("utf8-input-schema", MESSAGES, BAD_UTF8_SCHEMA, 400),
    case("utf8-input-schema-count", COUNT, BAD_UTF8_SCHEMA, 400),
    case("utf8-text", MESSAGES, b'{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"\xff"}]}', 400),
    case("empty-body", MESSAGES, b"", 400),
    case("empty-body-count", COUNT, b"", 400),
    case("null", MESSAGES, b"null", 400),
    case("array", MESSAGES, b"[]", 400),
    case("string", MESSAGES, b'"hello"', 400),
    case("number-count", COUNT, b"42", 400),
    case("truncated", MESSAGES, body()[:-3], 400),
    case("trailing-garbage", MESSAGES, body() + b"}}", 400),
    case("nan", MESSAGES, with_raw_field("temperature", b"NaN"), 400),
    case("over-size-limit", MESSAGES, oversized, 413),
    case("over-size-limit-count", COUNT, oversized, 413),
    case("over-size-limit-gzip", MESSAGES, lambda: gzip.compress(oversized(), 1), 413, {"content-encoding": "gzip"}),
    case("not-gzip", MESSAGES, b"this is not gzip", 400, {"content-encoding": "gzip"}),
    case("json-claiming-gzip", MESSAGES, body(), 400, {"content-encoding": "gzip"}),
    case("not-deflate", MESSAGES, b"this is not deflate", 400, {"content-encoding": "deflate"}),
    case("unknown-encoding", MESSAGES, body(), 400, {"content-encoding": "x-rot13"}),
    case("messages-string", MESSAGES, body(messages="hi"), 400),
    case("messages-object", MESSAGES, body(messages={"role": "user", "content": "hi"}), 400),
    case("messages-string-count", COUNT, body(messages="hi"), 400),
    case("message-not-object", MESSAGES, body(messages=[7]), 400),
    case("model-number", MESSAGES, body(model=5), 400),
    case("model-null", MESSAGES, body(model=None), 400),
    case("model-missing", MESSAGES, json.dumps({"max_tokens": 16, "messages": VALID["messages"]}).encode(), 400),
    case("role-unknown", MESSAGES, body(messages=[{"role": "wizard", "content": "hi"}]), 400),
    case("role-number", MESSAGES, body(messages=[{"role": 1, "content": "hi"}]), 400),
    case("content-number", MESSAGES, body(messages=[{"role": "user", "content": 5}]), 400),
    case("content-null", MESSAGES, body(messages=[{"role": "user", "content": None}]), 400),
    case("content-object", MESSAGES, body(messages=[{"role": "user", "content": {"type": "text", "text": "hi"}}]), 400),
    case("block-type-unknown", MESSAGES, user_blocks({"type": "hologram", "text": "hi"}), 400),
    case("block-type-unknown-count", COUNT, user_blocks({"type": "hologram", "text": "hi"}), 400),
    case("block-type-missing", MESSAGES, user_blocks({"text": "hi"}), 400),
    case("block-text-number", MESSAGES, user_blocks({"type": "text", "text": 5}), 400),
    case("stream-string", MESSAGES, body(stream="yes"), 400),
    case("system-number", MESSAGES, body(system=5), 400),
    case("tools-object", MESSAGES, body(tools={"name": "f"}), 400),
    case("input-schema-array", MESSAGES, body(tools=[{"name": "f", "input_schema": [1]}]), 400),
    case("tool-choice-unknown", MESSAGES, body(tool_choice={"type": "sometimes"}), 400),
    case("document-text-not-string", MESSAGES, WEIRD_DOCUMENT, 400),
    case("document-text-not-string-in-result", MESSAGES, WEIRD_RESULT, 400),
    case("text-plain", MESSAGES, body(), 415, {"content-type": "text/plain"}),
    case("text-plain-count", COUNT, body(), 415, {"content-type": "text/plain"}),
    case("form", MESSAGES, b"model=claude-haiku-4-5&max_tokens=16", 415, {"content-type": "application/x-www-form-urlencoded"}),
    case("multipart", MESSAGES, body(), 415, {"content-type": "multipart/form-data; boundary=x"}),
    case("no-content-type", MESSAGES, body(), 415, {"content-type": None}),
]


@pytest.mark.parametrize(("path", "content", "status", "headers"), BAD_INPUT)
def test_bad_input_gets_an_anthropic_error(relay, provider, path, content, status, headers) -> None:
    provider.set_script([{"text": "ok"}])
    start = log_size(relay)
    response = post(relay, path, content() if callable(content) else content, headers)
    assert error_problem(response) is None, (error_problem(response), response.status_code, response.text[:300])
    assert response.status_code == status, response.text[:300]
    assert relay_tracebacks(log_since(relay, start)) == []


SUCCEEDS = [
    pytest.param(MESSAGES, gzip.compress(body()), {"content-encoding": "gzip"}, id="gzip"),
    pytest.param(COUNT, gzip.compress(body()), {"content-encoding": "gzip"}, id="gzip-count"),
    pytest.param(MESSAGES, zlib.compress(body()), {"content-encoding": "deflate"}, id="deflate"),
    pytest.param(MESSAGES, zlib.compress(body())[2:-4], {"content-encoding": "deflate"}, id="deflate-raw"),
    pytest.param(MESSAGES, body(), {"content-type": "application/json; charset=utf-8"}, id="json-charset"),
    pytest.param(MESSAGES, body(), {"content-type": "application/vnd.api+json"}, id="json-suffix"),
]


@pytest.mark.parametrize(("path", "content", "headers"), SUCCEEDS)
def test_encoded_bodies_are_decoded(relay, provider, path, content, headers) -> None:
    provider.set_script([{"text": "ok"}])
    response = post(relay, path, content, headers)
    assert success_problem(response, path) is None, (success_problem(response, path), response.text[:300])
    if path == MESSAGES:
        assert response.json()["content"] == [{"type": "text", "text": "ok"}]
        (sent,) = provider.requests
        assert sent.body["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("max_tokens", [2**31, 2**63, 2**64, 10**30], ids=["2^31", "2^63", "2^64", "10^30"])
def test_huge_max_tokens_is_clamped_or_refused(relay, provider, max_tokens) -> None:
    provider.set_script([{"text": "ok"}])
    response = post(relay, MESSAGES, body(max_tokens=max_tokens))
    if response.status_code == 200:
        assert success_problem(response, MESSAGES) is None, response.text[:300]
        (sent,) = provider.requests
        limit = sent.body.get("max_tokens", sent.body.get("max_completion_tokens"))
        assert isinstance(limit, int) and 1 <= limit <= MAX_TOKENS, sent.body
    else:
        assert response.status_code == 400 and error_problem(response) is None, response.text[:300]


# --- 2. the fuzz -----------------------------------------------------------------------------
# A valid request (a conversation with text, images, documents, thinking, tool calls and their
# results, tools and options), then up to three mutations anywhere in it: a random JSON value,
# random bytes, deep nesting, a deleted key, bytes spliced into a string, another block type,
# an unknown field; then sometimes a truncated body, or a gzip or deflate one.

MARK = "\u0007bytes{}\u0007"  # a string that becomes raw bytes once encoded (see `encode`)
raw_bytes = st.integers(0, 2).map(MARK.format)
DEEP = "__deep__"

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
deep = st.integers(2, 3000).map(lambda n: {DEEP: n})
block_types = st.sampled_from(
    ["text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking", "tool_reference", "server_tool_use", "hologram", ""]
)
words = st.text(max_size=16)
ROUTED = ["claude-haiku-4-5", "claude-sonnet-4-5", "claude-json-only", "claude-opus-4-9"]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
TOOL = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}

any_user_block = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, words),
    st.just({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}),
    st.just({"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}),
    st.builds(lambda t: {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": t}, "title": "notes"}, words),
    st.just({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}}),
)


@st.composite
def tool_turn(draw, n: int) -> list[dict]:
    call_id = f"toolu_{n}"
    assistant = [{"type": "text", "text": draw(words)}] if draw(st.booleans()) else []
    if draw(st.booleans()):
        assistant.insert(0, {"type": "thinking", "thinking": draw(words), "signature": "sig"})
    tool_input = draw(st.dictionaries(st.sampled_from(["city", "path", "n"]), words | json_values, min_size=1, max_size=3))
    assistant.append({"type": "tool_use", "id": call_id, "name": "get_weather", "input": tool_input})
    result = draw(st.one_of(words, st.lists(st.builds(lambda t: {"type": "text", "text": t}, words), max_size=2)))
    return [
        {"role": "assistant", "content": assistant},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": result, "is_error": draw(st.booleans())}]},
    ]


@st.composite
def conversations(draw) -> list[dict]:
    messages = [{"role": "user", "content": draw(words.filter(bool))}]
    for n in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["text", "blocks", "tool", "tool", "tool", "system"]))
        if kind == "tool":
            messages += draw(tool_turn(n))
        elif kind == "blocks":
            messages.append({"role": "user", "content": draw(st.lists(any_user_block, min_size=1, max_size=3))})
        elif kind == "system":
            messages.append({"role": "system", "content": draw(words)})
        else:
            messages += [{"role": "assistant", "content": draw(words.filter(bool))}, {"role": "user", "content": draw(words.filter(bool))}]
    return messages


OPTIONS = {
    "stream": st.booleans(),
    "system": st.one_of(words, st.lists(st.builds(lambda t: {"type": "text", "text": t}, words), max_size=2)),
    "tools": st.just([TOOL]),
    "tool_choice": st.sampled_from([{"type": "auto"}, {"type": "any"}, {"type": "none"}, {"type": "tool", "name": "get_weather"}]),
    "thinking": st.sampled_from([{"type": "enabled", "budget_tokens": 2048}, {"type": "adaptive"}, {"type": "disabled"}]),
    "output_config": st.just({"effort": "high"}),
    "temperature": st.floats(0, 1),
    "top_p": st.floats(0, 1),
    "top_k": st.integers(1, 100),
    "stop_sequences": st.lists(words.filter(bool), max_size=2),
    "metadata": st.builds(lambda u: {"user_id": u}, st.text(max_size=80)),
}


@st.composite
def valid_requests(draw) -> dict:
    request = {"model": draw(st.sampled_from(ROUTED)), "max_tokens": draw(st.integers(1, 4096)), "messages": draw(conversations())}
    for name in sorted(draw(st.sets(st.sampled_from(sorted(OPTIONS)), max_size=6))):
        request[name] = draw(OPTIONS[name])
    if any(b.get("type") == "tool_use" for m in request["messages"] if isinstance(m["content"], list) for b in m["content"]):
        request["tools"] = [TOOL]
    return request


def places(value, into: list) -> list[tuple[object, object]]:
    """Every (container, key or index) in a JSON value."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        into.append((value, key))
        places(child, into)
    return into


def unchecked_places(request) -> list[tuple[object, object]]:
    """The places no schema checks on the way in: tool inputs and schemas (kept as raw JSON),
    document sources and `output_config` (any object)."""
    found: list = []
    for holder, key in places(request, []):
        if not isinstance(holder, dict):
            continue
        if key in ("input", "input_schema", "output_config") or (key == "source" and holder.get("type") == "document"):
            found.append((holder, key))
            places(holder[key], found)
    return found


@st.composite
def mutated_requests(draw) -> dict:
    request = copy.deepcopy(draw(valid_requests()))  # st.just values are shared between examples
    # Random's choices are even, where sampled_from would lean to the first place (`model`).
    rnd = draw(st.randoms(use_true_random=False))
    for _ in range(rnd.choice([0, 1, 1, 2, 2, 3])):
        how = rnd.choice(["value", "bytes", "splice", "splice", "deep", "delete", "type", "unknown"])
        # Half the time where no schema checks, if the request has such a place.
        targets = (unchecked_places(request) if rnd.random() < 0.5 else []) or places(request, [])
        if how == "splice":  # bytes into a string already there: the body stays JSON
            targets = [(c, k) for c, k in targets if isinstance(c[k], str)] or targets
        container, key = rnd.choice(targets)
        old = container[key]
        if how == "splice" and isinstance(old, str):
            container[key] = old + draw(raw_bytes)
        elif how == "type" and isinstance(old, dict):
            old["type"] = draw(block_types)
        elif how == "unknown" and isinstance(old, dict):
            old[draw(st.text(min_size=1, max_size=6))] = draw(json_values | deep)
        elif how == "delete" and isinstance(container, dict):
            del container[key]
        elif how == "deep":
            container[key] = draw(deep)
        elif how in ("bytes", "splice"):
            container[key] = draw(raw_bytes)
        else:
            container[key] = draw(json_values)
    return request


def encode(value, splices: list[bytes]) -> bytes:
    """JSON bytes, with `{"__deep__": n}` made n levels of nesting and MARK strings raw bytes."""
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()  # ints past 64 bits too
    data = re.sub(rb'\{"__deep__":(\d+)\}', lambda m: nested(int(m.group(1))), data)
    return re.sub(rb"\\u0007bytes(\d)\\u0007", lambda m: splices[int(m.group(1))], data)


# Bytes spliced into strings: mostly broken or odd UTF-8 (stray continuation bytes, overlong
# forms, UTF-16 surrogates, code points past U+10FFFF), sometimes anything at all.
splices = st.one_of(
    st.lists(st.integers(0x80, 0xFF), min_size=1, max_size=4).map(bytes),
    st.sampled_from([b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xef\xbf\xbf", "é😀".encode()]),
    st.binary(min_size=1, max_size=4),
)
# (sampled_from and integers lean to their ends: what is rare goes in the middle)
WHOLE, CUT = "whole", "cut"


@st.composite
def fuzzed_bodies(draw) -> tuple[bytes, dict[str, str]]:
    data = encode(draw(mutated_requests()), draw(st.lists(splices, min_size=3, max_size=3)))
    if draw(st.sampled_from([WHOLE] * 10 + [CUT] + [WHOLE] * 9)) == CUT and len(data) > 2:
        data = data[: draw(st.integers(1, len(data) - 1))]
    encoding = draw(st.sampled_from([None] * 4 + ["gzip"] + [None] * 4 + ["deflate"] + [None] * 2))
    if encoding == "gzip":
        return gzip.compress(data), {"content-encoding": "gzip"}
    if encoding == "deflate":
        return zlib.compress(data), {"content-encoding": "deflate"}
    return data, {}


def test_fuzzed_requests_get_anthropic_answers(relay, provider) -> None:
    provider.set_script([{"text": "ok"}])
    bad: dict[str, tuple[bytes, dict[str, str], str]] = {}  # kind of failure → the shortest request showing it
    answered = 0
    statuses: Counter[int] = Counter()

    @settings(
        max_examples=150,
        deadline=None,
        database=None,  # nothing written into the tree; derandomize makes each run the same
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(fuzzed_bodies())
    def run(sample: tuple[bytes, dict[str, str]]) -> None:
        nonlocal answered
        content, headers = sample
        provider.requests.clear()
        for path in (MESSAGES, COUNT):
            start = log_size(relay)
            response = post(relay, path, content, headers)
            answered += 1
            if path == MESSAGES:
                statuses[response.status_code] += 1
            problem = answer_problem(response, path)
            tracebacks = relay_tracebacks(log_since(relay, start))
            if tracebacks:
                problem = f"traceback: {tracebacks[0].splitlines()[-1]}"
            if problem:
                key = f"{path}: {problem}"
                if key not in bad or len(content) < len(bad[key][0]):
                    bad[key] = (content, headers, f"{response.status_code} {response.text[:200]}")

    run()
    assert answered >= 300
    assert statuses[200] >= 30, f"too few fuzzed requests got through to the provider: {statuses}"
    report = "\n".join(
        f"{key}\n  request {headers}, decoded: {decoded(content, headers)[:400]!r}\n  answer: {answer}"
        for key, (content, headers, answer) in bad.items()
    )
    assert not bad, f"{len(bad)} kind(s) of bad answer:\n{report}"


def decoded(content: bytes, headers: dict[str, str]) -> bytes:
    encoding = headers.get("content-encoding")
    return gzip.decompress(content) if encoding == "gzip" else zlib.decompress(content) if encoding == "deflate" else content


# --- 3. the log ------------------------------------------------------------------------------


def test_relay_log_has_no_tracebacks_of_ours(relay, module_log_start) -> None:
    log = log_since(relay, module_log_start)
    assert b"POST http" in log  # the requests above are in the part read
    ours = relay_tracebacks(log, KNOWN_FAILURE_SPANS, module_log_start)
    assert ours == [], "\n\n".join(ours)
