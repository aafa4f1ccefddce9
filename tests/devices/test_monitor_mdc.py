"""IHE PCD-01 monitor vitals: every MDC code the pathways and QC need (HR, SpO2, NIBP systolic,
diastolic and mean, RR, temperature, EtCO2) maps to its LOINC vital-sign code and its MDC unit to
UCUM, from a real-looking ambulance monitor message and a bedside variant in °F and kPa."""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from adapters.hl7v2 import parse_for_mapping
from engine.channels import load_channel_text
from engine.mapping import load_mapping
from engine.pipeline import compile_channel, process
from engine.plugins import load_plugins

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "mappings" / "hl7v2" / "oru_monitor.yaml"
AMBULANCE = ROOT / "mappings" / "tests" / "samples" / "monitor-pcd01-ambulance-utf8.hl7"

# MDC code in OBX-3 → (LOINC, value, UCUM code, UCUM display) in the ambulance sample
EXPECTED = {
    "147842": ("8867-4", 118, "/min", "/min"),  # MDC_ECG_HEART_RATE
    "150456": ("59408-5", 91, "%", "%"),  # MDC_PULS_OXIM_SAT_O2
    "149530": ("8867-4", 117, "/min", "/min"),  # MDC_PULS_OXIM_PULS_RATE
    "150021": ("8480-6", 92, "mm[Hg]", "mmHg"),  # MDC_PRESS_BLD_NONINV_SYS
    "150022": ("8462-4", 58, "mm[Hg]", "mmHg"),  # MDC_PRESS_BLD_NONINV_DIA
    "150023": ("8478-0", 69, "mm[Hg]", "mmHg"),  # MDC_PRESS_BLD_NONINV_MEAN
    "151562": ("9279-1", 26, "/min", "/min"),  # MDC_RESP_RATE
    "150364": ("8310-5", 36.4, "Cel", "°C"),  # MDC_TEMP_BODY
    "151708": ("19889-5", 31, "mm[Hg]", "mmHg"),  # MDC_AWAY_CO2_ET
    "151594": ("9279-1", 25, "/min", "/min"),  # MDC_CO2_RESP_RATE
}


def _observations(raw: bytes) -> dict[str, dict[str, Any]]:
    bundle = load_mapping(MAPPING).apply(parse_for_mapping(raw, "utf-8"))
    assert isinstance(bundle, dict)
    found: dict[str, dict[str, Any]] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] != "Observation":
            continue
        (mdc,) = [c["code"] for c in resource["code"]["coding"] if "11073" in c["system"]]
        found[mdc] = resource
    return found


@pytest.mark.parametrize("mdc", sorted(EXPECTED))
def test_each_vital_sign_mdc_code_has_its_loinc_and_ucum(mdc: str) -> None:
    loinc, value, ucum, display = EXPECTED[mdc]
    observation = _observations(AMBULANCE.read_bytes())[mdc]
    assert {"system": "http://loinc.org", "code": loinc} in [
        {k: c[k] for k in ("system", "code")} for c in observation["code"]["coding"]
    ]
    assert observation["valueQuantity"] == {
        "value": value,
        "unit": display,
        "system": "http://unitsofmeasure.org",
        "code": ucum,
    }
    assert observation["category"][0]["coding"][0]["code"] == "vital-signs"


def test_the_ambulance_message_covers_every_vital_sign_and_nothing_is_left_unmapped() -> None:
    found = _observations(AMBULANCE.read_bytes())
    assert set(found) == set(EXPECTED)
    # the NIBP was cycled at 07:40, the rest read at 07:42 (OBX-14 each)
    assert found["150021"]["effectiveDateTime"] == "2026-11-26T07:40:00+08:00"
    assert found["151708"]["effectiveDateTime"] == "2026-11-26T07:42:00+08:00"


def test_temperature_in_fahrenheit_and_etco2_in_kilopascal_keep_their_own_units() -> None:
    raw = (
        AMBULANCE.read_bytes()
        .replace(b"|36.4|268192^MDC_DIM_DEGC^MDC|", b"|97.5|266560^MDC_DIM_FAHR^MDC|")
        .replace(b"|31|266016^MDC_DIM_MMHG^MDC|35-45|", b"|4.1|265987^MDC_DIM_KILO_PASCAL^MDC||")
        .replace(b"150364^MDC_TEMP_BODY", b"150344^MDC_TEMP")
    )
    found = _observations(raw)
    assert found["150344"]["valueQuantity"]["code"] == "[degF]"
    assert found["150344"]["code"]["coding"][0]["code"] == "8310-5"
    assert found["151708"]["valueQuantity"] == {
        "value": 4.1,
        "unit": "kPa",
        "system": "http://unitsofmeasure.org",
        "code": "kPa",
    }


@pytest.mark.parametrize("channel", ["monitor-oru", "monitor-ambulance-oru"])
def test_bedside_and_ambulance_channels_turn_pcd_01_into_vital_signs(channel: str) -> None:
    plugins = load_plugins()
    text = (ROOT / "channels" / f"{channel}.yaml").read_text(encoding="utf-8")
    compiled = compile_channel(
        load_channel_text(text, plugins, file=f"{channel}.yaml"),
        mappings_dir=ROOT / "mappings",
        plugins=plugins,
        default_charset="utf-8",
        default_tz=timezone(timedelta(hours=8)),
    )
    outcome = process(compiled, AMBULANCE.read_bytes(), "x-application/hl7-v2+er7", None)
    assert outcome.status != "error", outcome.error
    assert outcome.transformed is not None
    bundle = json.loads(outcome.transformed)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("Observation") == len(EXPECTED) and "Device" in kinds
