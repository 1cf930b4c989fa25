"""A huge JSON string read in pieces as it arrives (`split`), through the SSE decoder and the
translators, fed whole and split at every byte. The thresholds are lowered so that a line
of a few KB is "huge": every boundary can then be tried."""

from __future__ import annotations

import json

import orjson
import pytest

from llmrelay import split
from llmrelay.errors import Scrubber
from llmrelay.protocols.anthropic import Accumulator
from llmrelay.providers.anthropic import AnthropicEvents
from llmrelay.sse import Decoder
from llmrelay.translate.chat_response import ChatTranslator, _splits as chat_splits
from llmrelay.translate.responses_response import ResponsesTranslator

# Every escape JSON has, a surrogate pair as escapes, and 2-, 3- and 4-byte UTF-8.
AWKWARD = 'plain "quoted" back\\slash \\" line\nbreak\ttab \u00e9 \u4e16 \U0001F389 \x01 end. '
ESCAPED = json.dumps(AWKWARD * 40, ensure_ascii=True)[1:-1].encode()  # \u00e9, \ud83c\udf89 …
RAW = json.dumps(AWKWARD * 40, ensure_ascii=False)[1:-1].encode()  # UTF-8 as it is


@pytest.fixture(autouse=True)
def small_thresholds(monkeypatch):
    monkeypatch.setattr(split, "LONG", 512)
    monkeypatch.setattr(split, "PIECE", 64)


def reads(body: bytes, step: int | None) -> list[bytes]:
    return [body] if step is None else [body[i : i + step] for i in range(0, len(body), step)]


def chat_line(delta: dict, finish: str | None = None) -> bytes:
    chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def chat_stream(delta: dict) -> bytes:
    return chat_line({"role": "assistant", "content": ""}) + chat_line(delta) + chat_line({}, "stop") + b"data: [DONE]\n\n"


def translate(translator, body: bytes, step: int | None) -> list[dict]:
    events = [e for piece in reads(body, step) for e in translator.feed(piece)]
    return events + translator.finish()


def deltas(events: list[dict], field: str = "text") -> list[str]:
    return [e["delta"][field] for e in events if e["type"] == "content_block_delta" and field in e["delta"]]


# --- where a piece may end ----------------------------------------------------------


@pytest.mark.parametrize("raw", [ESCAPED, RAW], ids=["escaped", "utf-8"])
def test_a_piece_ends_only_where_both_halves_are_valid_json(raw) -> None:
    whole = orjson.loads(b'"' + raw + b'"')
    for end in range(len(raw) + 1):
        cut = split.safe_cut(raw[:end])
        assert end - 13 <= cut <= end
        first = orjson.loads(b'"' + raw[:cut] + b'"')
        assert first + orjson.loads(b'"' + raw[cut:] + b'"') == whole


def test_where_a_line_ends_inside_a_string() -> None:
    line = b'{"id":"x","n":[1,{"a":"b"}],"choices":[{"index":0},{"delta":{"tool_calls":[{"function":{"arguments":"{\\"cmd'
    path, quote, closers = split.open_string(line)
    assert path == ("choices", 1, "delta", "tool_calls", 0, "function", "arguments")
    assert closers == b"}}]}}]}" and line[quote:quote + 2] == b'"{'
    assert orjson.loads(line[: quote + 1] + b'"' + closers)["choices"][1]["delta"]["tool_calls"][0]["function"] == {"arguments": ""}


@pytest.mark.parametrize("line", [
    b'{"content":"done"}',  # no string open at the end
    b'{"content":"done", "n": 12',  # a number
    b'{"a very long key',  # a key, not a value
    b'"a string and nothing around it',
])
def test_no_split_where_the_line_does_not_end_inside_a_value(line) -> None:
    assert split.open_string(line) is None


# --- through the translators --------------------------------------------------------


