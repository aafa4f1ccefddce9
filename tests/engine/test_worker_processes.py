"""Worker processes do not outlive the engine: a kill -9 of the process that started a pool
(the engine's mapping workers, the FHIR store's background process) ends its workers too,
instead of leaving them blocked on their queue, holding their memory, after every crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

STARTERS = {
    "engine mapping worker": (
        "import multiprocessing as mp\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from engine.pipeline import exit_with_parent\n"
        "pool = ProcessPoolExecutor(1, mp_context=mp.get_context('spawn'),"
        " initializer=exit_with_parent)\n"
        "print(pool.submit(__import__('os').getpid).result(), flush=True)\n"
    ),
    "FHIR store background process": (
        "from fhir_store._background import pool\n"
        "print(pool().submit(__import__('os').getpid).result(), flush=True)\n"
    ),
}


@pytest.mark.parametrize("code", STARTERS.values(), ids=STARTERS.keys())
def test_a_worker_exits_when_its_parent_is_killed(code: str) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", code + "import time\ntime.sleep(600)\n"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        try:
            assert parent.stdout is not None
            worker = int(parent.stdout.readline())
            os.kill(parent.pid, signal.SIGKILL)
            parent.wait(10)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _alive(worker):
                time.sleep(0.1)
            assert not _alive(worker), f"worker {worker} outlived its killed parent"
        finally:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for good, waiting only for init to reap it
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
