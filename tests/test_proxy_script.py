"""`scripts/proxy` as a user starts it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from relay_process import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_a_one_line_start_from_a_preset(tmp_path) -> None:
    port = free_port()
    venv = Path(sys.executable).parent.parent
    env = {**os.environ, "PORT": str(port), "HOME": str(tmp_path), "LLMRELAY_DATA": str(tmp_path / "data"),
           "NO_CLAUDE_SETTINGS": "1", "DEEPSEEK_API_KEY": "fake-env-key-for-tests-0000", "VENV": str(venv)}
    proc = subprocess.Popen([str(ROOT / "scripts" / "proxy"), "--preset", "deepseek", "--model", "deepseek-chat",
                             "--set", f"confdir={tmp_path / 'mitmproxy'}"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                models = httpx.get(f"http://127.0.0.1:{port}/v1/models/claude-sonnet-4-5", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert models.status_code == 200
        config = yaml.safe_load((tmp_path / "data" / "preset-deepseek.yaml").read_text())
        assert config["models"]["default"] == {"provider": "deepseek", "model": "deepseek-chat"}
        assert config["providers"]["deepseek"]["api_key"] == "${DEEPSEEK_API_KEY}"  # the key stays in the environment
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode()
    assert "fake-env-key-for-tests-0000" not in out and not (tmp_path / ".claude").exists()


def test_an_unknown_preset_is_one_clear_line(tmp_path) -> None:
    venv = Path(sys.executable).parent.parent
    env = {**os.environ, "HOME": str(tmp_path), "LLMRELAY_DATA": str(tmp_path), "VENV": str(venv)}
    result = subprocess.run([str(ROOT / "scripts" / "proxy"), "--preset", "nosuch", "--model", "m"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown preset 'nosuch'" in result.stderr and "Traceback" not in result.stderr


def test_a_port_in_use_is_one_clear_line(tmp_path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        venv = Path(sys.executable).parent.parent
        env = {**os.environ, "PORT": str(port), "HOME": str(tmp_path), "NO_CLAUDE_SETTINGS": "1", "VENV": str(venv)}
        result = subprocess.run([str(ROOT / "scripts" / "proxy")], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and f"port {port} is in use" in result.stderr and f"PORT={port + 1}" in result.stderr
