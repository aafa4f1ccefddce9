"""POCT1-A2 messages read with the hardened XML parser, and the data manager's answers built.

Every message is `<TYPE.EVENT>` (HEL.R01, DST.R01, OBS.R01, OBS.R02, EOT.R01, ACK.R01, END.R01,
REQ.R01 ...) holding an `HDR` (HDR.control_id, HDR.version_id, HDR.creation_dttm) and a body;
values sit in the `V` attribute (`<PT.patient_id V="10086"/>`), units in `U`, a code's system in
`SN`. Structures as in CLSI POCT1-A2 (2006), Appendix "Device Messaging Layer", and the
device interface manuals built on it (see docs/poct.md for the sources followed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.sax.saxutils import quoteattr

from lxml import etree

from devices.analyser_results import pruned
from devices.ecg.errors import EcgError, UnsafeXmlError
from devices.ecg.readers.xmlsafe import parse_xml
from devices.poct.stream import MessageSplitter
from engine.errors import FramingError, ParseError

__all__ = [
    "MEDIA_TYPE",
    "DeviceIdentity",
    "PoctMessage",
    "build_ack",
    "build_message",
    "parse_message",
    "results_document",
]

MEDIA_TYPE = "application/x-poct1a+xml"
_UNSAFE_HINT = "POCT1-A messages never need a DTD or entities: check what sent this message"


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What a HEL.R01 says about the device (DEV.device_id, vendor, model, serial)."""

    device_id: str
    vendor: str = ""
    model: str = ""
    serial: str = ""

    def __repr__(self) -> str:
        return f"DeviceIdentity(device_id={self.device_id!r}, model={self.model!r})"


@dataclass(frozen=True, slots=True)
class PoctMessage:
    """One parsed message: its type (root tag), HDR.control_id and the element tree."""

    message_type: str
    control_id: str
    root: etree._Element

    def __repr__(self) -> str:
        return f"PoctMessage(type={self.message_type!r}, control_id={self.control_id!r})"

    def value(self, path: str) -> str:
        """The V attribute at `path` (ElementTree syntax, from the root), "" when absent."""
        return _v(self.root.find(path))

    @property
    def topic(self) -> str:
        """The topic an EOT.R01 ends (EOT.topic_cd), e.g. OBS."""
        return self.value("EOT/EOT.topic_cd")

    def device(self) -> DeviceIdentity | None:
        """The device a HEL.R01 introduces; None for other messages or without DEV.device_id."""
        dev = self.root.find("DEV")
        if self.message_type != "HEL.R01" or dev is None:
            return None
        device_id = _v(dev.find("DEV.device_id"))
        if not device_id:
            return None
        return DeviceIdentity(
            device_id=device_id,
            vendor=_v(dev.find("DEV.vendor_id")),
            model=_v(dev.find("DEV.model_id")),
            serial=_v(dev.find("DEV.serial_id")),
        )

    def digest(self) -> str:
        """A digest of everything but the HDR: the same observations resent in a new message
        (new control id, new creation time) digest the same, so the journal applies them once."""
        parts = [etree.tostring(child, method="c14n") for child in self.root if child.tag != "HDR"]
        return hashlib.sha256(b"".join(parts)).hexdigest()[:32]


def parse_message(raw: bytes) -> PoctMessage:
    """Parse one message with the hardened parser (no DTD, no entities, no network).

    ParseError (AR) for XML that is unsafe or not well-formed, or lacks HDR.control_id."""
    try:
        root = parse_xml(raw, file="POCT1-A message")
    except UnsafeXmlError as exc:
        raise ParseError(
            f"{exc.problem}; the message was not processed",
            location="POCT1-A message",
            ack_code="AR",
            hint=_UNSAFE_HINT,
        ) from None
    except EcgError as exc:
        raise ParseError(exc.problem, location="POCT1-A message", ack_code="AR") from None
    message_type = str(root.tag)
    if "." not in message_type:
        raise ParseError(
            f"the root element <{message_type[:40]}> is not a POCT1-A message type like OBS.R01",
            location="root element",
            ack_code="AR",
        )
    control_id = _v(root.find("HDR/HDR.control_id"))
    if not control_id:
        raise ParseError(
            "HDR.control_id is missing or empty",
            location=f"{message_type}/HDR/HDR.control_id",
            ack_code="AR",
        )
    return PoctMessage(message_type, control_id, root)


def _v(element: etree._Element | None) -> str:
    if element is None:
        return ""
    return str(element.get("V") or "").strip()


# --- the data manager's messages -------------------------------------------------------------


