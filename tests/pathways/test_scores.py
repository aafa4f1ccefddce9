"""Every score of scores.md: its worked example and the edge cases scores.md names."""

from __future__ import annotations

from typing import Any

import pytest

from pathways.scores import ScoreInputError, compute, score_tables
from tests.pathways.score_examples import WORKED_EXAMPLES


def score(name: str, **changes: Any) -> dict[str, Any]:
    """The result for the worked example of `name` with some items changed."""
    data = dict(WORKED_EXAMPLES[name][0])
    data.update(changes)
    return compute(name, data)


def total(name: str, **changes: Any) -> Any:
    return score(name, **changes)["total"]


def rejected(name: str, **changes: Any) -> ScoreInputError:
    data = dict(WORKED_EXAMPLES[name][0])
    data.update(changes)
    with pytest.raises(ScoreInputError) as caught:
        compute(name, data)
    return caught.value


def injuries(*pairs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"region": region, "severity": severity} for region, severity in pairs]


# -- every score ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(WORKED_EXAMPLES))
def test_worked_example_gives_the_documented_total_and_band(name: str) -> None:
    data, expected_total, expected_band = WORKED_EXAMPLES[name]
    result = compute(name, data)
    assert result["total"] == expected_total
    assert result["band"] == expected_band
    table = score_tables()[name]
    assert result["score"] == name
    assert result["version"] == table.version
    assert isinstance(result["items"], dict) and result["items"]
    assert isinstance(result["flags"], list)


def test_every_score_of_scores_md_has_a_table_and_an_example() -> None:
    assert list(score_tables()) == list(WORKED_EXAMPLES)


@pytest.mark.parametrize("name", list(WORKED_EXAMPLES))
def test_the_input_is_not_changed(name: str) -> None:
    data = WORKED_EXAMPLES[name][0]
    before = repr(data)
    compute(name, data)
    assert repr(data) == before


# -- GCS -----------------------------------------------------------------------------------------


def test_gcs_verbal_not_testable_gives_no_total() -> None:
    result = score("GCS", verbal="T")
    assert result["total"] is None
    assert result["band"] is None
    assert result["flags"] == ["verbal_not_testable"]
    assert result["display"] == "E2VTM4"
    assert result["eye_motor_sum"] == 6
    assert result["items"]["verbal"] is None


def test_gcs_display_and_eye_motor_sum() -> None:
    result = compute("GCS", {"eye": 4, "verbal": 5, "motor": 6})
    assert (result["total"], result["band"], result["display"]) == (15, "mild", "E4V5M6")
    assert result["eye_motor_sum"] == 10


@pytest.mark.parametrize("item", ["eye", "motor"])
def test_gcs_not_testable_only_on_verbal(item: str) -> None:
    assert rejected("GCS", **{item: "T"}).item == item


def test_gcs_not_testable_is_case_sensitive() -> None:
    error = rejected("GCS", verbal="t")
    assert str(error) == 'verbal: "t" is not allowed; allowed: 1..5 or "T"'


def test_gcs_message_names_the_item_and_its_values() -> None:
    assert str(rejected("GCS", verbal=7)) == 'verbal: 7 is not allowed; allowed: 1..5 or "T"'


@pytest.mark.parametrize(
    ("eye", "verbal", "motor", "band"),
    [(1, 1, 1, "severe"), (2, 2, 4, "severe"), (2, 2, 5, "moderate"), (4, 4, 4, "moderate"),
     (4, 4, 5, "mild"), (4, 5, 6, "mild")],
)  # fmt: skip
def test_gcs_bands_are_inclusive_integer_bands(
    eye: int, verbal: int, motor: int, band: str
) -> None:
    assert compute("GCS", {"eye": eye, "verbal": verbal, "motor": motor})["band"] == band


# -- NIHSS ---------------------------------------------------------------------------------------

UN_ITEMS = ["5a", "5b", "6a", "6b", "7", "10"]


