"""GE MUSE XML (`RestingECG`): per lead a base64 block of little-endian int16 samples, with
`LeadAmplitudeUnitsPerBit` and `LeadAmplitudeUnits`; carts send I, II and V1–V6 and the limb
leads III, aVR, aVL, aVF are derived."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, tzinfo

import numpy as np
from lxml import etree

from devices.ecg.errors import ImplausibleEcgError, UnreadableEcgError
from devices.ecg.model import Ecg, Patient, Sex, Signal, canonical_lead, with_derived_limb_leads
from devices.ecg.readers.xmlsafe import aware, children, text_of

__all__ = ["read_muse"]

_TO_UV = {"MICROVOLTS": 1.0, "MILLIVOLTS": 1000.0, "UV": 1.0, "MV": 1000.0}


def read_muse(root: etree._Element, *, file: str, tz: tzinfo) -> Ecg:
    """The rhythm waveform of a parsed `RestingECG` document (not the median beats)."""
    waveforms = children(root, "Waveform")
    rhythm = next((w for w in waveforms if text_of(w, "WaveformType") == "Rhythm"), None)
    if rhythm is None:
        raise UnreadableEcgError("no <Waveform> of type Rhythm", file=file)
    try:
        base = float(text_of(rhythm, "SampleBase") or "nan")
        exponent = int(text_of(rhythm, "SampleExponent") or 0)
        rate = base * 10.0**exponent if abs(exponent) <= 6 else float("nan")
    except ValueError:
        rate = float("nan")
    if not np.isfinite(rate) or rate <= 0:
        raise UnreadableEcgError("<SampleBase> is missing or not a positive number", file=file)
    leads: dict[str, Signal] = {}
    for lead in children(rhythm, "LeadData"):
        name = canonical_lead(text_of(lead, "LeadID") or "")
        leads[name] = _samples(lead, name, file)
    if not leads:
        raise UnreadableEcgError("the rhythm waveform has no <LeadData>", file=file)
    return Ecg(
        leads=with_derived_limb_leads(leads),
        sampling_rate_hz=rate,
        source=file,
        acquired_at=_acquired(root, tz),
        device=text_of(root, "TestDemographics/AcquisitionDevice"),
        patient=_patient(root),
    )


def _samples(lead: etree._Element, name: str, file: str) -> Signal:
    units = (text_of(lead, "LeadAmplitudeUnits") or "MICROVOLTS").upper()
    if units not in _TO_UV:
        raise ImplausibleEcgError(f"lead {name} is in {units}, not a voltage", file=file)
    try:
        per_bit = float(text_of(lead, "LeadAmplitudeUnitsPerBit") or "nan")
    except ValueError:
        per_bit = float("nan")
    if not np.isfinite(per_bit) or per_bit <= 0:
        raise UnreadableEcgError(f"lead {name}: no positive LeadAmplitudeUnitsPerBit", file=file)
    try:
        raw = base64.b64decode(
            "".join((text_of(lead, "WaveFormData") or "").split()), validate=True
        )
    except (binascii.Error, ValueError):
        raise UnreadableEcgError(f"lead {name}: <WaveFormData> is not base64", file=file) from None
    count = text_of(lead, "LeadSampleCountTotal")
    values = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.float64)
    if count and count.isdigit() and len(values) < int(count):
        raise UnreadableEcgError(
            f"lead {name} has {len(values)} of {count} samples: truncated", file=file
        )
    if count and count.isdigit():
        values = values[: int(count)]
    return values * per_bit * _TO_UV[units]


def _acquired(root: etree._Element, tz: tzinfo) -> datetime | None:
    day = text_of(root, "TestDemographics/AcquisitionDate")
    time = text_of(root, "TestDemographics/AcquisitionTime")
    if not day or not time:
        return None
    try:
        return aware(datetime.strptime(f"{day} {time}", "%m-%d-%Y %H:%M:%S"), tz)  # noqa: DTZ007
    except ValueError:
        return None


def _patient(root: etree._Element) -> Patient:
    gender = (text_of(root, "PatientDemographics/Gender") or "").upper()
    sex: Sex | None = "male" if gender == "MALE" else "female" if gender == "FEMALE" else None
    age = text_of(root, "PatientDemographics/PatientAge")
    unit = (text_of(root, "PatientDemographics/AgeUnits") or "YEARS").upper()
    years = int(age) if age and age.isdigit() and unit == "YEARS" else None
    return Patient(id=text_of(root, "PatientDemographics/PatientID"), sex=sex, age_years=years)
