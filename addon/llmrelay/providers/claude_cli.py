"""Provider kind `claude-cli`: the Claude Code CLI as a model. Each request runs one
`claude -p` process; its stream-json output becomes one Anthropic message stream, which the
`anthropic` kind's machinery then passes to a streaming client or rebuilds for a JSON one.

The conversation goes in as ONE stream-json user line, earlier turns rendered into it as a
transcript, because the CLI takes each input line as a new prompt: measured with 2.1.330,
two user lines run two model turns with two `result` lines (the model answers the first
line itself, and the client's own earlier answers are lost), and `assistant` input lines are
accepted but land before the first user message. `--resume` with a made-up session file
would depend on the CLI's private on-disk format. So one line, one model turn loop, one
`result`; the client's earlier answers reach the model word for word.

Rules, request → CLI:
- `<binary> -p --output-format stream-json --verbose --include-partial-messages
  --input-format stream-json --no-session-persistence --model=<route model>`, then
  `--allowedTools=a,b` (when configured), `--max-turns=N`, `--permission-mode=M`, and the
  client's system prompt with `--append-system-prompt=` (or `--system-prompt=` with
  `system_prompt: replace`); values in the equals form, so one starting with `--` stays a
  value; a prompt over 100 KB goes in a file (`--…-prompt-file=`), as one argument may hold
  at most 128 KB on Linux; every request is its own session, so none is kept on disk;
- `system`, and `role: "system"` messages inside `messages`, → the system prompt; a Claude
  Code client's `x-anthropic-billing-header:` line is dropped (the CLI sends its own);
- the last message (a user turn) → the line's content, text, images and documents as they
  are; earlier turns → a text block before it, `<user>`/`<assistant>` sections oldest first,
  with their images and documents in place; `tool_use` → `<tool_call name="NAME">INPUT</tool_call>`,
  `tool_result` → `<tool_result id="…">` and its content; thinking → dropped (the
  API drops earlier turns' thinking too); a last message that is not a user turn → 400
  (the CLI cannot continue a prefilled answer);
- the client's own tools (an OpenAI client's, say) → described in the system prompt with
  the call format of `translate.tool_text`, Claude Code's built-in tools off (`--tools ""`),
  and the model's calls read back out of its text as `tool_use` blocks for the client;
  without client tools the CLI uses its own (`allowed_tools`); max_tokens, sampling and
  thinking settings are not passed;
- the environment is the relay's plus `env`, plus a marker naming the run (to find every
  process it started) and an `ANTHROPIC_CUSTOM_HEADERS` line naming the provider: a CLI
  whose base URL leads back to this relay and whose model routes to claude-cli again gets a
  clear error instead of waiting on itself in the queue;
- `cwd` (expanded), or a fresh temporary directory, removed afterwards.

Rules, CLI output → the client's stream:
- `stream_event` lines (raw events of the CLI's own API calls) → one message: the first
  `message_start` only; text, thinking and redacted thinking blocks renumbered
  consecutively across the CLI's turns, their deltas passed as they arrive; the CLI's own
  `tool_use`/server-tool blocks and tool results → hidden, or with `show_tools` a text block
  `\\n[Bash: ls]\\n` once the call's input is complete; per-turn `message_delta` and
  `message_stop` → dropped;
- lines of a subagent (`parent_tool_use_id` set), `system`, `user` and `rate_limit_event`
  lines → nothing; an `assistant` line is read only when its message was not streamed;
- `result` success → `message_delta` (the result's stop reason, `end_turn` for `tool_use`
  or anything a client cannot act on; usage from the result's totals) and `message_stop`;
  `total_cost_usd` → `exchange.cost_usd`;
- `result` with `is_error` → an error, status from `api_error_status` or, without one, from
  the text (invalid key / login → 401, limits → 429); `error_max_turns` and
  `error_max_budget_usd` → 400 saying which limit; `error_during_execution` → 500;
- `system`/`api_retry` before the CLI's first model answer began, or for a status a retry
  cannot fix (4xx but 408, 409, 429) → that error at once, the CLI stopped: the client
  retries by itself, and a CLI retrying for minutes behind the relay looks like a hang; a
  retryable one after that is left to the CLI, whose work so far would otherwise be lost;
- output that ends without a `result` line → an error naming the exit code, with the last
  lines of stderr (known secrets, env values among them, scrubbed); `timeout` → every
  process of the run killed, `timeout_error`.

An error before anything reached the client is the answer's status and an Anthropic error
body (an SDK raises the matching `APIStatusError`); after that it is an `error` event.

Processes: at most `concurrency` at once per provider, up to `queue` more waiting, beyond
that a 429 at once. Each starts in its own session; when its answer ends (or is cancelled)
its process group, and every process carrying the run's marker, gets SIGKILL: the CLI's Bash
tool starts commands in sessions of their own (measured), which a group kill misses. A CLI
that gave its result first gets `EXIT_GRACE` to exit by itself; asyncio reaps it. Silence
while the CLI runs a tool counts against the provider's `timeouts.idle`, like any provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from ..config import ClaudeCliProvider
from ..errors import RelayError, anthropic_status, error_body, scrub
from ..exchange import JSON, Ask, Forward, encode
from ..protocols import anthropic as a
from ..translate import tool_text
from .anthropic import AnthropicExchange

log = logging.getLogger("llmrelay")

needs_request = True  # the parsed request: the conversation is rendered for the CLI

TARGET = ("http", "claude-cli.local", 80, "/stream-json")  # what the flow shows as the upstream
HEADERS = {"content-type": "application/x-ndjson"}
LOOP_HEADER = "x-llmrelay-claude-cli"  # sent by the CLIs the relay starts (ANTHROPIC_CUSTOM_HEADERS)
MARKER = "LLMRELAY_CLI_RUN"  # in every process of a run: how they are all found at the end
ARG_LIMIT = 100_000  # bytes of system prompt passed as an argument; more goes in a file
READ = 1 << 16
# Seconds a CLI that gave its result gets to exit by itself before it is killed: it may still
# be writing its state in HOME (~/.claude.json), which a kill in mid-write could spoil.
EXIT_GRACE = 2.0
EVENT_STREAM = "text/event-stream; charset=utf-8"


def counts_tokens(provider: ClaudeCliProvider) -> bool:
    return False  # the CLI has no count_tokens: the relay's estimate answers


def forward(ask: Ask) -> Forward:
    route, provider, req = ask.route, ask.provider, ask.request
    if ask.headers.get(LOOP_HEADER):
        raise RelayError(
            f"this request comes from a Claude Code CLI that the relay's provider {ask.headers[LOOP_HEADER]!r} started, "
            f"and routes to the claude-cli provider {route.provider!r} again: that CLI's ANTHROPIC_BASE_URL leads back "
            "to this relay; set ANTHROPIC_BASE_URL in the provider's env, or route this model elsewhere",
            status=508,
        )
    system, content = render(req)
    tools = client_tools(req)
    if tools:
        system = "\n\n".join(part for part in (system, tool_text.instructions(tools, _choice(req))) if part)
    stdin = orjson.dumps({"type": "user", "message": {"role": "user", "content": content}}) + b"\n"
    exchange = CliExchange(
        client_model=req.model,
        route=route,
        provider=provider,
        client_stream=req.stream,
        secrets=ask.config.secrets,
        secret_headers=(),
        system=system,
        stdin=stdin,
        tool_names={tool["name"] for tool in tools},
    )
    return Forward(TARGET, dict(HEADERS), stdin, exchange)


def client_tools(req: a.Request) -> list[dict[str, Any]]:
    """The client's own tools (an OpenAI client's, say): offered to the model in text, in
    place of Claude Code's built-in ones, and its calls given back to the client."""
    if not req.tools or bytes(req.tools) == b"null":
        return []
    tools = orjson.loads(bytes(req.tools))
    return [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str) and not t.get("type", "custom").startswith(SERVER_TOOLS)]


