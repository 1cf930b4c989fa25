"""Claude Code pointed at the relay through its own settings file, and put back afterwards.

Claude Code reads `env` from `~/.claude/settings.json` (`$CLAUDE_CONFIG_DIR/settings.json`
when that is set), and that file wins over the shell's exports. While the relay runs, it sets
there `ANTHROPIC_BASE_URL` (the relay), `ANTHROPIC_AUTH_TOKEN` (with a token set, Claude Code
asks no "custom API key" question and uses no Anthropic login) and, if asked,
`CLAUDE_STREAM_IDLE_TIMEOUT_MS`; when it stops, the file is as it was.

Rules:
- Only the keys asked for, inside `env`, are changed; every other key and value stays, in its
  order. The file is written as Claude Code writes it: JSON, indent 2, a trailing newline.
- Every write is atomic (a temp file in the same directory, fsync, `os.replace`) and keeps the
  file's mode; a symlinked settings file is written through the link. A file the relay creates
  gets mode 0600 (it holds the token), a directory it creates 0700.
- Before the settings change, a backup record is written next to them,
  `settings.json.llmrelay-backup` (mode 0600): per relay process a layer holding, for each key,
  the value found (absent: no "before") and the value written. So a relay killed with
  SIGKILL can always be undone.
- Restoring puts a key back only while it still holds the value the relay wrote: a value the
  user changed meanwhile is theirs. `env`, the file and the directory are removed again when
  the relay created them and they are empty; a file that is `{}` again counts as empty.
- Several relays may run at once: each start and stop is one transaction under an `flock` on
  `settings.json.llmrelay-lock`, and the layers stack, so each relay's stop puts back what it
  found, handing it on to the layer above when another relay has written since.
- A layer whose process is gone (killed, crashed, rebooted; on Linux the process's start time
  tells a reused pid apart) is undone by the next start or stop, before anything else.
- A settings file that is not a JSON object (or whose `env` is not one), or an unreadable
  backup: nothing is touched, `SettingsError` says why. Every failure is a `SettingsError`.
- `Session` ties it to a process: apply at start, restore at exit, on SIGINT, SIGTERM and
  SIGHUP (restore, then whatever the signal did before), or from a shutdown hook; `stop()`
  may be called any number of times. A signal that was ignored (nohup) is left ignored.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("llmrelay")

BASE_URL = "ANTHROPIC_BASE_URL"
AUTH_TOKEN = "ANTHROPIC_AUTH_TOKEN"
IDLE_TIMEOUT = "CLAUDE_STREAM_IDLE_TIMEOUT_MS"
PLACEHOLDER_TOKEN = "llmrelay"  # any token will do for a relay without inbound keys
BACKUP_SUFFIX = ".llmrelay-backup"
LOCK_SUFFIX = ".llmrelay-lock"
FORMAT = 1
LOCK_WAIT = 10.0  # seconds; a transaction takes milliseconds, so a longer wait means a stuck process
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SettingsError(Exception):
    """Claude Code's settings could not be changed or put back; the message says why."""


def default_path() -> Path:
    """Where Claude Code keeps its user settings."""
    config_dir = os.environ.get("CLAUDE_CONFIG_DIR")
    base = Path(config_dir).expanduser() if config_dir else Path.home() / ".claude"
    return base / "settings.json"


def relay_url(host: str | None, port: int) -> str:
    """The URL Claude Code should use for a relay listening on host:port."""
    host = host or "127.0.0.1"
    if host in ("0.0.0.0", "::"):  # listening everywhere: loopback reaches it
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def relay_env(base_url: str, auth_token: str | None = None, stream_idle_timeout_ms: int | None = None) -> dict[str, str]:
    """The `env` values for a relay; no timeout (or 0) leaves Claude Code's own alone."""
    values = {BASE_URL: base_url, AUTH_TOKEN: auth_token or PLACEHOLDER_TOKEN}
    if stream_idle_timeout_ms:
        values[IDLE_TIMEOUT] = str(int(stream_idle_timeout_ms))
    return values