@pytest.mark.parametrize("step", [None, 1, 2, 3, 5, 7, 64, 100, 999])
@pytest.mark.parametrize("raw", [ESCAPED, RAW], ids=["escaped", "utf-8"])
def test_a_huge_chat_delta_arrives_in_pieces_with_the_same_text(raw, step) -> None:
    text = orjson.loads(b'"' + raw + b'"')
    body = chat_stream({"content": "\x00"}).replace(b'"\\u0000"', b'"' + raw + b'"')
    events = translate(ChatTranslator(model="m"), body, step)
    assert "".join(deltas(events)) == text
    # Fed whole, the line is one read: nothing to hand on early.
    assert len(deltas(events)) == 1 if step is None else len(deltas(events)) >= 2
    assert [e["type"] for e in events][-2:] == ["message_delta", "message_stop"]
    assert events[-2]["delta"]["stop_reason"] == "end_turn"


@pytest.mark.parametrize("cut", range(0, 2000, 37))
def test_a_huge_chat_delta_split_in_two_anywhere(cut) -> None:
    body = chat_stream({"content": "\x00"}).replace(b'"\\u0000"', b'"' + ESCAPED + b'"')
    translator = ChatTranslator(model="m")
    events = translator.feed(body[:cut]) + translator.feed(body[cut:]) + translator.finish()
    assert "".join(deltas(events)) == orjson.loads(b'"' + ESCAPED + b'"')


@pytest.mark.parametrize("step", [None, 1, 3, 64])
def test_huge_tool_arguments_arrive_in_pieces_and_make_one_call(step) -> None:
    arguments = orjson.dumps({"command": AWKWARD * 30}).decode()
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "Bash", "arguments": arguments}}
    body = (chat_line({"role": "assistant", "content": None}) + chat_line({"tool_calls": [call]})
            + chat_line({}, "tool_calls") + b"data: [DONE]\n\n")
    events = translate(ChatTranslator(model="m"), body, step)
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [s["content_block"]["name"] for s in starts] == ["Bash"] and starts[0]["content_block"]["id"] == "call_1"
    assert "".join(deltas(events, "partial_json")) == arguments
    message = Accumulator()
    for event in events:
        message.add(event)
    assert message.message["content"][0]["input"] == {"command": AWKWARD * 30}
    assert message.message["stop_reason"] == "tool_use"


def test_a_stream_cut_inside_a_huge_delta_ends_with_an_error() -> None:
    body = chat_stream({"content": "\x00"}).replace(b'"\\u0000"', b'"' + ESCAPED + b'"')
    cut = body.index(b"[DONE]") - 900  # inside the long string
    events = translate(ChatTranslator(model="m"), body[:cut], 50)
    assert events[-1]["type"] == "error" and "message_stop" not in [e["type"] for e in events]


def test_a_line_ending_inside_a_huge_string_is_an_error() -> None:
    body = chat_stream({"content": "\x00"}).replace(b'"\\u0000"', b'"' + ESCAPED[:1500] + b"\n\n")
    events = translate(ChatTranslator(model="m"), body, 50)
    assert events[-1]["type"] == "error" and "message_stop" not in [e["type"] for e in events]


def test_a_chunk_that_finishes_before_its_text_is_read_whole() -> None:
    line = b"data: " + orjson.dumps({"choices": [{"index": 0, "finish_reason": "stop", "delta": {"content": AWKWARD * 40}}]}) + b"\n\n"
    events = translate(ChatTranslator(model="m"), line + b"data: [DONE]\n\n", 50)
    assert deltas(events) == [AWKWARD * 40]
    assert not chat_splits(None, ("choices", 0, "delta", "content"), line[6:60])


def test_only_delta_strings_are_split() -> None:
    # A long string that is not a delta (an error message, a whole message) comes whole.
    decoder = Decoder(chat_splits)
    line = b"data: " + orjson.dumps({"error": {"message": AWKWARD * 40}}) + b"\n\n"
    events = [e for piece in reads(line, 50) for e in decoder.feed(piece)]
    assert [orjson.loads(e.data) for e in events] == [{"error": {"message": AWKWARD * 40}}]