SERVER_TOOLS = ("web_search", "web_fetch", "code_execution", "bash_2", "text_editor", "computer")


def _choice(req: a.Request) -> dict[str, Any] | None:
    choice = req.tool_choice
    return {"type": choice.type, "name": choice.name} if choice is not None else None


# --- the request ------------------------------------------------------------------------

HISTORY_HEAD = "The conversation so far, oldest turn first:\n\n"
HISTORY_TAIL = "The user's new message follows."
BILLING_LINE = "x-anthropic-billing-header:"


def render(req: a.Request) -> tuple[str, str | list[dict[str, Any]]]:
    """The system prompt, and the content of the one user line."""
    system = [a.system_text(req.system)] if not isinstance(req.system, list) else [b.text for b in req.system]
    turns = []
    for message in req.messages:
        if message.role == "system":  # Claude Code puts some of its instructions here
            system.append(message.content if isinstance(message.content, str) else _text_of(message.content))
        else:
            turns.append(message)
    system = "\n\n".join(part for part in system if part and not part.startswith(BILLING_LINE))
    if not turns or turns[-1].role != "user":
        raise RelayError("the claude-cli provider needs the conversation to end with a user turn (it cannot continue a prefilled answer)")
    *earlier, last = turns
    now = _blocks(last.content)
    if not earlier:
        return system, last.content if isinstance(last.content, str) else now
    parts: list[dict[str, Any]] = [{"type": "text", "text": HISTORY_HEAD}]
    for message in earlier:
        parts.append({"type": "text", "text": f"<{message.role}>\n"})
        parts += _blocks(message.content)
        parts.append({"type": "text", "text": f"\n</{message.role}>\n\n"})
    parts.append({"type": "text", "text": HISTORY_TAIL})
    return system, _joined(parts) + now