class Settings:
    """One Claude Code settings file, changed by `apply` and put back by `restore`."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.backup = self.path.with_name(self.path.name + BACKUP_SUFFIX)
        self.lock = self.path.with_name(self.path.name + LOCK_SUFFIX)

    def apply(self, values: dict[str, str]) -> None:
        """Set these `env` keys for this process, after undoing what dead relays left.

        A layer this process applied before is replaced, so calling it again is harmless."""
        with self._locked() as made_dir:
            for _ in range(3):  # Claude Code wrote the file meanwhile: read it again
                data, seen = self._read()
                found = _text(data)
                layers = self._layers()
                leftover = _undo(data, layers, _replaced)
                if data is None:
                    data, leftover = {}, leftover | {"file"}
                env = data.get("env")
                if env is None:
                    env = data["env"] = {}
                    leftover.add("env")
                layer: dict[str, Any] = {"pid": os.getpid(), "started": _started(os.getpid()), "env": {}}
                for key, value in values.items():
                    entry = {"before": env[key]} if key in env else {}
                    layer["env"][key] = entry | {"wrote": value}
                    env[key] = value
                layer["made"] = sorted(leftover | ({"dir"} if made_dir else set()))
                layers.append(layer)
                self._write_backup(layers)  # first: a kill between the two writes loses nothing
                if _text(data) == found or self._write_settings(data, seen):
                    return
            self._write_settings(data, None)

    def restore(self) -> None:
        """Put back what this process (and any dead relay) set; nothing to do is fine."""
        if not self.backup.exists():
            return
        with self._locked():
            for _ in range(3):
                data, seen = self._read()
                found = _text(data)
                layers = self._layers()
                leftover = _undo(data, layers, _replaced)
                if self._finish(data, found, seen, layers, leftover):
                    return
            self._finish(data, found, None, layers, leftover)

    def layers(self) -> list[dict[str, Any]]:
        """The backup's layers, oldest first (empty without a backup)."""
        return self._layers()

    # --- one transaction's parts ---------------------------------------------------------

    def _finish(self, data: dict | None, found: str, seen: tuple | None, layers: list[dict], leftover: set[str]) -> bool:
        """Write what a restore computed; False when the settings changed under it."""
        if data is not None and "env" in leftover and data.get("env") == {}:
            del data["env"]
        if data is not None and "file" in leftover and data == {}:
            if seen is not None and _identity(self._target()) != seen:
                return False
            _remove(self._target())
        elif _text(data) != found and not self._write_settings(data, seen):
            return False  # (unchanged, the file is not rewritten: its own formatting stays)
        if layers:
            self._write_backup(layers)
            return True
        _remove(self.backup)
        _remove(self.lock)  # removed while held: `_locked` sees that and takes the new one
        if "dir" in leftover:
            try:
                self.path.parent.rmdir()  # only when empty: Claude Code may have moved in
            except OSError:
                pass
        return True

    def _target(self) -> Path:
        """The file a write replaces: a symlink's target, so the link stays a link."""
        return Path(os.path.realpath(self.path))

    def _read(self) -> tuple[dict | None, tuple | None]:
        """The settings (None when there is no file) and what identifies this version of it."""
        target = self._target()
        seen = _identity(target)  # before reading: a write after it shows as a change
        try:
            raw = target.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as e:
            raise SettingsError(f"{self.path}: {e.strerror}") from None
        try:
            data = json.loads(raw)
        except ValueError as e:
            where = f" (line {e.lineno}, column {e.colno}: {e.msg})" if isinstance(e, json.JSONDecodeError) else ""
            raise SettingsError(f"{self.path} is not valid JSON{where}; it was left as it is") from None
        if not isinstance(data, dict):
            raise SettingsError(f"{self.path} holds a JSON {_kind(data)}, not an object; it was left as it is")
        if "env" in data and not isinstance(data["env"], dict):
            raise SettingsError(f'{self.path}: "env" is a JSON {_kind(data["env"])}, not an object; it was left as it is')
        return data, seen

    def _layers(self) -> list[dict[str, Any]]:
        try:
            record = json.loads(self.backup.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            raise SettingsError(f"{self.backup} cannot be read ({e}); check {self.path} and remove it") from None
        layers = record.get("layers") if isinstance(record, dict) and record.get("llmrelay") == FORMAT else None
        if isinstance(layers, list):
            for layer in layers:
                if isinstance(layer, dict):
                    layer.setdefault("made", [])
        if not isinstance(layers, list) or not all(_valid_layer(layer) for layer in layers):
            raise SettingsError(f"{self.backup} is not a backup this llmrelay can read; check {self.path} and remove it")
        return layers

    def _write_backup(self, layers: list[dict]) -> None:
        record = {"llmrelay": FORMAT, "settings": str(self.path), "layers": layers}
        _write(self.backup, record, 0o600)

    def _write_settings(self, data: dict, seen: tuple | None) -> bool:
        """Replace the settings with data, unless the file is no longer the version read."""
        target = self._target()
        if seen is not None and _identity(target) != seen:
            return False
        try:
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o600
        _write(target, data, mode)
        return True

    @contextmanager
    def _locked(self) -> Iterator[bool]:
        """Hold the lock file; says whether the settings directory had to be created."""
        made_dir = False
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            made_dir = _make_dir(self.path.parent) or made_dir
            try:
                fd = os.open(self.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                if time.monotonic() > deadline:
                    raise SettingsError(f"{self.lock}: its directory keeps disappearing") from None
                continue  # the directory went away with the last relay's stop
            except OSError as e:
                raise SettingsError(f"{self.lock}: {e.strerror}") from None
            try:
                _flock(fd, deadline, self.lock)
                # A stop that removed the lock file was holding it: this one is stale.
                if _same_file(os.fstat(fd), self.lock):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        try:
            yield made_dir
        except OSError as e:
            raise SettingsError(f"{e.filename or self.path}: {e.strerror}") from None
        finally:
            os.close(fd)


class Session:
    """Claude Code's settings pointed at the relay for as long as this process runs.

        session = Session(relay_env("http://127.0.0.1:8082"))
        session.start()          # raises SettingsError, changing nothing, when it cannot
        ...
        session.stop()           # also run at exit and on the signals start() was given
    """

    def __init__(self, values: dict[str, str], settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.values = dict(values)
        self.active = False
        self._busy = False  # inside a transaction: a signal now waits for its end
        self._deferred: int | None = None
        self._previous: dict[int, Any] = {}

    def start(self, signals: Iterable[int] = SIGNALS) -> None:
        """Apply now; restore at exit and when one of `signals` arrives.

        Pass only signals nobody else handles: an asyncio loop's own handlers (mitmproxy's
        SIGINT and SIGTERM) should call `stop()` from their shutdown path instead."""
        for sig in signals:
            self._catch(sig)
        atexit.register(self.stop)
        try:
            self._guarded(self._apply)
        except BaseException:
            self._release()
            raise

    def stop(self) -> None:
        """Put the settings back; any number of calls, from any hook, restore once."""
        if self._busy or not self.active:
            return
        try:
            self._guarded(self._restore)
        except SettingsError as e:
            log.warning(f"llmrelay: Claude Code settings not put back: {e}")
        finally:
            self._release()

    def __enter__(self) -> Session:
        self.start(signals=())
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _apply(self) -> None:
        self.settings.apply(self.values)
        self.active = True

    def _restore(self) -> None:
        self.active = False
        self.settings.restore()

    def _guarded(self, step: Callable[[], None]) -> None:
        self._busy = True
        try:
            step()
        finally:
            self._busy = False
            if self._deferred is not None:
                sig, self._deferred = self._deferred, None
                self._on_signal(sig, None)

    def _catch(self, sig: int) -> None:
        previous = signal.getsignal(sig)
        if previous is signal.SIG_IGN or previous == self._on_signal:
            return  # ignored (nohup): the process lives on, so do the settings
        try:
            signal.signal(sig, self._on_signal)
        except ValueError:  # not the main thread: the caller's shutdown hook calls stop()
            return
        self._previous[sig] = previous

    def _release(self) -> None:
        """Give the signals back to their previous handlers, where ours is still in place."""
        atexit.unregister(self.stop)
        for sig, previous in self._previous.items():
            try:
                if signal.getsignal(sig) == self._on_signal:
                    signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
            except ValueError:
                pass

    def _on_signal(self, sig: int, frame: Any) -> None:
        if self._busy:  # the lock is held by the code this interrupted
            self._deferred = sig
            return
        self.stop()
        previous = self._previous.get(sig)
        if callable(previous):
            previous(sig, frame)  # SIGINT's default raises KeyboardInterrupt
            return
        # The default action (SIGHUP and SIGTERM end the process), with the right exit status.
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)


def hangup_shuts_down(loop: Any, shutdown: Callable[[], None]) -> bool:
    """Make SIGHUP (a closed terminal) run an asyncio program's own shutdown, as SIGTERM does.

    Its default ends the process on the spot, skipping every shutdown hook. Left alone when
    SIGHUP is ignored (nohup). True when the handler was added."""
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        return False
    try:
        loop.add_signal_handler(signal.SIGHUP, shutdown)
    except (NotImplementedError, RuntimeError, ValueError):
        return False
    return True


# --- layers ------------------------------------------------------------------------------


def _undo(data: dict | None, layers: list[dict], chosen: Callable[[dict], bool]) -> set[str]:
    """Take the chosen layers out (top first), putting back what they found.

    A key a later layer wrote over passes what was found on to that layer; a key still holding
    the value written gets it back. Returns what the removed layers created (`dir`, `file`,
    `env`) that no remaining layer has taken over."""
    env = data.get("env") if data is not None else None
    leftover: set[str] = set()
    for i in reversed(range(len(layers))):
        if not chosen(layers[i]):
            continue
        layer = layers.pop(i)
        above = layers[i:]
        for key, entry in layer["env"].items():
            heir = next((up["env"][key] for up in above if key in up["env"]), None)
            if heir is not None:
                if heir.get("before", _ABSENT) == entry["wrote"]:
                    heir.pop("before", None)
                    if "before" in entry:
                        heir["before"] = entry["before"]
            elif env is not None and key in env and env[key] == entry["wrote"]:
                if "before" in entry:
                    env[key] = entry["before"]
                else:
                    del env[key]
        if above:
            above[0]["made"] = sorted(set(above[0]["made"]) | set(layer["made"]))
        else:
            leftover |= set(layer["made"])
    return leftover


_ABSENT = object()


def _valid_layer(layer: Any) -> bool:
    return (
        isinstance(layer, dict)
        and isinstance(layer.get("pid"), int)
        and isinstance(layer.get("env"), dict)
        and all(isinstance(entry, dict) and "wrote" in entry for entry in layer["env"].values())
        and isinstance(layer["made"], list)
    )


def _replaced(layer: dict) -> bool:
    """Undone by this process's start or stop: its own earlier layer, or a dead relay's."""
    return layer["pid"] == os.getpid() or not _alive(layer)


def _alive(layer: dict) -> bool:
    pid = layer["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    now = _started(pid)
    if now == "zombie":
        return False
    was = layer.get("started")
    return was is None or now is None or now == was


def _started(pid: int) -> str | None:
    """What tells this process apart from a later one with its pid: boot and start time.

    Linux only (from /proc); None elsewhere, where the pid alone has to do."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the name in parentheses may hold spaces
    if len(fields) < 20:
        return None
    if fields[0] in ("Z", "X"):
        return "zombie"
    return f"{boot}:{fields[19]}"


# --- files -------------------------------------------------------------------------------


def _write(path: Path, data: dict, mode: int) -> None:
    """Replace path with data as JSON in one step: readers see the old file or the new one."""
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        _remove(Path(temp))
        raise
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    """Make the rename itself survive a crash."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _make_dir(directory: Path) -> bool:
    if directory.is_dir():
        return False
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=0o700)
    except FileExistsError:
        return False
    except OSError as e:
        raise SettingsError(f"{directory}: {e.strerror}") from None
    return True


def _flock(fd: int, deadline: float, path: Path) -> None:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SettingsError(f"{path}: {e.strerror}") from None
        if time.monotonic() > deadline:
            raise SettingsError(f"{path} is held by another process for more than {LOCK_WAIT:g} s")
        time.sleep(0.01)


def _same_file(st: os.stat_result, path: Path) -> bool:
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _identity(path: Path) -> tuple | None:
    """Changes whenever the file is rewritten or replaced."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _text(data: dict | None) -> str:
    """The settings as written, to tell whether anything changed (order counts)."""
    return json.dumps(data, indent=2, ensure_ascii=False)


def _kind(value: Any) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")
