"""The Synthea set loads, and what was loaded answers searches as the raw Bundles say.

shared/data/fhir/synthea (samply/blaze test data, Apache-2.0): 2 batch Bundles (hospitals and
practitioners, created with ifNoneExist) and 120 patient transactions whose references are
urn:uuid fullUrls or conditional (`Practitioner?identifier=...|npi`), 92,114 resources. The set
is loaded once per database for this module, most Bundles through `FhirStore.transaction` and a
sample through `POST /fhir`, and every check reads it through the HTTP API or the store. The
expected answers are computed here from the raw Bundles.

`make test` loads the two batches and every 6th patient transaction (20 patients, 16,224
resources): the checks are the same, and the whole set took 2.5 minutes per database, the
suite's largest single cost. `GREENCHANNEL_TEST_SYNTHEA=all` loads the whole set (then the
module takes ~4 minutes of CPU); `bench/fhir_synthea_load.py` loads it for the figures.
"""

from __future__ import annotations

import bz2
import json
import os
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_store import FhirStore, migrate
from fhir_store.app import create_database
from tests.conftest import _postgres_database
from tests.fhir_store.conftest import every_entry, serve_fhir

pytestmark = pytest.mark.anyio

SYNTHEA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fhir" / "synthea"
SYNTHEA_ID = "https://github.com/synthetichealth/synthea"
NPI = "http://hl7.org/fhir/sid/us-npi"
LOINC = "http://loinc.org"
HTTP_SAMPLE = 6  # patient transactions sent through POST /fhir, spread over the set
WHOLE_SET = os.environ.get("GREENCHANNEL_TEST_SYNTHEA") == "all"
EVERY_NTH_PATIENT = 1 if WHOLE_SET else 6


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """One event loop for the module: the loaded store is shared by its tests."""
    return "asyncio"


@pytest.fixture(scope="module")
def raw_bundles() -> list[dict[str, Any]]:
    """The Synthea Bundles loaded, as read from their files, in load order: the two batches the
    patient transactions refer to (hospitals, practitioners), then the transactions by file
    name (every EVERY_NTH_PATIENT-th)."""
    if not SYNTHEA.is_dir():
        pytest.fail(f"shared data not found at {SYNTHEA}")
    paths = sorted(SYNTHEA.glob("*.json.bz2"), key=lambda path: (path.name[:2] != "0-", path.name))
    assert [path.name[:2] for path in paths[:2]] == ["0-", "0-"], paths[:2]
    paths = paths[:2] + paths[2::EVERY_NTH_PATIENT]
    bundles = []
    for path in paths:
        with bz2.open(path) as file:
            bundles.append(json.load(file))
    return bundles


