"""One hardened lxml parser for every ECG XML format: no DTD, no entity resolution, no network,
no huge trees. A document that declares a DTD or entities is refused, never expanded."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo

from lxml import etree

from devices.ecg.errors import UnreadableEcgError, UnsafeXmlError

__all__ = ["DEFAULT_TZ", "MAX_XML_BYTES", "aware", "children", "first", "parse_xml", "text_of"]

MAX_XML_BYTES = 64 * 1024 * 1024  # a 10 s, 12-lead tracing at 1 kHz as text is about 2 MB
_DECLARATIONS = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_xml(data: bytes, *, file: str) -> etree._Element:
    """The document's root with namespaces stripped from tag names (ECG vendors disagree on
    them and nothing here depends on them). UnsafeXmlError for DTDs and entities."""
    if len(data) > MAX_XML_BYTES:
        raise UnreadableEcgError(
            f"the XML is {len(data)} bytes, more than the {MAX_XML_BYTES} an ECG can need",
            file=file,
        )
    if _declares_dtd(data):
        raise UnsafeXmlError(
            "the XML declares a DTD or entities (refused, not resolved)", file=file
        )
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        line = f" at line {exc.lineno}" if exc.lineno else ""
        raise UnreadableEcgError(f"not well-formed XML{line}: {exc.msg}", file=file) from None
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.doctype:
        raise UnsafeXmlError(
            "the XML declares a DTD or entities (refused, not resolved)", file=file
        )
    for element in root.iter():
        if not isinstance(element.tag, str):  # an entity reference left unresolved
            raise UnsafeXmlError("the XML uses an entity reference (not resolved)", file=file)
        element.tag = etree.QName(element).localname
    return root


def _declares_dtd(data: bytes) -> bool:
    """A quick look before parsing, in the encodings XML allows (UTF-8 and UTF-16 both ways)."""
    head = data[:65536]
    if _DECLARATIONS.search(head):
        return True
    for codec in ("utf-16-le", "utf-16-be"):
        text = head[: len(head) // 2 * 2].decode(codec, "ignore").encode("ascii", "ignore")
        if _DECLARATIONS.search(text):
            return True
    return False


def first(element: etree._Element, path: str) -> etree._Element | None:
    """The first element at `path` (ElementTree syntax, e.g. `.//samplingrate`), or None."""
    found = element.find(path)
    return found if found is not None else None


def children(element: etree._Element, path: str) -> list[etree._Element]:
    return list(element.iterfind(path))


def text_of(element: etree._Element, path: str) -> str | None:
    """The stripped text at `path`; None when the element is missing or empty."""
    found = element.find(path)
    if found is None or found.text is None:
        return None
    text = str(found.text).strip()
    return text or None


def aware(moment: datetime, tz: tzinfo) -> datetime:
    """A device time without offset takes the channel's zone; with one, it is kept."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


DEFAULT_TZ = timezone(timedelta(hours=8))
