"""Protocol adapters: one module per protocol to the outside (MLLP and HL7 v2, HTTP, files,
the FHIR destination, JSON input). The engine finds them through entry points only."""

from __future__ import annotations

__all__: list[str] = []
