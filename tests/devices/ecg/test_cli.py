"""`greenchannel ecg analyze`: one JSON line per recording; a clear error and exit 1 for a
recording that cannot be read or is no plausible 12-lead ECG, the others still analysed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main

KEYS = {"stemi", "criteria", "st_mv", "territory", "mi_probability", "heart_rate", "flags"}


def test_analyze_prints_one_json_line_per_recording(
    sierra: Path, ptbxl_record: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["ecg", "analyze", str(sierra / "129DYPRG.XML"), str(ptbxl_record)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(out) == 2
    first, second = (json.loads(line) for line in out)
    assert KEYS <= set(first)
    assert first["stemi"] is True and first["territory"] == ["inferior"]
    assert set(first["st_mv"]) == {"I", "II", "III", "aVR", "aVL", "aVF",
                                   "V1", "V2", "V3", "V4", "V5", "V6"}  # fmt: skip
    assert first["st_mv"]["III"]["j"] > 0.2
    assert second["stemi"] is False and second["source"].endswith("00001_lr")


def test_unreadable_and_implausible_recordings_exit_1_and_say_why(
    sierra: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.xml"
    garbage.write_bytes(b"\x00\x01 not xml")
    flat = tmp_path / "flat"
    (tmp_path / "flat.dat").write_bytes(bytes(12 * 1000 * 2))
    (tmp_path / "flat.hea").write_text(
        "flat 12 100 1000\n"
        + "".join(f"flat.dat 16 1000.0(0)/mV 16 0 0 0 0 {lead}\n" for lead in
                  ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"))
    )  # fmt: skip
    code = main(["ecg", "analyze", str(garbage), str(sierra / "129DYPRG.XML"), str(flat)])
    captured = capsys.readouterr()
    assert code == 1
    assert len(captured.out.splitlines()) == 1  # the good recording is still analysed
    errors = captured.err.splitlines()
    assert errors[0].startswith(f"greenchannel: {garbage}: not well-formed XML")
    assert errors[1].startswith(f"greenchannel: {flat}: the leads span less than 0.1 mV")


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["ecg", "analyze", "--help"])
    assert "greenchannel ecg analyze ../shared/data/ecg/sierra/129DYPRG.XML" in (
        capsys.readouterr().out
    )
