"""The installed output checks (`greenchannel.output_checks`: here the FHIR structure) run on each
mapping's output in the processing worker, on SQLite and PostgreSQL: an invalid output puts the
message in ERROR at the transform stage, naming the element and never a value, nothing is queued
or stored, and it is reprocessed once the mapping is fixed; a valid one flows into the store.

The engine knows no FHIR; this test joins it to the real FHIR destination the way `serve` does,
with the real entry points in a real worker process (`processing_workers=1`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from adapters.fhir import FhirDestinationFactory
from engine import journal
from engine.channels import load_channel_text
from engine.connectors import ConnectorContext, Delivered, Outbound
from engine.database import create_database_engine, migrate
from engine.errors import RejectedDeliveryError
from engine.journal import DeliveryAttempt, DestinationDelivery, JournalMessage
from engine.mapping import make_id
from engine.pipeline import MAX_PROBLEMS, compile_channel, process
from engine.plugins import load_plugins
from engine.runtime import Runtime
from engine.stats import Stats
from engine.testing import wait_until
from fhir_store import FhirStore, NotFound, output_issues
from fhir_store import migrate as migrate_fhir
from tests.net import free_port
from tests.net import mllp_exchange as send

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "mappings" / "tests" / "samples" / "adt-a04.hl7"
CST = timezone(timedelta(hours=8))
# A realistic slip: the HL7 date copied as it is (YYYYMMDD) instead of through date().
GOOD_LINE = "birthDate: ${date(PID-7)}"
BAD_LINE = "birthDate: ${PID-7}"


def sample_patient() -> tuple[str, str]:
    """The sample's Patient id (as the ADT mapping makes it) and its raw PID-7, from the input."""
    pid = SAMPLE.read_bytes().decode().split("\r")[2].split("|")
    assert pid[0] == "PID"
    mrn, authority = pid[3].split("~")[0].split("^")[0], pid[3].split("~")[0].split("^")[3]
    patient_id = make_id(authority, mrn)
    assert patient_id is not None
    return patient_id, pid[7]


class Engine:
    """A runtime with the real plugins and one worker process, on a copy of the mappings."""

    def __init__(self, runtime: Runtime, database: AsyncEngine, tmp_path: Path) -> None:
        self.runtime = runtime
        self.database = database
        self.mappings = tmp_path / "mappings"
        self.port = free_port()
        self.sessions = async_sessionmaker(database, expire_on_commit=False)

    def write_mapping(self, *, bad: bool) -> None:
        path = self.mappings / "hl7v2" / "adt.yaml"
        text = (ROOT / "mappings" / "hl7v2" / "adt.yaml").read_text(encoding="utf-8")
        assert GOOD_LINE in text
        path.write_text(text.replace(GOOD_LINE, BAD_LINE) if bad else text, encoding="utf-8")

    async def deploy(self, check_output: bool = True) -> None:
        text = (ROOT / "channels" / "his-adt.yaml").read_text(encoding="utf-8")
        text = text.replace("port: 2575", f"port: {self.port}\n  host: 127.0.0.1")
        text = text.replace(
            "  mapping: hl7v2/adt.yaml",
            f"  mapping: hl7v2/adt.yaml\n  check_output: {str(check_output).lower()}",
        )
        plugins = load_plugins()
        channel = load_channel_text(text, plugins, file="his-adt.yaml")
        compiled = compile_channel(
            channel,
            mappings_dir=self.mappings,
            plugins=plugins,
            default_charset="utf-8",
            default_tz=CST,
        )
        await self.runtime.deploy(compiled)

    async def send(self) -> None:
        reply = await asyncio.to_thread(send, self.port, SAMPLE.read_bytes())
        assert b"MSA|AA" in reply

    async def messages(self) -> list[JournalMessage]:
        async with self.sessions() as session:
            return list(await session.scalars(select(JournalMessage).order_by(JournalMessage.id)))

    async def deliveries(self, message_id: int) -> tuple[int, int]:
        """How many destination deliveries, and attempts at them, the message has."""
        async with self.sessions() as session:
            deliveries = select(DestinationDelivery.id).where(
                DestinationDelivery.message_id == message_id
            )
            queued = await session.scalar(select(func.count()).select_from(deliveries.subquery()))
            attempts = await session.scalar(
                select(func.count()).where(DeliveryAttempt.delivery_id.in_(deliveries))
            )
            return int(queued or 0), int(attempts or 0)

    async def patient(self, patient_id: str) -> dict[str, Any] | None:
        store = FhirStore(self.database)
        try:
            return await store.read("Patient", patient_id)
        except NotFound:
            return None
        finally:
            await store.aclose()


