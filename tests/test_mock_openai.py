"""Prove the mock provider speaks the wire format the official openai SDK accepts,
and rejects what real providers reject, so end-to-end tests built on it are meaningful."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.mock_openai import MockOpenAI, spawn_mock_openai

API_KEY = "sk-test-1234567890"
MODEL = "gpt-4o-mini"
USER = {"role": "user", "content": "What is the weather in Paris?"}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def assistant_calls(*ids: str) -> dict:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": i, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        for i in ids]}


def tool_answer(call_id: str) -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": "18C, sunny"}


@pytest.fixture
def mock():
    with MockOpenAI(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def client(mock):
    with openai.OpenAI(base_url=mock.base_url, api_key=API_KEY, max_retries=0) as sdk:
        yield sdk


def post_raw(client: openai.OpenAI, body: dict):
    """Send an arbitrary body through the SDK so rejections surface as SDK exceptions."""
    return client.post("/chat/completions", body=body, cast_to=object)


# ------------------------------------------------------------------ happy paths


def test_non_streaming_text(mock, client):
    mock.set_script([{"text": "It is sunny.", "reasoning": "Look it up.", "usage": {"prompt_tokens": 11}}])
    completion = client.chat.completions.create(model=MODEL, messages=[USER], temperature=0.2)
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion" and completion.model == MODEL
    choice = completion.choices[0]
    assert choice.message.content == "It is sunny." and choice.finish_reason == "stop"
    assert choice.message.reasoning_content == "Look it up."  # extra fields are kept by the SDK models
    assert completion.usage.prompt_tokens == 11
    assert completion.usage.total_tokens == 11 + completion.usage.completion_tokens
    recorded = mock.requests[-1]
    assert (recorded.method, recorded.path) == ("POST", "/v1/chat/completions")
    assert recorded.headers["authorization"] == f"Bearer {API_KEY}"
    assert recorded.body == {"model": MODEL, "messages": [USER], "temperature": 0.2}


def test_streaming_chunks_reasoning_and_usage(mock, client):
    mock.set_script([{"text": "Sunny and warm", "reasoning": "Think", "chunks": 4}])
    stream = client.chat.completions.create(model=MODEL, messages=[USER], stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    contents = [d.content for d in deltas if d.content]
    assert len(contents) == 4 and "".join(contents) == "Sunny and warm"
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == "Think"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1 and all(c.model == MODEL for c in chunks)


def test_stream_without_usage_has_no_usage_chunk(mock, client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=[USER], stream=True))
    assert all(c.choices and c.usage is None for c in chunks)


def test_stream_interval_is_real_timing(mock, client):
    mock.set_script([{"text": "abc", "chunks": 3, "interval_ms": 60}])
    start = time.perf_counter()
    arrivals = [time.perf_counter() for c in client.chat.completions.create(
        model=MODEL, messages=[USER], stream=True) if c.choices and c.choices[0].delta.content]
    # The second and third content chunks wait 60 ms each: the last cannot come before 120 ms,
    # however late the client reads the first (on a busy machine it may read two at once).
    assert len(arrivals) == 3 and arrivals[-1] - start >= 0.115


def test_tool_call_round_trip(mock, client):
    """Streamed tool call accumulated by the SDK helper, then answered, then a final text answer."""
    mock.set_script([
        {"tool_calls": [{"id": "call_a", "name": "get_weather", "arguments": {"city": "Paris"}},
                        {"name": "get_weather", "arguments": {"city": "Lyon"}}], "chunks": 3},
        {"text": "Paris 18C, Lyon 20C."},
    ])
    with client.chat.completions.stream(model=MODEL, messages=[USER], tools=[WEATHER_TOOL],
                                        tool_choice="auto", parallel_tool_calls=True) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls" and message.content is None
    calls = message.tool_calls
    assert calls[0].id == "call_a" and calls[1].id.startswith("call_")
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Paris", "Lyon"]

    history = [USER, message.model_dump(exclude_none=True, include={"role", "content", "tool_calls"}),
               tool_answer(calls[1].id), tool_answer(calls[0].id)]  # any order among the answers
    history[1]["content"] = None
    answer = client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER_TOOL])
    assert answer.choices[0].message.content == "Paris 18C, Lyon 20C."


def test_non_streaming_tool_call_with_raw_arguments(mock, client):
    mock.set_script([{"tool_calls": [{"name": "get_weather", "arguments": '{"city":"Nice"}'}]}])
    completion = client.chat.completions.create(model=MODEL, messages=[USER], tools=[WEATHER_TOOL],
                                                tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = completion.choices[0].message.tool_calls[0]
    assert call.type == "function" and call.function.arguments == '{"city":"Nice"}'


def test_accepted_content_shapes(mock, client):
    messages = [
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                                     {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
    ]
    assert client.chat.completions.create(model=MODEL, messages=messages).choices[0].message.content


def test_callable_turn_sees_request(mock, client):
    mock.set_script([lambda request: {"text": f"{len(request['messages'])} messages"}])
    assert client.chat.completions.create(model=MODEL, messages=[USER]).choices[0].message.content == "1 messages"


def test_script_order_and_exhaustion():
    with MockOpenAI([{"text": "one"}, {"text": "two"}], repeat_last=False) as mock, \
            openai.OpenAI(base_url=mock.base_url, api_key="x", max_retries=0) as sdk:
        texts = [sdk.chat.completions.create(model=MODEL, messages=[USER]).choices[0].message.content
                 for _ in range(2)]
        assert texts == ["one", "two"]
        with pytest.raises(openai.InternalServerError):
            sdk.chat.completions.create(model=MODEL, messages=[USER])


def test_raw_sse_replay(mock, client):
    raw = ('data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":'
           '[{"index":0,"delta":{"role":"assistant","content":"replayed"},"finish_reason":"stop"}]}\n\n'
           "data: [DONE]\n\n")
    mock.set_script([{"raw_sse": raw}])
    chunks = list(client.chat.completions.create(model=MODEL, messages=[USER], stream=True))
    assert [c.choices[0].delta.content for c in chunks] == ["replayed"]


def test_error_turns(mock, client):
    mock.set_script([
        {"error_status": 429, "headers": {"retry-after": "7"}},
        {"raw_body": "<html>Bad Gateway</html>", "status": 502, "content_type": "text/html"},
    ])
    with pytest.raises(openai.RateLimitError) as rate_limited:
        client.chat.completions.create(model=MODEL, messages=[USER])
    assert rate_limited.value.response.headers["retry-after"] == "7"
    assert rate_limited.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError) as bad_gateway:
        client.chat.completions.create(model=MODEL, messages=[USER])
    assert bad_gateway.value.status_code == 502 and "Bad Gateway" in bad_gateway.value.response.text


def test_models_and_unknown_path(mock, client):
    assert "gpt-4o-mini" in [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="hi")


def test_auth_rejected(mock):
    with openai.OpenAI(base_url=mock.base_url, api_key="sk-wrong-key-000", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError) as rejected:
            sdk.chat.completions.create(model=MODEL, messages=[USER])
    assert rejected.value.code == "invalid_api_key"


def test_chunked_request_body_and_keep_alive(mock):
    body = json.dumps({"model": MODEL, "messages": [USER]}).encode()
    with httpx.Client(headers={"authorization": f"Bearer {API_KEY}"}) as http:
        for _ in range(3):  # one connection, several requests
            response = http.post(f"{mock.base_url}/chat/completions", content=iter([body[:10], body[10:]]))
            assert response.status_code == 200 and response.json()["object"] == "chat.completion"
    assert mock.requests[-1].headers["transfer-encoding"] == "chunked"
    assert mock.requests[-1].body["model"] == MODEL


def test_extra_fields_allowed_per_instance():
    with MockOpenAI(extra_fields=["thinking"]) as mock, \
            openai.OpenAI(base_url=mock.base_url, api_key="x", max_retries=0) as sdk:
        sdk.chat.completions.create(model=MODEL, messages=[USER], extra_body={"thinking": {"type": "enabled"}})
        assert mock.requests[-1].body["thinking"] == {"type": "enabled"}


def test_subprocess_mode(tmp_path):
    script = tmp_path / "turns.json"
    script.write_text(json.dumps({"turns": [{"text": "from a subprocess"}], "api_key": "k"}))
    proc, port = spawn_mock_openai("--script", str(script))
    try:
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0) as sdk:
            completion = sdk.chat.completions.create(model=MODEL, messages=[USER])
        assert completion.choices[0].message.content == "from a subprocess"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ------------------------------------------------------------------- rejections

BASE = {"model": MODEL, "messages": [USER]}
REJECTED = {
    "missing model": ({"messages": [USER]}, "model parameter"),
    "missing messages": ({"model": MODEL}, "'messages'"),
    "empty messages": ({**BASE, "messages": []}, "empty array"),
    "unknown role": ({**BASE, "messages": [{"role": "unknown", "content": "hi"}]}, "Invalid value: 'unknown'"),
    "user between call and answer": (
        {**BASE, "messages": [USER, assistant_calls("call_1"), USER, tool_answer("call_1")]}, "call_1"),
    "one of two calls unanswered": (
        {**BASE, "messages": [USER, assistant_calls("call_1", "call_2"), tool_answer("call_2"), USER]}, "call_1"),
    "trailing unanswered call": ({**BASE, "messages": [USER, assistant_calls("call_1")]}, "call_1"),
    "orphan tool message": ({**BASE, "messages": [USER, tool_answer("call_1")]}, "preceeding message"),
    "tool answers wrong id": (
        {**BASE, "messages": [USER, assistant_calls("call_1"), tool_answer("call_9")]}, "preceeding message"),
    "duplicate tool answer": (
        {**BASE, "messages": [USER, assistant_calls("call_1"), tool_answer("call_1"), tool_answer("call_1")]},
        "preceeding message"),
    "tool call without id": (
        {**BASE, "messages": [USER, {"role": "assistant", "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}, "tool_calls[0].id"),
    "tool call wrong type": (
        {**BASE, "messages": [USER, {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "tool", "function": {"name": "f", "arguments": "{}"}}]}]}, "'tool'"),
    "tool call without name": (
        {**BASE, "messages": [USER, {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"arguments": "{}"}}]}]}, "function.name"),
    "tool call arguments not JSON": (
        {**BASE, "messages": [USER, {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{city"}}]}]}, "arguments"),
    "tool call arguments not a string": (
        {**BASE, "messages": [USER, {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}]}]}, "arguments"),
    "tool wrong type": ({**BASE, "tools": [{"type": "retrieval"}]}, "tools[0].type"),
    "tool bad name": ({**BASE, "tools": [{"type": "function", "function": {
        "name": "get weather", "parameters": {"type": "object"}}}]}, "does not match pattern"),
    "tool name too long": ({**BASE, "tools": [{"type": "function", "function": {
        "name": "x" * 65, "parameters": {"type": "object"}}}]}, "does not match pattern"),
    "tool parameters missing": ({**BASE, "tools": [{"type": "function", "function": {"name": "f"}}]},
                                "parameters"),
    "tool parameters not an object schema": ({**BASE, "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "string"}}}]}, "Invalid schema"),
    "empty tools": ({**BASE, "tools": []}, "empty array"),
    "content is a number": ({**BASE, "messages": [{"role": "user", "content": 3}]}, "Invalid type"),
    "null user content": ({**BASE, "messages": [{"role": "user", "content": None}]}, "got null"),
    "null assistant content without tool calls": (
        {**BASE, "messages": [USER, {"role": "assistant", "content": None}, USER]}, "got null"),
    "unknown content part": ({**BASE, "messages": [{"role": "user", "content": [
        {"type": "document", "text": "x"}]}]}, "'document'"),
    "image url not http or data": ({**BASE, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}]}]}, "image_url.url"),
    "image in system message": ({**BASE, "messages": [{"role": "system", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}, USER]}, "only allowed"),
    "tool_choice bad string": ({**BASE, "tools": [WEATHER_TOOL], "tool_choice": "any"}, "tool_choice"),
    "tool_choice unknown function": ({**BASE, "tools": [WEATHER_TOOL], "tool_choice": {
        "type": "function", "function": {"name": "nope"}}}, "'nope'"),
    "tool_choice without tools": ({**BASE, "tool_choice": "auto"}, "only allowed when 'tools'"),
    "unknown top-level field": ({**BASE, "thinking": {"type": "enabled"}},
                                "Unrecognized request argument supplied: thinking"),
    "stream_options without stream": ({**BASE, "stream_options": {"include_usage": True}}, "stream_options"),
    "temperature out of range": ({**BASE, "temperature": 3}, "temperature"),
}


@pytest.mark.parametrize("body, expected", REJECTED.values(), ids=REJECTED.keys())
def test_invalid_requests_are_rejected(mock, client, body, expected):
    with pytest.raises(openai.BadRequestError) as rejected:
        post_raw(client, body)
    assert expected in rejected.value.message
    error = rejected.value.body
    assert error["type"] == "invalid_request_error" and "param" in error and "code" in error


def test_rejected_requests_are_recorded_but_do_not_consume_turns(mock, client):
    mock.set_script([{"text": "first"}, {"text": "second"}])
    with pytest.raises(openai.BadRequestError):
        post_raw(client, {"model": MODEL, "messages": []})
    assert mock.requests[-1].body == {"model": MODEL, "messages": []}
    assert client.chat.completions.create(model=MODEL, messages=[USER]).choices[0].message.content == "first"
