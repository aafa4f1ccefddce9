"""HL7 v3 Annotated ECG (aECG, the FDA's format): `sequenceSet`s of a time sequence (GLIST
increment) and one SLIST_PQ per lead (origin + scale × digits, units in the XML)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo

import numpy as np
from lxml import etree

from devices.ecg.errors import ImplausibleEcgError, UnreadableEcgError
from devices.ecg.model import Ecg, Patient, Sex, Signal, canonical_lead
from devices.ecg.readers.xmlsafe import aware, children, first, text_of

__all__ = ["read_aecg"]

_TO_UV = {"uv": 1.0, "mv": 1000.0, "v": 1_000_000.0, "nv": 0.001}
_TO_S = {"s": 1.0, "ms": 0.001, "us": 0.000001}
_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d+)?([+-]\d{4})?$")
MAX_SAMPLES = 2_000_000  # per lead: over half an hour at 1 kHz


def read_aecg(root: etree._Element, *, file: str, tz: tzinfo) -> Ecg:
    """The rhythm series of a parsed `AnnotatedECG` document (the first series when none is
    coded RHYTHM)."""
    series = children(root, ".//series")
    if not series:
        raise UnreadableEcgError("no <series> of waveforms", file=file)
    chosen = next((s for s in series if _code(s) == "RHYTHM"), series[0])
    rate: float | None = None
    leads: dict[str, Signal] = {}
    for sequence in children(chosen, ".//sequenceSet/component/sequence"):
        code = _code(sequence)
        value = first(sequence, "value")
        if value is None:
            continue
        if code.startswith("TIME_"):
            rate = _rate(value, file)
        elif code.startswith("MDC_ECG_LEAD_"):
            leads[canonical_lead(code)] = _lead(value, code, file)
    if rate is None:
        raise UnreadableEcgError("no TIME_ABSOLUTE or TIME_RELATIVE sequence", file=file)
    if not leads:
        raise UnreadableEcgError("no MDC_ECG_LEAD_* sequences", file=file)
    if len({len(s) for s in leads.values()}) > 1:
        raise ImplausibleEcgError("the leads have different numbers of samples", file=file)
    return Ecg(
        leads=leads,
        sampling_rate_hz=rate,
        source=file,
        acquired_at=_acquired(root, chosen, tz),
        device=_device(chosen),
        patient=_patient(root),
    )


def _code(element: etree._Element) -> str:
    code = first(element, "code")
    return (code.get("code") or "") if code is not None else ""


def _rate(value: etree._Element, file: str) -> float:
    increment = first(value, "increment")
    if increment is None:
        raise UnreadableEcgError("the time sequence has no <increment>", file=file)
    try:
        step = float(increment.get("value") or "nan") * _TO_S[(increment.get("unit") or "s")]
    except (ValueError, KeyError):
        step = float("nan")
    if not np.isfinite(step) or step <= 0:
        raise UnreadableEcgError("the time increment is not a positive time (s or ms)", file=file)
    return round(1.0 / step, 6)


def _lead(value: etree._Element, code: str, file: str) -> Signal:
    origin, scale = first(value, "origin"), first(value, "scale")
    digits = first(value, "digits")
    if scale is None or digits is None:
        raise UnreadableEcgError(f"{code}: no <scale> or <digits>", file=file)
    try:
        unit = (scale.get("unit") or "").lower()
        factor = float(scale.get("value") or "nan") * _TO_UV[unit]
        offset = 0.0
        if origin is not None:
            offset = float(origin.get("value") or 0) * _TO_UV[(origin.get("unit") or unit).lower()]
    except KeyError:
        raise ImplausibleEcgError(
            f"{code}: the scale unit is not a voltage (uV, mV, V)", file=file
        ) from None
    except ValueError:
        raise UnreadableEcgError(f"{code}: origin or scale is not a number", file=file) from None
    text = digits.text or ""
    if text.count(" ") > MAX_SAMPLES * 8:
        raise UnreadableEcgError(f"{code}: more than {MAX_SAMPLES} samples", file=file)
    try:
        samples = np.array(text.split(), dtype=np.float64)
    except ValueError:
        raise UnreadableEcgError(
            f"{code}: <digits> holds something not a number", file=file
        ) from None
    if len(samples) > MAX_SAMPLES:
        raise UnreadableEcgError(f"{code}: more than {MAX_SAMPLES} samples", file=file)
    return offset + factor * samples


def _timestamp(text: str | None, tz: tzinfo) -> datetime | None:
    found = _TS.match(text or "")
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = found.groups()
    try:
        moment = datetime(  # noqa: DTZ001 - the zone is set just below
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
        )
    except ValueError:
        return None
    if offset:
        sign = -1 if offset[0] == "-" else 1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
        return moment.replace(tzinfo=timezone(sign * delta))
    return aware(moment, tz)


def _acquired(root: etree._Element, series: etree._Element, tz: tzinfo) -> datetime | None:
    for element, path in (
        (series, "effectiveTime/low"),
        (root, "effectiveTime/center"),
        (root, "effectiveTime/low"),
    ):
        found = first(element, path)
        if found is not None and (moment := _timestamp(found.get("value"), tz)) is not None:
            return moment
    return None


def _device(series: etree._Element) -> str | None:
    model = text_of(series, ".//manufacturedSeriesDevice/manufacturerModelName")
    maker = text_of(series, ".//manufacturerOrganization/name")
    return " ".join(p for p in (maker, model) if p) or None


def _patient(root: etree._Element) -> Patient:
    subject = first(root, ".//trialSubject")
    if subject is None:
        return Patient()
    ident = first(subject, "id")
    gender = first(subject, ".//administrativeGenderCode")
    code = (gender.get("code") if gender is not None else "") or ""
    sex: Sex | None = "male" if code == "M" else "female" if code == "F" else None
    return Patient(id=ident.get("extension") if ident is not None else None, sex=sex)
