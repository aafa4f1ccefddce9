"""Lets `python -m engine` run the greenchannel command."""

from engine.cli import main

raise SystemExit(main())
