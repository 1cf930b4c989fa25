"""A provider that fails the way real ones do, for the relay's fault tests.

Raw asyncio on 127.0.0.1 in a background thread: every byte on the wire is chosen here, so a
test can cut a chunked or Content-Length body, close a body that has no framing, reset the
connection, stay silent, answer garbage, or echo the credentials it was sent. Each request
takes the next fault of the script (the last one repeats):

    with FaultyUpstream() as up:
        up.set_script([Fault("cut_chunked", events=OPENAI_TEXT[:3])])
        ...  # point a provider's base_url at up.base_url; up.requests has what arrived

A `Fault` names what happens and carries the SSE events (bytes, each a whole event) or the
body to send:

| kind             | on the wire                                                               |
|------------------|---------------------------------------------------------------------------|
| ok               | a 200 event stream, chunked, every event, then the terminating chunk      |
| cut_chunked      | a chunked 200 event stream cut after `events`: no terminating chunk       |
| cut_length       | Content-Length of all the events, only `events` of them sent, then close  |
| close_delimited  | no framing (`connection: close`): `events` sent, then the connection ends |
| reset            | `events` sent chunked, then a TCP reset                                   |
| silent           | nothing at all for `wait` seconds, then `ok`                              |
| silent_mid       | `events` sent, nothing for `wait` seconds, then the rest of `rest`        |
| garbage          | bytes that are not HTTP, then close                                       |
| echo_key         | 401 whose body and `www-authenticate` header repeat the credentials sent  |
| json             | after `wait` seconds, a 200 JSON `body` (Content-Length)                  |
| status           | an error answer: `status`, `headers` and the JSON `body`                  |
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Fault:
    kind: str
    events: list[bytes] = field(default_factory=list)
    rest: list[bytes] = field(default_factory=list)
    wait: float = 0.0
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def chat_events(text: str = "Hello there, how are you", *, pieces: int = 4, finish: str | None = "stop", done: bool = True) -> list[bytes]:
    """An OpenAI Chat stream, one event per piece of `text`."""
    step = max(1, len(text) // pieces)
    chunks = [text[i : i + step] for i in range(0, len(text), step)]
    events = [_chat({"role": "assistant", "content": ""})]
    events += [_chat({"content": chunk}) for chunk in chunks]
    if finish:
        events.append(_chat({}, finish))
    if done:
        events.append(b"data: [DONE]\n\n")
    return events


def tool_events(name: str, arguments: str, *, finish: str | None = "tool_calls") -> list[bytes]:
    """An OpenAI Chat stream with one tool call whose arguments come in three pieces."""
    third = max(1, len(arguments) // 3)
    events = [_chat({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}}]})]
    for i in range(0, len(arguments), third):
        events.append(_chat({"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + third]}}]}))
    if finish:
        events += [_chat({}, finish), b"data: [DONE]\n\n"]
    return events


def anthropic_events(text: str = "Hello from an Anthropic-compatible API", *, pieces: int = 3) -> list[bytes]:
    """An Anthropic Messages stream: message_start, one text block in `pieces`, message_stop."""
    step = max(1, len(text) // pieces)
    events = [
        ("message_start", {"type": "message_start", "message": {"id": "msg_fault", "type": "message", "role": "assistant", "model": "m", "content": [],
                                                              "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text[i : i + step]}})
               for i in range(0, len(text), step)]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 9}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return [b"event: %b\ndata: %b\n\n" % (name.encode(), orjson.dumps(data)) for name, data in events]


def _chat(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


class FaultyUpstream:
    def __init__(self) -> None:
        self.port = 0
        self.requests: list[Seen] = []
        self._script: list[Fault] = [Fault("ok", events=chat_events())]
        self._used = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def set_script(self, faults: list) -> None:
        """Faults in order (the last repeats); an entry may also be a callable `Seen -> Fault`."""
        self._script, self._used = list(faults), 0
        self.requests.clear()

    def __enter__(self) -> FaultyUpstream:
        ready = threading.Event()

        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await self._stop.wait()
            server.close()

        self._thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True, name="faulty-upstream")
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread:
            self._thread.join(5)

    # --- serving ---

    def _next(self) -> Fault:
        fault = self._script[min(self._used, len(self._script) - 1)]
        self._used += 1
        return fault

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                seen = Seen(method, path, headers, body)
                self.requests.append(seen)
                fault = self._next()
                if callable(fault):  # a fault chosen by the request (`Seen -> Fault`)
                    fault = fault(seen)
                if not await self._answer(fault, headers, writer):
                    return
        finally:
            writer.close()

    async def _answer(self, fault: Fault, headers: dict[str, str], writer: asyncio.StreamWriter) -> bool:
        """Plays one fault; whether the connection may serve another request."""
        sse_head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        kind = fault.kind
        if kind == "silent":
            await asyncio.sleep(fault.wait)
            kind = "ok"
        if kind == "ok":
            writer.write(sse_head + b"transfer-encoding: chunked\r\n\r\n")
            await self._chunks(writer, fault.events)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        if kind == "cut_chunked":
            writer.write(sse_head + b"transfer-encoding: chunked\r\n\r\n")
            await self._chunks(writer, fault.events)
            return False
        if kind == "cut_length":
            whole = b"".join(fault.events + fault.rest)
            writer.write(sse_head + b"content-length: %d\r\n\r\n" % len(whole) + b"".join(fault.events))
            await writer.drain()
            return False
        if kind == "close_delimited":
            writer.write(sse_head + b"connection: close\r\n\r\n")
            for event in fault.events:
                writer.write(event)
                await writer.drain()
            return False
        if kind == "reset":
            writer.write(sse_head + b"transfer-encoding: chunked\r\n\r\n")
            await self._chunks(writer, fault.events)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if kind == "silent_mid":
            writer.write(sse_head + b"transfer-encoding: chunked\r\n\r\n")
            await self._chunks(writer, fault.events)
            await asyncio.sleep(fault.wait)
            await self._chunks(writer, fault.rest)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        if kind == "hangup":  # the request read, the connection closed without a word
            return False
        if kind == "garbage":
            writer.write(b"\x00\x01garbage that is not HTTP at all\r\n\r\n")
            await writer.drain()
            return False
        if kind == "echo_key":
            said = headers.get("authorization") or headers.get("x-api-key") or ""
            body = orjson.dumps({"error": {"message": f"Incorrect API key provided: {said}", "type": "invalid_request_error"}})
            writer.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n"
                         b"www-authenticate: Bearer realm=\"" + said.encode() + b"\"\r\n"
                         b"content-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
            return True
        if kind == "status":  # an error answer: `status`, `body`, `headers`
            extra = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in fault.headers.items())
            writer.write(b"HTTP/1.1 %d Error\r\ncontent-type: application/json\r\n%bcontent-length: %d\r\n\r\n"
                         % (fault.status, extra, len(fault.body)) + fault.body)
            await writer.drain()
            return True
        if kind == "json":
            await asyncio.sleep(fault.wait)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(fault.body) + fault.body)
            await writer.drain()
            return True
        raise ValueError(f"unknown fault {kind!r}")

    @staticmethod
    async def _chunks(writer: asyncio.StreamWriter, events: list[bytes]) -> None:
        for event in events:
            writer.write(b"%x\r\n%b\r\n" % (len(event), event))
            await writer.drain()


class UntrustedTLS:
    """A TLS server on 127.0.0.1 with a fresh self-signed certificate that nobody trusts: the
    relay's handshake with it must fail and say so. It answers nothing beyond the handshake."""

    def __init__(self, workdir) -> None:
        self.cert, self.key = _self_signed(workdir)
        self.port = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> UntrustedTLS:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]

        def serve() -> None:
            while True:
                try:
                    conn, _ = self._sock.accept()
                except OSError:
                    return
                try:
                    with context.wrap_socket(conn, server_side=True):
                        pass
                except (OSError, ssl.SSLError):
                    pass  # the client refused the certificate, as it should

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sock is not None:
            self._sock.close()


def _self_signed(workdir) -> tuple[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "cert.pem", workdir / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(cert_path), str(key_path)
