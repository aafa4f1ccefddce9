"""`greenchannel score`: compute one score from a JSON input file and print the result.

Exit codes: 0 computed; 1 the input breaks the score's contract (the message names the item
and what it allows) or is not readable JSON; 2 usage, or no score has that name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pathways.scores import ScoreInputError, UnknownScoreError, compute, score_tables
from pathways.scores.contract import MAX_INPUT_BYTES, parse_json

__all__ = ["register", "run"]

EXAMPLE = """\
examples:
  greenchannel score GCS --input gcs.json
  echo '{"eye": 2, "verbal": "T", "motor": 4}' | greenchannel score GCS --input -
  greenchannel score --list

The input is one JSON object with exactly the score's items (docs/scores.md). Exit codes:
0 computed; 1 the input is not valid JSON or breaks the score's contract; 2 usage or an
unknown score name."""


def register(parser: argparse.ArgumentParser) -> None:
    """compute a score (GCS, NIHSS, GRACE, ISS, ...) from a JSON input and print the result"""
    parser.description = "Compute one score from a JSON input object and print the result JSON."
    parser.epilog = EXAMPLE
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("name", nargs="?", metavar="NAME", help="the score, e.g. GCS, NIHSS")
    parser.add_argument(
        "--input", metavar="FILE", help="the input JSON object; - reads standard input"
    )
    parser.add_argument("--list", action="store_true", help="list the scores and their versions")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name, table in score_tables().items():
            print(f"{name:<11} {table.version:<22} {table.title}")
        return 0
    if not args.name or not args.input:
        print("greenchannel score: give NAME and --input FILE (or --list)", file=sys.stderr)
        return 2
    try:
        tables = score_tables()
        if args.name not in tables:
            raise UnknownScoreError(args.name, list(tables))
        result = compute(args.name, parse_json(_read(args.input)))
    except UnknownScoreError as exc:
        print(f"greenchannel score: {exc}", file=sys.stderr)
        return 2
    except (ScoreInputError, OSError) as exc:
        print(f"greenchannel score {args.name}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def _read(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    path = Path(source)
    try:
        with path.open("rb") as file:
            return file.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise OSError(f"cannot read {source}: {exc.strerror or type(exc).__name__}") from None