def test_nihss_un_adds_nothing_and_is_listed() -> None:
    example = WORKED_EXAMPLES["NIHSS"][0]
    result = score("NIHSS", **{"5b": "UN", "10": "UN"})
    assert result["total"] == 15 - example["5b"] - example["10"]
    assert result["un_items"] == ["5b", "10"]
    assert "contains_un" in result["flags"]
    assert result["items"]["5b"] is None  # UN has no points; never a 0


def test_nihss_without_un_has_no_un_flag() -> None:
    result = score("NIHSS")
    assert result["un_items"] == [] and "contains_un" not in result["flags"]


@pytest.mark.parametrize("item", UN_ITEMS)
def test_nihss_un_is_allowed_on_limb_ataxia_and_dysarthria_items(item: str) -> None:
    assert score("NIHSS", **{item: "UN"})["un_items"] == [item]


@pytest.mark.parametrize("item", ["1a", "1b", "1c", "2", "3", "4", "8", "9", "11"])
def test_nihss_un_is_rejected_elsewhere(item: str) -> None:
    error = rejected("NIHSS", **{item: "UN"})
    assert error.item == item and "UN" not in str(error).split("allowed:")[1]


def test_nihss_un_is_case_sensitive() -> None:
    assert rejected("NIHSS", **{"7": "un"}).item == "7"


def test_nihss_coma_rule_mismatch_is_flagged_without_changing_the_total() -> None:
    comatose = {"1a": 3, "8": 1, "9": 3}
    result = score("NIHSS", **comatose)
    assert "coma_rule_mismatch" in result["flags"]
    assert result["total"] == sum(WORKED_EXAMPLES["NIHSS"][0].values()) + 3 - 0 + 0 + 1


def test_nihss_coma_rule_followed_has_no_flag() -> None:
    assert "coma_rule_mismatch" not in score("NIHSS", **{"1a": 3, "8": 2, "9": 3})["flags"]


def test_nihss_maximum_is_42() -> None:
    table = score_tables()["NIHSS"]
    highest = {key: int(spec.max or 0) for key, spec in table.items.items()}
    result = compute("NIHSS", highest)
    assert (result["total"], result["band"]) == (42, "severe")


@pytest.mark.parametrize(
    ("points", "band"),
    [(0, "none"), (1, "minor"), (4, "minor"), (5, "moderate"), (15, "moderate"),
     (16, "moderate_severe"), (20, "moderate_severe"), (21, "severe")],
)  # fmt: skip
def test_nihss_bands(points: int, band: str) -> None:
    data = dict.fromkeys(WORKED_EXAMPLES["NIHSS"][0], 0)
    for key, limit in (("5a", 4), ("5b", 4), ("6a", 4), ("6b", 4), ("1a", 3), ("3", 3), ("9", 3)):
        data[key] = min(limit, points - sum(data.values()))
    data["4"] = points - sum(data.values())
    result = compute("NIHSS", data)
    assert (result["total"], result["band"]) == (points, band)


# -- FAST-ED -------------------------------------------------------------------------------------


def test_fast_ed_lvo_likely_from_4() -> None:
    assert score("FAST-ED")["lvo_likely"] is False
    four = score("FAST-ED", arm_weakness=2)
    assert (four["total"], four["lvo_likely"]) == (4, True)


def test_fast_ed_facial_palsy_stops_at_1() -> None:
    assert str(rejected("FAST-ED", facial_palsy=2)) == (
        "facial_palsy: 2 is not allowed; allowed: 0..1"
    )


# -- ASPECTS -------------------------------------------------------------------------------------


def test_aspects_no_change_is_10_and_every_region_is_0() -> None:
    regions = ["C", "L", "IC", "I", "M1", "M2", "M3", "M4", "M5", "M6"]
    assert total("ASPECTS", affected_regions=[]) == 10
    assert total("ASPECTS", affected_regions=regions) == 0


