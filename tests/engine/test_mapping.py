"""Tests for mapping files: paths, tables, dates, ids, references, when/each, pruning, errors."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from adapters.jsoninput import parse_for_mapping
from engine.errors import ConfigError, MappingError
from engine.mapping import Mapping, load_mapping, make_id
from engine.mapping.testing import run_mapping_test

_PATH = re.compile(
    r"([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(?:-(\d+)(?:\[(\d+)\])?(?:\.(\d+))?(?:\.(\d+))?)?"
)

ADT_A01 = (
    "MSH|^~\\&|HIS|H1|GC|H1|20240305123000||ADT^A01|MSG0001|P|2.5.1\r"
    "PID|1||P123^^^HOSP^MR~ID9^^^CN^NNCHN||ZHANG^SAN||19800102|M\r"
    "PV1|1|E|||||||||||||||||V456|||||||||||||||||||||||||202403051230\r"
    "OBX|1|NM|8867-4^Heart rate^LN||72|/min|||||F|||202403051231\r"
    "OBX|2|ST|X-1^Note^L||see chart||||||F\r"
    "OBX|3|NM|8480-6^Systolic^LN||130|mm[Hg]|||||F|||20240305\r"
)


class Hl7Document:
    """A tiny ER7 reader implementing the Document protocol, enough for mapping unit tests."""

    media_type = "x-application/hl7-v2+er7"

    def __init__(
        self,
        segments: list[list[str]],
        focus: tuple[str, int] | None = None,
        field_focus: tuple[str, int, str] | None = None,
    ) -> None:
        self.segments = segments
        self.focus = focus  # (segment name, index into segments)
        self.field_focus = field_focus  # (segment name, field number, the repetition's text)

    @classmethod
    def parse(cls, text: str) -> Hl7Document:
        segments = []
        for line in re.split(r"[\r\n]+", text.strip()):
            fields = line.split("|")
            if fields[0] == "MSH":
                fields = ["MSH", "|", *fields[1:]]
            segments.append(fields)
        return cls(segments)

    def _segments(self, name: str, index: str | None) -> list[tuple[int, list[str]]]:
        if self.focus is not None and self.focus[0] == name and index is None:
            return [(self.focus[1], self.segments[self.focus[1]])]
        found = [(i, s) for i, s in enumerate(self.segments) if s[0] == name]
        if index is not None:
            n = int(index) - 1
            return found[n : n + 1]
        return found

    def _values(self, path: str) -> list[str]:
        m = _PATH.fullmatch(path)
        if m is None:
            return []
        name, seg_index, field, rep, comp, sub = m.groups()
        out: list[str] = []
        for _, segment in self._segments(name, seg_index):
            if field is None:
                out.append("|".join(segment))
                continue
            f = int(field)
            if self.field_focus is not None and self.field_focus[:2] == (name, f) and rep is None:
                reps = [self.field_focus[2]]
            else:
                raw = segment[f] if f < len(segment) else ""
                reps = [raw] if name == "MSH" and f <= 2 else raw.split("~")
                if rep is not None:
                    reps = reps[int(rep) - 1 : int(rep)]
            for value in reps:
                if comp is not None:
                    parts = value.split("^")
                    value = parts[int(comp) - 1] if int(comp) <= len(parts) else ""
                    if sub is not None:
                        subs = value.split("&")
                        value = subs[int(sub) - 1] if int(sub) <= len(subs) else ""
                if value:
                    out.append(value)
        return out

    def get(self, path: str) -> str | None:
        values = self._values(path)
        return values[0] if values else None

    def all(self, path: str) -> list[str]:
        return self._values(path)

    def each(self, path: str) -> list[Hl7Document]:
        m = _PATH.fullmatch(path)
        if m is None:
            return []
        name, seg_index, field, rep, _, _ = m.groups()
        if field is None:
            return [
                Hl7Document(self.segments, (name, i), None)
                for i, _ in self._segments(name, seg_index)
            ]
        out = []
        for i, segment in self._segments(name, seg_index):
            f = int(field)
            raw = segment[f] if f < len(segment) else ""
            for value in raw.split("~") if raw else []:
                out.append(Hl7Document(self.segments, (name, i), (name, f, value)))
        return out


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def mapping_of(tmp_path: Path, text: str) -> Mapping:
    return load_mapping(write(tmp_path, text), display_name="mappings/m.yaml")


def apply_output(tmp_path: Path, body: str, message: str = ADT_A01) -> Any:
    mapping = mapping_of(tmp_path, "output:\n" + textwrap.indent(textwrap.dedent(body), "  "))
    return mapping.apply(Hl7Document.parse(message))


CST = timezone(timedelta(hours=8))


# --- paths ----------------------------------------------------------------------------------------


def test_fields_components_repetitions_and_segments_are_read_by_path(tmp_path: Path) -> None:
    out = apply_output(
        tmp_path,
        """
        mrn: ${PID-3.1}
        second_id: ${PID-3[2].1}
        family: ${PID-5.1}
        event: ${MSH-9.2}
        second_obx_value: ${OBX[2]-5}
        all_ids: ${all(PID-3.1)}
        obx_count: ${count(OBX)}
        """,
    )
    assert out == {
        "mrn": "P123",
        "second_id": "ID9",
        "family": "ZHANG",
        "event": "A01",
        "second_obx_value": "see chart",
        "all_ids": ["P123", "ID9"],
        "obx_count": 3,
    }


def test_json_documents_are_read_with_dollar_paths(tmp_path: Path) -> None:
    mapping = mapping_of(
        tmp_path,
        """
        input: application/json
        output:
          name: ${$.patient.name}
          first_id: ${$.patient.ids[0].value}
          odd: ${$['patient']['x-y']}
          ids: [{each: $.patient.ids, value: "${@.value}", pos: "${position()}"}]
          temperature: ${number($.vitals.temp)}
        """,
    )
    doc = parse_for_mapping(
        b'{"patient": {"name": "N", "x-y": "odd", "ids": [{"value": "a"}, {"value": "b"}]},'
        b' "vitals": {"temp": 36.50}}',
        "utf-8",
    )
    assert mapping.apply(doc) == {
        "name": "N",
        "first_id": "a",
        "odd": "odd",
        "ids": [{"value": "a", "pos": 1}, {"value": "b", "pos": 2}],
        "temperature": 36.5,
    }


# --- code tables ----------------------------------------------------------------------------------


def test_lookup_translates_codes_with_a_csv_table_next_to_the_mapping(tmp_path: Path) -> None:
    write(
        tmp_path,
        "code,target,system,display\nM,male,http://hl7.org/fhir/administrative-gender,Male\n"
        "F,female,,\n",
        "tables/gender.csv",
    )
    out = apply_output(
        tmp_path,
        """
        gender: ${lookup('gender', PID-8)}
        unknown: ${lookup('gender', PV1-2, 'unknown')}
        none: ${lookup('gender', PID-99, 'unknown')}
        display: ${lookup_display('gender', PID-8)}
        coding: ${coding('gender', PID-8)}
        """,
    )
    assert out == {
        "gender": "male",
        "unknown": "unknown",
        "display": "Male",
        "coding": {
            "system": "http://hl7.org/fhir/administrative-gender",
            "code": "male",
            "display": "Male",
        },
    }


def test_declared_table_files_are_used_and_checked(tmp_path: Path) -> None:
    write(tmp_path, "code,target\nE,EMER\n", "codes/class.csv")
    out = mapping_of(
        tmp_path,
        """
        tables: {encounter_class: codes/class.csv}
        output: {class: "${lookup('encounter_class', PV1-2)}"}
        """,
    ).apply(Hl7Document.parse(ADT_A01))
    assert out == {"class": "EMER"}


def test_a_table_with_a_repeated_code_is_refused_with_its_line(tmp_path: Path) -> None:
    write(tmp_path, "code,target\nM,male\nM,female\n", "tables/gender.csv")
    with pytest.raises(ConfigError) as caught:
        mapping_of(tmp_path, "output: {g: \"${lookup('gender', PID-8)}\"}\n")
    assert caught.value.line == 3
    assert "code appears twice" in str(caught.value)


# --- dates and times -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtm", "expected"),
    [
        ("2024", "2024"),
        ("202403", "2024-03"),
        ("20240305", "2024-03-05"),
        ("2024030512", "2024-03-05T12:00:00+08:00"),
        ("202403051230", "2024-03-05T12:30:00+08:00"),
        ("20240305123045.123", "2024-03-05T12:30:45.123+08:00"),
        ("20240305123045-0500", "2024-03-05T12:30:45-05:00"),
        ("202403051230+0000", "2024-03-05T12:30:00+00:00"),
        ("2024-03-05T12:30:45Z", "2024-03-05T12:30:45Z"),
        ("2024-03-05T12:30", "2024-03-05T12:30:00+08:00"),
    ],
)
def test_datetime_keeps_precision_and_offset(tmp_path: Path, dtm: str, expected: str) -> None:
    mapping = mapping_of(tmp_path, "output: {t: '${datetime($.t)}'}\n")
    doc = parse_for_mapping(f'{{"t": "{dtm}"}}'.encode(), "utf-8")
    assert mapping.apply(doc, timezone=CST) == {"t": expected}


def test_datetime_without_offset_takes_channel_zone_then_mapping_zone(tmp_path: Path) -> None:
    mapping = mapping_of(tmp_path, "timezone: Asia/Tokyo\noutput: {t: '${datetime(PV1-44)}'}\n")
    doc = Hl7Document.parse(ADT_A01)
    assert mapping.apply(doc) == {"t": "2024-03-05T12:30:00+09:00"}
    utc = UTC
    assert mapping.apply(doc, timezone=utc) == {"t": "2024-03-05T12:30:00+00:00"}
    plain = mapping_of(tmp_path, "output: {t: '${datetime(PV1-44)}'}\n")
    assert plain.apply(doc) == {"t": "2024-03-05T12:30:00+08:00"}


def test_date_and_instant(tmp_path: Path) -> None:
    out = apply_output(tmp_path, "birth: ${date(PID-7)}\nsent: ${instant(MSH-7)}\n")
    assert out == {"birth": "1980-01-02", "sent": "2024-03-05T12:30:00+08:00"}


def test_an_invalid_date_names_mapping_rule_and_input_position(tmp_path: Path) -> None:
    message = ADT_A01.replace("19800102", "19801302")
    with pytest.raises(MappingError) as caught:
        apply_output(tmp_path, "patient:\n  birthDate: ${date(PID-7)}\n", message)
    err = caught.value
    assert (err.mapping, err.rule, err.location) == (
        "mappings/m.yaml",
        "output.patient.birthDate",
        "PID-7",
    )
    assert "19801302" not in str(err)


def test_an_invalid_date_inside_each_names_the_repetition(tmp_path: Path) -> None:
    message = ADT_A01.replace("|||20240305\r", "|||2024XX05\r")
    with pytest.raises(MappingError) as caught:
        apply_output(tmp_path, "obs: [{each: OBX, at: '${datetime(OBX-14)}'}]\n", message)
    assert caught.value.location == "OBX-14 in OBX #3"


def test_a_date_read_through_a_let_name_still_names_its_position(tmp_path: Path) -> None:
    message = ADT_A01.replace("19800102", "1980")
    mapping = mapping_of(tmp_path, "let: {dob: '${PID-7}'}\noutput: {t: '${instant(dob)}'}\n")
    with pytest.raises(MappingError) as caught:
        mapping.apply(Hl7Document.parse(message))
    assert caught.value.location == "PID-7"


# --- ids and references --------------------------------------------------------------------------


def test_ids_are_stable_fhir_ids(tmp_path: Path) -> None:
    out = apply_output(tmp_path, "id: ${id(PID-3.4, PID-3.1)}\n")
    assert out == {"id": make_id("HOSP", "P123")}
    assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", out["id"])
    assert make_id("a", "bc") != make_id("ab", "c")
    assert make_id(None, None) is None


def test_ids_do_not_change_between_releases() -> None:
    # A changed id would orphan every stored resource: this value is frozen on purpose.
    import hashlib

    expected = hashlib.sha256(b"HOSP\x1fP123").hexdigest()[:32]
    assert make_id("HOSP", "P123") == expected


ADT_MAPPING = """
input: x-application/hl7-v2+er7
when: ${MSH-9.1 == 'ADT' and MSH-9.2 in ['A01', 'A04', 'A08']}
let:
  patient_id: ${id(PID-3.4, PID-3.1)}
