"""`greenchannel map` (one message → its Bundle) and `greenchannel mappings lint`, via the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "mappings" / "tests" / "samples" / "adt-a04.hl7"


def _fields(raw: bytes, segment: str) -> list[str]:
    for line in raw.decode("utf-8").replace("\n", "\r").split("\r"):
        if line.startswith(segment + "|"):
            return line.split("|")
    raise AssertionError(segment)


def _config(tmp_path: Path, mappings: Path) -> Path:
    config = tmp_path / "greenchannel.yaml"
    config.write_text(f"mappings_dir: {mappings}\n", encoding="utf-8")
    return config


def _copy_mappings(tmp_path: Path) -> Path:
    folder = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", folder)
    return folder


def test_map_prints_the_bundle_of_the_mapping_whose_when_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, _copy_mappings(tmp_path))
    assert main(["--config", str(config), "map", str(SAMPLE), "--tz", "+08:00"]) == 0
    captured = capsys.readouterr()
    bundle = json.loads(captured.out)
    raw = SAMPLE.read_bytes()
    pid = _fields(raw, "PID")
    assert bundle["resourceType"] == "Bundle"
    patient = bundle["entry"][0]["resource"]
    assert patient["resourceType"] == "Patient"
    assert patient["identifier"][0]["value"] == pid[3].split("^")[0]
    assert patient["name"][0]["family"] == pid[5].split("^")[0]  # Chinese printed as is
    assert "adt.yaml" in captured.err


def test_map_with_an_explicit_mapping_and_another_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # PV1-44 without its offset: the time takes the zone given on the command line.
    message = tmp_path / "a04.hl7"
    message.write_bytes(SAMPLE.read_bytes().replace(b"20261125082800+0800", b"202611250828"))
    mapping = ROOT / "mappings" / "hl7v2" / "adt.yaml"
    args = ["map", str(message), "--mapping", str(mapping), "--tz=-05:00"]
    assert main(args) == 0
    bundle = json.loads(capsys.readouterr().out)
    assert bundle["entry"][1]["resource"]["period"]["start"] == "2026-11-25T08:28:00-05:00"


def test_map_says_when_no_mapping_wants_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = tmp_path / "qry.hl7"
    message.write_bytes(b"MSH|^~\\&|A|B|C|D|20261125||QRY^A19|1|P|2.5\rQRD|1\r")
    config = _config(tmp_path, _copy_mappings(tmp_path))
    assert main(["--config", str(config), "map", str(message)]) == 1
    err = capsys.readouterr().err
    assert "no mapping's `when` matches" in err and "adt.yaml" in err and "--mapping" in err


def test_map_says_when_two_mappings_want_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _copy_mappings(tmp_path)
    shutil.copy(folder / "hl7v2" / "adt.yaml", folder / "hl7v2" / "adt-copy.yaml")
    config = _config(tmp_path, folder)
    assert main(["--config", str(config), "map", str(SAMPLE)]) == 1
    err = capsys.readouterr().err
    assert "2 mappings want this message" in err and "adt-copy.yaml" in err


def test_map_explains_a_missing_file_and_a_bad_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["map", str(tmp_path / "nope.hl7")]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert main(["map", str(SAMPLE), "--tz", "Mars/Olympus"]) == 2
    assert "--tz" in capsys.readouterr().err


def test_map_with_a_mapping_whose_when_is_false_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = tmp_path / "a02.hl7"
    message.write_bytes(SAMPLE.read_bytes().replace(b"ADT^A04", b"ADT^A99"))
    mapping = ROOT / "mappings" / "hl7v2" / "adt.yaml"
    assert main(["map", str(message), "--mapping", str(mapping)]) == 1
    assert "`when` is false" in capsys.readouterr().err


def test_lint_passes_on_the_shipped_mappings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mappings", "lint", str(ROOT / "mappings")]) == 0
    out = capsys.readouterr().out
    shipped = [
        p for p in (ROOT / "mappings").rglob("*") if p.suffix in (".yaml", ".csv")
        and "tests" not in p.relative_to(ROOT / "mappings").parts
    ]  # fmt: skip
    assert f"{len(shipped)} files checked, 0 with problems" in out


def test_lint_names_every_broken_file_with_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _copy_mappings(tmp_path)
    adt = folder / "hl7v2" / "adt.yaml"
    adt.write_text(
        adt.read_text(encoding="utf-8").replace("${lookup('gender'", "${lookp('gender'"),
        encoding="utf-8",
    )
    gender_line = next(
        n for n, line in enumerate(adt.read_text(encoding="utf-8").splitlines(), 1)
        if "lookp(" in line
    )  # fmt: skip
    (folder / "hl7v2" / "tables" / "broken.csv").write_text("code,target\nA,1\nA,2\n")
    (folder / "hl7v2" / "templates" / "bad.yaml").write_text("templates: {x: {param: a}}\n")
    assert main(["mappings", "lint", str(folder)]) == 1
    out = capsys.readouterr().out
    assert f"adt.yaml:{gender_line} resources.patient.gender: unknown function 'lookp'" in out
    assert "broken.csv:3: code appears twice" in out
    assert "bad.yaml:1 templates.x: needs a `body`" in out
    assert "3 with problems" in out
