"""Server-sent events: an incremental decoder and the encoder.

The decoder follows the WHATWG event-stream rules and never assumes that a network read ends
on a line or a character: it buffers the incomplete last line, accepts CR, LF and CRLF (a CR
at the end of one read may be the first half of a CRLF in the next), skips `:` comment lines
(OpenRouter's keep-alives) and decodes UTF-8 only once a line is complete, so a character
split across reads is never turned into U+FFFD.
"""

from __future__ import annotations

from typing import NamedTuple


class Event(NamedTuple):
    event: str | None  # the `event:` field, None when absent
    data: str  # the `data:` lines joined with "\n"


class Decoder:
    """Turns chunks of bytes into complete events. `feed` as bytes arrive, `flush` at the end."""

    __slots__ = ("_rest", "_event", "_data")

    def __init__(self) -> None:
        self._rest = b""
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[Event]:
        buf = self._rest + chunk if self._rest else chunk
        held = b""
        if b"\r" in buf:
            if buf.endswith(b"\r"):  # maybe half of a CRLF: decide when more arrives
                buf, held = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        self._rest = lines.pop() + held
        events: list[Event] = []
        for line in lines:
            self._line(line, events)
        return events

    def flush(self) -> list[Event]:
        """End of stream: a last line or event without its blank line still counts."""
        events: list[Event] = []
        rest, self._rest = self._rest.rstrip(b"\r"), b""
        if rest:
            self._line(rest, events)
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[Event]) -> None:
        if not line:
            if self._data or self._event is not None:
                data = b"\n".join(self._data).decode("utf-8", "replace")
                events.append(Event(self._event, data))
                self._event, self._data = None, []
            return
        if line[0] == 0x3A:  # ":" comment
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        # `id` and `retry` mean nothing to a one-shot model response.


def encode(event: str, data: bytes) -> bytes:
    """One event in the layout the Anthropic API uses: `event:` line, `data:` line, blank line."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
