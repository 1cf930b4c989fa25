"""`scripts/configure`: the wizard driven in a pseudo-terminal as a person would, answer by
answer, and `ls`, `rm` and `-r` on configurations written beforehand."""

from __future__ import annotations

import fcntl
import os
import select
import stat
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import yaml

from llmrelay.config import load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "configure"
KEY = "fake-deepseek-key-for-tests-0000cdef"
SOURCE_LINE = "set -a; . ~/.llmrelay/secrets.env; set +a"


def environment(home: Path) -> dict[str, str]:
    # No provider key of the machine running the tests may leak in, or change a default.
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return {**env, "HOME": str(home)}


class Terminal:
    """The script on a pseudo-terminal: each answer is typed only once its prompt is shown."""

    def __init__(self, home: Path, *args: str) -> None:
        master, slave = os.openpty()
        # A session of its own with the pty as its controlling terminal, as in a real one: getpass
        # reads /dev/tty with echo off, and Ctrl-C is a SIGINT.
        self.proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], stdin=slave, stdout=slave, stderr=slave,
                                     env=environment(home), cwd=home, start_new_session=True,
                                     preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.fd = master
        self.output = ""
        self.seen = 0  # how far `expect` has matched

    def _read(self, timeout: float) -> bool:
        """False at the end of the output."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:  # EIO: the script closed the terminal
            return False
        if not chunk:
            return False
        self.output += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        return True

    def expect(self, text: str, timeout: float = 10.0) -> str:
        """The output from the last match up to `text`, once it has appeared."""
        deadline = time.monotonic() + timeout
        while text not in self.output[self.seen:]:
            if time.monotonic() > deadline or not self._read(max(0.0, deadline - time.monotonic())):
                raise AssertionError(f"never saw {text!r}; the terminal showed:\n{self.output}")
        end = self.output.index(text, self.seen) + len(text)
        shown, self.seen = self.output[self.seen:end], end
        return shown

    def answer(self, prompt: str, reply: str) -> str:
        shown = self.expect(prompt)
        os.write(self.fd, reply.encode() + b"\r")  # Enter, as a keyboard sends it
        return shown

    def finish(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.2):
            pass
        code = self.proc.wait(timeout=5)
        os.close(self.fd)
        return code


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env=environment(home), cwd=home, timeout=30)


def parse(path: Path, **env: str):
    """The written config through the relay's own parser, with its keys' variables set."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        return load_config(path)
    finally:
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)


def test_a_full_run_keeps_the_key_in_the_secrets_file_only(home: Path) -> None:
    config = home / "config.yaml"
    term = Terminal(home, "--config", str(config))
    term.answer("Category (1-", "1")
    term.answer("Provider (1-", "deepseek")
    term.answer("Key (1-2)", "2")
    term.answer("API key for DEEPSEEK_API_KEY (hidden", KEY)
    term.answer("Base URL [https://api.deepseek.com]", "")
    term.answer("Model for opus (claude-opus-*) [deepseek-reasoner]", "")
    term.answer("Model for sonnet (claude-sonnet-*) [deepseek-chat]", "")
    term.answer("Model for haiku (claude-haiku-*) [deepseek-chat]", "")
    term.answer("Tool format (1-2) [1]", "")
    term.answer("Port the relay listens on [8082]", "8091")
    review = term.answer("Write it?", "y")
    after = term.answer("Start the relay now?", "n")
    assert term.finish() == 0

    assert "${DEEPSEEK_API_KEY}" in review and "The relay's own parser accepts it." in review
    assert KEY not in term.output  # never echoed, never shown
    secrets = home / ".llmrelay" / "secrets.env"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert secrets.read_text() == f"DEEPSEEK_API_KEY={KEY}\n"
    text = config.read_text()
    assert "api_key: ${DEEPSEEK_API_KEY}" in text and KEY not in text
    assert "PORT=8091" in text and "PORT=8091" in after
    if "secrets.env" not in (ROOT / "scripts" / "proxy").read_text():
        assert SOURCE_LINE in after

    loaded = parse(config, DEEPSEEK_API_KEY=KEY)
    route = loaded.route("claude-opus-4-8")
    assert (route.provider, route.model) == ("deepseek", "deepseek-reasoner")
    assert loaded.route("claude-haiku-4-5-20251001").model == "deepseek-chat"
    assert loaded.providers["deepseek"].key == KEY
    assert not (home / "config.yaml.bak").exists()


