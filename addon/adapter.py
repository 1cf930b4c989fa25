"""llmrelay: Claude Code (and any Anthropic client) on any LLM provider, through mitmproxy.

    mitmdump -s addon/adapter.py --mode reverse:http://127.0.0.1:9 \\
        --listen-host 127.0.0.1 -p 8082 --set adapter_config=config.yaml

`/v1/messages` is routed by model name (see config.yaml), rewritten for the provider and its
answer translated back, streams chunk by chunk. The relay answers `/v1/messages/count_tokens`,
`/v1/models` and `/health` itself. Everything else goes to the reverse-mode target.

Recording and replay: the flow keeps the exchange with the provider as it happened (the
rewritten request, the provider's own response, credentials redacted), so `-w FILE` records
that, and `--server-replay FILE` matches the rewritten request and hands back the provider's
response, which is then translated as if it had just arrived. For that the translation of
whole bodies happens in a second addon, `Translate`, placed after mitmproxy's own Save and
ServerPlayback addons; a streamed response is translated as it passes and its raw bytes are
put back on the flow at the end.

This file is only mitmproxy glue; the work happens in the `llmrelay` package beside it.
"""

from __future__ import annotations

import gc
import logging
import time

import orjson
from mitmproxy import contentviews, ctx, exceptions, http
from mitmproxy.net.http import url
from mitmproxy.net.http.status_codes import RESPONSES

import both_sides
from both_sides import SIDE, BothSides
from llmrelay import relay, usage
from llmrelay.config import Config, ConfigError, load_config

log = logging.getLogger("llmrelay")


Exchange = relay.Exchange | relay.AnthropicExchange


class Adapter:
    def __init__(self) -> None:
        self.config: Config | None = None
        self.exchanges: dict[str, Exchange] = {}
        # flow id → the provider's response headers, its raw stream, and what the client got
        self.recorded: dict[str, tuple[http.Headers, list[bytes], list[bytes]]] = {}
        self.late = Translate(self)
        self.usage_log: usage.UsageLog | None = None
        self.view = BothSides()

    def load(self, loader) -> None:
        loader.add_option("adapter_config", str, "config.yaml", "Path of the llmrelay configuration file.")
        loader.add_option("adapter_data_dir", str, "~/.llmrelay", "Where llmrelay keeps its usage records.")
        loader.add_option("adapter_usage", bool, True, "Append one usage record per routed request to <data dir>/usage/.")
        both_sides.register(self.view)

    def configure(self, updated: set[str]) -> None:
        if updated & {"adapter_data_dir", "adapter_usage"}:
            if self.usage_log is not None:
                self.usage_log.close()
            self.usage_log = usage.UsageLog(ctx.options.adapter_data_dir) if ctx.options.adapter_usage else None
        if "adapter_config" in updated:
            try:
                self.config = load_config(ctx.options.adapter_config)
            except ConfigError as e:
                raise exceptions.OptionsError(str(e)) from None
            routes = len(self.config.models.routes)
            log.info(f"llmrelay: {len(self.config.providers)} provider(s), {routes} route(s) from {ctx.options.adapter_config}")

    def running(self) -> None:
        # Everything loaded so far (mitmproxy, this package) lives as long as the process:
        # moving it out of the collector's reach makes each full collection, which the
        # garbage of every translated request sets off now and then, walk far fewer objects.
        gc.freeze()
        # mitmproxy's objects for each connection and request refer to each other, so a
        # finished flow, bodies and all, is freed only by the cycle collector; one that was in
        # flight during a young collection waits for a full one, which by default comes only
        # after ten middle ones. With flows holding an 80 KB Claude Code request twice, RSS could
        # climb ~35 MB above the working set. A full collection after every fourth middle one
        # keeps it flat for the same collector time in all (measured: 2,000 streamed requests
        # at 16 at a time, 258 vs 260 ms of collections, RSS 97 vs 134 MB).
        gc.set_threshold(700, 4, 1)
        if self.late not in ctx.master.addons.chain:
            ctx.master.addons.add(self.late)

    def done(self) -> None:
        if self.usage_log is not None:
            self.usage_log.close()
        if self.late in ctx.master.addons.chain:
            ctx.master.addons.remove(self.late)
        contentviews.remove(self.view)

    def request(self, flow: http.HTTPFlow) -> None:
        if self.config is None or flow.response is not None:
            return
        req = flow.request
        req_body = req.raw_content
        outcome = relay.handle(self.config, req.method, req.path, req_body or b"", _lower(req.headers))
        if isinstance(outcome, relay.Reply):
            flow.response = http.Response.make(outcome.status, outcome.body, outcome.headers)
        elif isinstance(outcome, relay.Forward):
            # New headers, raw content and the target written straight into the request's
            # data are much cheaper than the setters, which scan and rewrite the headers on
            # each call (the host and port setters both rewrite Host).
            scheme, host, port, path = outcome.target
            authority = url.hostport(scheme, host, port)
            req.headers = http.Headers(_fields(_sized(outcome.headers, outcome.body), host=authority))
            req.raw_content = outcome.body
            data = req.data
            data.scheme, data.host, data.port, data.path = scheme.encode(), host, port, path.encode()
            if data.authority:  # HTTP/2 and 3 clients: :authority stands for Host
                req.authority = authority
            self.exchanges[flow.id] = outcome.exchange
            # The client's side, for mitmweb: the flow itself holds the provider's side.
            flow.metadata[SIDE] = {"client_request": req_body or b""}  # bytes: kept, not copied

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        exchange = self.exchanges.get(flow.id)
        response = flow.response
        if exchange is None or response is None or flow.is_replay == "response":
            return
        if not exchange.streams(response.status_code, _lower(response.headers)):
            exchange.first_byte = time.monotonic()  # the whole answer comes at once
        else:
            exchange.streamed = True
            raw: list[bytes] = []
            sent: list[bytes] = []
            self.recorded[flow.id] = (response.headers.copy(), raw, sent)
            translate = exchange.stream()
            if translate is None:  # passed on as the provider sent it

                def on_bytes(chunk: bytes) -> list[bytes]:
                    if not raw:
                        exchange.first_byte = time.monotonic()
                    raw.append(chunk)
                    return [chunk] if chunk else []

            else:
                # Headers can only change here, before the head is sent on.
                response.headers = http.Headers(_fields(relay.STREAM_HEADERS))

                def on_bytes(chunk: bytes) -> list[bytes]:
                    if not raw:
                        exchange.first_byte = time.monotonic()
                    raw.append(chunk)
                    out = translate(chunk)
                    sent.extend(out)
                    return out

            response.stream = on_bytes

    def response(self, flow: http.HTTPFlow) -> None:
        """Runs before Save: the flow is put back to the exchange with the provider."""
        exchange = self.exchanges.get(flow.id)
        if exchange is None:
            return
        recorded = self.recorded.pop(flow.id, None)
        if recorded is not None and flow.response is not None:
            headers, raw, sent = recorded
            provider_side = b"".join(raw)  # as received: the request asked for no encoding
            flow.response.headers = headers
            flow.response.raw_content = provider_side
            exchange.stream_ended(provider_side)
            if SIDE in flow.metadata:
                flow.metadata[SIDE]["client_response"] = b"".join(sent) if sent else provider_side
        _redact(flow, exchange)

    def error(self, flow: http.HTTPFlow) -> None:
        self.recorded.pop(flow.id, None)
        exchange = self.exchanges.pop(flow.id, None)
        if exchange is not None:
            _redact(flow, exchange)
            self.account(flow, exchange, 502, "connection_error")

    def account(self, flow: http.HTTPFlow, exchange: Exchange, status: int, error_type: str | None) -> None:
        if exchange.count_tokens_body is not None:
            return
        entry = usage.record(exchange, status, error_type)
        flow.comment = usage.summary(entry)  # the one-line summary mitmweb shows
        if self.usage_log is not None:
            try:
                self.usage_log.write(entry)
            except OSError as e:
                log.warning(f"llmrelay: cannot write usage records: {e}")


