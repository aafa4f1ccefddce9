"""One authoritative time per node from its candidates (time-nodes.md R1, R6, R7).

Pure: the candidates of one node of one case in, the resolution out. A staff correction wins
(the latest one); otherwise the highest priority among the candidates that apply (the arrival
mode of the case, at or after the node's `after` node), and within it the first (or last) instant.
Candidates of other capture rules further from the winner than the tolerance are conflicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from pathways.definitions import Capture, NodeDefinition
from pathways.vocabulary import ArrivalMode

__all__ = ["CORRECTION", "Candidate", "Resolution", "resolve"]

CORRECTION = "correction"  # the source kind of a staff correction, and its resolution rule


@dataclass(frozen=True, slots=True)
class Candidate:
    """A candidate time as stored: a `preliminary` time-node Observation."""

    id: str
    node: str
    instant: datetime
    source: str  # the source kind (Observation.method)
    priority: int
    rule: str | None  # `<node>/<capture>` of the pathway file; None for manual entries
    proxy: bool
    written: datetime  # meta.lastUpdated: orders corrections


@dataclass(frozen=True, slots=True)
class Resolution:
    instant: datetime
    winners: tuple[Candidate, ...]  # the candidates giving that instant at the top priority
    rule: str  # correction | priority-first | priority-last
    conflicts: tuple[Candidate, ...]
    proxy: bool  # the instant rests on a proxy source only (HIS registration for the door)

    @property
    def corrected(self) -> bool:
        return self.rule == CORRECTION


def resolve(
    node: NodeDefinition,
    candidates: Iterable[Candidate],
    *,
    arrival_mode: ArrivalMode | None,
    after: datetime | None,
) -> Resolution | None:
    """The node's authoritative time, or None when no candidate applies."""
    if arrival_mode is not None and node.arrival_modes is not None:
        if arrival_mode not in node.arrival_modes:
            return None  # R1: e.g. no door for in-hospital onset
    pool = list(candidates)
    corrections = [c for c in pool if c.source == CORRECTION]
    if corrections:
        latest = max(corrections, key=lambda c: c.written)
        return Resolution(latest.instant, (latest,), CORRECTION, (), False)
    if node.after_required and after is None:
        return None
    captures = {c.rule_id: c for c in node.captures}
    eligible = [
        c
        for c in pool
        if _applies(captures.get(c.rule or ""), arrival_mode)
        and (after is None or c.instant >= after)
    ]
    if not eligible:
        return None
    top = max(c.priority for c in eligible)
    best = [c for c in eligible if c.priority == top]
    pick = min if node.select == "first" else max
    instant = pick(c.instant for c in best)
    winners = tuple(sorted((c for c in best if c.instant == instant), key=lambda c: c.id))
    conflicts = tuple(
        c
        for c in _representatives(eligible, node.select).values()
        if abs((c.instant - instant).total_seconds()) > node.tolerance_s
    )
    return Resolution(
        instant,
        winners,
        f"priority-{node.select}",
        tuple(sorted(conflicts, key=lambda c: c.id)),
        all(c.proxy for c in winners),
    )


def _applies(capture: Capture | None, arrival_mode: ArrivalMode | None) -> bool:
    """A capture for some arrival modes applies to a case of those modes, or of a mode not
    known yet; a proxy only once the mode is known: the walk-in's registration standing in for
    triage must not become the first medical contact (and bound the first ECG, R7) of a case
    whose arrival mode nobody has given."""
    if capture is None or capture.arrival_modes is None:
        return True
    if arrival_mode is None:
        return not capture.proxy
    return arrival_mode in capture.arrival_modes


def _representatives(candidates: list[Candidate], select: str) -> Mapping[str, Candidate]:
    """Each capture rule's (or manual source's) own first or last instant: repeats of one kind
    (a second troponin) are later observations, not a disagreement (R7)."""
    chosen: dict[str, Candidate] = {}
    for candidate in candidates:
        key = candidate.rule or candidate.source
        held = chosen.get(key)
        earlier = held is None or candidate.instant < held.instant
        if held is None or (earlier if select == "first" else candidate.instant > held.instant):
            chosen[key] = candidate
    return chosen
