"""`analyze(ecg) -> EcgReading`: the machine reading of one recording — heart rate, ST at J and
J+60 ms per lead, the STEMI decision with its criteria and territory, confounder flags and the
MI probability. The one function an ECG channel calls."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from devices.ecg.checks import plausible_twelve_leads
from devices.ecg.criteria import Criteria, load_criteria
from devices.ecg.measure import Measurements, measure
from devices.ecg.mi_model import MiModel, feature_vector, load_model
from devices.ecg.model import Ecg
from devices.ecg.pacing import paced_beats_share
from devices.ecg.signal import detect_beats, prepare
from devices.ecg.stemi import Criterion, confounders, decide

__all__ = ["EcgReading", "analyze", "measure_ecg"]

_PACED_SHARE = 0.5  # paced when at least half the beats follow a spike
_IRREGULAR = 0.15  # RR standard deviation over mean above this: irregular rhythm


@dataclass(frozen=True, slots=True)
class EcgReading:
    """The machine reading of one ECG; `as_json()` is what `greenchannel ecg analyze` prints."""

    source: str
    acquired_at: datetime | None
    stemi: bool
    criteria: tuple[Criterion, ...]
    st_mv: dict[str, dict[str, float]]  # lead -> {"j": ..., "j60": ...}
    territory: tuple[str, ...]
    mi_probability: float
    heart_rate: float
    qrs_ms: float
    flags: tuple[str, ...]
    criteria_version: str

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "acquired_at": self.acquired_at.isoformat() if self.acquired_at else None,
            "stemi": self.stemi,
            "criteria": [c.as_json() for c in self.criteria],
            "st_mv": self.st_mv,
            "territory": list(self.territory),
            "mi_probability": round(self.mi_probability, 3),
            "heart_rate": round(self.heart_rate),
            "qrs_ms": round(self.qrs_ms),
            "flags": list(self.flags),
            "criteria_version": self.criteria_version,
        }


def measure_ecg(ecg: Ecg) -> tuple[Ecg, Measurements, float]:
    """Check, filter, find beats and measure: the twelve-lead Ecg, its measurements, and the
    share of beats that follow a pacing spike. ImplausibleEcgError for unusable recordings."""
    twelve = plausible_twelve_leads(ecg)
    beats = detect_beats(prepare(twelve), file=twelve.source)
    spike = load_criteria().confounders.paced_spike_uv_per_ms
    return twelve, measure(beats), paced_beats_share(twelve, beats.peaks, spike)


def analyze(
    ecg: Ecg, *, criteria: Criteria | None = None, model: MiModel | None = None
) -> EcgReading:
    """Read one ECG as the machine would print it. Raises ImplausibleEcgError (an InputError)
    for recordings that are no usable 12-lead ECG."""
    rules = criteria if criteria is not None else load_criteria()
    weights = model if model is not None else load_model()
    twelve, m, paced_share = measure_ecg(ecg)
    paced = bool(twelve.paced) or paced_share >= _PACED_SHARE
    flags = confounders(m, twelve.patient, rules, paced)
    if m.rr_irregularity > _IRREGULAR:
        flags.append("irregular_rhythm")
    decision = decide(m, twelve.patient, rules, flags)
    return EcgReading(
        source=twelve.source,
        acquired_at=twelve.acquired_at,
        stemi=decision.stemi,
        criteria=decision.criteria,
        st_mv={
            name: {"j": round(lead.st_j_mv, 3), "j60": round(lead.st_j60_mv, 3)}
            for name, lead in m.leads.items()
        },
        territory=decision.territory,
        mi_probability=weights.probability(feature_vector(m)),
        heart_rate=m.heart_rate,
        qrs_ms=m.qrs_ms,
        flags=tuple(flags),
        criteria_version=rules.version,
    )
