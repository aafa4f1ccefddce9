"""The FHIR store alone behind uvicorn, for the FHIR benchmarks: a subprocess on a free port.

Run as a script it serves `fhir_store.app` on one database URL (migrated at start, no
authentication); `FhirServer` starts it from a benchmark and stops it afterwards.
Usage: python bench/_fhir_server.py DATABASE_URL PORT [--validate]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class FhirServer:
    """`python bench/_fhir_server.py` in a subprocess; `base_url` ends in /fhir."""

    def __init__(self, database_url: str, *, validate: bool = False) -> None:
        from _load import free_port

        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/fhir"
        self._command = [sys.executable, __file__, database_url, str(self.port)]
        if validate:
            self._command.append("--validate")
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FhirServer:
        from _load import wait_for_port

        self._process = subprocess.Popen(self._command, cwd=ROOT)
        wait_for_port(self.port)
        return self

    def cpu_s(self) -> float:
        """The server process's CPU seconds so far (user + system, every thread; Linux): a
        figure that other load on the machine disturbs less than wall-clock time."""
        from _load import proc_stat

        assert self._process is not None
        stat = proc_stat(Path(f"/proc/{self._process.pid}/stat"))
        return stat.user_s + stat.system_s

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()


def serve(database_url: str, port: int, validate: bool) -> None:
    import uvicorn

    from fhir_store.app import create_app

    app = create_app(database_url, validate_structure=validate)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), "--validate" in sys.argv[3:])
