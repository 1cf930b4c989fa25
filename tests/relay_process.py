"""The relay as users run it: a real `mitmdump -s addon/adapter.py` process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
MITMDUMP = Path(sys.executable).with_name("mitmdump")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Relay:
    """`with Relay(config_path, workdir) as relay:` starts mitmdump and waits until it answers."""

    def __init__(self, config: Path, workdir: Path, *extra: str, reverse: str = "http://127.0.0.1:9") -> None:
        self.port = free_port()
        self.data = workdir / "data"
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"mitmdump-{self.port}.log"
        self.args = [
            str(MITMDUMP),
            "-s", str(ROOT / "addon" / "adapter.py"),
            "--mode", f"reverse:{reverse}",
            "--set", "connection_strategy=lazy",
            "--listen-host", "127.0.0.1",
            "-p", str(self.port),
            "--set", f"confdir={workdir / 'mitmproxy'}",
            "--set", f"adapter_config={config}",
            "--set", f"adapter_data_dir={workdir / 'data'}",
            *extra,
        ]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Relay:
        self.process = subprocess.Popen(self.args, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mitmdump exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"mitmdump did not answer within 30 s:\n{self.output()}")

    def __exit__(self, *exc: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def records(self, count: int, kind: str = "usage", where=lambda record: True) -> list[dict]:
        """The usage records (or `kind`) that `where` picks, once there are `count` of them
        (at most 10 s): a record is written after the client has its answer, not before."""
        sys.path.insert(0, str(ROOT / "addon"))
        from llmrelay import usage

        deadline = time.monotonic() + 10
        while len(found := [r for r in usage.read(self.data, kind) if where(r)]) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return found
