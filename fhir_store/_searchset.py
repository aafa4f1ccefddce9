"""The searchset Bundle of a search page: match and include entries, self and next links,
an OperationOutcome entry for ignored parameters, `_elements` and `_summary` subsetting."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from fhir_store._json import loads
from fhir_store._search import SearchPage, SearchQuery
from fhir_store._summary import summarise, tag_subsetted

__all__ = ["search_bundle"]


def search_bundle(query: SearchQuery, page: SearchPage, url: str) -> dict[str, Any]:
    """The searchset Bundle of a page, with self and next links and an OperationOutcome entry
    listing the ignored parameters."""
    entries: list[dict[str, Any]] = []
    for mode, contents in (("match", page.contents), ("include", page.included)):
        for content in contents:
            resource = loads(content)
            if mode == "match" and query.elements:
                resource = _subset(resource, query.elements)
            if query.summary is not None:
                resource = summarise(resource, query.summary)
            entries.append(
                {
                    "fullUrl": f"{resource['resourceType']}/{resource['id']}",
                    "resource": resource,
                    "search": {"mode": mode},
                }
            )
    if query.ignored:
        entries.append(
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "warning",
                            "code": "not-supported",
                            "diagnostics": f"search parameter '{name}' is unknown or not "
                            "supported here and was ignored",
                            "expression": [name],
                        }
                        for name in query.ignored
                    ],
                },
                "search": {"mode": "outcome"},
            }
        )
    # the self link says what was searched: the parameters used, not the ignored ones
    used = [(name, value) for name, value in query.pairs if name not in query.ignored]
    links = [{"relation": "self", "url": _with_pairs(url, used)}]
    if page.next_cursor is not None:
        links.append({"relation": "next", "url": _with_cursor(url, query, page.next_cursor)})
    elif page.more:  # a page by offset (`$everything`), not by cursor
        links.append(
            {"relation": "next", "url": _with_offset(url, query, query.offset + query.count)}
        )
    if page.previous_cursor is not None:
        links.append(
            {"relation": "previous", "url": _with_cursor(url, query, page.previous_cursor)}
        )
    elif query.offset and page.next_cursor is None:
        previous = max(0, query.offset - query.count)
        links.append({"relation": "previous", "url": _with_offset(url, query, previous)})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "searchset",
    }
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    if entries or not query.summary_count:
        bundle["entry"] = entries
    return bundle


def _subset(resource: dict[str, Any], elements: tuple[str, ...]) -> dict[str, Any]:
    """`_elements`: the listed top-level elements (a choice element by its base name, with
    primitive extensions) and resourceType, id and meta, tagged SUBSETTED."""
    kept = {
        key: value
        for key, value in resource.items()
        if key in ("resourceType", "id", "meta") or _listed(key.removeprefix("_"), elements)
    }
    return tag_subsetted(kept)


def _listed(key: str, elements: tuple[str, ...]) -> bool:
    return any(
        key == name or (key.startswith(name) and key[len(name) : len(name) + 1].isupper())
        for name in elements
    )


def _with_cursor(url: str, query: SearchQuery, cursor: str) -> str:
    """The search's URL for the page at `cursor` (keyset paging: `_paging`)."""
    dropped = ("_offset", "_count", "_cursor")
    pairs = [(name, value) for name, value in query.pairs if name not in dropped]
    pairs += [("_count", str(query.count)), ("_cursor", cursor)]
    return _with_pairs(url, pairs)


def _with_offset(url: str, query: SearchQuery, offset: int) -> str:
    """The search's URL for the page starting at `offset` (offset paging)."""
    dropped = ("_offset", "_count", "_cursor")
    pairs = [(name, value) for name, value in query.pairs if name not in dropped]
    pairs += [("_count", str(query.count)), ("_offset", str(offset))]
    return _with_pairs(url, pairs)


def _with_pairs(url: str, pairs: list[tuple[str, str]]) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(pairs), ""))
