"""Claude Code's settings while a real mitmdump with the addon runs, and after it stops in
every way a relay stops: Ctrl-C, SIGTERM, a closed terminal, kill -9."""

from __future__ import annotations

import json
import signal
import time

import pytest

from relay_process import Relay

ORIGINAL = {"model": "opus", "permissions": {"allow": ["Bash(ls:*)"]}, "env": {"ANTHROPIC_BASE_URL": "https://gateway.example", "FOO": "1"}}


@pytest.fixture
def settings(tmp_path, monkeypatch):
    folder = tmp_path / "claude"
    folder.mkdir()
    path = folder / "settings.json"
    path.write_text(json.dumps(ORIGINAL, indent=2) + "\n")
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(folder))
    return path


def start(tmp_path, provider) -> Relay:
    config = tmp_path / "config.yaml"
    config.write_text(f"providers:\n  mock: {{type: openai, base_url: {provider.base_url}}}\nmodels:\n  default: {{provider: mock, model: m}}\n")
    return Relay(config, tmp_path, "--set", "adapter_claude_settings=true", "--set", "adapter_stream_idle_timeout_ms=120000")


def pointed_here(path, relay) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        env = json.loads(path.read_text()).get("env", {})
        if env.get("ANTHROPIC_BASE_URL") == relay.url:
            assert env["ANTHROPIC_AUTH_TOKEN"] and env["CLAUDE_STREAM_IDLE_TIMEOUT_MS"] == "120000" and env["FOO"] == "1"
            return
        time.sleep(0.1)
    raise AssertionError(path.read_text() + relay.output())


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["sigint", "sigterm", "sighup"])
def test_the_settings_come_back_however_the_relay_stops(settings, provider, tmp_path, stop) -> None:
    relay = start(tmp_path, provider).__enter__()
    try:
        pointed_here(settings, relay)
        relay.process.send_signal(stop)
        relay.process.wait(15)
    finally:
        relay.__exit__()
    assert json.loads(settings.read_text()) == ORIGINAL
    assert not list(settings.parent.glob("*llmrelay-backup*"))


def test_a_relay_killed_outright_is_undone_by_the_next_start(settings, provider, tmp_path) -> None:
    relay = start(tmp_path, provider).__enter__()
    pointed_here(settings, relay)
    relay.process.kill()
    relay.process.wait(15)
    assert json.loads(settings.read_text())["env"]["ANTHROPIC_BASE_URL"] == relay.url  # nobody restored it
    with start(tmp_path, provider) as again:
        pointed_here(settings, again)
    assert json.loads(settings.read_text()) == ORIGINAL


def test_a_value_the_user_changed_meanwhile_is_kept(settings, provider, tmp_path) -> None:
    with start(tmp_path, provider) as relay:
        pointed_here(settings, relay)
        data = json.loads(settings.read_text())
        data["env"]["ANTHROPIC_BASE_URL"] = "https://mine.example"
        settings.write_text(json.dumps(data))
    env = json.loads(settings.read_text())["env"]
    assert env["ANTHROPIC_BASE_URL"] == "https://mine.example" and "ANTHROPIC_AUTH_TOKEN" not in env and env["FOO"] == "1"
