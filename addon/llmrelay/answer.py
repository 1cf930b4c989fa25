"""One request answered through the relay's own upstream leg (see `upstream` and `loopback`).

An `Answer` sends the provider request, reads the provider's answer as it arrives, has the
exchange translate it, and writes the client's answer to a `Sink`. It owns what mitmproxy's
native forwarding could not do:

Rules:
- nothing is sent to the client until the provider's answer begins, or until a keep-alive
  ping is due: a streaming client then gets the head of a 200 event stream and `ping` events
  every `ping_every` seconds of silence, before the first byte and between events, so that
  Claude Code's idle timeout never fires while a model thinks or a `supports_streaming: false`
  provider composes its whole answer;
- the provider gets `timeouts.connect` to accept the connection, `timeouts.first_byte` to
  begin its answer and `timeouts.idle` between reads; a missed one ends the request;
- a failure before anything reached the client (unreachable, DNS, TLS, a timeout) is an error
  answer in the client's protocol with its status (`UpstreamError.status`); after that it is
  an `error` event, and the stream still ends properly (its chunked terminator sent), so the
  client never mistakes a cut answer for a whole one;
- a stream passed through untouched (Anthropic-compatible providers, passthrough) is sent on
  whole events only, so that an error event after a cut never lands inside a half event; one
  that ends without `message_stop` or `error` gets an error event;
- every known secret is scrubbed from what the client receives, and from the flow's copy of
  the provider's answer read by read (a key cut in two by the reads included); a huge event
  handed on in pieces is never cut inside a secret;
- what the provider said (status, headers, raw bytes) and what the client got are kept for
  the flow, so `-w` records the exchange with the provider and mitmweb shows both sides.

The request goes out as soon as the answer is started; what it writes waits in its sink until
mitmproxy fetches it from the loopback server, or, for a JSON client while flows are recorded
or replayed, is handed to mitmproxy whole when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import orjson

from . import oauth
from .errors import Scrubber, anthropic_status, scrub, scrub_bytes, upstream_message
from .fronts import SLICE, AnthropicFront
from .health import cooling, mark_failing
from .loopback import Sink
from .protocols import anthropic as a
from .exchange import Reply, error_reply, message_reply
from .upstream import Call, Response, Upstream, UpstreamError

log = logging.getLogger("llmrelay")

EVENT_STREAM = "text/event-stream; charset=utf-8"
STREAM_HEAD = {"content-type": EVENT_STREAM, "cache-control": "no-cache"}
_EVENT_ENDS = (b"\n\n", b"\r\n\r\n", b"\r\r")


class Answer:
    """The job for one flow: `start()` runs it, writing to `sink` (see `loopback.Sink`).
    States: waiting (nothing sent to the client), committed (head sent), ended."""

    def __init__(self, exchange: Any, call: Call, upstream: Upstream, *, ping_every: float, secrets: tuple[str, ...],
                 account: oauth.Account | None = None, fallbacks: list[Callable[[], Any]] = (),
                 prepare: Callable[[Any], tuple[Call, oauth.Account | None]] | None = None,
                 cool_down: float = 30.0, sink: Sink | None = None) -> None:
        self.exchange = exchange
        # What the client speaks: how its answer, its errors and its keep-alives look.
        self.front = getattr(exchange, "front", None) or AnthropicFront(secrets)
        if isinstance(self.front, AnthropicFront):
            self.front.secrets = secrets
        self.call = call
        self.account = account  # signs the request with its token (a ChatGPT sign-in)
        # The routes to try when the provider fails before its answer began: each makes the
        # request for its provider (a `Forward`), which `prepare` turns into a call.
        self.fallbacks = list(fallbacks)
        self.prepare = prepare
        self.cool_down = cool_down
        self.failures: list[str] = []  # the providers that failed, and how
        self.upstream = upstream
        self.ping_every = ping_every
        self.secrets = tuple(s.encode() for s in secrets if len(s) >= 8)
        self._secret_texts = secrets
        # For the flow: what the provider said, and what the client got.
        self.provider_status: int | None = None
        self.provider_headers: list[tuple[bytes, bytes]] = []
        self.provider_raw: list[bytes] = []
        self.sent: list[bytes] = []
        self.status = 0  # what the client was told
        self.error_type: str | None = None
        self.client_gone = False
        self.done = False
        self.sink = sink if sink is not None else Sink()  # (given: the loopback leg may be reading it already)
        # Watchdog state.
        self._task: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._waiting = ""  # what the deadline is for, in words
        self._last_out = 0.0
        self._expired: str | None = None
        self._token = ""
        self._content_sent = False  # anything but pings written to the client
        self._begun: Response | None = None  # the request, sent by `start` itself
        self._on_the_way: asyncio.Future | None = None  # the client's first bytes, until mitmproxy passes them
        self._delivered = False
        self._token_sent = False  # a translated stream's first content delta written

    # --- running ------------------------------------------------------------------------

    def start(self) -> asyncio.Task:
        """Sends the request at once (before this returns, when a kept-alive connection to
        the provider is idle); the answer waits in the sink until someone reads it."""
        if self.account is None and getattr(self.exchange, "local", None) is None and not (self.fallbacks and cooling(self.call.name)):
            self._begun = self.upstream.send_kept(self.call, sent=self._sent)
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self._task

    def cancel(self) -> None:
        if self._task is not None and not self.done:
            self._task.cancel()
            if self._begun is not None:  # (a task cancelled before its first turn never runs)
                self._begun.abandon()
                self._begun = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._last_out = now
        timeouts = self.call.timeouts
        if self._begun is None:  # (a request already sent waits for its first byte only)
            self._expect(now + timeouts.connect + timeouts.first_byte, "answer")
        try:
            while self.fallbacks and cooling(self.call.name):  # a provider that keeps failing: skip it for a while
                self.failures.append(f"{self.call.name}: skipped, failing lately")
                self._switch()
            while True:
                try:
                    response = await self._send_request()
                except asyncio.CancelledError:
                    if self._expired is None:
                        raise
                    failure = self._expiry()
                    if await self._fall_back(failure.kind, str(failure)):
                        continue
                    raise failure from None
                except UpstreamError as e:
                    if e.kind in ("connect", "dns", "tls", "timeout", "cut") and await self._fall_back(e.kind, str(e)):
                        continue
                    raise
                if response.status == 429 or response.status >= 500:
                    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.raw_headers}
                    if self.fallbacks and not self._content_sent:
                        await _drain(response)
                        if await self._fall_back("status", f"{self.call.name}: HTTP {response.status}", headers.get("retry-after")):
                            continue
                break
            async with response:
                await self._answer(response)
        except oauth.AuthError as e:
            self._reply(error_reply(401, scrub(str(e), self._secret_texts)), converted=False)
        except oauth.RefreshFailed as e:
            self._reply(error_reply(529, f"{self.call.name}: {scrub(str(e), self._secret_texts)}", {"retry-after": "5"}), converted=False)
        except UpstreamError as e:
            self._failed(e)
        except asyncio.CancelledError:
            if self._expired is None:  # the client went away: nobody to answer
                self.client_gone = True
                self.error_type = "client_disconnected"
                return
            self._failed(self._expiry())  # an expiry outside the reads
        except Exception:
            log.exception("llmrelay: answering a request through %s failed", self.call.name)
            self._failed(UpstreamError("bug", "the relay failed while reading the provider's answer; its log has the details"), status=500)
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self.done = True

    async def _fall_back(self, kind: str, what: str, retry_after: str | None = None) -> bool:
        """The provider failed before its answer began: on to the next route, if there is
        one and nothing of an answer has reached the client (pings aside)."""
        if not self.fallbacks or self._content_sent or self.prepare is None:
            return False
        failed = self.call.name
        self.failures.append(scrub(what, self._secret_texts))
        wait = _seconds(retry_after)
        mark_failing(failed, wait, self.cool_down)
        self._switch()
        if self.call.name == failed and wait:  # the same provider again (another model): as it asked
            await asyncio.sleep(min(wait, MAX_RETRY_WAIT))
        loop = asyncio.get_running_loop()
        self._expired = None
        self._expect(loop.time() + self.call.timeouts.connect + self.call.timeouts.first_byte, "answer")
        return True

    def _switch(self) -> None:
        forward = self.fallbacks.pop(0)()
        exchange = forward.exchange
        if getattr(exchange, "front", None) is not None and not isinstance(self.front, AnthropicFront):
            exchange.front = self.front  # one answer to the client, whichever provider gives it
        self.exchange = exchange
        self.call, self.account = self.prepare(forward)
        exchange.failures = self.failures

    async def _send_request(self) -> Response:
        """The request, signed with a fresh token when the provider takes one; a token the
        provider refuses (401) is refreshed once and the request sent again, so an expired
        sign-in never reaches the client (nothing has been sent to it yet)."""
        local = getattr(self.exchange, "local", None)
        if local is not None:  # an answer made on this machine (the Claude Code CLI)
            response = await local()
            self._sent()
            return response
        if self.account is None:
            begun, self._begun = self._begun, None
            return await self.upstream.open(self.call, sent=self._sent, begun=begun)
        self._sign(await self.account.tokens())
        response = await self.upstream.open(self.call, sent=self._sent)
        if response.status != 401:
            return response
        chunks = []
        async with response:
            while chunk := await response.readany():
                chunks.append(chunk)  # read to its end: the connection goes back to the pool
        body = b"".join(chunks)
        if not _token_refused(body):
            # Refused for another reason (a header, the account): a refresh would only spend
            # the single-use refresh token. The client gets this answer.
            return _Read(response, body)
        self._sign(await self.account.refreshed(self._token))
        return await self.upstream.open(self.call, sent=self._sent)

    def _sign(self, tokens: oauth.Tokens) -> None:
        self._token = tokens.access_token
        signed = {"authorization": "Bearer " + tokens.access_token, "chatgpt-account-id": tokens.account_id}
        self.call.headers = [(k, v) for k, v in self.call.headers if k not in signed] + list(signed.items())
        # The token is a secret like any key: scrubbed from whatever the client or the flow gets.
        self.secrets += (tokens.access_token.encode(),)
        self._secret_texts += (tokens.access_token,)

    async def _answer(self, response: Response) -> None:
        exchange = self.exchange
        self.provider_status = status = response.status
        self.provider_headers = list(response.raw_headers)
        headers = {k.decode("latin-1").lower(): v.decode("utf-8", "surrogateescape") for k, v in response.raw_headers}
        exchange.began(status, headers)
        if exchange.streams(status, headers):
            self._commit()  # the head goes out now: mitmproxy readies the client's stream meanwhile
            await self._stream(response, exchange.translator())
        elif 200 <= status < 300 and headers.get("content-type", "").startswith("text/event-stream"):
            await self._collect(response, exchange.reader())
        else:
            await self._read(response)
            body = b"".join(self.provider_raw)
            if status == 401 and self.account is not None:  # refused even after a refresh, or not for the token
                message = scrub(upstream_message(body, headers.get("content-type", "")), self._secret_texts)
                reply = error_reply(401, f"{self.call.name}: ChatGPT refused the sign-in ({message}); {self.account.hint()}")
                return self._reply(reply, converted=False)
            self._reply(exchange.reply(status, headers, body))

    async def _stream(self, response: Response, translator: Any) -> None:
        """The provider's stream → the client's, read by read."""
        _guard(translator, self.secrets)
        held: list[bytes] = []  # passed through untouched: the incomplete last event, until it completes
        ended = False

        def on_chunk(chunk: bytes) -> list[bytes] | None:
            nonlocal held, ended
            if translator is not None:
                events = translator.feed(chunk)
                if not events:
                    return None
                if not self._token_sent:
                    self._token_sent = any(event["type"] == "content_block_delta" for event in events)
                return self.front.encode(events)
            # Only the new read is searched for an event's end (with the last bytes before it,
            # where a blank line may have begun): linear however long one event is.
            tail = held[-1][-3:] if held else b""
            cut = _whole_events(tail + chunk) - len(tail)
            if cut <= 0:
                held.append(chunk)
            else:
                whole, held = b"".join([*held, chunk[:cut]]), [chunk[cut:]] if cut < len(chunk) else []
                ended = ended or self.front.terminal(whole)
                if ended and self.error_type is None and (found := _ERROR_TYPE.search(whole)):
                    self.error_type = found.group(1).decode()  # the provider's own error event, for the records
                if len(whole) <= SLICE:
                    return [whole]
                whole = scrub_bytes(whole, self.secrets)  # whole: a slice could cut a key in two
                return [whole[i : i + SLICE] for i in range(0, len(whole), SLICE)]
            return None

        try:
            await self._read(response, on_chunk, first_token=True, piece=FIRST_PIECE if translator is not None else None)
        except UpstreamError as failure:
            return self._fail_stream(translator, failure)
        if translator is not None:
            for part in self.front.encode(translator.finish()):
                self._send(part)
            self.error_type = translator.error_type
        else:
            held = b"".join(held)
            if held.strip():  # a last event without its blank line still counts
                self._send(held + b"\n\n")
            self.exchange.stream_ended(self.provider_raw)
            if not (ended or self.front.terminal(held)):
                return self._fail_stream(None, UpstreamError("cut", f"{self.call.name}: the stream ended before the answer was complete"))
        self._end()

    async def _collect(self, response: Response, reader: Any) -> None:
        """A streamed answer for a client that wants one message: rebuilt as it arrives, so
        a long answer never holds the event loop for more than one read."""
        accumulator = a.Accumulator()
        _guard(reader, self.secrets)
        try:
            await self._read(response, lambda chunk: _add(accumulator, reader.feed(chunk)))
            _add(accumulator, reader.finish())
        except UpstreamError as failure:
            _add(accumulator, reader.fail(failure.status, scrub(str(failure), self._secret_texts)))
        self.exchange.stream_ended(self.provider_raw)
        if accumulator.error is None and accumulator.message is not None:
            # A huge message is written in a turn of its own: other requests go first.
            await asyncio.sleep(0)
            self._reply(Reply(200, self.front.message(accumulator.message)))
        else:
            self._reply(message_reply(accumulator), converted=False)

    async def _read(self, response: Response, each: Callable[[bytes], list[bytes] | None] | None = None, *,
                    first_token: bool = False, piece: int | None = None) -> None:
        """Reads the body to its end, handing each read to `each` and sending the client what
        it returns; a failure or a timeout comes out as `UpstreamError`. The flow's copy
        (`provider_raw`) is scrubbed read by read, and with `first_token` (a client waiting
        for its stream) only once the client has had something: it never delays a token.
        With `piece`, until the first token is out a big read is handed on in pieces of about
        `piece` bytes, so that the token does not wait for the rest of the read to be
        translated (a provider that sends a burst: 250 KB at once from a Responses API, the
        request echoed twice before the first delta). A piece ends where an event does: no token
        comes out of part of an event, and a 78 KB line cut in 2 KB pieces costs 39 calls
        instead of one."""
        loop = asyncio.get_running_loop()
        idle = self.call.timeouts.idle
        scrubber = Scrubber(self.secrets)
        unscrubbed: list[bytes] = []
        first = not self.provider_raw and response.status < 400  # (an error answer has no first token to time)
        waiting = first_token  # for the client's first token to be on its way
        try:
            while chunk := await response.readany():
                if first:
                    self.exchange.first_byte, first = time.monotonic(), False
                self._expect(loop.time() + idle, "data")
                unscrubbed.append(chunk)
                start, size = 0, len(chunk)
                while each is not None and start < size:
                    end = _cut(chunk, start + piece) if waiting and piece else size
                    out = each(chunk if end - start == size else chunk[start:end])
                    start = end
                    if out:
                        self._send(out[0])
                        for part in out[1:]:  # a huge answer: other requests get a turn between slices
                            await asyncio.sleep(0)
                            self._send(part)
                    if waiting and self._token_sent:
                        waiting = False
                        await self._until_delivered()
                if self._content_sent or not first_token:
                    self._keep(scrubber, unscrubbed)
        except asyncio.CancelledError:
            if self._expired is None:
                raise
            raise self._expiry() from None
        finally:
            self._keep(scrubber, unscrubbed, end=True)

    def delivered(self) -> None:
        """mitmproxy is passing the client its first bytes of this answer."""
        self._delivered = True
        if self._on_the_way is not None and not self._on_the_way.done():
            self._on_the_way.set_result(None)

    async def _until_delivered(self) -> None:
        """The first bytes for a streaming client take a few event-loop turns through
        mitmproxy (the loopback leg, the response hooks). The next reads wait for them, at
        most FIRST_OUT_WAIT: translated meanwhile, they would stand in those turns' way."""
        if self._delivered:
            return
        loop = asyncio.get_running_loop()
        self._on_the_way = waiting = loop.create_future()
        timer = loop.call_later(FIRST_OUT_WAIT, _settle, waiting)
        try:
            await waiting
        finally:
            timer.cancel()
            self._on_the_way = None

    def _keep(self, scrubber: Scrubber, chunks: list[bytes], end: bool = False) -> None:
        """Reads into the flow's copy, scrubbed (a key cut in two by the reads included)."""
        for chunk in chunks:
            if chunk := scrubber.feed(chunk):
                self.provider_raw.append(chunk)
        chunks.clear()
        if end and (tail := scrubber.flush()):
            self.provider_raw.append(tail)

    # --- the client side ----------------------------------------------------------------

    def _commit(self) -> None:
        if not self.sink.started:
            self.status = 200
            self.sink.head(200, STREAM_HEAD)

    def _send(self, data: bytes) -> None:
        if data is not self.front.ping:
            self._content_sent = True
        data = scrub_bytes(data, self.secrets)
        self._commit()
        self.sent.append(data)
        self.sink.write(data)
        self._last_out = asyncio.get_running_loop().time()

    def _end(self) -> None:
        self.sink.end()

    def _reply(self, reply: Reply, converted: bool = True) -> None:
        """A whole answer: sent as it is, or as events after the pings already sent. An
        error in Anthropic's form (`converted` false) goes out in the front's."""
        if reply.status >= 400:
            self.error_type = _error_type(reply.body)
            if not converted:
                if self.sink.started:
                    self._send(self.front.error_event(self.error_type or "api_error", _error_message(reply.body)))
                    return self._end()
                reply = Reply(*self.front.reply(reply.status, reply.body, reply.headers))
        if not self.sink.started:
            body = scrub_bytes(reply.body, self.secrets)
            self.status = reply.status
            self.sink.head(reply.status, reply.headers, len(body))
            self.sent.append(body)
            self.sink.write(body)
        elif reply.status >= 400:
            self._send(self.front.error_event(self.error_type or "api_error", _error_message(reply.body)))
        elif not reply.headers.get("content-type", "").startswith("text/event-stream"):
            self._send(self.front.error_event("api_error", "the provider's answer could not be read"))
        else:
            self._send(reply.body)
        self._end()

    def _failed(self, failure: UpstreamError, status: int | None = None) -> None:
        """The provider failed before its answer was read whole."""
        if self.sink.gone:
            return
        if not self.sink.started:
            headers = {"retry-after": "1"} if failure.kind in ("connect", "dns", "timeout") else {}
            self._reply(error_reply(status or failure.status, scrub(str(failure), self._secret_texts), headers), converted=False)
        else:
            self._fail_stream(None, failure, status)

    def _fail_stream(self, translator: Any, failure: UpstreamError, status: int | None = None) -> None:
        message = scrub(str(failure), self._secret_texts)
        if translator is not None:
            events = translator.fail(status or failure.status, message)
            self.error_type = translator.error_type
            for part in self.front.encode(events):
                self._send(part)
        else:
            self.error_type = anthropic_status(status or failure.status)[1]
            self._send(self.front.error_event(self.error_type, message))
        self._end()

    # --- the watchdog: keep-alive pings and timeouts -----------------------------------

    def _sent(self) -> None:
        self._expect(asyncio.get_running_loop().time() + self.call.timeouts.first_byte, "answer")

    def _expect(self, deadline: float, what: str) -> None:
        """From now on the provider must say something by `deadline`."""
        self._deadline, self._waiting = deadline, what
        if self._timer is None:
            self._schedule(asyncio.get_running_loop())

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        at = self._deadline
        if self.exchange.client_stream:
            at = min(at, self._last_out + self.ping_every)
        self._timer = loop.call_at(at, self._check)

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.done or self.sink.gone:
            self._timer = None
            return
        if now >= self._deadline:
            self._timer = None
            self._expired = self._waiting
            self._task.cancel()
            return
        if self.exchange.client_stream and now - self._last_out >= self.ping_every - 0.001:
            self._send(self.front.ping)
        self._schedule(loop)

    def _expiry(self) -> UpstreamError:
        """The watchdog cancelled the task: take the cancellation back, name the timeout."""
        self._task.uncancel()
        limits = self.call.timeouts
        limit = limits.first_byte if self._expired == "answer" else limits.idle
        return UpstreamError("timeout", f"{self.call.name}: no {self._expired} from the provider within {limit:g} s")


