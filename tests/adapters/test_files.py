"""The file source and destination, on a real temporary directory."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.files import (
    FileDestination,
    FileDestinationFactory,
    FileSource,
    FileSourceFactory,
    split_hl7_batch,
)
from engine.channels import load_channel_text
from engine.connectors import CHINA_STANDARD_TIME, ConnectorContext, Inbound, Outbound, Receipt
from engine.errors import ConfigError, FramingError, RetryableDeliveryError
from engine.plugins import load_plugins

HL7_MEDIA_TYPE = "x-application/hl7-v2+er7"
OLD = time.time() - 3600  # an mtime well past any min_age_s


def hl7(control_id: str) -> bytes:
    return (
        b"MSH|^~\\&|LIS|ED|GC|ED|20261125173601+0800||ORU^R01|"
        + control_id.encode()
        + b"|P|2.5.1\rOBX|1|NM|10839-9^TNI||0.5|ng/mL\r"
    )


@dataclass
class Journal:
    """Stands in for the engine's accept: records each Inbound, dedups on dedup_key."""

    directory: Path | None = None
    inbounds: list[Inbound] = field(default_factory=list)
    present_at_accept: list[bool] = field(default_factory=list)
    keys: dict[str, int] = field(default_factory=dict)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def accept(self, inbound: Inbound) -> Receipt:
        self.inbounds.append(inbound)
        async with self.arrived:
            self.arrived.notify_all()
        if self.directory is not None:
            name = inbound.origin.rsplit("/", 1)[1]
            self.present_at_accept.append((self.directory / name).exists())
        if inbound.dedup_key is not None and inbound.dedup_key in self.keys:
            return Receipt(self.keys[inbound.dedup_key], duplicate=True)
        message_id = len(self.inbounds)
        if inbound.dedup_key is not None:
            self.keys[inbound.dedup_key] = message_id
        return Receipt(message_id, duplicate=False)

    async def wait_for(self, count: int) -> None:
        async with self.arrived:
            await self.arrived.wait_for(lambda: len(self.inbounds) >= count)


@pytest.fixture
def context(tmp_path: Path) -> ConnectorContext:
    # The engine is never connected: connectors get it but these do not use it.
    database = create_async_engine("sqlite+aiosqlite://")
    return ConnectorContext(channel="lab", data_dir=tmp_path, database=database)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def files_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.is_file())


def drop(directory: Path, name: str, content: bytes, mtime: float = OLD) -> Path:
    path = directory / name
    path.write_bytes(content)
    os.utime(path, (mtime, mtime))
    return path


async def started(context: ConnectorContext, **options: Any) -> FileSource:
    config = {"kind": "file", "directory": "inbox", "media_type": HL7_MEDIA_TYPE, **options}
    source = FileSourceFactory().build(config, context)
    await source.start()
    return source


# --- source -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_files_are_journalled_in_name_order_then_moved(
    context: ConnectorContext, inbox: Path
) -> None:
    for name in ("b.hl7", "c.hl7", "a.hl7"):
        drop(inbox, name, hl7(name))
    drop(inbox, "notes.txt", b"not a message")
    journal = Journal(directory=inbox)
    source = await started(context, pattern="*.hl7", charset="gb18030")

    assert await source.poll_once(journal.accept) == 3

    assert [i.raw for i in journal.inbounds] == [hl7("a.hl7"), hl7("b.hl7"), hl7("c.hl7")]
    assert journal.present_at_accept == [True, True, True]  # moved only after accept
    assert files_in(inbox / "processed") == ["a.hl7", "b.hl7", "c.hl7"]
    assert files_in(inbox) == ["notes.txt"]
    first = journal.inbounds[0]
    assert first.media_type == HL7_MEDIA_TYPE
    assert first.charset == "gb18030"
    assert first.origin == f"file://{inbox / 'a.hl7'}"
    assert first.dedup_key is not None and first.dedup_key.startswith("a.hl7:")
    assert first.received_at.utcoffset() is not None


@pytest.mark.anyio
async def test_file_still_being_written_is_not_read_and_holds_back_later_names(
    context: ConnectorContext, inbox: Path
) -> None:
    young = drop(inbox, "a.hl7", hl7("A"), mtime=time.time())
    drop(inbox, "b.hl7", hl7("B"))
    journal = Journal()
    source = await started(context, min_age_s=60)

    assert await source.poll_once(journal.accept) == 0
    assert journal.inbounds == []

    os.utime(young, (OLD, OLD))  # the writer has finished
    assert await source.poll_once(journal.accept) == 2
    assert [i.raw for i in journal.inbounds] == [hl7("A"), hl7("B")]


