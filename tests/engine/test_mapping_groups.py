"""Segment groups (`each: group(OBR, [OBX, NTE])`): an order with its own results, nothing else."""

from __future__ import annotations

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

HEADER = "MSH|^~\\&|LIS|H|GC|H|20261125083000+0800||ORU^R01|M1|P|2.5.1\rPID|1||P1^^^H^MR\r"


def _map(tmp_path: Path, body: str, message: str) -> Any:
    file = tmp_path / "m.yaml"
    file.write_text(textwrap.dedent(body), encoding="utf-8")
    return load_mapping(file).apply(parse_for_mapping(message.encode(), "utf-8"))


def _segments(message: str) -> list[list[str]]:
    return [s.split("|") for s in message.split("\r") if s]


def _expected_orders(message: str) -> list[dict[str, Any]]:
    """The groups computed independently from the raw segments: OBR, then OBX/NTE until other."""
    orders: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for fields in _segments(message):
        if fields[0] == "OBR":
            current = {"order": fields[3], "codes": [], "notes": []}
            orders.append(current)
        elif current is not None and fields[0] == "OBX":
            current["codes"].append(fields[3])
        elif current is not None and fields[0] == "NTE":
            current["notes"].append(fields[3])
        else:
            current = None
    return orders


ORDERS = """
output:
  orders:
    - each: group(OBR, [OBX, NTE])
      order: ${OBR-3}
      count: ${count(OBX)}
      codes: ${all(OBX-3)}
      notes: ${all(NTE-3)}
      patient: ${PID-3.1}
"""


def test_each_group_sees_only_its_own_results_and_notes(tmp_path: Path) -> None:
    message = HEADER + (
        "OBR|1|A1|F1|TNI|||20261125081000+0800\r"
        "OBX|1|NM|TNI||52|ng/L\rNTE|1||hemolysed\rOBX|2|NM|CK||100|U/L\r"
        "OBR|2|A2|F2|GLU|||20261125081500+0800\rOBX|1|NM|GLU||6.1|mmol/L\r"
    )
    out = _map(tmp_path, ORDERS, message)["orders"]
    expected = _expected_orders(message)
    assert [o["order"] for o in out] == [e["order"] for e in expected] == ["F1", "F2"]
    assert [o["codes"] for o in out] == [e["codes"] for e in expected]
    assert [o["count"] for o in out] == [len(e["codes"]) for e in expected]
    # The second order has no NTE: it must not borrow the first order's note.
    assert out[0]["notes"] == ["hemolysed"] and "notes" not in out[1]
    assert all(o["patient"] == "P1" for o in out)  # other segments read the whole message


def test_a_group_ends_at_a_segment_it_does_not_list(tmp_path: Path) -> None:
    message = HEADER + ("OBR|1|A1|F1|TNI\rOBX|1|NM|TNI||52\rSPM|1|S1\rOBX|2|NM|SPECIMEN-OBS||1\r")
    out = _map(tmp_path, ORDERS, message)["orders"]
    assert [o["codes"] for o in out] == [["TNI"]]


def test_an_observation_reads_its_own_order_times_apart_from_its_result_time(
    tmp_path: Path,
) -> None:
    message = HEADER + (
        "OBR|1|A1|F1|TNI|||20261125081000+0800|||||||||||||||20261125082500+0800\r"
        "OBX|1|NM|TNI||52|ng/L|||||F|||20261125082000+0800\r"
        "OBR|2|A2|F2|GLU|||20261125090000+0800\rOBX|1|NM|GLU||6.1\r"
    )
    body = """
    output:
      obs:
        - each:
            - group(OBR, [OBX, NTE])
            - OBX
          report: ${OBR-3}
          collected: ${datetime(OBR-7)}
          reported: ${datetime(OBR-22)}
          effective: ${datetime(OBX-14)}
          position: ${position()}
    """
    out = _map(tmp_path, body, message)["obs"]
    assert out == [
        {
            "report": "F1",
            "collected": "2026-11-25T08:10:00+08:00",
            "reported": "2026-11-25T08:25:00+08:00",
            "effective": "2026-11-25T08:20:00+08:00",
            "position": 1,
        },
        {"report": "F2", "collected": "2026-11-25T09:00:00+08:00", "position": 1},
    ]


def test_nested_groups_give_each_result_its_own_notes(tmp_path: Path) -> None:
    message = HEADER + (
        "OBR|1|A1|F1|X\rNTE|1||order note\rOBX|1|NM|A||1\rNTE|1||note A\rOBX|2|NM|B||2\r"
    )
    body = """
    output:
      obs:
        - each:
            - group(OBR, [OBX, NTE])
            - group(OBX, [NTE])
          code: ${OBX-3}
          notes: ${all(NTE-3)}
          second: ${OBX[2]-3}
    """
    out = _map(tmp_path, body, message)["obs"]
    # B has no NTE of its own (the order's note comes before it); OBX[2] is within the result.
    assert out == [{"code": "A", "notes": ["note A"]}, {"code": "B"}]


