"""Claude Code's settings pointed at the relay and put back, against real files, real processes
and real signals.

Each child process below is a relay stand-in: it applies the settings, says `ready`, and waits
to be stopped however a relay is stopped.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmrelay import claude_settings
from llmrelay.claude_settings import AUTH_TOKEN, BASE_URL, IDLE_TIMEOUT, Session, Settings, SettingsError, relay_env

ROOT = Path(__file__).resolve().parent.parent
MITMDUMP = Path(sys.executable).with_name("mitmdump")
URL = "http://127.0.0.1:8082"
ORIGINAL = {
    "permissions": {"allow": ["Bash(git diff:*)"], "deny": []},
    "model": "opus",
    "env": {"FOO": "bar", BASE_URL: "https://gateway.example", "ZED": "1"},
    "includeCoAuthoredBy": False,
    "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "echo done"}]}]},
}


def write(path: Path, data: object) -> str:
    text = json.dumps(data, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def ordered(value: object) -> object:
    """The value with every object's key order made part of it, for comparisons."""
    if isinstance(value, dict):
        return [(k, ordered(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [ordered(v) for v in value]
    return value


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name) if path.parent.exists() else []


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "claude" / "settings.json"


# --- in one process -----------------------------------------------------------------------


def test_apply_sets_three_keys_and_keeps_the_rest_then_restore_gives_the_original(path):
    original = write(path, ORIGINAL)
    settings = Settings(path)
    settings.apply(relay_env(URL, "inbound-key", 300_000))

    now = read(path)
    assert list(now) == list(ORIGINAL)
    assert {k: v for k, v in now.items() if k != "env"} == {k: v for k, v in ORIGINAL.items() if k != "env"}
    assert ordered(now) == ordered({**ORIGINAL, "env": {
        "FOO": "bar", BASE_URL: URL, "ZED": "1", AUTH_TOKEN: "inbound-key", IDLE_TIMEOUT: "300000",
    }})
    assert path.read_text() == json.dumps(now, indent=2) + "\n"  # as Claude Code writes it
    record = json.loads(settings.backup.read_text())
    assert record["layers"][0]["env"] == {
        BASE_URL: {"before": "https://gateway.example", "wrote": URL},
        AUTH_TOKEN: {"wrote": "inbound-key"},
        IDLE_TIMEOUT: {"wrote": "300000"},
    }
    assert record["layers"][0]["pid"] == os.getpid()
    assert stat.S_IMODE(settings.backup.stat().st_mode) == 0o600

    settings.restore()
    assert path.read_text() == original
    assert ordered(read(path)) == ordered(ORIGINAL)
    assert leftovers(path) == []  # backup and lock gone, no temp files


def test_restore_is_idempotent_and_harmless_without_apply(path):
    original = write(path, ORIGINAL)
    settings = Settings(path)
    settings.restore()
    settings.apply(relay_env(URL))
    settings.restore()
    settings.restore()
    assert path.read_text() == original
    assert leftovers(path) == []


def test_apply_twice_in_one_process_keeps_one_layer(path):
    original = write(path, ORIGINAL)
    settings = Settings(path)
    settings.apply(relay_env(URL))
    settings.apply(relay_env("http://127.0.0.1:9999", stream_idle_timeout_ms=60_000))
    assert len(settings.layers()) == 1
    assert read(path)["env"][BASE_URL] == "http://127.0.0.1:9999"
    assert settings.layers()[0]["env"][BASE_URL]["before"] == "https://gateway.example"
    settings.restore()
    assert path.read_text() == original


def test_no_file_and_no_directory_are_created_and_removed_again(path):
    settings = Settings(path)
    settings.apply(relay_env(URL, stream_idle_timeout_ms=300_000))
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the token
    assert read(path) == {"env": {BASE_URL: URL, AUTH_TOKEN: "llmrelay", IDLE_TIMEOUT: "300000"}}
    settings.restore()
    assert not path.parent.exists()


def test_a_created_file_is_kept_when_something_else_was_added_to_it(path):
    path.parent.mkdir()
    settings = Settings(path)
    settings.apply(relay_env(URL))
    write(path, {**read(path), "model": "sonnet"})  # Claude Code saved a setting meanwhile
    settings.restore()
    assert ordered(read(path)) == ordered({"model": "sonnet"})
    assert path.parent.exists() and leftovers(path) == []


def test_a_created_file_in_an_existing_directory_is_removed_the_directory_kept(path):
    path.parent.mkdir()
    (path.parent / "projects").mkdir()
    settings = Settings(path)
    settings.apply(relay_env(URL))
    settings.restore()
    assert not path.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["projects"]


def test_env_created_by_the_relay_is_removed_again(path):
    original = write(path, {"model": "opus"})
    settings = Settings(path)
    settings.apply(relay_env(URL))
    assert list(read(path)) == ["model", "env"]
    settings.restore()
    assert path.read_text() == original


def test_a_value_the_user_changed_meanwhile_is_left_alone(path):
    write(path, ORIGINAL)
    settings = Settings(path)
    settings.apply(relay_env(URL, "tok", 300_000))
    changed = read(path)
    changed["env"][BASE_URL] = "http://127.0.0.1:7777"  # the user's own, while the relay runs
    del changed["env"][IDLE_TIMEOUT]
    write(path, changed)
    settings.restore()
    assert ordered(read(path)) == ordered({**ORIGINAL, "env": {"FOO": "bar", BASE_URL: "http://127.0.0.1:7777", "ZED": "1"}})


def test_the_file_mode_is_kept(path):
    write(path, ORIGINAL)
    path.chmod(0o640)
    settings = Settings(path)
    settings.apply(relay_env(URL))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    settings.restore()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_symlinked_settings_file_is_written_through_the_link(path, tmp_path):
    dotfiles = tmp_path / "dotfiles" / "claude-settings.json"
    original = write(dotfiles, ORIGINAL)
    path.parent.mkdir()
    path.symlink_to(dotfiles)
    settings = Settings(path)
    settings.apply(relay_env(URL))
    assert path.is_symlink() and read(dotfiles)["env"][BASE_URL] == URL
    settings.restore()
    assert path.is_symlink() and dotfiles.read_text() == original
    assert sorted(p.name for p in dotfiles.parent.iterdir()) == ["claude-settings.json"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"model": "opus",\n  "env": {"A": 1,}}\n', "is not valid JSON (line 2, column"),
        ("", "is not valid JSON"),
        ('["a", "list"]\n', "holds a JSON array, not an object"),
        ('{"env": "FOO=bar"}\n', '"env" is a JSON string, not an object'),
    ],
)
def test_a_settings_file_that_is_not_a_json_object_is_left_untouched(path, content, message):
    path.parent.mkdir()
    path.write_text(content)
    before = path.stat()
    with pytest.raises(SettingsError) as e:
        Settings(path).apply(relay_env(URL))
    assert str(path) in str(e.value) and message in str(e.value) and "left as it is" in str(e.value)
    assert path.read_text() == content and path.stat().st_mtime_ns == before.st_mtime_ns
    assert not Settings(path).backup.exists()


