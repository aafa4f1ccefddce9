"""The analysts' own mapping tests (`mappings/tests/*.yaml`) pass, through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main

ROOT = Path(__file__).resolve().parents[2]
TESTS = sorted((ROOT / "mappings" / "tests").glob("*.yaml"))


@pytest.mark.parametrize("path", TESTS, ids=[p.stem for p in TESTS])
def test_shipped_mapping_test_passes(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mappings", "test", str(path)]) == 0, capsys.readouterr().out


def test_a_failing_check_is_reported_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        (ROOT / "mappings/tests/his-adt-a04.yaml")
        .read_text(encoding="utf-8")
        .replace("../hl7v2/adt.yaml", str(ROOT / "mappings/hl7v2/adt.yaml"))
        .replace("samples/adt-a04.hl7", str(ROOT / "mappings/tests/samples/adt-a04.hl7"))
        .replace("equals: male", "equals: female"),
        encoding="utf-8",
    )
    assert main(["mappings", "test", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "broken.yaml:" in out and "gender" in out and "0 passed, 1 failed" in out