def test_aspects_keeps_the_set_not_only_the_number() -> None:
    result = score("ASPECTS", affected_regions=["M2", "I"])
    assert result["affected_regions"] == ["I", "M2"]
    assert result["items"]["I"] == 0 and result["items"]["M1"] == 1


def test_aspects_duplicate_region_is_rejected() -> None:
    error = rejected("ASPECTS", affected_regions=["I", "M2", "I"])
    assert error.item == "affected_regions[2]" and "twice" in str(error)


@pytest.mark.parametrize("region", ["m1", "P1", "", 1])
def test_aspects_unknown_region_is_rejected(region: object) -> None:
    assert rejected("ASPECTS", affected_regions=[region]).item == "affected_regions[0]"


# -- mRS -----------------------------------------------------------------------------------------


def test_mrs_pre_stroke_cannot_be_dead() -> None:
    error = rejected("mRS", timepoint="pre_stroke", mrs=6)
    assert str(error) == 'mrs: 6 is not allowed when timepoint is "pre_stroke"; allowed: 0..5'
    assert total("mRS", timepoint="pre_stroke", mrs=5) == 5


@pytest.mark.parametrize("timepoint", ["discharge", "day_90"])
def test_mrs_after_the_stroke_can_be_6(timepoint: str) -> None:
    assert total("mRS", timepoint=timepoint, mrs=6) == 6


def test_mrs_unknown_timepoint_is_rejected() -> None:
    assert rejected("mRS", timepoint="90d").item == "timepoint"


# -- Killip --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shock", "edema", "rales", "expected"),
    [(False, False, False, 1), (False, False, True, 2), (False, True, False, 3),
     (True, False, False, 4), (True, True, True, 4)],
)  # fmt: skip
def test_killip_class_is_the_highest_finding(
    shock: bool, edema: bool, rales: bool, expected: int
) -> None:
    result = compute(
        "Killip",
        {"cardiogenic_shock": shock, "acute_pulmonary_edema": edema,
         "rales_s3_or_raised_jvp": rales},
    )  # fmt: skip
    assert result["total"] == expected
    assert result["class"] == ["I", "II", "III", "IV"][expected - 1]
    assert result["cpc_code"] == str(expected)


# -- GRACE ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("umol_l", "points"),
    [(70, 4), (71, 7), (70.72, 7), (70.71, 4), (35.36, 4), (35.35, 1), (106.08, 10),
     (141.44, 13), (176.8, 21), (353.6, 28), (353.59, 21), (115, 10)],
)  # fmt: skip
def test_grace_creatinine_bands_on_the_unrounded_mg_dl(umol_l: float, points: int) -> None:
    assert score("GRACE", creatinine_umol_l=umol_l)["items"]["creatinine_umol_l"] == points


def test_grace_creatinine_in_mg_dl_for_display() -> None:
    assert score("GRACE", creatinine_umol_l=70)["creatinine_mg_dl"] == 0.792
    assert score("GRACE", creatinine_umol_l=71)["creatinine_mg_dl"] == 0.803


def test_grace_creatinine_below_20_umol_l_is_suspect_but_computed() -> None:
    result = score("GRACE", creatinine_umol_l=1.3)
    assert result["flags"] == ["creatinine_unit_suspect"]
    assert result["items"]["creatinine_umol_l"] == 1
    assert score("GRACE", creatinine_umol_l=20)["flags"] == []


@pytest.mark.parametrize(("age", "points"), [(29, 0), (30, 8), (89, 91), (90, 100), (92, 100)])
def test_grace_age_bands_include_nonagenarians(age: int, points: int) -> None:
    assert score("GRACE", age=age)["items"]["age"] == points


@pytest.mark.parametrize("creatinine", [0, 0.0, -1])
def test_grace_creatinine_must_be_positive(creatinine: float) -> None:
    assert rejected("GRACE", creatinine_umol_l=creatinine).item == "creatinine_umol_l"


