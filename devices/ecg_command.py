"""`greenchannel ecg analyze PATH...`: read each recording and print the machine reading as one
JSON object per line; unreadable or implausible recordings are named on stderr, exit code 1."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register", "run_analyze"]

EXAMPLE = """\
examples:
  greenchannel ecg analyze ../shared/data/ecg/sierra/129DYPRG.XML
  greenchannel ecg analyze ../shared/data/ecg/ptb/s0010_re records/*.hea

PATH is a WFDB record (with or without .hea), a Philips Sierra, HL7 aECG or GE MUSE XML file,
or a DICOM waveform file. One JSON object per recording on stdout: stemi, criteria, st_mv
(per lead, at J and J+60 ms), territory, mi_probability, heart_rate, flags. Exit codes: 0 all
recordings analysed; 1 some could not be read or are no plausible 12-lead ECG (stderr says
which file and why); 2 usage."""


def register(parser: argparse.ArgumentParser) -> None:
    """read ECG recordings: STEMI criteria, ST per lead, MI probability"""
    parser.description = "Analyse 12-lead ECG recordings the way the ECG channel will."
    parser.epilog = EXAMPLE
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    actions = parser.add_subparsers(title="ecg commands", metavar="ACTION")
    command = actions.add_parser(
        "analyze",
        help="print the machine reading of each recording as one JSON line",
        description="Print the machine reading of each recording as one JSON line.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="recordings")
    command.set_defaults(handler=run_analyze)


def run_analyze(args: argparse.Namespace) -> int:
    """0 when every recording was analysed, 1 when any failed (each failure on stderr)."""
    # Imported here, not at the top (and this module is outside devices.ecg): the CLI registers
    # every command at each start, and scipy, wfdb and pydicom would add about a second to
    # `greenchannel serve` and every other command.
    from devices.ecg import EcgError, analyze, read_ecg

    failed = 0
    for path in args.paths:
        try:
            reading = analyze(read_ecg(path))
        except EcgError as exc:
            failed += 1
            print(f"greenchannel: {exc}", file=sys.stderr, flush=True)
            continue
        print(json.dumps(reading.as_json(), ensure_ascii=False), flush=True)
    return 1 if failed else 0
