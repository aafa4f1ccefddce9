"""Shared pieces of the benchmarks: realistic ADT messages, an MLLP load generator, servers
started as subprocesses on free ports, and percentiles. Benchmarks print figures; they assert
nothing."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

CST = timezone(timedelta(hours=8))
SB, EB, CR = b"\x0b", b"\x1c", b"\r"
ROOT = Path(__file__).resolve().parents[1]
FAMILY = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "涛"]
# The attending doctors' staff numbers (PV1-7): a county hospital's roster of 200. Until
# session 15 it was any of 9,000 numbers, so that most messages also created a Practitioner and
# a PractitionerRole, twice the resources a real ADT feed brings.
DOCTORS = range(1000, 1200)


def adt_a04(n: int, *, run: str, trigger: str = "A04") -> bytes:
    """One ADT message as a county HIS sends it: UTF-8, Chinese names, +0800 times."""
    rng = random.Random(n)
    at = datetime(2026, 11, 25, 8, 0, tzinfo=CST) + timedelta(seconds=n)
    stamp = at.strftime("%Y%m%d%H%M%S+0800")
    birth = f"19{rng.randint(30, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    segments = [
        f"MSH|^~\\&|HIS|COUNTY-HOSP|GREENCHANNEL|ED|{stamp}||ADT^{trigger}^ADT_A01|{run}-{n:08d}"
        "|P|2.5.1|||AL|NE||UNICODE UTF-8",
        f"EVN|{trigger}|{stamp}|||admin^管理员|{stamp}",
        f"PID|1||{run}{n:08d}^^^COUNTY-HOSP^MR~{rng.randint(10**17, 10**18 - 1)}^^^CHN^NNCHN||"
        f"{rng.choice(FAMILY)}^{rng.choice(GIVEN)}||{birth}|{rng.choice('MF')}|||"
        f"人民路{rng.randint(1, 300)}号^^县城^省^{rng.randint(100000, 999999)}^CHN||"
        f"^PRN^PH^^^^^^^^^13{rng.randint(100000000, 999999999)}",
        # PV1-7 attending doctor, PV1-19 visit number (the Encounter), PV1-44 admit time
        f"PV1|1|E|EMR^^^COUNTY-HOSP^^^^^急诊科||||{rng.choice(DOCTORS)}^医生^某||||||||||||"
        f"V{run}{n:08d}|||||||||||||||||||||||||{stamp}",
    ]
    return "\r".join(segments).encode("utf-8") + b"\r"


@dataclass
class LoadResult:
    sent: int
    acked: int
    nacked: int
    elapsed_s: float
    latencies_s: list[float]

    @property
    def rate(self) -> float:
        return self.acked / self.elapsed_s if self.elapsed_s else 0.0


async def _connection(
    host: str, port: int, messages: Sequence[bytes], latencies: list[float], counts: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for message in messages:
            started = time.perf_counter()
            writer.write(SB + message + EB + CR)
            await writer.drain()
            ack = await reader.readuntil(EB + CR)
            latencies.append(time.perf_counter() - started)
            if b"MSA|AA" in ack or b"MSA|CA" in ack:
                counts[0] += 1
            else:
                counts[1] += 1
    finally:
        writer.close()


async def blast(host: str, port: int, messages: Sequence[bytes], connections: int) -> LoadResult:
    """Send `messages` over `connections` concurrent MLLP connections, each waiting for its ACK
    before the next message, as HIS interfaces do."""
    shares = [messages[i::connections] for i in range(connections)]
    latencies: list[float] = []
    counts = [0, 0]
    started = time.perf_counter()
    await asyncio.gather(*(_connection(host, port, s, latencies, counts) for s in shares))
    return LoadResult(len(messages), counts[0], counts[1], time.perf_counter() - started, latencies)


def mapped_adt_a04(count: int, *, run: str) -> list[tuple[bytes, Any]]:
    """`count` ADT^A04 (`adt_a04`), each with what the shipped his-adt channel makes of it (the
    processing outcome: the transformed payload and the delivery lanes)."""
    from engine.channels import load_channel
    from engine.pipeline import compile_channel, process
    from engine.plugins import load_plugins

    plugins = load_plugins()
    compiled = compile_channel(
        load_channel(ROOT / "channels" / "his-adt.yaml", plugins),
        mappings_dir=ROOT / "mappings",
        plugins=plugins,
        default_charset="utf-8",
        default_tz=CST,
    )
    mapped = []
    for n in range(count):
        raw = adt_a04(n, run=run)
        outcome = process(compiled, raw, "x-application/hl7-v2+er7", "utf-8")
        assert outcome.transformed is not None, outcome
        mapped.append((raw, outcome))
    return mapped


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout_s} s")


class Serve:
    """`greenchannel serve` in a subprocess, on free ports, with its own data dir."""

    def __init__(self, channels: dict[str, str], database_url: str | None = None) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="gc-bench-")
        base = Path(self.tmp.name)
        self.data_dir = base / "var"
        self.channels_dir = base / "channels"
        self.channels_dir.mkdir()
        for name, text in channels.items():
            (self.channels_dir / f"{name}.yaml").write_text(text, encoding="utf-8")
        self.http_port = free_port()
        self.database_url = database_url
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Serve:
        env = dict(os.environ)
        env["GREENCHANNEL_CHANNELS_DIR"] = str(self.channels_dir)
        env["GREENCHANNEL_MAPPINGS_DIR"] = str(ROOT / "mappings")
        env["GREENCHANNEL_LOG_LEVEL"] = "WARNING"
        if self.database_url:
            env["GREENCHANNEL_DATABASE_URL"] = self.database_url
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--http-port",
                str(self.http_port),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.http_port)
        return self

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the server and its worker processes: less
        noisy than wall-clock rates on a shared machine, where other work takes the cores."""
        assert self.process is not None
        return _cpu_seconds(self.process.pid)

    def own_cpu_seconds(self) -> float:
        """CPU time used so far by the server process alone, its workers left out: its threads
        (event loop, write thread, readers) share one GIL, so its Python runs on one core."""
        assert self.process is not None
        stat = proc_stat(Path(f"/proc/{self.process.pid}/stat"))
        return stat.user_s + stat.system_s

    def own_writes(self) -> tuple[int, int]:
        """(bytes, system calls) written so far by the server process alone (/proc/PID/io):
        on SQLite, its write-ahead log and the checkpoints that copy it back, page by page."""
        assert self.process is not None
        counters = dict(
            line.split(": ")
            for line in Path(f"/proc/{self.process.pid}/io").read_text().splitlines()
        )
        return int(counters["wchar"]), int(counters["syscw"])

    def settled_cpu_seconds(self, idle_s: float = 1.5) -> float:
        """The server's CPU seconds once it has gone quiet (under 3% of a core for `idle_s`):
        its start-up warm-ups are done, its subscribers have caught up with the change events."""
        last = self.cpu_seconds()
        while True:
            time.sleep(idle_s)
            now = self.cpu_seconds()
            if now - last < 0.03 * idle_s:
                return now
            last = now

    def token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.tmp.cleanup()