def test_going_back_from_the_model_step_changes_the_provider(home: Path) -> None:
    config = home / "config.yaml"
    term = Terminal(home, "--config", str(config))
    term.answer("Category (1-", "")  # the default: a cloud API
    term.answer("Provider (1-", "deepseek")
    term.answer("Key (1-2)", "")  # an environment variable
    term.answer("Base URL", "")
    term.answer("Model for opus", "b")
    term.answer("Base URL", "b")
    term.answer("Key (1-2)", "b")
    term.answer("Provider (1-", "xai")
    term.answer("Key (1-2)", "")
    term.answer("Base URL [https://api.x.ai/v1]", "")
    term.answer("Model for opus (claude-opus-*) [grok-4]", "grok-4-custom")
    term.answer("Model for sonnet", "")
    term.answer("Model for haiku", "")
    term.answer("Tool format", "2")
    term.answer("Port the relay listens on", "")
    term.answer("Write it?", "")
    after = term.answer("Start the relay now?", "n")
    assert term.finish() == 0

    assert "export XAI_API_KEY=<your key>" in after
    data = yaml.safe_load(config.read_text())
    assert list(data["providers"]) == ["xai"]
    loaded = parse(config, XAI_API_KEY="xai-test")
    assert loaded.route("claude-opus-4-8").model == "grok-4-custom"
    assert loaded.route("claude-haiku-4-5").model == "grok-3-mini"
    # The relay may not read tool_format yet; then it is kept as a comment for one that does.
    assert "tool_format: xml" in config.read_text()
    assert not (home / ".llmrelay" / "secrets.env").exists()


def test_q_writes_nothing(home: Path) -> None:
    config = home / "config.yaml"
    config.write_text("providers: {}\nmodels: {default: passthrough}\n")
    before = config.read_text()
    term = Terminal(home, "--config", str(config))
    term.answer("Category (1-", "1")
    term.answer("Provider (1-", "deepseek")
    term.answer("Key (1-2)", "2")
    term.answer("API key for DEEPSEEK_API_KEY", KEY)
    term.answer("Base URL", "")
    term.answer("Model for opus", "q")
    term.expect("nothing was written")
    assert term.finish() == 0
    assert config.read_text() == before
    assert not (home / "config.yaml.bak").exists()
    assert not (home / ".llmrelay").exists()
    assert KEY not in term.output


def test_ctrl_c_at_the_hidden_key_prompt_writes_nothing_and_echo_comes_back(home: Path) -> None:
    term = Terminal(home, "--config", str(home / "config.yaml"))
    term.answer("Category (1-", "1")
    term.answer("Provider (1-", "kimi")
    term.answer("Key (1-2)", "2")
    term.expect("API key for MOONSHOT_API_KEY (hidden")
    for _ in range(10):
        # A SIGINT that lands just before the read begins waits for the next one, in a real
        # terminal too: press again until it is seen.
        os.write(term.fd, b"\x03")
        try:
            term.expect("nothing was written", timeout=1)
            break
        except AssertionError:
            continue
    assert termios.tcgetattr(term.fd)[3] & termios.ECHO  # getpass put the terminal back
    assert term.finish() == 130
    assert sorted(p.name for p in home.iterdir()) == []


def test_without_a_terminal_it_says_so(home: Path) -> None:
    result = run(home, "--config", str(home / "config.yaml"))
    assert result.returncode == 2
    assert "not a terminal" in result.stderr
    assert not (home / "config.yaml").exists()


def test_yes_with_flags_needs_no_terminal(home: Path) -> None:
    config = home / "config.yaml"
    result = run(home, "--config", str(config), "--yes", "--provider", "glm", "--haiku", "glm-4.5-air", "--port", "8099")
    assert result.returncode == 0, result.stderr
    loaded = parse(config, ZAI_API_KEY="zai-test")
    assert loaded.route("claude-haiku-4-5").model == "glm-4.5-air"
    assert loaded.route("claude-opus-4-8").model == "glm-4.7"
    missing = run(home, "--config", str(home / "other.yaml"), "--yes", "--provider", "lmstudio")
    assert missing.returncode == 2 and "--opus" in missing.stderr


TWO_PROVIDERS = """\
# Start the relay: PORT=8093 scripts/proxy
providers:
  openai:
    type: openai
    base_url: https://api.openai.com/v1
    api_key: ${OPENAI_API_KEY}
    max_output_tokens: 4096
  deepseek:
    preset: deepseek
    base_url: https://deepseek.example.test
    api_key: ${DEEPSEEK_API_KEY}
    timeouts: {connect: 5}
  local:
    type: openai
    base_url: http://127.0.0.1:9999/v1
    api_key: fake-literal-key-for-tests-0000cdef
models:
  default: {provider: openai, model: gpt-4.1}
  routes:
    opus: {provider: deepseek, model: deepseek-custom}
    haiku: {provider: deepseek, model: deepseek-chat}
    claude-3-haiku: {provider: local, model: tiny}
"""


