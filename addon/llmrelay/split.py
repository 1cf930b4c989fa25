"""A huge JSON string value read in pieces, as it arrives.

A provider may send a whole answer in one event: a 20 MB text delta on one SSE `data:` line.
Read whole, that line would hold the event loop for as long as it takes to join, decode,
translate and encode it, and every other request on the relay would wait. So when a `data:`
line grows past `LONG` bytes while inside a string value that its reader allows to be split
(a text or arguments delta, whose pieces mean the same as the whole), the line is handed on
as several events: each is the line's JSON up to that string, one piece of the string, and
the brackets that close what is open; the last is the line's own end with the last piece.

Rules:
- a piece never ends inside an escape (`\\n`, `\\u00e9`), between the two halves of a
  surrogate pair, or inside a UTF-8 character, so every event is valid JSON of its own;
- the fields before the string repeat in every piece (a tool call's id and name, which the
  readers take once); the fields after it come with the last piece only;
- a line that ends inside the string, or a stream cut there, is handed on as it is
  (invalid JSON), so its reader reports it as it would any broken event;
- one string per line is split: a second long string on the same line is read whole.
"""

from __future__ import annotations

import re
from typing import Callable

import orjson

from .errors import uncut

LONG = 1 << 18  # a line this long, still inside a string, is split from here on
PIECE = 1 << 16  # a piece is handed on once this much of the string has arrived

Path = tuple[str | int, ...]  # where the string is: keys and list positions
# Whether the string at `path` in an event named `event` may be split; `prefix` is the
# line's JSON up to the string, for readers that look at the fields before it.
Splits = Callable[[str | None, Path, bytes], bool]

# One JSON token: a whole string, punctuation, a bare scalar, or the quote that opens a
# string with no end yet. Possessive quantifiers: an unterminated 1 MB string fails in one pass.
_TOKEN = re.compile(
    rb'[ \t]*+(?:("[^"\\\r\n]*+(?:\\[^\r\n][^"\\\r\n]*+)*+")|([][{}:,])|([^ \t\r\n"\[\]{}:,]++)|("))'
)
_HIGH = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}")  # the first half of a surrogate pair


class Piece:
    """A line being split: its JSON up to the string, and the string's bytes not yet handed on."""

    __slots__ = ("prefix", "closers", "raw", "size", "escaped")

    def __init__(self, prefix: bytes, closers: bytes, raw: bytes) -> None:
        self.prefix = prefix  # up to and with the string's opening quote
        self.closers = closers  # the brackets that close what is open before the string
        self.raw = [raw] if raw else []
        self.size = len(raw)
        self.escaped = _run(raw, len(raw) - 1) % 2 == 1

    def more(self, chunk: bytes) -> tuple[bool, int]:
        """Takes a read: (whether the string ended in it, where its body ends in `chunk`).
        Up to that point the read is string body; from it on, the rest of the line."""
        start = 0
        if self.escaped:  # the last read ended on the backslash of an escape
            if chunk[:1] in (b"\r", b"\n"):
                return True, 0
            start = 1
        # Searched with `find` (memchr): a regular expression reads a 20 MB string at a
        # fraction of the speed.
        quote = chunk.find(b'"', start)
        while quote >= 0 and _run(chunk, quote - 1, start) % 2 == 1:  # an escaped quote
            quote = chunk.find(b'"', quote + 1)
        end = len(chunk) if quote < 0 else quote
        for stop in (b"\n", b"\r"):  # the line ended inside the string
            at = chunk.find(stop, start, end)
            if at >= 0:
                end = quote = at
        if quote >= 0:
            return True, end
        self.escaped = _run(chunk, len(chunk) - 1, start) % 2 == 1
        self.raw.append(chunk)
        self.size += len(chunk)
        return False, len(chunk)

    def take(self, keep: tuple[bytes, ...] = ()) -> bytes | None:
        """The next event's JSON, when enough of the string has arrived to cut a piece; no
        piece ends inside one of the secrets in `keep`."""
        if self.size < PIECE:
            return None
        raw = b"".join(self.raw)
        cut = safe_cut(raw, uncut(raw, len(raw), keep))
        if cut == 0:
            self.raw = [raw]
            return None
        self.raw = [raw[cut:]] if cut < len(raw) else []
        self.size = len(raw) - cut
        return b"".join([self.prefix, raw[:cut], b'"', self.closers])

    def rest(self) -> bytes:
        """The line so far, from its JSON's start: for the last event, read as usual."""
        return b"".join([self.prefix, *self.raw])


def open_string(value: bytes, pos: int = 0) -> tuple[Path, int, bytes] | None:
    """Where `value[pos:]` (a JSON text cut short) ends inside a string value: its path, the
    position of its opening quote and the brackets that would close the JSON there; None
    when it does not end inside one (or is not JSON)."""
    stack: list[list] = []  # [is an object, its current key or position]
    want_key = False
    end = len(value)
    while pos < end:
        m = _TOKEN.match(value, pos)
        if m is None:
            return None
        pos = m.end()
        text, punct = m.group(1), m.group(2)
        if text is not None:
            if want_key:
                try:
                    stack[-1][1] = orjson.loads(text)
                except orjson.JSONDecodeError:
                    return None
                want_key = False
        elif punct is not None:
            if punct == b"{":
                stack.append([True, None])
                want_key = True
            elif punct == b"[":
                stack.append([False, 0])
            elif punct in (b"}", b"]"):
                if not stack:
                    return None
                stack.pop()
                want_key = False
            elif punct == b",":
                if stack and not stack[-1][0]:
                    stack[-1][1] += 1
                elif stack:
                    want_key = True
        elif m.group(4) is not None:  # a string that runs to the end
            if want_key or not stack:
                return None
            closers = b"".join(b"}" if is_object else b"]" for is_object, _ in reversed(stack))
            return tuple(key for _, key in stack), m.start(4), closers
    return None


def safe_cut(raw: bytes, end: int | None = None) -> int:
    """How much of `raw[:end]`, a string body that goes on, can be a piece: not inside an
    escape, not between the halves of a surrogate pair, not inside a UTF-8 character."""
    cut = len(raw) if end is None else end
    last = raw.rfind(b"\\", max(0, cut - 12), cut)
    if last >= 0 and _run(raw, last) % 2 == 1:  # it opens an escape: cut before it
        cut = last
        if cut >= 6 and _HIGH.fullmatch(raw, cut - 6, cut) and _run(raw, cut - 6) % 2 == 1:
            cut -= 6
    lead = cut - 1
    while lead >= 0 and cut - lead < 4 and raw[lead] & 0xC0 == 0x80:
        lead -= 1
    if lead >= 0 and raw[lead] >= 0xC0:
        size = 2 if raw[lead] < 0xE0 else 3 if raw[lead] < 0xF0 else 4
        if cut - lead < size:
            cut = lead
    return cut


def _run(raw: bytes, at: int, first: int = 0) -> int:
    """How many backslashes end at `at` (none before `first` count)."""
    start = at + 1
    while start > first and raw[start - 1] == 0x5C:
        start -= 1
    return at + 1 - start
