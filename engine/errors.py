"""The engine's error tree: every failure an operator can act on, with what to do next.

```
GreenchannelError            .hint: what the operator should do next
├── ConfigError              file, line, key             → deploy refused; `serve` exits 3
├── InputError               location ("PID-7.1"), reason, ack_code ("AE" | "AR")
│   ├── FramingError         MLLP block, truncated file
│   ├── DecodeError          charset and byte offset
│   └── ParseError           segment / field / component
├── MappingError             mapping file, rule, input location
└── DeliveryError
    ├── RetryableDeliveryError   timeout, refused, no reply, 5xx  → backoff
    └── RejectedDeliveryError    4xx, AR, AE, invalid             → ERROR; the queue moves on
```

Messages name positions, never field values: contents stay in the journal, where access is audited.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "AckCode",
    "ConfigError",
    "DecodeError",
    "DeliveryError",
    "FramingError",
    "GreenchannelError",
    "InputError",
    "MappingError",
    "ParseError",
    "RejectedDeliveryError",
    "RetryableDeliveryError",
]

AckCode = Literal["AE", "AR"]


class GreenchannelError(Exception):
    """Base of every error the engine raises on purpose; `hint` says what to do next."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        if hint:
            self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class ConfigError(GreenchannelError):
    """A channel, mapping or settings file is invalid; raised before anything is deployed."""

    hint = "fix the file and validate it with `greenchannel channels validate`"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str = "",
    ) -> None:
        self.file = file
        self.line = line
        self.key = key
        where = ""
        if file:
            where = file if line is None else f"{file}:{line}"
        if key:
            where = f"{where} {key}" if where else key
        super().__init__(f"{where}: {message}" if where else message, hint=hint)


class InputError(GreenchannelError):
    """Input that cannot be accepted as it is: framed, decoded or parsed wrongly.

    `location` is where (an HL7 position like "MSH-9" or "PID-7.1", a byte offset, a JSON
    pointer); `reason` what is wrong; `ack_code` is AE (the sender may fix and resend) or AR
    (rejected outright: not a message we can even read).
    """

    ack_code: AckCode = "AE"
    hint = "correct the sending system's message; the raw bytes are kept in the journal"

    def __init__(
        self,
        reason: str,
        *,
        location: str = "",
        ack_code: AckCode | None = None,
        hint: str = "",
    ) -> None:
        self.reason = reason
        self.location = location
        if ack_code is not None:
            self.ack_code = ack_code
        super().__init__(f"{location}: {reason}" if location else reason, hint=hint)


class FramingError(InputError):
    """The bytes do not form a complete frame (an MLLP block, a file, an HTTP body)."""

    ack_code: AckCode = "AR"


class DecodeError(InputError):
    """The bytes are not valid in the declared or default character set."""

    hint = "check MSH-18 or the channel's charset"

    def __init__(
        self,
        reason: str,
        *,
        charset: str,
        offset: int,
        location: str = "",
        ack_code: AckCode | None = None,
        hint: str = "",
    ) -> None:
        self.charset = charset
        self.offset = offset
        super().__init__(reason, location=location, ack_code=ack_code, hint=hint)


class ParseError(InputError):
    """The message is framed and decoded but its structure is wrong (segment, field, component)."""


class MappingError(GreenchannelError):
    """A mapping could not be applied to one input: which file, which rule, which input position."""

    hint = "fix the mapping file or the input, then reprocess the message"

    def __init__(
        self,
        message: str,
        *,
        mapping: str = "",
        rule: str = "",
        location: str = "",
        hint: str = "",
    ) -> None:
        self.mapping = mapping
        self.rule = rule
        self.location = location
        parts = [p for p in (mapping, rule, location) if p]
        super().__init__(f"{' '.join(parts)}: {message}" if parts else message, hint=hint)


class DeliveryError(GreenchannelError):
    """A destination could not deliver a message."""


class RetryableDeliveryError(DeliveryError):
    """A transient failure (timeout, refused, no reply, HTTP 5xx): retried with backoff."""

    hint = "the message stays queued and is retried; check that the receiving system is up"


class RejectedDeliveryError(DeliveryError):
    """The receiver refused the message (HTTP 4xx, AR, AE, invalid): it goes to ERROR."""

    hint = "fix the mapping or the receiver, then reprocess the message"