def build_message(
    message_type: str, control_id: int, now: datetime, body: str = "", body_values: Any = ()
) -> bytes:
    """`<TYPE><HDR>...</HDR><BODY>values</BODY></TYPE>` with HDR.creation_dttm `now` (aware).

    `body` is the body element's name (ACK, REQ, EOT, END); `body_values` its (name, value)
    children, each written as `<name V="value"/>`."""
    header = (
        f"<HDR><HDR.message_type V={quoteattr(message_type)}/>"
        f'<HDR.control_id V="{control_id}"/><HDR.version_id V="POCT1"/>'
        f"<HDR.creation_dttm V={quoteattr(now.isoformat(timespec='seconds'))}/></HDR>"
    )
    inner = ""
    if body:
        values = "".join(f"<{name} V={quoteattr(value)}/>" for name, value in body_values if value)
        inner = f"<{body}>{values}</{body}>"
    text = f'<?xml version="1.0" encoding="UTF-8"?><{message_type}>{header}{inner}</{message_type}>'
    return text.encode("utf-8")


def build_ack(control_id: int, now: datetime, acked_control_id: str, *, error: str = "") -> bytes:
    """ACK.R01 for the device's message `acked_control_id`: AA, or AE with ACK.note_txt."""
    return build_message(
        "ACK.R01",
        control_id,
        now,
        "ACK",
        (
            ("ACK.type_cd", "AE" if error else "AA"),
            ("ACK.ack_control_id", acked_control_id),
            ("ACK.note_txt", error[:200]),
        ),
    )


# --- the analyser-results document ---------------------------------------------------------


def results_document(raw: bytes) -> dict[str, Any]:
    """The analyser-results shape (docs/poct.md) of a journalled observation message.

    The adapter journals the device's HEL.R01 (which names the device) followed by the OBS.R01
    or OBS.R02 exactly as received; a bare OBS message reads with an unknown device."""
    splitter = MessageSplitter()
    pieces = splitter.feed(raw)
    rest = splitter.finish("the journalled input ends")
    if rest is not None:
        pieces.append(rest)
    device: DeviceIdentity | None = None
    observation: PoctMessage | None = None
    for piece in pieces:
        if piece.problem is not None:
            raise piece.problem
        message = parse_message(piece.content)
        if message.message_type == "HEL.R01":
            device = message.device() or device
        elif message.message_type in ("OBS.R01", "OBS.R02"):
            observation = message
    if observation is None:
        raise FramingError("no OBS.R01 or OBS.R02 message in the input", location="POCT1-A")
    identity = device or DeviceIdentity(device_id="")
    created = observation.value("HDR/HDR.creation_dttm")
    results: list[dict[str, Any]] = []
    for service in observation.root.iterfind("SVC"):
        observed = _v(service.find("SVC.observation_dttm"))
        role = _v(service.find("SVC.role_cd"))
        operator = _v(service.find("OPR/OPR.operator_id"))
        for index, obs in enumerate(service.iter("OBS"), start=1):
            patient = obs.getparent()
            patient_id = (
                _v(patient.find("PT.patient_id"))
                if patient is not None and patient.tag == "PT"
                else ""
            )
            code_element = obs.find("OBS.observation_id")
            value_element = obs.find("OBS.value")
            code = _v(code_element)
            if not code:
                raise ParseError(
                    "OBS.observation_id is missing or empty",
                    location=f"{observation.message_type}/SVC/OBS[{index}]/OBS.observation_id",
                )
            results.append(
                {
                    "sequence": str(index),
                    "patient_id": patient_id,
                    "specimen_id": "",
                    "specimen_type": "",
                    "test_code": code,
                    "test_system": str(code_element.get("SN") or "")
                    if code_element is not None
                    else "",
                    "test_name": code,
                    "value": _v(value_element),
                    "unit": str(value_element.get("U") or "") if value_element is not None else "",
                    "reference_range": _v(obs.find("OBS.normal_lo-hi_limit")),
                    "flag": _v(obs.find("OBS.interpretation_cd")),
                    "status": "F",
                    "operator": operator,
                    # POCT1-A2 has no separate collection time: the test runs on a sample taken
                    # moments before, and SVC.observation_dttm is when it was observed.
                    "collected": observed,
                    "resulted": observed or created,
                    "device_id": identity.device_id,
                    "qc": observation.message_type == "OBS.R02"
                    or not patient_id
                    or role not in ("", "OBS"),
                    "comments": [_v(note) for note in obs.iterfind("NTE/NTE.text") if _v(note)],
                }
            )
    return pruned(
        {
            "protocol": "POCT1-A2",
            "message_type": observation.message_type,
            "control_id": observation.control_id,
            "sent": created,
            "terminated": True,
            "device": {
                "id": identity.device_id,
                "name": identity.model,
                "model": identity.model,
                "vendor": identity.vendor,
                "serial": identity.serial,
            },
            "digest": observation.digest(),
            "results": [r for r in results if r["value"] != ""],
        }
    )
