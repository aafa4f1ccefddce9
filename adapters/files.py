"""File connectors: a source that polls a directory and journals each file before moving it,
and a destination that writes each message atomically under a templated name.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fnmatch
import hashlib
import logging
import os
import shutil
import string
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from adapters._parse_check import parse_problem, warm_up_parser
from adapters.hl7v2 import MEDIA_TYPE as HL7_MEDIA_TYPE
from adapters.hl7v2 import check_message, split_batch
from engine.connectors import Accept, ConnectorContext, Delivered, Inbound, Outbound
from engine.errors import ConfigError, FramingError, RejectedDeliveryError, RetryableDeliveryError

__all__ = [
    "FileDestination",
    "FileDestinationConfig",
    "FileDestinationFactory",
    "FileSource",
    "FileSourceConfig",
    "FileSourceFactory",
    "split_hl7_batch",
]

log = logging.getLogger(__name__)

MAX_KEY_CHARS = 200  # the journal's dedup_key column
TEMPLATE_FIELDS = frozenset({"message_id", "channel", "destination", "timestamp", "ext"})
_EXTENSIONS = {
    "x-application/hl7-v2+er7": "hl7",
    "application/hl7-v2": "hl7",
    "application/json": "json",
    "application/xml": "xml",
    "text/xml": "xml",
    "text/plain": "txt",
    "text/csv": "csv",
    "application/pdf": "pdf",
}
# One message per MSH of an HL7 batch file; the MLLP source splits batch blocks the same way.
split_hl7_batch = split_batch


class FileSourceConfig(BaseModel):
    """Polls one directory; each matching file is one message (or one per MSH with split)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["file"] = Field(description="Selects the file source.")
    directory: Path = Field(
        description="Directory to poll; a relative path is under the engine's data_dir (and is "
        "created there when missing); an absolute one must exist."
    )
    pattern: str = Field(
        "*",
        min_length=1,
        description="File names to take, a case-sensitive glob such as *.hl7. Names starting "
        "with a dot are never taken (senders write those and rename when done).",
    )
    poll_interval_s: float = Field(5.0, gt=0, description="Pause between two directory scans.")
    min_age_s: float = Field(
        2.0,
        ge=0,
        description="A file is read only once its modification time is this old, so files "
        "still being written are skipped. Files later in name order wait for it.",
    )
    after_read: Literal["move", "delete"] = Field(
        "move",
        description="After the message is journalled: move the file to processed_directory, "
        "or delete it.",
    )
    processed_directory: Path | None = Field(
        None, description="Where journalled files go; default <directory>/processed."
    )
    error_directory: Path | None = Field(
        None,
        description="Where files that were journalled as ERROR (too large, empty, no MSH) go; "
        "default <directory>/error.",
    )
    max_file_bytes: int = Field(
        16 * 1024 * 1024,
        gt=0,
        description="Largest file taken whole. A larger one has its first max_file_bytes "
        "journalled as an ERROR message and is moved to error_directory.",
    )
    media_type: str = Field(
        description="Media type of the files, e.g. x-application/hl7-v2+er7 or application/json."
    )
    charset: str | None = Field(
        None, description="Character set of the files; default the channel's charset."
    )
    split: Literal["none", "hl7-batch"] = Field(
        "none",
        description="none: one file is one message. hl7-batch: one message per MSH segment "
        "(FHS/BHS/BTS/FTS are dropped).",
    )
    max_files_per_poll: int = Field(
        1000, gt=0, description="At most this many files (in name order) per scan."
    )
    strict: bool = Field(
        False,
        description="HL7 v2 files only: check each message against the structure and datatypes "
        "of its HL7 version (MSH-12) with hl7apy, as the MLLP source's strict does; a problem "
        "journals the message as an error naming the segment and field, and the file goes to "
        "error_directory. Off by default: real senders deviate in ways the mappings tolerate.",
    )

    parse_check: bool = Field(
        False,
        description="Read each message with the parser installed for media_type before it is "
        "journalled, as the HTTP and MLLP sources' parse_check does: a file the parser refuses "
        "(an unreadable or implausible ECG, say) is journalled as an ERROR naming the problem "
        "and goes to error_directory, so the folder shows at once which files need a look.",
    )

    @field_validator("strict")
    @classmethod
    def _strict_needs_hl7(cls, strict: bool, info: ValidationInfo) -> bool:
        media_type = info.data.get("media_type")
        if strict and media_type != HL7_MEDIA_TYPE:
            raise ValueError(
                f"strict checks HL7 v2 structure: it needs media_type {HL7_MEDIA_TYPE}, "
                f"not {media_type}"
            )
        return strict


