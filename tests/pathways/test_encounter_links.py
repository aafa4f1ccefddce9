"""A case link on a visit is a change to the HIS's Encounter: it must never write back an older
version of the visit over a newer one (the HIS's transfer or discharge), whatever the timing."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_store import FhirStore
from pathways.encounter_links import link_encounter
from pathways.records import Records
from pathways.shapes import Note
from pathways.vocabulary import CASE_LINK_EXTENSION
from tests.pathways import resources as r
from tests.pathways.conftest import CST

pytestmark = pytest.mark.anyio

CASE = {
    "resourceType": "EpisodeOfCare",
    "id": "case1",
    "status": "active",
    "patient": {"reference": "Patient/p1"},
    "period": {"start": "2026-11-25T08:30:00+08:00"},
}
DISCHARGE = {"status": "finished", "period": {"start": "2026-11-25T08:28:00+08:00",
                                              "end": "2026-11-25T12:00:00+08:00"}}  # fmt: skip


class HisWritesFirst(Records):
    """Records on which the HIS discharges the visit just before the engine's first write
    (between the engine's read of the visit and its write): the race a busy feed makes."""

    def __init__(self, store: FhirStore) -> None:
        super().__init__(store, CST)
        self.raced = False

    async def write(self, resource: dict[str, Any], note: Note, **options: Any) -> dict[str, Any]:
        if not self.raced and resource["resourceType"] == "Encounter":
            self.raced = True
            await self.store.update("Encounter", "v1", r.ed_visit() | DISCHARGE)
        return await super().write(resource, note, **options)


async def test_a_discharge_written_during_the_link_is_kept_and_the_visit_linked(
    store: FhirStore,
) -> None:
    await store.update("Patient", "p1", r.patient())
    await store.update("EpisodeOfCare", "case1", CASE)
    await store.update("Encounter", "v1", r.ed_visit())
    admitted = await store.read("Encounter", "v1")
    records = HisWritesFirst(store)

    await link_encounter(records, CASE, admitted, lookback_h=24)

    assert records.raced
    visit = await store.read("Encounter", "v1")
    assert visit["status"] == "finished"  # the discharge stays
    assert visit["period"]["end"] == "2026-11-25T12:00:00+08:00"
    assert [link["reference"] for link in visit["episodeOfCare"]] == ["EpisodeOfCare/case1"]
    assert visit["episodeOfCare"][0]["extension"][0]["url"] == CASE_LINK_EXTENSION
    assert visit["meta"]["versionId"] == "3"  # admitted, discharged, linked
