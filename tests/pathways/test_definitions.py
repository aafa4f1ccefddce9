"""The pathway files: every shipped file loads and covers the catalogue; a broken file is refused
with an error naming the file, the line and the key, and saying what is allowed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError
from pathways.definitions import load_catalogue, load_pathway, load_pathways, pathways_dir

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "pathways"
TIME_NODES = Path(__file__).resolve().parents[3] / "shared" / "domain" / "time-nodes.md"


def test_every_shipped_pathway_file_loads() -> None:
    pathways = load_pathways(SHIPPED, cached=False)
    assert set(pathways.by_center) == {"chest_pain", "stroke", "trauma"}
    chest = pathways.by_center["chest_pain"]
    assert chest.nodes["door"].arrival_modes == {"ems", "transfer", "self"}  # R1
    assert chest.nodes["first_ecg"].after == "first_medical_contact"  # R7
    assert pathways_dir().resolve() == SHIPPED.resolve()


def test_the_catalogue_has_every_node_key_of_the_domain_reference() -> None:
    if not TIME_NODES.is_file():
        pytest.skip("../shared/domain/time-nodes.md is not here")
    text = TIME_NODES.read_text(encoding="utf-8")
    sections = text.split("\n## ")
    keys: set[str] = set()
    for section in sections:
        if section[:2] in ("3.", "4.", "5."):
            for line in section.splitlines():
                if line.startswith("| `"):
                    keys |= set(re.findall(r"`([a-z0-9_]+)`", line.split("|")[1]))
    labels = load_pathways(SHIPPED, cached=False).catalogue.labels
    assert keys - set(labels) == set()
    assert labels["door"] == "到达本院大门"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    copy = tmp_path / "pathways"
    shutil.copytree(SHIPPED, copy)
    return copy


def edit(folder: Path, name: str, old: str, new: str) -> Path:
    path = folder / name
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text("utf-8").splitlines(), 1) if text in line)


def problem(folder: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_pathways(folder, cached=False)
    return caught.value


def test_an_unknown_key_names_file_line_and_key(folder: Path) -> None:
    path = edit(folder, "chest_pain.yaml", "  first_ecg:\n", "  first_ecg:\n    pick: first\n")
    error = problem(folder)
    assert error.file == str(path)
    assert error.line == line_of(path, "pick: first")
    assert error.key == "nodes.first_ecg.pick"


def test_an_unknown_node_key_is_refused(folder: Path) -> None:
    path = edit(folder, "stroke.yaml", "  dysphagia_screen:", "  dysphagia_scren:")
    error = problem(folder)
    assert "unknown node key 'dysphagia_scren'" in str(error)
    assert error.line == line_of(path, "dysphagia_scren")


def test_a_node_of_another_center_is_refused(folder: Path) -> None:
    edit(folder, "trauma.yaml", "  iss_scored:", "  wire_crossing:")
    assert "is not a trauma node" in str(problem(folder))


def test_bad_fhirpath_names_the_rule(folder: Path) -> None:
    path = edit(folder, "chest_pain.yaml", "time: period.end", "time: period..end")
    error = problem(folder)
    assert "not a valid FHIRPath expression" in str(error)
    assert error.key == "nodes.door.captures[1].time"
    assert error.line == line_of(path, "period..end")


def test_an_unknown_source_kind_lists_the_allowed_ones(folder: Path) -> None:
    edit(folder, "trauma.yaml", "source: uwb}", "source: rfid}")
    error = problem(folder)
    assert "unknown source kind 'rfid'" in str(error)
    assert "uwb" in str(error) and "hl7v2" in str(error)


def test_a_missing_code_table_and_a_bad_code(folder: Path) -> None:
    edit(folder, "stroke.yaml", "tables/coagulation.csv", "tables/coag.csv")
    assert "cannot read code table tables/coag.csv" in str(problem(folder))
    edit(folder, "stroke.yaml", "tables/coag.csv", "tables/coagulation.csv")
    edit(folder, "stroke.yaml", '"http://loinc.org|72089-6"', '"72089-6"')
    assert "is not `system|code`" in str(problem(folder))


def test_an_unknown_resource_type_and_arrival_mode(folder: Path) -> None:
    edit(folder, "trauma.yaml", "resource: Task\n", "resource: Tasks\n")
    assert "'Tasks' is not a FHIR R4 resource type" in str(problem(folder))
    edit(folder, "trauma.yaml", "resource: Tasks\n", "resource: Task\n")
    edit(folder, "trauma.yaml", "arrival_modes: [ems, transfer, self]", "arrival_modes: [walk_in]")
    error = problem(folder)
    assert error.key == "nodes.door.arrival_modes[0]"
    assert "'ems', 'transfer', 'self' or 'in_hospital'" in str(error)


def test_a_file_for_the_wrong_center(folder: Path) -> None:
    edit(folder, "stroke.yaml", "pathway: stroke", "pathway: trauma")
    assert "this file is for 'stroke'" in str(problem(folder))


YAMLISH = st.text(alphabet=st.sampled_from(list("abdefnoprstwy_:-[]{},|*' \n\t#0123456789")))


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.text(max_size=200), YAMLISH.map(lambda t: "pathway: trauma\nversion: x\n" + t)))
def test_any_text_as_a_pathway_file_is_loaded_or_refused_with_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    catalogue = load_catalogue(SHIPPED / "catalogue.yaml")
    path = tmp_path_factory.mktemp("fuzz") / "trauma.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_pathway(path, catalogue, "trauma")
    except ConfigError as error:
        assert error.file == str(path)


def test_follow_must_name_a_searchable_reference(folder: Path) -> None:
    edit(folder, "chest_pain.yaml", "follow: specimen", "follow: valueQuantity")
    error = problem(folder)
    assert "'valueQuantity' is not a searchable Reference of Observation" in str(error)
    assert error.key == "nodes.troponin_draw.captures[0].follow"
