"""`greenchannel score` as a user runs it: a real subprocess, files and standard input.

The subprocess costs seconds (the CLI loads every plugin), so the many kinds of malformed input
go through `engine.cli.main` in the test process; the same code path, without the start-up.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from pathways.scores import score_tables
from tests.pathways.score_examples import WORKED_EXAMPLES

BIN = Path(sys.executable).parent / "greenchannel"


def greenchannel(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def test_score_from_a_file_prints_the_result(tmp_path: Path) -> None:
    data, expected_total, expected_band = WORKED_EXAMPLES["GRACE"]
    path = tmp_path / "input.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    run = greenchannel("score", "GRACE", "--input", str(path))
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert (result["score"], result["total"], result["band"]) == ("GRACE", 179, "high")
    assert (expected_total, expected_band) == (179, "high")
    assert result["items"]["creatinine_umol_l"] == 10
    assert run.stderr == ""


def in_process(
    args: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8"))))
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", list(WORKED_EXAMPLES))
def test_every_worked_example_through_the_command(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data, expected_total, _ = WORKED_EXAMPLES[name]
    code, out, err = in_process(
        ["score", name, "--input", "-"], json.dumps(data), monkeypatch, capsys
    )
    assert (code, err) == (0, "")
    assert json.loads(out)["total"] == expected_total


def test_score_from_standard_input() -> None:
    run = greenchannel(
        "score", "GCS", "--input", "-", stdin='{"eye": 2, "verbal": "T", "motor": 4}'
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["total"] is None
    assert result["display"] == "E2VTM4"
    assert result["items"] == {"eye": 2, "verbal": None, "motor": 4}


def test_bad_input_exits_1_naming_the_item() -> None:
    run = greenchannel("score", "GCS", "--input", "-", stdin='{"eye": 2, "verbal": 7, "motor": 4}')
    assert run.returncode == 1
    assert run.stdout == ""
    assert 'verbal: 7 is not allowed; allowed: 1..5 or "T"' in run.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"eye": 2, "verbal": 3, "motor": 4', "not valid JSON"),
        ('{"eye": 2, "eye": 3, "verbal": 3, "motor": 4}', "eye: is given twice"),
        ('{"eye": NaN, "verbal": 3, "motor": 4}', "NaN is not a JSON number"),
        ("[2, 3, 4]", "must be a JSON object"),
        ("", "not valid JSON"),
    ],
)
def test_input_that_is_not_a_json_object_exits_1(
    text: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = in_process(["score", "GCS", "--input", "-"], text, monkeypatch, capsys)
    assert (code, out) == (1, "")
    assert message in err


def test_unknown_score_exits_2_listing_the_scores() -> None:
    run = greenchannel("score", "APACHE", "--input", "-", stdin="{}")
    assert run.returncode == 2
    assert "unknown score 'APACHE'" in run.stderr and "GCS, NIHSS" in run.stderr


def test_missing_arguments_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert in_process(["score"], "", monkeypatch, capsys)[0] == 2
    code, _, err = in_process(["score", "GCS"], "", monkeypatch, capsys)
    assert code == 2 and "--input" in err


def test_unreadable_file_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["score", "GCS", "--input", str(tmp_path / "missing.json")]
    code, _, err = in_process(args, "", monkeypatch, capsys)
    assert code == 1 and "cannot read" in err


def test_list_names_every_score_and_its_version() -> None:
    run = greenchannel("score", "--list")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        [name, table.version] for name, table in score_tables().items()
    ]