def _blocks(content: str | list[Any]) -> list[dict[str, Any]]:
    """Content blocks as the CLI takes them: text, images and documents kept, tool calls and
    results written out, thinking dropped."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, a.TextBlock):
            if block.text:
                out.append({"type": "text", "text": block.text})
        elif isinstance(block, (a.ImageBlock, a.DocumentBlock)):
            out.append({k: v for k, v in orjson.loads(msgspec.json.encode(block)).items() if v is not None})
        elif isinstance(block, a.ToolUseBlock):
            out.append({"type": "text", "text": tool_text.history_call(block.name, bytes(block.input).decode()) + "\n"})
        elif isinstance(block, a.ToolResultBlock):
            status = ' status="error"' if block.is_error else ""
            out.append({"type": "text", "text": f'<tool_result id="{block.tool_use_id}"{status}>\n'})
            inner = block.content if isinstance(block.content, list) else [a.TextBlock(block.content or "(no content)")]
            for part in inner:
                if isinstance(part, a.ToolReferenceBlock):
                    out.append({"type": "text", "text": f"(tool {part.tool_name} loaded)"})
                else:
                    out += _blocks([part])
            out.append({"type": "text", "text": "\n</tool_result>\n"})
    return out


def _joined(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neighbouring text blocks as one."""
    out: list[dict[str, Any]] = []
    for part in parts:
        if part["type"] == "text" and out and out[-1]["type"] == "text":
            out[-1] = {"type": "text", "text": out[-1]["text"] + part["text"]}
        else:
            out.append(part)
    return out


def _text_of(blocks: list[Any]) -> str:
    return "\n\n".join(block.text for block in blocks if isinstance(block, a.TextBlock) and block.text)


def command(provider: ClaudeCliProvider, model: str, system: str, system_file: str | None = None,
            client_tools: bool = False) -> list[str]:
    """The CLI's arguments; `system_file` holds the system prompt when it is too long for one;
    with `client_tools` Claude Code's own tools are off (the client's are offered in text)."""
    argv = [
        provider.binary, "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages",
        "--input-format", "stream-json", "--no-session-persistence", f"--model={model}",
    ]
    if client_tools:
        argv += ["--tools", ""]
    elif provider.allowed_tools:
        argv.append("--allowedTools=" + ",".join(provider.allowed_tools))
    if provider.max_turns is not None:
        argv.append(f"--max-turns={provider.max_turns}")
    if provider.permission_mode is not None:
        argv.append(f"--permission-mode={provider.permission_mode}")
    if system:
        flag = "--system-prompt" if provider.system_prompt == "replace" else "--append-system-prompt"
        argv.append(f"{flag}-file={system_file}" if system_file else f"{flag}={system}")
    return argv


