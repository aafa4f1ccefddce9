"""Parsing of what clients send: Bundle entries, request URLs, search queries and ETags."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from fhir_store._json import JSONDecodeError, loads
from fhir_store._resources import check_id, check_resource, check_type
from fhir_store.errors import FhirStoreError, InvalidRequest, NotSupported

__all__ = [
    "Entry",
    "IdentifierToken",
    "parse_bundle",
    "parse_condition",
    "parse_etag",
    "parse_identifier",
    "parse_json",
    "parse_query_string",
    "parse_search_query",
    "too_deeply_nested",
]

Method = Literal["GET", "POST", "PUT", "DELETE"]
BundleType = Literal["transaction", "batch"]

SUPPORTED_SEARCH_PARAMETERS = ("identifier",)


@dataclass(frozen=True, slots=True)
class IdentifierToken:
    """One identifier search value; `system` None with `any_system` False means "no system"."""

    system: str | None
    value: str
    any_system: bool = False

    def matches(self, system: str | None, value: str) -> bool:
        """Whether an identifier (system, value) matches this search value."""
        return value == self.value and (self.any_system or system == self.system)


@dataclass(slots=True)
class Entry:
    """One Bundle entry's request, checked and split into its parts."""

    index: int
    method: Method
    resource_type: str
    resource_id: str | None = None
    condition: IdentifierToken | None = None  # conditional PUT/DELETE or POST ifNoneExist
    resource: dict[str, Any] | None = None
    full_url: str | None = None
    if_match: int | None = None

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


_CONSTANT = re.compile(r"[\s:,\[]?(-?NaN|-?Infinity)")


def parse_json(body: bytes) -> Any:
    """A request body as JSON: UTF-8 (a byte order mark is allowed), strict JSON (no NaN,
    Infinity or numbers beyond a double). InvalidRequest (400) says where it breaks: the byte,
    or the line and column."""
    skipped = len(codecs.BOM_UTF8) if body.startswith(codecs.BOM_UTF8) else 0
    try:
        return loads(memoryview(body)[skipped:])
    except JSONDecodeError as error:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as undecodable:
            raise InvalidRequest(
                f"the body is not UTF-8 text (byte {undecodable.start}); send FHIR JSON in UTF-8"
            ) from None
        if error.msg.startswith("depth limit"):
            raise too_deeply_nested() from None
        # What Python's json writes for the floats JSON lacks; error.pos counts characters.
        constant = _CONSTANT.match(text, max(0, (1 if skipped else 0) + error.pos - 1))
        if constant:
            raise InvalidRequest(
                f"the body is not valid JSON: {constant.group(1)} at line {error.lineno} column "
                f"{error.colno} is not a JSON number; send FHIR JSON"
            ) from None
        raise InvalidRequest(
            f"the body is not valid JSON: {error.msg} at line {error.lineno} column "
            f"{error.colno}; send a FHIR JSON resource"
        ) from None


def too_deeply_nested() -> InvalidRequest:
    """The error for JSON nested deeper than the server can follow."""
    return InvalidRequest(
        "the body is JSON nested too deeply to process (hundreds of levels); FHIR resources "
        "nest a few dozen levels at most: check how the body is built"
    )