def _cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its live children, from /proc (Linux)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = proc_stat(entry / "stat")
        except OSError:
            continue
        if int(entry.name) == pid or stat.parent == pid:
            total += stat.user_s + stat.system_s
    return total


@dataclass(frozen=True)
class ProcStat:
    """What the benches read of a process's or thread's /proc stat file."""

    parent: int
    user_s: float
    system_s: float


def proc_stat(path: Path) -> ProcStat:
    """The parent and CPU seconds in `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat`
    (Linux); OSError when the process or thread is gone."""
    # the name in parentheses may hold spaces: the fields are counted after its ")"
    fields = path.read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return ProcStat(int(fields[1]), int(fields[11]) / ticks, int(fields[12]) / ticks)


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine have been busy since boot (/proc/stat: user, nice,
    system, irq, softirq; not idle, I/O wait or time the hypervisor gave to other machines).
    Whatever runs here counts: the engine, its workers, the bench's client, PostgreSQL."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


# The PostgreSQL every bench makes its databases on: these machines run it on 127.0.0.1:5432
# with trust authentication (the same server the tests use).
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def postgres_database(admin_url: str) -> str:
    """A fresh PostgreSQL database for one benchmark run."""
    import uuid

    import psycopg

    name = f"gc_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_postgres_database(admin_url: str, url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