# --- the exchange -----------------------------------------------------------------------


@dataclass
class CliExchange(AnthropicExchange):
    """One request answered by a CLI process on this machine (`local`, which `Answer` calls
    instead of sending an HTTP request); what it produces is an Anthropic event stream."""

    system: str = ""
    stdin: bytes = b""
    tool_names: set[str] = field(default_factory=set)  # the client's tools, offered in text
    cost_usd: float | None = None  # the CLI's own reckoning, from its result line

    async def local(self) -> Run:
        run = Run(self)
        await run.start()
        return run


# --- concurrency ------------------------------------------------------------------------


class Gate:
    """At most `limit` runs at once, at most `queue` waiting; the rest are refused."""

    def __init__(self, limit: int, queue: int) -> None:
        self.limit, self.queue = limit, queue
        self.running = 0
        self.waiting: deque[asyncio.Future] = deque()

    async def enter(self) -> bool:
        """True once a slot is ours; False at once when the queue is full."""
        if self.running < self.limit and not self.waiting:
            self.running += 1
            return True
        if len(self.waiting) >= self.queue:
            return False
        turn = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.cancelled():
                self.waiting.remove(turn)
            else:  # the slot came just as we were cancelled: hand it on
                self.leave()
            raise
        return True

    def leave(self) -> None:
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot passes on: `running` stays
                return
        self.running -= 1


_gates: dict[str, Gate] = {}


def gate_for(name: str, provider: ClaudeCliProvider) -> Gate:
    gate = _gates.get(name)
    if gate is None:
        gate = _gates[name] = Gate(provider.concurrency, provider.queue)
    gate.limit, gate.queue = provider.concurrency, provider.queue  # a reloaded config applies at once
    return gate


# --- one run ----------------------------------------------------------------------------