def test_a_message_without_the_head_segment_gives_no_group(tmp_path: Path) -> None:
    assert _map(tmp_path, ORDERS, HEADER) is None  # nothing left after pruning


def test_an_error_inside_a_group_names_the_group_and_the_result(tmp_path: Path) -> None:
    message = HEADER + "OBR|1|A1|F1|X\rOBR|2|A2|F2|Y\rOBX|1|NM|A||1|||||||||2026-13-45\r"
    body = """
    output:
      obs:
        - each:
            - group(OBR, [OBX])
            - OBX
          at: ${datetime(OBX-14)}
    """
    with pytest.raises(MappingError) as caught:
        _map(tmp_path, body, message)
    text = str(caught.value)
    assert "OBX-14" in text and "OBR group #2 > OBX #1" in text and "2026-13-45" not in text


@pytest.mark.parametrize(
    ("each", "message"),
    [
        ("group(OBR)", "write group(OBR, [OBX, NTE])"),
        ("group(OBR, [])", "write group(OBR, [OBX, NTE])"),
        ("group(OBR, [OBX], [])", "write group(OBR, [OBX, NTE])"),
        ("group(OBR, [OBX], [SPM], [ZXY])", "write group(OBR, [OBX, NTE])"),
        ("group(OBR, [OBX-5])", "segment ids only"),
        ("group('OBR', [OBX])", "segment ids only"),
    ],
)
def test_a_malformed_group_is_a_load_error_with_line_and_key(
    tmp_path: Path, each: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _map(tmp_path, f"output:\n  obs:\n    - each: {each}\n      a: 1\n", HEADER)
    assert caught.value.line == 3 and caught.value.key == "output.obs[0].each"
    assert message in str(caught.value)


def test_group_outside_each_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="each: group"):
        _map(tmp_path, "output: {a: '${group(OBR, [OBX])}'}\n", HEADER)


def test_a_group_over_json_input_is_a_clear_mapping_error(tmp_path: Path) -> None:
    from adapters.jsoninput import parse_for_mapping as parse_json

    file = tmp_path / "m.yaml"
    file.write_text("output:\n  a:\n    - each: group(OBR, [OBX])\n      x: 1\n", encoding="utf-8")
    with pytest.raises(MappingError, match="made of segments"):
        load_mapping(file).apply(parse_json(b'{"a": 1}', "utf-8"))


_SEGMENT_IDS = st.sampled_from(["OBR", "OBX", "NTE", "SPM", "ORC", "ZXY"])
_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="\r\n|^~\\&", blacklist_categories=("Cs",)),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_SEGMENT_IDS, _TEXT), max_size=15))
def test_groups_match_an_independent_grouping_for_any_segment_order(
    segments: list[tuple[str, str]],
) -> None:
    message = HEADER + "".join(f"{sid}|1||{text or 'x'}|{text}\r" for sid, text in segments)
    with tempfile.TemporaryDirectory() as tmp:
        out = _map(Path(tmp), ORDERS, message)
    expected = _expected_orders(message)
    got = (out or {}).get("orders", [])
    assert [order["order"] for order in got] == [want["order"] for want in expected]
    assert [order.get("codes", []) for order in got] == [want["codes"] for want in expected]
    assert [order["count"] for order in got] == [len(want["codes"]) for want in expected]


def test_a_stop_list_ends_the_search_for_groups(tmp_path: Path) -> None:
    message = HEADER + (
        "OBR|1|A1|F1|X\rOBX|1|NM|A||1\rNTE|1||on A\rOBX|2|NM|B||2\rSPM|1|S1\rOBX|3|CWE|SPEC||Y\r"
        "OBR|2|A2|F2|Y\rOBX|1|NM|C||3\r"
    )
    body = """
    output:
      results:
        - each:
            - group(OBR, [NTE, OBX, SPM])
            - group(OBX, [NTE], [SPM])
          code: ${OBX-3}
          specimen: ${SPM-2}
      without_stop:
        - each:
            - group(OBR, [NTE, OBX, SPM])
            - group(OBX, [NTE])
          code: ${OBX-3}
    """
    out = _map(tmp_path, body, message)
    # Independently: the results are the OBXs of each order that come before its SPM.
    before_spm: list[str] = []
    seen_spm = False
    for fields in _segments(message):
        seen_spm = (seen_spm or fields[0] == "SPM") and fields[0] != "OBR"
        if fields[0] == "OBX" and not seen_spm:
            before_spm.append(fields[3])
    assert [r["code"] for r in out["results"]] == before_spm == ["A", "B", "C"]
    assert out["results"][0]["specimen"] == "S1" and "specimen" not in out["results"][2]
    assert [r["code"] for r in out["without_stop"]] == ["A", "B", "SPEC", "C"]


def test_a_stop_segment_cannot_be_a_member(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="both belong to the group and stop it"):
        _map(tmp_path, "output:\n  a:\n    - each: group(OBX, [NTE, SPM], [SPM])\n      x: 1\n",
             HEADER)  # fmt: skip
