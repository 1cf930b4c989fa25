"""Tool calls written as text, read back as they stream: every split of every answer gives
the same calls and text."""

from __future__ import annotations

import json

import pytest

from anthropic_view import check_events
from llmrelay.translate.tool_text import ToolEvents, ToolText, instructions

ANSWERS = {
    "one call": ('<tool_call name="Bash">{"command": "ls"}</tool_call>', [("call", "Bash", {"command": "ls"})]),
    "text around": ('Let me look.\n<tool_call name="Read">{"path": "a.py"}</tool_call>\nDone.',
                    [("text", "Let me look.\n"), ("call", "Read", {"path": "a.py"}), ("text", "\nDone.")]),
    "several calls": ('<tool_call name="Read">{"path": "a"}</tool_call>\n\n<tool_call name=\'Read\'>{"path": "b"}</tool_call>',
                      [("call", "Read", {"path": "a"}), ("call", "Read", {"path": "b"})]),
    "quotes and markup inside": ('<tool_call name="Write">{"content": "<tool_call name=\\"x\\">{}</tool_call> and \\"quotes\\""}</tool_call>',
                                 [("call", "Write", {"content": '<tool_call name="x">{}</tool_call> and "quotes"'})]),
    "code inside": ('<tool_call name="Write">{"content": "if a < b:\\n    print(\\"</tool_call>\\")\\n"}</tool_call>',
                    [("call", "Write", {"content": 'if a < b:\n    print("</tool_call>")\n'})]),
    "no call": ("Just text with a < sign and <b>markup</b>.", [("text", "Just text with a < sign and <b>markup</b>.")]),
    "a tag without a name is text": ("<tool_call>{}</tool_call>", [("text", "<tool_call>{}</tool_call>")]),
}


def read(pieces: list[str]) -> list[tuple]:
    parser = ToolText()
    out = [piece for chunk in pieces for piece in parser.feed(chunk)] + parser.flush()
    merged: list[tuple] = []
    for piece in out:  # text may come in several pieces: join neighbours
        if piece[0] == "text" and merged and merged[-1][0] == "text":
            merged[-1] = ("text", merged[-1][1] + piece[1])
        elif piece[0] == "call":
            merged.append(("call", piece[1], json.loads(piece[2])))
        else:
            merged.append(piece)
    return merged


@pytest.mark.parametrize("name", ANSWERS)
def test_every_split_reads_the_same(name: str) -> None:
    text, expected = ANSWERS[name]
    assert read([text]) == expected
    assert read(list(text)) == expected, "one character at a time"
    for cut in range(1, len(text)):
        assert read([text[:cut], text[cut:]]) == expected, f"cut at {cut}"


def test_an_answer_that_ends_inside_a_call_is_unfinished() -> None:
    parser = ToolText()
    parser.feed('<tool_call name="Bash">{"command": "rm -rf /tmp/bu')
    assert parser.flush()[0][0] == "unfinished"


def hub(text_pieces: list[str]) -> list[dict]:
    events = [{"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
                                                   "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 0}}},
              {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}]
    events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}} for t in text_pieces]
    events += [{"type": "content_block_stop", "index": 0},
               {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 5}},
               {"type": "message_stop"}]
    return events


def test_calls_become_tool_use_blocks_and_the_answer_stops_for_them() -> None:
    text = 'Checking.<tool_call name="Read">{"path": "a.py"}</tool_call>'
    events = ToolEvents({"Read"}).feed(hub([text[i : i + 5] for i in range(0, len(text), 5)]))
    check_events(events)
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [b["type"] for b in starts] == ["text", "tool_use"] and starts[1]["name"] == "Read"
    args = "".join(e["delta"]["partial_json"] for e in events if e.get("delta", {}).get("type") == "input_json_delta")
    assert json.loads(args) == {"path": "a.py"}
    assert [e["delta"]["stop_reason"] for e in events if e["type"] == "message_delta"] == ["tool_use"]


@pytest.mark.parametrize("text, says", [('<tool_call name="Nope">{}</tool_call>', "not offered"),
                                         ('<tool_call name="Read">["a"]</tool_call>', "not a JSON object"),
                                         ('<tool_call name="Read">{"path": "a', "ended inside a call")])
def test_a_call_that_cannot_be_made_is_an_error_not_a_tool_use(text: str, says: str) -> None:
    events = ToolEvents({"Read"}).feed(hub([text]))
    check_events(events)
    assert events[-1]["type"] == "error" and says in events[-1]["error"]["message"]
    assert not any(e.get("content_block", {}).get("type") == "tool_use" for e in events)


def test_the_instructions_name_every_tool_and_the_choice() -> None:
    text = instructions([{"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}}], {"type": "any"})
    assert '<tool_call name="TOOL_NAME">' in text and "## Read" in text and "must call at least one tool" in text
