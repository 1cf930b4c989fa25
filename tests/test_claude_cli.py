"""The `claude-cli` provider: the real Claude Code CLI as the model, run by the relay.

End to end, a real mitmdump runs the real CLI (the pinned version, tests/claude_code.py),
whose API calls go to tests/mock_anthropic.py, with the anthropic SDK as the client. The
translation of the CLI's stream-json is checked on its own, fed from captures of the same CLI
(tests/fixtures/claude-cli/), whole and cut at awkward places.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
import time
import uuid
from pathlib import Path

import anthropic
import orjson
import pytest
from mitmproxy import io

import claude_code
from anthropic_view import check_events, sdk_message
from conftest import FAILURE_SIGNS
from llmrelay import relay as relay_mod
from llmrelay import usage
from llmrelay.config import parse_config
from llmrelay.exchange import encode
from llmrelay.providers import claude_cli
from llmrelay.providers.claude_cli import CliEvents, Gate
from mock_anthropic import MockAnthropic
from relay_process import Relay

FIXTURES = Path(__file__).parent / "fixtures" / "claude-cli"
KEY = "fake-anthropic-mock-key-for-tests"  # the mock's: longer than 15, so scrubbed
MARK = "LLMRELAY_TEST_MARK"
HELLO = [{"role": "user", "content": "Hello"}]


# --- the CLI's output, translated -------------------------------------------------------


def lines_of(name: str) -> bytes:
    return (FIXTURES / f"{name}.jsonl").read_bytes()


def pieces(data: bytes):
    """The same bytes cut in many ways: whole, line by line, in small and odd-sized reads,
    and in two at every line end and right around it."""
    yield "whole", [data]
    yield "lines", data.splitlines(keepends=True)
    for size in (1, 2, 7, 64, 4093):
        yield f"{size}-byte reads", [data[i : i + size] for i in range(0, len(data), size)]
    ends = [i for i, byte in enumerate(data) if byte == 0x0A]
    for end in ends:
        for at in (end - 1, end, end + 1, end + 2):
            if 0 < at < len(data):
                yield f"cut at {at}", [data[:at], data[at:]]
    utf8 = [i for i, byte in enumerate(data) if byte >= 0x80]
    for at in utf8[:20]:
        yield f"inside a character at {at}", [data[:at], data[at:]]


def translate(chunks: list[bytes], **options) -> tuple[list[dict], CliEvents]:
    events = CliEvents("claude-x", **options)
    out = []
    for chunk in chunks:
        out += events.feed(chunk)
    out += events.finish()
    return out, events


def whole_text(events: list[dict]) -> list[tuple[str, str]]:
    """(block type, its text) for each block the client gets."""
    blocks: dict[int, list] = {}
    for event in events:
        if event["type"] == "content_block_start":
            block = event["content_block"]
            blocks[event["index"]] = [block["type"], block.get("text", "") or block.get("thinking", "")]
        elif event["type"] == "content_block_delta":
            delta = event["delta"]
            blocks[event["index"]][1] += delta.get("text", "") or delta.get("thinking", "")
    return [tuple(blocks[i]) for i in sorted(blocks)]


def test_a_text_answer_becomes_one_message_whatever_the_reads() -> None:
    data = lines_of("text")
    first = None
    for how, chunks in pieces(data):
        events, state = translate(chunks)
        check_events(events)
        first = first or events
        assert events == first, how
    assert whole_text(first) == [("text", "Hello from the mock.")]
    assert [e["delta"]["text"] for e in first if e["type"] == "content_block_delta"] == ["Hello", " from", " the ", "mock."]
    final = first[-2]
    assert final["delta"]["stop_reason"] == "end_turn"
    assert final["usage"]["input_tokens"] > 20000 and final["usage"]["output_tokens"] > 0
    assert state.cost_usd and state.cost_usd > 0
    message = sdk_message(200, encode(first), "text/event-stream", stream=True)
    assert message.content[0].text == "Hello from the mock." and message.model == "claude-x"


def test_the_cli_s_turns_and_tools_become_one_message_with_its_tools_hidden() -> None:
    data = lines_of("thinking-bash")
    first = None
    for how, chunks in pieces(data):
        events, _ = translate(chunks)
        check_events(events)
        first = first or events
        assert events == first, how
    kinds = [e["type"] for e in first]
    assert kinds.count("message_start") == kinds.count("message_delta") == kinds.count("message_stop") == 1
    assert whole_text(first) == [("thinking", "One Bash call will do."), ("text", "Writing the file."), ("text", "Done: proof.txt holds hi.")]
    assert "tool_use" not in orjson.dumps(first).decode()
    assert first[-2]["delta"]["stop_reason"] == "end_turn"
    message = sdk_message(200, encode(first), "text/event-stream", stream=True)
    assert [b.type for b in message.content] == ["thinking", "text", "text"]
    assert message.content[0].signature  # the thinking's signature is kept


def test_show_tools_writes_the_cli_s_tool_calls_as_text() -> None:
    for how, chunks in pieces(lines_of("thinking-bash")):
        events, _ = translate(chunks, show_tools=True)
        check_events(events)
        assert whole_text(events) == [
            ("thinking", "One Bash call will do."),
            ("text", "Writing the file."),
            ("text", "\n[Bash: echo hi > proof.txt && ls]\n"),
            ("text", "Done: proof.txt holds hi."),
        ], how


def test_the_turn_limit_is_an_error_after_what_was_said() -> None:
    events, state = translate([lines_of("max-turns")])
    check_events(events)
    assert whole_text(events) == [("text", "Writing the file.")]
    error = events[-1]
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert "Reached maximum number of turns (1)" in error["error"]["message"] and "max_turns" in error["error"]["message"]
    assert state.early is None


@pytest.mark.parametrize(
    ("name", "status", "says"),
    [
        ("auth-401", 401, "Invalid API key"),
        ("rate-limit-429", 429, "rate limit"),
        ("retry-401", 401, "401 (authentication_failed)"),  # the CLI's first retry: stopped there
    ],
)
def test_an_error_before_the_answer_began_is_the_status(name, status, says) -> None:
    for how, chunks in pieces(lines_of(name)):
        events, state = translate(chunks)
        assert events == [] and state.ended, how
        assert state.early[0] == status and says in state.early[1], (how, state.early)


def test_a_stream_without_its_result_line_is_an_error_never_a_whole_answer() -> None:
    data = lines_of("text")
    cut = data[: data.index(b'{"type":"stream_event","event":{"type":"message_delta"')]
    events, state = translate([cut])
    check_events(events)
    assert events[-1]["type"] == "error" and "result" in events[-1]["error"]["message"]
    assert "message_stop" not in [e["type"] for e in events]


def test_a_long_line_in_many_reads_is_read_once() -> None:
    big = "x" * 3_000_000
    line = orjson.dumps({"type": "user", "message": {"role": "user", "content": [{"type": "tool_result", "content": big}]}})
    data = lines_of("text")
    at = data.rstrip(b"\n").rindex(b"\n") + 1  # the result line
    stream = data[:at] + line + b"\n" + data[at:]
    started = time.perf_counter()
    events, _ = translate([stream[i : i + 65536] for i in range(0, len(stream), 65536)])
    assert time.perf_counter() - started < 1.0
    check_events(events)
    assert whole_text(events) == [("text", "Hello from the mock.")]


# --- the request ------------------------------------------------------------------------


def config(tmp_path: Path, **keys) -> object:
    provider = {"type": "claude-cli", "binary": str(claude_code.CLAUDE_BIN), **keys}
    return parse_config({"providers": {"cli": provider}, "models": {"default": {"provider": "cli", "model": "claude-sonnet-4-5"}}})


def forwarded(cfg, request: dict, headers: dict | None = None):
    return relay_mod.handle(cfg, "POST", "/v1/messages", orjson.dumps(request), {"content-type": "application/json", **(headers or {})})


def test_earlier_turns_become_a_transcript_before_the_new_message(tmp_path) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    request = {
        "model": "claude-x", "max_tokens": 100,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"}, {"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Look at this."}, image]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "private", "signature": "s"},
                                              {"type": "text", "text": "I see a cat."},
                                              {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "a.txt"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "meow"}]},
            {"role": "system", "content": "Answer in French."},
            {"role": "assistant", "content": "Miaou."},
            {"role": "user", "content": "--version and what was in a.txt?"},
        ],
    }
    forward = forwarded(config(tmp_path), request)
    assert forward.target == ("http", "claude-cli.local", 80, "/stream-json")
    assert forward.headers == {"content-type": "application/x-ndjson"}
    line = orjson.loads(forward.body)
    assert forward.body.endswith(b"\n") and forward.body.count(b"\n") == 1
    assert line["type"] == "user" and line["message"]["role"] == "user"
    content = line["message"]["content"]
    assert [b["type"] for b in content] == ["text", "image", "text", "text"]  # transcript (with its image), new message
    assert content[1] == image
    assert content[0]["text"] == claude_cli.HISTORY_HEAD + "<user>\nLook at this."
    transcript = content[2]["text"]
    assert "I see a cat." in transcript and "private" not in transcript
    assert '<tool_call name="Read">{"file_path":"a.txt"}</tool_call>' in transcript and '<tool_result id="toolu_1">\nmeow\n</tool_result>' in transcript
    assert "<assistant>\nMiaou.\n</assistant>" in transcript and transcript.endswith(claude_cli.HISTORY_TAIL)
    assert content[3] == {"type": "text", "text": "--version and what was in a.txt?"}
    assert forward.exchange.system == "Be brief.\n\nAnswer in French."


def test_a_single_message_goes_as_it_is(tmp_path) -> None:
    forward = forwarded(config(tmp_path), {"model": "m", "max_tokens": 5, "messages": HELLO})
    assert orjson.loads(forward.body)["message"]["content"] == "Hello"
    assert forward.exchange.system == ""


def test_a_prefilled_answer_is_a_clear_error(tmp_path) -> None:
    reply = forwarded(config(tmp_path), {"model": "m", "max_tokens": 5, "messages": HELLO + [{"role": "assistant", "content": "Hi"}]})
    assert reply.status == 400 and b"prefilled" in reply.body


def test_the_command_line(tmp_path) -> None:
    cfg = config(tmp_path, allowed_tools=["Bash", "Read"], max_turns=3, permission_mode="acceptEdits")
    provider = cfg.providers["cli"]
    argv = claude_cli.command(provider, "claude-sonnet-4-5", "--be-brief")
    assert argv[1:10] == ["-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages",
                          "--input-format", "stream-json", "--no-session-persistence", "--model=claude-sonnet-4-5"]
    assert argv[10:] == ["--allowedTools=Bash,Read", "--max-turns=3", "--permission-mode=acceptEdits", "--append-system-prompt=--be-brief"]
    plain = config(tmp_path, system_prompt="replace").providers["cli"]
    assert claude_cli.command(plain, "m", "S")[-2:] == ["--model=m", "--system-prompt=S"]
    assert claude_cli.command(plain, "m", "")[-1] == "--model=m"
    assert claude_cli.command(plain, "m", "S", "/tmp/p.txt")[-1] == "--system-prompt-file=/tmp/p.txt"
    assert not any("dangerously" in arg or "bypass" in arg for arg in argv)


def test_a_request_from_a_cli_the_relay_started_does_not_loop(tmp_path) -> None:
    reply = forwarded(config(tmp_path), {"model": "m", "max_tokens": 5, "messages": HELLO}, {claude_cli.LOOP_HEADER: "cli"})
    assert reply.status == 500 and b"leads back" in reply.body


def test_count_tokens_is_answered_by_the_relay(tmp_path) -> None:
    reply = relay_mod.handle(config(tmp_path), "POST", "/v1/messages/count_tokens", orjson.dumps({"model": "m", "messages": HELLO}), {"content-type": "application/json"})
    assert reply.status == 200 and orjson.loads(reply.body)["input_tokens"] > 0


# --- processes --------------------------------------------------------------------------


def test_the_gate_queues_then_refuses_and_hands_slots_on() -> None:
    async def main() -> None:
        gate = Gate(limit=1, queue=1)
        assert await gate.enter()
        waiter = asyncio.create_task(gate.enter())
        await asyncio.sleep(0)
        assert not await gate.enter()  # one running, one waiting: full
        gate.leave()
        assert await waiter and gate.running == 1
        cancelled = asyncio.create_task(gate.enter())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        assert not gate.waiting
        gate.leave()
        assert gate.running == 0

    asyncio.run(main())


def marked(mark: str, cli_only: bool = False) -> list[int]:
    """Processes whose environment holds `MARK=mark`."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if f"{MARK}={mark}".encode() in Path(f"/proc/{name}/environ").read_bytes():
                    if not cli_only or b"--input-format" in Path(f"/proc/{name}/cmdline").read_bytes():
                        found.append(int(name))
            except OSError:
                continue
    return found