@pytest.fixture
async def engine(database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    database = create_database_engine(database_url)
    await migrate(database)
    await migrate_fhir(database)  # `serve` runs it through the migrations entry point
    runtime = Runtime(
        database=database,
        data_dir=tmp_path,
        stats=Stats(),
        now=lambda: datetime.now(tz=CST),
        authorize=None,
        processing_workers=1,
    )
    started = asyncio.Event()
    task = asyncio.create_task(runtime.run(started))
    await started.wait()
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    try:
        yield Engine(runtime, database, tmp_path)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await database.dispose()


async def test_invalid_output_is_an_error_at_the_transform_stage_then_reprocessed(
    engine: Engine,
) -> None:
    patient_id, birth_date = sample_patient()
    engine.write_mapping(bad=True)
    await engine.deploy()
    await engine.send()

    async def settled() -> bool:
        return [m.status for m in await engine.messages()] == ["error"]

    await wait_until(settled)
    (message,) = await engine.messages()
    assert message.error is not None
    assert "fhir-structure" in message.error and "Patient.birthDate" in message.error
    assert birth_date not in message.error  # the element and the reason, never the value
    # Refused before any queue: no delivery, no attempt, nothing in the store.
    assert await engine.deliveries(message.id) == (0, 0)
    assert await engine.patient(patient_id) is None

    engine.write_mapping(bad=False)
    await engine.deploy()
    async with engine.sessions() as session, session.begin():
        await journal.reprocess(session, message.id, datetime.now(tz=CST))
    engine.runtime.wake("his-adt")

    async def stored() -> bool:
        return await engine.patient(patient_id) is not None

    await wait_until(stored)
    patient = await engine.patient(patient_id)
    assert patient is not None
    expected = f"{birth_date[:4]}-{birth_date[4:6]}-{birth_date[6:8]}"
    assert patient["birthDate"] == expected


async def test_valid_output_flows_into_the_store(engine: Engine) -> None:
    patient_id, birth_date = sample_patient()
    engine.write_mapping(bad=False)
    await engine.deploy()
    await engine.send()

    async def sent() -> bool:
        return [m.status for m in await engine.messages()] == ["sent"]

    await wait_until(sent)
    patient = await engine.patient(patient_id)
    assert patient is not None and patient["birthDate"].replace("-", "") == birth_date


async def test_unchecked_output_is_refused_by_the_destination_instead(engine: Engine) -> None:
    # check_output: false — the FHIR destination validates on its own, as a delivery attempt.
    patient_id, _ = sample_patient()
    engine.write_mapping(bad=True)
    await engine.deploy(check_output=False)
    await engine.send()

    async def settled() -> bool:
        return [m.status for m in await engine.messages()] == ["error"]

    await wait_until(settled)
    (message,) = await engine.messages()
    assert await engine.deliveries(message.id) == (1, 1)
    assert await engine.patient(patient_id) is None


def _outbound(resource: dict[str, Any]) -> Outbound:
    return Outbound(
        message_id=1,
        channel="his-adt",
        destination="fhir-store",
        payload=json.dumps(resource).encode(),
        media_type="application/fhir+json",
        attempt=1,
    )


async def test_destination_trusts_payloads_the_worker_checked(
    database_url: str, tmp_path: Path
) -> None:
    """The contract: a destination told its payloads passed `output_issues` does not validate
    them again; told nothing, it does (and the store's REST API always does)."""
    database = create_database_engine(database_url)
    await migrate_fhir(database)
    factory = FhirDestinationFactory()
    config = factory.config_model.model_validate({"kind": "fhir"})
    # Deliberately invalid, to see which destination looks at the structure.
    resource = {"resourceType": "Patient", "id": "p1", "birthDate": "not-a-date"}
    assert output_issues(resource)
    plain = ConnectorContext(channel="his-adt", data_dir=tmp_path, database=database)
    unchecked = factory.build(config, plain)
    checked = factory.build(config, ConnectorContext(
        channel="his-adt", data_dir=tmp_path, database=database, checked_by=(output_issues,),
    ))  # fmt: skip
    try:
        with pytest.raises(RejectedDeliveryError, match="Patient.birthDate"):
            await unchecked.send(_outbound(resource))
        assert isinstance(await checked.send(_outbound(resource)), Delivered)
    finally:
        await unchecked.aclose()
        await checked.aclose()
        await database.dispose()


CHANNEL = """
name: his-adt
source: {kind: mllp, port: 2575}
transformer:
  mapping: hl7v2/adt.yaml
destinations:
  - name: store
    connector: {kind: fhir}
  - name: own-unchecked
    transformer: {mapping: hl7v2/adt.yaml, check_output: false}
    connector: {kind: fhir}
"""


def _compiled(text: str, checks: dict[str, Any]) -> Any:
    plugins = dataclasses.replace(load_plugins(), output_checks=checks)
    return compile_channel(
        load_channel_text(text, plugins, file="his-adt.yaml"),
        mappings_dir=ROOT / "mappings",
        plugins=plugins,
        default_charset="utf-8",
        default_tz=CST,
    )


def unchecked_output() -> Any:
    """What the ADT mapping makes of the sample, with no output check."""
    compiled = _compiled(CHANNEL, {})
    parser = compiled.plugins.parser("x-application/hl7-v2+er7")
    assert parser is not None and compiled.transform is not None
    payload = compiled.transform(parser(SAMPLE.read_bytes(), "utf-8"))
    assert payload is not None
    return json.loads(payload)


def test_each_destination_is_told_which_checks_its_payloads_passed() -> None:
    compiled = _compiled(CHANNEL, {"fhir-structure": output_issues})
    store, unchecked = compiled.destinations
    assert store.checked_by == (output_issues,)  # the channel's (checked) output
    assert unchecked.checked_by == ()  # its own mapping, not checked
    passthrough = _compiled(CHANNEL.replace("transformer:\n  mapping: hl7v2/adt.yaml\n", ""), {
        "fhir-structure": output_issues
    })  # fmt: skip
    assert passthrough.destinations[0].checked_by == ()  # the raw message: nothing checked


def test_a_failed_check_names_its_first_problems_and_counts_the_rest() -> None:
    def every_element(output: Any) -> list[str]:
        resource = output["entry"][0]["resource"]
        return [f"Patient.{key}: refused" for key in resource]

    compiled = _compiled(CHANNEL, {"picky": every_element})
    outcome = process(compiled, SAMPLE.read_bytes(), "x-application/hl7-v2+er7", None)
    assert outcome.status == "error" and not outcome.deliveries
    assert outcome.error is not None
    expected = every_element(unchecked_output())
    assert len(expected) > MAX_PROBLEMS
    assert "; ".join(expected[:MAX_PROBLEMS]) in outcome.error
    assert expected[MAX_PROBLEMS] not in outcome.error
    assert f"and {len(expected) - MAX_PROBLEMS} more" in outcome.error


def test_the_payload_is_the_outputs_json_even_a_number_beyond_64_bits() -> None:
    """A numeric result the LIS sent as 30 digits (a specimen barcode typed into the value,
    say) maps to an integer JSON writers handle differently: the payload still carries it, and
    the Chinese text stays UTF-8, not escaped."""
    lis = (ROOT / "mappings" / "tests" / "samples" / "lis-oru-troponin-utf8.hl7").read_bytes()
    digits = "123456789012345678901234567890"
    raw = lis.replace(b"||52.3|ng/L", b"||" + digits.encode() + b"|ng/L")
    channel = CHANNEL.replace("hl7v2/adt.yaml", "hl7v2/oru_lab.yaml")
    compiled = _compiled(channel, {})
    parser = compiled.plugins.parser("x-application/hl7-v2+er7")
    assert parser is not None and compiled.transform is not None
    payload = compiled.transform(parser(raw, "utf-8"))
    assert payload is not None
    values = [
        entry["resource"].get("valueQuantity", {}).get("value")
        for entry in json.loads(payload)["entry"]
    ]
    assert int(digits) in values
    assert "高敏肌钙蛋白I".encode() in payload
