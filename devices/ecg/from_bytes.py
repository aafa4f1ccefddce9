"""`read_ecg_bytes(data)`: one recording as it arrives on a channel (an upload, a dropped file,
a base64 block of an HL7 message), whatever its format, recognised from its first bytes.

A WFDB record is two files (`.hea` header, `.dat` samples), so it travels as one ZIP archive
holding both; the archive is unpacked with limits (members, sizes, names) into a private
temporary folder. DICOM is read from a temporary file too (pydicom reads files). XML goes
straight to the hardened parser.
"""

from __future__ import annotations

import lzma
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from datetime import tzinfo
from io import BytesIO
from pathlib import Path
from typing import Literal

from devices.ecg.errors import EcgError, UnreadableEcgError
from devices.ecg.model import Ecg
from devices.ecg.read import read_ecg_xml
from devices.ecg.readers.dicom import read_dicom
from devices.ecg.readers.wfdb_record import read_wfdb
from devices.ecg.readers.xmlsafe import DEFAULT_TZ, MAX_XML_BYTES

__all__ = ["MAX_ECG_BYTES", "EcgFormat", "read_ecg_bytes", "sniff_format"]

MAX_ECG_BYTES = MAX_XML_BYTES  # the largest recording any reader accepts
MAX_ZIP_MEMBERS = 8  # a record's header, signal file(s) and perhaps an annotation file
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_XML_STARTS = (b"<", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")

EcgFormat = Literal["wfdb-zip", "dicom", "xml"]
_Reader = Callable[[Path], Ecg]


def sniff_format(data: bytes) -> EcgFormat | None:
    """Which reader the bytes need: a ZIP (WFDB pair), DICOM (`DICM` at byte 128), XML; None
    when they are none of these."""
    if data.startswith(b"PK\x03\x04"):
        return "wfdb-zip"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if data.lstrip(b" \t\r\n").startswith(_XML_STARTS):
        return "xml"
    return None


def read_ecg_bytes(data: bytes, *, name: str = "ECG file", tz: tzinfo = DEFAULT_TZ) -> Ecg:
    """The `Ecg` in `data`; `name` is what errors call it (never a temporary path). Raises an
    `EcgError` (an InputError) for anything that is not a readable recording."""
    if not data:
        raise UnreadableEcgError("the file is empty", file=name)
    if len(data) > MAX_ECG_BYTES:
        raise UnreadableEcgError(
            f"{len(data)} bytes, more than the {MAX_ECG_BYTES} an ECG recording can need",
            file=name,
        )
    kind = sniff_format(data)
    if kind == "xml":
        return read_ecg_xml(data, file=name, tz=tz)
    if kind == "dicom":
        return _in_temporary_folder(name, lambda folder: _read_dicom(data, folder, tz))
    if kind == "wfdb-zip":
        return _in_temporary_folder(name, lambda folder: _read_wfdb_zip(data, folder, name, tz))
    if _looks_like_wfdb_header(data):
        raise UnreadableEcgError(
            "a WFDB header alone: send the .hea and .dat files together in one ZIP archive",
            file=name,
        )
    raise UnreadableEcgError(
        "not an ECG format read here (Philips Sierra, HL7 aECG or GE MUSE XML; DICOM "
        "waveform; WFDB .hea + .dat in a ZIP archive)",
        file=name,
    )


def _in_temporary_folder(name: str, read: _Reader) -> Ecg:
    with tempfile.TemporaryDirectory(prefix="greenchannel-ecg-") as folder:
        try:
            ecg = read(Path(folder))
        except EcgError as exc:
            # The readers name the temporary path: name the recording as the sender knows it.
            raise type(exc)(exc.problem, file=name, hint=exc.hint) from None
    return _renamed(ecg, name)


def _renamed(ecg: Ecg, name: str) -> Ecg:
    return Ecg(
        leads=ecg.leads,
        sampling_rate_hz=ecg.sampling_rate_hz,
        source=name,
        acquired_at=ecg.acquired_at,
        device=ecg.device,
        patient=ecg.patient,
        device_statements=ecg.device_statements,
        paced=ecg.paced,
    )


def _read_dicom(data: bytes, folder: Path, tz: tzinfo) -> Ecg:
    path = folder / "recording.dcm"
    path.write_bytes(data)
    return read_dicom(path, tz=tz)


def _read_wfdb_zip(data: bytes, folder: Path, name: str, tz: tzinfo) -> Ecg:
    """Unpack a WFDB record (flat names only, sizes checked before and while reading) and read
    the one record whose header it holds."""
    try:
        archive = zipfile.ZipFile(BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_ZIP_MEMBERS:
            raise UnreadableEcgError(
                f"the ZIP holds {len(members)} files; a WFDB record needs a .hea and its .dat",
                file=name,
            )
        budget = MAX_ECG_BYTES
        for member in members:
            base = member.filename.replace("\\", "/").rsplit("/", 1)[-1]
            if not _SAFE_NAME.match(base):
                raise UnreadableEcgError(
                    "a file name in the ZIP is not a plain WFDB file name", file=name
                )
            if member.file_size > budget:
                raise UnreadableEcgError(
                    f"the ZIP unpacks to more than {MAX_ECG_BYTES} bytes", file=name
                )
            with archive.open(member) as source:
                content = source.read(budget + 1)
            if len(content) > budget:  # the size in the directory lied
                raise UnreadableEcgError(
                    f"the ZIP unpacks to more than {MAX_ECG_BYTES} bytes", file=name
                )
            budget -= len(content)
            (folder / base).write_bytes(content)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise UnreadableEcgError(f"not a readable ZIP archive ({exc})", file=name) from None
    except (RuntimeError, ValueError, OSError, zlib.error, lzma.LZMAError) as exc:
        # encrypted, bad CRC, damaged deflate / bzip2 / LZMA data
        raise UnreadableEcgError(
            f"the ZIP cannot be unpacked ({type(exc).__name__})", file=name
        ) from None
    headers = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".hea")
    if len(headers) != 1:
        raise UnreadableEcgError(
            f"the ZIP holds {len(headers)} WFDB headers (.hea); send one record per archive",
            file=name,
        )
    header = headers[0]
    if header.suffix != ".hea":
        header = header.rename(header.with_suffix(".hea"))
    return read_wfdb(header.with_suffix(""), tz=tz)


def _looks_like_wfdb_header(data: bytes) -> bool:
    """A WFDB header's record line: name, number of signals, then perhaps rate and length."""
    first = data.split(b"\n", 1)[0].split()
    return len(first) >= 2 and first[1].isdigit() and len(data) < 64 * 1024
