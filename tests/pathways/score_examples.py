"""The worked example of every score in shared/domain/scores.md: input and documented total.

Copied from scores.md as written there, so that a change to a table that breaks an example
fails every test that uses them (unit, contract, CLI and API).
"""

from __future__ import annotations

from typing import Any

__all__ = ["WORKED_EXAMPLES"]

# name -> (input, total, band or None)
WORKED_EXAMPLES: dict[str, tuple[dict[str, Any], int | float, str | None]] = {
    "GCS": ({"eye": 2, "verbal": 2, "motor": 4}, 8, "severe"),
    "NIHSS": (
        {
            "1a": 0,
            "1b": 1,
            "1c": 0,
            "2": 1,
            "3": 2,
            "4": 2,
            "5a": 0,
            "5b": 3,
            "6a": 0,
            "6b": 2,
            "7": 0,
            "8": 1,
            "9": 2,
            "10": 1,
            "11": 0,
        },
        15,
        "moderate",
    ),
    "FAST-ED": (
        {
            "facial_palsy": 0,
            "arm_weakness": 1,
            "speech_changes": 1,
            "eye_deviation": 1,
            "denial_neglect": 0,
        },
        3,
        "lvo_unlikely",
    ),
    "ASPECTS": ({"affected_regions": ["I", "M2"]}, 8, None),
    "mRS": ({"timepoint": "discharge", "mrs": 3}, 3, None),
    "Killip": (
        {"cardiogenic_shock": False, "acute_pulmonary_edema": True, "rales_s3_or_raised_jvp": True},
        3,
        None,
    ),
    "GRACE": (
        {
            "age": 65,
            "heart_rate": 95,
            "sbp": 125,
            "creatinine_umol_l": 115,
            "killip": 2,
            "cardiac_arrest": False,
            "st_deviation": True,
            "elevated_enzymes": True,
        },
        179,
        "high",
    ),
    "TIMI-UA": (
        {
            "age": 55,
            "risk_factors": ["hypertension", "diabetes"],
            "known_cad": False,
            "aspirin_last_7d": False,
            "angina_episodes_24h": 1,
            "st_deviation": True,
            "elevated_marker": True,
        },
        2,
        None,
    ),
    "TIMI-STEMI": (
        {
            "age": 70,
            "history_dm_htn_angina": True,
            "sbp": 130,
            "heart_rate": 80,
            "killip": 1,
            "weight_kg": 70,
            "anterior_ste_or_lbbb": True,
            "time_to_treatment_h": 2,
        },
        4,
        None,
    ),
    "HEART": (
        {
            "history": 1,
            "ecg": 1,
            "age": 58,
            "risk_factors": ["hypertension", "smoking"],
            "atherosclerotic_disease": False,
            "troponin_ratio": 0.5,
        },
        4,
        "moderate",
    ),
    "ISS": (
        {
            "ais": [
                {"region": "head_neck", "severity": 3},
                {"region": "chest", "severity": 4},
                {"region": "abdomen", "severity": 2},
                {"region": "abdomen", "severity": 5},
                {"region": "extremities", "severity": 3},
            ]
        },
        50,
        "severe",
    ),
    "NISS": (
        {
            "ais": [
                {"region": "abdomen", "severity": 4},
                {"region": "abdomen", "severity": 4},
                {"region": "abdomen", "severity": 3},
                {"region": "chest", "severity": 2},
            ]
        },
        41,
        "severe",
    ),
    "RTS": ({"gcs": 8, "sbp": 80, "rr": 32}, 4.9438, None),
    "T-RTS": ({"gcs": 8, "sbp": 80, "rr": 32}, 8, "trauma_center"),
    "TS": (
        {
            "rr": 30,
            "respiratory_expansion": "retractive_or_none",
            "sbp": 80,
            "capillary_refill": "delayed",
            "gcs": 9,
        },
        10,
        "trauma_center",
    ),
    "CRAMS": (
        {
            "capillary_refill": "delayed",
            "sbp": 90,
            "respiration": "abnormal",
            "abdomen_thorax": "tender",
            "motor": "pain_only",
            "speech": "confused",
        },
        5,
        "major",
    ),
    "PHI": (
        {
            "sbp": 80,
            "pulse": 130,
            "respiration": "labored_or_shallow",
            "consciousness": "confused_or_combative",
            "penetrating_chest_abdomen": True,
        },
        15,
        "major",
    ),
    "TI": (
        {
            "region": "chest",
            "injury_type": "blunt_or_gunshot",
            "circulation": "sbp_70_100",
            "respiration": "dyspnea",
            "consciousness": "confused",
        },
        20,
        "severe",
    ),
}