@pytest.mark.parametrize(
    ("age", "heart_rate", "sbp", "creatinine", "expected", "band"),
    [(65, 95, 125, 30, 58 + 15 + 34 + 1, "low"),
     (75, 75, 150, 30, 75 + 9 + 24 + 1, "intermediate"),
     (75, 40, 70, 100, 75 + 0 + 58 + 7, "intermediate"),
     (85, 95, 125, 30, 91 + 15 + 34 + 1, "high")],
)  # fmt: skip
def test_grace_bands_at_108_109_140_141(
    age: int, heart_rate: int, sbp: int, creatinine: int, expected: int, band: str
) -> None:
    result = compute(
        "GRACE",
        {"age": age, "heart_rate": heart_rate, "sbp": sbp, "creatinine_umol_l": creatinine,
         "killip": 1, "cardiac_arrest": False, "st_deviation": False, "elevated_enzymes": False},
    )  # fmt: skip
    assert (result["total"], result["band"]) == (expected, band)
    assert expected in (108, 109, 140, 141)


def test_grace_maximum_is_372() -> None:
    worst = {"age": 95, "heart_rate": 210, "sbp": 60, "creatinine_umol_l": 400, "killip": 4,
             "cardiac_arrest": True, "st_deviation": True, "elevated_enzymes": True}  # fmt: skip
    assert compute("GRACE", worst)["total"] == 372


# -- TIMI-UA -------------------------------------------------------------------------------------


def test_timi_ua_two_risk_factors_score_nothing_three_score_one() -> None:
    two = score("TIMI-UA")
    assert two["items"]["risk_factors"] == 0 and two["risk_14d_percent"] == 8.3
    three = score("TIMI-UA", risk_factors=["hypertension", "diabetes", "current_smoker"])
    assert three["items"]["risk_factors"] == 1 and three["total"] == 3


@pytest.mark.parametrize(("age", "points"), [(64, 0), (65, 1)])
def test_timi_ua_age_65(age: int, points: int) -> None:
    assert score("TIMI-UA", age=age)["items"]["age"] == points


@pytest.mark.parametrize(("episodes", "points"), [(0, 0), (1, 0), (2, 1), (40, 1)])
def test_timi_ua_two_anginal_episodes(episodes: int, points: int) -> None:
    assert score("TIMI-UA", angina_episodes_24h=episodes)["items"]["angina_episodes_24h"] == points


def test_timi_ua_risk_by_total() -> None:
    nothing = {
        "age": 40,
        "risk_factors": [],
        "known_cad": False,
        "aspirin_last_7d": False,
        "angina_episodes_24h": 0,
        "st_deviation": False,
        "elevated_marker": False,
    }
    everything = {"age": 70, "risk_factors": ["hypertension", "diabetes", "family_history"],
                  "known_cad": True, "aspirin_last_7d": True, "angina_episodes_24h": 3,
                  "st_deviation": True, "elevated_marker": True}  # fmt: skip
    assert (
        compute("TIMI-UA", nothing)["total"],
        compute("TIMI-UA", nothing)["risk_14d_percent"],
    ) == (0, 4.7)
    assert compute("TIMI-UA", everything)["total"] == 7
    assert compute("TIMI-UA", everything)["risk_14d_percent"] == 40.9


def test_timi_ua_negative_angina_count_is_rejected() -> None:
    error = rejected("TIMI-UA", angina_episodes_24h=-1)
    assert str(error) == "angina_episodes_24h: -1 is not allowed; allowed: an integer >= 0"


# -- TIMI-STEMI ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "value", "points"),
    [("sbp", 100, 0), ("sbp", 99, 3), ("heart_rate", 100, 0), ("heart_rate", 101, 2),
     ("weight_kg", 67, 0), ("weight_kg", 66.9, 1), ("weight_kg", 67.0, 0),
     ("time_to_treatment_h", 4, 0), ("time_to_treatment_h", 4.0, 0),
     ("time_to_treatment_h", 4.01, 1), ("age", 64, 0), ("age", 65, 2), ("age", 74, 2),
     ("age", 75, 3), ("killip", 1, 0), ("killip", 2, 2), ("killip", 4, 2)],
)  # fmt: skip
def test_timi_stemi_boundaries(item: str, value: float, points: int) -> None:
    assert score("TIMI-STEMI", **{item: value})["items"][item] == points


