"""The relay's own leg to the provider: one HTTP/1.1 request out, its answer read as it arrives.

mitmproxy's native forwarding cannot time out a silent provider, say in the client's protocol
that a provider is unreachable or died mid-answer, or try a request again; so the relay sends
routed requests itself. This is a small HTTP/1.1 client on asyncio with kept-alive
connections shared by all requests, and llhttp (through `httptools`, the C parser uvicorn
uses) reading the answers: the relay runs inside mitmproxy's event loop, where every
microsecond is shared with every other request, and a general-purpose client (aiohttp, httpx)
costs several times more per request here (`scripts/bench`).

Rules:
- a request is written whole, with its Content-Length; the answer's body is framed as its
  head says: chunked, Content-Length, or until the connection closes;
- a chunked or Content-Length body that ends early is an error (`cut`), never a short answer;
- a connection goes back to the pool only after a complete answer that allows keep-alive; one
  that was kept alive and closes before any byte of the answer came back is tried once more on
  a new connection (the provider closed it while idle, before reading the request);
- while the reader falls behind, reading from the provider pauses (memory stays bounded).

Failures come out as `UpstreamError`, one kind each, so that the caller can answer in the
client's protocol and decide what may be retried:

| kind      | what happened                                           | the client gets            |
|-----------|---------------------------------------------------------|----------------------------|
| connect   | connection refused, unreachable host or port            | 529 overloaded_error       |
| dns       | the host name does not resolve                          | 529 overloaded_error       |
| tls       | TLS handshake or certificate check failed               | 500 api_error              |
| timeout   | no connection, first byte or next byte within its limit | 504 timeout_error          |
| cut       | the connection closed in the middle of the answer       | 500 api_error              |
| protocol  | the answer is not valid HTTP                            | 500 api_error              |

(`status` is the upstream-like status; `errors.anthropic_status` makes it the client's.)
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from .config import Timeouts

# Hop-by-hop headers, and those written here.
_NOT_FORWARDED = frozenset(
    "host content-length transfer-encoding connection keep-alive proxy-connection te trailer upgrade".split()
)
_PAUSE_AT = 1 << 20  # bytes read ahead of the reader before reading pauses
_MAX_IDLE = 16  # kept-alive connections per host


class UpstreamError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def status(self) -> int:
        """The HTTP status the client's error carries."""
        return {"connect": 529, "dns": 529, "timeout": 504}.get(self.kind, 502)


