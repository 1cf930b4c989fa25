"""Server-sent events: an incremental decoder and the encoder.

The decoder follows the WHATWG event-stream rules and never assumes that a network read ends
on a line or a character: it buffers the incomplete last line, accepts CR, LF and CRLF (a CR
at the end of one read may be the first half of a CRLF in the next) and skips `:` comment
lines (OpenRouter's keep-alives). Data stays bytes until a complete event is handed to a JSON
parser, so a character split across reads is never turned into U+FFFD. A reader that says
which string values may be split (`splits`) gets a huge `data:` line in pieces as it
arrives (`split`).
"""

from __future__ import annotations

from typing import NamedTuple

from . import split


class Event(NamedTuple):
    event: str | None  # the `event:` field, None when absent
    data: bytes  # the `data:` lines joined with "\n", still UTF-8: JSON parsers take bytes


class Decoder:
    """Turns chunks of bytes into complete events. `feed` as bytes arrive, `flush` at the end."""

    __slots__ = ("_rest", "_long", "_size", "_event", "_data", "_splits", "_piece", "_whole", "keep")

    def __init__(self, splits: split.Splits | None = None) -> None:
        self._rest = b""
        self._long: list[bytes] = []  # reads of a line still without its end, joined once it ends
        self._size = 0  # of the long line so far
        self._event: str | None = None
        self._data: list[bytes] = []
        self._splits = splits
        self._piece: split.Piece | None = None  # the long line being handed on in pieces
        self._whole = False  # this line is not to be split (tried once)
        # Secrets no piece may end inside: what the client gets is scrubbed piece by piece.
        self.keep: tuple[bytes, ...] = ()

    def feed(self, chunk: bytes) -> list[Event]:
        if self._piece is not None:
            return self._more(chunk)
        if self._rest and b"\n" not in chunk and b"\r" not in chunk:
            # A long line arriving read by read (a 20 MB `data:` line): joining it to what came
            # before on every read would cost the square of its length.
            if not self._long:
                self._size = len(self._rest)
            self._long.append(chunk)
            self._size += len(chunk)
            if self._size > split.LONG and self._splits is not None and not self._whole:
                return self._begin()
            return []
        if self._long:
            end = chunk.find(b"\n")
            rest = self._rest
            if end >= 0 and rest.startswith(b"data:") and b"\r" not in rest and b"\r" not in chunk[:end - 1 if end else 0]:
                # The long `data:` line ends in this read: its value in one copy, not three
                # (joined, split into lines, the field name cut off), which for 20 MB is the
                # difference between holding the event loop ~20 ms or ~60 ms.
                start = 6 if rest[5:6] == b" " else 5
                tail = chunk[: end - 1] if end and chunk[end - 1] == 0x0D else chunk[:end]
                self._data.append(b"".join([rest[start:], *self._long, tail]))
                self._rest, self._long, self._whole = b"", [], False
                return self.feed(chunk[end + 1 :]) if end + 1 < len(chunk) else []
            self._rest = b"".join([self._rest, *self._long])
            self._long = []
        # The usual read: one whole event of one data line (`data: {...}` and a blank line)
        # with nothing pending; no need to split it into lines.
        # (Only `find` and `in` look for line ends here: they run at memchr speed, where
        # `count` and `split` go byte by byte, ~60 µs for a 78 KB `response.created`.)
        if not (self._rest or self._data or self._event is not None) and chunk.endswith(b"\n\n") and b"\r" not in chunk:
            cut = chunk.find(b"\n")
            last = len(chunk) - 2
            if cut == last and chunk.startswith(b"data: "):
                return [Event(None, chunk[6:-2])]
            # The other usual read: `event: x`, `data: {...}` and a blank line (Anthropic, the
            # Responses API), again one whole event and nothing pending.
            if chunk.startswith(b"event: ") and chunk.startswith(b"data: ", cut + 1) and chunk.find(b"\n", cut + 1) == last:
                return [Event(chunk[7:cut].decode("utf-8", "replace"), chunk[cut + 7 : -2])]
        buf = self._rest + chunk if self._rest else chunk
        held = b""
        if b"\r" in buf:
            if buf.endswith(b"\r"):  # maybe half of a CRLF: decide when more arrives
                buf, held = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[Event] = []
        if len(buf) <= _WINDOW:
            lines = buf.split(b"\n")
            rest = lines.pop()
            self._read(lines, events)
        else:
            # `split` is the quickest way through short lines but reads every byte, as
            # `count` does (~30 µs for a 78 KB `response.created` line), where `find` runs at
            # memchr speed: so runs of short lines are split at most `_WINDOW` bytes at a
            # time, and a long line is found with `find` and its value cut out in one copy.
            pos = 0
            while (end := buf.find(b"\n", pos)) >= 0:
                if end - pos > _LONG_LINE:
                    if buf.startswith(b"data:", pos):
                        self._data.append(buf[pos + 6 if buf[pos + 5] == 0x20 else pos + 5 : end])
                    else:
                        self._read([buf[pos:end]], events)
                    pos = end + 1
                else:
                    stop = buf.rfind(b"\n", end, pos + _WINDOW)
                    self._read(buf[pos:stop].split(b"\n"), events)
                    pos = stop + 1
            rest = buf[pos:] if pos else buf
        if len(rest) < len(buf):
            self._whole = False  # a line ended: the next may be split
        self._rest = rest + held
        return events

    def _read(self, lines: list[bytes], events: list[Event]) -> None:
        """Whole lines: fields into the pending event, which a blank line completes."""
        data = self._data
        for line in lines:
            if line.startswith(b"data:"):  # the common case first, without a call
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line:
                self._field(line)
            elif data or self._event is not None:
                events.append(Event(self._event, data[0] if len(data) == 1 else b"\n".join(data)))
                self._event = None
                data = self._data = []

    def flush(self) -> list[Event]:
        """End of stream: a last line or event without its blank line still counts."""
        if self._piece is not None:  # cut inside the string: the reader sees the line as it is
            self._rest, self._piece = b"data: " + self._piece.rest(), None
        rest, self._rest = b"".join([self._rest, *self._long]).rstrip(b"\r"), b""
        self._long = []
        return self.feed(rest + b"\n\n")

    def _begin(self) -> list[Event]:
        """A long line: if it is inside a string its reader lets us split, the pieces so far."""
        self._whole = True  # one try per line
        line = b"".join([self._rest, *self._long])
        self._rest, self._long = line, []
        if self._data or not line.startswith(b"data:") or b"\r" in line:
            return []
        start = 6 if line[5:6] == b" " else 5
        found = split.open_string(line, start)
        if found is None:
            return []
        path, quote, closers = found
        prefix = line[start : quote + 1]
        if not self._splits(self._event, path, prefix):
            return []
        self._piece = split.Piece(prefix, closers, line[quote + 1 :])
        self._rest = b""
        return self._take()

    def _more(self, chunk: bytes) -> list[Event]:
        piece = self._piece
        ended, end = piece.more(chunk)
        if not ended:
            return self._take()
        # The string ended (or its line did): the last piece is the rest of the line, read
        # as any line is.
        self._piece = None
        self._rest = b"data: " + piece.rest() + chunk[:end]
        return self.feed(chunk[end:])

    def _take(self) -> list[Event]:
        data = self._piece.take(self.keep)
        return [] if data is None else [Event(self._event, data)]

    def _field(self, line: bytes) -> None:
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


_WINDOW = 1 << 14  # bytes of short lines split at a time
_LONG_LINE = 1 << 12  # a line this long is cut out on its own


def encode(event: str, data: bytes) -> bytes:
    """One event in the layout the Anthropic API uses: `event:` line, `data:` line, blank line."""
    head = _HEADS.get(event)
    if head is None:
        head = _HEADS[event] = b"event: " + event.encode() + b"\ndata: "
    return head + data + b"\n\n"


_HEADS: dict[str, bytes] = {}  # event name → its `event:` line and the start of its `data:` line
