"""Templates (`template: cx_identifier` + `from: PID-3`): reuse, load-time errors, same output."""

from __future__ import annotations

import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.hl7v2 import parse_for_mapping
from engine.errors import ConfigError, MappingError
from engine.mapping import load_mapping

ROOT = Path(__file__).resolve().parents[2]
HL7V2 = ROOT / "mappings" / "hl7v2"
BEFORE = Path(__file__).parent / "fixtures" / "adt-before-templates.yaml"

TEMPLATES = """
templates:
  id:
    description: CX to Identifier
    param: cx
    body:
      system: ${concat('urn:oid:', cx.4.2)}
      value: ${cx.1}
  when:
    param: ts
    body: ${datetime(ts.1)}
"""


def _write(tmp_path: Path, mapping: str, templates: str = TEMPLATES) -> Path:
    (tmp_path / "templates.yaml").write_text(textwrap.dedent(templates), encoding="utf-8")
    file = tmp_path / "m.yaml"
    file.write_text(textwrap.dedent(mapping), encoding="utf-8")
    return file


def _doc(message: str) -> Any:
    return parse_for_mapping(message.encode("utf-8"), "utf-8")


MESSAGE = (
    "MSH|^~\\&|HIS|H|GC|H|20261125080000+0800||ADT^A04|X1|P|2.5.1\r"
    "PID|1||K1^^^H&1.2.3&ISO^MR~110101199003074514^^^CHN&2.16.156.10011.1.3&ISO^NNCHN\r"
    "OBX|1|NM|X||1|||||||||202611250810\r"
)


def test_a_template_reads_the_field_it_is_given(tmp_path: Path) -> None:
    file = _write(
        tmp_path,
        """
        templates: [templates.yaml]
        output:
          ids: [{each: PID-3, template: id, from: PID-3}]
          second: {template: id, from: "PID-3[2]", use: official}
          at: {template: when, from: OBX-14}
        """,
    )
    out = load_mapping(file).apply(_doc(MESSAGE))
    assert out["ids"] == [
        {"system": "urn:oid:1.2.3", "value": "K1"},
        {"system": "urn:oid:2.16.156.10011.1.3", "value": "110101199003074514"},
    ]
    assert out["second"] == {**out["ids"][1], "use": "official"}  # fields beside it add to it
    assert out["at"] == "2026-11-25T08:10:00+08:00"


def test_templates_can_use_templates_with_a_component_of_their_field(tmp_path: Path) -> None:
    templates = TEMPLATES + textwrap.indent(
        textwrap.dedent("""
        authority:
          param: hd
          body: {code: "${hd.1}", oid: "${hd.2}"}
        wrapped:
          param: cx
          body:
            value: ${cx.1}
            assigner: {template: authority, from: cx.4}
        """),
        "  ",
    )
    file = _write(tmp_path, "templates: templates.yaml\noutput: {template: wrapped, from: PID-3}\n",
                  templates)  # fmt: skip
    assert load_mapping(file).apply(_doc(MESSAGE)) == {
        "value": "K1",
        "assigner": {"code": "H", "oid": "1.2.3"},
    }


@pytest.mark.parametrize(
    ("mapping", "line", "key", "message"),
    [
        ("output: {template: idd, from: PID-3}\n", 2, "output.template", "unknown template 'idd'"),
        ("output: {template: id}\n", 2, "output.template", "needs `from:`"),
        ("output: {template: id, from: \"'x'\"}\n", 2, "output.from", "must be a path"),
        ("output: {from: PID-3}\n", 2, "output.from", "add `template:`"),
        ("output: {template: when, from: OBX-14, x: 1}\n", 2, "output.x", "single value"),
        ("output: {template: id, from: PID-3.4.1}\n", 7, "templates.id.body.system", "not a path"),
    ],
)
def test_a_wrong_use_is_a_load_error_with_file_line_and_key(
    tmp_path: Path, mapping: str, line: int, key: str, message: str
) -> None:
    file = _write(tmp_path, "templates: [templates.yaml]\n" + mapping)
    with pytest.raises(ConfigError) as caught:
        load_mapping(file)
    assert caught.value.line == line, str(caught.value)
    assert caught.value.key is not None and caught.value.key.startswith(key), str(caught.value)
    assert message in str(caught.value)