@dataclass
class Loaded:
    """The loaded store, an HTTP client on it, and what the load answered."""

    store: FhirStore
    http: httpx.AsyncClient
    responses: list[dict[str, Any]]  # per Bundle, in load order
    stored: dict[str, str] = field(default_factory=dict)  # fullUrl -> "Type/id" as stored


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty database for the module, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('synthea') / 'fhir.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture(scope="module")
async def loaded(
    module_database_url: str, raw_bundles: list[dict[str, Any]]
) -> AsyncIterator[Loaded]:
    """The whole set loaded once: batches and most transactions in process, a sample over
    HTTP. A Bundle that fails fails every test of the module.

    The SQLite load validates every resource, as a client's writes are: the validator accepts
    all of Synthea's. Validation does not depend on the database and doubles the CPU of a
    load, which the test suite has little of, so the PostgreSQL load skips it."""
    database = create_database(module_database_url)
    await migrate(database)
    store = FhirStore(database, validate_structure=module_database_url.startswith("sqlite"))
    try:
        async with serve_fhir(store) as http:
            transactions = len(raw_bundles) - 2
            over_http = {2 + n * transactions // HTTP_SAMPLE for n in range(HTTP_SAMPLE)}
            responses = []
            for number, bundle in enumerate(raw_bundles):
                if number in over_http:
                    reply = await http.post("", json=bundle, timeout=120)
                    assert reply.status_code == 200, reply.text[:2000]
                    responses.append(reply.json())
                else:
                    responses.append(await store.transaction(bundle))
            loaded = Loaded(store, http, responses)
            for bundle, response in zip(raw_bundles, responses, strict=True):
                for entry, answer in zip(bundle["entry"], response["entry"], strict=True):
                    location = answer["response"]["location"]
                    loaded.stored[entry["fullUrl"]] = location.split("/_history/")[0]
            yield loaded
    finally:
        await store.aclose()
        await database.dispose()


def raw_resources(raw_bundles: list[dict[str, Any]], resource_type: str) -> list[dict[str, Any]]:
    return [
        entry["resource"]
        for bundle in raw_bundles
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == resource_type
    ]


def synthea_id(resource: dict[str, Any]) -> str | None:
    """The Synthea identifier of a resource (the id it had in the raw Bundle)."""
    for identifier in resource.get("identifier", []):
        if identifier.get("system") == SYNTHEA_ID:
            return str(identifier["value"])
    return None


async def search_all(http: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    found = await every_entry(http, path, {"_count": "500", **params})
    return [e["resource"] for e in found if e["search"]["mode"] == "match"]


async def count(http: httpx.AsyncClient, path: str, **params: str) -> int:
    response = await http.get(path, params={**params, "_summary": "count"})
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_every_entry_is_created_or_matched_by_its_if_none_exist(
    loaded: Loaded, raw_bundles: list[dict[str, Any]]
) -> None:
    assert len(loaded.stored) == sum(len(bundle["entry"]) for bundle in raw_bundles)
    assert len(loaded.stored) == (92_114 if WHOLE_SET else 16_224)
    seen: set[tuple[str, str]] = set()  # the ifNoneExist conditions of earlier entries
    for bundle, response in zip(raw_bundles, loaded.responses, strict=True):
        assert response["type"] == f"{bundle['type']}-response"
        for entry, answer in zip(bundle["entry"], response["entry"], strict=True):
            condition = entry["request"].get("ifNoneExist")
            key = (entry["resource"]["resourceType"], condition or "")
            expected = "200 OK" if condition and key in seen else "201 Created"
            assert answer["response"]["status"] == expected, (entry["fullUrl"], answer)
            if condition:
                seen.add(key)


async def test_resource_counts_per_type_match_the_raw_bundles(
    loaded: Loaded, raw_bundles: list[dict[str, Any]]
) -> None:
    expected: Counter[str] = Counter()
    conditions: set[tuple[str, str]] = set()
    for bundle in raw_bundles:
        for entry in bundle["entry"]:
            resource_type = entry["resource"]["resourceType"]
            condition = entry["request"].get("ifNoneExist")
            if condition is None or (resource_type, condition) not in conditions:
                expected[resource_type] += 1
            if condition is not None:
                conditions.add((resource_type, condition))
    found = {
        resource_type: await count(loaded.http, f"/{resource_type}") for resource_type in expected
    }
    assert found == dict(expected)
    assert sum(found.values()) == len(set(loaded.stored.values()))


async def test_patients_by_family_name_match_the_raw_bundles(
    loaded: Loaded, raw_bundles: list[dict[str, Any]]
) -> None:
    patients = raw_resources(raw_bundles, "Patient")
    by_family: defaultdict[str, set[str]] = defaultdict(set)
    for patient in patients:
        for name in patient.get("name", []):
            if "family" in name:
                by_family[name["family"]].add(str(synthea_id(patient)))
    families = sorted(by_family)
    assert len(families) > 20  # 31 of the subset, 134 of the whole set
    for family in families:
        # string search is a case-insensitive starts-with: every family name starting so counts
        expected = set().union(
            *(ids for other, ids in by_family.items() if other.lower().startswith(family.lower()))
        )
        found = await search_all(loaded.http, "/Patient", family=family)
        assert {synthea_id(patient) for patient in found} == expected, family


async def test_observations_per_patient_and_loinc_code_match_the_raw_bundles(
    loaded: Loaded, raw_bundles: list[dict[str, Any]]
) -> None:
    observations = raw_resources(raw_bundles, "Observation")
    per_patient_code: Counter[tuple[str, str]] = Counter()
    for observation in observations:
        codes = {c["code"] for c in observation["code"]["coding"] if c.get("system") == LOINC}
        for code in codes:
            per_patient_code[(observation["subject"]["reference"], code)] += 1
    common_codes = [
        code for code, _ in Counter(code for _, code in per_patient_code).most_common(4)
    ]
    ten = raw_bundles[2 :: max(1, (len(raw_bundles) - 2) // 10)]  # ten patients, spread out
    patient_urls = [bundle["entry"][0]["fullUrl"] for bundle in ten]
    checked = 0
    for patient_url in patient_urls:
        patient = loaded.stored[patient_url]
        for code in common_codes:
            expected = per_patient_code[(patient_url, code)]
            found = await count(
                loaded.http, "/Observation", subject=patient, code=f"{LOINC}|{code}"
            )
            assert found == expected, (patient, code)
            checked += expected
    assert checked > 100
    total = sum(n for (_, code), n in per_patient_code.items() if code == common_codes[0])
    assert await count(loaded.http, "/Observation", code=f"{LOINC}|{common_codes[0]}") == total


async def test_encounters_in_a_date_range_match_the_raw_bundles(
    loaded: Loaded, raw_bundles: list[dict[str, Any]]
) -> None:
    # The R4 prefixes on ranges: `ge2015-01-01` matches a period reaching past that day
    # (above the search range) or lying within it; `lt2016-01-01` one starting before 2016.
    # Synthea periods are to the second, so a period covers [start, end + 1 s).
    day_start, day_end = datetime(2015, 1, 1, tzinfo=UTC), datetime(2015, 1, 2, tzinfo=UTC)
    before = datetime(2016, 1, 1, tzinfo=UTC)
    expected = set()
    for encounter in raw_resources(raw_bundles, "Encounter"):
        start = instant(encounter["period"]["start"])
        end = instant(encounter["period"]["end"]) + timedelta(seconds=1)
        within = start >= day_start and end <= day_end
        if (end > day_end or within) and start < before:
            expected.add(synthea_id(encounter))
    assert len(expected) > 20  # 24 of the subset, 294 of the whole set
    found = await search_all(loaded.http, "/Encounter", date=["ge2015-01-01", "lt2016-01-01"])
    assert {synthea_id(encounter) for encounter in found} == expected


async def test_conditional_references_point_to_the_practitioner_with_that_npi(
    loaded: Loaded, raw_bundles: list[dict[str, Any]]
) -> None:
    practitioners = await search_all(loaded.http, "/Practitioner")
    npi_of = {
        f"Practitioner/{p['id']}": i["value"]
        for p in practitioners
        for i in p["identifier"]
        if i["system"] == NPI
    }
    checked = 0
    for bundle in raw_bundles[2:]:
        for entry in bundle["entry"]:
            raw = entry["resource"]
            if raw["resourceType"] != "Encounter":
                continue
            stored_type, stored_id = loaded.stored[entry["fullUrl"]].split("/")
            encounter = await loaded.store.read(stored_type, stored_id)
            for raw_participant, participant in zip(
                raw["participant"], encounter["participant"], strict=True
            ):
                condition = raw_participant["individual"]["reference"]
                assert condition.startswith(f"Practitioner?identifier={NPI}|")
                npi = condition.rsplit("|", 1)[1]
                assert npi_of[participant["individual"]["reference"]] == npi
                checked += 1
            assert encounter["subject"]["reference"] == loaded.stored[raw["subject"]["reference"]]
    assert checked == len(raw_resources(raw_bundles[2:], "Encounter"))


async def test_included_practitioners_are_those_of_the_patients_encounters(
    loaded: Loaded, raw_bundles: list[dict[str, Any]]
) -> None:
    bundle = raw_bundles[2 + (len(raw_bundles) - 2) // 3]
    patient = loaded.stored[bundle["entry"][0]["fullUrl"]]
    npis = {
        participant["individual"]["reference"].rsplit("|", 1)[1]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == "Encounter"
        for participant in entry["resource"]["participant"]
    }
    response = await loaded.http.get(
        "/Encounter",
        params={"subject": patient, "_include": "Encounter:participant", "_count": "1000"},
    )
    assert response.status_code == 200, response.text
    included = [e["resource"] for e in response.json()["entry"] if e["search"]["mode"] == "include"]
    assert {i["value"] for p in included for i in p["identifier"] if i["system"] == NPI} == npis
