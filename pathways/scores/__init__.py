"""The scores of the three centers (scores.md) as pure functions: `compute(name, input)`.

Each score's clinical table (items, allowed values, points, bands) is a file in
`config/scores/`; the modules here combine the points: `neuro` (GCS, NIHSS, FAST-ED, ASPECTS,
mRS), `cardiac` (Killip, GRACE, TIMI-UA, TIMI-STEMI, HEART), `trauma` (ISS, NISS, RTS, T-RTS,
TS, CRAMS, PHI, TI). Input that breaks a score's contract raises ScoreInputError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pathways.scores import cardiac, neuro, trauma
from pathways.scores.contract import allowed, check_input
from pathways.scores.errors import ScoreInputError, UnknownScoreError
from pathways.scores.scoring import Evaluation, ScoredItem
from pathways.scores.tables import ItemSpec, ScoreTable, load_tables

__all__ = [
    "Evaluation",
    "ItemSpec",
    "ScoreInputError",
    "ScoreTable",
    "ScoredItem",
    "UnknownScoreError",
    "allowed",
    "compute",
    "evaluate",
    "score_table",
    "score_tables",
]

Scorer = Callable[[ScoreTable, dict[str, Any]], Evaluation]

# Score name (as in scores.md headings and config/scores/*.yaml) -> how its points combine.
_SCORERS: dict[str, Scorer] = {
    "GCS": neuro.gcs,
    "NIHSS": neuro.nihss,
    "FAST-ED": neuro.fast_ed,
    "ASPECTS": neuro.aspects,
    "mRS": neuro.mrs,
    "Killip": cardiac.killip,
    "GRACE": cardiac.grace,
    "TIMI-UA": cardiac.timi_ua,
    "TIMI-STEMI": cardiac.timi_stemi,
    "HEART": cardiac.heart,
    "ISS": trauma.iss,
    "NISS": trauma.niss,
    "RTS": trauma.rts,
    "T-RTS": trauma.t_rts,
    "TS": trauma.summed,
    "CRAMS": trauma.crams,
    "PHI": trauma.summed,
    "TI": trauma.summed,
}


def compute(name: str, data: object) -> dict[str, Any]:
    """The result of score `name` for one input object (scores.md §0 output shape).

    Raises UnknownScoreError for a name that is not a score, ScoreInputError for input that
    breaks the score's contract.
    """
    return evaluate(name, data).result


def evaluate(name: str, data: object) -> Evaluation:
    """Like `compute`, also giving the scored items (answers, points, codes) to store."""
    table = score_table(name)
    return _SCORERS[name](table, check_input(table, data))


def score_table(name: str) -> ScoreTable:
    """The table of one score; UnknownScoreError if there is no such score."""
    tables = score_tables()
    if name not in tables or name not in _SCORERS:
        raise UnknownScoreError(name, list(_SCORERS))
    return tables[name]


def score_tables() -> dict[str, ScoreTable]:
    """Every score's table, in the order of scores.md."""
    tables = load_tables()
    return {name: tables[name] for name in _SCORERS if name in tables}
