"""The official anthropic SDK → a real mitmdump with the addon → the mock OpenAI provider."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from conftest import CLIENT_KEY, PROVIDER_KEY
from relay_process import ROOT

TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


@pytest.fixture
def client(relay) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0, timeout=30)


def ask(client: anthropic.Anthropic, model: str = "claude-sonnet-4-5", **kwargs):
    kwargs.setdefault("messages", [{"role": "user", "content": "Hello"}])
    return client.messages.create(model=model, max_tokens=200, **kwargs)


def test_non_streaming_text(client, provider) -> None:
    provider.set_script([{"text": "Hi there!", "usage": {"prompt_tokens": 11, "completion_tokens": 3}}])
    message = ask(client, model="claude-haiku-4-5-20251001")
    assert message.content[0].text == "Hi there!"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 3)
    assert message.model == "claude-haiku-4-5-20251001"
    (request,) = provider.requests
    assert request.body["model"] == "gpt-4.1-mini"
    assert "stream" not in request.body


def test_streaming_text(client, provider) -> None:
    provider.set_script([{"text": "One two three four five", "chunks": 5}])
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "Count"}]) as stream:
        pieces = list(stream.text_stream)
        message = stream.get_final_message()
    assert len(pieces) == 5 and "".join(pieces) == "One two three four five"
    assert message.stop_reason == "end_turn" and message.usage.output_tokens > 0
    assert provider.requests[0].body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("expect", [False, True], ids=["pieces", "100-continue"])
def test_a_body_that_arrives_slowly_is_answered_once_it_is_in(relay, provider, expect: bool) -> None:
    """The relay takes a request as it arrives; a body sent in pieces, or only after the
    relay's 100 Continue (curl's way with big bodies), is read whole all the same."""
    import socket
    import time

    provider.set_script([{"text": "All of it arrived", "chunks": 2}])
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 50, "stream": True,
                       "messages": [{"role": "user", "content": "x" * 20_000}]}).encode()
    head = (f"POST /v1/messages HTTP/1.1\r\nhost: {relay.url.split('//')[1]}\r\ncontent-type: application/json\r\n"
            f"x-api-key: {CLIENT_KEY}\r\nanthropic-version: 2023-06-01\r\ncontent-length: {len(body)}\r\n"
            f"{'expect: 100-continue' + chr(13) + chr(10) if expect else ''}\r\n").encode()
    host, port = relay.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head)
        if expect:
            assert conn.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n")
        for at in range(0, len(body), 7_000):
            time.sleep(0.05)
            conn.sendall(body[at : at + 7_000])
        answer = b""
        while b"event: message_stop" not in answer and (data := conn.recv(65536)):
            answer += data
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"All of it" in answer and b"event: message_stop" in answer
    assert provider.requests[-1].body["messages"][-1]["content"] == "x" * 20_000


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_tool_round_trip(client, provider, stream: bool) -> None:
    provider.set_script(
        [
            {"text": "", "tool_calls": [{"id": "call_w1", "name": "get_weather", "arguments": {"city": "Paris"}}]},
            {"text": "It is sunny in Paris."},
        ]
    )
    messages = [{"role": "user", "content": "Weather in Paris?"}]

    def turn():
        if stream:
            with client.messages.stream(model="claude-sonnet-4-5", max_tokens=200, tools=TOOLS, messages=messages) as s:
                return s.get_final_message()
        return ask(client, tools=TOOLS, messages=messages)

    first = turn()
    assert first.stop_reason == "tool_use"
    (call,) = [b for b in first.content if b.type == "tool_use"]
    assert (call.id, call.name, call.input) == ("call_w1", "get_weather", {"city": "Paris"})

    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21°C"}]},
    ]
    second = turn()
    assert second.content[0].text == "It is sunny in Paris."
    sent = provider.requests[1].body["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == "call_w1"
    assert sent[-1] == {"role": "tool", "tool_call_id": "call_w1", "content": "sunny, 21°C"}


def test_a_json_only_provider_still_streams_to_the_client(client, provider) -> None:
    provider.set_script([{"text": "Streamed from JSON", "reasoning": "short thought"}])
    with client.messages.stream(model="claude-json-only", max_tokens=100, messages=[{"role": "user", "content": "x"}]) as stream:
        kinds = [event.type for event in stream]
        message = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[1].text == "Streamed from JSON"
    assert "stream" not in provider.requests[0].body


def test_credentials_never_cross_over(client, provider, relay) -> None:
    provider.set_script([{"text": "ok"}])
    raw = httpx.post(
        relay.url + "/v1/messages",
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
        json={"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]},
    )
    assert raw.status_code == 200
    assert PROVIDER_KEY not in raw.text and PROVIDER_KEY not in str(raw.headers)
    headers = provider.requests[0].headers
    assert headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert CLIENT_KEY not in json.dumps(headers)


def test_rate_limits_keep_retry_after(client, provider) -> None:
    provider.set_script([{"error_status": 429, "headers": {"retry-after": "7"}}])
    with pytest.raises(anthropic.RateLimitError) as raised:
        ask(client)
    assert raised.value.response.headers["retry-after"] == "7"
    assert raised.value.body["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(
    "turn, error, error_type",
    [
        ({"error_status": 401}, anthropic.AuthenticationError, "authentication_error"),
        ({"error_status": 404}, anthropic.NotFoundError, "not_found_error"),
        ({"error_status": 413}, anthropic.APIStatusError, "request_too_large"),
        ({"error_status": 503}, anthropic.APIStatusError, "overloaded_error"),
        ({"raw_body": "<html><title>502 Bad Gateway</title></html>", "status": 502, "content_type": "text/html"}, anthropic.InternalServerError, "api_error"),
        ({"raw_body": '{"error":{"message":"Insufficient Balance"}}', "status": 402, "content_type": "application/octet-stream"}, anthropic.APIStatusError, "billing_error"),
    ],
    ids=["401", "404", "413", "503", "html-502", "deepseek-octet-stream-402"],
)
def test_upstream_errors_in_anthropic_form(client, provider, turn, error, error_type) -> None:
    provider.set_script([turn])
    with pytest.raises(error) as raised:
        ask(client)
    assert raised.value.body["error"]["type"] == error_type
    assert raised.value.body["error"]["message"].startswith("mock (127.0.0.1): ")  # the provider by its name in the config, and its host
    if turn.get("status") == 502:
        assert "502 Bad Gateway" in raised.value.body["error"]["message"]


def test_an_error_inside_a_stream_reaches_the_client(client, provider) -> None:
    chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "partial"}}]}
    raw = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps({'error': {'code': 429, 'message': 'slow down'}})}\n\n"
    provider.set_script([{"raw_sse": raw}])
    with pytest.raises(anthropic.APIStatusError, match="slow down"):
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]) as stream:
            for _ in stream:
                pass


def test_bad_requests_are_refused_in_anthropic_form(client, provider) -> None:
    with pytest.raises(anthropic.BadRequestError) as raised:
        ask(client, messages=[{"role": "robot", "content": "x"}])
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert not provider.requests


def test_local_endpoints(client, relay) -> None:
    count = client.messages.count_tokens(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "Hello, world"}], tools=TOOLS)
    assert count.input_tokens > 10
    models = client.models.list()
    assert {m.id for m in models.data} == {"claude-haiku-4-5", "claude-json-only", "claude-sonnet-4-5"}
    assert httpx.get(relay.url + "/health").json() == {"status": "ok"}


def test_a_saved_flow_file_holds_no_provider_key(provider, tmp_path) -> None:
    from mitmproxy import io

    from conftest import write_config
    from relay_process import Relay

    provider.set_script([{"text": "saved", "chunks": 2}])
    saved = tmp_path / "session.flow"
    with Relay(write_config(tmp_path, provider), tmp_path, "-w", str(saved)) as relay:
        client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0)
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]) as stream:
            assert stream.get_final_message().content[0].text == "saved"
    data = saved.read_bytes()
    assert PROVIDER_KEY.encode() not in data
    flows = [f for f in io.FlowReader(saved.open("rb")).stream() if f.request.path.endswith("/chat/completions")]
    assert len(flows) == 1 and flows[0].request.headers["authorization"] == "[REDACTED]"


def test_usage_totals_count_a_stream_that_ended_in_error_and_need_no_provider_keys(tmp_path, monkeypatch) -> None:
    import subprocess

    from llmrelay import usage

    monkeypatch.delenv("LLMRELAY_TEST_UNSET_KEY", raising=False)
    log = usage.UsageLog(tmp_path / "data")
    base = {"time": "2026-05-01T10:00:00Z", "provider": "mock", "model": "gpt-4.1-mini", "input_tokens": 10, "output_tokens": 5}
    for status, error_type in ((200, None), (200, "api_error"), (429, "rate_limit_error")):  # (the second: cut mid-stream)
        log.write({**base, "status": status, "error_type": error_type})
    log.close()
    config = tmp_path / "config.yaml"  # as in a new shell: the provider's key is not set
    config.write_text(
        "providers: {mock: {type: openai, base_url: 'https://api.example/v1', api_key: '${LLMRELAY_TEST_UNSET_KEY}'}}\n"
        "models: {default: {provider: mock, model: m}}\n"
        "prices: {gpt-4.1-mini: {input: 1000000, output: 2000000}}\n"
    )
    for kind in ((), ("--errors",)):
        done = subprocess.run([str(ROOT / "scripts" / "usage"), "--data-dir", str(tmp_path / "data"), "--config", str(config), *kind],
                              capture_output=True, text=True, check=True)
        assert "no prices" not in done.stderr
        (line,) = [l for l in done.stdout.splitlines() if l.strip().startswith("gpt-4.1-mini")]
        requests = 3 if not kind else 2
        assert line.split()[1:3] == [str(requests), "2"]  # requests, errors
        assert line.split()[-1] == f"{requests * (10 + 5 * 2):.4f}"


def test_every_routed_request_leaves_a_usage_record_without_content(client, provider, relay, tmp_path) -> None:
    import subprocess

    from llmrelay import usage

    model = "claude-haiku-4-5-usage-check"
    provider.set_script(
        [
            {"text": "secret answer text", "usage": {"prompt_tokens": 100, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 40}}, "chunks": 3},
            {"text": "again", "usage": {"prompt_tokens": 10, "completion_tokens": 5}},
            {"error_status": 429},
        ]
    )
    with client.messages.stream(model=model, max_tokens=50, messages=[{"role": "user", "content": "secret prompt text"}]) as stream:
        stream.get_final_message()
    client.messages.create(model=model, max_tokens=50, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model=model, max_tokens=50, messages=[{"role": "user", "content": "x"}])

    records = relay.records(3, where=lambda r: r["client_model"] == model)
    assert [(r["stream"], r["status"], r["error_type"]) for r in records] == [(True, 200, None), (False, 200, None), (False, 429, "rate_limit_error")]
    first = records[0]
    assert (first["provider"], first["model"], first["input_tokens"], first["cache_read_input_tokens"], first["output_tokens"]) == ("mock", "gpt-4.1-mini", 60, 40, 20)
    assert 0 < first["ttft_ms"] <= first["total_ms"]
    assert records[2]["ttft_ms"] is None  # a 429 has no first token
    assert [r["status"] for r in relay.records(1, "errors", lambda r: r["client_model"] == model)] == [429]
    text = "".join(path.read_text() for path in relay.data.rglob("*.jsonl"))
    assert "secret" not in text and PROVIDER_KEY not in text and CLIENT_KEY not in text

    # The totals, over this test's records only (the session's relay serves other tests too).
    mine = usage.UsageLog(tmp_path / "data")
    for record in records:
        mine.write(record)
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "providers: {mock: {type: openai, base_url: 'http://127.0.0.1:1/v1'}}\n"
        "models: {default: {provider: mock, model: m}}\n"
        "prices: {gpt-4.1-mini: {input: 1000000, output: 2000000, cache_read: 500000}}\n"
    )
    out = subprocess.run([str(ROOT / "scripts" / "usage"), "--data", str(tmp_path / "data"), "--config", str(prices)], capture_output=True, text=True, check=True).stdout
    (line,) = [l for l in out.splitlines() if l.strip().startswith("gpt-4.1-mini")]
    assert line.split()[1:3] == ["3", "1"]  # requests, errors
    # 60+10 input at $1, 20+5 output at $2, 40 cache reads at $0.5 per token
    assert line.split()[-1] == f"{70 + 50 + 20:.4f}"
