"""The relay under a failing provider, through a real mitmdump, judged from the client.

Every fault the provider can commit (tests/faulty_upstream.py) must reach the client in
Anthropic's own form: a stream that ends with an `error` event and then ends properly, or
an error answer; never a cut connection, an HTML page, a hang, or a half answer presented
as complete. Silence gets keep-alive pings, and the provider's timeouts hold.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from anthropic_view import check_events
from conftest import CLIENT_KEY, FAILURE_SIGNS, PROVIDER_KEY
from faulty_upstream import Fault, FaultyUpstream, anthropic_events, chat_events, tool_events
from llmrelay import usage
from llmrelay import sse
from relay_process import Relay, free_port
from faulty_upstream import UntrustedTLS

HELLO = [{"role": "user", "content": "Hello"}]
PING_EVERY = 0.25


@pytest.fixture(scope="module")
def upstream():
    with FaultyUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def untrusted_tls(tmp_path_factory):
    """A TLS server whose certificate no one trusts: the handshake must fail, cleanly."""
    with UntrustedTLS(tmp_path_factory.mktemp("tls")) as server:
        yield server


@pytest.fixture(scope="module")
def relay(upstream, untrusted_tls, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("faults")
    config = workdir / "config.yaml"
    config.write_text(
        f"""
providers:
  faulty:
    type: openai
    base_url: {upstream.base_url}
    api_key: {PROVIDER_KEY}
    timeouts: {{connect: 2, first_byte: 1.5, idle: 1.5}}
  faulty-json:
    type: openai
    base_url: {upstream.base_url}
    api_key: {PROVIDER_KEY}
    supports_streaming: false
    timeouts: {{connect: 2, first_byte: 3, idle: 3}}
  faulty-anthropic:
    type: anthropic
    base_url: {upstream.base_url.removesuffix("/v1")}
    api_key: {PROVIDER_KEY}
    timeouts: {{connect: 2, first_byte: 1.5, idle: 1.5}}
  unreachable:
    type: openai
    base_url: http://127.0.0.1:{free_port()}/v1
    api_key: {PROVIDER_KEY}
  no-such-host:
    type: openai
    base_url: http://no-such-host.invalid/v1
    api_key: {PROVIDER_KEY}
  untrusted-tls:
    type: openai
    base_url: https://127.0.0.1:{untrusted_tls.port}/v1
    api_key: {PROVIDER_KEY}
models:
  default: {{provider: faulty, model: m}}
  routes:
    claude-untrusted-tls: {{provider: untrusted-tls, model: m}}
    claude-json-provider: {{provider: faulty-json, model: m}}
    claude-compatible: {{provider: faulty-anthropic, model: m}}
    claude-unreachable: {{provider: unreachable, model: m}}
    claude-no-such-host: {{provider: no-such-host, model: m}}
relay:
  ping_interval: {PING_EVERY}