@pytest.mark.parametrize("step", [None, 1, 7, 64])
def test_a_huge_responses_delta_arrives_in_pieces(step) -> None:
    text = AWKWARD * 40

    def event(kind: str, **data) -> bytes:
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"

    item = {"id": "m1", "type": "message", "role": "assistant", "content": []}
    done = {**item, "status": "completed", "content": [{"type": "output_text", "text": text, "annotations": []}]}
    body = (event("response.created", response={"id": "r", "status": "in_progress", "output": []})
            + event("response.output_item.added", output_index=0, item=item)
            + event("response.output_text.delta", item_id="m1", output_index=0, content_index=0, delta=text)
            + event("response.output_item.done", output_index=0, item=done)
            + event("response.completed", response={"id": "r", "status": "completed", "output": [],
                                                    "usage": {"input_tokens": 5, "output_tokens": 7}}))
    events = translate(ResponsesTranslator(model="m"), body, step)
    assert "".join(deltas(events)) == text
    assert len(deltas(events)) == 1 if step is None else len(deltas(events)) >= 2
    assert events[-1]["type"] == "message_stop"


@pytest.mark.parametrize("step", [None, 1, 7, 64])
def test_a_huge_anthropic_delta_arrives_in_pieces(step) -> None:
    text = AWKWARD * 40

    def event(kind: str, **data) -> bytes:
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"

    body = (event("message_start", message={"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
                                            "stop_reason": None, "usage": {"input_tokens": 1, "output_tokens": 1}})
            + event("content_block_start", index=0, content_block={"type": "text", "text": ""})
            + event("content_block_delta", index=0, delta={"type": "text_delta", "text": text})
            + event("content_block_stop", index=0)
            + event("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 9})
            + event("message_stop"))
    events = translate(AnthropicEvents(), body, step)
    assert "".join(deltas(events)) == text and events[-1]["type"] == "message_stop"
    assert len(deltas(events)) == 1 if step is None else len(deltas(events)) >= 2


# --- secrets and pieces -------------------------------------------------------------

SECRET = b"fake-provider-key-for-tests-0123456789"


@pytest.mark.parametrize("step", [1, 5, 64, 100])
def test_no_piece_ends_inside_a_secret(step) -> None:
    # Each piece is scrubbed on its own on the way to the client: a key cut in two would pass.
    text = (AWKWARD * 3 + SECRET.decode()) * 12
    translator = ChatTranslator(model="m")
    translator.decoder.keep = (SECRET,)
    events = translate(translator, chat_stream({"content": text}), step)
    pieces = deltas(events)
    assert len(pieces) > 3 and "".join(pieces) == text
    secret = SECRET.decode()  # (the text around it has none of its characters at its ends)
    for piece in pieces:
        assert not any(piece.endswith(secret[:k]) or piece.startswith(secret[-k:]) for k in range(1, len(secret)))


def test_a_secret_split_across_reads_is_scrubbed_in_the_flows_copy() -> None:
    body = chat_stream({"content": "x" * 300 + SECRET.decode() + "y" * 300})
    start = body.index(SECRET)
    for cut in range(start - 2, start + len(SECRET) + 2):
        scrubber = Scrubber((SECRET,))
        out = [scrubber.feed(body[:cut]), scrubber.feed(body[cut:]), scrubber.flush()]
        assert b"".join(out) == body.replace(SECRET, b"[REDACTED]")
        assert all(SECRET[:8] not in part for part in out)


def test_whole_events_are_never_held_back() -> None:
    scrubber = Scrubber((SECRET, b"\x00never-sent-key"))
    event = chat_line({"content": "fake"})  # ends with a blank line
    assert scrubber.feed(event) == event and scrubber.flush() == b""
    # What might begin a key waits for the next read, and only that.
    assert scrubber.feed(b"data: fak") == b"data: " and scrubber.feed(b"e\n\n") == b"fake\n\n"
