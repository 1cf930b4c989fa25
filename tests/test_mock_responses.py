"""Prove the mock Responses API and mock Codex backend speak the wire format the official
openai SDK accepts, and refuse what the real endpoints refuse, with their exact bodies, so
end-to-end tests built on them are meaningful."""

from __future__ import annotations

import json
import socket
import time

import openai
import pytest

from sdk_http import openai_httpx as httpx
from tests.mock_responses import CODEX_FIELDS, MockCodex, MockResponses, spawn_mock_responses
from tests.responses_oracle import read_responses

API_KEY = "sk-test-1234567890"
MODEL = "gpt-5.5"
TOKEN = "chatgpt-access-token-live"
ACCOUNT = "acct-7f3e"
USER = {"role": "user", "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]}
TOOL = {"type": "function", "name": "get_weather", "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}
OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "18C, sunny"}


class Issuer:
    """The two names MockCodex needs from a token issuer."""

    account_id = ACCOUNT

    def __init__(self):
        self.live = {TOKEN}

    def is_live(self, token: str) -> bool:
        return token in self.live


def codex_body(**changes) -> dict:
    """A request as Codex sends it."""
    body = {"model": MODEL, "instructions": "You are Codex.", "input": [USER], "tools": [TOOL],
            "tool_choice": "auto", "parallel_tool_calls": False, "reasoning": {"effort": "medium", "summary": "auto"},
            "store": False, "stream": True, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "s-1"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


CODEX_HEADERS = {"authorization": f"Bearer {TOKEN}", "chatgpt-account-id": ACCOUNT, "originator": "codex_cli_rs",
                 "accept": "text/event-stream", "session_id": "s-1", "version": "0.146.0"}


@pytest.fixture(scope="module")
def http():
    """One connection pool for every client in this module."""
    with httpx.Client(timeout=10) as pool:
        yield pool


@pytest.fixture(scope="module")
def server():
    with MockResponses(api_key=API_KEY) as mock:
        yield mock


@pytest.fixture
def mock(server):
    """The module's Responses mock, with a fresh script and request log for this test."""
    server.set_script([])
    server.requests.clear()
    return server


@pytest.fixture(scope="module")
def codex_server():
    with MockCodex(issuer=Issuer()) as mock:
        yield mock


@pytest.fixture
def codex(codex_server):
    codex_server.set_script([])
    codex_server.requests.clear()
    codex_server.issuer.live = {TOKEN}
    return codex_server


@pytest.fixture
def client(mock, http):
    return openai.OpenAI(base_url=mock.base_url, api_key=API_KEY, max_retries=0, http_client=http)


def post(http, mock, body, headers=None, path="/responses"):
    sent = {"authorization": f"Bearer {API_KEY}"} if headers is None else headers
    return http.post(mock.base_url + path, content=json.dumps(body), headers={"content-type": "application/json",
                                                                              **sent})


def events_of(response) -> list[dict]:
    """The events of a streamed answer, checking the exact framing and the numbering."""
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = response.text.split("\n\n")
    assert frames[-1] == ""
    events = []
    for frame in frames[:-1]:
        head, data = frame.split("\n")
        assert head.startswith("event: ") and data.startswith("data: ")
        event = json.loads(data[6:])
        assert event["type"] == head[7:]
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def as_fixture(response) -> dict:
    return {"stream": response.headers["content-type"].startswith("text/event-stream"), "body": response.text}


# ------------------------------------------------------------------ Responses API: answers


def test_stream_event_sequence(mock, http):
    mock.set_script([{"text": "Sunny, 18C.", "reasoning": ["Check the city.", "Then answer."],
                      "tool_calls": [{"call_id": "call_9", "name": "get_weather", "arguments": {"city": "Paris"}}],
                      "chunks": 2}])
    body = {"model": MODEL, "input": [USER], "tools": [TOOL], "stream": True,
            "include": ["reasoning.encrypted_content"]}
    events = events_of(post(http, mock, body))
    kinds = [e["type"] for e in events]
    reasoning = ["response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
                 "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
                 "response.reasoning_summary_part.done"]
    assert kinds == ["response.created", "response.in_progress",
                     "response.output_item.added", *reasoning, *reasoning, "response.output_item.done",
                     "response.output_item.added", "response.content_part.added", "response.output_text.delta",
                     "response.output_text.delta", "response.output_text.done", "response.content_part.done",
                     "response.output_item.done",
                     "response.output_item.added", "response.function_call_arguments.delta",
                     "response.function_call_arguments.delta", "response.function_call_arguments.done",
                     "response.output_item.done", "response.completed"]
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    completed = events[-1]["response"]
    assert completed["output"] == done and completed["status"] == "completed"
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.done"] == [0, 1, 2]
    assert done[0]["summary"] == [{"type": "summary_text", "text": "Check the city."},
                                  {"type": "summary_text", "text": "Then answer."}]
    assert done[0]["encrypted_content"] in mock.issued_encrypted
    assert done[2] | {"id": None} == {"id": None, "type": "function_call", "status": "completed",
                                      "arguments": '{"city":"Paris"}', "call_id": "call_9", "name": "get_weather"}
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == "Sunny, 18C." and all(e.get("obfuscation") for e in events if e["type"].endswith(".delta"))
    assert len({e["response"]["id"] for e in events if "response" in e}) == 1
    usage = completed["usage"]
    assert usage["output_tokens_details"]["reasoning_tokens"] > 0 and "cached_tokens" in usage["input_tokens_details"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_stream_read_back_by_the_oracle(mock, http):
    mock.set_script([{"text": "Half an ans", "refusal": "", "reasoning": "Short.", "status": "incomplete",
                      "usage": {"input_tokens": 40, "output_tokens": 16, "cached_tokens": 32, "reasoning_tokens": 4}}])
    said = read_responses(as_fixture(post(http, mock, {"model": MODEL, "input": "Hi", "stream": True,
                                                       "max_output_tokens": 16})))
    assert (said.text, said.reasoning, said.finish_reason) == ("Half an ans", "Short.", "max_tokens")
    assert said.usage == {"input_tokens": 40, "output_tokens": 16, "cached_tokens": 32, "reasoning_tokens": 4}


def test_stream_is_chunked_one_event_per_chunk(mock):
    mock.set_script([{"text": "abcdef", "chunks": 3}])
    body = json.dumps({"model": MODEL, "input": "Hi", "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", mock.port)) as sock:
        sock.sendall(b"POST /v1/responses HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json"
                     b"\r\nauthorization: Bearer " + API_KEY.encode() + b"\r\ncontent-length: %d\r\n\r\n%b"
                     % (len(body), body))
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, rest = raw.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding: chunked" in head.lower()
    chunks = []
    while True:
        size, rest = rest.split(b"\r\n", 1)
        if int(size, 16) == 0:
            break
        chunks.append(rest[:int(size, 16)])
        rest = rest[int(size, 16) + 2:]
    assert all(c.startswith(b"event: ") and c.endswith(b"\n\n") and c.count(b"\n\n") == 1 for c in chunks)
    assert len(chunks) == 11  # created, in_progress, 4 for the message, 3 deltas, text done, completed


def test_stream_interval_is_real_timing(mock, http):
    mock.set_script([{"text": "abc", "chunks": 3, "interval_ms": 40}])
    body = {"model": MODEL, "input": "Hi", "stream": True}
    with http.stream("POST", mock.base_url + "/responses", json=body,
                     headers={"authorization": f"Bearer {API_KEY}"}) as response:
        arrivals = [time.perf_counter() for line in response.iter_lines()
                    if line == "event: response.output_text.delta"]
    assert len(arrivals) == 3 and arrivals[-1] - arrivals[0] >= 0.07


def test_obfuscation_can_be_turned_off(mock, http):
    body = {"model": MODEL, "input": "Hi", "stream": True, "stream_options": {"include_obfuscation": False}}
    assert not any("obfuscation" in e for e in events_of(post(http, mock, body)))


def test_json_answer(mock, http):
    mock.set_script([{"text": "pong", "reasoning": [], "usage": {"input_tokens": 11, "output_tokens": 5}}])
    body = {"model": MODEL, "input": "Reply with exactly: pong", "store": False,
            "include": ["reasoning.encrypted_content"], "reasoning": {"effort": "low"}, "instructions": "Be brief."}
    answer = post(http, mock, body).json()
    assert answer["object"] == "response" and answer["status"] == "completed" and answer["id"].startswith("resp_")
    assert (answer["model"], answer["store"], answer["instructions"]) == (MODEL, False, "Be brief.")
    reasoning, message = answer["output"]
    assert reasoning["type"] == "reasoning" and reasoning["summary"] == []
    assert reasoning["encrypted_content"] in mock.issued_encrypted
    assert message["content"][0]["text"] == "pong" and message["role"] == "assistant"
    assert answer["usage"] == {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
                               "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 16}


def test_json_endings(mock, http):
    mock.set_script([{"text": "Trunc", "status": "incomplete"},
                     {"text": "", "status": "incomplete", "incomplete_reason": "content_filter"},
                     {"failed": {"code": "server_error", "message": "The model failed."}}])
    first, second, third = (post(http, mock, {"model": MODEL, "input": "Hi"}).json() for _ in range(3))
    assert first["incomplete_details"] == {"reason": "max_output_tokens"}
    assert first["output"][0]["status"] == "incomplete"
    assert second["status"] == "incomplete" and second["incomplete_details"] == {"reason": "content_filter"}
    assert third["status"] == "failed" and third["error"] == {"code": "server_error", "message": "The model failed."}
    assert third["output"] == [] and third["usage"] is None


def test_failed_stream(mock, http):
    mock.set_script([{"failed": {"code": "rate_limit_exceeded", "message": "Rate limit reached. Please try again "
                                                                           "in 11.054s."}}])
    events = events_of(post(http, mock, {"model": MODEL, "input": "Hi", "stream": True}))
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.failed"]
    assert events[-1]["response"]["error"]["code"] == "rate_limit_exceeded"
    assert events[-1]["response"]["status"] == "failed"


def test_any_base_path_and_callable_turn(mock, http):
    mock.set_script([lambda request: {"text": f"You said {request['input']}"}])
    for path in ("/responses", "/openai/deployments/x/responses"):
        response = http.post(f"http://127.0.0.1:{mock.port}{path}", json={"model": MODEL, "input": "hey"},
                             headers={"authorization": f"Bearer {API_KEY}"})
        assert response.json()["output"][0]["content"][0]["text"] == "You said hey"
    assert [r.path for r in mock.requests] == ["/responses", "/openai/deployments/x/responses"]


def test_error_and_raw_turns(mock, http):
    raw = 'event: response.created\ndata: {"type":"response.created","response":{"id":"r"}}\n\n'
    mock.set_script([{"error_status": 429}, {"error_status": 500, "error_body": {"error": {"message": "boom"}}},
                     {"raw_sse": raw}, {"raw_body": "<html>bad gateway</html>", "status": 502,
                                        "content_type": "text/html"}])
    body = {"model": MODEL, "input": "Hi"}
    limited = post(http, mock, body)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert post(http, mock, body).json() == {"error": {"message": "boom"}}
    assert post(http, mock, body).text == raw
    page = post(http, mock, body)
    assert (page.status_code, page.text) == (502, "<html>bad gateway</html>")


def test_encrypted_reasoning_round_trip(mock, http):
    mock.set_script([{"reasoning": "Think first.", "tool_calls": [{"call_id": "call_1", "name": "get_weather",
                                                                   "arguments": {"city": "Paris"}}]},
                     {"text": "18C."}])
    body = {"model": MODEL, "input": [USER], "tools": [TOOL], "store": False,
            "include": ["reasoning.encrypted_content"]}
    reasoning, call = post(http, mock, body).json()["output"]
    replay = {**body, "input": [USER, reasoning, call, OUTPUT]}
    assert post(http, mock, replay).status_code == 200
    assert mock.requests[-1].returned_encrypted == [reasoning["encrypted_content"]]
    assert set(mock.requests[-1].returned_encrypted) <= mock.issued_encrypted

    forged = {**reasoning, "encrypted_content": "gAAAAABforgedforgedforged=="}
    refused = post(http, mock, {**body, "input": [USER, forged, call, OUTPUT]})
    assert (refused.status_code, refused.json()) == (400, {"error": {
        "message": "The encrypted content gAAA...ed== could not be verified. Reason: Encrypted content could not be "
                   "decrypted or parsed.", "type": "invalid_request_error", "param": None,
        "code": "invalid_encrypted_content"}})


def test_requests_are_recorded_with_headers(mock, http):
    post(http, mock, {"model": MODEL, "input": "Hi"}, headers={"authorization": f"Bearer {API_KEY}",
                                                               "openai-organization": "org-1"})
    recorded = mock.requests[-1]
    assert (recorded.method, recorded.path, recorded.body) == ("POST", "/v1/responses", {"model": MODEL, "input": "Hi"})
    assert recorded.headers["authorization"] == f"Bearer {API_KEY}"
    assert recorded.headers["openai-organization"] == "org-1"


# ---------------------------------------------------------------- Responses API: validation


def error(message, param=None, code=None, type="invalid_request_error") -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def invalid(param, message, code="invalid_value") -> dict:
    return error(message, param, code)


ROLE_VALUES = "Supported values are: 'user', 'assistant', 'system', and 'developer'."
REFUSED = [
    ({"model": MODEL, "input": "Hi", "x": 1}, error("Unknown parameter: 'x'.", "x", "unknown_parameter")),
    ({"input": "Hi"}, invalid("model", "Missing required parameter: 'model'.", "missing_required_parameter")),
    ({"model": MODEL}, invalid("input", "Missing required parameter: 'input'.", "missing_required_parameter")),
    ({"model": MODEL, "input": {"role": "user"}}, invalid(
        "input", "Invalid type for 'input': expected one of a string or array of input items, but got an object "
                 "instead.", "invalid_type")),
    ({"model": MODEL, "input": [{"role": "tool", "content": "x"}]},
     invalid("input[0].role", f"Invalid value: 'tool'. {ROLE_VALUES}")),
    ({"model": MODEL, "input": [{"type": "custom", "x": 1}]}, invalid("input[0].type", (
        "Invalid value: 'custom'. Supported values are: 'message', 'function_call', 'function_call_output', "
        "'reasoning', and 'item_reference'."))),
    ({"model": MODEL, "input": [USER, {"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}]},
     invalid("input[1].content[0].type",
             "Invalid value: 'input_text'. Supported values are: 'output_text' and 'refusal'.")),
    ({"model": MODEL, "input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]},
     invalid("input[0].content[0].type",
             "Invalid value: 'output_text'. Supported values are: 'input_text', 'input_image', and 'input_file'.")),
    ({"model": MODEL, "input": [{"role": "user", "content": [{"type": "input_text"}]}]},
     invalid("input[0].content[0].text", "Missing required parameter: 'input[0].content[0].text'.",
             "missing_required_parameter")),
    ({"model": MODEL, "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "file.png"}]}]},
     invalid("input[0].content[0].image_url", "Invalid 'input[0].content[0].image_url'. Expected a valid URL or a "
             "base64-encoded data URL with an image MIME type, but got a value with an invalid format.")),
    ({"model": MODEL, "input": [USER, CALL]}, invalid("input", "No tool output found for function call call_1.", None)),
    ({"model": MODEL, "input": [USER, CALL, USER, OUTPUT]},
     invalid("input", "No tool output found for function call call_1.", None)),
    ({"model": MODEL, "input": [USER, OUTPUT]},
     invalid("input", "No tool call found for function call output with call_id call_1.", None)),
    ({"model": MODEL, "input": [USER, {**CALL, "arguments": {"city": "Paris"}}, OUTPUT]}, invalid(
        "input[1].arguments", "Invalid type for 'input[1].arguments': expected a string, but got an object instead.",
        "invalid_type")),
    ({"model": MODEL, "input": [USER, {**CALL, "call_id": ""}, OUTPUT]},
     invalid("input[1].call_id", "Missing required parameter: 'input[1].call_id'.", "missing_required_parameter")),
    ({"model": MODEL, "input": [USER, CALL, {**OUTPUT, "output": {"text": "x"}}]}, invalid(
        "input[2].output", "Invalid type for 'input[2].output': expected one of a string or array of content parts, "
                           "but got an object instead.", "invalid_type")),
    ({"model": MODEL, "input": [USER, {"type": "reasoning", "encrypted_content": "gAAA"}]},
     invalid("input[1].summary", "Missing required parameter: 'input[1].summary'.", "missing_required_parameter")),
    ({"model": MODEL, "input": "Hi", "tools": [{**TOOL, "name": "get weather"}]}, invalid(
        "tools[0].name", "Invalid 'tools[0].name': string does not match pattern. Expected a string that matches the "
                         "pattern '^[a-zA-Z0-9_-]{1,64}$'.")),
    ({"model": MODEL, "input": "Hi", "tools": [{**TOOL, "name": "n" * 65}]}, invalid(
        "tools[0].name", "Invalid 'tools[0].name': string does not match pattern. Expected a string that matches the "
                         "pattern '^[a-zA-Z0-9_-]{1,64}$'.")),
    ({"model": MODEL, "input": "Hi", "tools": [{"type": "function", "function": TOOL}]},
     invalid("tools[0].name", "Missing required parameter: 'tools[0].name'.", "missing_required_parameter")),
    ({"model": MODEL, "input": "Hi", "tools": [{**TOOL, "type": "custom"}]},
     invalid("tools[0].type", "Invalid value: 'custom'. Supported values are: 'function'.")),
    ({"model": MODEL, "input": "Hi", "tools": [TOOL], "tool_choice": "any"},
     invalid("tool_choice", "Invalid value: 'any'. Supported values are: 'auto', 'none', and 'required'.")),
    ({"model": MODEL, "input": "Hi", "tools": [TOOL], "tool_choice": {"type": "function", "name": "other"}},
     invalid("tool_choice", "Tool choice 'other' not found in 'tools' parameter.")),
    ({"model": MODEL, "input": "Hi", "max_output_tokens": 10}, invalid(
        "max_output_tokens", "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but "
                             "got 10 instead.", "integer_below_min_value")),
    ({"model": MODEL, "input": "Hi", "temperature": 2.5}, invalid(
        "temperature", "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 2.5 "
                       "instead.", "decimal_above_max_value")),
    ({"model": MODEL, "input": "Hi", "top_p": -0.1}, invalid(
        "top_p", "Invalid 'top_p': decimal below minimum value. Expected a value >= 0, but got -0.1 instead.",
        "decimal_below_min_value")),
    ({"model": MODEL, "input": "Hi", "reasoning": {"effort": "huge"}}, invalid(
        "reasoning.effort", "Invalid value: 'huge'. Supported values are: 'none', 'minimal', 'low', 'medium', "
                            "'high', and 'xhigh'.")),
    ({"model": MODEL, "input": "Hi", "reasoning": {"summary": "none"}}, invalid(
        "reasoning.summary", "Invalid value: 'none'. Supported values are: 'auto', 'concise', and 'detailed'.")),
    ({"model": MODEL, "input": "Hi", "include": ["reasoning.content"]}, invalid(
        "include[0]", "Invalid value: 'reasoning.content'. Supported values are: 'reasoning.encrypted_content', "
                      "'message.output_text.logprobs', 'message.input_image.image_url', 'file_search_call.results', "
                      "'web_search_call.results', 'web_search_call.action.sources', "
                      "'computer_call_output.output.image_url', and 'code_interpreter_call.outputs'.")),
    ({"model": MODEL, "input": "Hi", "parallel_tool_calls": "yes"}, invalid(
        "parallel_tool_calls", "Invalid type for 'parallel_tool_calls': expected a boolean, but got a string instead.",
        "invalid_type")),
    ({"model": MODEL, "input": "Hi", "store": 0}, invalid(
        "store", "Invalid type for 'store': expected a boolean, but got an integer instead.", "invalid_type")),
    ({"model": MODEL, "input": "Hi", "stream_options": {"include_obfuscation": False}}, invalid(
        "stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")),
    ({"model": MODEL, "input": "Hi", "metadata": {"n": 1}}, invalid(
        "metadata", "Invalid type for 'metadata': expected an object of strings, but got an object instead.",
        "invalid_type")),
    ({"model": MODEL, "input": "Hi", "text": {"verbosity": "loud"}}, invalid(
        "text.verbosity", "Invalid value: 'loud'. Supported values are: 'low', 'medium', and 'high'.")),
]


@pytest.mark.parametrize("body, expected", REFUSED, ids=lambda v: json.dumps(v)[:60] if isinstance(v, dict) else "")
def test_refused_with_the_real_body(mock, http, body, expected):
    response = post(http, mock, body)
    assert (response.status_code, response.json()) == (400, expected)
    assert mock.turns_used == 0 and mock.requests[-1].body == body


def test_reasoning_id_without_storage_is_not_found(mock, http):
    item = {"type": "reasoning", "id": "rs_123", "summary": []}
    response = post(http, mock, {"model": MODEL, "input": [USER, item], "store": False})
    assert (response.status_code, response.json()) == (404, error(
        "Item with id 'rs_123' not found. Items are not persisted when `store` is set to false. Try again with "
        "`store` set to true, or remove this item from your input.", "input"))
    assert post(http, mock, {"model": MODEL, "input": [USER, item]}).status_code == 200  # stored: found


def test_accepted_shapes(mock, http):
    image = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}
    history = [
        {"type": "message", "role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "input_text", "text": "Use tools."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Look:"}, image,
                                     {"type": "input_image", "image_url": "https://example.com/a.png"},
                                     {"type": "input_image", "file_id": "file-1"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Two cities."}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Checking."},
                                          {"type": "refusal", "refusal": "Not that."}]},
        CALL, {**CALL, "call_id": "call_2"},
        {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "20C"}]},
        OUTPUT,
        {"role": "assistant", "content": "Paris 18C, Lyon 20C."}, USER]
    body = {"model": MODEL, "input": history, "instructions": "Answer.", "tools": [{**TOOL, "strict": True}],
            "tool_choice": {"type": "function", "name": "get_weather"}, "parallel_tool_calls": True,
            "max_output_tokens": 16, "temperature": 2, "top_p": 0,
            "reasoning": {"effort": "xhigh", "summary": "detailed"},
            "include": ["reasoning.encrypted_content"], "store": True, "stream": False, "user": "u-1",
            "safety_identifier": "s-1", "prompt_cache_key": "k", "metadata": {"a": "b"},
            "text": {"format": {"type": "text"}, "verbosity": "low"}, "truncation": "auto", "service_tier": "flex"}
    response = post(http, mock, body)
    assert response.status_code == 200, response.text
    assert post(http, mock, {"model": MODEL, "input": "Hi", "tool_choice": "none"}).status_code == 200


def test_auth_and_routes(mock, http):
    body = {"model": MODEL, "input": "Hi"}
    missing = post(http, mock, body, headers={})
    assert missing.status_code == 401 and missing.json()["error"]["message"].startswith("You didn't provide an API key")
    wrong = post(http, mock, body, headers={"authorization": "Bearer sk-wrong-0000000000"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert "sk-wrong-0000000000" not in wrong.text
    lost = post(http, mock, body, path="/chat/completions")
    assert (lost.status_code, lost.json()["error"]["message"]) == (404, "Invalid URL (POST /v1/chat/completions)")
    garbled = http.post(mock.base_url + "/responses", content=b"{", headers={"authorization": f"Bearer {API_KEY}"})
    assert garbled.status_code == 400 and "could not parse the JSON body" in garbled.json()["error"]["message"]
    assert mock.turns_used == 0


# ---------------------------------------------------------------- Responses API: the SDK


def test_sdk_create(mock, client):
    mock.set_script([{"text": "It is sunny.", "usage": {"input_tokens": 9, "cached_tokens": 4}}])
    response = client.responses.create(model=MODEL, input="Weather in Paris?", instructions="Be brief.")
    assert response.output_text == "It is sunny." and response.status == "completed"
    assert response.usage.input_tokens == 9 and response.usage.input_tokens_details.cached_tokens == 4
    assert mock.requests[-1].body == {"model": MODEL, "input": "Weather in Paris?", "instructions": "Be brief."}


def test_sdk_stream_events(mock, client):
    mock.set_script([{"text": "Sunny and warm", "reasoning": "Look it up.", "chunks": 4}])
    events = list(client.responses.create(model=MODEL, input=[USER], stream=True, reasoning={"summary": "auto"}))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Sunny and warm"
    assert "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta") == "Look it up."
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "Sunny and warm"


def test_sdk_stream_helper_tool_round_trip(mock, client):
    """A streamed tool call, accumulated by the SDK helper, answered, then the final text."""
    mock.set_script([{"reasoning": "Need the tool.", "tool_calls": [
                         {"call_id": "call_a", "name": "get_weather", "arguments": {"city": "Paris"}},
                         {"name": "get_weather", "arguments": '{"city":"Lyon"}'}], "chunks": 3},
                     {"text": "Paris 18C, Lyon 20C."}])
    with client.responses.stream(model=MODEL, input=[USER], tools=[TOOL], store=False,
                                 include=["reasoning.encrypted_content"]) as stream:
        arguments = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert "".join(arguments) == '{"city":"Paris"}{"city":"Lyon"}'
    reasoning, *calls = final.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "Need the tool."
    assert [(c.call_id[:5], json.loads(c.arguments)["city"]) for c in calls] == [("call_", "Paris"), ("call_", "Lyon")]
    assert calls[0].call_id == "call_a"

    history = [USER, *(item.model_dump(exclude_none=True) for item in final.output),
               *({"type": "function_call_output", "call_id": c.call_id, "output": "18C"} for c in calls)]
    answer = client.responses.create(model=MODEL, input=history, tools=[TOOL], store=False,
                                     include=["reasoning.encrypted_content"])
    assert answer.output_text == "Paris 18C, Lyon 20C."
    assert mock.requests[-1].returned_encrypted == [reasoning.encrypted_content]


def test_sdk_sees_refusals_as_exceptions(mock, client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input=[USER, CALL])
    assert caught.value.code is None and caught.value.param == "input"
    assert caught.value.body["message"] == "No tool output found for function call call_1."


# ---------------------------------------------------------------------- the Codex backend


def codex_post(http, codex, body, headers=CODEX_HEADERS):
    return http.post(codex.base_url + "/responses", content=json.dumps(body),
                     headers={"content-type": "application/json", **headers})


def test_codex_stream_has_empty_completed_output(codex, http):
    codex.set_script([{"text": "Done.", "reasoning": "Plan.", "tool_calls": [{"name": "get_weather",
                                                                              "arguments": {"city": "Paris"}}]}])
    response = codex_post(http, codex, codex_body())
    assert response.status_code == 200
    events = events_of(response)
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [i["type"] for i in done] == ["reasoning", "message", "function_call"]
    assert events[-1]["type"] == "response.completed" and events[-1]["response"]["output"] == []
    assert events[-1]["response"]["store"] is False and events[-1]["response"]["instructions"] == "You are Codex."
    assert done[0]["encrypted_content"] in codex.issued_encrypted
    said = read_responses(as_fixture(response))
    assert (said.text, said.reasoning, said.finish_reason) == ("Done.", "Plan.", "tool_use")
    assert said.tool_calls[0][1:] == ("get_weather", '{"city":"Paris"}', {"city": "Paris"})
    assert response.headers["x-codex-primary-used-percent"] == "12"
    assert response.headers["x-codex-plan-type"] == "plus"
    assert response.headers["x-codex-secondary-window-minutes"] == "10080"


def test_codex_encrypted_reasoning_round_trip(codex, http):
    codex.set_script([{"reasoning": "Plan.", "tool_calls": [{"call_id": "call_1", "name": "get_weather",
                                                             "arguments": {"city": "Paris"}}]}, {"text": "18C."}])
    events = events_of(codex_post(http, codex, codex_body()))
    reasoning, call = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    strip = {k: v for k, v in reasoning.items() if k != "id"}
    sent = codex_body(input=[USER, strip, {k: v for k, v in call.items() if k not in ("id", "status")}, OUTPUT])
    assert codex_post(http, codex, sent).status_code == 200
    assert codex.requests[-1].returned_encrypted == [reasoning["encrypted_content"]]
    assert set(codex.requests[-1].returned_encrypted) <= codex.issued_encrypted
    without = codex_post(http, codex, codex_body(include=[]))
    assert all("encrypted_content" not in e.get("item", {}) for e in events_of(without))


CODEX_REFUSED = [
    (codex_body(stream=False), {"detail": "Stream must be set to true"}),
    (codex_body(stream=...), {"detail": "Stream must be set to true"}),
    (codex_body(store=...), {"detail": "Store must be set to false"}),
    (codex_body(store=True), {"detail": "Store must be set to false"}),
    (codex_body(instructions=...), {"detail": "Instructions are required"}),
    (codex_body(instructions="  \n"), {"detail": "Instructions are required"}),
    (codex_body(input="Hi"), {"detail": "Input must be a list"}),
    (codex_body(input=[{"role": "system", "content": "x"}, USER]), {"detail": "System messages are not allowed"}),
    (codex_body(model="gpt-5.3-codex"),
     {"detail": "The 'gpt-5.3-codex' model is not supported when using Codex with a ChatGPT account."}),
    (codex_body(input=[USER, {"type": "function_call_output", "call_id": "call_1", "output": "x"}]),
     error("No tool call found for function call output with call_id call_1.", "input")),
    (codex_body(tools=[{**TOOL, "name": "a.b"}]), invalid(
        "tools[0].name", "Invalid 'tools[0].name': string does not match pattern. Expected a string that matches the "
                         "pattern '^[a-zA-Z0-9_-]{1,64}$'.")),
]


@pytest.mark.parametrize("body, expected", CODEX_REFUSED,
                         ids=lambda v: json.dumps(v)[-60:] if isinstance(v, dict) else "")
def test_codex_refused_with_the_real_body(codex, http, body, expected):
    response = codex_post(http, codex, body)
    assert (response.status_code, response.json()) == (400, expected)
    assert codex.turns_used == 0


@pytest.mark.parametrize("field", ["max_output_tokens", "temperature", "top_p", "max_completion_tokens", "truncation",
                                   "user", "safety_identifier", "context_management", "previous_response_id",
                                   "metadata", "stream_options"])
def test_codex_unsupported_parameters(codex, http, field):
    response = codex_post(http, codex, codex_body(**{field: 1}))
    assert (response.status_code, response.json()) == (400, {"detail": f"Unsupported parameter: {field}"})


@pytest.mark.parametrize("item", [{**USER, "id": "msg_1"}, {**CALL, "id": "fc_1"},
                                  {"type": "item_reference", "id": "rs_9"}])
def test_codex_item_ids_are_not_found(codex, http, item):
    response = codex_post(http, codex, codex_body(input=[USER, item, OUTPUT] if item.get("type") == "function_call"
                                                  else [USER, item]))
    assert (response.status_code, response.json()) == (404, error(
        f"Item with id '{item['id']}' not found. Items are not persisted when `store` is set to false. Try again "
        "with `store` set to true, or remove this item from your input.", "input"))


def test_codex_headers(codex, http):
    body = codex_body()
    expired = {"error": {"message": "Provided authentication token is expired. Please try signing in again.",
                         "type": None, "code": "token_expired", "param": None}, "status": 401}
    for headers in ({**CODEX_HEADERS, "authorization": "Bearer old-token"},
                    {k: v for k, v in CODEX_HEADERS.items() if k != "authorization"}):
        response = codex_post(http, codex, body, headers)
        assert (response.status_code, response.json()) == (401, expired)
    codex.issuer.live = set()  # the issuer expired the token since it was issued
    assert codex_post(http, codex, body).status_code == 401
    codex.issuer.live = {TOKEN}
    wrong_account = codex_post(http, codex, body, {**CODEX_HEADERS, "chatgpt-account-id": "acct-other"})
    assert wrong_account.status_code == 403 and "chatgpt-account-id" in wrong_account.json()["detail"]
    no_originator = codex_post(http, codex, body, {k: v for k, v in CODEX_HEADERS.items() if k != "originator"})
    assert no_originator.status_code == 403 and "originator" in no_originator.json()["detail"]
    lost = http.post(f"http://127.0.0.1:{codex.port}/v1/responses", json=body, headers=CODEX_HEADERS)
    assert (lost.status_code, lost.json()) == (404, {"detail": "Not Found"})
    assert codex.turns_used == 0
    assert codex.requests[0].headers["authorization"] == "Bearer old-token"  # kept in memory for assertions


def test_codex_accepts_what_codex_sends(codex, http):
    body = codex_body(input=[{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "p"}]},
                             USER, {"type": "reasoning", "summary": [], "encrypted_content": None}, CALL, OUTPUT],
                      reasoning={"effort": "ultra", "summary": "none"}, text={"verbosity": "low"},
                      service_tier="priority", client_metadata={"a": "b"})
    response = codex_post(http, codex, body)
    assert response.status_code == 200, response.text


def test_codex_usage_limit(codex, http):
    codex.set_script([{"usage_limit": {"resets_in_seconds": 13872, "plan_type": "pro"}}])
    before = int(time.time())
    response = codex_post(http, codex, codex_body())
    assert response.status_code == 429
    error_ = response.json()["error"]
    assert error_ | {"resets_at": 0} == {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                                         "plan_type": "pro", "resets_at": 0, "eligible_promo": None,
                                         "resets_in_seconds": 13872}
    assert before + 13872 <= error_["resets_at"] <= int(time.time()) + 13872
    assert response.headers["x-codex-primary-used-percent"] == "100"
    assert response.headers["x-codex-primary-reset-after-seconds"] == "13872"
    assert response.headers["x-codex-plan-type"] == "pro"


def test_codex_failed_error_and_raw_turns(codex, http):
    raw = 'event: response.created\ndata: {"type":"response.created","response":{"id":"resp-1"}}\n\n'
    codex.set_script([{"failed": {"code": "context_length_exceeded", "message": "Your input exceeds the context "
                                                                                 "window of this model."}},
                      {"error_status": 503, "error_body": {"error": {"code": "server_is_overloaded"}}},
                      {"error_status": 500}, {"raw_sse": raw}])
    failed = events_of(codex_post(http, codex, codex_body()))
    assert failed[-1]["type"] == "response.failed"
    assert failed[-1]["response"]["error"]["code"] == "context_length_exceeded"
    overloaded = codex_post(http, codex, codex_body())
    assert (overloaded.status_code, overloaded.json()) == (503, {"error": {"code": "server_is_overloaded"}})
    assert codex_post(http, codex, codex_body()).json() == {"detail": "Internal Server Error"}
    assert codex_post(http, codex, codex_body()).text == raw


def test_usage_limit_turn_needs_codex(mock, http, capsys):
    mock.set_script([{"usage_limit": {"resets_in_seconds": 5}}])
    response = post(http, mock, {"model": MODEL, "input": "Hi"})
    assert response.status_code == 500 and "MockCodex" in response.json()["error"]["message"]


def test_codex_fields_are_what_codex_sends():
    assert CODEX_FIELDS >= set(codex_body()) | {"text", "service_tier", "client_metadata"}


# ------------------------------------------------------------------------------- process


def test_subprocess_modes(tmp_path, http):
    script = tmp_path / "turns.json"
    script.write_text(json.dumps([{"text": "from a process"}]))
    proc, port = spawn_mock_responses("--script", str(script), "--api-key", API_KEY)
    try:
        response = http.post(f"http://127.0.0.1:{port}/v1/responses", json={"model": MODEL, "input": "Hi"},
                             headers={"authorization": f"Bearer {API_KEY}"})
        assert response.json()["output"][0]["content"][0]["text"] == "from a process"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    proc, port = spawn_mock_responses("--codex", "--token", TOKEN, "--account-id", ACCOUNT, "--script", str(script))
    try:
        response = http.post(f"http://127.0.0.1:{port}/backend-api/codex/responses", json=codex_body(),
                             headers=CODEX_HEADERS)
        said = read_responses(as_fixture(response))
        assert said.text == "from a process" and said.done
    finally:
        proc.terminate()
        proc.wait(timeout=10)