resources:
  patient:
    resourceType: Patient
    id: ${patient_id}
    identifier:
      - each: PID-3
        system: "urn:oid:${PID-3.4}"
        value: ${PID-3.1}
    name: [{family: "${PID-5.1}", given: ["${PID-5.2}"]}]
    gender: ${lookup('gender', PID-8, 'unknown')}
    birthDate: ${date(PID-7)}
  encounter:
    when: ${exists(PV1)}
    resourceType: Encounter
    id: ${id(PID-3.4, PV1-19)}
    status: ${iif(MSH-9.2 == 'A03', 'finished', 'in-progress')}
    subject: {reference: "${ref('patient')}"}
    period: {start: "${datetime(PV1-44)}"}
  observations:
    each: OBX
    when: ${OBX-2 == 'NM'}
    resourceType: Observation
    id: ${id(MSH-10, OBX-1)}
    status: final
    code: {coding: [{system: "http://loinc.org", code: "${OBX-3.1}"}]}
    subject: {reference: "${ref('patient')}"}
    encounter: {reference: "${ref('encounter')}"}
    valueQuantity: {value: "${number(OBX-5)}", unit: "${OBX-6}"}
"""


def test_resources_become_a_transaction_bundle_with_references(tmp_path: Path) -> None:
    write(tmp_path, "code,target\nM,male\nF,female\n", "tables/gender.csv")
    mapping = mapping_of(tmp_path, ADT_MAPPING)
    bundle = mapping.apply(Hl7Document.parse(ADT_A01))
    patient_id = make_id("HOSP", "P123")
    entries = bundle["entry"]
    assert bundle["type"] == "transaction"
    assert [e["request"]["url"].split("/")[0] for e in entries] == [
        "Patient",
        "Encounter",
        "Observation",
        "Observation",
    ]
    patient = entries[0]["resource"]
    assert patient["identifier"] == [
        {"system": "urn:oid:HOSP", "value": "P123"},
        {"system": "urn:oid:CN", "value": "ID9"},
    ]
    assert patient["gender"] == "male"
    assert entries[0]["request"] == {"method": "PUT", "url": f"Patient/{patient_id}"}
    encounter = entries[1]["resource"]
    assert encounter["subject"] == {"reference": f"Patient/{patient_id}"}
    assert encounter["period"] == {"start": "2024-03-05T12:30:00+08:00"}
    assert encounter["status"] == "in-progress"
    systolic = entries[3]["resource"]
    assert systolic["encounter"] == {"reference": f"Encounter/{encounter['id']}"}
    assert systolic["valueQuantity"] == {"value": 130, "unit": "mm[Hg]"}


def test_a_mapping_whose_when_is_false_gives_none(tmp_path: Path) -> None:
    write(tmp_path, "code,target\n", "tables/gender.csv")
    mapping = mapping_of(tmp_path, ADT_MAPPING)
    assert mapping.apply(Hl7Document.parse(ADT_A01.replace("ADT^A01", "ORU^R01"))) is None


def test_ref_to_an_undeclared_resource_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        mapping_of(
            tmp_path,
            """
            resources:
              encounter:
                resourceType: Encounter
                subject: {reference: "${ref('patient')}"}
            """,
        )
    assert str(caught.value).startswith(
        "mappings/m.yaml:5 resources.encounter.subject.reference: ref('patient')"
    )


# --- conditions, iteration, pruning --------------------------------------------------------------


def test_when_on_objects_and_list_items(tmp_path: Path) -> None:
    out = apply_output(
        tmp_path,
        """
        yes: {when: "${PID-8 == 'M'}", v: 1}
        no: {when: "${PID-8 == 'F'}", v: 2}
        items:
          - {when: "${PV1-2 in ['E', 'I']}", v: emergency}
          - {when: "${not exists(PV2)}", v: no-pv2}
          - {when: "${PID-8 != 'M'}", v: dropped}
        numbers: {when: "${OBX-5 > 70 and OBX-5 <= 72}", v: ok}
        """,
    )
    assert out == {"yes": {"v": 1}, "items": [{"v": "emergency"}, {"v": "no-pv2"}],
                   "numbers": {"v": "ok"}}  # fmt: skip


def test_each_over_values_binds_a_name(tmp_path: Path) -> None:
    out = apply_output(
        tmp_path,
        """
        given:
          - each: ${split('A B  C', ' ')}
            as: part
            text: ${lower(part)}
        """,
    )
    assert out == {"given": [{"text": "a"}, {"text": "b"}, {"text": "c"}]}


def test_empty_values_are_pruned_recursively(tmp_path: Path) -> None:
    out = apply_output(
        tmp_path,
        """
        absent: ${PID-99}
        empty_text: ""
        nested: {a: "${PID-99}", b: [{c: "${PID-98}"}]}
        kept_false: false
        kept_zero: 0
        url: "Patient/${PID-99}"
        """,
    )
    assert out == {"kept_false": False, "kept_zero": 0}


def test_expressions_cover_strings_defaults_and_literals(tmp_path: Path) -> None:
    out = apply_output(
        tmp_path,
        """
        full: ${concat(PID-5.1, ' ', PID-5.2)}
        joined: ${join(all(PID-3.1), ',')}
        upper: ${upper('abc')}
        sub: ${substring(PID-7, 0, 4)}
        default: ${PID-99 ?? PID-98 ?? 'none'}
        coalesce: ${coalesce(PID-99, PID-8)}
        replace: ${replace('a-b', '-', '+')}
        text: "MRN ${PID-3.1} (${PID-3.4})"
        literal: "costs $${not an expression}"
        bools: ${[true, false, null]}
        count: ${count(all(PID-3.1))}
        quote: ${"it's"}
        """,
    )
    assert out == {
        "full": "ZHANG SAN",
        "joined": "P123,ID9",
        "upper": "ABC",
        "sub": "1980",
        "default": "none",
        "coalesce": "M",
        "replace": "a+b",
        "text": "MRN P123 (HOSP)",
        "literal": "costs ${not an expression}",
        "bools": [True, False, None],
        "count": 2,
        "quote": "it's",
    }


def test_is_id_tells_which_texts_can_be_fhir_ids(tmp_path: Path) -> None:
    out = apply_output(
        tmp_path,
        """
        yes: ${[is_id('MSG-0001'), is_id('OpenPIXPDQ10.243.0.65'), is_id(PID-3.1)]}
        no: ${[is_id('A 1'), is_id('号1'), is_id(PID-99)]}
        """,
    )
    assert out == {"yes": [True, True, True], "no": [False, False, False]}
    long_out = apply_output(tmp_path, "no: ${is_id('" + "a" * 65 + "')}")
    assert long_out == {"no": False}


def test_literal_key_escape_writes_directive_names(tmp_path: Path) -> None:
    out = apply_output(tmp_path, "signature: {'=when': '${instant(MSH-7)}'}\n")
    assert out == {"signature": {"when": "2024-03-05T12:30:00+08:00"}}


# --- load-time errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "line", "key", "message"),
    [
        ("a: 1\nb: ${lookp('gender', PID-8)}\n", 3, "output.b", "unknown function 'lookp'"),
        ("a: ${PID-3 ==}\n", 2, "output.a", "expected a value at column 9"),
        ("a: ${undefined_name}\n", 2, "output.a", "unknown name 'undefined_name'"),
        ("a: ${lookup('nope', PID-8)}\n", 2, "output.a", "unknown table 'nope'"),
        ("a: ${upper(PID-3, 1)}\n", 2, "output.a", "upper() takes 1 arguments, got 2"),
        ("a: 'x ${PID-3'\n", 2, "output.a", "'${' without its closing '}'"),
        ("a: {as: x}\n", 2, "output.a.as", "`as` names the item of an `each`"),
    ],
)
def test_load_errors_name_file_line_and_key(
    tmp_path: Path, body: str, line: int, key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        mapping_of(tmp_path, "output:\n" + textwrap.indent(body, "  "))
    err = caught.value
    assert (err.file, err.line, err.key) == ("mappings/m.yaml", line, key)
    assert message in str(err)


def test_unknown_top_level_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mappings/m.yaml:2 outputs: unknown key"):
        mapping_of(tmp_path, "input: x\noutputs: {}\n")


def test_comparing_text_with_a_list_is_a_mapping_error(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as caught:
        apply_output(tmp_path, "a: {when: '${all(PID-3.1) > PID-8}', v: 1}\n")
    assert caught.value.rule == "output.a.when"


# --- mapping tests -------------------------------------------------------------------------------


def test_mapping_test_files_report_failed_checks_by_line(tmp_path: Path) -> None:
    write(tmp_path, "output: {name: '${$.name}', n: ['${$.a}', '${$.b}']}\n", "m.yaml")
    test = write(
        tmp_path,
        """
        mapping: m.yaml
        parser: application/json
        input: '{"name": "x", "a": "1", "b": "2"}'
        expect:
          - {path: name, equals: x}
          - {path: n, count: 2}
          - {path: "n[1]", equals: "3"}
          - {path: missing, exists: false}
        """,
        "tests/t.yaml",
    )
    test.rename(tmp_path / "t.yaml")
    failures = run_mapping_test(tmp_path / "t.yaml", display_name="mappings/tests/t.yaml")
    assert [str(f) for f in failures] == [
        "mappings/tests/t.yaml:8 expect[2] n[1]: expected '3', got '2'"
    ]


def test_a_mapping_test_with_a_broken_mapping_reports_it(tmp_path: Path) -> None:
    write(tmp_path, "output: {name: '${nme(1)}'}\n", "m.yaml")
    test = write(tmp_path, "mapping: m.yaml\nparser: application/json\ninput: '{}'\n", "t.yaml")
    (failure,) = run_mapping_test(test)
    assert "unknown function 'nme'" in failure.message