def test_an_unreadable_backup_stops_apply_with_a_clear_error(path):
    original = write(path, ORIGINAL)
    settings = Settings(path)
    settings.backup.write_text("{broken")
    with pytest.raises(SettingsError, match="cannot be read.*remove it"):
        settings.apply(relay_env(URL))
    assert path.read_text() == original


def test_claude_config_dir_is_honoured(monkeypatch, tmp_path):
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "elsewhere"))
    assert Settings().path == tmp_path / "elsewhere" / "settings.json"
    monkeypatch.delenv("CLAUDE_CONFIG_DIR")
    assert Settings().path == Path.home() / ".claude" / "settings.json"


def test_relay_env_and_url():
    assert relay_env(URL) == {BASE_URL: URL, AUTH_TOKEN: "llmrelay"}
    assert relay_env(URL, "k", 0) == {BASE_URL: URL, AUTH_TOKEN: "k"}
    assert relay_env(URL, "k", 300_000)[IDLE_TIMEOUT] == "300000"
    assert claude_settings.relay_url("127.0.0.1", 8082) == URL
    assert claude_settings.relay_url("0.0.0.0", 8082) == URL
    assert claude_settings.relay_url(None, 8082) == URL
    assert claude_settings.relay_url("::1", 8082) == "http://[::1]:8082"


def test_session_stop_is_idempotent(path):
    original = write(path, ORIGINAL)
    with Session(relay_env(URL), Settings(path)) as session:
        assert read(path)["env"][BASE_URL] == URL
        session.stop()
        assert path.read_text() == original
        session.stop()
    assert path.read_text() == original


def test_session_start_gives_the_signals_back_when_it_fails(path):
    path.parent.mkdir()
    path.write_text("not json")
    before = signal.getsignal(signal.SIGHUP)
    with pytest.raises(SettingsError):
        Session(relay_env(URL), Settings(path)).start(signals=(signal.SIGHUP,))
    assert signal.getsignal(signal.SIGHUP) == before


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="telling reused pids apart needs /proc")
def test_a_layer_whose_pid_now_belongs_to_another_process_is_undone(path):
    original = write(path, ORIGINAL)
    settings = Settings(path)
    with Session(relay_env(URL), settings):
        pass
    # A relay killed long ago whose pid is now the test runner's parent, alive and unrelated.
    write(path, {**ORIGINAL, "env": {**ORIGINAL["env"], BASE_URL: "http://127.0.0.1:1111"}})
    settings.backup.write_text(json.dumps({"llmrelay": 1, "layers": [{
        "pid": os.getppid(), "started": "another-boot:1", "made": [],
        "env": {BASE_URL: {"before": "https://gateway.example", "wrote": "http://127.0.0.1:1111"}},
    }]}))
    settings.apply(relay_env(URL))
    assert [layer["pid"] for layer in settings.layers()] == [os.getpid()]
    settings.restore()
    assert path.read_text() == original


