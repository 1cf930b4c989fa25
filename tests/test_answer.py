"""`Answer`, the relay's job for one flow, against a provider on a real socket."""

from __future__ import annotations

import asyncio
import json

from llmrelay import relay
from llmrelay.answer import FIRST_PIECE, Answer, _cut
from llmrelay.config import parse_config
from llmrelay.upstream import Call, Upstream

DELTAS = 60


def burst() -> bytes:
    """A Chat stream of DELTAS text chunks, all in one write, as a fast provider sends it."""
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    chunks += [{"choices": [{"index": 0, "delta": {"content": f"word{i} "}}]} for i in range(DELTAS)]
    chunks += [{"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    body = b"".join(b"data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", **c}).encode() + b"\n\n" for c in chunks)
    body += b"data: [DONE]\n\n"
    return b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


def test_the_first_token_of_a_burst_goes_out_before_the_rest_is_translated() -> None:
    async def run() -> None:
        async def provider(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(burst())
            await writer.drain()

        server = await asyncio.start_server(provider, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        config = parse_config({"providers": {"p": {"type": "openai", "base_url": f"http://127.0.0.1:{port}/v1"}},
                               "models": {"default": {"provider": "p", "model": "m"}}})
        body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        forward = relay.handle(config, "POST", "/v1/messages", body.encode(), {"content-type": "application/json"})
        call = Call("POST", f"http://127.0.0.1:{port}/v1/chat/completions", list(forward.headers.items()), forward.body,
                    config.providers["p"].timeouts, "p")
        answer = Answer(forward.exchange, call, Upstream(), ping_every=10, secrets=())
        task = answer.start()
        while not any(b"text_delta" in piece for piece in answer.sink.body):
            await asyncio.sleep(0.001)
        # The first token is out, and the answer waits for mitmproxy to pass it on before it
        # translates the rest of the read.
        sent = b"".join(answer.sink.body)
        assert 0 < sent.count(b"text_delta") < DELTAS
        answer.delivered()
        await task
        sent = b"".join(answer.sink.body)
        assert sent.count(b"text_delta") == DELTAS and sent.endswith(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
        server.close()

    asyncio.run(run())


def test_a_burst_is_cut_at_event_ends_and_a_long_line_never_in_two() -> None:
    # Until the first token is out, a big read is translated in pieces of about FIRST_PIECE
    # bytes; no token can come out of part of an event, so a piece always ends where one does.
    echo = b"event: response.created\ndata: {" + b"x" * 80_000 + b"}\n\n"
    deltas = b"".join(b"event: d\ndata: {\"delta\":\"%d\"}\n\n" % i for i in range(400))
    read = echo + deltas
    pieces, start = [], 0
    while start < len(read):
        end = _cut(read, start + FIRST_PIECE)
        pieces.append(read[start:end])
        start = end
    assert b"".join(pieces) == read
    assert pieces[0] == echo  # the long line whole, in one piece with the line before it and the blank line after
    assert all(piece.endswith(b"\n\n") for piece in pieces)  # each piece ends an event: a token's is never left waiting
    assert all(FIRST_PIECE <= len(piece) < FIRST_PIECE + 40 for piece in pieces[1:-1])  # short lines, ~FIRST_PIECE at a time
    assert len(pieces) >= len(deltas) // (FIRST_PIECE + 40)
    assert _cut(b"no line end at all", 4) == len(b"no line end at all")
    assert _cut(b"data: 1\r\n\r\ndata: 2\r\n\r\n", 3) == 11  # CRLF lines: the blank one comes along
