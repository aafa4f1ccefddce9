"""The shipped indicator definitions load, cover indicators.md, and refer only to known node
keys, facts and exclusions; broken files fail with file, line and key."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError
from pathways.conditions import (
    AllOf,
    AnyOf,
    FactCompare,
    FactIn,
    HasFact,
    HasNode,
    IntervalWithin,
    Not,
)
from pathways.indicator_definitions import Catalogue, load_catalogue
from pathways.vocabulary import CENTERS
from tests.conftest import SHARED

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "pathways"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(CONFIG)


def _documented_ids() -> set[str]:
    """Every indicator id in the first column of the tables of indicators.md §3-§5."""
    text = (SHARED / "domain" / "indicators.md").read_text(encoding="utf-8")
    body = text.split("## 3.")[1].split("## 6.")[0]
    ids: set[str] = set()
    for line in body.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            ids.update(re.findall(r"`([a-z_]+\.[a-z0-9_]+)`", first_cell))
    return ids


def test_every_indicator_of_indicators_md_is_defined(catalogue: Catalogue) -> None:
    documented = _documented_ids()
    assert len(documented) == 57  # 19 chest pain, 21 stroke, 17 trauma ids
    defined = {d.id for s in catalogue.standards for d in s.indicators}
    assert documented - defined == set()


def test_every_center_has_standards_and_the_file_names_are_the_version_ids(
    catalogue: Catalogue,
) -> None:
    by_center = {c: sorted(s.id for s in catalogue.standards_for(c)) for c in CENTERS}
    assert by_center == {
        "chest_pain": ["cpc-recert", "local", "singledisease-stemi"],
        "stroke": ["local", "nhc-neuro-qc-2020"],
        "trauma": ["local"],
    }
    for standard in catalogue.standards:
        assert Path(standard.file).stem == standard.id
        assert Path(standard.file).parent.name == standard.center


def _condition_nodes(condition: object) -> set[str]:
    if isinstance(condition, AllOf | AnyOf):
        return set().union(*(_condition_nodes(item) for item in condition.items))
    if isinstance(condition, Not):
        return _condition_nodes(condition.item)
    if isinstance(condition, HasNode):
        return set(condition.keys)
    if isinstance(condition, IntervalWithin):
        return set(condition.start.nodes) | set(condition.end.nodes)
    return set()


def _condition_facts(condition: object) -> set[str]:
    if isinstance(condition, AllOf | AnyOf):
        return set().union(*(_condition_facts(item) for item in condition.items))
    if isinstance(condition, Not):
        return _condition_facts(condition.item)
    if isinstance(condition, FactIn | FactCompare):
        return {condition.name}
    if isinstance(condition, HasFact):
        return set(condition.names)
    return set()


def test_shipped_definitions_name_only_known_nodes_facts_and_exclusions(
    catalogue: Catalogue,
) -> None:
    node_doc = (SHARED / "domain" / "time-nodes.md").read_text(encoding="utf-8")
    for center, keys in catalogue.node_keys.items():
        for key in keys:  # the catalogue itself comes from time-nodes.md
            assert f"`{key}`" in node_doc, f"{center}: {key} is not a key of time-nodes.md"
    for standard in catalogue.standards:
        keys = catalogue.node_keys[standard.center]
        for d in standard.indicators:
            conditions = [d.population, *(e.when for e in d.exclusions)]
            if d.numerator is not None:
                conditions.append(d.numerator)
            used = set(d.nodes).union(*(_condition_nodes(c) for c in conditions))
            assert used <= keys, f"{d.id}: {used - keys}"
            facts = set().union(*(_condition_facts(c) for c in conditions))
            assert facts <= set(catalogue.facts), f"{d.id}: {facts - set(catalogue.facts)}"
            assert {e.name for e in d.exclusions} <= set(catalogue.exclusions)
            if d.kind == "interval":
                assert d.plausible_seconds is not None


def test_unconfirmed_values_ship_flagged(catalogue: Catalogue) -> None:
    recert = catalogue.standard("chest_pain", "cpc-recert")
    assert recert.indicator("cpc.d2w").confirmed is True
    assert recert.indicator("cpc.double_bypass_rate").confirmed is False  # U
    assert recert.indicator("cpc.fmc2ecg").confirmed is False  # the per-case operator is U
    for d in catalogue.standard("trauma", "local").indicators:
        if d.kind == "interval":
            assert d.confirmed is False, d.id


def test_the_same_indicator_has_different_targets_in_two_versions(catalogue: Catalogue) -> None:
    recert = catalogue.standard("chest_pain", "cpc-recert").indicator("cpc.double_bypass_rate")
    local = catalogue.standard("chest_pain", "local").indicator("cpc.double_bypass_rate")
    assert (recert.aggregate.rate_min, local.aggregate.rate_min) == (0.30, 0.50)


# --- broken files --------------------------------------------------------------------------------

GOOD = """\
standard: test-std
center: chest_pain
indicators:
  - id: cpc.d2w
    name: Door to wire
    start: door
    end: wire_crossing
    population: {diagnosis: STEMI, reperfusion: primary_pci}
    exclude: [give_up_treatment]
    per_case: {op: "<=", minutes: 90}
    plausible_minutes: [0, 1440]
    confidence: C
    confirmed: true
    source: test
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("facts.yaml", "catalogue.yaml", "node-order.yaml"):
        shutil.copy(CONFIG / name, tmp_path / name)
    for center in CENTERS:
        (tmp_path / center).mkdir()
    return tmp_path


