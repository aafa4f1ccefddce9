"""ECG readers (one `Ecg` whatever the file format) and the machine reading: STEMI criteria of
the 4th Universal Definition of MI, confounder flags and an MI probability.

    from devices.ecg import analyze, read_ecg
    reading = analyze(read_ecg("ecg/sierra/129DYPRG.XML"))   # reading.stemi, reading.territory

The readers and the analysis (scipy, wfdb, pydicom: seconds of imports) load on first use, so a
module that only needs the errors or the hardened XML parser (the POCT1-A2 reader) does not
slow every engine start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devices.ecg.errors import EcgError, ImplausibleEcgError, UnreadableEcgError, UnsafeXmlError
from devices.ecg.model import Ecg, Patient

if TYPE_CHECKING:
    from devices.ecg.analysis import EcgReading, analyze
    from devices.ecg.read import read_ecg

__all__ = [
    "Ecg",
    "EcgError",
    "EcgReading",
    "ImplausibleEcgError",
    "Patient",
    "UnreadableEcgError",
    "UnsafeXmlError",
    "analyze",
    "read_ecg",
]


def __getattr__(name: str) -> Any:
    if name in ("EcgReading", "analyze"):
        from devices.ecg import analysis

        return getattr(analysis, name)
    if name == "read_ecg":
        from devices.ecg.read import read_ecg

        return read_ecg
    raise AttributeError(f"module 'devices.ecg' has no attribute {name!r}")
