"""ECG recordings as mapping `Document`s: a file (Philips Sierra, HL7 aECG or GE MUSE XML,
DICOM waveform, WFDB `.hea` + `.dat` in a ZIP) read and analysed by `devices.ecg`, and an HL7
v2 ORU^R01 whose OBX carries such a file base64-encoded (datatype ED).

Registered under `greenchannel.parsers`:
- `application/x-ecg`, `application/dicom`, `application/x-wfdb+zip`: one recording, its format
  recognised from its bytes; `$.…` paths into the document of `devices/ecg/document.py`.
- `x-application/hl7-v2+er7+ecg`: an ORU^R01 with the recording in an ED OBX; HL7 paths
  (`PID-3.1`, `OBR-3`) read the message and `$.…` paths the recording.

A recording that cannot be read or is no plausible 12-lead ECG raises its `EcgError` (an
`InputError`), so the source answers 4xx / AR and the message is journalled as ERROR.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from decimal import Decimal
from typing import cast

from adapters.hl7v2 import parse_for_mapping as parse_hl7
from adapters.jsoninput import JsonDocument
from engine.errors import ParseError
from engine.mapping.document import Document

__all__ = [
    "ECG_MEDIA_TYPE",
    "ORU_MEDIA_TYPE",
    "EcgMessageDocument",
    "parse_ecg_file",
    "parse_ecg_oru",
    "recording_for_mapping",
    "warm_up",
]

ECG_MEDIA_TYPE = "application/x-ecg"
ORU_MEDIA_TYPE = "x-application/hl7-v2+er7+ecg"
# What an ED OBX-5.3 (data subtype) may say about a file we read; others (PDF, JPEG) are
# skipped without decoding. Empty: decoded and recognised from its bytes.
_ECG_SUBTYPES = frozenset({"", "XML", "DICOM", "DCM", "ZIP", "X-ZIP", "X-ECG", "OCTET-STREAM"})


def recording_for_mapping(raw: bytes, *, name: str = "ECG file") -> JsonDocument:
    """Read, analyse and describe one recording; EcgError for anything unusable."""
    # Imported here: numpy, scipy, wfdb, pydicom and lxml take seconds to import, and every
    # engine process loads every parser plugin, ECG channel or not.
    from devices.ecg import analyze
    from devices.ecg.document import recording_document
    from devices.ecg.from_bytes import read_ecg_bytes, sniff_format

    file_format = sniff_format(raw)
    ecg = read_ecg_bytes(raw, name=name)
    reading = analyze(ecg)
    document = recording_document(ecg, reading, raw=raw, file_format=file_format or "unknown")
    # The mapping language reads numbers as Decimal, as the JSON parser gives them.
    as_json = json.loads(json.dumps(document), parse_float=Decimal, parse_int=Decimal)
    return JsonDocument(as_json, media_type=ECG_MEDIA_TYPE)


def warm_up() -> None:
    """Import the ECG analysis and load its criteria and model (seconds on a busy machine):
    the engine calls this when a channel using these parsers is deployed."""
    from devices.ecg.criteria import load_criteria
    from devices.ecg.mi_model import load_model

    load_criteria()
    load_model()


class _Parser:
    """A parser function with the engine's optional `warm_up` beside it."""

    def __init__(self, parse: Callable[[bytes, str], Document]) -> None:
        self._parse = parse
        self.warm_up = warm_up

    def __call__(self, raw: bytes, charset: str) -> Document:
        return self._parse(raw, charset)


def _parse_ecg_file(raw: bytes, charset: str) -> Document:
    return cast(Document, recording_for_mapping(raw))


# The `greenchannel.parsers` entry point for a recording file (`charset` is unused: the formats
# say their own encoding).
parse_ecg_file = _Parser(_parse_ecg_file)


class EcgMessageDocument:
    """An HL7 v2 message and the recording one of its OBXs carries, read as one document:
    `$` and `@` paths read the recording, every other path the message."""

    media_type = ORU_MEDIA_TYPE
    __slots__ = ("_message", "_recording")

    def __init__(self, message: Document, recording: JsonDocument) -> None:
        self._message = message
        self._recording = recording

    def __repr__(self) -> str:
        return "EcgMessageDocument()"  # never the content

    def _of(self, path: str) -> Document:
        if path[:1] in ("$", "@"):
            return cast(Document, self._recording)
        return self._message

    def get(self, path: str) -> str | None:
        return self._of(path).get(path)

    def all(self, path: str) -> list[str]:
        return self._of(path).all(path)

    def each(self, path: str) -> list[Document]:
        if path[:1] in ("$", "@"):
            return [EcgMessageDocument(self._message, item) for item in self._recording.each(path)]
        return [EcgMessageDocument(item, self._recording) for item in self._message.each(path)]


def _parse_ecg_oru(raw: bytes, charset: str) -> Document:
    """The `greenchannel.parsers` entry point for an ORU^R01 carrying a recording: the first
    ED OBX whose data is a recording we read is read and analysed. ParseError when no OBX
    carries one; the recording's EcgError (located at that OBX) when it is unusable."""
    # Hl7Document reads as a Document; its `each` gives Hl7Documents (list is invariant).
    message = cast(Document, parse_hl7(raw, charset))
    for index, obx in enumerate(message.each("OBX"), start=1):
        if (obx.get("OBX-2") or "").upper() != "ED":
            continue
        subtype = (obx.get("OBX-5.3") or "").upper()
        if subtype not in _ECG_SUBTYPES:
            continue
        where = f"OBX[{index}]-5.5"
        if (obx.get("OBX-5.4") or "").upper() != "BASE64":
            continue
        data = _base64(obx.get("OBX-5.5") or "", where)
        if _sniff(data) is None:
            continue
        # An unusable recording raises its EcgError located at this OBX (ERR-2 in the NAK).
        recording = recording_for_mapping(data, name=where)
        return EcgMessageDocument(message, recording)
    raise ParseError(
        "no OBX carries an ECG recording (OBX-2 ED, OBX-5.4 Base64, OBX-5.5 a Philips Sierra, "
        "HL7 aECG or GE MUSE XML, a DICOM waveform or a WFDB ZIP)",
        location="OBX-5",
        ack_code="AR",
        hint="check the ECG system's HL7 export: the waveform file must be embedded",
    )


# The `greenchannel.parsers` entry point for x-application/hl7-v2+er7+ecg.
parse_ecg_oru = _Parser(_parse_ecg_oru)


def _sniff(data: bytes) -> str | None:
    from devices.ecg.from_bytes import sniff_format

    return sniff_format(data)


def _base64(text: str, where: str) -> bytes:
    from devices.ecg import UnreadableEcgError

    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise UnreadableEcgError("OBX-5.5 is not valid base64", file=where) from None
