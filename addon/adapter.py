"""llmrelay: Claude Code (and any Anthropic client) on any LLM provider, through mitmproxy.

    mitmdump -s addon/adapter.py --mode reverse:http://127.0.0.1:9 \\
        --listen-host 127.0.0.1 -p 8082 --set adapter_config=config.yaml

`/v1/messages` is routed by model name (see config.yaml), rewritten for the provider and its
answer translated back, streams chunk by chunk. The relay answers `/v1/messages/count_tokens`,
`/v1/models`, `/health` and `/` itself; with `models.default: passthrough` everything else
goes to the reverse-mode target, otherwise it gets a 404 in Anthropic's form.

The relay's own upstream leg: a request that goes to a provider (or passes through) is sent
by the relay itself (`llmrelay.answer`), and mitmproxy fetches the answer from the relay's
loopback server (`llmrelay.loopback`) as it is made. That is what lets the relay ping a
client while a provider is silent, time a provider out, and end a stream cut by the provider
in the client's protocol, none of which mitmproxy's forwarding can do.

Two ways in, one way out. A POST with a body is taken as it arrives (`requestheaders`): the
flow goes to the loopback server at once, the body is collected as mitmproxy reads it, and
the provider request leaves with its last byte; the answer, JSON or stream, comes back over
the loopback leg and reaches the client before the `response` hooks run, as with plain
mitmdump's streaming. While flows are recorded or replayed, or something else wants each
request whole in its `request` hook, the request is taken there instead.

The flow still shows the exchange with the provider: while in flight it points at the
loopback server, and before Save records it (`-w`) it is put back to the provider's request
and the provider's own answer, credentials redacted and known secrets scrubbed, with the
client's side in `flow.metadata` for the both-sides view. Replays (`--server-replay`) match
the provider request, which is on the flow when mitmproxy's ServerPlayback looks; the
replayed answer is translated whole by `Translate`, placed after ServerPlayback and Save.

This file is only mitmproxy glue; the work happens in the `llmrelay` package beside it.
"""

from __future__ import annotations

import asyncio
import copy
import ctypes
import gc
import ipaddress
import logging
import operator
import time
import types
from pathlib import Path

import orjson
from mitmproxy import addonmanager, contentviews, ctx, exceptions, http
from mitmproxy.addons import asgiapp
from mitmproxy.net import encoding
from mitmproxy.net.http import url
from mitmproxy.net.http.status_codes import RESPONSES
from mitmproxy.proxy.mode_specs import ProxyMode

import both_sides
from both_sides import SIDE, BothSides
from llmrelay import claude_settings, diagnose, gate, oauth, relay, replay, usage
from llmrelay.answer import Answer
from llmrelay.translate import anthropic_compat
from llmrelay.config import Config, ConfigError, Timeouts, load_config
from llmrelay.errors import scrub, scrub_bytes
from llmrelay.loopback import Loopback, Sink
from llmrelay.upstream import Call, Upstream

log = logging.getLogger("llmrelay")

Exchange = relay.Answers  # any provider kind's exchange, or passthrough's
REDACTED = b"[REDACTED]"
# Request headers that carry the client's credentials: never kept on a flow.
CLIENT_SECRETS = frozenset({b"authorization", b"x-api-key", b"cookie", gate.KEY_HEADER.encode()})


# (Plain classes: a dataclass cannot be made in a mitmproxy script, which is not in sys.modules.)


class Pending:
    """A request for a provider (or the reverse-mode target), ready to go: sent at once when
    taken early, or after ServerPlayback has had the chance to answer it."""

    __slots__ = ("exchange", "call", "secrets", "account", "fallbacks")

    def __init__(self, exchange: Exchange, call: Call, secrets: tuple[str, ...], account: oauth.Account | None = None,
                 fallbacks: list | None = None) -> None:
        self.exchange, self.call, self.secrets, self.account = exchange, call, secrets, account
        self.fallbacks = fallbacks or []


class InFlight:
    """A flow on the relay's own upstream leg, and the request it shows once answered (the
    provider request; the client's own for passthrough and the relay's own replies).
    `answer` is the job writing the client's answer, or the relay's own reply, written whole;
    `looped`: the client's answer reaches mitmproxy over the loopback leg (else it is handed
    over whole, in `Translate`)."""

    __slots__ = ("flow", "answer", "request", "looped")

    def __init__(self, flow: http.HTTPFlow, answer: Answer | relay.Reply, request: tuple, looped: bool = True) -> None:
        self.flow, self.answer, self.request, self.looped = flow, answer, request, looped