def test_ls_lists_providers_and_routes_with_keys_masked(home: Path) -> None:
    config = home / "config.yaml"
    config.write_text(TWO_PROVIDERS)
    result = run(home, "ls", "--config", str(config))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "fake-literal-key-for-tests-0000cdef" not in result.stdout and "****cdef" in result.stdout
    providers = [line.split()[1] for line in lines if line.startswith("provider")]
    assert providers == ["openai", "deepseek", "local"]
    deepseek = next(line for line in lines if line.startswith("provider") and " deepseek " in line)
    assert "https://deepseek.example.test" in deepseek and "${DEEPSEEK_API_KEY} (not set)" in deepseek
    routes = {line.split()[1]: line.split()[2:4] for line in lines if line.startswith("route")}
    assert routes == {"default": ["openai", "gpt-4.1"], "opus": ["deepseek", "deepseek-custom"],
                      "haiku": ["deepseek", "deepseek-chat"], "claude-3-haiku": ["local", "tiny"]}


def test_rm_removes_a_provider_and_its_routes_after_confirming(home: Path) -> None:
    config = home / "config.yaml"
    config.write_text(TWO_PROVIDERS)
    term = Terminal(home, "rm", "deepseek", "--config", str(config))
    shown = term.answer("Remove it?", "y")
    assert term.finish() == 0
    assert "its routes: opus, haiku" in shown
    data = yaml.safe_load(config.read_text())
    assert list(data["providers"]) == ["openai", "local"]
    assert list(data["models"]["routes"]) == ["claude-3-haiku"]
    assert (home / "config.yaml.bak").read_text() == TWO_PROVIDERS
    parse(config, OPENAI_API_KEY="sk-test")

    refused = run(home, "rm", "openai", "--config", str(config))
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert "openai" in yaml.safe_load(config.read_text())["providers"]
    forced = run(home, "rm", "openai", "--force", "--yes", "--config", str(config))
    assert forced.returncode == 0, forced.stderr
    data = yaml.safe_load(config.read_text())
    assert list(data["providers"]) == ["local"] and data["models"]["default"] == "passthrough"
    parse(config)


def test_rm_answered_no_changes_nothing(home: Path) -> None:
    config = home / "config.yaml"
    config.write_text(TWO_PROVIDERS)
    term = Terminal(home, "rm", "local", "--config", str(config))
    term.answer("Remove it?", "")
    assert term.finish() == 0
    assert config.read_text() == TWO_PROVIDERS and not (home / "config.yaml.bak").exists()


def test_reconfigure_starts_from_the_current_values_and_keeps_the_other_providers(home: Path) -> None:
    config = home / "config.yaml"
    config.write_text(TWO_PROVIDERS)
    term = Terminal(home, "-r", "--config", str(config))
    term.answer("Category (1-5) [1]", "")
    term.answer("Provider (1-", "deepseek")
    term.answer("Key (1-2) [1]", "")
    term.answer("Base URL [https://deepseek.example.test]", "")
    term.answer("Model for opus (claude-opus-*) [deepseek-custom]", "")
    term.answer("Model for sonnet (claude-sonnet-*) [deepseek-chat]", "")
    term.answer("Model for haiku (claude-haiku-*) [deepseek-chat]", "deepseek-reasoner")
    term.answer("Tool format", "")
    term.answer("Port the relay listens on [8093]", "")
    review = term.answer("Write it?", "y")
    term.answer("Start the relay now?", "n")
    assert term.finish() == 0

    assert "fake-literal-key-for-tests-0000cdef" not in term.output  # the kept literal key is masked in the review
    assert "route claude-3-haiku still goes to local" in review
    data = yaml.safe_load(config.read_text())
    assert list(data["providers"]) == ["openai", "deepseek", "local"]  # replaced in its place
    assert data["providers"]["openai"] == yaml.safe_load(TWO_PROVIDERS)["providers"]["openai"]
    assert data["providers"]["deepseek"] == {"preset": "deepseek", "timeouts": {"connect": 5},
                                             "base_url": "https://deepseek.example.test",
                                             "api_key": "${DEEPSEEK_API_KEY}"}
    assert (home / "config.yaml.bak").read_text() == TWO_PROVIDERS
    loaded = parse(config, OPENAI_API_KEY="sk-test", DEEPSEEK_API_KEY=KEY)
    assert (loaded.models.default.provider, loaded.models.default.model) == ("deepseek", "deepseek-chat")
    assert loaded.route("claude-opus-4-8").model == "deepseek-custom"
    assert loaded.route("claude-haiku-4-5").model == "deepseek-reasoner"
    assert loaded.route("claude-3-haiku-20240307").provider == "local"
    assert "PORT=8093" in config.read_text()


def test_the_written_config_parses_as_written(home: Path) -> None:
    """What the review shows is what the relay reads: the file round-trips through YAML."""
    config = home / "config.yaml"
    result = run(home, "--config", str(config), "--yes", "--provider", "ollama")
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(config.read_text())
    assert data["providers"] == {"ollama": {"preset": "ollama"}}
    assert parse_config(data).route("claude-sonnet-4-5").model == "qwen2.5-coder:14b"
