"""`scripts/service`: the service files it writes are what launchd and systemd read."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def service(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "PATH": "/usr/bin:/bin", **env}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "service"), *args], capture_output=True, text=True,
                          env=environment, timeout=60)


def test_the_launch_agent_is_a_plist_that_runs_the_proxy(tmp_path) -> None:
    keys = tmp_path / "keys.env"
    keys.write_text("OPENAI_API_KEY=sk-from-file\n# a comment\n")
    result = service("print", "--kind", "launchd", "--env-file", str(keys), home=tmp_path, PORT="9001")
    assert result.returncode == 0, result.stderr
    agent = plistlib.loads(result.stdout.encode())
    assert agent["Label"] == "com.llmrelay.proxy" and agent["RunAtLoad"] is True
    assert agent["ProgramArguments"] == [str(ROOT / "scripts" / "proxy")]
    assert agent["EnvironmentVariables"]["PORT"] == "9001" and agent["EnvironmentVariables"]["OPENAI_API_KEY"] == "sk-from-file"
    assert agent["KeepAlive"] == {"SuccessfulExit": False}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_the_systemd_unit_verifies(tmp_path) -> None:
    result = service("install", "--kind", "systemd", "--no-start", home=tmp_path)
    assert result.returncode == 0, result.stderr
    unit = tmp_path / ".config" / "systemd" / "user" / "llmrelay.service"
    assert f"ExecStart={ROOT / 'scripts' / 'proxy'}" in unit.read_text()
    check = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (check.stdout + check.stderr).splitlines() if "llmrelay.service" in line]
    assert check.returncode == 0 and not problems, check.stdout + check.stderr


def test_uninstall_removes_what_install_wrote(tmp_path) -> None:
    assert service("install", "--kind", "launchd", "--no-start", home=tmp_path).returncode == 0
    plist = tmp_path / "Library" / "LaunchAgents" / "com.llmrelay.proxy.plist"
    assert plist.exists() and (plist.stat().st_mode & 0o777) == 0o600
    result = service("uninstall", "--kind", "launchd", home=tmp_path)
    assert result.returncode == 0 and not plist.exists()