def test_timi_stemi_mortality_above_8_and_maximum_14() -> None:
    worst = {"age": 80, "history_dm_htn_angina": True, "sbp": 90, "heart_rate": 120,
             "killip": 3, "weight_kg": 60, "anterior_ste_or_lbbb": True,
             "time_to_treatment_h": 5}  # fmt: skip
    result = compute("TIMI-STEMI", worst)
    assert (result["total"], result["mortality_30d_percent"]) == (14, 35.9)
    assert score("TIMI-STEMI")["mortality_30d_percent"] == 7.3


# -- HEART ---------------------------------------------------------------------------------------


def test_heart_atherosclerotic_disease_is_checked_before_the_risk_factor_count() -> None:
    result = score("HEART", risk_factors=["smoking"], atherosclerotic_disease=True)
    assert result["items"]["risk_factors"] == 2


@pytest.mark.parametrize(
    ("factors", "points"),
    [([], 0), (["smoking"], 1), (["smoking", "obesity"], 1),
     (["smoking", "obesity", "diabetes"], 2)],
)  # fmt: skip
def test_heart_risk_factor_count(factors: list[str], points: int) -> None:
    assert score("HEART", risk_factors=factors)["items"]["risk_factors"] == points


@pytest.mark.parametrize(("age", "points"), [(44, 0), (45, 1), (64, 1), (65, 2)])
def test_heart_age_65_scores_2(age: int, points: int) -> None:
    assert score("HEART", age=age)["items"]["age"] == points


@pytest.mark.parametrize(
    ("ratio", "points"),
    [(0, 0), (1, 0), (1.0, 0), (1.0001, 1), (3, 1), (3.0, 1), (3.0001, 2), (12.5, 2)],
)
def test_heart_troponin_ratio_bounds(ratio: float, points: int) -> None:
    assert score("HEART", troponin_ratio=ratio)["items"]["troponin_ratio"] == points


@pytest.mark.parametrize(
    ("history", "ecg", "band"), [(0, 1, "low"), (1, 1, "moderate"), (2, 2, "moderate")]
)
def test_heart_bands(history: int, ecg: int, band: str) -> None:
    # The example's other items give 2 (age 1, risk factors 1, troponin 0).
    assert score("HEART", history=history, ecg=ecg)["band"] == band


def test_heart_high_from_7() -> None:
    result = score("HEART", history=2, ecg=2, age=70, troponin_ratio=0.5)
    assert (result["total"], result["band"]) == (7, "high")


# -- ISS and NISS --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ISS", "NISS"])
def test_no_injury_is_0(name: str) -> None:
    result = compute(name, {"ais": []})
    assert (result["total"], result["ais6"]) == (0, False)


@pytest.mark.parametrize("name", ["ISS", "NISS"])
def test_any_ais_6_is_75(name: str) -> None:
    result = compute(name, {"ais": injuries(("face", 1), ("external", 6))})
    assert (result["total"], result["ais6"], result["band"]) == (75, True, "severe")


@pytest.mark.parametrize("name", ["ISS", "NISS"])
def test_ais_9_not_further_specified_is_rejected(name: str) -> None:
    error = rejected(name, ais=injuries(("chest", 3), ("face", 9)))
    assert error.item == "ais[1].severity"
    assert str(error) == "ais[1].severity: 9 is not allowed; allowed: 1..6"


def test_iss_counts_one_region_once() -> None:
    result = compute("ISS", {"ais": injuries(("abdomen", 4), ("abdomen", 4), ("abdomen", 3))})
    assert result["total"] == 16
    assert result["regions_used"] == [{"region": "abdomen", "severity": 4}]


