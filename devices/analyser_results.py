"""The analyser-results document both analyser protocols read into (docs/poct.md, "From results
to FHIR"): what `devices.poct` and `devices.astm` return for the mappings."""

from __future__ import annotations

from typing import Any

__all__ = ["pruned"]


def pruned(document: dict[str, Any]) -> dict[str, Any]:
    """The document without empty texts, so that a mapping's `exists(@.patient_id)` means the
    analyser sent one (an empty field and a missing one are the same to a receiver)."""
    return {key: _pruned(item) for key, item in document.items() if item != ""}


def _pruned(value: Any) -> Any:
    if isinstance(value, dict):
        return pruned(value)
    if isinstance(value, list):
        return [_pruned(item) for item in value if item != ""]
    return value