@dataclass(frozen=True, slots=True)
class _File:
    """One file read whole or up to the limit, with the stat that names this version of it."""

    name: str
    data: bytes
    size: int
    mtime_ns: int
    complete: bool


class FileSource:
    """Polls a directory in name order; journals each file, then moves or deletes it."""

    def __init__(self, config: FileSourceConfig, context: ConnectorContext) -> None:
        self._config = config
        self._context = context
        self._directory = context.data_dir / config.directory
        self._processed = (
            context.data_dir / config.processed_directory
            if config.processed_directory is not None
            else self._directory / "processed"
        )
        self._error = (
            context.data_dir / config.error_directory
            if config.error_directory is not None
            else self._directory / "error"
        )
        self._started = False

    async def start(self) -> None:
        """Check the directory and create the processed and error directories."""
        await asyncio.to_thread(self._prepare)
        if self._config.parse_check:
            warm_up_parser(self._config.media_type)
        self._started = True

    async def serve(self, accept: Accept) -> None:
        """Poll until cancelled. An exception from `accept` propagates and leaves the file."""
        if not self._started:
            await self.start()
        while True:
            await self.poll_once(accept)
            await asyncio.sleep(self._config.poll_interval_s)

    async def poll_once(self, accept: Accept) -> int:
        """Take every ready file once, in name order; return how many were finished."""
        finished = 0
        try:
            names = await asyncio.to_thread(self._list)
        except OSError as exc:
            # An unmounted share or a removed directory: say so, and look again next poll.
            log.error(
                "file_source.directory_unavailable",
                extra={"error": errno.errorcode.get(exc.errno or 0, "?")},
            )
            return 0
        for name in names:
            found = await asyncio.to_thread(self._read, name, time.time())
            if found == "young":
                break  # keep name order: later files wait until this one is complete
            if found is None:
                continue
            inbounds = self._frame(found)
            if self._config.strict:  # hl7apy parses the whole message: off the event loop
                inbounds = await asyncio.to_thread(self._check_structure, inbounds)
            if self._config.parse_check:
                inbounds = [await self._parse_checked(inbound) for inbound in inbounds]
            for inbound in inbounds:
                await accept(inbound)
            failed = any(inbound.problem is not None for inbound in inbounds)
            await asyncio.to_thread(self._finish, name, failed)
            finished += 1
        return finished

    async def aclose(self) -> None:
        """Nothing stays open between polls."""
        self._started = False

    def _prepare(self) -> None:
        directory = self._directory
        if not directory.is_dir() and not self._config.directory.is_absolute():
            # Under the engine's own data dir (a shipped drop folder on a fresh install): ours
            # to make. A missing absolute path is a share or a typo, which creating would hide.
            directory.mkdir(parents=True, exist_ok=True)
        if not directory.is_dir():
            raise ConfigError(
                f"directory {directory} does not exist",
                key="source.directory",
                hint="create it or correct source.directory",
            )
        if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
            raise ConfigError(
                f"directory {directory} is not readable and writable by the engine",
                key="source.directory",
                hint="files are moved out of it after reading, so it must be writable",
            )
        needed = [("source.error_directory", self._error)]
        if self._config.after_read == "move":
            needed.append(("source.processed_directory", self._processed))
        for key, path in needed:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create {path}: {exc.strerror}", key=key) from exc
            if not os.access(path, os.W_OK | os.X_OK):
                raise ConfigError(f"directory {path} is not writable by the engine", key=key)

    def _list(self) -> list[str]:
        names = []
        with os.scandir(self._directory) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or not fnmatch.fnmatchcase(name, self._config.pattern):
                    continue
                with contextlib.suppress(OSError):
                    if entry.is_file():
                        names.append(name)
        names.sort()
        return names[: self._config.max_files_per_poll]

    def _read(self, name: str, now: float) -> _File | Literal["young"] | None:
        """The file, "young" if it may still be written, None if it is gone or unreadable."""
        limit = self._config.max_file_bytes
        try:
            with open(self._directory / name, "rb") as file:
                stat = os.fstat(file.fileno())
                if now - stat.st_mtime < self._config.min_age_s:
                    return "young"
                data = file.read(limit + 1)
        except FileNotFoundError:
            return None  # taken by someone else between listing and reading
        except OSError as exc:
            # Retried on the next poll; other files go on.
            log.warning(
                "file_source.unreadable",
                extra={"file_name": name, "error": errno.errorcode.get(exc.errno or 0, "?")},
            )
            return None
        return _File(name, data[:limit], stat.st_size, stat.st_mtime_ns, len(data) <= limit)

    def _frame(self, found: _File) -> list[Inbound]:
        # name + size + mtime names this version of the file: when a crash comes between the
        # journal commit and the move, the re-read file has the same key and is recognised as
        # a resend, while a new file under an old name (new mtime) is a new message. Cheaper
        # than hashing the content, and a file an operator drops in again counts as new.
        key = _fit(f"{found.name}:{found.size}:{found.mtime_ns}")
        common: dict[str, Any] = {
            "media_type": self._config.media_type,
            "received_at": datetime.now(self._context.timezone),
            "origin": f"file://{self._directory / found.name}",
            "charset": self._config.charset,
        }
        limit = self._config.max_file_bytes
        if not found.complete:
            reason = f"the file exceeds max_file_bytes ({limit}); the first {limit} bytes were kept"
            problem = FramingError(reason, location=f"file {found.name}")
            return [Inbound(raw=found.data, dedup_key=key, problem=problem, **common)]
        if not found.data:
            problem = FramingError("the file is empty", location=f"file {found.name}")
            return [Inbound(raw=b"", dedup_key=key, problem=problem, **common)]
        if self._config.split == "none":
            return [Inbound(raw=found.data, dedup_key=key, **common)]
        messages = split_hl7_batch(found.data)
        if not messages:
            problem = FramingError(
                "no MSH segment in the batch file", location=f"file {found.name}"
            )
            return [Inbound(raw=found.data, dedup_key=key, problem=problem, **common)]
        return [
            Inbound(raw=message, dedup_key=f"{key}:{index}", **common)
            for index, message in enumerate(messages, start=1)
        ]

    def _check_structure(self, inbounds: list[Inbound]) -> list[Inbound]:
        """Strict mode: each framed message with the first structure problem hl7apy finds."""
        charset = self._config.charset or self._context.default_charset
        checked = []
        for inbound in inbounds:
            problem = inbound.problem or check_message(inbound.raw, charset)
            checked.append(replace(inbound, problem=problem))
        return checked

    async def _parse_checked(self, inbound: Inbound) -> Inbound:
        """The inbound with what the media type's parser finds wrong with it (in a thread)."""
        if inbound.problem is not None:
            return inbound
        charset = inbound.charset or self._context.default_charset
        problem = await parse_problem(inbound.raw, inbound.media_type, charset)
        return inbound if problem is None else replace(inbound, problem=problem)

    def _finish(self, name: str, failed: bool) -> None:
        source = self._directory / name
        try:
            if not failed and self._config.after_read == "delete":
                source.unlink()
                return
            target_directory = self._error if failed else self._processed
            target = target_directory / name
            if target.exists():  # the same name came before: keep both
                target = target_directory / f"{name}.{time.time_ns()}"
            shutil.move(source, target)  # os.rename, or copy + delete across file systems
        except FileNotFoundError:
            return
        except OSError as exc:
            # Re-read next poll; the journal recognises it by its dedup key.
            log.error(
                "file_source.move_failed",
                extra={"file_name": name, "error": errno.errorcode.get(exc.errno or 0, "?")},
            )


