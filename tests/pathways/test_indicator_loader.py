"""One loader of the indicator definitions for the subscriber and the QC API: an edited file
counts at once for both, an edit that does not load keeps the last good definitions and logs the
error once (file, line, key), a folder that never loaded is an error."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from engine.errors import ConfigError
from pathways.indicator_loader import IndicatorDefinitions, indicator_definitions

ROOT = Path(__file__).resolve().parents[2]
NAME = "name_zh: 首次医疗接触到首份心电图"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    copy = tmp_path / "pathways"
    shutil.copytree(ROOT / "config" / "pathways", copy)
    return copy


def cpc(folder: Path) -> Path:
    return folder / "chest_pain" / "cpc-recert.yaml"


def fmc2ecg_name(loader: IndicatorDefinitions) -> str | None:
    standard = loader.current().standard("chest_pain", "cpc-recert")
    return next(d.name_zh for d in standard.indicators if d.id == "cpc.fmc2ecg")


def test_an_edit_counts_at_once_and_a_bad_one_keeps_the_last_good(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loader = indicator_definitions(folder)
    assert indicator_definitions(folder) is loader  # the subscriber's and the QC API's
    assert fmc2ecg_name(loader) == "首次医疗接触到首份心电图"
    first = loader.current()
    assert loader.current() is first  # nothing changed: not read again

    text = cpc(folder).read_text("utf-8")
    cpc(folder).write_text(text.replace(NAME, "name_zh: 首次医疗接触至首份十二导联心电图"), "utf-8")
    assert fmc2ecg_name(loader) == "首次医疗接触至首份十二导联心电图"

    cpc(folder).write_text(text.replace("end: first_ecg", "end: first_ekg", 1), "utf-8")
    with caplog.at_level(logging.ERROR, logger="pathways.indicator_loader"):
        assert fmc2ecg_name(loader) == "首次医疗接触至首份十二导联心电图"  # the last good
        assert fmc2ecg_name(loader) == "首次医疗接触至首份十二导联心电图"
    errors = [
        r for r in caplog.records if r.getMessage() == "pathways.indicator_definitions_invalid"
    ]
    assert len(errors) == 1  # once per bad edit, not per request
    said = str(errors[0].__dict__["error"])
    assert "cpc-recert.yaml:" in said and "first_ekg" in said
    assert loader.last_error is not None

    cpc(folder).write_text(text, "utf-8")
    assert fmc2ecg_name(loader) == "首次医疗接触到首份心电图"
    assert loader.last_error is None


def test_a_folder_that_never_loaded_is_an_error(folder: Path) -> None:
    text = cpc(folder).read_text("utf-8")
    cpc(folder).write_text(text.replace("end: first_ecg", "end: first_ekg", 1), "utf-8")
    with pytest.raises(ConfigError, match="first_ekg"):
        IndicatorDefinitions(folder).current()


def test_a_new_standard_file_is_seen(folder: Path) -> None:
    loader = IndicatorDefinitions(folder)
    assert "cpc-copy" not in {s.id for s in loader.current().standards}
    text = cpc(folder).read_text("utf-8").replace("standard: cpc-recert", "standard: cpc-copy")
    (folder / "chest_pain" / "cpc-copy.yaml").write_text(text, "utf-8")
    assert "cpc-copy" in {s.id for s in loader.current().standards}