# --- real processes and signals ------------------------------------------------------------

CHILD = """
import os, signal, sys, time
from pathlib import Path
sys.path.insert(0, {addon!r})
from llmrelay.claude_settings import Session, Settings, relay_env

class Interrupted(Settings):
    # A signal between the backup's write and the settings' (the lock held) must wait.
    def _write_backup(self, layers):
        super()._write_backup(layers)
        sig = os.environ.pop("SIGNAL_MID_APPLY", None)
        if sig:
            os.kill(os.getpid(), int(sig))

go = os.environ.get("GO_FILE")
while go and not Path(go).exists():
    time.sleep(0.001)
settings = Interrupted(Path({path!r}))
extra = os.environ.get("EXTRA_KEY")
values = relay_env(os.environ["URL"], "tok", 300000) | ({{extra: os.environ["URL"]}} if extra else {{}})
for _ in range(int(os.environ.get("CHURN", "0"))):  # many transactions racing the others
    settings.apply(values)
    settings.restore()
Session(values, settings).start()
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def child(path: Path, url: str, **env: str) -> subprocess.Popen:
    code = CHILD.format(addon=str(ROOT / "addon"), path=str(path))
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "URL": url, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def ready(process: subprocess.Popen) -> None:
    line = process.stdout.readline()
    if line != "ready\n":
        process.kill()
        raise AssertionError(f"the child did not start: {line!r} {process.communicate()[1]}")


def ended(process: subprocess.Popen) -> int:
    try:
        return process.wait(timeout=10)
    finally:
        process.stdout.close()
        process.stderr.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_process_stopped_by_a_signal_restores_the_settings(path, sig):
    original = write(path, ORIGINAL)
    process = child(path, URL)
    ready(process)
    assert read(path)["env"][BASE_URL] == URL
    process.send_signal(sig)
    assert ended(process) == -sig  # restored, then the signal did what it always does
    assert path.read_text() == original
    assert leftovers(path) == []


def test_a_process_ending_normally_restores_the_settings(path):
    original = write(path, ORIGINAL)
    code = f"""
import sys; sys.path.insert(0, {str(ROOT / 'addon')!r})
from pathlib import Path
from llmrelay.claude_settings import Session, Settings, relay_env
Session(relay_env({URL!r}), Settings(Path({str(path)!r}))).start()
assert "{URL}" in Path({str(path)!r}).read_text()
"""
    subprocess.run([sys.executable, "-c", code], check=True)  # atexit puts it back
    assert path.read_text() == original


def test_a_signal_during_apply_waits_for_it_then_restores(path):
    original = write(path, ORIGINAL)
    process = child(path, URL, SIGNAL_MID_APPLY=str(int(signal.SIGTERM)))
    assert process.stdout.readline() == ""  # it never got to `ready`
    assert ended(process) == -signal.SIGTERM
    assert path.read_text() == original
    assert leftovers(path) == []


def test_after_sigkill_the_next_start_restores_first_then_applies(path):
    original = write(path, ORIGINAL)
    killed = child(path, "http://127.0.0.1:1111")
    ready(killed)
    killed.kill()
    assert ended(killed) == -signal.SIGKILL
    settings = Settings(path)
    assert settings.backup.exists() and read(path)["env"][BASE_URL] == "http://127.0.0.1:1111"

    settings.apply(relay_env(URL))
    [layer] = settings.layers()
    assert layer["pid"] == os.getpid()
    assert layer["env"][BASE_URL] == {"before": "https://gateway.example", "wrote": URL}
    assert IDLE_TIMEOUT not in read(path)["env"]  # the killed relay's was taken out
    settings.restore()
    assert path.read_text() == original
    assert leftovers(path) == []


def test_after_sigkill_a_stop_of_another_relay_also_restores_it(path):
    original = write(path, ORIGINAL)
    settings = Settings(path)
    settings.apply(relay_env(URL))
    killed = child(path, "http://127.0.0.1:1111")
    ready(killed)
    killed.kill()
    ended(killed)
    settings.restore()
    assert path.read_text() == original
    assert leftovers(path) == []


def test_relays_starting_at_once_each_keep_their_keys_and_each_stop_puts_back_its_own(path, tmp_path):
    original = write(path, ORIGINAL)
    go = tmp_path / "go"
    urls = [f"http://127.0.0.1:{9000 + i}" for i in range(6)]
    processes = [child(path, url, GO_FILE=str(go), EXTRA_KEY=f"LLMRELAY_TEST_{i}", CHURN="15") for i, url in enumerate(urls)]
    time.sleep(0.3)  # all waiting on the same go
    go.touch()
    for process in processes:
        ready(process)

    settings = Settings(path)
    layers = settings.layers()
    assert sorted(layer["pid"] for layer in layers) == sorted(p.pid for p in processes)
    now = read(path)  # valid JSON, every relay's own key there, the latest one's URL
    assert ordered({k: v for k, v in now.items() if k != "env"}) == ordered({k: v for k, v in ORIGINAL.items() if k != "env"})
    assert all(now["env"][f"LLMRELAY_TEST_{i}"] == url for i, url in enumerate(urls))
    assert now["env"][BASE_URL] == layers[-1]["env"][BASE_URL]["wrote"]

    by_pid = {p.pid: (i, p) for i, p in enumerate(processes)}
    order = [layers[2], layers[-1], layers[0], *layers[3:-1], layers[1]]  # middle, top, bottom, ...
    running = {p.pid for p in processes}
    for layer in order:
        i, process = by_pid[layer["pid"]]
        process.terminate()
        assert ended(process) == -signal.SIGTERM
        running.discard(process.pid)
        now = read(path)
        assert f"LLMRELAY_TEST_{i}" not in now["env"]
        assert all(now["env"][f"LLMRELAY_TEST_{j}"] == urls[j] for j, p in enumerate(processes) if p.pid in running)
        remaining = settings.layers()
        if remaining:  # the newest running relay's URL
            assert now["env"][BASE_URL] == remaining[-1]["env"][BASE_URL]["wrote"]
    assert path.read_text() == original
    assert leftovers(path) == []


# --- as the relay runs it: an asyncio program with its own SIGINT and SIGTERM handling -------

ASYNC_CHILD = """
import asyncio, signal, sys
from pathlib import Path
sys.path.insert(0, {addon!r})
from llmrelay import claude_settings

