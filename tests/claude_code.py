"""Run the real Claude Code CLI headless, offline, against a local Anthropic-compatible URL.

Plain functions for tests and scripts (no pytest fixtures here):

    claude = ensure_installed()          # npm-installs the pinned CLI on first use
    proc = run("say hi", "http://127.0.0.1:8080", cwd=tmp_path)

The CLI is installed repo-locally into ``.tools/node`` (git-ignored). From 2.1.x on
the npm package ships its native binary as a platform-specific optional dependency
that comes from the npm registry too, so installing needs no other download.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

CLAUDE_CODE_VERSION = "2.1.332"
PACKAGE = "@anthropic-ai/claude-code"

ROOT = Path(__file__).resolve().parent.parent
TOOLS_DIR = ROOT / ".tools" / "node"
CLAUDE_BIN = TOOLS_DIR / "node_modules" / ".bin" / "claude"

# Any key works against a stub or the proxy; it must look like an API key so the
# CLI uses API-key auth (x-api-key header) and never starts an OAuth/login flow.
TEST_API_KEY = "sk-ant-test-anything"

# Pass as extra_env to make a failing endpoint fail fast: by default the CLI retries
# 5xx/429 ten times with exponential backoff (about 3 minutes in all) and 529 three
# times. It does not shorten the feature-fallback retries after a 400 (up to 6
# requests, dropping betas, `thinking.display` and deferred tools one by one); for
# those add CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS=1, which changes the request shape.
NO_RETRY_ENV = {"CLAUDE_CODE_MAX_RETRIES": "0"}


class ClaudeCodeInstallError(RuntimeError):
    pass


def installed_version() -> str | None:
    """The version `claude --version` reports, or None if it is missing or broken."""
    if not CLAUDE_BIN.exists():
        return None
    try:
        out = subprocess.run(
            [str(CLAUDE_BIN), "--version"], capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    # Prints "2.1.330 (Claude Code)"; the placeholder left when the postinstall
    # did not run prints an error and exits 1.
    return out.stdout.split()[0] if out.returncode == 0 and out.stdout.strip() else None


def ensure_installed() -> Path:
    """Install the pinned CLI into .tools/node unless it is already there; return its path.

    Idempotent and safe to call from parallel test workers (a file lock serialises
    the npm run). Raises ClaudeCodeInstallError with npm's output if it fails.
    """
    if installed_version() == CLAUDE_CODE_VERSION:
        return CLAUDE_BIN
    npm = shutil.which("npm")
    if npm is None:
        raise ClaudeCodeInstallError("npm not found on PATH: Node.js/npm are needed to install Claude Code")
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    with open(TOOLS_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed_version() == CLAUDE_CODE_VERSION:  # another worker did it meanwhile
            return CLAUDE_BIN
        cmd = [npm, "install", "--prefix", str(TOOLS_DIR), "--save-exact", "--no-audit", "--no-fund",
               "--loglevel=error", f"{PACKAGE}@{CLAUDE_CODE_VERSION}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900)
        if proc.returncode != 0:
            raise ClaudeCodeInstallError(
                f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        # The package's postinstall copies the native binary over a placeholder
        # bin/claude.exe. If npm skipped install scripts, run it ourselves (offline).
        install_cjs = TOOLS_DIR / "node_modules" / PACKAGE / "install.cjs"
        if installed_version() != CLAUDE_CODE_VERSION and install_cjs.exists():
            subprocess.run(["node", str(install_cjs)], cwd=install_cjs.parent, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=300)
        got = installed_version()
        if got != CLAUDE_CODE_VERSION:
            raise ClaudeCodeInstallError(
                f"installed {PACKAGE} but `{CLAUDE_BIN} --version` gives {got!r}, "
                f"expected {CLAUDE_CODE_VERSION}:\n{proc.stdout}\n{proc.stderr}")
    return CLAUDE_BIN


def run(
    prompt: str,
    base_url: str,
    *,
    cwd: Path,
    model: str | None = None,
    timeout: float = 120,
    extra_args: Iterable[str] = (),
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `claude -p PROMPT --allowedTools Bash [--model MODEL]` in `cwd` against `base_url`.

    - `-p` (print mode) runs one headless turn loop and exits; no onboarding,
      trust dialog or settings file is needed for it, even with a brand-new HOME.
    - `--allowedTools Bash` lets the model's Bash tool calls run without a
      permission prompt (`--dangerously-skip-permissions` is refused as root).
    - stdin is /dev/null: with an open pipe instead, `-p` waits 3 s for piped
      input to append to the prompt and prints a warning.
    - The environment is built from scratch, not inherited, so the caller's own
      ANTHROPIC_*/CLAUDE_* settings, proxies or a parent Claude Code session
      cannot leak in. HOME is a fresh temporary directory, so no login, config,
      memory or history of the real user is read and each run is a first run;
      CLAUDE_CODE_TMPDIR (the CLI's scratch dir, else /tmp/claude-UID) and
      TMPDIR point inside it, so nothing is left behind.

    Returns the CompletedProcess with stdout/stderr as text; raises
    subprocess.TimeoutExpired after `timeout` seconds. A run against a local stub
    takes about one second.
    """
    claude = ensure_installed()
    with tempfile.TemporaryDirectory(prefix="claude-home-") as home:
        tmp = Path(home) / "tmp"
        tmp.mkdir()
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOME": home,
            "TMPDIR": str(tmp),
            "CLAUDE_CODE_TMPDIR": str(tmp),
            # Where every API call goes: the stub or the proxy under test.
            "ANTHROPIC_BASE_URL": base_url,
            # API-key auth, sent as the x-api-key header.
            "ANTHROPIC_API_KEY": TEST_API_KEY,
            # No telemetry, error reporting, auto-update or feature-flag fetches to
            # the internet, and no HEAD /api/hello preflight to ANTHROPIC_BASE_URL:
            # the only requests are the POST /v1/messages?beta=true of the agent loop.
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            **(extra_env or {}),
        }
        cmd = [str(claude), "-p", prompt, "--allowedTools", "Bash"]
        if model:
            cmd += ["--model", model]
        cmd += list(extra_args)
        return subprocess.run(
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout,
        )
