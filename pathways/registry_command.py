"""`greenchannel registry`: the registry staff's commands.

Registered under the `greenchannel.commands` entry point as `registry`.
"""

from __future__ import annotations

import argparse

from pathways.registry_upload.command import add_sign, add_upload

__all__ = ["register"]


def register(parser: argparse.ArgumentParser) -> None:
    """national registry records: sign, upload"""
    actions = parser.add_subparsers(title="registry commands", metavar="ACTION", required=True)
    add_upload(actions)
    add_sign(actions)
