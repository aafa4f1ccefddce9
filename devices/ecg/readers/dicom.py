"""DICOM waveforms (12-Lead ECG Waveform Storage and General ECG), read with pydicom: channel
labels from the Channel Source Sequence, µV from the channel sensitivity and its units."""

from __future__ import annotations

import re
import struct
import warnings
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from devices.ecg.errors import ImplausibleEcgError, UnreadableEcgError
from devices.ecg.model import Ecg, Patient, Sex, Signal, canonical_lead, with_derived_limb_leads
from devices.ecg.readers.xmlsafe import aware

__all__ = ["read_dicom"]

_TO_UV = {"uV": 1.0, "mV": 1000.0, "V": 1_000_000.0}
# "Lead I (Einthoven)", "Lead aVR", "Lead V1": the lead name is the second word.
_LEAD = re.compile(r"^lead\s+(\S+)", re.IGNORECASE)


# What pydicom raises on damaged files, often only when an element is first used.
_PYDICOM_ERRORS = (
    InvalidDicomError,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    NotImplementedError,
    OverflowError,
    struct.error,
)


def read_dicom(path: Path, *, tz: tzinfo) -> Ecg:
    """The first waveform group with ECG leads in a DICOM file."""
    file = str(path)
    try:
        with warnings.catch_warnings():
            # pydicom warns about every non-conformant value; what matters is checked here.
            warnings.simplefilter("ignore")
            return _read(path, file, tz)
    except _PYDICOM_ERRORS as exc:
        raise UnreadableEcgError(
            f"not a readable DICOM waveform ({type(exc).__name__}: {str(exc)[:100]})", file=file
        ) from None


def _read(path: Path, file: str, tz: tzinfo) -> Ecg:
    dataset = pydicom.dcmread(path)
    groups = list(dataset.get("WaveformSequence", []))
    if not groups:
        raise UnreadableEcgError("no Waveform Sequence (5400,0100)", file=file)
    for index, group in enumerate(groups):
        labels = [_label(channel) for channel in group.get("ChannelDefinitionSequence", [])]
        if any(label in ("I", "II", "V1") for label in labels):
            return Ecg(
                leads=with_derived_limb_leads(_leads(dataset, group, index, labels, file)),
                sampling_rate_hz=float(group.SamplingFrequency),
                source=file,
                acquired_at=_acquired(dataset, tz),
                device=_device(dataset),
                patient=_patient(dataset),
            )
    raise UnreadableEcgError("no waveform group with ECG leads (I, II, V1 ...)", file=file)


def _label(channel: Any) -> str:
    sources = channel.get("ChannelSourceSequence", [])
    meaning = str(sources[0].get("CodeMeaning", "")) if sources else ""
    found = _LEAD.match(meaning)
    return canonical_lead(found.group(1) if found else meaning)


def _leads(dataset: Any, group: Any, index: int, labels: list[str], file: str) -> dict[str, Signal]:
    raw = dataset.waveform_array(index)  # sensitivity and correction factor applied
    expected = int(group.NumberOfWaveformSamples)
    if raw.shape[0] < expected:
        raise UnreadableEcgError(f"{raw.shape[0]} of {expected} samples: truncated", file=file)
    leads: dict[str, Signal] = {}
    for position, (label, channel) in enumerate(
        zip(labels, group.ChannelDefinitionSequence, strict=True)
    ):
        units = channel.get("ChannelSensitivityUnitsSequence", [])
        unit = str(units[0].get("CodeValue", "")) if units else ""
        if unit not in _TO_UV:
            raise ImplausibleEcgError(
                f"lead {label} is in {unit or 'no unit'!r}; ECG leads must be in uV or mV",
                file=file,
            )
        leads[label] = np.asarray(raw[:, position], dtype=np.float64) * _TO_UV[unit]
    return leads


def _acquired(dataset: Any, tz: tzinfo) -> datetime | None:
    stamp = str(dataset.get("AcquisitionDateTime", "") or "")
    if not stamp:
        day, time = dataset.get("ContentDate", ""), dataset.get("ContentTime", "")
        stamp = f"{day}{time}" if day and time else ""
    found = re.match(r"^(\d{14})(?:\.\d+)?([+-]\d{4})?", stamp)
    if found is None:
        return None
    moment = datetime.strptime(found.group(1), "%Y%m%d%H%M%S")  # noqa: DTZ007 - zone below
    offset = found.group(2) or str(dataset.get("TimezoneOffsetFromUTC", "") or "")
    if re.fullmatch(r"[+-]\d{4}", offset):
        sign = -1 if offset[0] == "-" else 1
        zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
        return moment.replace(tzinfo=zone)
    return aware(moment, tz)


def _device(dataset: Any) -> str | None:
    parts = [str(dataset.get(key, "") or "") for key in ("Manufacturer", "ManufacturerModelName")]
    return " ".join(p for p in parts if p) or None


def _patient(dataset: Any) -> Patient:
    code = str(dataset.get("PatientSex", "") or "")
    sex: Sex | None = "male" if code == "M" else "female" if code == "F" else None
    age = str(dataset.get("PatientAge", "") or "")
    years = int(age[:3]) if re.fullmatch(r"\d{3}Y", age) else None
    ident = str(dataset.get("PatientID", "") or "") or None
    return Patient(id=ident, sex=sex, age_years=years)
