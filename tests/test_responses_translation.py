"""Real Responses API answers (tests/fixtures/openai-responses) through the Responses →
Anthropic translator.

Each capture is translated whole and split at every awkward boundary, every split must give
the same events, the events must follow the Anthropic stream grammar, and what the official
SDK rebuilds from them must be what the provider said (read independently by
tests/responses_oracle.py). Each stream is also read the way the Codex backend sends it:
`response.completed` with `output: []`, and with done items only (no deltas).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from anthropic_view import check_events, sdk_message
from llmrelay.config import ResponsesProvider, Route
from llmrelay.protocols.openai_responses import SIGNED
from llmrelay.providers.responses import ResponsesExchange
from llmrelay.translate.responses_response import ResponsesTranslator
from responses_oracle import read_responses, response_events
from test_chat_translation import same_ids, splits

FIXTURES = sorted(Path(__file__).parent.joinpath("fixtures", "openai-responses").glob("*.json"))
STREAMS = [f for f in FIXTURES if json.loads(f.read_text())["stream"]]


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def translate(pieces: list[bytes]) -> list[dict[str, Any]]:
    translator = ResponsesTranslator(model="claude-test")
    events = [event for piece in pieces for event in translator.feed(piece)]
    return events + translator.finish()


def sse(events: list[dict]) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


def codex_style(body: str) -> str:
    """The stream as the Codex backend sends it: the final response carries `output: []`."""
    events = response_events(body)
    for event in events:
        if event["type"] in ("response.completed", "response.incomplete"):
            event["response"]["output"] = []
    return sse(events)


def done_items_only(body: str) -> str:
    """No deltas at all: items only when done, as some backends send them."""
    kept = ("response.created", "response.output_item.done", "response.completed", "response.incomplete", "response.failed")
    events = [e for e in response_events(body) if e["type"] in kept]
    for event in events:
        if event["type"] == "response.completed":
            event["response"]["output"] = []
    return sse(events)


VARIANTS = {"as-captured": lambda body: body, "codex-empty-output": codex_style, "done-items-only": done_items_only}


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.stem)
def test_every_split_gives_the_same_events(path: Path) -> None:
    body = load(path)["body"].encode()
    whole = translate([body])
    check_events(whole)
    expected = same_ids(whole)
    for name, pieces in splits(body).items():
        assert same_ids(translate(pieces)) == expected, f"split by {name}"


def exchange(stream: bool) -> ResponsesExchange:
    return ResponsesExchange(
        client_model="claude-test",
        route=Route(provider="p", model="m"),
        provider=ResponsesProvider(type="openai-responses", base_url="http://p.test/v1"),
        client_stream=stream,
        tool_names={},
        input_estimate=5,
        secrets=(),
    )


CASES = [(path, variant) for path in FIXTURES for variant in (VARIANTS if path in STREAMS else ["as-captured"])]


@pytest.mark.parametrize("stream", [True, False], ids=["stream-client", "json-client"])
@pytest.mark.parametrize("path, variant", CASES, ids=[f"{p.stem}-{v}" for p, v in CASES])
def test_the_sdk_reads_what_the_provider_said(path: Path, variant: str, stream: bool) -> None:
    fixture = load(path)
    said = read_responses(fixture)
    body = VARIANTS[variant](fixture["body"])
    reply = exchange(stream).reply(200, {"content-type": fixture["content_type"]}, body.encode())
    message = sdk_message(reply.status, reply.body, reply.headers["content-type"], stream=stream)

    assert "".join(b.text for b in message.content if b.type == "text") == said.text + said.refusal
    assert "".join(b.thinking for b in message.content if b.type == "thinking") == said.reasoning
    calls = [b for b in message.content if b.type == "tool_use"]
    assert [(c.id, c.name, c.input) for c in calls] == [(i, n, p if p is not None else {}) for i, n, _, p in said.tool_calls]
    assert message.stop_reason == said.finish_reason
    usage = said.usage
    assert message.usage.output_tokens == usage["output_tokens"]
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) == usage["input_tokens"]
    assert (message.usage.cache_read_input_tokens or 0) == usage["cached_tokens"]
    assert message.model == "claude-test" and re.fullmatch(r"msg_[A-Za-z0-9]{24}", message.id)


def reasoning_done(body: str) -> list[dict]:
    return [e for e in response_events(body) if e["type"] == "response.output_item.done" and e["item"]["type"] == "reasoning"
            and e["item"].get("encrypted_content")]


ENCRYPTED = [p for p in STREAMS if reasoning_done(load(p)["body"])]


def test_the_captures_hold_encrypted_reasoning() -> None:
    assert len(ENCRYPTED) >= 3, [p.stem for p in ENCRYPTED]


@pytest.mark.parametrize("path", ENCRYPTED, ids=lambda p: p.stem)
def test_encrypted_reasoning_rides_in_the_thinking_signature(path: Path) -> None:
    fixture = load(path)
    finals = reasoning_done(fixture["body"])
    reply = exchange(False).reply(200, {"content-type": fixture["content_type"]}, fixture["body"].encode())
    message = sdk_message(reply.status, reply.body, reply.headers["content-type"], stream=False)
    signatures = [b.signature for b in message.content if b.type == "thinking"]
    origin = exchange(False).provider.origin
    assert signatures == [f"{SIGNED}{origin}." + item["item"]["encrypted_content"] for item in finals]


def events_of(*events: dict) -> bytes:
    return sse(list(events)).encode()


CREATED = {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "output": []}}


def completed(output: list | None = None, status: str = "completed", **extra: Any) -> dict:
    return {"type": f"response.{status}", "response": {"id": "resp_1", "status": status, "output": output or [],
                                                        "usage": {"input_tokens": 10, "output_tokens": 3}, **extra}}


def item_done(index: int, item: dict) -> dict:
    return {"type": "response.output_item.done", "output_index": index, "item": item}


def test_a_stream_cut_before_completed_is_an_error_not_an_answer() -> None:
    body = events_of(CREATED, {"type": "response.output_text.delta", "output_index": 0, "delta": "Half an ans"})
    events = translate([body])
    check_events(events)
    assert events[-1]["type"] == "error" and events[-1]["error"]["type"] == "api_error"
    assert not any(e["type"] == "message_stop" for e in events)


def test_tool_arguments_that_are_not_json_when_done_never_make_a_tool_use() -> None:
    call = {"type": "function_call", "call_id": "call_1", "name": "Bash", "arguments": '{"command": "rm -rf /tmp/build'}
    events = translate([events_of(CREATED, item_done(0, call), completed())])
    check_events(events)
    assert events[-1]["type"] == "error" and "not complete JSON" in events[-1]["error"]["message"]
    assert not any(e.get("delta", {}).get("stop_reason") == "tool_use" for e in events)


def test_an_empty_message_with_a_reasoning_summary_answers_with_the_summary() -> None:
    reasoning = {"type": "reasoning", "summary": [{"type": "summary_text", "text": "The answer is 4."}], "encrypted_content": "gAAA"}
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": ""}]}
    translator = ResponsesTranslator(model="claude-test", summary_as_text=True)  # as for the Codex backend
    events = translator.feed(events_of(CREATED, item_done(0, reasoning), item_done(1, message), completed())) + translator.finish()
    check_events(events)
    texts = [e["delta"]["text"] for e in events if e.get("delta", {}).get("type") == "text_delta"]
    assert texts == ["The answer is 4."]
    plain = translate([events_of(CREATED, item_done(0, reasoning), item_done(1, message), completed())])  # the public API
    assert not [e for e in plain if e.get("delta", {}).get("type") == "text_delta"]


@pytest.mark.parametrize("reason, stop", [("max_output_tokens", "max_tokens"), ("content_filter", "refusal")])
def test_incomplete_answers_say_why(reason: str, stop: str) -> None:
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Partial"}]}
    events = translate([events_of(CREATED, item_done(0, message), completed(status="incomplete", incomplete_details={"reason": reason}))])
    check_events(events)
    assert [e["delta"]["stop_reason"] for e in events if e["type"] == "message_delta"] == [stop]


FAILURES = {
    "rate-limit": ({"code": "rate_limit_exceeded", "message": "Rate limit reached. Please try again in 11.054s."}, "rate_limit_error"),
    "context": ({"code": "context_length_exceeded", "message": "Your input exceeds the context window."}, "invalid_request_error"),
    "overloaded": ({"code": "server_is_overloaded", "message": "Slow down."}, "overloaded_error"),
    "usage-limit": ({"type": "usage_limit_reached", "message": "The usage limit has been reached", "resets_in_seconds": 600}, "rate_limit_error"),
}


@pytest.mark.parametrize("name", FAILURES)
def test_failed_responses_and_error_events_are_anthropic_errors(name: str) -> None:
    error, error_type = FAILURES[name]
    for failure in ({"type": "response.failed", "response": {"id": "resp_1", "status": "failed", "error": error}}, {"type": "error", "error": error}):
        events = translate([events_of(CREATED, failure)])
        check_events(events)
        assert events[-1]["type"] == "error" and events[-1]["error"]["type"] == error_type
        assert error["message"] in events[-1]["error"]["message"]
    if name == "usage-limit":
        assert "resets at " in events[-1]["error"]["message"] and "in 10 min" in events[-1]["error"]["message"]


def test_a_failed_response_still_says_what_it_cost() -> None:
    translator = ResponsesTranslator(model="claude-sonnet-4-5")
    failed = {"type": "response.failed", "response": {"id": "resp_1", "status": "failed", "error": FAILURES["overloaded"][0],
              "usage": {"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 200}, "output_tokens": 30,
                        "output_tokens_details": {"reasoning_tokens": 20}}}}
    events = translator.feed(events_of(CREATED, failed)) + translator.finish()
    assert events[-1]["type"] == "error"
    assert translator.usage == {"input_tokens": 1000, "cache_read_input_tokens": 200, "output_tokens": 30}
    assert translator.reasoning_tokens == 20


def test_a_usage_limit_before_the_stream_is_a_429_with_retry_after() -> None:
    body = json.dumps({"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached", "plan_type": "plus",
                                 "resets_at": None, "resets_in_seconds": 13872}}).encode()
    reply = exchange(True).reply(429, {"content-type": "application/json"}, body)
    error = json.loads(reply.body)["error"]
    assert reply.status == 429 and error["type"] == "rate_limit_error" and reply.headers["retry-after"] == "13872"
    assert "(plus plan); it resets at " in error["message"] and "in 3 h 51 min" in error["message"]


def added(index: int, item: dict) -> dict:
    return {"type": "response.output_item.added", "output_index": index, "item": item}


def args_delta(index: int, delta: str) -> dict:
    return {"type": "response.function_call_arguments.delta", "output_index": index, "delta": delta}


def fc(call_id: str, name: str, arguments: str = "") -> dict:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def tool_inputs(events: list[dict]) -> list[tuple[str, dict]]:
    check_events(events)
    reply_events = [e for e in events if e["type"] != "ping"]
    from anthropic_view import sdk_message as read
    from llmrelay.exchange import encode

    message = read(200, encode(reply_events), "text/event-stream", stream=True)
    return [(b.id, b.input) for b in message.content if b.type == "tool_use"]


def test_calls_done_after_the_next_one_began_keep_their_arguments() -> None:
    body = events_of(CREATED, added(0, fc("call_a", "Read")), added(1, fc("call_b", "Grep")),
                     item_done(0, fc("call_a", "Read", '{"path": "a.py"}')), item_done(1, fc("call_b", "Grep", '{"q": "x"}')), completed())
    assert tool_inputs(translate([body])) == [("call_a", {"path": "a.py"}), ("call_b", {"q": "x"})]


def test_parallel_calls_whose_deltas_interleave_come_out_whole_and_in_order() -> None:
    body = events_of(CREATED, added(0, fc("call_a", "Read")), added(1, fc("call_b", "Grep")),
                     args_delta(0, '{"path": '), args_delta(1, '{"q": '), args_delta(0, '"a.py"}'), args_delta(1, '"x"}'), completed())
    assert tool_inputs(translate([body])) == [("call_a", {"path": "a.py"}), ("call_b", {"q": "x"})]


def test_reasoning_done_after_the_message_still_carries_its_signature() -> None:
    # OpenRouter finishes the reasoning item (index 0) after the message (index 1).
    reasoning = {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "think"}], "encrypted_content": "enc-late"}
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Answer."}]}
    body = events_of(CREATED, added(0, {"type": "reasoning", "summary": []}),
                     {"type": "response.reasoning_text.delta", "output_index": 0, "delta": "think"},
                     added(1, {"type": "message", "role": "assistant", "content": []}),
                     {"type": "response.output_text.delta", "output_index": 1, "delta": "Answer."},
                     item_done(1, message), item_done(0, reasoning), completed())
    events = translate([body])
    check_events(events)
    assert [e["delta"]["signature"] for e in events if e.get("delta", {}).get("type") == "signature_delta"] == [f"{SIGNED}.enc-late"]
    assert "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta") == "Answer."


def test_items_without_an_output_index_each_get_their_own_block() -> None:
    body = events_of(CREATED, {"type": "response.output_item.added", "item": fc("call_a", "Read")},
                     {"type": "response.output_item.done", "item": fc("call_a", "Read", '{"path": "a"}')},
                     {"type": "response.output_item.added", "item": fc("call_b", "Read")},
                     {"type": "response.output_item.done", "item": fc("call_b", "Read", '{"path": "b"}')}, completed())
    assert tool_inputs(translate([body])) == [("call_a", {"path": "a"}), ("call_b", {"path": "b"})]


def test_an_answer_cut_by_max_output_tokens_inside_tool_arguments_says_so_and_is_not_retryable() -> None:
    body = events_of(CREATED, added(0, fc("call_a", "Write")), args_delta(0, '{"content": "half of'),
                     completed(status="incomplete", incomplete_details={"reason": "max_output_tokens"}))
    events = translate([body])
    check_events(events)
    assert events[-1]["type"] == "error" and events[-1]["error"]["type"] == "invalid_request_error"
    assert "max_output_tokens" in events[-1]["error"]["message"]


@pytest.mark.parametrize("body", [b'{"error": {"message": "Something broke", "type": "server_error"}}', b"{}"], ids=["error", "empty"])
def test_a_json_answer_that_is_not_a_response_is_an_error_not_an_empty_answer(body: bytes) -> None:
    translator = ResponsesTranslator(model="claude-test")
    events = translator.whole(body)
    assert events[-1]["type"] == "error"