"""
    )
    with Relay(config, workdir) as process:
        yield process
    output = process.output()
    for sign in FAILURE_SIGNS:
        assert sign not in output, output


@pytest.fixture
def client(relay) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0, timeout=20)


def stream_raw(relay, model: str = "claude-sonnet-4-5") -> tuple[httpx.Response, list[tuple[str | None, dict]]]:
    """The client's stream as it came on the wire: the response (read to its proper end, or
    httpx raises) and its events in order."""
    body = {"model": model, "max_tokens": 100, "messages": HELLO, "stream": True}
    with httpx.stream("POST", relay.url + "/v1/messages", json=body, timeout=20,
                      headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}) as response:
        data = response.read()  # a cut connection raises here
    decoder = sse.Decoder()
    events = [(e.event, json.loads(e.data)) for e in decoder.feed(data) + decoder.flush()]
    return response, events


def kinds(events) -> list[str]:
    return [data["type"] for _, data in events]


def assert_ends_with_error(events, error_type: str = "api_error") -> None:
    check_events([data for _, data in events if data["type"] != "ping"])
    assert kinds(events)[-1] == "error" and "message_stop" not in kinds(events), kinds(events)
    assert events[-1][1]["error"]["type"] == error_type
    assert PROVIDER_KEY not in json.dumps(events)


CUTS = {
    "cut-chunked": Fault("cut_chunked", events=chat_events(finish=None, done=False)[:3]),
    "cut-content-length": Fault("cut_length", events=chat_events()[:3], rest=chat_events()[3:]),
    "close-delimited-cut": Fault("close_delimited", events=chat_events(finish=None, done=False)),
    "reset": Fault("reset", events=chat_events()[:3]),
    "cut-inside-tool-arguments": Fault("cut_chunked", events=tool_events("Bash", '{"command": "rm -rf /tmp/build"}', finish=None)[:3]),
    "finish-with-incomplete-tool-arguments": Fault("ok", events=tool_events("Bash", '{"command": "rm -rf /tmp/build"}')[:3] + chat_events()[-2:]),
}


@pytest.mark.parametrize("fault", CUTS.values(), ids=CUTS.keys())
def test_a_cut_answer_reaches_a_streaming_client_as_an_error(relay, upstream, client, fault) -> None:
    upstream.set_script([fault])
    response, events = stream_raw(relay)
    assert response.status_code == 200  # the stream began, and then ended properly
    assert_ends_with_error(events)
    upstream.set_script([fault])
    with pytest.raises(anthropic.APIStatusError):
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO) as stream:
            for _ in stream:
                pass


@pytest.mark.parametrize("fault", CUTS.values(), ids=CUTS.keys())
def test_a_cut_answer_reaches_a_json_client_as_an_error(upstream, client, fault) -> None:
    upstream.set_script([fault])
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO)
    assert raised.value.status_code >= 500 and raised.value.body["error"]["type"] == "api_error"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_kept_alive_connection_the_provider_dropped_is_replaced_unseen(upstream, client, stream) -> None:
    # The relay writes a request on an idle kept-alive connection the moment it has it; a
    # provider that closed that connection meanwhile gets it again on another one.
    upstream.set_script([Fault("ok", events=chat_events("Warm.")), Fault("hangup"), Fault("ok", events=chat_events("Answered anyway."))])
    assert client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO).content[0].text == "Warm."
    if stream:
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO) as answer:
            message = answer.get_final_message()
    else:
        message = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO)
    assert message.content[0].text == "Answered anyway." and message.stop_reason == "end_turn"
    assert len(upstream.requests) == 3


def test_a_body_without_framing_that_ends_its_answer_is_whole(upstream, client) -> None:
    upstream.set_script([Fault("close_delimited", events=chat_events("All of it."))])
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO) as stream:
        message = stream.get_final_message()
    assert message.content[0].text == "All of it." and message.stop_reason == "end_turn"


def test_a_huge_delta_reaches_a_streaming_client_whole_in_slices(relay, upstream) -> None:
    # One 3 MB event from the provider: the client gets it as several deltas (the relay
    # hands the text on in pieces as it arrives), which add up to the same text.
    text = "".join(f"{i:07d} " for i in range(375_000))
    upstream.set_script([Fault("ok", events=chat_events(text, pieces=1))])
    response, events = stream_raw(relay)
    check_events([data for _, data in events if data["type"] != "ping"])
    deltas = [data["delta"]["text"] for _, data in events if data["type"] == "content_block_delta"]
    assert len(deltas) >= 3 and max(map(len, deltas)) <= 1 << 20
    assert "".join(deltas) == text and kinds(events)[-1] == "message_stop"


def test_a_key_echoed_inside_a_huge_delta_never_reaches_the_client(relay, upstream) -> None:
    # Handed on in pieces as it arrives, the text must still lose every copy of the key,
    # wherever the reads cut it.
    part = "".join(f"{i:07d} " for i in range(12_500))  # 100 KB
    text = PROVIDER_KEY.join([part] * 30)
    upstream.set_script([Fault("ok", events=chat_events(text, pieces=1))])
    response, events = stream_raw(relay)
    deltas = [data["delta"]["text"] for _, data in events if data["type"] == "content_block_delta"]
    assert len(deltas) > 3 and "".join(deltas) == "[REDACTED]".join([part] * 30)
    assert PROVIDER_KEY not in json.dumps(events) and kinds(events)[-1] == "message_stop"


def test_silence_before_the_first_byte_gets_pings_then_the_answer(relay, upstream) -> None:
    upstream.set_script([Fault("silent", wait=1.0, events=chat_events("Worth the wait."))])
    response, events = stream_raw(relay)
    assert kinds(events)[:2] == ["ping", "ping"] and kinds(events)[-1] == "message_stop"
    check_events([data for _, data in events if data["type"] != "ping"])


def test_silence_mid_stream_gets_pings_between_events(relay, upstream) -> None:
    events_out = chat_events("Half now, half later", pieces=2)
    upstream.set_script([Fault("silent_mid", events=events_out[:2], rest=events_out[2:], wait=1.0)])
    response, events = stream_raw(relay)
    seen = kinds(events)
    first_ping = seen.index("ping")
    assert "content_block_delta" in seen[:first_ping] and "content_block_delta" in seen[first_ping:]
    assert seen[-1] == "message_stop"


def test_a_provider_that_answers_as_json_is_pinged_over_while_it_composes(relay, upstream) -> None:
    completion = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Composed."}, "finish_reason": "stop"}]}
    upstream.set_script([Fault("json", body=json.dumps(completion).encode(), wait=1.0)])
    response, events = stream_raw(relay, "claude-json-provider")
    assert kinds(events)[:2] == ["ping", "ping"] and kinds(events)[-1] == "message_stop"
    check_events([data for _, data in events if data["type"] != "ping"])
    assert "stream" not in json.loads(upstream.requests[0].body)  # asked for one JSON answer


def test_a_provider_silent_past_its_first_byte_timeout_ends_the_request(relay, upstream, client) -> None:
    upstream.set_script([Fault("silent", wait=4.0)])
    response, events = stream_raw(relay)
    assert kinds(events)[0] == "ping"
    assert_ends_with_error(events, "timeout_error")
    assert "1.5 s" in events[-1][1]["error"]["message"]
    upstream.set_script([Fault("silent", wait=4.0)])
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO)
    assert raised.value.status_code == 504 and raised.value.body["error"]["type"] == "timeout_error"


def test_a_provider_silent_past_its_idle_timeout_mid_stream_ends_the_request(relay, upstream) -> None:
    events_out = chat_events()
    upstream.set_script([Fault("silent_mid", events=events_out[:2], rest=events_out[2:], wait=4.0)])
    response, events = stream_raw(relay)
    assert_ends_with_error(events, "timeout_error")


@pytest.mark.parametrize("model, says", [("claude-unreachable", "cannot connect"), ("claude-no-such-host", "cannot resolve")])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_an_unreachable_provider_is_an_overloaded_error_naming_it(client, model, says, stream) -> None:
    with pytest.raises(anthropic.APIStatusError) as raised:
        if stream:
            with client.messages.stream(model=model, max_tokens=10, messages=HELLO) as answer:
                list(answer)
        else:
            client.messages.create(model=model, max_tokens=10, messages=HELLO)
    error = raised.value
    assert error.status_code == 529 and error.body["error"]["type"] == "overloaded_error"
    assert says in error.body["error"]["message"] and model.removeprefix("claude-") in error.body["error"]["message"]
    assert error.response.headers["retry-after"] == "1"
    assert error.response.headers["content-type"] == "application/json"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_provider_with_an_untrusted_certificate_is_an_api_error_naming_tls(client, stream) -> None:
    with pytest.raises(anthropic.APIStatusError) as raised:
        if stream:
            with client.messages.stream(model="claude-untrusted-tls", max_tokens=10, messages=HELLO) as answer:
                list(answer)
        else:
            client.messages.create(model="claude-untrusted-tls", max_tokens=10, messages=HELLO)
    error = raised.value
    assert error.status_code == 500 and error.body["error"]["type"] == "api_error"
    assert "untrusted-tls: TLS with the provider failed" in error.body["error"]["message"]
    assert "CERTIFICATE_VERIFY_FAILED" in error.body["error"]["message"]
    assert PROVIDER_KEY not in error.response.text


def test_garbage_instead_of_http_is_an_api_error(upstream, client) -> None:
    upstream.set_script([Fault("garbage")])
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO)
    assert raised.value.status_code == 500 and raised.value.body["error"]["type"] == "api_error"


def test_a_provider_echoing_the_key_never_shows_it_to_the_client(upstream, client) -> None:
    upstream.set_script([Fault("echo_key")])
    with pytest.raises(anthropic.AuthenticationError) as raised:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO)
    assert PROVIDER_KEY in upstream.requests[0].headers["authorization"]  # it was sent, and echoed
    assert PROVIDER_KEY not in raised.value.response.text and PROVIDER_KEY not in str(raised.value.response.headers)
    assert "[REDACTED]" in raised.value.body["error"]["message"]


@pytest.mark.parametrize(
    "method, path, status",
    [("HEAD", "/", 200), ("GET", "/", 200), ("GET", "/v1/models/claude-opus-4-8", 200),
     ("POST", "/v1/messages/batches", 404), ("GET", "/v1/files", 404), ("DELETE", "/v1/messages", 405)],
)
def test_paths_the_relay_does_not_serve_get_anthropic_errors_not_html(relay, method, path, status) -> None:
    response = httpx.request(method, relay.url + path, headers={"x-api-key": CLIENT_KEY, "content-type": "application/json"}, content=b"{}" if method == "POST" else None)
    assert response.status_code == status
    if method != "HEAD":
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body.get("type") == "error" or "id" in body or body == {"status": "ok"}


def test_a_json_client_gets_one_message_from_a_provider_that_streams_anyway(upstream, client) -> None:
    upstream.set_script([Fault("ok", events=chat_events("Streamed though not asked to."))])
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO)
    assert message.content[0].text == "Streamed though not asked to." and message.stop_reason == "end_turn"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_an_anthropic_compatible_stream_cut_short_is_an_error(relay, upstream, client, stream) -> None:
    cut = Fault("cut_chunked", events=anthropic_events()[:4])
    upstream.set_script([cut])
    if stream:
        response, events = stream_raw(relay, "claude-compatible")
        assert_ends_with_error(events)
        assert kinds(events)[:3] == ["message_start", "content_block_start", "content_block_delta"]  # whole events went on
    else:
        with pytest.raises(anthropic.APIStatusError) as raised:
            client.messages.create(model="claude-compatible", max_tokens=100, messages=HELLO)
        assert raised.value.body["error"]["type"] == "api_error"


def test_an_anthropic_compatible_stream_passes_whole(upstream, client) -> None:
    upstream.set_script([Fault("ok", events=anthropic_events("Whole and untouched."))])
    with client.messages.stream(model="claude-compatible", max_tokens=100, messages=HELLO) as answer:
        message = answer.get_final_message()
    assert message.content[0].text == "Whole and untouched." and message.usage.output_tokens == 9


def test_usage_records_say_what_happened(relay, upstream) -> None:
    before = len(usage.read(relay.data))
    upstream.set_script([Fault("cut_chunked", events=chat_events(finish=None, done=False)[:3])])
    stream_raw(relay)
    upstream.set_script([Fault("silent", wait=1.0)])
    body = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": HELLO, "stream": True}
    streamed = lambda: httpx.stream("POST", relay.url + "/v1/messages", json=body, headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"})  # noqa: E731
    with streamed() as answer:
        assert b"ping" in next(answer.iter_raw())  # then the client gives up and goes away
    events = chat_events()
    upstream.set_script([Fault("silent_mid", events=events[:2], rest=events[2:], wait=1.0)])
    with streamed() as answer:
        assert any(b"text_delta" in read for read in answer.iter_raw())  # the first tokens, then the client leaves
    cut, gone, left = relay.records(before + 3)[before:]
    assert (cut["status"], cut["error_type"]) == (200, "api_error")  # an error inside a 200 stream
    assert (gone["status"], gone["error_type"]) == (499, "client_disconnected")
    assert (left["status"], left["error_type"]) == (499, "client_disconnected")
    assert cut["ttft_ms"] > 0 and " · ttft " in usage.summary(cut)  # its first tokens came
    assert left["ttft_ms"] > 0 and " · ttft " in usage.summary(left)  # so did these, before the client left
    assert gone["ttft_ms"] is None and " · ttft " not in usage.summary(gone)  # nothing came


def test_an_error_event_from_an_anthropic_compatible_provider_is_recorded_with_its_type(relay, upstream) -> None:
    before = len(usage.read(relay.data))
    error = b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
    upstream.set_script([Fault("ok", events=anthropic_events()[:3] + [error])])
    response, events = stream_raw(relay, "claude-compatible")
    assert events[-1][1]["error"]["type"] == "overloaded_error"
    record = relay.records(before + 1)[before]
    assert (record["status"], record["error_type"]) == (200, "overloaded_error")
