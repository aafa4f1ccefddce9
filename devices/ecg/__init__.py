"""ECG readers (one `Ecg` whatever the file format) and the machine reading: STEMI criteria of
the 4th Universal Definition of MI, confounder flags and an MI probability.

    from devices.ecg import analyze, read_ecg
    reading = analyze(read_ecg("ecg/sierra/129DYPRG.XML"))   # reading.stemi, reading.territory
"""

from devices.ecg.analysis import EcgReading, analyze
from devices.ecg.errors import EcgError, ImplausibleEcgError, UnreadableEcgError, UnsafeXmlError
from devices.ecg.model import Ecg, Patient
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
