"""What the pathway engine reads for one batch of change events, kept until its own writes make
it stale.

One ADT message changes a Patient and an Encounter of the same patient: each change read the
resource and asked the store for the patient's open cases (twice) and for the cases the
resource fed, so most of the subscriber's time went into the same few searches. Now the
subscriber reads, for a whole batch, the changed resources, the cases they fed and their
patients' open cases in a few searches (`Cases.prefetch`), and each change takes its answers
from here. Within a batch the subscriber is the only writer it knows of; every write through
`Records` forgets what it could have changed (any EpisodeOfCare: every patient's open cases; a
candidate: the cases fed by its sources; a resource: its prefetched version), so a remembered
answer is the one the store would give. A change by another writer meanwhile (the API, the HIS)
arrives as a change event of its own and is applied then, as it was before.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["BatchMemo"]


class BatchMemo:
    """Open cases by patient, fed cases by source reference and the changed resources, within
    one batch."""

    def __init__(self) -> None:
        self._open: dict[str, list[dict[str, Any]]] = {}
        self._fed: dict[str, set[str]] = {}
        self._read: dict[str, dict[str, Any]] = {}

    def take_resource(self, reference: str) -> dict[str, Any] | None:
        """The current version of `Type/id` read for the batch, once (a later event of the
        same resource reads it again)."""
        return self._read.pop(reference, None)

    def keep_resource(self, resource: dict[str, Any]) -> None:
        self._read[f"{resource['resourceType']}/{resource['id']}"] = resource

    def open_cases(self, patient: str) -> list[dict[str, Any]] | None:
        found = self._open.get(patient)
        return copy.deepcopy(found) if found is not None else None  # callers edit what they get

    def keep_open_cases(self, patient: str, cases: list[dict[str, Any]]) -> None:
        self._open[patient] = copy.deepcopy(cases)

    def fed_by(self, reference: str) -> set[str] | None:
        found = self._fed.get(reference)
        return set(found) if found is not None else None

    def keep_fed_by(self, reference: str, cases: Iterable[str]) -> None:
        self._fed[reference] = set(cases)

    def written(self, resource: Mapping[str, Any]) -> None:
        """Forget what a write of `resource` may change."""
        kind = resource.get("resourceType")
        self._read.pop(f"{kind}/{resource.get('id')}", None)
        if kind == "EpisodeOfCare":
            self._open.clear()  # a merge moves a case to another patient: forget them all
        elif kind == "Observation":
            for link in resource.get("derivedFrom") or []:
                if isinstance(link, Mapping):
                    self._fed.pop(str(link.get("reference")), None)

    def forget(self) -> None:
        self._open.clear()
        self._fed.clear()
        self._read.clear()
