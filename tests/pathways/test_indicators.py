"""Per-case indicator results against the shipped definitions: rules R1-R5 of time-nodes.md,
populations, rates, and the interval Observations of interfaces.md §5."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from fhir_store import output_issues
from pathways.indicator_definitions import Catalogue, IndicatorDefinition, load_catalogue
from pathways.indicators import (
    evaluate_case,
    evaluate_indicator,
    interval_observations,
    order_problems,
)
from pathways.months import month_bucket
from pathways.vocabulary import (
    CASE_EXTENSION,
    INDICATOR_STATUS_SYSTEM,
    INDICATOR_SYSTEM,
)
from tests.pathways.cases import T0, case, stemi_pci

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(ROOT / "config" / "pathways")


def definition(catalogue: Catalogue, standard: str, indicator: str) -> IndicatorDefinition:
    center = {"cpc": "chest_pain", "singledisease": "chest_pain", "stroke": "stroke"}.get(
        indicator.split(".")[0], "trauma"
    )
    return catalogue.standard(center, standard).indicator(indicator)  # type: ignore[arg-type]


# --- R1: door by arrival mode; in-hospital onset has no door ------------------------------------


@pytest.mark.parametrize("mode", ["ems", "transfer", "self"])
def test_door_to_wire_counts_from_the_door_whatever_the_arrival_mode(
    catalogue: Catalogue, mode: str
) -> None:
    d2w = definition(catalogue, "cpc-recert", "cpc.d2w")
    result = evaluate_indicator(stemi_pci(d2w_seconds=4000, arrival=mode), d2w)
    assert (result.status, result.seconds, result.met) == ("ok", 4000, True)
    assert result.start is not None and result.start.key == "door"


def test_in_hospital_onset_excludes_door_intervals_but_fmc_intervals_are_computed(
    catalogue: Catalogue,
) -> None:
    ward = case(
        arrival="in_hospital",
        facts={"diagnosis": "STEMI", "reperfusion": "primary_pci"},
        first_medical_contact=0,
        first_ecg=6,
        wire_crossing=70,
    )
    results = {
        r.indicator: r for r in evaluate_case(ward, catalogue.standard("chest_pain", "cpc-recert"))
    }
    assert results["cpc.d2w"].status == "excluded:in_hospital_onset"
    assert (results["cpc.fmc2ecg"].status, results["cpc.fmc2ecg"].seconds) == ("ok", 360)


def test_a_door_interval_is_excluded_for_in_hospital_onset_even_when_the_file_omits_it(
    catalogue: Catalogue,
) -> None:
    dtc = definition(catalogue, "nhc-neuro-qc-2020", "stroke.dtc_done30")
    d2physician = definition(catalogue, "local", "stroke.d2physician")
    assert "in_hospital_onset" in [e.name for e in dtc.exclusions]
    # stroke.prt names no door: no exclusion is implied
    prt = definition(catalogue, "local", "stroke.prt")
    assert [e.name for e in prt.exclusions] == []
    stroke_in_ward = case(
        center="stroke", arrival="in_hospital", facts={"diagnosis": "AIS"}, ed_physician=5
    )
    assert evaluate_indicator(stroke_in_ward, d2physician).status == "excluded:in_hospital_onset"


# --- R2: missing nodes ---------------------------------------------------------------------------


def test_a_missing_end_node_is_not_computable_and_named(catalogue: Catalogue) -> None:
    d2w = definition(catalogue, "cpc-recert", "cpc.d2w")
    no_wire = case(facts={"diagnosis": "STEMI", "reperfusion": "primary_pci"}, door=0)
    result = evaluate_indicator(no_wire, d2w)
    assert (result.status, result.missing, result.seconds) == (
        "not_computable",
        ("wire_crossing",),
        None,
    )


def test_later_of_needs_both_nodes_and_takes_the_later(catalogue: Catalogue) -> None:
    d2lab = definition(catalogue, "local", "stroke.d2lab")
    both = case(
        center="stroke", facts={"diagnosis": "AIS"}, door=0, cbc_reported=30, coag_reported=41
    )
    only_cbc = case(center="stroke", facts={"diagnosis": "AIS"}, door=0, cbc_reported=30)
    result = evaluate_indicator(both, d2lab)
    assert (result.seconds, result.end.key if result.end else None) == (41 * 60, "coag_reported")
    missing = evaluate_indicator(only_cbc, d2lab)
    assert (missing.status, missing.missing) == ("not_computable", ("coag_reported",))


def test_earliest_of_takes_whichever_lysis_started_first(catalogue: Catalogue) -> None:
    fmc2n = definition(catalogue, "local", "cpc.fmc2n")
    lysed = {"diagnosis": "STEMI", "reperfusion": "prehospital_lysis"}
    prehospital = case(
        facts=lysed, first_medical_contact=0, prehospital_lytic_start=25, lytic_start=90
    )
    assert evaluate_indicator(prehospital, fmc2n).seconds == 25 * 60
    only_in_hospital = case(facts=lysed, first_medical_contact=0, lytic_start=40)
    result = evaluate_indicator(only_in_hospital, fmc2n)
    assert (result.seconds, result.met) == (40 * 60, False)


def test_a_population_that_needs_a_missing_node_is_not_computable(catalogue: Catalogue) -> None:
    dtc30 = definition(catalogue, "nhc-neuro-qc-2020", "stroke.dtc_done30")
    unknown_onset = case(center="stroke", facts={"diagnosis": "AIS"}, door=0, ct_end=20)
    result = evaluate_indicator(unknown_onset, dtc30)
    assert result.status == "not_computable"
    assert set(result.missing) == {"symptom_onset", "last_known_well"}
    lkw = case(center="stroke", facts={"diagnosis": "AIS"}, last_known_well=-600, door=0, ct_end=20)
    assert evaluate_indicator(lkw, dtc30).status == "ok"
    late = case(center="stroke", facts={"diagnosis": "AIS"}, symptom_onset=-1500, door=0, ct_end=20)
    assert evaluate_indicator(late, dtc30).status == "not_in_population"  # onset > 24 h


# --- R3: negative and implausible ----------------------------------------------------------------


def test_a_negative_interval_is_invalid_with_both_instants(catalogue: Catalogue) -> None:
    d2w = definition(catalogue, "cpc-recert", "cpc.d2w")
    result = evaluate_indicator(stemi_pci(d2w_seconds=-120), d2w)
    assert (result.status, result.seconds, result.met) == ("invalid", -120, None)
    assert result.start is not None and result.end is not None
    assert (result.start.instant, result.end.instant) == (T0, T0 - timedelta(seconds=120))
    assert "120 s before door" in result.problem


@pytest.mark.parametrize(
    ("seconds", "status"),
    [(1440 * 60, "ok"), (1440 * 60 + 1, "invalid"), (0, "ok")],
)
def test_the_plausible_maximum_is_inclusive_to_the_second(
    catalogue: Catalogue, seconds: int, status: str
) -> None:
    d2w = definition(catalogue, "cpc-recert", "cpc.d2w")
    assert evaluate_indicator(stemi_pci(d2w_seconds=seconds), d2w).status == status


def test_an_implausibly_short_troponin_turnaround_is_invalid(catalogue: Catalogue) -> None:
    tat = definition(catalogue, "cpc-recert", "cpc.trop_tat")
    quick = case(seconds={"troponin_draw": 0, "troponin_report": 119})
    result = evaluate_indicator(quick, tat)
    assert result.status == "invalid" and "plausible minimum of 120 s" in result.problem
    assert evaluate_indicator(case(seconds={"troponin_draw": 0, "troponin_report": 120}), tat).met


# --- R4: seconds at the boundary, ≤ versus < ----------------------------------------------------


@pytest.mark.parametrize(("seconds", "met"), [(5399, True), (5400, True), (5401, False)])
def test_d2w_at_exactly_90_minutes_meets_the_limit_and_one_second_more_does_not(
    catalogue: Catalogue, seconds: int, met: bool
) -> None:
    d2w = definition(catalogue, "cpc-recert", "cpc.d2w")
    result = evaluate_indicator(stemi_pci(d2w_seconds=seconds), d2w)
    assert (result.status, result.seconds, result.met) == ("ok", seconds, met)


@pytest.mark.parametrize(("seconds", "met"), [(1799, True), (1800, False)])
def test_a_strict_limit_is_missed_at_exactly_the_threshold(
    catalogue: Catalogue, seconds: int, met: bool
) -> None:
    activation = definition(catalogue, "cpc-recert", "cpc.cath_activation")  # < 30 min
    pci = case(
        facts={"diagnosis": "STEMI", "reperfusion": "primary_pci"},
        seconds={"cath_lab_activation_start": 0, "cath_lab_activated": seconds},
    )
    assert evaluate_indicator(pci, activation).met is met


def test_seconds_are_computed_across_offsets_and_not_rounded(catalogue: Catalogue) -> None:
    d2w = definition(catalogue, "cpc-recert", "cpc.d2w")
    door = datetime(2026, 3, 1, 10, 0, 0, tzinfo=timezone(timedelta(hours=8)))
    wire = datetime(2026, 3, 1, 3, 30, 59, tzinfo=UTC)  # 11:30:59 +08:00
    timeline = case(facts={"diagnosis": "STEMI", "reperfusion": "primary_pci"})
    timeline = type(timeline)(
        **{**_fields(timeline), "nodes": {"door": door, "wire_crossing": wire}}
    )
    result = evaluate_indicator(timeline, d2w)
    assert (result.seconds, result.met) == (5459, False)


def _fields(timeline: object) -> dict[str, object]:
    return {name: getattr(timeline, name) for name in timeline.__slots__}  # type: ignore[attr-defined]


# --- R5: named exclusions, populations -----------------------------------------------------------


def test_give_up_treatment_is_excluded_with_its_reason(catalogue: Catalogue) -> None:
    d2w = definition(catalogue, "cpc-recert", "cpc.d2w")
    declined = stemi_pci(d2w_seconds=9000, facts={"give_up_treatment": True})
    assert evaluate_indicator(declined, d2w).status == "excluded:give_up_treatment"
    assert evaluate_indicator(stemi_pci(facts={"give_up_treatment": False}), d2w).status == "ok"


def test_an_approximate_onset_excludes_onset_intervals(catalogue: Catalogue) -> None:
    s2fmc = definition(catalogue, "local", "cpc.s2fmc")
    rough = case(
        facts={"diagnosis": "STEMI", "onset_approximate": True},
        symptom_onset=-120,
        first_medical_contact=0,
    )
    assert evaluate_indicator(rough, s2fmc).status == "excluded:onset_approximate"


def test_a_case_outside_the_population_is_not_in_it(catalogue: Catalogue) -> None:
    d2w = definition(catalogue, "cpc-recert", "cpc.d2w")
    nstemi = case(
        facts={"diagnosis": "NSTEMI", "reperfusion": "primary_pci"}, door=0, wire_crossing=50
    )
    lysed = case(facts={"diagnosis": "STEMI", "reperfusion": "in_hospital_lysis"}, door=0)
    assert evaluate_indicator(nstemi, d2w).status == "not_in_population"
    assert evaluate_indicator(lysed, d2w).status == "not_in_population"


def test_severe_trauma_is_iss_16_or_ais_3(catalogue: Catalogue) -> None:
    prep = definition(catalogue, "local", "trauma.ed_prep")

    def trauma(facts: dict[str, int]) -> str:
        hurt = case(center="trauma", facts=facts, ed_arrival=0, team_reception=4)
        return evaluate_indicator(hurt, prep).status

    assert trauma({"iss": 16}) == "ok"
    assert trauma({"iss": 15, "max_ais": 3}) == "ok"
    assert trauma({"iss": 15, "max_ais": 2}) == "not_in_population"
    assert trauma({}) == "not_in_population"


def test_the_per_case_limit_follows_the_risk_stratum(catalogue: Catalogue) -> None:
    timing = definition(catalogue, "local", "cpc.nste_invasive_timing")

    def met(stratum: str, hours: float) -> bool | None:
        nste = case(
            facts={"diagnosis": "NSTEMI", "nste_risk_stratum": stratum},
            risk_restratification=0,
            invasive_procedure=hours * 60,
        )
        return evaluate_indicator(nste, timing).met

    assert (met("very_high", 1.9), met("very_high", 2)) == (True, False)
    assert (met("high", 23), met("high", 25)) == (True, False)
    assert met("intermediate", 71) is True


# --- rate indicators -----------------------------------------------------------------------------


def test_a_rate_indicator_puts_a_case_in_the_numerator_or_only_the_denominator(
    catalogue: Catalogue,
) -> None:
    remote = definition(catalogue, "cpc-recert", "cpc.remote_ecg_rate")
    stemi = {"diagnosis": "STEMI", "remote_ecg_transmitted": True}
    sent = case(facts=stemi, remote_ecg_received=-10)
    not_recorded = case(facts=stemi)  # transmitted but not recorded on the platform
    walked_in = case(arrival="self", facts=stemi, remote_ecg_received=-10)
    assert (evaluate_indicator(sent, remote).status, evaluate_indicator(sent, remote).met) == (
        "ok",
        True,
    )
    assert evaluate_indicator(not_recorded, remote).met is False
    assert evaluate_indicator(walked_in, remote).status == "not_in_population"
    assert evaluate_indicator(sent, remote).as_dict()["in_numerator"] is True


def test_angiography_within_24_hours_of_lysis(catalogue: Catalogue) -> None:
    angio = definition(catalogue, "local", "cpc.lysis_angio24_rate")
    lysed = {"reperfusion": "in_hospital_lysis"}
    assert evaluate_indicator(
        case(facts=lysed, lytic_start=0, post_lytic_angiography=1440), angio
    ).met
    assert not evaluate_indicator(
        case(facts=lysed, lytic_start=0, post_lytic_angiography=1441), angio
    ).met
    assert not evaluate_indicator(case(facts=lysed, lytic_start=0), angio).met


# --- R11: order sanity --------------------------------------------------------------------------


def test_nodes_out_of_order_are_reported_without_invalidating_other_intervals(
    catalogue: Catalogue,
) -> None:
    chains = catalogue.node_order["chest_pain"]
    # the ECG was signed before it was taken; the door comes before the FMC (typed wrongly)
    muddled = stemi_pci(first_ecg=-20, ecg_diagnosis=-25)
    muddled = type(muddled)(**{**_fields(muddled), "nodes": {**muddled.nodes,
                               "first_medical_contact": T0 + timedelta(minutes=3)}})  # fmt: skip
    pairs = {(a.key, b.key) for a, b in order_problems(muddled, chains)}
    assert pairs == {
        ("first_medical_contact", "door"),
        ("first_medical_contact", "first_ecg"),
        ("first_medical_contact", "ecg_diagnosis"),
        ("first_ecg", "ecg_diagnosis"),
    }
    d2w = definition(catalogue, "cpc-recert", "cpc.d2w")
    assert evaluate_indicator(muddled, d2w).status == "ok"  # R11 does not invalidate D2W
    # a prehospital ECG before the door is in order (R7)
    assert order_problems(stemi_pci(first_ecg=-10), chains) == []


# --- R10: the month bucket ----------------------------------------------------------------------


def test_the_month_is_the_door_month_in_shanghai_across_a_utc_month_boundary() -> None:
    utc = UTC
    door = datetime(2026, 1, 31, 16, 30, tzinfo=utc)  # 2026-02-01 00:30 in Shanghai
    fmc = datetime(2026, 1, 31, 15, 50, tzinfo=utc)  # 2026-01-31 23:50 in Shanghai
    with_door = case(at=door, door=0, seconds={"first_medical_contact": -2400})
    assert with_door.nodes["first_medical_contact"] == fmc
    assert month_bucket(with_door) == "2026-02"
    assert month_bucket(case(at=fmc, arrival="in_hospital", first_medical_contact=0)) == "2026-01"
    assert month_bucket(case(first_ecg=0)) is None


# --- interval Observations -----------------------------------------------------------------------


def test_interval_observations_are_valid_fhir_with_seconds_and_status(catalogue: Catalogue) -> None:
    standard = catalogue.standard("chest_pain", "cpc-recert")
    timeline = stemi_pci(d2w_seconds=5401)
    results = evaluate_case(timeline, standard)
    observations = interval_observations(
        timeline, results, {"door": "Observation/c1-door", "wire_crossing": "Observation/c1-wire"}
    )
    by_code = {o["code"]["coding"][0]["code"]: o for o in observations}
    d2w = by_code["cpc.d2w"]
    assert d2w["code"]["coding"][0]["system"] == INDICATOR_SYSTEM
    assert d2w["valueQuantity"] == {
        "value": 5401,
        "unit": "s",
        "system": "http://unitsofmeasure.org",
        "code": "s",
    }
    assert d2w["interpretation"][0]["coding"][0] == {
        "system": INDICATOR_STATUS_SYSTEM,
        "code": "ok",
    }
    assert d2w["extension"] == [
        {"url": CASE_EXTENSION, "valueReference": {"reference": "EpisodeOfCare/c1"}}
    ]
    assert [r["reference"] for r in d2w["derivedFrom"]] == [
        "Observation/c1-door",
        "Observation/c1-wire",
    ]
    # the ECG interval is missing its nodes: no value, the status says why
    ecg = by_code["cpc.fmc2ecg"]
    assert "valueQuantity" not in ecg
    assert ecg["interpretation"][0]["coding"][0]["code"] == "not_computable"
    assert "cpc.remote_ecg_rate" not in by_code  # rates are no intervals
    for observation in observations:
        assert output_issues(observation) == [], observation
    negative = interval_observations(
        stemi_pci(d2w_seconds=-5), evaluate_case(stemi_pci(d2w_seconds=-5), standard)
    )
    invalid = next(o for o in negative if o["code"]["coding"][0]["code"] == "cpc.d2w")
    assert invalid["valueQuantity"]["value"] == -5 and output_issues(invalid) == []