@dataclass
class Call:
    """One request to send: where, what, and how long to wait."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    timeouts: Timeouts
    name: str  # the provider's name, for error messages
    # Certificates checked even when mitmproxy's `ssl_insecure` is set (for a local model's
    # self-signed certificate): calls that carry a sign-in's tokens.
    verified: bool = False


class Upstream:
    """Kept-alive connections to the providers, shared by every request (mitmproxy's own
    upstream connections live and die with each client connection)."""

    def __init__(self, *, verify: bool = True, ca_file: str | None = None) -> None:
        self._checked = ssl.create_default_context(cafile=ca_file or _certifi())
        self._ssl = self._checked
        if not verify:
            self._ssl = ssl.create_default_context()
            self._ssl.check_hostname = False
            self._ssl.verify_mode = ssl.CERT_NONE
        for context in {self._checked, self._ssl}:
            context.set_alpn_protocols(["http/1.1"])
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}

    async def open(self, call: Call, sent: Callable[[], None] | None = None, begun: Response | None = None) -> Response:
        """Sends the request (unless `send_kept` already did: `begun`); returns the answer
        once its head has arrived. `sent` is called as the request goes out (the provider's
        time to answer starts then)."""
        parts = urlsplit(call.url)
        key = _key(call, parts)
        for attempt in (1, 2):
            if begun is not None:
                response, reused, begun = begun, True, None
            else:
                conn = self._kept(key)
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(key, call)
                response = conn.send(_request_bytes(call, parts), call.method == "HEAD")
                if sent is not None:
                    sent()
            try:
                await response.head_received()
            except UpstreamError as e:
                if reused and e.kind == "cut" and not response.any_byte:
                    continue  # closed while idle before it read the request: once more, anew
                raise
            except BaseException:  # cancelled (a timeout, a client gone): the answer is not wanted
                response.abandon()
                raise
            return response
        raise AssertionError("unreachable")

    def send_kept(self, call: Call, sent: Callable[[], None] | None = None) -> Response | None:
        """The request written at once on an idle kept-alive connection, if there is one
        (else None, and `open` connects). It goes out before the caller's task first runs,
        which mitmproxy's own work on the flow would otherwise put a few hundred µs later;
        give the result to `open` as `begun`, or `abandon()` it."""
        parts = urlsplit(call.url)
        conn = self._kept(_key(call, parts))
        if conn is None:
            return None
        response = conn.send(_request_bytes(call, parts), call.method == "HEAD")
        if sent is not None:
            sent()
        return response

    def _kept(self, key: tuple[str, str, int, bool]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable:
                return conn
        return None

    async def _connect(self, key: tuple[str, str, int, bool], call: Call) -> _Connection:
        scheme, host, port, verified = key
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(call.timeouts.connect):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, key), host, port,
                    ssl=(self._checked if verified else self._ssl) if scheme == "https" else None,
                    server_hostname=host if scheme == "https" else None,
                )
        except TimeoutError:
            raise UpstreamError("timeout", f"{call.name}: no connection to the provider within {call.timeouts.connect:g} s") from None
        except socket.gaierror:
            raise UpstreamError("dns", f"{call.name}: cannot resolve the provider's host name {host!r}") from None
        except ssl.SSLError as e:
            raise UpstreamError("tls", f"{call.name}: TLS with the provider failed: {e.reason or e}") from None
        except OSError as e:
            raise UpstreamError("connect", f"{call.name}: cannot connect to the provider ({e.strerror or e})") from None
        conn.name = call.name
        return conn

    def _release(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.key, deque())
        if len(idle) < _MAX_IDLE:
            idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


class Response:
    """One answer as it arrives: `status` and `raw_headers` once the head is in, then the
    body through `readany()` (b"" at its end). Use as an async context manager, so that a
    connection whose answer was not read to its end is closed rather than reused."""

    def __init__(self, conn: _Connection, head_only: bool) -> None:
        self._conn = conn
        self.head_only = head_only
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.any_byte = False
        self.complete = False
        self._framed = True  # chunked or Content-Length: an early close is a cut
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._error: UpstreamError | None = None
        self._head = asyncio.get_running_loop().create_future()
        self._waiter: asyncio.Future | None = None

    async def head_received(self) -> None:
        await self._head

    async def readany(self) -> bytes:
        """The body bytes that have arrived (waiting for some), or b"" once it is complete."""
        while not self._chunks:
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks.clear()
        self._buffered = 0
        self._conn.resume()
        return data

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.complete:
            self._conn.close()

    def abandon(self) -> None:
        """Nobody will read this answer: its connection is closed, never reused."""
        self._conn.close()

    # --- from the connection ---

    def _on_head(self, status: int, headers: list[tuple[bytes, bytes]], framed: bool) -> None:
        self.status, self.raw_headers, self._framed = status, headers, framed
        if not self._head.done():
            self._head.set_result(None)

    def _on_body(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _PAUSE_AT:
            self._conn.pause()
        self._wake()

    def _on_complete(self) -> None:
        self.complete = True
        self._wake()

    def _on_close(self, error: UpstreamError | None) -> None:
        if self.complete:
            return
        if error is None and self._head.done() and not self._framed:
            self._on_complete()  # a body without framing ends with the connection
            return
        self._error = error or UpstreamError("cut", f"{self._conn.name}: the connection closed before the answer was complete")
        if not self._head.done():
            self._head.set_exception(self._error)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One kept-alive connection to a provider, one request at a time."""

    def __init__(self, pool: Upstream, key: tuple[str, str, int]) -> None:
        self.pool = pool
        self.key = key
        self.name = key[1]
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.response: Response | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._keep_alive = False
        self._paused = False

    @property
    def usable(self) -> bool:
        return not self.closed and self.response is None

    def send(self, request: bytes, head_only: bool) -> Response:
        self.response = Response(self, head_only)
        self._parser = httptools.HttpResponseParser(self)
        self._headers = []
        self.transport.write(request)
        return self.response

    def pause(self) -> None:
        if not self._paused and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    # --- asyncio ---

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # nothing was asked: a provider talking out of turn
            return self.close()
        response.any_byte = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail("protocol", "the provider switched protocols")
        except httptools.HttpParserError as e:
            self._fail("protocol", f"the provider's answer is not valid HTTP ({e})")

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.response is not None:
            self.response._on_close(None)

    # --- llhttp callbacks ---

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser, response = self._parser, self.response
        status = parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self._headers = []
            return
        self._keep_alive = parser.should_keep_alive()
        names = {name.lower() for name, _ in self._headers}
        framed = b"content-length" in names or b"transfer-encoding" in names or status in (204, 304)
        response._on_head(status, self._headers, framed)
        if response.head_only:  # an answer to HEAD has no body, whatever its head says
            self.response = None
            response._on_complete()
            self.close()  # llhttp cannot be told so: this connection is not reused

    def on_body(self, body: bytes) -> None:
        self.response._on_body(body)

    def on_message_complete(self) -> None:
        response, self.response = self.response, None
        response._on_complete()
        if self._keep_alive and not self.closed:
            self.pool._release(self)
        else:
            self.close()

    def _fail(self, kind: str, message: str) -> None:
        response = self.response
        self.close()
        if response is not None:
            response._on_close(UpstreamError(kind, f"{self.name}: {message}"))


def _key(call: Call, parts) -> tuple[str, str, int, bool]:
    tls = parts.scheme == "https"
    return (parts.scheme, parts.hostname or "", parts.port or (443 if tls else 80), call.verified)


def _request_bytes(call: Call, parts) -> bytes:
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    name = parts.hostname or ""
    name = f"[{name}]" if ":" in name else name  # an IPv6 address
    default_port = parts.port is None or parts.port == (443 if parts.scheme == "https" else 80)
    host = name if default_port else f"{name}:{parts.port}"
    lines = [f"{call.method} {target} HTTP/1.1", f"host: {host}"]
    lines += [f"{name}: {value}" for name, value in call.headers if name.lower() not in _NOT_FORWARDED]
    if call.body or call.method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(call.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + call.body


def _certifi() -> str | None:
    try:
        import certifi  # mitmproxy's own dependency: the same trust store it would use

        return certifi.where()
    except ImportError:
        return None
