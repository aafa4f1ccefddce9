"""`greenchannel serve` as a real subprocess on free ports, fed by real clients."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.net import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def his_adt_channel(mllp_port: int) -> str:
    text = (ROOT / "channels" / "his-adt.yaml").read_text(encoding="utf-8")
    return text.replace("port: 2575", f"port: {mllp_port}\n  host: 127.0.0.1")


def poll(read: Any, ready: Any, what: str, timeout_s: float = 30) -> Any:
    """`read()` again every 0.2 s until `ready(value)`; its last value, or an AssertionError
    saying what was still not as expected."""
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = read()
        if ready(value):
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not as expected after {timeout_s} s: {value}")


class Server:
    """One engine process with its own data dir, channels dir and ports."""

    def __init__(self, tmp: Path, database_url: str | None) -> None:
        self.data_dir = tmp / "var"
        self.channels_dir = tmp / "channels"
        self.channels_dir.mkdir(exist_ok=True)
        self.mllp_port = free_port()
        self.http_port = free_port()
        self.database_url = database_url
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tmp / "serve.log"
        (self.channels_dir / "his-adt.yaml").write_text(
            his_adt_channel(self.mllp_port), encoding="utf-8"
        )

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GREENCHANNEL_")}
        env["GREENCHANNEL_CHANNELS_DIR"] = str(self.channels_dir)
        env["GREENCHANNEL_MAPPINGS_DIR"] = str(ROOT / "mappings")
        if self.database_url:
            env["GREENCHANNEL_DATABASE_URL"] = self.database_url
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "greenchannel"), "--data-dir", str(self.data_dir), *args,
             "--url", self.url],
            capture_output=True, text=True, env=self.env(), timeout=120, cwd=ROOT,
        )  # fmt: skip

    def add_channel(self, name: str) -> int:
        """Deploy the shipped channels/<name>.yaml on a free local port; returns the port."""
        port = free_port()
        text = (ROOT / "channels" / f"{name}.yaml").read_text(encoding="utf-8")
        deployed = re.sub(r"\n  port: \d+", f"\n  port: {port}\n  host: 127.0.0.1", text, count=1)
        (self.channels_dir / f"{name}.yaml").write_text(deployed, encoding="utf-8")
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "greenchannel"), "serve", "--data-dir", str(self.data_dir),
                 "--http-port", str(self.http_port)],
                env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited early:\n{self.log.read_text()[-3000:]}")
            try:
                httpx.get(f"{self.url}/api/health", timeout=1)
                with socket.create_connection(("127.0.0.1", self.mllp_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"serve did not come up:\n{self.log.read_text()[-3000:]}")

    def token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token()}"}, timeout=30
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(60)
            except subprocess.TimeoutExpired:
                # A stop that hangs is a bug: its stacks go to the log, and the log's tail
                # into the test report, before the kill.
                self.process.send_signal(signal.SIGUSR1)
                time.sleep(2)
                self.process.kill()
                self.process.wait()
                warnings.warn(
                    f"serve did not stop within 60 s of SIGTERM; killed. Its log ends:\n"
                    f"{self.log.read_text(errors='replace')[-12000:]}",
                    stacklevel=2,
                )
        return self.process.returncode


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[type[Server]]:
    started: list[Server] = []

    class Tracked(Server):
        def start(self) -> None:
            started.append(self)
            super().start()

    yield Tracked
    for server in started:
        if server.process is not None and server.process.poll() is None:
            server.stop()
