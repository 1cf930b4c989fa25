"""How an Anthropic client sees what the relay produced.

`check_events` is a strict reading of the Anthropic stream grammar (the order the API itself
keeps, and Claude Code relies on); `sdk_message` feeds a body to the official `anthropic` SDK
through an in-memory transport and returns what the SDK's own parser and stream accumulator
rebuild, so the tests assert on the client's view rather than on our own reading of it.
"""

from __future__ import annotations

from typing import Any

import anthropic

from sdk_http import anthropic_httpx as httpx


def check_events(events: list[dict[str, Any]]) -> None:
    """message_start; blocks with consecutive indices, each start → deltas → stop, one open at
    a time, deltas matching the block type; message_delta; message_stop. Or an error event,
    after which nothing follows."""
    assert events, "no events"
    kinds = [e["type"] for e in events]
    if "error" in kinds:
        assert kinds.index("error") == len(kinds) - 1, f"events after an error: {kinds}"
        events = events[:-1]
        if not events:
            return
    assert events[0]["type"] == "message_start", kinds
    open_index, open_type, next_index = None, None, 0
    allowed = {
        "text": {"text_delta", "citations_delta"},
        "thinking": {"thinking_delta", "signature_delta"},
        "tool_use": {"input_json_delta"},
        "server_tool_use": {"input_json_delta"},
    }
    ended = False
    for event in events[1:]:
        kind = event["type"]
        assert not ended or kind == "message_stop", f"{kind} after message_delta"
        if kind == "content_block_start":
            assert open_index is None, f"block {event['index']} started while {open_index} is open"
            assert event["index"] == next_index, f"index {event['index']}, expected {next_index}"
            open_index, open_type = event["index"], event["content_block"]["type"]
            next_index += 1
        elif kind == "content_block_delta":
            assert event["index"] == open_index, f"delta for {event['index']} while {open_index} is open"
            assert event["delta"]["type"] in allowed.get(open_type, set()), f"{event['delta']['type']} in a {open_type} block"
        elif kind == "content_block_stop":
            assert event["index"] == open_index, f"stop for {event['index']} while {open_index} is open"
            open_index = None
        elif kind == "message_delta":
            assert open_index is None, "message_delta with a block open"
            assert event["delta"]["stop_reason"], "no stop_reason"
            ended = True
        elif kind == "message_stop":
            assert ended, "message_stop without message_delta"
        elif kind != "ping":
            raise AssertionError(f"unexpected event {kind}")
    if "error" not in kinds:
        assert kinds[-1] == "message_stop", kinds[-3:]


def client_for(status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> anthropic.Anthropic:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": content_type, **(headers or {})})

    return anthropic.Anthropic(
        api_key="sk-ant-test",
        base_url="http://relay.test",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(answer)),
    )


REQUEST = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": "hi"}]}


def sdk_message(status: int, body: bytes, content_type: str, *, stream: bool) -> anthropic.types.Message:
    client = client_for(status, body, content_type)
    if stream:
        with client.messages.stream(**REQUEST) as events:
            return events.get_final_message()
    return client.messages.create(**REQUEST)
