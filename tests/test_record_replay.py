"""mitmproxy's own recording (-w) and replay (--server-replay) through the addon: the flow file
holds the exchange with the provider, and replaying it offline gives the client the same
answers, translated once."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import httpx
from mitmproxy import io

from llmrelay import usage

from anthropic_oracle import read_message
from anthropic_view import sdk_message
from oracle import read_chat

from conftest import CLIENT_KEY, PROVIDER_KEY, write_config
from relay_process import Relay

TOOLS = [{"name": "get_time", "description": "Current time", "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}}}]


def conversation(relay: Relay) -> list[dict]:
    client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0, timeout=30)
    answers = []
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=50, messages=[{"role": "user", "content": "stream please"}]) as stream:
        answers.append(stream.get_final_message())
    answers.append(client.messages.create(model="claude-haiku-4-5", max_tokens=50, tools=TOOLS, messages=[{"role": "user", "content": "time?"}]))
    return [{"content": [b.model_dump(exclude={"id"}) for b in m.content], "stop_reason": m.stop_reason, "usage": m.usage.model_dump()} for m in answers]


def test_a_recorded_session_replays_offline_with_the_same_answers(provider, tmp_path) -> None:
    provider.set_script(
        [
            {"text": "Recorded and streamed.", "reasoning": "short", "chunks": 4},
            {"text": "", "tool_calls": [{"id": "call_t1", "name": "get_time", "arguments": {"zone": "UTC"}}]},
        ]
    )
    config = write_config(tmp_path, provider)
    recording = tmp_path / "session.flow"
    with Relay(config, tmp_path, "-w", str(recording)) as relay:
        recorded = conversation(relay)
    assert len([r for r in provider.requests if r.method == "POST"]) == 2  # (the start-up check GETs /models)

    flows = [f for f in io.FlowReader(recording.open("rb")).stream() if f.request.path.endswith("/chat/completions")]
    assert [f.request.host for f in flows] == ["127.0.0.1", "127.0.0.1"]
    assert flows[0].response.content.startswith(b"data: {")  # the provider's own stream
    assert b'"object":"chat.completion"' in flows[1].response.content  # and its own JSON
    assert PROVIDER_KEY.encode() not in recording.read_bytes()

    provider.requests.clear()
    replay_args = ("--server-replay", str(recording), "--set", "keepserving=true")
    with Relay(config, tmp_path, *replay_args) as relay:
        replayed = conversation(relay)
    assert not provider.requests  # nothing reached the provider
    assert replayed == recorded
    assert replayed[0]["content"][1]["text"] == "Recorded and streamed."
    assert replayed[1]["content"][0]["input"] == {"zone": "UTC"}
    # Replayed answers cost nothing: flagged in their records and left out of the totals.
    records = usage.read(tmp_path / "data")
    assert [r.get("replayed", False) for r in records] == [False, False, True, True]
    assert sum(row["requests"] for row in usage.totals(records, "day", {}).values()) == 2


FLOWS = Path(__file__).parent / "fixtures" / "flows"
# flow fixture → what the client asked and which capture the provider's answer is
REPLAYS = {
    "openai-chat-stream": ("stream", "openai-chat/openai-gpt-4o-parallel-tools-stream.json"),
    "openai-chat-json": ("json", "openai-chat/zai-glm-4.7-flash-reasoning-tool-json.json"),
    "anthropic-stream": ("stream-compat", "anthropic/responses/thinking-signature-stream.json"),
    "anthropic-json": ("json-compat", "anthropic/responses/parallel-tool-use-json.json"),
}


def test_recorded_fixtures_of_each_protocol_replay_through_mitmdump(tmp_path) -> None:
    """tests/fixtures/flows: provider exchanges as `-w` records them (scripts/make-replay-fixtures),
    replayed with no network; the client gets the translated answer of the recorded bytes."""
    requests = json.loads((FLOWS / "requests.json").read_text())
    replays = [arg for name in REPLAYS for arg in ("--server-replay", str(FLOWS / f"{name}.flow"))]
    # Unmatched requests would go on to the real providers, which this machine cannot reach:
    # every answer below comes from the recorded flows.
    with Relay(FLOWS / "config.yaml", tmp_path, *replays, "--set", "keepserving=true") as relay:
        for name, (request_name, capture) in REPLAYS.items():
            request = requests[request_name]
            answer = httpx.post(relay.url + "/v1/messages", content=json.dumps(request), headers={"anthropic-version": "2023-06-01", "content-type": "application/json"}, timeout=30)
            assert answer.status_code == 200, (name, answer.text)
            message = sdk_message(200, answer.content, answer.headers["content-type"], stream=request.get("stream", False))
            fixture = json.loads((Path(__file__).parent / "fixtures" / capture).read_text())
            if capture.startswith("openai-chat"):
                said = read_chat(fixture)
                assert [(b.name, b.input) for b in message.content if b.type == "tool_use"] == [(n, p) for _, n, _, p in said.tool_calls], name
            else:
                expected = read_message(fixture)
                assert [b.type for b in message.content] == [b["type"] for b in expected["content"]], name
                assert message.stop_reason == expected["stop_reason"]


def test_a_claude_code_session_replays_in_another_folder_with_the_provider_gone(tmp_path) -> None:
    # Claude Code's requests differ every run (session id, date and folder in the system
    # prompt): `scripts/proxy --replay` matches them by what stays the same.
    import os
    import subprocess
    import sys
    import time

    import claude_code
    from mock_openai import MockOpenAI
    from relay_process import free_port

    turns = [{"text": "I'll write the file.", "tool_calls": [{"id": "call_w1", "name": "Bash", "arguments": {"command": "echo replayed > proof.txt", "description": "Write proof.txt"}}]},
             {"text": "Done: the file is written."}]
    recording = tmp_path / "session.flow"
    with MockOpenAI(turns, api_key=PROVIDER_KEY, repeat_last=False) as mock:
        config = write_config(tmp_path, mock)
        first = tmp_path / "first"
        first.mkdir()
        with Relay(config, tmp_path, "-w", str(recording)) as relay:
            result = claude_code.run("Write the word replayed to proof.txt.", relay.url, cwd=first, extra_env=claude_code.NO_RETRY_ENV, timeout=180)
        assert result.returncode == 0 and (first / "proof.txt").read_text().strip() == "replayed", result.stdout + result.stderr
        recorded = len([r for r in mock.requests if r.method == "POST"])
    # The provider is gone now: only the recording can answer.
    again = tmp_path / "second"
    again.mkdir()
    port = free_port()
    env = {**os.environ, "PORT": str(port), "CONFIG": str(config), "NO_CLAUDE_SETTINGS": "1", "VENV": str(Path(sys.executable).parent.parent)}
    proxy = subprocess.Popen([str(Path(__file__).parent.parent / "scripts" / "proxy"), "--replay", str(recording),
                              "--set", f"confdir={tmp_path / 'mitmproxy'}", "--set", f"adapter_data_dir={tmp_path / 'data2'}"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        result = claude_code.run("Write the word replayed to proof.txt.", f"http://127.0.0.1:{port}", cwd=again,
                                 extra_env=claude_code.NO_RETRY_ENV, timeout=180)
    finally:
        proxy.terminate()
        out = proxy.communicate(timeout=20)[0].decode()
    assert result.returncode == 0, result.stdout + result.stderr + out[-3000:]
    assert (again / "proof.txt").read_text().strip() == "replayed" and "Done: the file is written." in result.stdout
    assert recorded >= 2 and "[replay]" in out  # answered from the recording