class Translate:
    """Whole-body translation, after Save has recorded the provider's response and after
    ServerPlayback has supplied one."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter

    def response(self, flow: http.HTTPFlow) -> None:
        exchange = self.adapter.exchanges.pop(flow.id, None)
        response = flow.response
        if exchange is None or response is None:
            return
        if not exchange.streamed:  # a stream was translated on its way through
            provider_side = response.content or b""
            reply = exchange.reply(response.status_code, _lower(response.headers), provider_side)
            if SIDE in flow.metadata:
                flow.metadata[SIDE]["provider_response"] = provider_side
            response.status_code = reply.status
            response.reason = RESPONSES.get(reply.status, "")
            response.headers = http.Headers(_fields(_sized(reply.headers, reply.body)))
            response.raw_content = reply.body
        error_type = None
        if response.status_code >= 400 and not exchange.streamed:
            error_type = orjson.loads(response.content).get("error", {}).get("type")
        self.adapter.account(flow, exchange, response.status_code, error_type)


def _redact(flow: http.HTTPFlow, exchange: Exchange) -> None:
    """The request has gone out: what stays on the flow (mitmweb, `-w` files) holds no key,
    and no cookie a provider set."""
    secret = {name.encode() for name in exchange.secret_headers} | {b"cookie"}
    flow.request.headers.fields = _redacted(flow.request.headers.fields, secret)
    if flow.response is not None:
        flow.response.headers.fields = _redacted(flow.response.headers.fields, {b"set-cookie"})


def _redacted(fields: tuple[tuple[bytes, bytes], ...], names: set[bytes]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((name, b"[REDACTED]" if name.lower() in names else value) for name, value in fields)


def _fields(headers: dict[str, str], **more: str) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((name.encode(), value.encode()) for name, value in (headers | more).items())


def _sized(headers: dict[str, str], body: bytes) -> dict[str, str]:
    """With the body set as raw content, its length is ours to state."""
    return headers | {"content-length": str(len(body))}


def _lower(headers: http.Headers) -> dict[str, str]:
    """Header names in lower case → values; read from the raw fields, which is much faster
    than going through the Headers mapping. A repeated header keeps its last value."""
    return {name.decode("latin-1").lower(): value.decode("utf-8", "surrogateescape") for name, value in headers.fields}


addons = [Adapter()]