def test_iss_ties_keep_the_region_order() -> None:
    result = compute(
        "ISS",
        {"ais": injuries(("external", 3), ("extremities", 3), ("chest", 3), ("face", 3))},
    )
    assert [used["region"] for used in result["regions_used"]] == ["face", "chest", "extremities"]
    assert result["total"] == 27


def test_iss_worked_example_regions_used() -> None:
    assert score("ISS")["regions_used"] == [
        {"region": "abdomen", "severity": 5},
        {"region": "chest", "severity": 4},
        {"region": "head_neck", "severity": 3},
    ]


@pytest.mark.parametrize(
    ("pairs", "band"),
    [((("chest", 3), ("face", 2), ("head_neck", 1)), "not_severe"), ((("chest", 4),), "severe")],
)
def test_iss_16_is_severe(pairs: tuple[tuple[str, int], ...], band: str) -> None:
    assert compute("ISS", {"ais": injuries(*pairs)})["band"] == band


def test_niss_takes_several_injuries_of_one_region() -> None:
    result = score("NISS")
    assert result["severities_used"] == [4, 4, 3]
    assert score("ISS", ais=WORKED_EXAMPLES["NISS"][0]["ais"])["total"] == 16 + 4


def test_iss_region_must_be_known() -> None:
    error = rejected("ISS", ais=[{"region": "neck", "severity": 2}])
    assert error.item == "ais[0].region"


def test_iss_injury_needs_exactly_region_and_severity() -> None:
    assert rejected("ISS", ais=[{"region": "face"}]).item == "ais[0].severity"
    extra = [{"region": "face", "severity": 1, "code": "AIS 251200.3"}]
    assert rejected("ISS", ais=extra).item == "ais[0].code"
    assert rejected("ISS", ais=["face"]).item == "ais[0]"


# -- RTS and T-RTS -------------------------------------------------------------------------------


def test_rts_worked_example_codes() -> None:
    result = score("RTS")
    assert result["coded"] == {"gcs": 2, "sbp": 3, "rr": 3}
    assert result["items"] == {"gcs": 1.8736, "sbp": 2.1978, "rr": 0.8724}


def test_rts_range() -> None:
    assert compute("RTS", {"gcs": 15, "sbp": 120, "rr": 16})["total"] == 7.8408
    assert compute("RTS", {"gcs": 3, "sbp": 0, "rr": 0})["total"] == 0


@pytest.mark.parametrize(
    ("item", "value", "code"),
    [("gcs", 3, 0), ("gcs", 4, 1), ("gcs", 5, 1), ("gcs", 6, 2), ("gcs", 12, 3), ("gcs", 13, 4),
     ("sbp", 0, 0), ("sbp", 1, 1), ("sbp", 49, 1), ("sbp", 50, 2), ("sbp", 75, 2),
     ("sbp", 76, 3), ("sbp", 89, 3), ("sbp", 90, 4), ("rr", 0, 0), ("rr", 5, 1), ("rr", 6, 2),
     ("rr", 9, 2), ("rr", 10, 4), ("rr", 29, 4), ("rr", 30, 3)],
)  # fmt: skip
def test_rts_coding_tables(item: str, value: int, code: int) -> None:
    assert score("RTS", **{item: value})["coded"][item] == code
    assert score("T-RTS", **{item: value})["items"][item] == code


def test_t_rts_trauma_center_at_11_or_less() -> None:
    assert score("T-RTS", gcs=13, sbp=120, rr=30)["band"] == "trauma_center"  # 4 + 4 + 3
    assert score("T-RTS", gcs=13, sbp=120, rr=16)["band"] == "no_trauma_center_criterion"


# -- TS ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "value", "points"),
    [("sbp", 90, 4), ("sbp", 89, 3), ("sbp", 70, 3), ("sbp", 69, 2), ("sbp", 0, 0),
     ("rr", 9, 1), ("rr", 10, 4), ("rr", 24, 4), ("rr", 25, 3), ("rr", 35, 3), ("rr", 36, 2),
     ("rr", 0, 0), ("gcs", 3, 1), ("gcs", 5, 2), ("gcs", 8, 3), ("gcs", 11, 4), ("gcs", 14, 5)],
)  # fmt: skip
def test_ts_tables_with_sbp_90_scoring_4(item: str, value: int, points: int) -> None:
    assert score("TS", **{item: value})["items"][item] == points