class Run:
    """One CLI process answering one request, read like an HTTP response: `status`,
    `raw_headers`, `readany()` (Anthropic SSE bytes as they are made, `b""` at the end), and
    `async with`, whose exit stops every process of the run."""

    def __init__(self, exchange: CliExchange) -> None:
        self.exchange = exchange
        self.provider: ClaudeCliProvider = exchange.provider
        self.status = 200
        self.raw_headers: list[tuple[bytes, bytes]] = [(b"content-type", EVENT_STREAM.encode()), (b"cache-control", b"no-cache")]
        self.events = CliEvents(exchange.client_model, show_tools=self.provider.show_tools)
        # The client's own tools, called in text by the model (`translate.tool_text`).
        self.tools = tool_text.ToolEvents(exchange.tool_names) if exchange.tool_names else None
        self.proc: asyncio.subprocess.Process | None = None
        self._out = b""  # what readany gives next
        self._done = False
        self._gate: Gate | None = None
        self._scratch: str | None = None  # the temporary working directory
        self._prompt_file: str | None = None
        self._token = os.urandom(12).hex()
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False
        self._stderr = b""  # its last few KB
        self._tasks: list[asyncio.Task] = []
        self._closed = False

    async def start(self) -> None:
        """Waits for a slot, starts the CLI, and reads until its answer begins or ends: an
        error before that becomes this response's status."""
        name = self.exchange.route.provider
        gate = gate_for(name, self.provider)
        if not await gate.enter():
            return self._refuse(429, f"{gate.running} Claude Code runs are going and {len(gate.waiting)} waiting "
                                     f"(concurrency {gate.limit}, queue {gate.queue}): try again shortly", retry_after="5")
        self._gate = gate
        try:
            if not await self._spawn():
                return
            while not self.events.started and not self._done:
                self._out += encode(await self._next())
            if self.events.early is not None:
                self._refuse(*self.events.early)
        except BaseException:
            await self.close()
            raise

    async def _spawn(self) -> bool:
        provider, exchange = self.provider, self.exchange
        cwd = os.path.expanduser(provider.cwd) if provider.cwd else None
        if cwd is None:
            cwd = self._scratch = tempfile.mkdtemp(prefix="llmrelay-claude-")
        system = exchange.system
        if len(system.encode()) > ARG_LIMIT:
            fd, self._prompt_file = tempfile.mkstemp(prefix="llmrelay-claude-prompt-", suffix=".txt")
            with os.fdopen(fd, "wb") as f:
                f.write(system.encode())
        argv = command(provider, exchange.route.model, system, self._prompt_file, client_tools=bool(exchange.tool_names))
        env = {**os.environ, **provider.env, MARKER: self._token}
        headers = env.get("ANTHROPIC_CUSTOM_HEADERS", "")
        env["ANTHROPIC_CUSTOM_HEADERS"] = (headers + "\n" if headers else "") + f"{LOOP_HEADER}: {exchange.route.provider}"
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                cwd=cwd, env=env, start_new_session=True,
            )
        except OSError as e:
            if provider.cwd and e.filename == cwd:
                self._refuse(500, f"the working directory {provider.cwd!r} (`cwd`) cannot be used: {e.strerror}")
            else:
                self._refuse(500, f"the Claude Code CLI cannot be started: `binary` {provider.binary!r}: {e.strerror}")
            await self.close()
            return False
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(provider.timeout, self._expire)
        self._tasks = [loop.create_task(self._feed(exchange.stdin)), loop.create_task(self._drain_stderr())]
        return True

    async def _feed(self, data: bytes) -> None:
        stdin = self.proc.stdin
        try:
            stdin.write(data)
            await stdin.drain()
            stdin.close()
        except OSError:
            pass  # the CLI is gone: its exit says why

    async def _drain_stderr(self) -> None:
        """Keeps the end of stderr (and the pipe from filling)."""
        while chunk := await self.proc.stderr.read(READ):
            self._stderr = (self._stderr + chunk)[-4096:]

    def _refuse(self, status: int, message: str, retry_after: str | None = None) -> None:
        """The answer is this error, before anything of it reached the client."""
        self.status = status
        self.raw_headers = [(b"content-type", JSON.encode())]
        if retry_after:
            self.raw_headers.append((b"retry-after", retry_after.encode()))
        self._out = error_body(anthropic_status(status)[1], scrub(message, self._secrets()))
        self._done = True

    async def _next(self) -> list[dict[str, Any]]:
        """The events of the CLI's next read, or the last ones when its output ends."""
        events = self.events
        chunk = await self.proc.stdout.read(READ)
        out = events.feed(chunk) if chunk else events.finish(await self._why_ended())
        if self.tools is not None:
            out = self.tools.feed(out)
            if self.tools.ended and not events.ended:  # a call that cannot be made ends the answer
                events.ended = True
                events.error_type = "api_error"
        if events.ended:
            self._done = True
            self.exchange.cost_usd = events.cost_usd
        return out

    async def _why_ended(self) -> tuple[int, str]:
        """Why the output ended without a result line, as a status and a message."""
        if self._expired:
            return 504, f"Claude Code did not finish within {self.provider.timeout:g} s (the provider's `timeout`): its processes were stopped"
        try:
            code = await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            return 500, "Claude Code closed its output without a result and did not exit"
        await asyncio.wait(self._tasks, timeout=1)  # the rest of stderr, unless a child holds it open
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        lines = [*self.events.noise, *self._stderr.splitlines()[-5:]]
        said = " | ".join(text for line in lines if (text := line.decode("utf-8", "replace").strip()))[-1000:]
        said = scrub(said, self._secrets())
        return 500, f"Claude Code {how} before its answer was complete" + (f": {said}" if said else "")

    def _secrets(self) -> list[str]:
        """What the client must never see: the relay's keys, and the provider's env values
        longer than 15 characters (keys and tokens given to the CLI)."""
        return [*self.exchange.secrets, *(v for v in self.provider.env.values() if len(v) > 15)]

    async def readany(self) -> bytes:
        while not self._out and not self._done:
            self._out = encode(await self._next())
        out, self._out = self._out, b""
        return out

    async def __aenter__(self) -> Run:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the end ------------------------------------------------------------------------

    def _expire(self) -> None:
        self._expired = True
        self._kill_group()
        self._sweep()

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def _sweep(self) -> None:
        """SIGKILL to every process carrying the run's marker: those the CLI started in
        sessions of their own, and those left behind when their parent exited."""
        for pid in _marked(self._token):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        try:
            proc = self.proc
            if proc is not None:
                if proc.returncode is None and self.events.result_seen:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(proc.wait(), EXIT_GRACE)
                self._kill_group()
                await asyncio.to_thread(self._sweep)  # reads every process's environment: off the event loop
                if proc.returncode is None:
                    try:
                        await asyncio.wait_for(proc.wait(), 5)
                    except TimeoutError:
                        log.warning("llmrelay: a Claude Code process (pid %s) did not exit after SIGKILL", proc.pid)
        finally:
            for task in self._tasks:
                task.cancel()
            if self._gate is not None:
                self._gate.leave()
                self._gate = None
            if self._scratch:
                shutil.rmtree(self._scratch, ignore_errors=True)
            if self._prompt_file:
                with contextlib.suppress(OSError):
                    os.unlink(self._prompt_file)