class Early:
    """A request taken as it arrives (`Adapter.requestheaders`), and its loopback job:
    mitmproxy reads from its sink from the request's head on; its answer begins once the body
    is in. It keeps what the client sent: where to (`target`), its headers (lower-case names),
    the request as its flow shows it (`client`, credentials redacted) and the body so far."""

    __slots__ = ("sink", "answer", "path", "cancelled", "expected", "target", "headers", "client", "chunks", "size")

    def __init__(self, expected: int, target: tuple, headers: dict[str, str], client: tuple) -> None:
        self.sink = Sink()
        self.answer: Answer | None = None
        self.path = ""
        self.cancelled = False
        self.expected, self.target, self.headers, self.client = expected, target, headers, client
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)

    def body(self) -> bytes:
        body = b"".join(self.chunks)
        self.chunks = []
        return body

    def cancel(self) -> None:
        self.cancelled = True
        if self.answer is not None:
            self.answer.cancel()


class Adapter:
    def __init__(self) -> None:
        self.config: Config | None = None
        self.pending: dict[str, Pending] = {}
        self.in_flight: dict[str, InFlight] = {}
        self.early: dict[str, Early] = {}  # taken as they arrive, their bodies still coming
        self.early_ok = False  # whether requests may be taken as they arrive (`requestheaders`)
        self.loaded_seen: tuple = ()  # the addons and scripts' modules when early_ok was worked out
        self.accounts: dict[tuple[str, str, str], oauth.Account] = {}
        self.replays: dict[str, Exchange] = {}  # answered by ServerPlayback, translated whole by Translate
        self.unsent: dict[str, http.Response] = {}  # JSON answers, held while Save records the provider's
        self.late = Translate(self)
        self.usage_log: usage.UsageLog | None = None
        self.view = BothSides()
        self.loopback = Loopback()
        self.upstream: Upstream | None = None
        self.loopback_started: asyncio.Task | None = None
        self.started = False
        self._trim: asyncio.TimerHandle | None = None
        self._finished = 0  # bytes in the bodies of flows finished since the last collection
        self._collect_at = 0.0  # (monotonic) the next collection, not before
        self._watch: asyncio.TimerHandle | None = None
        self._report: asyncio.Task | None = None
        self.claude: claude_settings.Session | None = None
        self.spending: usage.Spending | None = None  # for route budgets
        self.config_stamp: tuple[int, int] | None = None

    def load(self, loader) -> None:
        loader.add_option("adapter_config", str, "config.yaml", "Path of the llmrelay configuration file.")
        loader.add_option("adapter_data_dir", str, "~/.llmrelay", "Where llmrelay keeps its usage records.")
        loader.add_option("adapter_usage", bool, True, "Append one usage record per routed request to <data dir>/usage/.")
        loader.add_option("adapter_claude_settings", bool, False,
                          "Point Claude Code's settings (~/.claude/settings.json) at this relay while it runs, and restore them after.")
        loader.add_option("adapter_panels", bool, False, "Print a panel of each translated exchange in the terminal.")
        loader.add_option("adapter_stream_idle_timeout_ms", int, 300_000,
                          "CLAUDE_STREAM_IDLE_TIMEOUT_MS written with adapter_claude_settings; 0 leaves Claude Code's own.")
        both_sides.register(self.view)

    def configure(self, updated: set[str]) -> None:
        if updated & {"adapter_data_dir", "adapter_usage"}:
            if self.usage_log is not None:
                self.usage_log.close()
            self.usage_log = usage.UsageLog(ctx.options.adapter_data_dir) if ctx.options.adapter_usage else None
        if "adapter_config" in updated:
            try:
                config = load_config(ctx.options.adapter_config)
            except ConfigError as e:
                return self._refuse(str(e))
            exposed = sorted(_listening_beyond_loopback())
            if exposed and not config.relay.inbound_keys:
                return self._refuse(
                    f"llmrelay: refusing to listen on {', '.join(exposed)} without inbound keys: anyone who can reach "
                    "it could spend your provider keys. Listen on 127.0.0.1 (--listen-host 127.0.0.1) or set relay.keys."
                )
            self.config = config
            self.config_stamp = _stamp(ctx.options.adapter_config)
            routes = len(config.models.routes)
            log.info(f"llmrelay: {len(config.providers)} provider(s), {routes} route(s) from {ctx.options.adapter_config}")
        elif updated & {"listen_host", "mode"} and self.config is not None:
            exposed = sorted(_listening_beyond_loopback())
            if exposed and not self.config.relay.inbound_keys:
                return self._refuse(
                    f"llmrelay: refusing to listen on {', '.join(exposed)} without inbound keys: anyone who can reach "
                    "it could spend your provider keys. Listen on 127.0.0.1 (--listen-host 127.0.0.1) or set relay.keys."
                )
        if updated & {"ssl_insecure", "ssl_verify_upstream_trusted_ca"} or self.upstream is None:
            self.upstream = Upstream(verify=not ctx.options.ssl_insecure, ca_file=ctx.options.ssl_verify_upstream_trusted_ca)
        self.early_ok = self._may_take_early()

    def _may_take_early(self) -> bool:
        """Requests are taken as they arrive unless something needs each one whole on its flow
        (`NOT_EARLY_OPTIONS`, another addon's `request` hook), or its head as the client sent
        it (the `requestheaders` hook of an addon after this one, which would see the loopback
        head instead)."""
        self.loaded_seen = loaded = _loaded()
        if any(getattr(ctx.options, name, None) for name in NOT_EARLY_OPTIONS):
            return False
        after = False
        for addon in loaded:
            if addon is self:
                after = True
            elif addon is not self.late and (not type(addon).__module__.startswith("mitmproxy.") or type(addon) in HOSTED_APPS):
                if _hooks(addon, "request") or (after and _hooks(addon, "requestheaders")):
                    return False
        return True

    def _refuse(self, message: str) -> None:
        """A setting the relay cannot run with. At start-up: one clear line, no listening
        socket, and mitmdump exits with an error; later (an option changed in mitmweb): the
        change is refused and rolled back."""
        if self.started:
            raise exceptions.OptionsError(message)
        log.error(message)
        ctx.options.update(server=False)  # never bind: nobody gets in while mitmdump exits

    def running(self) -> None:
        self.started = True
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
        self.early_ok = self._may_take_early()  # (the other scripts are loaded now)
        # The Host the client sent is kept for the DNS-rebinding check: every request the relay
        # sends on, it sends itself, with the provider's own Host.
        ctx.options.update(keep_host_header=True)
        self.loopback_started = asyncio.get_running_loop().create_task(self.loopback.start())
        self._report = asyncio.get_running_loop().create_task(self._diagnose())
        if ctx.options.adapter_claude_settings and self.config is not None:
            self._point_claude_code_here()
        self._watch = asyncio.get_running_loop().call_later(RELOAD_EVERY, self._reload)

    def _point_claude_code_here(self) -> None:
        """Claude Code's settings get this relay's URL and a token (so it asks no question
        about a key and uses no Anthropic login) until the relay stops; `done` puts back what
        was there, and a relay that was killed is undone by the next start."""
        url = claude_settings.relay_url(ctx.options.listen_host, ctx.options.listen_port or 8080)
        token = min(self.config.relay.inbound_keys, default=None)
        idle = ctx.options.adapter_stream_idle_timeout_ms or None
        session = claude_settings.Session(claude_settings.relay_env(url, token, idle))
        try:
            session.start(signals=())  # mitmproxy's loop owns SIGINT and SIGTERM: done() restores
        except claude_settings.SettingsError as e:
            log.warning(f"llmrelay: Claude Code's settings left alone: {e}")
            return
        self.claude = session
        log.info(f"llmrelay: Claude Code's settings ({session.settings.path}) point at {url} until the relay stops")
        # A closed terminal (SIGHUP) shuts down like Ctrl-C, so the settings come back.
        claude_settings.hangup_shuts_down(asyncio.get_running_loop(), ctx.master.shutdown)

    async def _diagnose(self) -> None:
        """The start-up report (`llmrelay.diagnose`), in the terminal, once the relay listens."""
        config = self.config
        if config is None:
            return
        host = ctx.options.listen_host or "127.0.0.1"
        url = f"http://{'127.0.0.1' if _is_loopback(host) else host}:{ctx.options.listen_port or 8080}"
        try:
            lines = diagnose.static(config, url, data_dir=Path(ctx.options.adapter_data_dir).expanduser())
            if not getattr(ctx.options, "server_replay", None):  # replaying offline: the providers are not to be asked
                lines += await diagnose.probe(config, self._get)
        except Exception:  # a report must never stop the relay
            log.exception("llmrelay: the start-up report failed")
            return
        for line in lines:
            log.info(f"llmrelay: {scrub(line, config.secrets)}")

    def _reload(self) -> None:
        """The configuration file, read again when it changes: new requests take the new one,
        requests in flight finish on the one they started with (they hold their own route and
        provider). An edit that does not load is reported and the last good one kept."""
        path = ctx.options.adapter_config
        stamp = _stamp(path)
        if stamp is not None and stamp != self.config_stamp:
            self.config_stamp = stamp
            try:
                config = load_config(path)
            except ConfigError as e:
                log.warning(f"llmrelay: {path} changed, but the change cannot be used; the last good configuration stays:\n{e}")
            else:
                exposed = sorted(_listening_beyond_loopback())
                if exposed and not config.relay.inbound_keys:
                    log.warning(f"llmrelay: {path} changed, but it has no inbound keys while the relay listens on "
                                f"{', '.join(exposed)}; the last good configuration stays")
                else:
                    self.config = config
                    log.info(f"llmrelay: reloaded {path}: {len(config.providers)} provider(s), {len(config.models.routes)} route(s)")
        self._watch = asyncio.get_running_loop().call_later(RELOAD_EVERY, self._reload)

    def done(self) -> None:
        if self.claude is not None:  # first: whatever fails later, the user's settings come back
            self.claude.stop()
            self.claude = None
        if self._watch is not None:
            self._watch.cancel()
        if self._report is not None:
            self._report.cancel()
        # Flows still in flight are saved by Save as they stand: put them back first.
        for flight in list(self.in_flight.values()):
            _restore(flight)
        self.loopback.close()
        if self.upstream is not None:
            self.upstream.close()
        if self.usage_log is not None:
            self.usage_log.close()
        if self.late in ctx.master.addons.chain:
            ctx.master.addons.remove(self.late)
        contentviews.remove(self.view)

    # --- flow hooks -------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """A request with a body is taken as it arrives, unless something needs it whole on
        its flow (`_may_take_early`): it is put on the loopback leg at once, mitmproxy hands its
        body to `collect` as it reads it, and the provider request leaves the moment the last
        byte is in, before the `request` hooks run; the answer then reaches the client before
        the `response` hooks run. That is how plain mitmdump passes a streamed request and
        answer: mitmproxy's hooks, each a walk through every addon, run while the provider
        works and while the client reads, not before."""
        req = flow.request
        if not _same(_loaded(), self.loaded_seen):  # an addon or script loaded or reloaded since
            self.early_ok = self._may_take_early()
        if not self.early_ok or self.config is None or flow.response is not None or req.method != "POST" or not self.loopback.port:
            return
        if _replaying():  # (recordings loaded by a command: no option or hook says so)
            return
        headers = _lower(req.headers)
        try:
            expected = int(headers.get("content-length", ""))
        except ValueError:
            return  # (a chunked upload: taken in `request`)
        if expected <= 0:
            return
        headers["host"] = req.host_header or ""
        data = req.data
        client = (data.scheme, data.host, data.port, data.path, data.authority, _redacted(data.headers.fields, CLIENT_SECRETS))
        job = Early(expected, (req.scheme, req.host, req.port, req.path), headers, client)

        def collect(chunk: bytes) -> bytes:
            if chunk:
                job.add(chunk)
            elif job.size == job.expected and job.answer is None:  # the end of the body (an empty HTTP/2 frame is not)
                self._arrived(flow, job, job.body())
            return b""  # nothing goes to the loopback server but the head

        req.stream = collect
        job.path = self.loopback.add(job)
        self.early[flow.id] = job
        authority = f"127.0.0.1:{self.loopback.port}"
        data.scheme, data.host, data.port, data.path = b"http", "127.0.0.1", self.loopback.port, job.path.encode()
        if data.authority:
            data.authority = authority.encode()
        head = [(b"host", authority.encode()), (b"content-length", b"0")]
        if "expect" in headers:  # mitmproxy answers a 100-continue by what the head says, then drops it
            head.append((b"expect", headers.pop("expect").encode()))
        data.headers = http.Headers(tuple(head))

    def _arrived(self, flow: http.HTTPFlow, job: Early, body: bytes) -> None:
        """The body of a request taken early is in: its answer begins."""
        if job.cancelled or flow.error is not None or not flow.live:  # killed, or gone: `error` tidies up
            return
        self.early.pop(flow.id, None)
        try:
            taken, shown = self._take(flow.request.method, job.target, body, job.headers, recording=False, authority=bool(job.client[4]))
            if isinstance(taken, Pending):
                job.answer = answer = self._answer(taken, job.sink)
                if shown is None:  # passed through: the flow shows the client's request
                    shown = (*job.client, body)
                else:
                    flow.metadata[SIDE] = {"client_request": body}
                self.in_flight[flow.id] = InFlight(flow, answer, shown)
                answer.start()
                return
        except Exception:  # (this runs inside mitmproxy's reading of the body: nothing may escape)
            log.exception("llmrelay: taking a request failed")
            if job.answer is not None:
                job.answer.cancel()
            if job.sink.started:
                return
            taken = relay.error_reply(500, "the relay failed to read the request; its log has the details")
        self.in_flight[flow.id] = InFlight(flow, taken, (*job.client, body))
        job.sink.head(taken.status, taken.headers, len(taken.body))
        job.sink.write(taken.body)
        job.sink.end()

    def request(self, flow: http.HTTPFlow) -> None:
        early = self.early.get(flow.id)
        if early is not None:
            # Taken early, but its body did not end at its Content-Length (an HTTP/2 request
            # ended with its headers, or one whose Transfer-Encoding won): read as it came.
            return self._arrived(flow, early, early.body() or flow.request.raw_content or b"")
        if self.config is None or flow.response is not None or flow.id in self.in_flight:
            return
        req = flow.request
        headers = _lower(req.headers)
        headers["host"] = req.host_header or ""
        client_body = req.raw_content or b""
        # Recording or replaying: the flow must match its recording on another day (`Ask.canonical`).
        recording = bool(getattr(ctx.options, "save_stream_file", None)) or _replaying()
        target = (req.scheme, req.host, req.port, req.path)
        taken, shown = self._take(req.method, target, client_body, headers, recording=recording, authority=bool(req.data.authority))
        if isinstance(taken, relay.Reply):
            flow.response = http.Response.make(taken.status, taken.body, taken.headers)
        else:
            self.pending[flow.id] = taken
            if shown is not None:
                # The flow shows the provider request (and ServerPlayback matches it): new headers,
                # raw content and the target written straight into the request's data, much
                # cheaper than the setters, which rescan and rewrite the headers on each call.
                _show(req, shown)
                # The client's side, for mitmweb: the flow itself holds the provider's side.
                flow.metadata[SIDE] = {"client_request": client_body}  # bytes: kept, not copied
                return
        req.headers.fields = _redacted(req.headers.fields, CLIENT_SECRETS)

    def _take(self, method: str, target: tuple[str, str, int, str], body: bytes, headers: dict[str, str], *,
              recording: bool, authority: bool) -> tuple[relay.Reply | Pending, tuple | None]:
        """What the relay makes of a client's request: a reply of its own, or a `Pending`
        request for a provider (or for the reverse-mode target), with the request its flow
        shows (None: the client's own). `authority`: the client names the host in :authority."""
        try:
            decoded = _decoded(body, headers.get("content-encoding"))
        except ValueError:
            return relay.error_reply(400, "the request body could not be decoded from its content-encoding"), None
        path = target[3]
        outcome = relay.handle(self.config, method, path, decoded, headers, canonical=recording)
        if isinstance(outcome, relay.Pass):
            return self._pass(method, target, headers, decoded, outcome.stream), None
        if isinstance(outcome, relay.Reply):
            return outcome, None
        refusal = self._over_budget(outcome)
        if refusal is not None:
            return refusal, None
        try:
            call, account = self._prepare(outcome)
        except ValueError as e:  # (the configuration checks names; this is the last guard)
            return relay.error_reply(500, f"llmrelay: {e}"), None
        pending = Pending(outcome.exchange, call, self.config.secrets, account, outcome.fallbacks)
        scheme, host, port, provider_path = outcome.target
        hostport = url.hostport(scheme, host, port)
        shown = _sized(outcome.headers, outcome.body)
        if recording:
            # Recording or replaying: the flow carries what makes this request the same on
            # another day (`llmrelay.replay`), for `--replay` to match on.
            found = replay.key(decoded) if path.startswith("/v1/messages") else None
            if found:
                shown = {**shown, replay.HEADER: found}
        secret = {name.encode() for name in outcome.exchange.secret_headers}
        fields = _redacted(_fields(shown, host=hostport), secret)
        authority_shown = hostport.encode() if authority else b""  # (HTTP/2 and 3: :authority stands for Host)
        return pending, (scheme.encode(), host, port, provider_path.encode(), authority_shown, fields, outcome.body)

    def _over_budget(self, forward: relay.Forward) -> relay.Reply | None:
        """A route that has spent its daily budget is refused, in the client's protocol."""
        route = forward.exchange.route
        if route.budget is None:
            return None
        if self.spending is None or self.spending.prices is not self.config.prices:
            self.spending = usage.Spending(ctx.options.adapter_data_dir if ctx.options.adapter_usage else None, self.config.prices)
        reached = self.spending.over(route.provider, route.model, route.budget)
        if reached is None:
            return None
        message = f"{route.provider}:{route.model} has used {reached} (its route's budget); it resets at 00:00 UTC"
        headers = {"retry-after": str(usage.seconds_to_midnight()), "x-should-retry": "false"}
        front = getattr(forward.exchange, "front", None)
        if front is not None:
            return relay.Reply(*front.error_reply(429, message, headers))
        return relay.error_reply(429, message, headers)

    def _prepare(self, forward: relay.Forward) -> tuple[Call, oauth.Account | None]:
        """The call that sends a provider request, and the account that signs it."""
        scheme, host, port, path = forward.target
        route = forward.exchange.route
        provider = self.config.providers[route.provider]
        call = Call("POST", f"{scheme}://{url.hostport(scheme, host, port)}{path}", list(forward.headers.items()),
                    forward.body, provider.timeouts, forward.label or route.provider, verified=bool(forward.account))
        return call, self._account(*forward.account) if forward.account else None

    def _account(self, name: str, issuer: str) -> oauth.Account:
        """The signed-in account a provider uses, one object per account: it keeps the
        account's token fresh, and refreshes it once for all the requests waiting on it."""
        key = (name, issuer, ctx.options.adapter_data_dir)
        account = self.accounts.get(key)
        if account is None:
            account = self.accounts[key] = oauth.Account(name, Path(ctx.options.adapter_data_dir).expanduser(), issuer=issuer, post=self._post)
        return account

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """A POST for the token issuer, over the relay's own upstream leg."""
        return await self._fetch(Call("POST", url, list(headers.items()), body, ISSUER_TIMEOUTS, "the sign-in issuer", verified=True))

    async def _get(self, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """A GET for the start-up report."""
        return await self._fetch(Call("GET", url, list(headers.items()), b"", ISSUER_TIMEOUTS, "start-up check"))

    async def _fetch(self, call: Call) -> tuple[int, bytes]:
        """A small request of the relay's own, its answer read whole within the timeout."""
        async with asyncio.timeout(call.timeouts.first_byte):
            response = await self.upstream.open(call)
            async with response:
                chunks = []
                while chunk := await response.readany():
                    chunks.append(chunk)
        return response.status, b"".join(chunks)

    def _pass(self, method: str, target: tuple[str, str, int, str], headers: dict[str, str], body: bytes, stream: bool) -> Pending:
        """Passthrough: on to the reverse-mode target with the client's own credentials,
        sent by the relay like any other request (so its failures are Anthropic errors too)."""
        scheme, host, port, path = target
        keys = self.config.relay.inbound_keys
        carrier = gate.inbound_key(headers, keys) if keys else None
        sent = [(k, v) for k, v in headers.items() if k not in ("host", "content-encoding", gate.KEY_HEADER) and k != carrier]
        credentials = [headers[k][7:] if k == "authorization" else headers[k] for k in ("authorization", "x-api-key") if k in headers and k != carrier]
        secrets = (*self.config.secrets, *credentials)
        if path.startswith("/v1/messages") and anthropic_compat.has_foreign_thinking(body):
            body = anthropic_compat.without_foreign_thinking(body)  # Anthropic would refuse the request
        exchange = relay.PassExchange(client_stream=stream, provider=types.SimpleNamespace(host=host))
        call = Call(method, f"{scheme}://{url.hostport(scheme, host, port)}{path}", sent, body, Timeouts(), host)
        return Pending(exchange, call, secrets)

    def _answer(self, pending: Pending, sink: Sink | None = None) -> Answer:
        return Answer(pending.exchange, pending.call, self.upstream, ping_every=self.config.relay.ping_interval,
                      secrets=pending.secrets, account=pending.account, fallbacks=pending.fallbacks, prepare=self._prepare,
                      cool_down=self.config.relay.cool_down, sink=sink)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        flight = self.in_flight.get(flow.id)
        if flight is None or not flight.looped or flow.response is None:
            return
        # Made by the relay: passed on as it comes (the `response` hooks run after the client
        # has it all). The first bytes of a stream tell the answer they are on their way.
        response, answer = flow.response, flight.answer
        if not isinstance(answer, Answer) or not answer.exchange.client_stream:
            response.stream = True
            return

        def first(data: bytes) -> bytes:
            response.stream = True
            answer.delivered()
            return data

        response.stream = first

    def response(self, flow: http.HTTPFlow) -> None:
        """Runs before Save: the flow is put back to the exchange with the provider."""
        flight = self.in_flight.pop(flow.id, None)
        if flight is None:
            return
        answer = flight.answer
        _restore(flight)
        response = flow.response
        if isinstance(answer, relay.Reply):  # the relay's own, to a request taken early
            if response.raw_content is None:  # (streamed on: kept for the flow)
                response.raw_content = answer.body
            return
        if answer.provider_status is not None:
            # A new response object: the one mitmproxy is sending to the client keeps its own
            # head, by which mitmproxy ends the message it streamed.
            fields = _redacted(tuple(_scrub_fields(answer.provider_headers, answer.secrets)), {b"set-cookie"})
            flow.response = _shown(response, answer.provider_status, fields, b"".join(answer.provider_raw))  # (scrubbed as read)
            if flight.looped:
                if SIDE in flow.metadata:
                    flow.metadata[SIDE]["client_response"] = b"".join(answer.sent)
            else:  # not sent yet: Translate gives it back after Save
                self.unsent[flow.id] = response
        elif response.raw_content is None:  # the provider never answered: the flow shows the relay's own answer
            response.raw_content = b"".join(answer.sent)
        self.account(flow, answer.exchange, answer.status or response.status_code, answer.error_type)
        if sum(map(len, answer.provider_raw)) > BIG_ANSWER:
            self._give_back_memory()

    def _collect_after(self, flow: http.HTTPFlow) -> None:
        """A finished flow, bodies and all, is freed only by a full collection (mitmproxy's
        objects for a flow refer to each other), and those come seldom: after a few dozen
        Responses answers (each echoes the 80 KB request three times) the dead flows held
        ~20 MB. One runs as soon as the flows finished since the last one held COLLECT_EVERY
        bytes, but never more than COLLECT_SHARE of the time: in mitmdump it walks only what
        `gc.freeze` left (~0.7 ms), in mitmweb every flow the view keeps."""
        side = flow.metadata.get(SIDE) or {}
        response = flow.response.raw_content if flow.response is not None else None
        self._finished += len(flow.request.raw_content or b"") + len(response or b"") + sum(len(v) for v in side.values() if v)
        if self._finished >= COLLECT_EVERY and time.monotonic() >= self._collect_at:
            self._finished = 0
            asyncio.get_running_loop().call_soon(self._collect)

    def _collect(self) -> None:
        start = time.monotonic()
        gc.collect()
        now = time.monotonic()
        self._collect_at = now + (now - start) / COLLECT_SHARE

    def _give_back_memory(self) -> None:
        """After a big answer, once things are quiet: collect the flow's cycles and hand the
        freed pages back to the system (glibc keeps them otherwise: RSS stayed at ~540 MB
        after twelve 20 MB answers)."""
        if self._trim is not None:
            self._trim.cancel()
        self._trim = asyncio.get_running_loop().call_later(2.0, _release_memory)

    def error(self, flow: http.HTTPFlow) -> None:
        self._end_failed(flow)
        self._collect_after(flow)

    def _end_failed(self, flow: http.HTTPFlow) -> None:
        self.pending.pop(flow.id, None)
        self.unsent.pop(flow.id, None)
        early = self.early.pop(flow.id, None)
        if early is not None:  # gone before its body was in: the flow shows what came of it
            self.loopback.discard(early.path)
            early.cancel()
            _show(flow.request, (*early.client, early.body()))
        flight = self.in_flight.pop(flow.id, None)
        if flight is None:
            return
        _restore(flight)
        answer = flight.answer
        if isinstance(answer, Answer):  # (not the relay's own reply)
            answer.cancel()
            if answer.client_gone or (flow.error is not None and "client disconnected" in flow.error.msg.lower()):
                self.account(flow, answer.exchange, 499, "client_disconnected")
            else:
                self.account(flow, answer.exchange, 502, answer.error_type or "connection_error")

    def account(self, flow: http.HTTPFlow, exchange: Exchange, status: int, error_type: str | None, *, replayed: bool = False) -> None:
        if isinstance(exchange, relay.PassExchange) or exchange.count_tokens_body is not None:
            return
        entry = usage.record(exchange, status, error_type, replayed=replayed)
        flow.comment = usage.summary(entry)  # the one-line summary mitmweb shows
        if getattr(ctx.options, "adapter_panels", False):
            import panels  # (rich is loaded only when panels are asked for)

            side = flow.metadata.get(SIDE, {})
            shown = side.get("client_response") or (self.unsent[flow.id].raw_content if flow.id in self.unsent else None)
            panels.show(entry, side.get("client_request"), shown)
        elif getattr(ctx.options, "termlog_verbosity", "info") in ("info", "debug"):  # (not at -q: logging costs each request)
            log.info(f"llmrelay: {flow.comment}")  # and the terminal
        if self.spending is not None:
            self.spending.add(entry)
        if self.usage_log is not None:
            try:
                self.usage_log.write(entry)
            except OSError as e:
                log.warning(f"llmrelay: cannot write usage records: {e}")


class Translate:
    """Runs after ServerPlayback and Save: requests it did not answer go to the relay's own
    upstream leg; answers it replayed are translated whole."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter

    async def request(self, flow: http.HTTPFlow) -> None:
        adapter = self.adapter
        pending = adapter.pending.pop(flow.id, None)
        if pending is None:
            return
        if flow.response is not None:  # replayed: translated in `response`
            adapter.replays[flow.id] = pending.exchange
            return
        answer = adapter._answer(pending)
        req = flow.request
        data = req.data
        shown = (data.scheme, data.host, data.port, data.path, data.authority, req.headers.fields, req.raw_content)
        adapter.in_flight[flow.id] = InFlight(flow, answer, shown, looped=pending.exchange.client_stream)
        task = answer.start()
        if not pending.exchange.client_stream:
            # Nothing to stream: the whole answer becomes the flow's response right here.
            await task
            sink = answer.sink
            flow.response = http.Response.make(sink.status, b"".join(sink.body), sink.headers)
            return
        if not adapter.loopback.port:
            await adapter.loopback_started
        path = adapter.loopback.add(answer)
        authority = f"127.0.0.1:{adapter.loopback.port}"
        data.scheme, data.host, data.port, data.path = b"http", "127.0.0.1", adapter.loopback.port, path.encode()
        if data.authority:
            data.authority = authority.encode()
        req.headers = http.Headers(((b"host", authority.encode()), (b"content-length", b"0")))
        req.raw_content = b""

    def response(self, flow: http.HTTPFlow) -> None:
        self._finish(flow)
        self.adapter._collect_after(flow)

    def _finish(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        unsent = self.adapter.unsent.pop(flow.id, None)
        if unsent is not None:  # Save has the provider's answer: the client gets its own
            if SIDE in flow.metadata:
                flow.metadata[SIDE]["provider_response"] = response.raw_content
            flow.response = unsent
            return
        exchange = self.adapter.replays.pop(flow.id, None)
        if exchange is None or response is None:
            return
        provider_side = response.content or b""
        reply = exchange.reply(response.status_code, _lower(response.headers), provider_side)
        if SIDE in flow.metadata:
            flow.metadata[SIDE]["provider_response"] = provider_side
        response.status_code = reply.status
        response.reason = RESPONSES.get(reply.status, "")
        response.headers = http.Headers(_fields(_sized(reply.headers, reply.body)))
        response.raw_content = reply.body
        error_type = orjson.loads(reply.body).get("error", {}).get("type") if reply.status >= 400 else None
        self.adapter.account(flow, exchange, reply.status, error_type, replayed=True)


def _restore(flight: InFlight) -> None:
    """The flow shows the request it stands for again, not the loopback leg's."""
    _show(flight.flow.request, flight.request)


def _shown(sent: http.Response, status: int, fields: tuple, body: bytes) -> http.Response:
    """The provider's answer as its flow shows it, in a response object of its own, with the
    timing of the one mitmproxy sent. Copied, not made: making one type-checks every field
    (mitmproxy does under `__debug__`), five times the cost."""
    shown = copy.copy(sent)
    shown.data = data = copy.copy(sent.data)
    data.status_code, data.reason, data.headers = status, RESPONSES.get(status, "").encode(), http.Headers(fields)
    data.content, data.trailers = body, None
    shown.stream = False
    return shown


def _show(req: http.Request, shown: tuple) -> None:
    """`shown`: scheme, host, port, path, authority, header fields and raw body."""
    data = req.data
    data.scheme, data.host, data.port, data.path, data.authority, fields, data.content = shown
    req.stream = False
    req.headers.fields = fields


# What keeps requests from being taken early, when set: recording and replaying, mitmproxy's
# own rewriting of requests in its `request` hooks and, after this addon's, in its
# `requestheaders` hooks (`modify_headers`, `upstream_auth`), interception, and the size limit
# it checks on answers (the relay's own JSON answers included, once they come over the loopback).
NOT_EARLY_OPTIONS = ("save_stream_file", "server_replay", "modify_body", "map_local", "map_remote", "block_list", "intercept",
                     "stickyauth", "stickycookie", "anticache", "anticomp", "body_size_limit", "modify_headers", "upstream_auth")

# mitmproxy's own addons are judged by their options, but these two are a user's web app
# served from a script, whose `request` hook answers what it hosts.
HOSTED_APPS = (asgiapp.ASGIApp, asgiapp.WSGIApp)


def _listening_beyond_loopback() -> set[str]:
    hosts = set()
    for spec in ctx.options.mode:
        try:
            host = ProxyMode.parse(spec).listen_host(ctx.options.listen_host)
        except ValueError:
            continue
        if not _is_loopback(host.strip("[]")):
            hosts.add(host or "every interface")
    return hosts


BIG_ANSWER = 4 << 20  # bytes
COLLECT_EVERY = 8 << 20  # bytes
COLLECT_SHARE = 0.02  # of the time, at most, spent on those collections
RELOAD_EVERY = 1.0  # seconds between looks at the configuration file


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size
ISSUER_TIMEOUTS = Timeouts(connect=10, first_byte=30, idle=30)


def _release_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to hand back this way


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "" (every interface) or a name


def _decoded(body: bytes, content_encoding: str | None) -> bytes:
    if not content_encoding or content_encoding.strip().lower() == "identity" or not body:
        return body
    return encoding.decode(body, content_encoding.strip().lower())


def _redacted(fields: tuple[tuple[bytes, bytes], ...], names: set[bytes] | frozenset[bytes]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((name, REDACTED if name.lower() in names else value) for name, value in fields)


def _scrub_fields(fields, secrets: tuple[bytes, ...]):
    return ((name, scrub_bytes(value, secrets)) for name, value in fields)


def _fields(headers: dict[str, str], **more: str) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((name.encode(), value.encode()) for name, value in (headers | more).items())


def _sized(headers: dict[str, str], body: bytes) -> dict[str, str]:
    """With the body set as raw content, its length is ours to state."""
    return headers | {"content-length": str(len(body))}


def _lower(headers: http.Headers) -> dict[str, str]:
    """Header names in lower case → values; read from the raw fields, which is much faster
    than going through the Headers mapping. A repeated header keeps its last value."""
    return {name.decode("latin-1").lower(): value.decode("utf-8", "surrogateescape") for name, value in headers.fields}


def _loaded() -> tuple:
    """Every addon loaded now, in the order their hooks run, the scripts' modules (`-s`) and
    what they hold included: an addon added while mitmproxy runs, or a script's hot reload (a
    new module in its place), tells no other addon."""
    return tuple(addonmanager.traverse(ctx.master.addons.chain))


def _same(now: tuple, then: tuple) -> bool:
    """The same addons, object for object (an addon's own `__eq__` is not asked)."""
    return len(now) == len(then) and all(map(operator.is_, now, then))


def _hooks(addon: object, name: str) -> bool:
    """Whether mitmproxy calls `name` on the addon: a module a script imports under a hook's
    name (`from flask import request`) is not a hook, as mitmproxy has it."""
    hook = getattr(addon, name, None)
    return callable(hook) and not isinstance(hook, types.ModuleType)


def _replaying() -> bool:
    """Whether recorded answers are being replayed: `--server-replay`, or recordings loaded by
    a command (`replay.server` in mitmweb or the console), which sets no option."""
    if getattr(ctx.options, "server_replay", None):
        return True
    playback = ctx.master.addons.get("serverplayback")
    return bool(getattr(playback, "flowmap", None))


addons = [Adapter()]