@pytest.mark.anyio
async def test_oversized_file_is_journalled_as_problem_and_moved_to_error(
    context: ConnectorContext, inbox: Path
) -> None:
    content = b"x" * 5000
    drop(inbox, "big.hl7", content)
    journal = Journal()
    source = await started(context, max_file_bytes=1000, after_read="delete")

    await source.poll_once(journal.accept)

    (inbound,) = journal.inbounds
    assert inbound.raw == content[:1000]
    assert isinstance(inbound.problem, FramingError)
    assert (inbox / "error" / "big.hl7").read_bytes() == content
    assert not (inbox / "big.hl7").exists()


@pytest.mark.anyio
async def test_file_stays_when_accept_fails_and_resend_is_recognised(
    context: ConnectorContext, inbox: Path
) -> None:
    drop(inbox, "a.hl7", hl7("A"))
    journal = Journal()
    source = await started(context)

    async def crashing(inbound: Inbound) -> Receipt:
        await journal.accept(inbound)  # committed, then the process "dies" before the move
        raise RuntimeError("crash after commit")

    with pytest.raises(RuntimeError):
        await source.poll_once(crashing)
    assert (inbox / "a.hl7").exists()

    await source.poll_once(journal.accept)
    assert [i.dedup_key for i in journal.inbounds][0] == journal.inbounds[1].dedup_key
    assert journal.keys[journal.inbounds[1].dedup_key or ""] == 1  # the resend is a duplicate
    assert (inbox / "processed" / "a.hl7").exists()


@pytest.mark.anyio
async def test_serve_polls_until_cancelled(context: ConnectorContext, inbox: Path) -> None:
    drop(inbox, "a.hl7", hl7("A"))
    journal = Journal()
    source = await started(context, poll_interval_s=0.01, after_read="delete")
    async with asyncio.TaskGroup() as group:
        serving = group.create_task(source.serve(journal.accept))
        async with asyncio.timeout(5):
            await journal.wait_for(1)
        drop(inbox, "b.hl7", hl7("B"))
        async with asyncio.timeout(5):
            await journal.wait_for(2)
        serving.cancel()
    await source.aclose()
    assert [inbound.raw for inbound in journal.inbounds] == [hl7("A"), hl7("B")]
    # a.hl7 was deleted before b.hl7 was read; b.hl7 may remain if the cancel came between
    # its accept and its delete, and the next poll would then see it as a resend.
    assert "a.hl7" not in files_in(inbox)


@pytest.mark.anyio
async def test_processed_name_taken_before_keeps_both_files(
    context: ConnectorContext, inbox: Path
) -> None:
    journal = Journal()
    source = await started(context)
    drop(inbox, "a.hl7", hl7("A"))
    await source.poll_once(journal.accept)
    drop(inbox, "a.hl7", hl7("A2"), mtime=OLD + 1)
    await source.poll_once(journal.accept)
    kept = sorted(p.read_bytes() for p in (inbox / "processed").iterdir())
    assert kept == sorted([hl7("A"), hl7("A2")])
    assert journal.inbounds[0].dedup_key != journal.inbounds[1].dedup_key


@pytest.mark.anyio
async def test_hl7_batch_file_is_split_per_msh_with_indexed_keys(
    context: ConnectorContext, inbox: Path
) -> None:
    batch = b"FHS|^~\\&|LIS\rBHS|^~\\&|LIS\r" + hl7("1") + hl7("2") + b"BTS|2\rFTS|1\r"
    drop(inbox, "batch.hl7", batch)
    journal = Journal()
    source = await started(context, split="hl7-batch")
    await source.poll_once(journal.accept)
    assert [i.raw for i in journal.inbounds] == [hl7("1"), hl7("2")]
    keys = [i.dedup_key or "" for i in journal.inbounds]
    assert keys[0].endswith(":1") and keys[1].endswith(":2")


@pytest.mark.anyio
async def test_empty_file_is_journalled_as_problem(context: ConnectorContext, inbox: Path) -> None:
    drop(inbox, "empty.hl7", b"")
    journal = Journal()
    source = await started(context)
    await source.poll_once(journal.accept)
    assert isinstance(journal.inbounds[0].problem, FramingError)
    assert (inbox / "error" / "empty.hl7").exists()


@pytest.mark.anyio
@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
async def test_unreadable_file_is_skipped_and_retried_next_poll(
    context: ConnectorContext, inbox: Path, caplog: pytest.LogCaptureFixture
) -> None:
    locked = drop(inbox, "a.hl7", hl7("A"))
    drop(inbox, "b.hl7", hl7("B"))
    locked.chmod(0)
    journal = Journal()
    source = await started(context)
    await source.poll_once(journal.accept)
    assert [i.raw for i in journal.inbounds] == [hl7("B")]
    assert any(r.message == "file_source.unreadable" for r in caplog.records)
    locked.chmod(0o600)
    await source.poll_once(journal.accept)
    assert journal.inbounds[1].raw == hl7("A")