def test_an_error_inside_a_template_names_the_template_file_and_the_use(tmp_path: Path) -> None:
    bad = TEMPLATES.replace("${cx.1}", "${lookp(cx.1)}")
    file = _write(tmp_path, "templates: [templates.yaml]\noutput: {template: id, from: PID-3}\n",
                  bad)  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_mapping(file)
    text = str(caught.value)
    assert "templates.yaml:8 templates.id.body.value" in text and "unknown function 'lookp'" in text
    assert f"used at {file}:2 output" in text


def test_an_unused_template_is_still_checked(tmp_path: Path) -> None:
    file = _write(tmp_path, "templates: [templates.yaml]\noutput: {a: 1}\n",
                  TEMPLATES.replace("${datetime(ts.1)}", "${datetime(ts.1, 2)}"))  # fmt: skip
    with pytest.raises(ConfigError, match=r"templates.yaml:11 templates.when.body.*1 arguments"):
        load_mapping(file)


@pytest.mark.parametrize(
    ("templates", "message"),
    [
        ("templates: {a: {param: x}}\n", "needs a `body`"),
        ("templates: {a: {body: 1}}\n", "needs a `param`"),
        ("templates: {a: {param: x, body: 1, bdy: 2}}\n", "unknown key"),
        ("template: {}\n", "`templates:`"),
        ("templates: {a: {param: x, body: {each: x, v: 1}}}\n", "cannot start with `each`"),
        ("templates: {a: {param: x, body: {template: a, from: x}}}\n", "uses itself"),
    ],
)
def test_a_broken_template_file_is_a_load_error(
    tmp_path: Path, templates: str, message: str
) -> None:
    file = _write(tmp_path, "templates: [templates.yaml]\noutput: {b: 1}\n", templates)
    with pytest.raises(ConfigError, match="templates.yaml") as caught:
        load_mapping(file)
    assert message in str(caught.value)


def test_a_missing_template_file_is_named(tmp_path: Path) -> None:
    file = _write(tmp_path, "templates: [nope.yaml]\noutput: {b: 1}\n")
    with pytest.raises(ConfigError, match=r"m.yaml:1 templates\[0\]: no template file nope.yaml"):
        load_mapping(file)


def test_a_runtime_error_inside_a_template_names_the_field_it_was_given(tmp_path: Path) -> None:
    file = _write(
        tmp_path, "templates: [templates.yaml]\noutput: {at: {template: when, from: PID-7}}\n"
    )
    message = "MSH|^~\\&|A|B|C|D|2026||ADT^A04|1|P|2.5\rPID|1||K||||20261399\r"
    with pytest.raises(MappingError) as caught:
        load_mapping(file).apply(_doc(message))
    assert "PID-7.1" in str(caught.value) and "20261399" not in str(caught.value)


# --- the standard ADT mapping, refactored onto templates, maps exactly as before -----------------


def _old_adt(tmp_path: Path) -> Any:
    shutil.copytree(HL7V2 / "tables", tmp_path / "tables")
    shutil.copy(BEFORE, tmp_path / "adt.yaml")
    return load_mapping(tmp_path / "adt.yaml")


def test_the_adt_mapping_uses_templates_now() -> None:
    text = (HL7V2 / "adt.yaml").read_text(encoding="utf-8")
    assert "template: cx_identifier" in text and "${PID-3.1}" not in text


