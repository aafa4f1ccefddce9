"""One ECG recording, whatever the file format it came in: leads in µV, sampling rate,
acquisition time, device and patient identifiers. Every reader returns an `Ecg`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "LIMB_LEADS",
    "PRECORDIAL_LEADS",
    "STANDARD_LEADS",
    "Ecg",
    "Patient",
    "Sex",
    "Signal",
    "canonical_lead",
    "with_derived_limb_leads",
]

Signal = npt.NDArray[np.float64]
Sex = Literal["male", "female"]

LIMB_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF")
PRECORDIAL_LEADS = ("V1", "V2", "V3", "V4", "V5", "V6")
STANDARD_LEADS = LIMB_LEADS + PRECORDIAL_LEADS

_CANONICAL = {name.upper(): name for name in STANDARD_LEADS}


def canonical_lead(name: str) -> str:
    """`avr`, `AVR`, `MDC_ECG_LEAD_AVR`, `Lead aVR` -> `aVR`; other names keep their spelling."""
    text = name.strip()
    upper = text.upper().removeprefix("MDC_ECG_LEAD_").removeprefix("LEAD").strip(" _-")
    return _CANONICAL.get(upper, text)


@dataclass(frozen=True, slots=True)
class Patient:
    """Who the recording belongs to, as the device sent it. Never logged (masking repr)."""

    id: str | None = None
    sex: Sex | None = None
    age_years: int | None = None

    def __repr__(self) -> str:
        return f"Patient(id={'***' if self.id else None}, sex={self.sex}, age={self.age_years})"


@dataclass(frozen=True, slots=True)
class Ecg:
    """A recording: `leads` maps canonical lead names (`I` ... `V6`) to samples in µV, all of
    the same length, taken at `sampling_rate_hz`. `source` names the file, for errors."""

    leads: dict[str, Signal]
    sampling_rate_hz: float
    source: str
    acquired_at: datetime | None = None  # aware; None when the file does not say
    device: str | None = None
    patient: Patient = field(default_factory=Patient)
    # What the device itself printed (e.g. ">>> Acute MI <<<"); kept for comparison only.
    device_statements: tuple[str, ...] = ()
    paced: bool | None = None  # what the device says about pacing, if anything

    @property
    def samples(self) -> int:
        return len(next(iter(self.leads.values()))) if self.leads else 0

    @property
    def duration_s(self) -> float:
        return self.samples / self.sampling_rate_hz if self.sampling_rate_hz else 0.0

    def __repr__(self) -> str:
        return (
            f"Ecg({self.source}, leads={list(self.leads)}, {self.sampling_rate_hz:g} Hz, "
            f"{self.duration_s:.1f} s, patient={self.patient!r})"
        )


def with_derived_limb_leads(leads: dict[str, Signal]) -> dict[str, Signal]:
    """Add III, aVR, aVL and aVF from I and II (Einthoven and Goldberger) when a device sends
    only the eight independent leads (GE MUSE, many DICOM files). Sent leads are kept."""
    if "I" not in leads or "II" not in leads:
        return leads
    lead_i, lead_ii = leads["I"], leads["II"]
    derived = {
        "III": lead_ii - lead_i,
        "aVR": -(lead_i + lead_ii) / 2,
        "aVL": lead_i - lead_ii / 2,
        "aVF": lead_ii - lead_i / 2,
    }
    merged = dict(leads)
    for name, signal in derived.items():
        merged.setdefault(name, signal)
    return {name: merged[name] for name in _ordered(merged)}


def _ordered(leads: dict[str, Signal]) -> list[str]:
    standard = [name for name in STANDARD_LEADS if name in leads]
    return standard + [name for name in leads if name not in STANDARD_LEADS]
