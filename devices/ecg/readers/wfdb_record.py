"""WFDB records (PhysioNet: PTB, PTB-XL; many carts export it): a `.hea` header and its `.dat`
signal file, read with the `wfdb` package. Physical units in the header decide the µV scaling."""

from __future__ import annotations

import re
import warnings
from datetime import datetime, tzinfo
from pathlib import Path

import numpy as np

with warnings.catch_warnings():
    # wfdb 4.3 calls DataFrame.set_index(inplace=True) at import, which pandas 3.1 deprecates:
    # nothing for an operator to act on, and pytest turns warnings into errors.
    warnings.filterwarnings("ignore", message="The inplace keyword", category=Warning)
    import wfdb

from devices.ecg.checks import MAX_SECONDS
from devices.ecg.errors import ImplausibleEcgError, UnreadableEcgError
from devices.ecg.model import Ecg, Patient, Sex, Signal, canonical_lead
from devices.ecg.readers.xmlsafe import aware

__all__ = ["UNIT_TO_UV", "read_wfdb"]

# The header's units per signal, to µV. WFDB's default unit (none written) is mV.
UNIT_TO_UV = {"mv": 1000.0, "uv": 1.0, "µv": 1.0, "μv": 1.0, "v": 1_000_000.0, "nu": 1000.0}
_AGE = re.compile(r"^\s*age:\s*(\d+)", re.IGNORECASE)
_SEX = re.compile(r"^\s*sex:\s*(male|female|m|f)\b", re.IGNORECASE)


def read_wfdb(record: Path, *, tz: tzinfo) -> Ecg:
    """The Ecg in the WFDB record at `record` (the path without `.hea`)."""
    file = str(record)
    if not record.with_name(record.name + ".hea").is_file():
        raise UnreadableEcgError("no WFDB header (.hea) for this record", file=file)
    try:
        header = wfdb.rdheader(str(record))
        if header.sig_len and header.fs and header.sig_len / header.fs > MAX_SECONDS:
            raise ImplausibleEcgError(
                f"{header.sig_len / header.fs:.0f} s recorded; a resting 12-lead ECG is at most "
                f"{MAX_SECONDS:g} s",
                file=file,
            )
        signals = wfdb.rdrecord(str(record), physical=True)
    except FileNotFoundError as exc:
        raise UnreadableEcgError(
            f"the signal file {Path(exc.filename or '').name or '(.dat)'} is missing", file=file
        ) from None
    except ValueError as exc:
        if "reshape" in str(exc) or "not loaded correctly" in str(exc):
            # wfdb's words for a signal file that ends before the header's sample count
            raise UnreadableEcgError(
                "the signal file is shorter than the header says: truncated", file=file
            ) from None
        raise UnreadableEcgError(f"not a readable WFDB record ({_why(exc)})", file=file) from None
    except (IndexError, KeyError, TypeError, OSError, EOFError) as exc:
        raise UnreadableEcgError(f"not a readable WFDB record ({_why(exc)})", file=file) from None
    data = signals.p_signal
    if data is None or header.sig_len is None:
        raise UnreadableEcgError("the record holds no signals", file=file)
    if data.shape[0] < header.sig_len:
        raise UnreadableEcgError(
            f"the signal file has {data.shape[0]} of {header.sig_len} samples: truncated",
            file=file,
        )
    leads: dict[str, Signal] = {}
    for index, name in enumerate(signals.sig_name or []):
        unit = (signals.units[index] if signals.units else None) or "mV"
        scale = UNIT_TO_UV.get(unit.strip().lower())
        if scale is None:
            raise ImplausibleEcgError(
                f"lead {name} is in {unit!r}; an ECG lead must be in mV or µV", file=file
            )
        leads[canonical_lead(name)] = data[:, index].astype(np.float64) * scale
    return Ecg(
        leads=leads,
        sampling_rate_hz=float(signals.fs),
        source=file,
        acquired_at=_acquired(signals, tz),
        device=None,
        patient=_patient(signals.comments or []),
    )


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


def _acquired(signals: wfdb.Record, tz: tzinfo) -> datetime | None:
    if signals.base_date is None or signals.base_time is None:
        return None
    return aware(datetime.combine(signals.base_date, signals.base_time), tz)


def _patient(comments: list[str]) -> Patient:
    age: int | None = None
    sex: Sex | None = None
    for comment in comments:
        if (found := _AGE.match(comment)) is not None:
            age = int(found.group(1))
        if (found := _SEX.match(comment)) is not None:
            sex = "female" if found.group(1).lower().startswith("f") else "male"
    return Patient(sex=sex, age_years=age)