@pytest.mark.anyio
async def test_a_missing_directory_elsewhere_is_a_config_error_at_start(
    context: ConnectorContext, tmp_path: Path
) -> None:
    # outside the data dir it is a share or another program's folder: a typo must not be created
    nowhere = tmp_path.parent / f"{tmp_path.name}-nowhere" / "inbox"
    config = {"kind": "file", "directory": str(nowhere), "media_type": HL7_MEDIA_TYPE}
    source = FileSourceFactory().build(config, context)
    with pytest.raises(ConfigError, match="does not exist"):
        await source.start()
    assert not nowhere.exists()


@pytest.mark.anyio
async def test_a_missing_directory_under_the_data_dir_is_created(context: ConnectorContext) -> None:
    # the engine owns its data dir: a fresh `serve` deploys the shipped drop-folder channels
    config = {"kind": "file", "directory": "ecg/inbox", "media_type": HL7_MEDIA_TYPE}
    source = FileSourceFactory().build(config, context)
    await source.start()
    assert (context.data_dir / "ecg" / "inbox" / "error").is_dir()


@pytest.mark.anyio
async def test_vanished_directory_is_logged_and_polling_resumes_when_it_returns(
    context: ConnectorContext, inbox: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal()
    source = await started(context)
    parked = inbox.with_name("parked")
    os.rename(inbox, parked)
    assert await source.poll_once(journal.accept) == 0
    assert any(r.message == "file_source.directory_unavailable" for r in caplog.records)
    os.rename(parked, inbox)
    drop(inbox, "a.hl7", hl7("A"))
    assert await source.poll_once(journal.accept) == 1


@pytest.mark.anyio
async def test_start_creates_processed_and_error_directories(
    context: ConnectorContext, inbox: Path
) -> None:
    await started(context, processed_directory="done")
    assert (context.data_dir / "done").is_dir()
    assert (inbox / "error").is_dir()


@given(
    st.lists(st.sampled_from([b"MSH|^~\\&|A\r", b"PID|1\r", b"BTS|1\n", b"FHS|x\r\n", b"OBX|1\n"]))
)
def test_batch_split_gives_msh_led_slices_in_order(segments: list[bytes]) -> None:
    data = b"".join(segments)
    messages = split_hl7_batch(data)
    assert all(message.startswith(b"MSH") for message in messages)
    assert len(messages) == sum(1 for segment in segments if segment.startswith(b"MSH"))
    position = 0
    for message in messages:
        position = data.index(message, position) + len(message)


# --- destination ------------------------------------------------------------------------------


def outbound(message_id: int = 812, payload: bytes = b'{"resourceType":"Bundle"}') -> Outbound:
    return Outbound(
        message_id=message_id,
        channel="his-adt",
        destination="archive",
        payload=payload,
        media_type="application/fhir+json",
        attempt=1,
    )


def file_destination(context: ConnectorContext, **options: Any) -> FileDestination:
    config = {"kind": "file", "directory": "out", **options}
    return FileDestinationFactory().build(config, context)


@pytest.mark.anyio
async def test_file_destination_writes_atomically_under_the_template_name(
    context: ConnectorContext,
) -> None:
    out = context.data_dir / "out"
    out.mkdir()
    destination = file_destination(context, filename="{channel}_{destination}_{message_id}.{ext}")
    delivered = await destination.send(outbound())
    written = out / "his-adt_archive_812.json"
    assert written.read_bytes() == b'{"resourceType":"Bundle"}'
    assert delivered.detail == "wrote his-adt_archive_812.json"
    assert [p.name for p in out.iterdir()] == [written.name]  # no temporary file left
    assert written.stat().st_mode & 0o777 == 0o640

    await destination.send(outbound(payload=b"retried"))  # same name: overwritten
    assert written.read_bytes() == b"retried"
    await destination.aclose()


def test_timestamp_is_aware_and_compact(context: ConnectorContext) -> None:
    destination = file_destination(context, filename="{timestamp}-{message_id}.{ext}")
    now = datetime(2026, 11, 25, 17, 36, 1, tzinfo=CHINA_STANDARD_TIME)
    assert destination.file_name(outbound(), now) == "20261125T173601+0800-812.json"


@pytest.mark.anyio
async def test_missing_directory_is_a_retryable_delivery_error(context: ConnectorContext) -> None:
    destination = file_destination(context)
    with pytest.raises(RetryableDeliveryError, match="cannot write"):
        await destination.send(outbound())


@pytest.mark.parametrize(
    "template",
    ["{patient}.hl7", "{message_id", "../{message_id}", "{0}.txt", "{message_id:zz}", ".hidden"],
)
def test_bad_filename_template_is_a_config_error_at_build(
    context: ConnectorContext, template: str
) -> None:
    with pytest.raises(ConfigError, match="destination.filename"):
        file_destination(context, filename=template)


# --- strict mode ------------------------------------------------------------------------------

STRICT_VALID = (
    "MSH|^~\\&|HIS|COUNTY-HOSP|GC|ED|20261125083000+0800||ADT^A01^ADT_A01|F1|P|2.5.1|||||CHN|GB18030\r"
    "EVN|A01|20261125083000+0800\rPID|1||10086^^^COUNTY-HOSP^MR||张^三||19580312|M\rPV1|1|I\r"
)


@pytest.mark.anyio
async def test_strict_mode_journals_a_structure_problem_naming_the_field_and_moves_the_file(
    context: ConnectorContext, inbox: Path
) -> None:
    drop(inbox, "a-good.hl7", STRICT_VALID.encode("gb18030"))
    drop(inbox, "b-bad-date.hl7", STRICT_VALID.replace("19580312", "1958X312").encode("gb18030"))
    drop(inbox, "c-no-pv1.hl7", STRICT_VALID.replace("PV1|1|I\r", "").encode("gb18030"))
    journal = Journal()
    source = await started(context, strict=True)
    assert await source.poll_once(journal.accept) == 3
    problems = [i.problem for i in journal.inbounds]
    assert problems[0] is None
    assert problems[1] is not None and problems[1].location == "PID-7"
    assert problems[2] is not None and problems[2].location == "PV1"
    assert all("1958X312" not in str(p) for p in problems)  # positions, never values
    assert files_in(inbox / "processed") == ["a-good.hl7"]
    assert files_in(inbox / "error") == ["b-bad-date.hl7", "c-no-pv1.hl7"]


@pytest.mark.anyio
async def test_strict_mode_checks_each_message_of_a_batch_file(
    context: ConnectorContext, inbox: Path
) -> None:
    bad = STRICT_VALID.replace("|F1|", "|F2|").replace("PID|1||10086^^^COUNTY-HOSP^MR|", "PID|1|||")
    drop(inbox, "batch.hl7", f"BHS|^~\\&|HIS\r{STRICT_VALID}{bad}BTS|2\r".encode("gb18030"))
    journal = Journal()
    source = await started(context, strict=True, split="hl7-batch")
    await source.poll_once(journal.accept)
    assert [i.problem.location if i.problem else None for i in journal.inbounds] == [None, "PID-3"]
    assert files_in(inbox / "error") == ["batch.hl7"]


@pytest.mark.anyio
async def test_without_strict_the_same_file_is_journalled_as_it_is(
    context: ConnectorContext, inbox: Path
) -> None:
    drop(inbox, "bad-date.hl7", STRICT_VALID.replace("19580312", "1958X312").encode("gb18030"))
    journal = Journal()
    source = await started(context)
    await source.poll_once(journal.accept)
    assert journal.inbounds[0].problem is None
    assert files_in(inbox / "processed") == ["bad-date.hl7"]


def test_strict_on_a_file_source_that_is_not_hl7_is_a_config_error_naming_the_line() -> None:
    text = (
        "name: json-drop\nsource:\n  kind: file\n  directory: inbox\n"
        "  media_type: application/json\n  strict: true\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_channel_text(text, load_plugins(), file="channels/json-drop.yaml")
    assert "channels/json-drop.yaml:6 source.strict" in str(caught.value)
    assert "strict checks HL7 v2 structure" in str(caught.value)


@pytest.mark.anyio
async def test_parse_check_sends_a_file_its_parser_refuses_to_error_naming_the_problem(
    context: ConnectorContext, inbox: Path
) -> None:
    drop(inbox, "a.json", b'{"resourceType": "Patient"}')
    drop(inbox, "b.json", b'{"resourceType": "Patient", "id": ')  # cut short
    journal = Journal()
    source = await started(context, media_type="application/json", parse_check=True)

    assert await source.poll_once(journal.accept) == 2

    good, cut = journal.inbounds
    assert good.problem is None and cut.problem is not None
    assert cut.raw == b'{"resourceType": "Patient", "id": '  # kept whole, for reprocessing
    assert "line 1, column 35" in str(cut.problem)  # where the JSON stops
    assert files_in(inbox / "processed") == ["a.json"]
    assert files_in(inbox / "error") == ["b.json"]
