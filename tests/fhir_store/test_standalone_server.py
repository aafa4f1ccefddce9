"""The FHIR store run alone under uvicorn, as `fhir_store.app` says: it serves a large
transaction (validated in the store's second process) and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from fhir_store._validation import BACKGROUND_MIN
from tests.net import free_port

ROOT = Path(__file__).resolve().parents[2]


def _wait_for(port: int, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited early: {process.communicate()[1]!r}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} after {timeout_s} s")


def _patients_transaction(count: int) -> dict[str, object]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:example:mrn", "value": f"alone-{n}"}],
                    "name": [{"family": "王", "given": [f"{n}"]}],
                },
                "request": {"method": "POST", "url": "Patient"},
            }
            for n in range(count)
        ],
    }


def test_the_standalone_server_validates_a_large_transaction_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"sqlite+aiosqlite:///{tmp_path / 'fhir.db'}"
    code = (
        "import uvicorn, fhir_store.app as a; "
        f"uvicorn.run(a.create_app({url!r}), host='127.0.0.1', port={port}, log_level='warning')"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        _wait_for(port, process)
        count = BACKGROUND_MIN + 8  # enough to be validated in the other process
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/fhir", timeout=60) as http:
            reply = http.post("", json=_patients_transaction(count))
            assert reply.status_code == 200, reply.text
            found = http.get("Patient", params={"family": "王", "_summary": "count"}).json()
            assert found["total"] == count
            invalid = _patients_transaction(count)
            invalid["entry"][-1]["resource"]["gender"] = 7  # type: ignore[index]
            refused = http.post("", json=invalid)
            assert refused.status_code in (400, 422), refused.text
            assert "gender" in refused.text
            assert http.get("Patient", params={"_summary": "count"}).json()["total"] == count
        process.send_signal(signal.SIGTERM)
        # Read to the end: the multiprocessing resource tracker, which would report semaphores
        # the server left behind, writes to the same stderr and ends after the server.
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    text = stderr.decode(errors="replace")
    assert "leaked" not in text, text
    assert "Traceback" not in text, text
