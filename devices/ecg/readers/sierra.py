"""Philips Sierra ECG XML (PageWriter carts, HeartStart MRx ambulance monitors), versions 1.03
and 1.04: base64 waveforms, XLI-compressed or not, samples in units of `resolution` µV."""

from __future__ import annotations

import base64
import binascii
from datetime import date, datetime, tzinfo

import numpy as np
from lxml import etree

from devices.ecg.checks import MAX_SECONDS
from devices.ecg.errors import ImplausibleEcgError, UnreadableEcgError
from devices.ecg.model import STANDARD_LEADS, Ecg, Patient, Sex, Signal, canonical_lead
from devices.ecg.readers.xli import XliError, decode_xli
from devices.ecg.readers.xmlsafe import aware, children, first, text_of

__all__ = ["read_sierra"]

_RECORDED_MS = 10_000
_MAX_CHANNELS = 32
_MAX_RATE_HZ = 20_000.0


def read_sierra(root: etree._Element, *, file: str, tz: tzinfo) -> Ecg:
    """The Ecg in a parsed `restingecgdata` document."""
    waveforms = first(root, ".//parsedwaveforms")
    if waveforms is None or not (waveforms.text or "").strip():
        raise UnreadableEcgError("no <parsedwaveforms> with samples", file=file)
    rate = _number(
        text_of(root, ".//signalcharacteristics/samplingrate") or waveforms.get("samplespersecond"),
        "samplingrate",
        file,
    )
    resolution = _number(
        waveforms.get("resolution") or text_of(root, ".//signalcharacteristics/signalresolution"),
        "signalresolution",
        file,
    )
    labels = _labels(root, waveforms, file)
    duration_ms = _number(waveforms.get("durationperchannel"), "durationperchannel", file)
    if duration_ms > MAX_SECONDS * 1000 or rate > _MAX_RATE_HZ:
        raise ImplausibleEcgError(
            f"{duration_ms / 1000:g} s at {rate:g} Hz is no resting 12-lead ECG", file=file
        )
    expected = int(round(duration_ms * rate / 1000))
    try:
        data = base64.b64decode("".join((waveforms.text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise UnreadableEcgError("<parsedwaveforms> is not valid base64", file=file) from None
    method = waveforms.get("compressmethod") or waveforms.get("compression") or "Uncompressed"
    if method == "XLI":
        try:
            stored = [s.astype(np.int64) for s in decode_xli(data, len(labels))]
        except XliError as exc:
            raise UnreadableEcgError(f"XLI waveform data: {exc}", file=file) from None
    elif method.lower() in ("uncompressed", "none", "false"):
        stored = _uncompressed(data, len(labels), expected, file)
    else:
        raise UnreadableEcgError(f"waveform compression {method!r} is not supported", file=file)
    shortest = min(len(s) for s in stored)
    if shortest < expected:
        raise UnreadableEcgError(
            f"a lead has {shortest} samples, durationperchannel says {expected}: truncated",
            file=file,
        )
    # Philips records 10 s and appends a second holding the 1 mV calibration pulse: drop it.
    keep = int(round(min(duration_ms, _RECORDED_MS) * rate / 1000))
    stored = [s[:keep] for s in stored]
    if labels[:6] == list(STANDARD_LEADS[:6]):
        _residuals_to_leads(stored)
    leads: dict[str, Signal] = {
        label: stored[i].astype(np.float64) * resolution for i, label in enumerate(labels)
    }
    acquired_at = _acquired(root, tz)
    return Ecg(
        leads=leads,
        sampling_rate_hz=rate,
        source=file,
        acquired_at=acquired_at,
        device=_device(root),
        patient=_patient(root, acquired_at.date() if acquired_at else None),
        device_statements=_statements(root),
        paced=_paced(root),
    )


def _number(text: str | None, name: str, file: str) -> float:
    try:
        value = float(text) if text is not None else float("nan")
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise UnreadableEcgError(f"<{name}> is missing or not a positive number", file=file)
    return value


def _labels(root: etree._Element, waveforms: etree._Element, file: str) -> list[str]:
    given = waveforms.get("leadlabels")
    if given:
        count = _channels(waveforms.get("numberofleads") or str(len(given.split())), file)
        return [canonical_lead(label) for label in given.split()[:count]]
    channels = _channels(
        text_of(root, ".//signalcharacteristics/numberchannelsallocated") or "12", file
    )
    return [
        STANDARD_LEADS[i] if i < len(STANDARD_LEADS) else f"Channel {i + 1}"
        for i in range(channels)
    ]


def _channels(text: str, file: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= _MAX_CHANNELS:
        raise UnreadableEcgError(
            f"the number of leads is not a whole number from 1 to {_MAX_CHANNELS}", file=file
        )
    return int(text)


def _uncompressed(data: bytes, leads: int, samples: int, file: str) -> list[np.ndarray]:
    values = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int64)
    if len(values) < leads * samples:
        raise UnreadableEcgError(
            f"{len(values)} samples for {leads} leads of {samples}: truncated", file=file
        )
    return [values[i * samples : (i + 1) * samples] for i in range(leads)]


def _residuals_to_leads(stored: list[np.ndarray]) -> None:
    """The device stores III, aVR, aVL and aVF as residuals from what I and II predict."""
    lead_i, lead_ii = stored[0], stored[1]
    stored[2] = lead_ii - lead_i - stored[2]
    stored[3] = -stored[3] - np.floor_divide(lead_i + lead_ii, 2)
    stored[4] = np.floor_divide(lead_i - stored[2], 2) - stored[4]
    stored[5] = np.floor_divide(lead_ii + stored[2], 2) - stored[5]


def _acquired(root: etree._Element, tz: tzinfo) -> datetime | None:
    acquisition = first(root, ".//dataacquisition")
    if acquisition is None:
        return None
    day, time = acquisition.get("date"), acquisition.get("time")
    if not day or not time:
        return None
    try:
        return aware(datetime.fromisoformat(f"{day}T{time}"), tz)
    except ValueError:
        return None


def _device(root: etree._Element) -> str | None:
    machine = first(root, ".//dataacquisition/machine")
    if machine is None:
        return None
    name = " ".join((machine.text or "").split()) or "Philips"
    return f"{name} {machine.get('machineid')}".strip() if machine.get("machineid") else name


def _patient(root: etree._Element, on: date | None) -> Patient:
    general = first(root, ".//patient/generalpatientdata")
    if general is None:
        return Patient()
    sex_text = (text_of(general, "sex") or "").lower()
    sex: Sex | None = "male" if sex_text == "male" else "female" if sex_text == "female" else None
    return Patient(id=text_of(general, "patientid"), sex=sex, age_years=_age(general, on))


def _age(general: etree._Element, on: date | None) -> int | None:
    years = text_of(general, "age/years")
    if years and years.isdigit():
        return int(years)
    born = text_of(general, "age/dateofbirth")
    if born and on is not None:
        try:
            birth = date.fromisoformat(born)
            return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
        except ValueError:
            return None
    default = first(general, "age")
    value = default.get("defaultage") if default is not None else None
    return int(value) if value and value.isdigit() else None


def _statements(root: etree._Element) -> tuple[str, ...]:
    found = []
    for statement in children(root, ".//interpretation/statement"):
        text = text_of(statement, "leftstatement")
        if text:
            found.append(text)
    return tuple(found)


def _paced(root: etree._Element) -> bool | None:
    status = (text_of(root, ".//generalpatientdata/pacestatus") or "").lower()
    if status.startswith("paced") or status == "yes":
        return True
    if status in ("notpaced", "not paced", "no"):
        return False
    return None