async def main():
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, stop.set)   # as mitmproxy does
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    session = claude_settings.Session(claude_settings.relay_env({url!r}), claude_settings.Settings(Path({path!r})))
    session.start(signals=())
    claude_settings.hangup_shuts_down(loop, stop.set)
    print("ready", flush=True)
    await stop.wait()
    session.stop()                                     # the shutdown hook
    print("clean", flush=True)

asyncio.run(main())
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_an_asyncio_program_shuts_down_its_own_way_and_restores(path, sig):
    original = write(path, ORIGINAL)
    code = ASYNC_CHILD.format(addon=str(ROOT / "addon"), path=str(path), url=URL)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready(process)
    assert read(path)["env"][BASE_URL] == URL
    process.send_signal(sig)
    assert process.stdout.readline() == "clean\n"
    assert ended(process) == 0
    assert path.read_text() == original


# --- as the relay runs it: a mitmdump addon wired as adapter.py would be -----------------------

ADDON = """
import asyncio, logging
from mitmproxy import ctx
from llmrelay import claude_settings

class Wired:
    def __init__(self):
        self.claude = None

    def running(self):
        url = claude_settings.relay_url(ctx.options.listen_host, ctx.options.listen_port or 8080)
        session = claude_settings.Session(claude_settings.relay_env(url, None, 300000))
        try:
            session.start(signals=())
        except claude_settings.SettingsError as e:
            logging.warning(f"llmrelay: Claude Code settings left alone: {{e}}")
        else:
            self.claude = session
        claude_settings.hangup_shuts_down(asyncio.get_running_loop(), ctx.master.shutdown)

    def done(self):
        if self.claude is not None:
            self.claude.stop()

addons = [Wired()]
"""


@pytest.mark.skipif(not MITMDUMP.exists(), reason="needs mitmdump")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_mitmdump_with_the_integration_restores_on_each_signal(tmp_path, sig):
    config_dir = tmp_path / "claude"
    path = config_dir / "settings.json"
    original = write(path, ORIGINAL)
    script = tmp_path / "wired.py"
    script.write_text(ADDON.format())
    from relay_process import free_port

    port = free_port()
    process = subprocess.Popen(
        [str(MITMDUMP), "-s", str(script), "--listen-host", "127.0.0.1", "-p", str(port),
         "--set", f"confdir={tmp_path / 'mitmproxy'}"],
        env={**os.environ, "CLAUDE_CONFIG_DIR": str(config_dir), "PYTHONPATH": str(ROOT / "addon")},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while read(path)["env"].get(BASE_URL) != f"http://127.0.0.1:{port}":
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
            time.sleep(0.05)
        assert read(path)["env"][AUTH_TOKEN] == "llmrelay"
        process.send_signal(sig)
        output = process.communicate(timeout=20)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert path.read_text() == original
    assert leftovers(path) == []
