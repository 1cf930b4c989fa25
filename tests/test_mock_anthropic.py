"""Prove the mock Anthropic API speaks the wire format the official anthropic SDK accepts, and
rejects what the real API (or a stricter compatible provider) rejects, so end-to-end tests and
benchmarks built on it are meaningful."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import anthropic
import pytest

from sdk_http import anthropic_httpx as httpx
from tests.anthropic_view import check_events
from tests.mock_anthropic import MockAnthropic, api_key_of, spawn_mock_anthropic

API_KEY = "sk-ant-test-1234567890"
MODEL = "claude-sonnet-4-5"
USER = {"role": "user", "content": "What is the weather in Paris?"}
WEATHER_TOOL = {"name": "get_weather", "description": "Current weather", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
REQUESTS = Path(__file__).parent / "fixtures" / "anthropic" / "requests"
HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}


def calls(*ids: str) -> dict:
    return {"role": "assistant", "content": [
        {"type": "tool_use", "id": i, "name": "get_weather", "input": {"city": "Paris"}} for i in ids]}


def results(*ids: str) -> dict:
    return {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": i, "content": "18C, sunny"} for i in ids]}


@pytest.fixture(scope="module")
def http():
    """One connection pool for all clients: building an httpx.Client (its TLS context) is the slow part."""
    with httpx.Client() as pool:
        yield pool


@pytest.fixture(scope="module")
def connect(http):
    """An SDK client factory sharing that pool (so these clients are never closed)."""
    def sdk(mock: MockAnthropic, **auth) -> anthropic.Anthropic:
        auth = auth or {"api_key": API_KEY}
        return anthropic.Anthropic(base_url=mock.base_url, max_retries=0, http_client=http, **auth)
    return sdk


@pytest.fixture(scope="module")
def server():
    with MockAnthropic(api_key=API_KEY) as mock:
        yield mock


@pytest.fixture
def mock(server):
    """The module's mock, with a fresh script and request log for this test."""
    server.set_script([])
    server.requests.clear()
    return server


@pytest.fixture
def client(mock, connect):
    return connect(mock)


def post_raw(client: anthropic.Anthropic, body: dict, path: str = "/v1/messages", **options):
    """Send an arbitrary body through the SDK so rejections surface as SDK exceptions."""
    return client.post(path, body=body, cast_to=object, options=options)


def sse_events(response: httpx.Response) -> list[tuple[str, str]]:
    """(event name, data line) pairs, checking the exact `event: X\\ndata: {...}\\n\\n` framing."""
    frames = response.text.split("\n\n")
    assert frames[-1] == ""
    pairs = []
    for frame in frames[:-1]:
        event, data = frame.split("\n")
        assert event.startswith("event: ") and data.startswith("data: ")
        pairs.append((event[7:], data[6:]))
    return pairs


def raw_post(http: httpx.Client, mock: MockAnthropic, body: dict) -> httpx.Response:
    return http.post(f"{mock.base_url}/v1/messages", json=body, headers=HEADERS)


# ------------------------------------------------------------------ happy paths


def test_create_text(mock, client):
    mock.set_script([{"text": "It is sunny.", "usage": {"input_tokens": 11, "cache_read_input_tokens": 5}}])
    message = client.messages.create(model=MODEL, max_tokens=100, messages=[USER], extra_body={"temperature": 0.2})  # anthropic 2.x dropped the argument
    assert message.id.startswith("msg_01") and len(message.id) == 28
    assert message._request_id.startswith("req_011C")
    assert (message.type, message.role, message.model) == ("message", "assistant", MODEL)
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == "It is sunny."
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (11, 5)
    assert message.usage.output_tokens > 0
    recorded = mock.requests[-1]
    assert (recorded.method, recorded.path) == ("POST", "/v1/messages")
    assert api_key_of(recorded.headers) == API_KEY and recorded.headers["anthropic-version"]
    assert recorded.body == {"model": MODEL, "max_tokens": 100, "messages": [USER], "temperature": 0.2}