def run_exchange(cfg, request: dict):
    return forwarded(cfg, request).exchange


def test_a_crash_says_why_with_the_end_of_stderr_and_no_secret(tmp_path) -> None:
    secret = "fake-secret-token-for-tests"
    fake = tmp_path / "claude"
    fake.write_text(f"#!/bin/sh\ncat >/dev/null\necho 'not json on stdout'\necho 'fatal: cannot use {secret}' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    exchange = run_exchange(config(tmp_path, binary=str(fake), env={"SOME_TOKEN": secret}), {"model": "m", "max_tokens": 5, "messages": HELLO})

    async def main():
        run = await exchange.local()
        async with run:
            body = b""
            while chunk := await run.readany():
                body += chunk
        return run.status, body

    status, body = asyncio.run(main())
    error = orjson.loads(body)["error"]
    assert status == 500 and error["type"] == "api_error"
    assert "exited with code 3" in error["message"] and "not json on stdout" in error["message"]
    assert "fatal: cannot use [REDACTED]" in error["message"] and secret not in error["message"]


def test_a_missing_binary_is_a_clean_error(tmp_path) -> None:
    exchange = run_exchange(config(tmp_path, binary=str(tmp_path / "no-such-claude")), {"model": "m", "max_tokens": 5, "messages": HELLO})

    async def main():
        run = await exchange.local()
        async with run:
            return run.status, await run.readany(), await run.readany()

    status, body, end = asyncio.run(main())
    assert status == 500 and end == b""
    assert "`binary`" in orjson.loads(body)["error"]["message"] and "no-such-claude" in orjson.loads(body)["error"]["message"]


@pytest.fixture(scope="module")
def mock():
    with MockAnthropic([], api_key=KEY) as server:
        yield server


@pytest.fixture
def model(mock):
    mock.set_script([])
    mock.requests.clear()
    return mock


def cli_env(mock: MockAnthropic, home: Path, mark: str, key: str = KEY) -> dict[str, str]:
    return {"ANTHROPIC_BASE_URL": mock.base_url, "ANTHROPIC_API_KEY": key, "HOME": str(home),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", MARK: mark}


@pytest.mark.parametrize("where", ["starting", "reading"])
def test_a_cancelled_run_kills_its_processes_and_leaves_no_zombie(model, tmp_path, where) -> None:
    mark = uuid.uuid4().hex
    if where == "starting":
        model.set_script([{"text": "late", "delay_ms": 20000}])
    else:
        model.set_script([{"text": "one two three four five six", "chunks": 6, "interval_ms": 2000}])
    exchange = run_exchange(config(tmp_path, env=cli_env(model, tmp_path, mark)), {"model": "m", "max_tokens": 5, "messages": HELLO, "stream": True})
    runs = []

    async def answer() -> None:
        run = await exchange.local()
        runs.append(run)
        async with run:
            while await run.readany():
                pass

    async def main() -> None:
        task = asyncio.create_task(answer())
        deadline = time.monotonic() + 20
        while not (runs if where == "reading" else model.requests) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert marked(mark), "the CLI is not running"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert marked(mark) == []
    if runs:
        pid = runs[0].proc.pid
        assert runs[0].proc.returncode is not None and not Path(f"/proc/{pid}").exists()  # reaped
        assert not Path(runs[0]._scratch).exists()


# --- through the relay ------------------------------------------------------------------


@pytest.fixture(scope="module")
def relay(mock, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("claude-cli")
    home, agent = workdir / "home", workdir / "agent"
    home.mkdir()
    agent.mkdir()
    mark = uuid.uuid4().hex

    def provider(**keys) -> dict:
        env = cli_env(mock, home, mark, keys.pop("key", KEY))
        return {"type": "claude-cli", "binary": str(claude_code.ensure_installed()), "env": env, **keys}

    providers = {
        "cli": provider(allowed_tools=["Bash"], cwd=str(agent)),
        "cli-pair": provider(concurrency=2, queue=4),
        "cli-single": provider(concurrency=1, queue=0),
        "cli-short": provider(timeout=2, allowed_tools=["Bash"]),
        "cli-badkey": provider(key="fake-wrong-key-for-tests-0000"),
        "cli-missing": provider(binary=str(workdir / "no-such-claude")),
    }
    routes = {f"claude-{name.removeprefix('cli-')}": {"provider": name, "model": "claude-sonnet-4-5"} for name in providers if name != "cli"}
    config_path = workdir / "config.yaml"
    models = {"default": {"provider": "cli", "model": "claude-sonnet-4-5"}, "routes": routes}
    # Pings every 0.5 s: a streaming client's answer begins long before a 2 s timeout.
    config_path.write_bytes(orjson.dumps({"providers": providers, "models": models, "relay": {"ping_interval": 0.5}}))
    with Relay(config_path, workdir, "-w", str(workdir / "flows")) as process:
        process.mark, process.agent, process.recorded = mark, agent, []
        yield process
    output = process.output()
    for sign in FAILURE_SIGNS:
        assert sign not in output, output
    with (workdir / "flows").open("rb") as f:
        flows = {flow.request.raw_content: flow for flow in io.FlowReader(f).stream()}
    for stdin, answer in process.recorded:
        flow = flows[stdin]
        assert flow.request.url == "http://claude-cli.local/stream-json"
        assert flow.request.headers["content-type"] == "application/x-ndjson"
        assert flow.response.status_code == 200 and answer in flow.response.content
    assert marked(mark) == [], "a CLI process outlived the tests"


@pytest.fixture
def client(relay) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-client", base_url=relay.url, max_retries=0, timeout=60)


def test_a_streamed_answer_arrives_as_the_cli_makes_it(client, model, relay) -> None:
    model.set_script([{"thinking": "Short answer.", "text": "Hello from the CLI, in parts.", "chunks": 4, "interval_ms": 250}])
    seen = []
    started = time.monotonic()
    with client.messages.stream(model="claude-x", max_tokens=100, messages=HELLO) as stream:
        for event in stream:
            seen.append((time.monotonic() - started, event.type))
        message = stream.get_final_message()
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[1].text == "Hello from the CLI, in parts." and message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 20000  # the CLI's own system prompt and tools, from its result line
    deltas = [at for at, kind in seen if kind == "content_block_delta"]
    stop = next(at for at, kind in seen if kind == "message_stop")
    assert stop - deltas[0] > 1.0, seen  # the first delta came long before the end, not with it
    records = [r for r in usage.read(relay.data) if r["provider"] == "cli"]
    assert records[-1]["input_tokens"] == message.usage.input_tokens and records[-1]["status"] == 200


def test_a_json_answer_with_the_system_prompt_and_the_earlier_turns(client, model) -> None:
    model.set_script([{"text": "Your name is Ada."}])
    history = [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Nice to meet you, Ada."},
               {"role": "user", "content": "What is my name?"}]
    message = client.messages.create(model="claude-x", max_tokens=100, system="Answer like a pirate.", messages=history)
    assert message.content[0].text == "Your name is Ada." and message.stop_reason == "end_turn"
    sent = model.requests[-1].body
    assert len(model.requests) == 1  # one model turn for the whole conversation
    assert sent["system"][-1]["text"].endswith("Answer like a pirate.")
    texts = [b["text"] for b in sent["messages"][-1]["content"] if b["type"] == "text"]
    assert any("<user>\nMy name is Ada.\n</user>" in t and "<assistant>\nNice to meet you, Ada.\n</assistant>" in t for t in texts), texts
    assert texts[-1].endswith("What is my name?")


def test_the_cli_runs_its_own_tools_in_cwd_and_hides_them(client, model, relay) -> None:
    call = {"id": "toolu_01Relay", "name": "Bash", "input": {"command": "echo relayed > proof.txt", "description": "Write proof.txt"}}
    model.set_script([{"text": "Writing it.", "tool_calls": [call]}, {"text": "Done: proof.txt is written."}])
    message = client.messages.create(model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "Write relayed to proof.txt"}])
    assert (relay.agent / "proof.txt").read_text().strip() == "relayed"
    assert [(b.type, b.text) for b in message.content] == [("text", "Writing it."), ("text", "Done: proof.txt is written.")]
    assert message.stop_reason == "end_turn"
    assert len(model.requests) == 2
    result = model.requests[1].body["messages"][-1]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "toolu_01Relay"


def test_at_most_concurrency_clis_run_at_once(client, model, relay) -> None:
    arrived = []

    def slow(request: dict) -> dict:
        arrived.append(time.monotonic())
        return {"text": f"answer {len(arrived)}", "delay_ms": 1500}

    model.set_script([slow])
    most, stop = [0], threading.Event()

    def count() -> None:
        while not stop.is_set():
            most[0] = max(most[0], len(marked(relay.mark, cli_only=True)))
            time.sleep(0.05)

    counter = threading.Thread(target=count)
    counter.start()
    answers: list = [None] * 3

    def ask(i: int) -> None:
        answers[i] = client.messages.create(model="claude-pair", max_tokens=10, messages=HELLO)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    stop.set()
    counter.join()
    assert sorted(m.content[0].text for m in answers) == ["answer 1", "answer 2", "answer 3"]
    assert most[0] == 2, most
    arrived.sort()
    assert arrived[2] - arrived[0] >= 1.4, arrived  # the third CLI started only when one of the two was done


def test_beyond_the_queue_a_request_is_refused_at_once(client, model) -> None:
    model.set_script([{"text": "slow answer", "delay_ms": 2500}])
    first: list = []
    thread = threading.Thread(target=lambda: first.append(client.messages.create(model="claude-single", max_tokens=10, messages=HELLO)))
    thread.start()
    deadline = time.monotonic() + 20
    while not model.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.create(model="claude-single", max_tokens=10, messages=HELLO)
    assert time.monotonic() - started < 1.0
    assert refused.value.body["error"]["type"] == "rate_limit_error" and "queue 0" in refused.value.body["error"]["message"]
    assert refused.value.response.headers["retry-after"] == "5"
    thread.join(30)
    assert first[0].content[0].text == "slow answer"


def test_the_timeout_kills_every_process_of_the_run(client, model, relay) -> None:
    """A JSON client, the CLI waiting on its model: the answer's status."""
    model.set_script([{"text": "too late", "delay_ms": 30000}])
    started = time.monotonic()
    with pytest.raises(anthropic.APIStatusError) as failed:
        client.messages.create(model="claude-short", max_tokens=10, messages=HELLO)
    assert failed.value.status_code == 504 and failed.value.body["error"]["type"] == "timeout_error"
    assert "within 2 s" in failed.value.body["error"]["message"]
    assert time.monotonic() - started < 6
    assert marked(relay.mark) == []


def test_the_timeout_kills_a_tool_in_its_own_session_and_ends_the_stream_with_an_error(client, model, relay) -> None:
    """A streaming client, pinged meanwhile, the CLI's Bash tool running a command that
    Claude Code starts in a session of its own (so killing the CLI's group is not enough)."""
    sleep = {"name": "Bash", "input": {"command": "python3 -c 'import time; time.sleep(30)'", "description": "Wait"}}
    model.set_script([{"text": "Waiting.", "tool_calls": [sleep]}, {"text": "never"}])
    seen = []
    with pytest.raises(anthropic.APIStatusError) as failed:
        with client.messages.stream(model="claude-short", max_tokens=10, messages=HELLO) as answer:
            for event in answer:
                seen.append(event.type)
    assert failed.value.body["error"]["type"] == "timeout_error"
    assert seen[:2] == ["message_start", "content_block_start"] and "text" in seen  # "Waiting." came first
    time.sleep(0.2)
    assert marked(relay.mark) == []


def test_an_authentication_failure_is_a_clean_error_at_once(client, model) -> None:
    started = time.monotonic()
    with pytest.raises(anthropic.AuthenticationError) as failed:
        client.messages.create(model="claude-badkey", max_tokens=10, messages=HELLO)
    assert time.monotonic() - started < 5  # not the CLI's ten retries
    error = failed.value.body["error"]
    assert error["type"] == "authentication_error" and error["message"].startswith("cli-badkey (claude-cli): Claude Code")
    assert "401" in error["message"] and "sk-ant-wrong" not in error["message"]


def test_a_binary_that_does_not_exist_is_a_clean_error(client) -> None:
    with pytest.raises(anthropic.InternalServerError) as failed:
        client.messages.create(model="claude-missing", max_tokens=10, messages=HELLO)
    assert failed.value.status_code == 500 and "`binary`" in failed.value.body["error"]["message"]
    with pytest.raises(anthropic.InternalServerError) as streamed:
        with client.messages.stream(model="claude-missing", max_tokens=10, messages=HELLO) as answer:
            answer.get_final_message()
    assert "`binary`" in streamed.value.body["error"]["message"]


def test_the_loop_guard_holds_through_the_relay(client, relay) -> None:
    loop = anthropic.Anthropic(api_key="k", base_url=relay.url, max_retries=0, default_headers={claude_cli.LOOP_HEADER: "cli"})
    with pytest.raises(anthropic.InternalServerError) as failed:
        loop.messages.create(model="claude-x", max_tokens=10, messages=HELLO)
    assert "leads back" in failed.value.body["error"]["message"]


def test_the_flow_shows_what_went_into_the_cli(client, model, relay) -> None:
    """Checked when the relay has stopped (-w writes through a buffer): see `relay`."""
    model.set_script([{"text": "Recorded.", "chunks": 1}])
    client.messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "Record me"}])
    relay.recorded.append((b'{"type":"user","message":{"role":"user","content":"Record me"}}\n', b"Recorded."))