def _error(folder: Path, text: str) -> ConfigError:
    path = folder / "chest_pain" / "test-std.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_catalogue(folder)
    return caught.value


def test_a_good_file_loads(folder: Path) -> None:
    (folder / "chest_pain" / "test-std.yaml").write_text(GOOD, encoding="utf-8")
    catalogue = load_catalogue(folder)
    assert catalogue.standard("chest_pain", "test-std").indicator("cpc.d2w").per_case is not None


@pytest.mark.parametrize(
    ("old", "new", "line", "key", "words"),
    [
        ("end: wire_crossing", "end: wire_crosing", 7, "indicators[0].end",
         "unknown time-node key 'wire_crosing'"),
        ("start: door", "start: ed_arrival", 6, "indicators[0].start",
         "unknown time-node key 'ed_arrival'"),  # a trauma node in a chest pain file
        ("[give_up_treatment]", "[give_up]", 9, "indicators[0].exclude[0]",
         "unknown exclusion 'give_up'; facts.yaml defines: in_hospital_onset, give_up_treatment"),
        ('op: "<="', 'op: "=<"', 10, "indicators[0].per_case.op",
         "'=<' is not allowed; use one of: <, <=, >, >="),
        ("diagnosis: STEMI", "diagnosis: STEMl", 8, "indicators[0].population.diagnosis",
         "'STEMl' is not a value of diagnosis; allowed: STEMI, NSTEMI"),
        ("diagnosis: STEMI", "diagnoses: STEMI", 8, "indicators[0].population.diagnoses",
         "unknown case fact 'diagnoses'"),
        ("minutes: 90}", "minutes: 90, hours: 2}", 10, "indicators[0].per_case",
         "exactly one of: seconds, minutes, hours"),
        ("[0, 1440]", "[1440, 0]", 11, "indicators[0].plausible_minutes", "0 ≤ minimum < maximum"),
        ("confidence: C", "confidence: X", 12, "indicators[0].confidence",
         "'X' is not allowed; use one of: C, V, G, U"),
        ("    source: test\n", "", 4, "indicators[0].source", "is required"),
        ("    confirmed: true\n", "    confirmed: true\n    treshold: 5\n", 14,
         "indicators[0].treshold", "is not a known key"),
        ("id: cpc.d2w", "id: stroke.dnt", 4, "indicators[0].id",
         "starts with cpc. or singledisease."),
        ("standard: test-std", "standard: other", 1, "standard", "name the file other.yaml"),
        ("{diagnosis: STEMI, reperfusion: primary_pci}", "{condition: stemi}", 8,
         "indicators[0].population.condition", "unknown named condition 'stemi'"),
        ("{diagnosis: STEMI, reperfusion: primary_pci}", "{give_up_treatment: yes}", 8,
         "indicators[0].population.give_up_treatment", "must be true or false"),
        ("end: wire_crossing", "end: {latest_of: [lytic_start, wire_crossing]}", 7,
         "indicators[0].end.latest_of", "use one of: earliest_of, later_of, first_present"),
        ("end: wire_crossing", "end: [", 9, None, "YAML syntax error"),
    ],
)  # fmt: skip
def test_a_broken_file_names_file_line_key_and_what_is_allowed(
    folder: Path, old: str, new: str, line: int, key: str | None, words: str
) -> None:
    assert old in GOOD
    error = _error(folder, GOOD.replace(old, new, 1))
    assert error.file == str(folder / "chest_pain" / "test-std.yaml")
    assert (error.line, error.key) == (line, key), str(error)
    assert words in str(error)