def _marked(token: str) -> list[int]:
    """Processes whose environment holds the run's marker (Linux; elsewhere none are found,
    and the process group is all that is killed)."""
    needle = f"{MARKER}={token}".encode()
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if needle in f.read():
                        found.append(int(name))
            except OSError:
                continue
    return found


# --- the translation --------------------------------------------------------------------

SHOWN = {"text": {"text_delta", "citations_delta"}, "thinking": {"thinking_delta", "signature_delta"}, "redacted_thinking": set()}
STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "refusal"}  # others mean nothing to the client
RETRYABLE = {408, 409, 429}
USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
_SUMMARY_KEYS = ("command", "file_path", "notebook_path", "path", "pattern", "url", "query", "description", "prompt")


@dataclass
class _Block:
    index: int | None  # the client's index; None: hidden
    kind: str
    name: str = ""
    json: list[str] = field(default_factory=list)


class CliEvents:
    """The CLI's stdout (stream-json lines, fed in any pieces) → one Anthropic message's
    events, with the translators' interface: `feed`, `finish`, `fail`, `ended`,
    `error_type`. `early` is the error that ended it before the message began."""

    def __init__(self, model: str, show_tools: bool = False) -> None:
        self.model = model
        self.show_tools = show_tools
        self.started = False  # message_start sent
        self.ended = False
        self.result_seen = False
        self.error_type: str | None = None
        self.early: tuple[int, str] | None = None
        self.usage: dict[str, int] | None = None
        self.cost_usd: float | None = None
        self.noise: deque[bytes] = deque(maxlen=3)  # stdout lines that are not JSON, for error messages
        self._parts: list[bytes] = []  # the line still without its end
        self._next = 0  # the client's next block index
        self._open: int | None = None  # the client's open block
        self._turn: dict[int, _Block] = {}  # this CLI turn's blocks by its index
        self._streamed: set[str] = set()  # ids of messages that came as stream events
        self._stop_reason: str | None = None
        self._answered = False  # the CLI's model began an answer

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        if b"\n" not in data:
            self._parts.append(data)  # a long line arriving read by read: joined once, when it ends
            return []
        head, _, rest = data.rpartition(b"\n")
        lines = b"".join([*self._parts, head]).split(b"\n") if self._parts else head.split(b"\n")
        self._parts = [rest] if rest else []
        out: list[dict[str, Any]] = []
        for line in lines:
            out += self._line(line)
        return out

    def finish(self, failure: tuple[int, str] | None = None) -> list[dict[str, Any]]:
        """The output ended; `failure` says why when there was no result line."""
        out = self._line(b"".join(self._parts))
        self._parts = []
        if self.ended:
            return out
        return out + self._error(*(failure or (500, "Claude Code's output ended without its result line")))

    def fail(self, status: int, message: str) -> list[dict[str, Any]]:
        self.ended = True
        self.error_type = anthropic_status(status)[1]
        return [a.error_event(self.error_type, message)]

    # --- lines --------------------------------------------------------------------------

    def _line(self, raw: bytes) -> list[dict[str, Any]]:
        raw = raw.strip()
        if not raw or self.ended:
            return []
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.noise.append(raw[:400])
            return []
        if not isinstance(line, dict) or line.get("parent_tool_use_id"):
            return []  # a subagent's work is the CLI's own business
        kind = line.get("type")
        if kind == "stream_event" and isinstance(line.get("event"), dict):
            return self._event(line["event"], streamed=True)
        if kind == "assistant":
            return self._whole(line)
        if kind == "result":
            return self._result(line)
        if kind == "system" and line.get("subtype") == "api_retry":
            return self._retry(line)
        return []

    def _whole(self, line: dict[str, Any]) -> list[dict[str, Any]]:
        """An assistant message that was not streamed (one line per block): its blocks whole."""
        message = line.get("message")
        if not isinstance(message, dict) or message.get("id") in self._streamed:
            return []
        if line.get("error") or message.get("model") == "<synthetic>":
            return []  # the CLI's words for an API error: its result line says it again
        out = []
        for event in a.message_events(message):
            if event["type"] not in ("message_delta", "message_stop"):
                out += self._event(event, streamed=False)
        return out

    def _event(self, event: dict[str, Any], streamed: bool) -> list[dict[str, Any]]:
        kind = event.get("type")
        out: list[dict[str, Any]] = []
        if kind == "message_start":
            message = event.get("message") or {}
            if streamed and message.get("id"):
                self._streamed.add(message["id"])
            self._answered = True
            out += self._close_open()  # a turn the CLI began again after a failure
            self._turn = {}
            if not self.started:
                out.append(self._start(message))
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            btype = block.get("type", "")
            if btype in SHOWN:
                out += self._close_open()
                index = self._next
                self._next += 1
                self._open = index
                self._turn[event.get("index", 0)] = _Block(index, btype)
                out.append(a.block_start(index, block))
            else:
                self._turn[event.get("index", 0)] = _Block(None, btype, block.get("name", ""))
        elif kind == "content_block_delta":
            block = self._turn.get(event.get("index", 0))
            delta = event.get("delta") or {}
            if block is None:
                return out
            if block.index is not None:
                if delta.get("type") in SHOWN[block.kind] and block.index == self._open:
                    out.append(a.block_delta(block.index, delta))
            elif self.show_tools and delta.get("type") == "input_json_delta":
                block.json.append(delta.get("partial_json", ""))
        elif kind == "content_block_stop":
            block = self._turn.get(event.get("index", 0))
            if block is None:
                return out
            if block.index is not None:
                if block.index == self._open:
                    out += self._close_open()
            elif self.show_tools and block.kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
                out += self._text_block(tool_line(block.name, "".join(block.json)))
        elif kind == "message_delta":
            self._stop_reason = (event.get("delta") or {}).get("stop_reason") or self._stop_reason
        elif kind == "error":  # an API error event inside the CLI's stream: the CLI decides what follows
            pass
        return out

    def _result(self, line: dict[str, Any]) -> list[dict[str, Any]]:
        self.result_seen = True
        usage = line.get("usage") if isinstance(line.get("usage"), dict) else {}
        self.usage = {name: usage[name] for name in USAGE_FIELDS if isinstance(usage.get(name), int)}
        cost = line.get("total_cost_usd")
        self.cost_usd = float(cost) if isinstance(cost, (int, float)) else None
        if line.get("is_error") or line.get("subtype") != "success":
            return self._error(*result_error(line))
        out = []
        if not self.started:
            out.append(self._start({}))
        text = line.get("result")
        if self._next == 0 and isinstance(text, str) and text:  # nothing was streamed: the final text
            out += self._text_block(text)
        out += self._close_open()
        stop = line.get("stop_reason") or self._stop_reason
        out.append(a.message_delta(stop if stop in STOP_REASONS else "end_turn", self.usage))
        out.append(dict(a.MESSAGE_STOP))
        self.ended = True
        return out

    def _retry(self, line: dict[str, Any]) -> list[dict[str, Any]]:
        """The CLI is about to retry a failed API call: stop it when a retry is of no use here."""
        status = line.get("error_status")
        retryable = not isinstance(status, int) or status >= 500 or status in RETRYABLE
        if self._answered and retryable:
            return []
        what = line.get("error") or "error"
        if not isinstance(status, int):
            return self._error(529, f"Claude Code could not reach its model API ({what})")
        message = f"Claude Code's model API answered {status} ({what})"
        if status == 401:
            message += ": sign the CLI in (`claude /login`) or give it a valid ANTHROPIC_API_KEY in the provider's env"
        return self._error(status, message)

    # --- pieces -------------------------------------------------------------------------

    def _start(self, message: dict[str, Any]) -> dict[str, Any]:
        self.started = True
        start = a.message_start(message.get("id") or a.new_id("msg_"), self.model, 0)
        usage = message.get("usage")
        if isinstance(usage, dict):
            start["message"]["usage"].update({k: v for k, v in usage.items() if k in USAGE_FIELDS and isinstance(v, int)})
        return start

    def _close_open(self) -> list[dict[str, Any]]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [a.block_stop(index)]

    def _text_block(self, text: str) -> list[dict[str, Any]]:
        out = self._close_open()
        index = self._next
        self._next += 1
        return out + [a.block_start(index, {"type": "text", "text": ""}), a.block_delta(index, {"type": "text_delta", "text": text}), a.block_stop(index)]

    def _error(self, status: int, message: str) -> list[dict[str, Any]]:
        """An error ends the answer: an event once the message began, else `early`."""
        self.ended = True
        self.error_type = anthropic_status(status)[1]
        if not self.started:
            self.early = (status, message)
            return []
        return [a.error_event(self.error_type, message)]