def test_claude_code_itself_as_the_client(model, relay, tmp_path) -> None:
    """Claude Code → the relay → a Claude Code the relay runs → the model."""
    model.set_script([{"text": "Hello from the inner CLI.", "chunks": 3}])
    result = claude_code.run("Say hello.", relay.url, cwd=tmp_path, extra_env=claude_code.NO_RETRY_ENV, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Hello from the inner CLI." in result.stdout
    assert len(model.requests) == 1
    sent = model.requests[0].body
    assert sent["messages"][-1]["content"][-1]["text"] == "Say hello."
    # The outer CLI's system prompt went in through --append-system-prompt: the inner one's comes first.
    assert len(orjson.dumps(sent["system"])) > 40000


def test_an_openai_client_s_own_tools_round_trip_through_the_cli(model, relay) -> None:
    # An OpenAI client (Cursor, Continue) sends its tools: they are offered to the model in
    # text, Claude Code's own are off, and the model's call comes back as tool_calls.
    import openai

    weather = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
    model.set_script([{"text": 'Let me check. <tool_call name="get_weather">{"city": "Paris"}</tool_call>'},
                      {"text": "It is sunny in Paris."}])
    client = openai.OpenAI(api_key="sk-client", base_url=relay.url + "/v1", max_retries=0, timeout=60)
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="claude-x", messages=ask, tools=[weather])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me check. "
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    sent = model.requests[-1].body
    system = sent["system"] if isinstance(sent["system"], str) else "".join(b["text"] for b in sent["system"])
    assert '<tool_call name="TOOL_NAME">' in system and "## get_weather" in system
    assert not [t for t in sent.get("tools", []) if t.get("name") == "Bash"]  # Claude Code's own tools are off

    history = ask + [{"role": "assistant", "content": "Let me check. ", "tool_calls": [call.model_dump()]},
                     {"role": "tool", "tool_call_id": call.id, "content": "22 C and sunny"}]
    second = client.chat.completions.create(model="claude-x", messages=history, tools=[weather])
    assert second.choices[0].message.content == "It is sunny in Paris." and second.choices[0].finish_reason == "stop"
    said = json.dumps(model.requests[-1].body["messages"])
    assert "22 C and sunny" in said and "<tool_result" in said and "get_weather" in said
