"""`read_ecg(path)`: which reader a file needs, from its name and first bytes."""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path

from devices.ecg.errors import UnreadableEcgError
from devices.ecg.model import Ecg
from devices.ecg.readers.aecg import read_aecg
from devices.ecg.readers.dicom import read_dicom
from devices.ecg.readers.muse import read_muse
from devices.ecg.readers.sierra import read_sierra
from devices.ecg.readers.wfdb_record import read_wfdb
from devices.ecg.readers.xmlsafe import DEFAULT_TZ, MAX_XML_BYTES, parse_xml

__all__ = ["DEFAULT_TZ", "read_ecg", "read_ecg_xml"]

_WFDB_SUFFIXES = (".hea", ".dat")


def read_ecg(path: Path | str, *, tz: tzinfo = DEFAULT_TZ) -> Ecg:
    """Read one recording: a WFDB record (path with or without `.hea`), or a Sierra, aECG or
    MUSE XML file, or a DICOM waveform file. Times without an offset take `tz` (+08:00)."""
    path = Path(path)
    if path.suffix.lower() in _WFDB_SUFFIXES:
        return read_wfdb(path.with_suffix(""), tz=tz)
    if not path.exists() and path.with_name(path.name + ".hea").is_file():
        return read_wfdb(path, tz=tz)
    file = str(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_XML_BYTES + 1)
    except OSError as exc:
        raise UnreadableEcgError(
            f"cannot read the file ({exc.strerror or type(exc).__name__})", file=file
        ) from None
    if len(data) >= 132 and data[128:132] == b"DICM":
        return read_dicom(path, tz=tz)
    return read_ecg_xml(data, file=file, tz=tz)


def read_ecg_xml(data: bytes, *, file: str, tz: tzinfo = DEFAULT_TZ) -> Ecg:
    """Read a Sierra, aECG or MUSE XML document from its bytes (the hardened parser); `file`
    names it in errors."""
    root = parse_xml(data, file=file)
    readers = {"restingecgdata": read_sierra, "AnnotatedECG": read_aecg, "RestingECG": read_muse}
    reader = readers.get(str(root.tag))
    if reader is None:
        raise UnreadableEcgError(
            f"XML root <{root.tag}> is no ECG format read here "
            "(Philips restingecgdata, HL7 AnnotatedECG, GE RestingECG)",
            file=file,
        )
    return reader(root, file=file, tz=tz)
