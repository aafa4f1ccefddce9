"""The machine reading: the Philips acute MI is called STEMI (inferior, reciprocal depression in
aVL), the LVH "ST elevation" look-alike and the normal tracings are not; V2-V3 cut-points follow
sex and age; LBBB and paced rhythm switch to the Sgarbossa rule; the thresholds are the YAML's."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from devices.ecg import ImplausibleEcgError, analyze, read_ecg
from devices.ecg.checks import plausible_twelve_leads
from devices.ecg.criteria import CRITERIA_FILE, load_criteria
from devices.ecg.measure import LeadMeasures, Measurements
from devices.ecg.mi_model import FEATURES, load_model
from devices.ecg.model import STANDARD_LEADS, Patient
from devices.ecg.signal import ANALYSIS_HZ, detect_beats, prepare
from devices.ecg.stemi import confounders, decide
from engine.errors import ConfigError
from engine.settings import content_root


def test_philips_acute_inferior_mi_is_called_stemi(sierra: Path) -> None:
    reading = analyze(read_ecg(sierra / "129DYPRG.XML"))
    assert reading.stemi
    assert reading.territory == ("inferior",)
    elevated = {lead for c in reading.criteria if c.rule == "st_elevation" for lead in c.leads}
    assert elevated == {"II", "III", "aVF"}
    reciprocal = [c for c in reading.criteria if c.rule == "reciprocal_depression"]
    assert reciprocal and "aVL" in reciprocal[0].leads
    assert reading.st_mv["III"]["j"] >= 0.2


def test_lvh_st_elevation_lookalike_is_not_stemi(sierra: Path) -> None:
    reading = analyze(read_ecg(sierra / "3191723_ZZDEMOPTONLY_1-04_orig.xml"))
    assert not reading.stemi
    assert "lvh" in reading.flags
    assert reading.st_mv["V3"]["j60"] > 0.1  # the elevation is there; the rules explain it


@pytest.mark.parametrize("name", ["2020-5-18_15-48-11.xml", "ad4d3d80-d165_1-04_orig.xml"])
def test_normal_philips_tracings_are_not_stemi(sierra: Path, name: str) -> None:
    reading = analyze(read_ecg(sierra / name))
    assert not reading.stemi
    assert reading.criteria == ()


def _records(ecg_data: Path, label: str, count: int) -> list[Path]:
    text = (ecg_data / "ptbxl" / "labels.csv").read_text(encoding="utf-8")
    rows = [r for r in csv.DictReader(text.splitlines()) if r["label"] == label]
    return [ecg_data / "ptbxl" / r["record"] for r in rows[:count]]


def test_normal_ptbxl_tracings_are_mostly_not_stemi(ecg_data: Path) -> None:
    normals = _records(ecg_data, "NORM", 40)
    called = [r.name for r in normals if analyze(read_ecg(r)).stemi]
    assert len(called) <= 2, called  # commercial algorithms: 94-99 % specificity


def test_mi_probability_separates_labelled_mi_from_normal(ecg_data: Path) -> None:
    mean = {}
    for label in ("MI", "NORM"):
        probabilities = [analyze(read_ecg(r)).mi_probability for r in _records(ecg_data, label, 15)]
        assert all(0.0 <= p <= 1.0 for p in probabilities)
        mean[label] = sum(probabilities) / len(probabilities)
    assert mean["MI"] > 2 * mean["NORM"]


def test_the_shipped_model_matches_the_features_the_code_computes() -> None:
    model = load_model()
    assert model.features == FEATURES
    assert 0.0 < model.threshold < 1.0
    assert model.about["records"] == 250


# --- the rules, on measurements built by hand ----------------------------------------------------


def _lead(**values: float) -> LeadMeasures:
    base = dict(q_mv=0.0, q_ms=0.0, r_mv=0.8, s_mv=-0.2, qrs_area=20.0, st_j_mv=0.0,
                st_j60_mv=0.0, st_slope=0.0, t_mv=0.3)  # fmt: skip
    return LeadMeasures(**{**base, **values})


def _measurements(qrs_ms: float = 90.0, **leads: LeadMeasures) -> Measurements:
    return Measurements(
        qrs_onset_ms=250.0,
        qrs_ms=qrs_ms,
        heart_rate=70.0,
        rr_irregularity=0.02,
        leads={name: leads.get(name, _lead()) for name in STANDARD_LEADS},
    )


@pytest.mark.parametrize(
    ("sex", "age", "cut"),
    [("female", 30, 0.15), ("male", 45, 0.2), ("male", 35, 0.25), (None, None, 0.2)],
)
def test_v2_v3_cut_points_follow_sex_and_age(sex: str | None, age: int | None, cut: float) -> None:
    criteria = load_criteria()
    assert criteria.elevation_mv("V2", sex, age) == cut
    assert criteria.elevation_mv("V5", sex, age) == 0.1
    patient = Patient(sex=sex, age_years=age)  # type: ignore[arg-type]
    just_below = _measurements(V2=_lead(st_j_mv=cut - 0.01), V3=_lead(st_j_mv=cut - 0.01))
    just_above = _measurements(V2=_lead(st_j_mv=cut), V3=_lead(st_j_mv=cut))
    assert not decide(just_below, patient, criteria, []).stemi
    decision = decide(just_above, patient, criteria, [])
    assert decision.stemi and decision.territory == ("anterior",)


def test_elevation_in_one_lead_or_in_non_contiguous_leads_is_not_stemi() -> None:
    criteria = load_criteria()
    m = _measurements(III=_lead(st_j_mv=0.3), V5=_lead(st_j_mv=0.3))
    assert not decide(m, Patient(), criteria, []).stemi


def test_lbbb_switches_to_sgarbossa() -> None:
    criteria = load_criteria()
    lbbb_v1 = _lead(r_mv=0.1, s_mv=-1.5, qrs_area=-60.0)
    discordant = _measurements(
        qrs_ms=140.0,
        V1=replace(lbbb_v1, st_j_mv=0.2),  # 0.2 / 1.5 = 13 %: proportionate, not STEMI
        V2=replace(lbbb_v1, st_j_mv=0.2),
    )
    flags = confounders(discordant, Patient(), criteria, paced=False)
    assert "lbbb" in flags
    assert not decide(discordant, Patient(), criteria, flags).stemi
    excessive = _measurements(qrs_ms=140.0, V1=lbbb_v1, V2=replace(lbbb_v1, st_j_mv=0.5))
    decision = decide(excessive, Patient(), criteria, flags)
    assert decision.stemi
    assert [c.rule for c in decision.criteria] == ["sgarbossa_discordant_ratio"]


def test_paced_rhythm_uses_sgarbossa_too() -> None:
    criteria = load_criteria()
    m = _measurements(II=_lead(st_j_mv=0.15), aVF=_lead(st_j_mv=0.15))
    flags = confounders(m, Patient(), criteria, paced=True)
    assert flags[0] == "paced"
    rules = {c.rule for c in decide(m, Patient(), criteria, flags).criteria}
    assert rules == {"sgarbossa_concordant_elevation"}


def test_lvh_with_strain_is_flagged() -> None:
    criteria = load_criteria()
    m = _measurements(
        V1=_lead(r_mv=0.1, s_mv=-2.5, qrs_area=-50.0),
        V5=_lead(r_mv=2.0, st_j60_mv=-0.1, t_mv=-0.3),
    )
    assert confounders(m, Patient(), criteria, paced=False) == ["lvh", "lvh_strain"]


def test_a_wrong_threshold_in_the_criteria_file_names_file_line_and_key(tmp_path: Path) -> None:
    text = (content_root() / CRITERIA_FILE).read_text(encoding="utf-8")
    broken = tmp_path / "stemi.yaml"
    broken.write_text(text.replace("default_mv: 0.1", "default_mv: -0.1"), encoding="utf-8")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "default_mv" in s)
    with pytest.raises(ConfigError) as caught:
        load_criteria(broken)
    assert f"stemi.yaml:{line} st_elevation.default_mv" in str(caught.value)


def test_pacing_spikes_before_each_qrs_flag_a_paced_rhythm(sierra: Path) -> None:
    """A real 500 Hz tracing with a 2 ms, 4 mV pacing artefact put 80 ms before every QRS."""
    ecg = read_ecg(sierra / "ad4d3d80-d165_1-04_orig.xml")
    assert "paced" not in analyze(ecg).flags
    beats = detect_beats(prepare(plausible_twelve_leads(ecg)), file=ecg.source)
    leads = {name: signal.copy() for name, signal in ecg.leads.items()}
    for peak in beats.peaks:
        at = int(peak / ANALYSIS_HZ * ecg.sampling_rate_hz) - 40
        for signal in leads.values():
            signal[at] += 4000.0
    paced = analyze(replace(ecg, leads=leads))
    assert "paced" in paced.flags


def test_recordings_longer_than_five_minutes_are_refused(ptbxl_record: Path) -> None:
    ecg = read_ecg(ptbxl_record)
    day = replace(ecg, leads={n: np.tile(s, 31) for n, s in ecg.leads.items()})
    with pytest.raises(ImplausibleEcgError, match="310 s recorded"):
        analyze(day)
