"""Canonical URLs and codes of the FHIR content the pathways write and read.

One place for them, so that the pathway engine, the scores, the indicators, the archive and the
registry exporters agree on the shapes of interfaces.md §5 (center case = `EpisodeOfCare`, time
node = `Observation` of category `time-node`, score and interval `Observation`s). The code
systems themselves are published by the pathway engine at `/fhir/CodeSystem/<id>`.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "ARRIVAL_MODES",
    "ARRIVAL_MODE_EXTENSION",
    "ASSESSMENT_PHASE_EXTENSION",
    "BASE",
    "CAPTURE_RULE_EXTENSION",
    "CASE_EXTENSION",
    "CASE_FACT_EXTENSION",
    "CASE_LINK_EXTENSION",
    "CASE_SEARCH_PARAMETER",
    "CENTERS",
    "CENTER_LABELS",
    "CENTER_SYSTEM",
    "CENTER_TYPE_CODES",
    "CONFLICT_EXTENSION",
    "DATA_ABSENT_REASON",
    "DRUG_CLASS_SYSTEM",
    "HL7_OBSERVATION_CATEGORY",
    "INDICATOR_STATUS_SYSTEM",
    "INDICATOR_SYSTEM",
    "INTERVAL_CATEGORY",
    "LOINC",
    "OBSERVATION_CATEGORY_SYSTEM",
    "PRIORITY_EXTENSION",
    "PROVENANCE_ACTIVITY_SYSTEM",
    "SCORE_ANSWER_SYSTEM",
    "SCORE_BAND_SYSTEM",
    "SCORE_POINTS_EXTENSION",
    "SCORE_SYSTEM",
    "SCORE_VERSION_SYSTEM",
    "SOURCE_KIND_SYSTEM",
    "TIME_NODE_CATEGORY",
    "TIME_NODE_FLAG_SYSTEM",
    "TIME_NODE_SYSTEM",
    "UCUM",
    "ArrivalMode",
    "Center",
]

BASE: Final = "https://greenchannel.example.org/fhir"

# EpisodeOfCare.type: the center of the case.
CENTER_SYSTEM: Final = f"{BASE}/CodeSystem/center"
Center = Literal["chest_pain", "stroke", "trauma"]
CENTERS: Final[tuple[Center, ...]] = ("chest_pain", "stroke", "trauma")
CENTER_LABELS: Final[dict[Center, str]] = {
    "chest_pain": "胸痛中心",
    "stroke": "卒中中心",
    "trauma": "创伤中心",
}
# The codes in CENTER_SYSTEM (FHIR codes use hyphens; config and Python use the keys above).
CENTER_TYPE_CODES: Final[dict[Center, str]] = {
    "chest_pain": "chest-pain",
    "stroke": "stroke",
    "trauma": "trauma",
}

# MedicationAdministration.medicationCodeableConcept: the drug class the drug nodes match
# (aspirin_given: aspirin; p2y12_given: clopidogrel, ticagrelor; anticoagulant_given: ufh, lmwh,
# bivalirudin, fondaparinux; lytic_start: alteplase, tenecteplase, reteplase, urokinase; statin).
# The mappings write it from the code table mappings/hl7v2/tables/drug_class.csv.
DRUG_CLASS_SYSTEM: Final = f"{BASE}/CodeSystem/drug-class"

# time-nodes.md, "Arrival mode": EpisodeOfCare.extension[ARRIVAL_MODE_EXTENSION].valueCode.
ARRIVAL_MODE_EXTENSION: Final = f"{BASE}/StructureDefinition/arrival-mode"
ArrivalMode = Literal["ems", "transfer", "self", "in_hospital"]
ARRIVAL_MODES: Final[tuple[ArrivalMode, ...]] = ("ems", "transfer", "self", "in_hospital")

# A fact about the case that populations and exclusions of indicators test (diagnosis,
# reperfusion strategy, exclusion flags such as give_up_treatment, ISS): on the EpisodeOfCare,
# a complex extension with sub-extensions `name` (valueCode) and `value` (value[x]).
CASE_FACT_EXTENSION: Final = f"{BASE}/StructureDefinition/case-fact"
# On an Encounter.episodeOfCare reference the pathway engine added (mappings keep those).
CASE_LINK_EXTENSION: Final = f"{BASE}/StructureDefinition/case-link"

# On an Observation (time node, score, interval): valueReference to the EpisodeOfCare.
CASE_EXTENSION: Final = f"{BASE}/StructureDefinition/case"

# Observation.category of time nodes (and its system); the code is the node key.
OBSERVATION_CATEGORY_SYSTEM: Final = f"{BASE}/CodeSystem/observation-category"
TIME_NODE_CATEGORY: Final = "time-node"
TIME_NODE_SYSTEM: Final = f"{BASE}/CodeSystem/time-node"

# Observation.method of a time node candidate: where the instant came from (uwb, device,
# hl7v2, dispatch, fhir, manual, correction) or, on the authoritative node, the rule that chose.
SOURCE_KIND_SYSTEM: Final = f"{BASE}/CodeSystem/time-node-source"

# Observation.interpretation of an authoritative time node that needs review: `conflict`
# (candidates disagree by more than the tolerance, R6), `proxy` (the winner is a proxy source,
# e.g. HIS registration time for the door).
TIME_NODE_FLAG_SYSTEM: Final = f"{BASE}/CodeSystem/time-node-flag"
# On a candidate: the capture rule of the pathway file that produced it (valueString
# `<node>/<rule>`) and the priority it was given (valueInteger), so a resolution can be explained.
CAPTURE_RULE_EXTENSION: Final = f"{BASE}/StructureDefinition/capture-rule"
PRIORITY_EXTENSION: Final = f"{BASE}/StructureDefinition/source-priority"
# On an authoritative node in conflict: valueReference to each disagreeing candidate.
CONFLICT_EXTENSION: Final = f"{BASE}/StructureDefinition/conflicting-candidate"
# The custom search parameter `case` (Observation?case=EpisodeOfCare/1) over CASE_EXTENSION.
CASE_SEARCH_PARAMETER: Final = f"{BASE}/SearchParameter/observation-case"
# Provenance.activity of a node write: derive, manual-entry, correction.
PROVENANCE_ACTIVITY_SYSTEM: Final = f"{BASE}/CodeSystem/provenance-activity"

# Scores without a verified LOINC code (scores.md), and the assessment phase of a score.
# Components of such scores use `<score code>.<item>` (`grace-inhospital.age`) in SCORE_SYSTEM.
SCORE_SYSTEM: Final = f"{BASE}/CodeSystem/score"
ASSESSMENT_PHASE_EXTENSION: Final = f"{BASE}/StructureDefinition/assessment-phase"
# Observation.method of a score: the version id of its table (`gcs-1974`, `ts-1981-sbp90`).
SCORE_VERSION_SYSTEM: Final = f"{BASE}/CodeSystem/score-version"
# Observation.interpretation of a score: its band (`severe`, `trauma_center`).
SCORE_BAND_SYSTEM: Final = f"{BASE}/CodeSystem/score-band"
# A not-testable answer without a verified LOINC answer code (GCS verbal `T`, NIHSS `UN`).
SCORE_ANSWER_SYSTEM: Final = f"{BASE}/CodeSystem/score-answer"
# On a score component: the points its answer gave (valueInteger; valueDecimal for RTS).
SCORE_POINTS_EXTENSION: Final = f"{BASE}/StructureDefinition/score-item-points"

# Standard systems the pathways write.
LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
HL7_OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT_REASON: Final = "http://terminology.hl7.org/CodeSystem/data-absent-reason"

# Interval Observations: code = indicator id (cpc.d2w), interpretation = case status;
# category INTERVAL_CATEGORY in OBSERVATION_CATEGORY_SYSTEM, beside the time nodes'.
INTERVAL_CATEGORY: Final = "interval"
INDICATOR_SYSTEM: Final = f"{BASE}/CodeSystem/indicator"
INDICATOR_STATUS_SYSTEM: Final = f"{BASE}/CodeSystem/indicator-status"
