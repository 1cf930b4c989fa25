"""Real Anthropic answers (tests/fixtures/anthropic/responses) through an Anthropic-compatible
route: passed through when the client asked for what came back, converted stream ⇄ message
when not, and read back through the official SDK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from anthropic_oracle import read_message
from anthropic_view import check_events, sdk_message
from llmrelay import sse
from llmrelay.config import AnthropicProvider, Route
from llmrelay.providers.anthropic import AnthropicExchange

FIXTURES = sorted(Path(__file__).parent.joinpath("fixtures", "anthropic", "responses").glob("*.json"))
ANSWERS = [f for f in FIXTURES if json.loads(f.read_text())["status"] == 200]
STREAMS = [f for f in ANSWERS if json.loads(f.read_text())["stream"]]
MESSAGES = [f for f in ANSWERS if f not in STREAMS]
ERRORS = [f for f in FIXTURES if f not in ANSWERS]


def exchange(client_stream: bool) -> AnthropicExchange:
    provider = AnthropicProvider(type="anthropic", base_url="https://api.provider.test")
    return AnthropicExchange("claude-x", Route(provider="p", model="m"), provider, client_stream, secrets=(), secret_headers=())


def without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(v) for v in value]
    return value


def as_sdk_sees(message: Any) -> dict[str, Any]:
    data = without_none(message.model_dump() if hasattr(message, "model_dump") else message)
    return {key: data.get(key) for key in ("content", "stop_reason", "stop_sequence", "usage", "role", "model")}


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.stem)
def test_a_stream_becomes_one_message_for_a_json_client(path: Path) -> None:
    fixture = json.loads(path.read_text())
    reply = exchange(client_stream=False).reply(200, {"content-type": fixture["content_type"]}, fixture["body"].encode())
    assert reply.headers["content-type"] == "application/json"
    expected = as_sdk_sees(read_message(fixture))
    assert expected["content"] and expected["stop_reason"] and expected["usage"]
    assert as_sdk_sees(sdk_message(200, reply.body, "application/json", stream=False)) == expected


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.stem)
def test_a_stream_for_a_streaming_client_passes_untouched(path: Path) -> None:
    fixture = json.loads(path.read_text())
    ex = exchange(client_stream=True)
    assert ex.streams(200, {"content-type": "text/event-stream; charset=utf-8"}) and ex.translator() is None
    reply = ex.reply(200, {"content-type": fixture["content_type"]}, fixture["body"].encode())
    assert reply.body == fixture["body"].encode()


@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: p.stem)
def test_a_message_becomes_a_faithful_stream(path: Path) -> None:
    fixture = json.loads(path.read_text())
    reply = exchange(client_stream=True).reply(200, {"content-type": "application/json"}, fixture["body"].encode())
    assert reply.headers["content-type"].startswith("text/event-stream")
    decoder = sse.Decoder()
    check_events([json.loads(e.data) for e in decoder.feed(reply.body) + decoder.flush()])
    streamed = sdk_message(200, reply.body, "text/event-stream", stream=True)
    expected = as_sdk_sees(read_message(fixture))
    assert expected["content"] and expected["stop_reason"] and expected["usage"]
    assert as_sdk_sees(streamed) == expected


@pytest.mark.parametrize("path", ERRORS, ids=lambda p: p.stem)
def test_errors_keep_their_status_and_message(path: Path) -> None:
    fixture = json.loads(path.read_text())
    reply = exchange(client_stream=False).reply(fixture["status"], {"content-type": "application/json", "retry-after": "3"}, fixture["body"].encode())
    body = json.loads(reply.body)
    upstream = json.loads(fixture["body"])["error"]
    assert reply.status == fixture["status"]
    assert body["error"] == {"type": upstream["type"], "message": "api.provider.test: " + upstream["message"]}
    assert reply.headers["retry-after"] == "3"


def test_count_tokens_falls_back_to_the_local_estimate_when_the_provider_has_none() -> None:
    body = json.dumps({"model": "claude-x", "messages": [{"role": "user", "content": "Hello there, how are you?"}]}).encode()
    ex = exchange(False)
    ex.count_tokens_body = body
    reply = ex.reply(404, {"content-type": "application/json"}, b'{"type":"error","error":{"type":"not_found_error","message":"no"}}')
    assert reply.status == 200 and json.loads(reply.body)["input_tokens"] > 5
    assert json.loads(ex.reply(200, {}, b'{"input_tokens": 42}').body) == {"input_tokens": 42}


def test_thinking_anthropic_cannot_verify_is_removed_before_it_goes_there() -> None:
    # After a switch from a Responses or Chat provider, Claude Code sends back thinking with
    # the relay's signature, or with none; Anthropic would refuse the whole request.
    from llmrelay.config import AnthropicProvider, Route
    from llmrelay.translate.anthropic_compat import prepare

    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 100, "thinking": {"type": "enabled", "budget_tokens": 2000},
                       "messages": [
                           {"role": "user", "content": "q"},
                           {"role": "assistant", "content": [{"type": "thinking", "thinking": "kept", "signature": "EqQBCkYIBRgCKkD"},
                                                             {"type": "text", "text": "A."}]},
                           {"role": "user", "content": "q2"},
                           {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "llmrelay.reasoning.abc.enc"},
                                                             {"type": "thinking", "thinking": "u", "signature": ""},
                                                             {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]},
                           {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
                       ]}).encode()
    out, _ = prepare(body, Route(provider="a", model="claude-sonnet-4-5"), AnthropicProvider(type="anthropic", base_url="https://api.anthropic.com"), {})
    sent = json.loads(out)
    assert [b["type"] for b in sent["messages"][1]["content"]] == ["thinking", "text"]
    assert [b["type"] for b in sent["messages"][3]["content"]] == ["tool_use"]
    assert "thinking" not in sent  # the last assistant turn lost its thinking


BENCH_REQUEST = Path(__file__).parent / "fixtures" / "anthropic" / "requests" / "claude-code-bench.json"


@pytest.mark.parametrize("settings, route_cap, fields", [
    ({}, None, {}),
    ({"drop_fields": ["context_management", "output_config", "metadata"]}, None, {"context_management": {"edits": []}}),
    ({"max_output_tokens": 4096}, None, {"max_tokens": 32000}),
    ({}, 100, {"max_tokens": 64000, "stream": True}),
    ({"supports_streaming": False}, None, {"stream": True}),
    ({"supports_streaming": False}, None, {"stream": False}),
    ({}, None, {"max_tokens": 10**9, "\u00e9t\u00e9": "\u201ckey\u201d \\ \"quoted\""}),
], ids=["as-is", "dropped-fields", "provider-cap", "route-cap", "stream-built-here", "json-asked", "odd-keys"])
def test_a_request_needing_only_top_level_changes_is_rewritten_as_the_full_rules_would(settings, route_cap, fields) -> None:
    # Such a request is not parsed whole: its values go on as the client wrote them. What
    # comes out must mean exactly what the full rules (which parse and rewrite) give.
    from llmrelay.translate.anthropic_compat import prepare

    body = json.dumps({**json.loads(BENCH_REQUEST.read_text()), **fields}, indent=1).encode()
    provider = AnthropicProvider(type="anthropic", base_url="https://api.provider.test", **settings)
    route = Route(provider="p", model="glm-4.6", max_output_tokens=route_cap)
    fast, headers = prepare(body, route, provider, {"anthropic-beta": "interleaved-thinking-2025-05-14"})
    full, full_headers = prepare(body, route, provider, {"anthropic-beta": "interleaved-thinking-2025-05-14"}, json.loads(body))
    assert json.loads(fast) == json.loads(full) and headers == full_headers
    # Recording or replaying, the body is the full rules' own bytes: old recordings still match.
    assert prepare(body, route, provider, {}, canonical=True)[0] == full
    assert list(json.loads(fast)) == list(json.loads(full))  # and in the same order
    assert json.loads(fast)["model"] == "glm-4.6"
    # The tools went on byte for byte, the client's spacing included.
    tools = json.dumps(json.loads(body)["tools"], indent=1).replace("\n", "\n ").encode()
    assert tools in fast


@pytest.mark.parametrize("body, error", [
    (b'{"model": "m", "max_tokens": 0, "messages": []}', "max_tokens: must be at least 1"),
    (b'{"model": "m", "messages": [}', "invalid JSON"),
    (b'["model"]', "the request body must be a JSON object"),
])
def test_a_request_that_cannot_go_is_refused_clearly(body, error) -> None:
    from llmrelay.errors import RelayError
    from llmrelay.translate.anthropic_compat import prepare

    with pytest.raises(RelayError, match=error.replace("(", r"\(")):
        prepare(body, Route(provider="p", model="m"), AnthropicProvider(type="anthropic", base_url="https://api.provider.test"), {})


@pytest.mark.parametrize("body, foreign", [
    (b'{"messages": [{"content": [{"type": "thinking", "thinking": "t", "signature": "EqQBCkYIBRgCKkD"}]}]}', False),
    (b'{"messages": [{"content": [{"type": "thinking", "thinking": "t", "signature" :  ""}]}]}', True),
    (b'{"messages": [{"content": [{"type": "thinking", "thinking": "t", "signature": "llmrelay.reasoning.abc.e"}]}]}', True),
    (b'{"messages": [{"content": [{"type": "text", "text": "the word \\"signature\\" alone"}]}]}', False),
])
def test_thinking_anthropic_cannot_verify_is_found_without_parsing(body, foreign) -> None:
    from llmrelay.translate.anthropic_compat import has_foreign_thinking

    assert has_foreign_thinking(body) is foreign


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.stem)
@pytest.mark.parametrize("window", [1000, 4096, 64 * 1024])
def test_the_usage_of_a_passed_through_stream_is_read_from_its_two_ends(path: Path, window: int) -> None:
    # The stream went to the client untouched; its usage is in its first and last events,
    # so only its ends are decoded, whichever reads it came in. (A window holds an event
    # or more: message_start is under 1 KB.)
    from llmrelay.exchange import edge_events, sse_events, usage_in

    body = json.loads(path.read_text())["body"].encode()
    expected = usage_in(sse_events(body))
    assert expected
    for size in (1, 7, 100, len(body)):
        raw = [body[i : i + size] for i in range(0, len(body), size)]
        assert usage_in(edge_events(raw, window)) == expected, size


def test_a_long_passed_through_stream_is_not_decoded_whole_for_its_usage() -> None:
    from llmrelay.exchange import edge_events, usage_in

    fixture = json.loads((Path(__file__).parent / "fixtures" / "anthropic" / "responses" / "parallel-tool-use-stream.json").read_text())
    events = fixture["body"].encode().split(b"\n\n")
    middle = b"event: content_block_delta\ndata: {this is never read\n\n" * 50_000  # 2.7 MB
    body = b"\n\n".join(events[:3]) + b"\n\n" + middle + b"\n\n".join(events[3:])
    raw = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    usage = usage_in(edge_events(raw))
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage == usage_in(edge_events([fixture["body"].encode()]))
