"""Stream shapes the captures do not cover, written out by hand in the providers' format."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest

from anthropic_view import check_events, sdk_message
from llmrelay.exchange import encode, events_reply
from llmrelay.translate.chat_response import ChatTranslator


def sse(*chunks: Any, done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


def delta(**fields: Any) -> dict[str, Any]:
    finish = fields.pop("finish", None)
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": finish}]}


def call(index: int | None, id: str | None = None, name: str | None = None, args: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"function": {}}
    if index is not None:
        out["index"] = index
    if id is not None:
        out["id"] = id
    if name is not None:
        out["function"]["name"] = name
    if args is not None:
        out["function"]["arguments"] = args
    return out


def run(body: bytes, **kwargs: Any) -> list[dict[str, Any]]:
    translator = ChatTranslator(model="claude-test", **kwargs)
    whole = translator.feed(body) + translator.finish()
    check_events(whole)
    # Byte by byte gives the same, ids aside.
    translator = ChatTranslator(model="claude-test", **kwargs)
    pieces = [e for i in range(len(body)) for e in translator.feed(body[i : i + 1])] + translator.finish()
    assert [e["type"] for e in pieces] == [e["type"] for e in whole]
    return whole


def final(events: list[dict[str, Any]]):
    return sdk_message(200, encode(events), "text/event-stream", stream=True)


def test_interleaved_parallel_calls_come_out_as_whole_consecutive_blocks() -> None:
    body = sse(
        delta(tool_calls=[call(0, "call_a", "Read", ""), call(1, "call_b", "Glob", "")]),
        delta(tool_calls=[call(0, args='{"file_')]),
        delta(tool_calls=[call(1, args='{"pattern":')]),
        delta(tool_calls=[call(0, args='path":"a.py"}')]),
        delta(tool_calls=[call(1, args='"*.md"}')], finish="tool_calls"),
    )
    message = final(run(body))
    assert [(b.id, b.name, b.input) for b in message.content] == [
        ("call_a", "Read", {"file_path": "a.py"}),
        ("call_b", "Glob", {"pattern": "*.md"}),
    ]
    assert message.stop_reason == "tool_use"


def test_sequential_calls_stream_live() -> None:
    body = sse(
        delta(tool_calls=[call(0, "call_a", "Read", '{"file_path":')]),
        delta(tool_calls=[call(0, args='"a.py"}')]),
        delta(tool_calls=[call(1, "call_b", "Read", '{"file_path":"b.py"}')], finish="tool_calls"),
    )
    translator = ChatTranslator(model="m")
    first = translator.feed(body.split(b"\n\n")[0] + b"\n\n")
    assert [e["type"] for e in first] == ["message_start", "content_block_start", "content_block_delta"]
    message = final(run(body))
    assert [b.input for b in message.content] == [{"file_path": "a.py"}, {"file_path": "b.py"}]


def test_first_call_with_index_1_and_no_ids() -> None:
    body = sse(delta(tool_calls=[call(1, "", "Bash", '{"command":"ls"}')], finish="stop"))
    message = final(run(body))
    (block,) = message.content
    assert block.type == "tool_use" and block.name == "Bash" and block.input == {"command": "ls"}
    assert block.id.startswith("toolu_")
    assert message.stop_reason == "tool_use"  # a call means tool_use even after "stop"


def test_kimi_style_ids_are_replaced_and_shortened_names_mapped_back() -> None:
    long_name = "mcp__a_server_with_a_long_name__" + "x" * 60
    short = "mcp__a_server_with_a_long_name__xxxxxxxxxxxxxxxxxxxxxxx_abcdef12"
    body = sse(delta(tool_calls=[call(0, "functions.add:0", short, "{}")], finish="tool_calls"))
    message = final(run(body, tool_names={short: long_name}))
    assert message.content[0].name == long_name
    assert message.content[0].id.startswith("toolu_")


def test_content_and_finish_reason_in_one_chunk_then_usage() -> None:
    body = sse(
        delta(content="Hi", finish="length"),
        {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 10}}},
    )
    message = final(run(body))
    assert message.content[0].text == "Hi"
    assert message.stop_reason == "max_tokens"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (2, 10, 1)


def test_content_filter_is_not_end_turn() -> None:
    message = final(run(sse(delta(content="I can"), delta(finish="content_filter"))))
    assert message.stop_reason == "refusal"


def test_a_chunk_without_choices_is_harmless() -> None:
    message = final(run(sse({"id": "x", "object": "chat.completion.chunk"}, delta(content="ok", finish="stop"))))
    assert message.content[0].text == "ok"


def test_text_thinking_text_makes_three_blocks() -> None:
    body = sse(delta(content="a"), delta(reasoning_content="b"), delta(content="c", finish="stop"))
    events = run(body)
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["text", "thinking", "text"]


@pytest.mark.parametrize(
    "body, error_type",
    [
        (sse(delta(content="partial"), {"error": {"code": 502, "message": "Provider returned error"}}, done=False), "api_error"),
        (sse(delta(content="x"), {"error": {"message": "Rate limit", "code": 429}}, done=False), "rate_limit_error"),
        (b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\nevent: error\ndata: {"error":{"message":"Service Unavailable","type":"internal_server_error"}}\n\n', "api_error"),
        (b"data: not json at all\n\n", "api_error"),
    ],
    ids=["openrouter-error-chunk", "rate-limit-chunk", "groq-event-error", "garbage"],
)
def test_errors_inside_a_200_stream_become_an_error_event(body: bytes, error_type: str) -> None:
    events = run(body)
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["type"] == error_type


@pytest.mark.parametrize(
    "body",
    [
        sse(delta(content="Hello"), done=False),
        sse(delta(content="Hello"), delta(tool_calls=[call(0, "call_1", "Bash", '{"command": "rm -rf /tmp/build')]), done=False),
        # The provider says it is done, but the arguments stop halfway.
        sse(delta(tool_calls=[call(0, "call_1", "Bash", '{"command": "rm -rf /tmp/build')], finish="tool_calls")),
        sse(delta(tool_calls=[call(0, "call_1", "Bash", '{"command": "rm -rf /tmp/build')], finish="length")),
    ],
    ids=["text-cut", "cut-inside-tool-arguments", "tool-calls-with-incomplete-arguments", "length-inside-tool-arguments"],
)
def test_a_cut_answer_ends_with_an_error_never_as_a_success(body: bytes) -> None:
    events = run(body)
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "error" and "message_stop" not in kinds and "message_delta" not in kinds
    assert events[-1]["error"]["type"] == "api_error"  # retryable
    # Whatever of the tool call went out, it is never a finished block.
    tool_blocks = {e["index"] for e in events if e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use"}
    assert not tool_blocks & {e["index"] for e in events if e["type"] == "content_block_stop"}
    with pytest.raises(anthropic.APIStatusError, match="complete"):
        final(events)
    json_reply = events_reply(events, stream=False)
    assert json_reply.status == 500 and json.loads(json_reply.body)["error"]["type"] == "api_error"


@pytest.mark.parametrize(
    "body",
    [sse(delta(content="Hello"), delta(content="!", finish="stop"), done=False), sse(delta(content="Hello!"), done=True)],
    ids=["finish-reason-without-done", "done-without-finish-reason"],
)
def test_a_finish_reason_or_done_ends_an_answer_normally(body: bytes) -> None:
    events = run(body)
    assert [e["type"] for e in events][-2:] == ["message_delta", "message_stop"]
    assert final(events).content[0].text == "Hello!"


def test_an_empty_stream_is_an_error_not_an_empty_answer() -> None:
    events = run(b"")
    assert [e["type"] for e in events] == ["error"]


def test_arguments_after_a_closed_call_are_an_error_not_silently_dropped() -> None:
    body = sse(
        delta(tool_calls=[call(0, "call_1", "Bash", '{"command":"ls"')]),
        delta(content="thinking out loud"),  # closes the call while its JSON is incomplete
        delta(tool_calls=[call(0, args="}")]),
    )
    events = run(body)
    assert events[-1]["type"] == "error"
    assert "Bash" in events[-1]["error"]["message"]


def test_think_tags_split_across_reads() -> None:
    body = sse(delta(content="<thi"), delta(content="nk>plan</th"), delta(content="ink>\n"), delta(content="\nanswer", finish="stop"))
    message = final(run(body))
    assert [(b.type, getattr(b, "thinking", None) or getattr(b, "text", None)) for b in message.content] == [
        ("thinking", "plan"),
        ("text", "answer"),
    ]


def test_text_that_only_looks_like_a_tag_start_is_kept() -> None:
    message = final(run(sse(delta(content="<th"), delta(content="is is text", finish="stop"))))
    assert message.content[0].text == "<this is text"