def test_ts_range_and_triage() -> None:
    best = {"rr": 16, "respiratory_expansion": "normal", "sbp": 120, "capillary_refill": "normal",
            "gcs": 15}  # fmt: skip
    assert (compute("TS", best)["total"], compute("TS", best)["band"]) == (
        16, "no_trauma_center_criterion"
    )  # fmt: skip
    assert compute("TS", dict(best, gcs=13, capillary_refill="delayed"))["total"] == 14
    twelve = dict(best, gcs=7, capillary_refill="delayed")  # 4 + 1 + 4 + 1 + 2
    assert (compute("TS", twelve)["total"], compute("TS", twelve)["band"]) == (12, "trauma_center")


# -- CRAMS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refill", "sbp", "circulation"),
    [("normal", 100, 2), ("normal", 99, 1), ("normal", 85, 1), ("normal", 84, 0),
     ("delayed", 120, 1), ("none", 120, 0), ("none", 84, 0)],
)  # fmt: skip
def test_crams_circulation_is_the_smaller(refill: str, sbp: int, circulation: int) -> None:
    result = score("CRAMS", capillary_refill=refill, sbp=sbp)
    assert result["items"]["circulation"] == circulation


def test_crams_major_up_to_8() -> None:
    normal = {"capillary_refill": "normal", "sbp": 120, "respiration": "normal",
              "abdomen_thorax": "non_tender", "motor": "normal", "speech": "normal"}  # fmt: skip
    assert compute("CRAMS", normal)["total"] == 10
    assert compute("CRAMS", dict(normal, speech="confused"))["band"] == "minor"
    assert compute("CRAMS", dict(normal, speech="confused", motor="pain_only"))["band"] == "major"


# -- PHI -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "value", "points"),
    [("sbp", 101, 0), ("sbp", 100, 1), ("sbp", 86, 1), ("sbp", 85, 2), ("sbp", 75, 2),
     ("sbp", 74, 5), ("sbp", 0, 5), ("pulse", 50, 5), ("pulse", 51, 0), ("pulse", 119, 0),
     ("pulse", 120, 3)],
)  # fmt: skip
def test_phi_tables(item: str, value: int, points: int) -> None:
    assert score("PHI", **{item: value})["items"][item] == points


def test_phi_major_from_4() -> None:
    calm = {"sbp": 120, "pulse": 80, "respiration": "normal", "consciousness": "normal",
            "penetrating_chest_abdomen": False}  # fmt: skip
    assert compute("PHI", dict(calm, sbp=80))["band"] == "minor"  # 2
    assert compute("PHI", dict(calm, penetrating_chest_abdomen=True))["band"] == "major"  # 4


# -- TI ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("circulation", "respiration", "consciousness", "expected", "band"),
    [("normal", "normal", "alert", 2, "mild"), ("sbp_50_69", "normal", "drowsy", 8, "mild"),
     ("sbp_50_69", "normal", "confused", 10, "moderate"),
     ("sbp_lt_50_or_no_pulse", "cyanosis", "semicoma", 18, "severe"),
     ("sbp_50_69", "cyanosis", "semicoma", 17, "severe"),
     ("sbp_50_69", "dyspnea", "semicoma", 15, "moderate")],
)  # fmt: skip
def test_ti_severe_from_17(
    circulation: str, respiration: str, consciousness: str, expected: int, band: str
) -> None:
    result = compute(
        "TI",
        {"region": "skin_extremities", "injury_type": "laceration", "circulation": circulation,
         "respiration": respiration, "consciousness": consciousness},
    )  # fmt: skip
    assert (result["total"], result["band"]) == (expected, band)
