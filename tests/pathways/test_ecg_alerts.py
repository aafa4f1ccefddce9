"""Which stored ECG reports alert, and what the alert says (pathways/ecg_alerts.py): the machine
reading of the Philips acute MI, the ECG network's signed STEMI report, and the LVH look-alike
(real data: ../shared/data/ecg, mappings/tests/samples)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.ecg_file import parse_ecg_file
from adapters.hl7v2 import parse_for_mapping as parse_hl7
from engine.errors import ConfigError
from engine.mapping import load_mapping
from pathways.ecg_alerts import alert_message, alerting, load_alert_rules

ROOT = Path(__file__).resolve().parents[2]
SIERRA = ROOT.parent / "shared" / "data" / "ecg" / "sierra"
NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def _of(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def _machine(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    document = parse_ecg_file((SIERRA / name).read_bytes(), "utf-8")
    bundle = load_mapping(ROOT / "mappings" / "devices" / "ecg.yaml").apply(document)
    (report,) = _of(bundle, "DiagnosticReport")
    (reading,) = [o for o in _of(bundle, "Observation") if o["code"]["coding"][0]["code"] ==
                  "machine-reading"]  # fmt: skip
    return report, reading


def test_a_machine_stemi_alerts_with_patient_time_territory_and_leads() -> None:
    report, reading = _machine("129DYPRG.XML")
    assert alerting(report, load_alert_rules())
    alert = alert_message(report, reading, now=NOW)
    assert alert["alert"] == f"ecg-stemi/{report['id']}"
    assert alert["patient"]["reference"] == report["subject"]["reference"]
    assert alert["patient"]["identifier"]["value"] == "1112010721168bdc"
    assert alert["acquired_at"] == "2011-12-01T07:27:34+08:00"
    assert alert["territory"] == ["inferior"] and alert["leads"] == ["II", "III", "aVF"]
    assert 0 < alert["mi_probability"] < 1


def test_the_lvh_look_alike_does_not_alert() -> None:
    report, _ = _machine("3191723_ZZDEMOPTONLY_1-04_orig.xml")
    assert not alerting(report, load_alert_rules())


def test_the_ecg_networks_signed_stemi_report_alerts_too() -> None:
    raw = (ROOT / "mappings" / "tests" / "samples" / "ecg-oru-stemi-utf8.hl7").read_bytes()
    bundle = load_mapping(ROOT / "mappings" / "hl7v2" / "oru_ecg.yaml").apply(
        parse_hl7(raw, "utf-8")
    )
    (report,) = _of(bundle, "DiagnosticReport")
    assert alerting(report, load_alert_rules())
    alert = alert_message(report, None, now=NOW)  # no machine reading: no territory or leads
    assert alert["territory"] == [] and alert["conclusion"]


def test_a_broken_rules_file_names_file_and_key(tmp_path: Path) -> None:
    rules = tmp_path / "alerts.yaml"
    rules.write_text("channel: ecg-alerts\ncodes: []\n")
    with pytest.raises(ConfigError, match="alerts.yaml:2 codes"):
        load_alert_rules(rules)
