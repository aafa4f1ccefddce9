"""What goes wrong with an ECG recording, as `InputError`s a channel can NAK and journal.

```
InputError (engine.errors)
└── EcgError               the file and the problem
    ├── UnreadableEcgError     truncated, corrupt or not an ECG format we read
    ├── UnsafeXmlError         a DTD, external entity or entity expansion: never resolved
    └── ImplausibleEcgError    read, but not a usable 12-lead: missing leads, NaN, flat, units
```
Messages name the file and the problem, never sample values or patient data.
"""

from __future__ import annotations

from engine.errors import AckCode, InputError

__all__ = ["EcgError", "ImplausibleEcgError", "UnreadableEcgError", "UnsafeXmlError"]


class EcgError(InputError):
    """An ECG recording that cannot be analysed: `file` names it, `problem` says what is wrong."""

    hint = "check the ECG device's export settings and send the recording again"

    def __init__(
        self, problem: str, *, file: str, ack_code: AckCode | None = None, hint: str = ""
    ) -> None:
        self.file = file
        self.problem = problem
        super().__init__(problem, location=file, ack_code=ack_code, hint=hint)


class UnreadableEcgError(EcgError):
    """The file is truncated, corrupt, or not in a format the readers know."""

    ack_code: AckCode = "AR"


class UnsafeXmlError(EcgError):
    """The XML declares a DTD or entities: refused, never resolved (XXE, billion laughs)."""

    ack_code: AckCode = "AR"
    hint = "ECG XML never needs a DTD or entities: check what produced this file"


class ImplausibleEcgError(EcgError):
    """The recording was read but is no usable 12-lead ECG: leads missing, NaN samples, a flat
    line, or amplitudes that mean the units are wrong."""

    hint = "check the electrodes and the device's export (units, lead set) and record again"
