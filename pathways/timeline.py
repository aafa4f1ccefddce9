"""A center case as the indicators see it: its facts and its resolved time nodes.

The pathway engine builds a `CaseTimeline` from the FHIR store (the EpisodeOfCare and its
authoritative time-node Observations); indicators, QC statistics, running clocks and the archive
compute from it without touching FHIR.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pathways.vocabulary import ArrivalMode, Center

__all__ = ["ACTIVATION", "CaseTimeline", "FactValue"]

FactValue = str | bool | int | float
# What a clock rule may start at besides the time nodes: when the case was opened
# (EpisodeOfCare.period.start). Not a time node, so no indicator or archive counts it as one.
ACTIVATION = "activation"


@dataclass(frozen=True, slots=True)
class CaseTimeline:
    """One case: who, which center, how the patient came, what is known, and when."""

    case_id: str  # the EpisodeOfCare id
    center: Center
    patient_id: str
    arrival_mode: ArrivalMode | None
    # node key -> the authoritative instant (timezone-aware, second precision)
    nodes: Mapping[str, datetime] = field(default_factory=dict)
    # fact name -> value: diagnosis ("STEMI"), reperfusion ("primary_pci"), exclusion flags
    # (give_up_treatment: True), scores the populations need (iss: 25)
    facts: Mapping[str, FactValue] = field(default_factory=dict)
    status: str = "active"  # EpisodeOfCare.status
    activation: datetime | None = None  # EpisodeOfCare.period.start: when the case was opened

    def at(self, key: str) -> datetime | None:
        """The instant of a node key, or of ACTIVATION (the case's opening)."""
        return self.activation if key == ACTIVATION else self.nodes.get(key)