class FileSourceFactory:
    """Entry point `greenchannel.sources: file`."""

    config_model: ClassVar[type[BaseModel]] = FileSourceConfig

    def build(self, config: Any, context: ConnectorContext) -> FileSource:
        """Build a file source; the directories are checked by `start()`."""
        return FileSource(FileSourceConfig.model_validate(config), context)


class FileDestinationConfig(BaseModel):
    """Writes each message as one file, atomically (readers never see half a file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["file"] = Field(description="Selects the file destination.")
    directory: Path = Field(
        description="Directory to write into (it must exist); a relative path is under the "
        "engine's data_dir."
    )
    filename: str = Field(
        "{channel}-{message_id}.{ext}",
        description="File name template with {message_id}, {channel}, {destination}, "
        "{timestamp} (e.g. 20261125T173601+0800) and {ext}. A name that already exists is "
        "overwritten, so a retry rewrites the same file; a name with {timestamp} and no "
        "{message_id} makes every retry a new file.",
    )
    extension: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,16}$",
        description="The {ext} value; default from the media type (hl7, json, xml, txt, bin).",
    )
    file_mode: str = Field(
        "640",
        pattern=r"^[0-7]{3}$",
        description='Permission bits of written files, as octal digits in quotes ("640").',
    )


class FileDestination:
    """Writes to a temporary file in the same directory, fsyncs it and renames it into place."""

    def __init__(self, config: FileDestinationConfig, context: ConnectorContext) -> None:
        self._config = config
        self._context = context
        self._directory = context.data_dir / config.directory
        self._mode = int(config.file_mode, 8)

    def file_name(self, outbound: Outbound, now: datetime) -> str:
        """The name the template gives this message at `now` (an aware datetime)."""
        ext = self._config.extension or _extension(outbound.media_type)
        return self._config.filename.format(
            message_id=outbound.message_id,
            channel=outbound.channel,
            destination=outbound.destination,
            timestamp=now.strftime("%Y%m%dT%H%M%S%z"),
            ext=ext,
        )

    async def send(self, outbound: Outbound) -> Delivered:
        """Write the payload; OSError is retryable (disk full, permission, unmounted share)."""
        name = self.file_name(outbound, datetime.now(self._context.timezone))
        if not _plain_name(name):
            raise RejectedDeliveryError(
                "the file name template gives a path, not a file name, for this message",
                hint="channel and destination names must not contain path separators",
            )
        try:
            await asyncio.to_thread(
                _write_atomically, self._directory, name, outbound.payload, self._mode
            )
        except OSError as exc:
            reason = (
                f"cannot write {name} in {self._directory}: {exc.strerror or type(exc).__name__}"
            )
            if exc.errno == errno.ENAMETOOLONG:
                raise RejectedDeliveryError(reason, hint="shorten the filename template") from exc
            raise RetryableDeliveryError(
                reason, hint="check the directory, its space and rights"
            ) from exc
        return Delivered(detail=f"wrote {name}")

    async def aclose(self) -> None:
        """Nothing stays open between writes."""


class FileDestinationFactory:
    """Entry point `greenchannel.destinations: file`."""

    config_model: ClassVar[type[BaseModel]] = FileDestinationConfig

    def build(self, config: Any, context: ConnectorContext) -> FileDestination:
        """Build the destination; a filename template that cannot work is a ConfigError."""
        config = FileDestinationConfig.model_validate(config)
        _check_template(config.filename)
        return FileDestination(config, context)


def _fit(key: str) -> str:
    """A dedup key that fits the journal column: long ones are replaced by their hash."""
    if len(key) <= MAX_KEY_CHARS - 12:  # room for a ":<index>" suffix
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def _extension(media_type: str) -> str:
    base = media_type.split(";", 1)[0].strip().lower()
    if base in _EXTENSIONS:
        return _EXTENSIONS[base]
    if base.endswith("+json"):
        return "json"
    if base.endswith("+xml"):
        return "xml"
    return "bin"


def _plain_name(name: str) -> bool:
    return (
        name not in ("", ".", "..")
        and not name.startswith(".")
        and not any(char in name for char in "/\\\0")
    )


def _check_template(template: str) -> None:
    key = "destination.filename"
    try:
        fields = [
            field for _, field, _, _ in string.Formatter().parse(template) if field is not None
        ]
    except ValueError as exc:
        raise ConfigError(f"the template is not valid: {exc}", key=key) from exc
    unknown = sorted({field for field in fields if field not in TEMPLATE_FIELDS})
    if unknown:
        allowed = ", ".join(f"{{{field}}}" for field in sorted(TEMPLATE_FIELDS))
        shown = ", ".join(f"{{{field}}}" for field in unknown)
        raise ConfigError(f"unknown placeholder {shown}; use {allowed}", key=key)
    sample = {"message_id": 1, "channel": "c", "destination": "d", "timestamp": "t", "ext": "e"}
    try:
        name = template.format(**sample)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ConfigError(f"the template cannot be filled in: {exc}", key=key) from exc
    if not _plain_name(name):
        raise ConfigError(
            "the template must give a plain file name (no /, \\ or leading dot)", key=key
        )


def _write_atomically(directory: Path, name: str, payload: bytes, mode: int) -> None:
    """Write `payload` to directory/name so that a reader sees the old file or the new one."""
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name[:40]}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(payload)
            file.flush()
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(temporary, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    # Make the rename itself durable; some file systems cannot fsync a directory.
    with contextlib.suppress(OSError):
        directory_descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_descriptor)
        finally:
            os.close(directory_descriptor)
