"""The relay's loopback server: where mitmproxy fetches the answers the relay streams itself.

An addon cannot stream a response it generates, so a flow whose answer the relay streams is
sent by mitmproxy to this server, inside the same process and event loop, on 127.0.0.1 and a
port of its own. The request's path names a job registered a moment before (a random,
single-use token: nothing else on the machine can start one or read another's answer). The
job was started at once, before mitmproxy even connected here; what it wrote meanwhile waits
in its `Sink` and goes out as soon as mitmproxy asks, then the rest as it is made.

The wire between the two is HTTP/1.1 on a kept-alive connection: a head, then the body
either with a Content-Length or chunked, one chunk per write.
"""

from __future__ import annotations

import asyncio
import os
from http import HTTPStatus
from typing import Protocol

MAX_HEAD = 64 * 1024


class Job(Protocol):
    sink: Sink

    def cancel(self) -> None:
        """The answer is no longer wanted: its client went away."""


class Loopback:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def add(self, job: Job) -> str:
        """Registers a job; returns the path that fetches its answer."""
        token = "/" + os.urandom(16).hex()
        self.jobs[token] = job
        return token

    def discard(self, path: str) -> None:
        self.jobs.pop(path, None)


class Sink:
    """Where a job writes its answer: `head` once, `write` any number of times, `end` once.
    Until a connection is attached it keeps what it is given (and then it also serves as
    the whole answer of a job that is not streamed: `status`, `headers`, `body`)."""

    __slots__ = ("status", "headers", "body", "_length", "_conn", "_ended")

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []  # what was written before a connection was attached
        self._length: int | None = None
        self._conn: _Connection | None = None
        self._ended = False

    @property
    def started(self) -> bool:
        return self.status != 0

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def gone(self) -> bool:
        """The connection it wrote to closed: whatever is written now is lost."""
        return self._conn is not None and self._conn.closed

    def head(self, status: int, headers: dict[str, str], length: int | None = None) -> None:
        assert not self.started
        self.status, self.headers, self._length = status, headers, length
        if self._conn is not None:
            self._conn.write(self._head())

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._conn is None:
            self.body.append(data)
        else:
            self._conn.write(self._framed(data))

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            if self._conn is not None:
                self._finish()

    def attach(self, conn: _Connection) -> None:
        self._conn = conn
        if self.started:
            conn.write(self._head() + b"".join(self._framed(piece) for piece in self.body))
        self.body = []
        if self._ended:
            self._finish()

    async def drain(self) -> None:
        if self._conn is not None:
            await self._conn.drain()

    def _head(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {_reason(self.status)}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items() if name not in ("content-length", "transfer-encoding")]
        lines.append("transfer-encoding: chunked" if self._length is None else f"content-length: {self._length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")

    def _framed(self, data: bytes) -> bytes:
        return b"%x\r\n%b\r\n" % (len(data), data) if self._length is None else data

    def _finish(self) -> None:
        if not self.started:  # a job that ended without a word: never a success
            return self._conn.close()
        if self._length is None:
            self._conn.write(b"0\r\n\r\n")
        self._conn.job_done()


class _Connection(asyncio.Protocol):
    """One connection from mitmproxy: requests one after the other, each fetching a job's answer."""

    def __init__(self, server: Loopback) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.job: Job | None = None
        self.closed = False
        self._paused: asyncio.Future | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.job is None:
            self._next()

    def _next(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                self._refuse(431)
            return
        head, rest = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip() or 0)
        if len(rest) < length:
            return  # the (unused) body is still arriving
        self.buffer = rest[length:]
        job = self.server.jobs.pop(parts[1], None) if len(parts) == 3 else None
        if job is None:
            return self._refuse(404)
        self.job = job
        job.sink.attach(self)

    def job_done(self) -> None:
        self.job = None
        if self.buffer and not self.closed:
            asyncio.get_running_loop().call_soon(self._next)

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    async def drain(self) -> None:
        if self._paused is not None:
            await self._paused

    def pause_writing(self) -> None:
        if self._paused is None:
            self._paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._paused is not None:
            self._paused.set_result(None)
            self._paused = None

    def _refuse(self, status: int) -> None:
        self.write(f"HTTP/1.1 {status} {_reason(status)}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode())
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self._paused is not None:
            self._paused.set_result(None)
            self._paused = None
        if self.job is not None and not self.job.sink.ended:
            self.job.cancel()  # mitmproxy let go: its client went away


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