def test_create_thinking_and_parallel_tools(mock, client):
    mock.set_script([{"thinking": "Two cities.", "signature": "sig-1", "text": "Checking.",
                      "tool_calls": [{"id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
                                     {"name": "get_weather", "input": {"city": "Lyon"}}]}])
    message = client.messages.create(model=MODEL, max_tokens=100, messages=[USER], tools=[WEATHER_TOOL])
    thinking, text, first, second = message.content
    assert (thinking.type, thinking.thinking, thinking.signature) == ("thinking", "Two cities.", "sig-1")
    assert text.text == "Checking." and message.stop_reason == "tool_use"
    assert (first.id, first.input) == ("toolu_a", {"city": "Paris"})
    assert second.id.startswith("toolu_01") and second.input == {"city": "Lyon"}


def test_stream_exact_sse_with_ping(mock, http):
    mock.set_script([{"text": "Sunny and warm", "chunks": 2}])
    response = raw_post(http, mock, {"model": MODEL, "max_tokens": 100, "messages": [USER], "stream": True})
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.headers["request-id"].startswith("req_011C")
    pairs = sse_events(response)
    assert [name for name, _ in pairs] == [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    assert pairs[2][1] == '{"type": "ping"}'
    assert pairs[-1][1] == '{"type":"message_stop"}'  # compact JSON like the API
    events = [json.loads(data) for _, data in pairs]
    assert all(event["type"] == name for (name, _), event in zip(pairs, events))
    check_events(events)
    start = events[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["input_tokens"] > 0
    assert {"cache_creation_input_tokens", "cache_read_input_tokens"} <= start["usage"].keys()
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == "Sunny and warm"
    assert events[-2]["delta"]["stop_reason"] == "end_turn" and events[-2]["usage"]["output_tokens"] > 0


def test_stream_thinking_text_and_parallel_tools(mock, client):
    mock.set_script([{"thinking": "Compare both.", "text": "Let me check.", "chunks": 3,
                      "tool_calls": [{"id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
                                     {"name": "get_weather", "input": {"city": "Lyon", "units": ["C"]}}],
                      "usage": {"output_tokens": 42}}])
    with client.messages.stream(model=MODEL, max_tokens=100, messages=[USER], tools=[WEATHER_TOOL]) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert final.content[0].thinking == "Compare both." and final.content[0].signature.startswith("Eo")
    assert final.content[1].text == "Let me check."
    assert [(b.name, b.input) for b in final.content[2:]] == [
        ("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Lyon", "units": ["C"]})]
    assert final.content[2].id == "toolu_a" and final.content[3].id.startswith("toolu_01")
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 42
    json_pieces = [e.delta.partial_json for e in events if e.type == "content_block_delta"
                   and e.delta.type == "input_json_delta" and e.index == 3]
    assert json_pieces[0] == "" and len(json_pieces) == 4  # the API's empty opener, then the JSON in pieces
    assert [e.delta.type for e in events if e.type == "content_block_delta" and e.index == 0][-1] == "signature_delta"


def test_tool_round_trip_and_no_ping(mock, client, http):
    mock.set_script([{"tool_calls": [{"id": "toolu_x", "name": "get_weather", "input": {"city": "Nice"}}]},
                     {"text": "Nice is 20C.", "ping": False}])
    first = client.messages.create(model=MODEL, max_tokens=100, messages=[USER], tools=[WEATHER_TOOL])
    history = [USER, {"role": "assistant", "content": [b.model_dump() for b in first.content]}, results("toolu_x")]
    with client.messages.stream(model=MODEL, max_tokens=100, messages=history, tools=[WEATHER_TOOL]) as stream:
        assert stream.get_final_text() == "Nice is 20C."
    body = {"model": MODEL, "max_tokens": 9, "messages": [USER], "stream": True}
    assert b"event: ping" not in raw_post(http, mock, body).content
    assert mock.turns_used == 2


def test_stream_interval_is_real_timing(mock, http):
    mock.set_script([{"text": "ab", "chunks": 2, "interval_ms": 50, "ping": False}])
    body = {"model": MODEL, "max_tokens": 100, "messages": [USER], "stream": True}
    start, arrivals = time.perf_counter(), []
    with http.stream("POST", f"{mock.base_url}/v1/messages", json=body, headers=HEADERS) as response:
        for _ in response.iter_raw():
            arrivals.append(time.perf_counter() - start)
    assert len(arrivals) >= 6  # one chunk per event (reads can merge only if the client lags)
    assert arrivals[0] < 0.045  # the opening events and the first token go out at once
    assert arrivals[-1] >= 0.05 * 0.9  # one interval between the two text deltas


def test_beta_query_string_and_headers(mock, client):
    message = client.beta.messages.create(model=MODEL, max_tokens=10, messages=[USER],
                                          betas=["interleaved-thinking-2025-05-14"])
    assert message.content[0].text
    recorded = mock.requests[-1]
    assert recorded.path == "/v1/messages"  # sent as /v1/messages?beta=true
    assert recorded.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"


def test_claude_code_requests_accepted(mock, client):
    """Real Claude Code bodies and betas (system role mid-conversation, tool results) pass."""
    betas = json.loads((REQUESTS / "claude-code-headers.json").read_text())["anthropic-beta"]
    for fixture in ("claude-code-default.json", "claude-code-tool-result.json", "claude-code-bench.json"):
        body = json.loads((REQUESTS / fixture).read_text())
        post_raw(client, {**body, "stream": False}, headers={"anthropic-beta": betas})


def test_callable_turn_and_ignore_stream(mock, http):
    mock.set_script([lambda request: {"text": f"{len(request['messages'])} messages", "ignore_stream": True}])
    response = raw_post(http, mock, {"model": MODEL, "max_tokens": 10, "messages": [USER]})
    assert response.headers["content-type"].startswith("text/event-stream")
    deltas = [json.loads(data)["delta"] for name, data in sse_events(response) if name == "content_block_delta"]
    assert "".join(delta["text"] for delta in deltas) == "1 messages"


def test_script_exhaustion(connect):
    with MockAnthropic([{"text": "one"}, {"text": "two"}], repeat_last=False) as strict:
        sdk = connect(strict)
        texts = [sdk.messages.create(model=MODEL, max_tokens=5, messages=[USER]).content[0].text for _ in range(2)]
        assert texts == ["one", "two"] and strict.turns_used == 2
        with pytest.raises(anthropic.InternalServerError) as exhausted:
            sdk.messages.create(model=MODEL, max_tokens=5, messages=[USER])
    assert exhausted.value.body["error"]["type"] == "api_error"


def test_raw_sse_and_error_turns(mock, client):
    raw = ('event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
           '"role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,'
           '"usage":{"input_tokens":1,"output_tokens":1}}}\n\n'
           'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
           '"stop_sequence":null},"usage":{"output_tokens":3}}\n\n'
           'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    mock.set_script([
        {"raw_sse": raw},
        {"error_status": 429, "headers": {"retry-after": "7"}},
        {"error_status": 529},
        {"error_status": 400, "error_type": "invalid_request_error", "message": "prompt is too long"},
        {"raw_body": "<html>Bad Gateway</html>", "status": 502, "content_type": "text/html"},
    ])
    request = {"model": MODEL, "max_tokens": 10, "messages": [USER]}
    with client.messages.stream(**request) as stream:
        assert stream.get_final_message().usage.output_tokens == 3
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(**request)
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    assert limited.value.request_id == limited.value.body["request_id"]
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        client.messages.create(**request)
    assert overloaded.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    with pytest.raises(anthropic.BadRequestError, match="prompt is too long"):
        client.messages.create(**request)
    with pytest.raises(anthropic.InternalServerError) as bad_gateway:
        client.messages.create(**request)
    assert bad_gateway.value.status_code == 502 and "Bad Gateway" in bad_gateway.value.response.text


def test_models_and_unknown_path(mock, client, http):
    assert "claude-sonnet-4-5-20250929" in [m.id for m in client.models.list()]
    with pytest.raises(anthropic.NotFoundError) as missing:
        post_raw(client, {}, path="/v1/complete")
    assert missing.value.body["error"] == {"type": "not_found_error", "message": "Not Found"}
    assert http.get(f"{mock.base_url}/health").status_code == 404  # before any header check


def test_count_tokens_on_and_off(mock, client, connect):
    mock.set_script([{"text": "first"}])
    counted = [client.messages.count_tokens(model=MODEL, messages=[USER]).input_tokens for _ in range(2)]
    assert counted[0] > 0 and counted[0] == counted[1] and mock.turns_used == 0
    with pytest.raises(anthropic.BadRequestError, match="messages"):
        client.messages.count_tokens(model=MODEL, messages=[])
    with MockAnthropic(count_tokens=False) as bare:
        with pytest.raises(anthropic.NotFoundError):
            connect(bare).messages.count_tokens(model=MODEL, messages=[USER])


def test_auth(mock, connect, http):
    with pytest.raises(anthropic.AuthenticationError, match="invalid x-api-key") as rejected:
        connect(mock, api_key="sk-ant-wrong").messages.create(model=MODEL, max_tokens=5, messages=[USER])
    assert rejected.value.body["error"]["type"] == "authentication_error"
    body = {"model": MODEL, "max_tokens": 5, "messages": [USER]}
    bare = http.post(mock.base_url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert bare.status_code == 401 and "x-api-key header is required" in bare.text
    # The key as x-api-key (anthropic < 2) or as a bearer token (anthropic 2.x) alike.
    for auth in ({"x-api-key": API_KEY}, {"authorization": f"Bearer {API_KEY}"}):
        answer = http.post(mock.base_url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01", **auth})
        assert answer.status_code == 200, answer.text


def test_bearer_mode(connect, http):
    with MockAnthropic(api_key=API_KEY, bearer=True) as mock:
        assert connect(mock, auth_token=API_KEY).messages.create(model=MODEL, max_tokens=5, messages=[USER])
        assert mock.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"
        body = {"model": MODEL, "max_tokens": 5, "messages": [USER]}
        refused = http.post(mock.base_url + "/v1/messages", json=body, headers=HEADERS)
        assert refused.status_code == 401 and "Invalid bearer token" in refused.text


def test_subprocess_mode(tmp_path):
    script = tmp_path / "turns.json"
    script.write_text(json.dumps({"turns": [{"text": "from a subprocess"}], "reject_fields": ["output_config"]}))
    proc, port = spawn_mock_anthropic("--script", str(script), "--api-key", "k", "--bearer")
    try:
        with anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", auth_token="k", max_retries=0) as sdk:
            assert sdk.messages.create(model=MODEL, max_tokens=5, messages=[USER]).content[0].text == \
                "from a subprocess"
            with pytest.raises(anthropic.BadRequestError, match="output_config"):
                sdk.messages.create(model=MODEL, max_tokens=5, messages=[USER],
                                    extra_body={"output_config": {"effort": "low"}})
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ------------------------------------------------------------------- rejections

BASE = {"model": MODEL, "max_tokens": 100, "messages": [USER]}
REJECTED = {
    "missing model": ({"max_tokens": 100, "messages": [USER]}, "model: Field required"),
    "missing max_tokens": ({"model": MODEL, "messages": [USER]}, "max_tokens: Field required"),
    "zero max_tokens": ({**BASE, "max_tokens": 0}, "max_tokens: Input should be greater"),
    "missing messages": ({"model": MODEL, "max_tokens": 100}, "messages: Field required"),
    "empty messages": ({**BASE, "messages": []}, "at least one message"),
    "unknown role": ({**BASE, "messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
    "empty text block": ({**BASE, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
                         "text content blocks must be non-empty"),
    "empty string content": ({**BASE, "messages": [{"role": "user", "content": ""}]}, "non-empty content"),
    "unanswered tool_use": ({**BASE, "messages": [USER, calls("toolu_1")]}, "messages.1: `tool_use` ids"),
    "one of two tool_use unanswered": ({**BASE, "messages": [USER, calls("toolu_1", "toolu_2"), results("toolu_2")]},
                                       "without `tool_result` blocks immediately after: toolu_1."),
    "answer not in the next message": ({**BASE, "messages": [USER, calls("toolu_1"), USER, results("toolu_1")]},
                                       "messages.1: `tool_use` ids were found"),
    "orphan tool_result": ({**BASE, "messages": [USER, results("toolu_9")]}, "unexpected `tool_use_id`"),
    "tool_result for another id": ({**BASE, "messages": [USER, calls("toolu_1"), results("toolu_9")]},
                                   "unexpected `tool_use_id` found in `tool_result` blocks: toolu_9"),
    "tool without name": ({**BASE, "tools": [{"input_schema": {"type": "object"}}]}, "tools.0.custom.name"),
    "tool bad name": ({**BASE, "tools": [{**WEATHER_TOOL, "name": "get weather"}]}, "should match pattern"),
    "tool without input_schema": ({**BASE, "tools": [{"name": "f"}]}, "tools.0.custom.input_schema"),
    "server tool without name": ({**BASE, "tools": [{"type": "web_search_20250305"}]},
                                 "tools.0.web_search_20250305.name"),
}


@pytest.mark.parametrize("body, expected", REJECTED.values(), ids=REJECTED.keys())
def test_invalid_requests_are_rejected(mock, client, body, expected):
    with pytest.raises(anthropic.BadRequestError) as rejected:
        post_raw(client, body)
    assert expected in rejected.value.message
    assert rejected.value.body["type"] == "error"
    assert rejected.value.body["error"]["type"] == "invalid_request_error"


def test_accepted_shapes(mock, client):
    """Server tools need no input_schema; a final assistant prefill may be empty; system role is fine."""
    tools = [WEATHER_TOOL, {"type": "web_search_20250305", "name": "web_search"}]
    messages = [{"role": "system", "content": "Be brief."}, USER, calls("toolu_1"), results("toolu_1"),
                {"role": "assistant", "content": ""}]
    post_raw(client, {**BASE, "messages": messages, "tools": tools})


def test_missing_anthropic_version(mock, client):
    with pytest.raises(anthropic.BadRequestError, match="anthropic-version"):
        post_raw(client, BASE, headers={"anthropic-version": anthropic.omit})


def test_rejected_requests_are_recorded_but_do_not_consume_turns(mock, client):
    mock.set_script([{"text": "first"}])
    with pytest.raises(anthropic.BadRequestError):
        post_raw(client, {**BASE, "messages": []})
    assert mock.requests[-1].body == {**BASE, "messages": []} and mock.turns_used == 0
    assert client.messages.create(**BASE).content[0].text == "first"


def test_strict_compatible_provider_options(connect):
    """What some Anthropic-compatible providers refuse, so the relay can be tested to clean it."""
    with MockAnthropic(system_role=False, reject_fields=["context_management", "output_config"],
                       reject_betas=["context-management-2025-06-27"], reject_cache_ttl=True) as mock:
        sdk = connect(mock)
        assert sdk.messages.create(**BASE).content[0].text
        cases = [
            ({"messages": [{"role": "system", "content": "x"}, USER]}, "messages.0.role"),
            ({"extra_body": {"context_management": {"edits": []}}}, "context_management: Extra inputs"),
            ({"extra_headers": {"anthropic-beta": "claude-code-20250219, context-management-2025-06-27"}},
             "`context-management-2025-06-27` for the `anthropic-beta` header"),
            ({"system": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
             "system.0.cache_control.ttl"),
            ({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "5m"}}]}]},
             "messages.0.content.0.cache_control.ttl"),
        ]
        for overrides, expected in cases:
            with pytest.raises(anthropic.BadRequestError, match=re.escape(expected)):
                sdk.messages.create(**{**BASE, **overrides})
        # a cache_control without ttl and an accepted beta are fine
        sdk.messages.create(**{**BASE, "system": [{"type": "text", "text": "hi",
                                                    "cache_control": {"type": "ephemeral"}}]},
                            extra_headers={"anthropic-beta": "claude-code-20250219"})