def parse_bundle(bundle: object) -> tuple[BundleType, list[Entry]]:
    """Check a transaction or batch Bundle and parse its entries' requests."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidRequest(
            "expected a Bundle resource of type transaction or batch", expression=["Bundle"]
        )
    bundle_type = bundle.get("type")
    if bundle_type not in ("transaction", "batch"):
        raise InvalidRequest(
            "only transaction and batch Bundles can be submitted; set Bundle.type",
            expression=["Bundle.type"],
        )
    raw_entries = bundle.get("entry", [])
    if not isinstance(raw_entries, list):
        raise InvalidRequest("Bundle.entry must be a list", expression=["Bundle.entry"])
    entries: list[Entry] = []
    for index, raw in enumerate(raw_entries):
        try:
            entries.append(_parse_entry(index, raw))
        except FhirStoreError as error:
            raise error.with_prefix(f"Bundle.entry[{index}]") from None
    return ("transaction" if bundle_type == "transaction" else "batch"), entries


def parse_identifier(text: str) -> IdentifierToken:
    """Parse an identifier search value: `system|value`, `|value` (no system) or `value`."""
    if "|" not in text:
        if not text:
            raise InvalidRequest("the identifier search value is empty", expression=["identifier"])
        return IdentifierToken(None, text, any_system=True)
    system, _, value = text.partition("|")
    if not value:
        raise NotSupported(
            "identifier search by system alone (`system|`) is not supported yet; give a value",
            expression=["identifier"],
        )
    return IdentifierToken(system or None, value)


def parse_search_query(pairs: list[tuple[str, str]]) -> IdentifierToken:
    """Turn decoded query pairs into the one search this store supports yet: `identifier`."""
    token: IdentifierToken | None = None
    for name, value in pairs:
        if name != "identifier":
            raise NotSupported(
                f"search parameter '{name}' is not supported yet; this server supports only "
                "identifier",
                expression=[name],
            )
        if token is not None:
            raise NotSupported(
                "more than one identifier parameter is not supported yet", expression=[name]
            )
        if "," in value:
            raise NotSupported(
                "several identifier values (comma, OR) are not supported yet",
                expression=[name],
            )
        token = parse_identifier(value)
    if token is None:
        raise NotSupported(
            "a search needs the identifier parameter (the only one supported yet)",
            expression=["identifier"],
        )
    return token


def parse_query_string(query: str) -> list[tuple[str, str]]:
    """Split `a=b&c=d` into decoded pairs; unlike parse_qsl a `+` stays a plus sign."""
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((unquote(name), unquote(value)))
    return pairs


def parse_etag(value: str, *, expression: str = "If-Match") -> int:
    """The version number in an ETag such as `W/"3"` or `"3"`."""
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit():
        raise InvalidRequest(
            'expected a version ETag such as W/"3"', expression=[expression], status=400
        )
    return int(text)


def _parse_entry(index: int, raw: object) -> Entry:
    if not isinstance(raw, dict):
        raise InvalidRequest("an entry must be a JSON object")
    request = raw.get("request")
    if not isinstance(request, dict):
        raise InvalidRequest("the entry has no request element", expression=["request"])
    method = request.get("method")
    url = request.get("url")
    if method not in ("GET", "POST", "PUT", "DELETE"):
        raise NotSupported(
            "request.method must be GET, POST, PUT, DELETE or PATCH (HEAD is not supported yet)",
            expression=["request.method"],
        )
    if not isinstance(url, str) or not url:
        raise InvalidRequest("request.url is missing", expression=["request.url"])
    if "://" in url or url.startswith("/"):
        raise NotSupported(
            "request.url must be relative, such as Patient/123 or Patient?identifier=...",
            expression=["request.url"],
        )
    path, _, query = url.partition("?")
    parts = path.split("/")
    resource_type = parts[0]
    try:
        check_type(resource_type)
    except FhirStoreError as error:
        raise InvalidRequest(error.message, expression=["request.url"]) from None
    if len(parts) > 2:
        raise NotSupported(
            "request.url may name a type or a type and id; history and operations are not "
            "supported yet",
            expression=["request.url"],
        )
    resource_id = parts[1] if len(parts) == 2 else None
    if resource_id is not None:
        check_id(resource_id, expression="request.url")
    entry = Entry(index=index, method=method, resource_type=resource_type, resource_id=resource_id)
    full_url = raw.get("fullUrl")
    entry.full_url = full_url if isinstance(full_url, str) and full_url else None
    if method in ("POST", "PUT"):
        entry.resource = check_resource(raw.get("resource"), expected_type=resource_type)
    if query:
        if method not in ("PUT", "DELETE", "GET") or resource_id is not None:
            raise InvalidRequest(
                "a query in request.url is allowed only for conditional PUT, DELETE or a search",
                expression=["request.url"],
            )
        entry.condition = parse_condition(query, "request.url")
    elif method in ("PUT", "DELETE") and resource_id is None:
        raise InvalidRequest(
            f"{method} needs an id or a condition in request.url (Type/id or Type?identifier=...)",
            expression=["request.url"],
        )
    elif method == "POST" and resource_id is not None:
        raise InvalidRequest(
            "POST creates with a server-assigned id; use PUT Type/id to choose the id",
            expression=["request.url"],
        )
    if_none_exist = request.get("ifNoneExist")
    if isinstance(if_none_exist, str) and if_none_exist:
        if method != "POST":
            raise InvalidRequest(
                "ifNoneExist is only allowed with POST", expression=["request.ifNoneExist"]
            )
        entry.condition = parse_condition(if_none_exist, "request.ifNoneExist")
    if_match = request.get("ifMatch")
    if isinstance(if_match, str) and if_match:
        entry.if_match = parse_etag(if_match, expression="request.ifMatch")
    if method == "GET" and resource_id is None and entry.condition is None:
        raise NotSupported(
            "GET entries must read Type/id or search Type?identifier=...",
            expression=["request.url"],
        )
    return entry


def parse_condition(query: str, expression: str) -> IdentifierToken:
    """Parse a condition (ifNoneExist, If-None-Exist, a conditional URL's query); it may repeat
    the type: `Patient?identifier=...`. Errors point at `expression`."""
    _, _, query = query.rpartition("?")
    try:
        return parse_search_query(parse_query_string(query))
    except FhirStoreError as error:
        raise type(error)(error.message, expression=[expression], status=error.status) from None