def _broken(folder: Path, name: str, old: str, new: str) -> ConfigError:
    """Load the folder after replacing `old` by `new` in one of its shared files."""
    text = (folder / name).read_text(encoding="utf-8")
    assert old in text
    (folder / name).write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_catalogue(folder)
    assert caught.value.file == str(folder / name)
    return caught.value


def test_an_unknown_node_in_the_order_chains_names_its_line(folder: Path) -> None:
    error = _broken(folder, "node-order.yaml", "ecg_diagnosis]", "ecg_dx]")
    assert (error.key, error.line) == ("chest_pain[1][2]", 7)
    assert "unknown time-node key 'ecg_dx'" in str(error)


def test_an_unknown_fact_in_an_exclusion_names_its_line(folder: Path) -> None:
    error = _broken(
        folder, "facts.yaml", "when: {give_up_treatment: true}", "when: {gave_up: true}"
    )
    assert error.key == "exclusions.give_up_treatment.when.gave_up"
    assert error.line is not None and "unknown case fact 'gave_up'" in str(error)


# --- any content: a definition or a ConfigError, never another exception -------------------------

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 100_000), st.floats(allow_nan=False, width=32),
    st.sampled_from(["door", "STEMI", "<=", "C", "x", "wire_crossing", "give_up_treatment", ""]),
)  # fmt: skip
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "op",
                    "minutes",
                    "all",
                    "any",
                    "diagnosis",
                    "has_node",
                    "earliest_of",
                    "interval",
                    "start",
                    "end",
                    "condition",
                ]
            ),
            inner,
            max_size=3,
        )
    ),  # fmt: skip
    max_leaves=8,
)
_KEYS = ["id", "name", "kind", "start", "end", "population", "exclude", "per_case", "aggregate",
         "plausible_minutes", "numerator", "confidence", "confirmed", "source", "bins", "fact",
         "shares_within_minutes"]  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=st.dictionaries(st.sampled_from(_KEYS), _VALUES, min_size=1, max_size=3))
def test_any_indicator_content_loads_or_gives_a_config_error(
    folder: Path, changes: dict[str, object]
) -> None:
    indicator = yaml.safe_load(GOOD)["indicators"][0]
    indicator.update(changes)
    document = {"standard": "test-std", "center": "chest_pain", "indicators": [indicator]}
    (folder / "chest_pain" / "test-std.yaml").write_text(
        yaml.safe_dump(document, allow_unicode=True), encoding="utf-8"
    )
    try:
        load_catalogue(folder)
    except ConfigError as error:
        assert error.file is not None and error.file.endswith("test-std.yaml")