def _patient_and_encounter(bundle: Any) -> list[Any]:
    """The Patient and Encounter entries, without what the full ADT mapping deliberately added:
    references to the Practitioner, Location, Organization (MSH-4) and EpisodeOfCare it now
    writes, the Chinese id type's name, and the merge rules (request extensions) that keep what
    other feeds added to the Encounter."""
    kept = []
    for entry in bundle["entry"]:
        resource = dict(entry["resource"])
        if resource["resourceType"] not in ("Patient", "Encounter"):
            continue
        for key in ("participant", "location", "managingOrganization", "serviceProvider"):
            resource.pop(key, None)
        for identifier in resource.get("identifier", []):
            identifier.get("type", {}).pop("text", None)
        request = {k: v for k, v in entry.get("request", {}).items() if k != "extension"}
        kept.append({**entry, "resource": resource, "request": request})
    return kept


def test_adt_output_is_unchanged_for_the_shipped_samples(tmp_path: Path) -> None:
    old, new = _old_adt(tmp_path), load_mapping(HL7V2 / "adt.yaml")
    samples = [ROOT / "mappings/tests/samples/adt-a04.hl7"]
    for sample in samples:
        document = parse_for_mapping(sample.read_bytes(), "utf-8")
        before, after = old.apply(document), new.apply(document)
        assert _patient_and_encounter(after) == _patient_and_encounter(before)
        # the doctor (and his role), the hospital and the department the old mapping only named
        # are now resources of their own
        assert [e["resource"]["resourceType"] for e in after["entry"][2:]] == [
            "Practitioner",
            "PractitionerRole",
            "Organization",
            "Location",
        ]


_FIELD = st.lists(
    st.sampled_from([*"AZaz09 ^&~.-张三北京", "\\F\\", "\\S\\", "\\X41\\", "\\"]), max_size=20
).map("".join)


@settings(max_examples=120, deadline=None)
@given(pid3=_FIELD, pid5=_FIELD, pid11=_FIELD, pid13=_FIELD, pv1_2=st.sampled_from("EIO"))
def test_adt_output_is_unchanged_for_any_field_content(
    pid3: str, pid5: str, pid11: str, pid13: str, pv1_2: str
) -> None:

    message = (
        "MSH|^~\\&|HIS|COUNTY-HOSP|GC|ED|20261125080000+0800||ADT^A01|X|P|2.5.1\r"
        f"PID|1||{pid3}||{pid5}||19700101|M|||{pid11}||{pid13}\r"
        f"PV1|1|{pv1_2}|||||||||||||||||V1\r"
    )
    document = parse_for_mapping(message.encode("utf-8"), "utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        old = _old_adt(Path(tmp))
    new = load_mapping(HL7V2 / "adt.yaml")
    try:
        expected = old.apply(document)
    except MappingError as exc:
        with pytest.raises(MappingError) as caught:
            new.apply(document)
        assert caught.value.location == exc.location
        assert exc.location and exc.location.startswith(("PID-", "PV1-")), str(exc)  # the field
        return
    assert _patient_and_encounter(new.apply(document)) == _patient_and_encounter(expected)


_STAMP = st.lists(st.sampled_from([*"0123456789+-.^&~ Tx:", "2026", "\\S\\"]), max_size=24).map(
    "".join
)


@settings(max_examples=150, deadline=None)
@given(stamp=_STAMP)
def test_a_template_on_any_field_content_gives_a_value_or_names_the_field(stamp: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = _write(
            Path(tmp),
            "templates: [templates.yaml]\noutput:\n  at: {template: when, from: OBX-14}\n",
        )
        mapping = load_mapping(file)
    message = f"MSH|^~\\&|A|B|C|D|2026||ORU^R01|1|P|2.5\rOBX|1|NM|X||1|||||||||{stamp}\r"
    try:
        out = mapping.apply(_doc(message))
    except MappingError as exc:
        assert exc.location == "OBX-14.1" and "datetime()" in str(exc)
        return
    assert out is None or set(out) == {"at"} and isinstance(out["at"], str)