def result_error(line: dict[str, Any]) -> tuple[int, str]:
    """A failed result line → status and message."""
    subtype = line.get("subtype")
    errors = [str(e) for e in line.get("errors") or () if e]
    text = line.get("result") if isinstance(line.get("result"), str) else ""
    said = "; ".join(errors) or text or str(subtype)
    if subtype == "error_max_turns":
        return 400, f"Claude Code stopped before finishing: {said} (the provider's `max_turns`)"
    if subtype == "error_max_budget_usd":
        return 400, f"Claude Code stopped before finishing: {said} (its budget)"
    if subtype == "error_during_execution":
        return 500, f"Claude Code failed while answering: {said}"
    status = line.get("api_error_status")
    if not isinstance(status, int) or not 400 <= status <= 599:
        lowered = said.lower()
        if any(sign in lowered for sign in ("invalid api key", "/login", "authenticat", "oauth")):
            status = 401
        elif "limit" in lowered:
            status = 429
        else:
            status = 500
    return status, f"Claude Code: {said}"


def tool_line(name: str, raw: str) -> str:
    """`\\n[Bash: ls -la]\\n`: what a CLI tool call does, in one line."""
    try:
        args = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        args = raw
    detail = ""
    if isinstance(args, dict):
        detail = next((args[key] for key in _SUMMARY_KEYS if isinstance(args.get(key), str) and args[key]), "")
        if not detail and args:
            detail = orjson.dumps(args).decode()
    elif isinstance(args, str):
        detail = args
    detail = " ".join(detail.split())
    if len(detail) > 200:
        detail = detail[:199] + "…"
    return f"\n[{name}: {detail}]\n" if detail else f"\n[{name}]\n"
