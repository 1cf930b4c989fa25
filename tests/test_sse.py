"""The SSE decoder against the spec's awkward cases, fed whole and one byte at a time."""

from __future__ import annotations

import pytest

from llmrelay.sse import Decoder, Event, encode


def decode(body: bytes, step: int | None = None) -> list[Event]:
    decoder = Decoder()
    pieces = [body] if step is None else [body[i : i + step] for i in range(0, len(body), step)]
    return [e for piece in pieces for e in decoder.feed(piece)] + decoder.flush()


CASES = {
    "lf": (b"data: a\n\ndata: b\n\n", [Event(None, b"a"), Event(None, b"b")]),
    "crlf": (b"data: a\r\n\r\ndata: b\r\n\r\n", [Event(None, b"a"), Event(None, b"b")]),
    "cr": (b"data: a\r\rdata: b\r\r", [Event(None, b"a"), Event(None, b"b")]),
    "comments": (b": OPENROUTER PROCESSING\n\ndata: a\n\n:ping\n\n", [Event(None, b"a")]),
    "named": (b"event: error\ndata: {\"x\":1}\n\n", [Event("error", b'{"x":1}')]),
    "multi-line data": (b"data: a\ndata: b\n\n", [Event(None, b"a\nb")]),
    "no space": (b"data:a\n\n", [Event(None, b"a")]),
    "id and retry ignored": (b"id: 7\nretry: 10\ndata: a\n\n", [Event(None, b"a")]),
    "unterminated last event": (b"data: a\n\ndata: b", [Event(None, b"a"), Event(None, b"b")]),
    "utf-8": ("data: héllo 世界 🎉\n\n".encode(), [Event(None, "héllo 世界 🎉".encode())]),
}


@pytest.mark.parametrize("step", [None, 1, 2, 3], ids=["whole", "1", "2", "3"])
@pytest.mark.parametrize("name", CASES)
def test_decoder(name: str, step: int | None) -> None:
    body, expected = CASES[name]
    assert decode(body, step) == expected


def test_a_character_split_across_reads_comes_out_whole() -> None:
    body = "data: 世界🎉\n\n".encode()
    for cut in range(1, len(body)):
        decoder = Decoder()
        events = decoder.feed(body[:cut]) + decoder.feed(body[cut:])
        assert events == [Event(None, "世界🎉".encode())]


def test_encode_matches_the_anthropic_layout() -> None:
    assert encode("ping", b'{"type":"ping"}') == b'event: ping\ndata: {"type":"ping"}\n\n'


LONG = b"x" * 1000


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("field", [b"data: ", b"data:"], ids=["space", "no-space"])
@pytest.mark.parametrize("step", [7, 64, 999, 1001])
def test_a_long_line_read_in_pieces_decodes_as_whole(ending: bytes, field: bytes, step: int) -> None:
    # Reads without a line end take the decoder's long-line path; every way such a line can
    # end (and what follows it in the same read) must give what the whole body gives.
    body = b"event: big\n" + field + LONG + ending + b"data: y" + ending + ending + b"data: z" + ending + ending
    expected = [Event("big", LONG + b"\ny"), Event(None, b"z")]
    assert decode(body) == expected
    assert decode(body, step) == expected