MAX_RETRY_WAIT = 5.0  # seconds waited on a retry-after before the same provider is asked again
FIRST_OUT_WAIT = 0.05  # seconds the next reads wait at most for the first token to reach mitmproxy's client side
FIRST_PIECE = 2048  # bytes translated at a time until the first token is out (measured: 2-4 KB is fastest to it)


def _cut(chunk: bytes, at: int) -> int:
    """Where a piece of `chunk` that should end near `at` ends: just after the first event
    end (a line end and the blank line after it) at or past `at`, so that a token's event is
    whole in its piece; or at the end of the read."""
    size, pos = len(chunk), at - 1
    while pos < size:
        end = chunk.find(b"\n", pos)
        if end < 0:
            return size
        pos = end + 1
        if pos < size and chunk[pos] in _LINE_ENDS:  # a blank line: the event ends here
            while pos < size and chunk[pos] in _LINE_ENDS:
                pos += 1
            return pos
    return size


_LINE_ENDS = b"\r\n"


def _seconds(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None


def _settle(waiting: asyncio.Future) -> None:
    if not waiting.done():
        waiting.set_result(None)


async def _drain(response: Response) -> None:
    async with response:
        while await response.readany():
            pass


# What a 401 says when the access token itself is the problem (the Codex backend's codes).
_TOKEN_REFUSALS = (b"token_expired", b"token_invalidated", b"invalid_token", b"authentication token", b"token is expired")


def _token_refused(body: bytes) -> bool:
    return any(sign in body for sign in _TOKEN_REFUSALS)


class _Read:
    """An answer already read whole, given back as if it were arriving."""

    def __init__(self, response: Response, body: bytes) -> None:
        self.status, self.raw_headers, self._body = response.status, response.raw_headers, body

    async def readany(self) -> bytes:
        body, self._body = self._body, b""
        return body

    async def __aenter__(self) -> _Read:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


def _add(accumulator: a.Accumulator, events: list[dict[str, Any]]) -> None:
    for event in events:
        accumulator.add(event)


def _guard(translator: Any, secrets: tuple[bytes, ...]) -> None:
    """A translator hands a huge event on in pieces (`split`), each scrubbed on its way to the
    client: no piece may end inside a secret."""
    decoder = getattr(translator, "decoder", None)
    if decoder is not None:
        decoder.keep = secrets


def _whole_events(buf: bytes) -> int:
    """How many leading bytes of `buf` are whole events."""
    return max((at + len(end) for end in _EVENT_ENDS if (at := buf.rfind(end)) >= 0), default=0)


_ERROR_TYPE = re.compile(rb'"error"\s*:\s*\{[^}]*?"type"\s*:\s*"([a-z_]+)"')


def _error_message(body: bytes) -> str:
    try:
        return str(orjson.loads(body).get("error", {}).get("message", ""))
    except (orjson.JSONDecodeError, AttributeError):
        return body.decode("utf-8", "replace")[:500]


def _error_type(body: bytes) -> str | None:
    try:
        return orjson.loads(body).get("error", {}).get("type")
    except (orjson.JSONDecodeError, AttributeError):
        return None
