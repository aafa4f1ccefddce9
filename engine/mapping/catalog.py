"""The mappings folder as a whole: which files are mappings, lint them all, pick one for a message.

Under the mappings folder, `tests/` holds analysts' tests and `templates/` folders hold template
files; a top-level folder claimed by a `greenchannel.mapping_kinds` plugin holds that kind's own
files (e.g. registry record mappings); every other `*.yaml` is a mapping and every `*.csv` a code
table. A message is mapped by the one mapping whose input type it parses as and whose `when`
holds (MSH-9 for HL7 v2).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from collections.abc import Mapping as MappingOf
from datetime import tzinfo
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, GreenchannelError
from engine.mapping.document import Document
from engine.mapping.mapping import Mapping, load_mapping
from engine.mapping.tables import load_table
from engine.mapping.templates import load_template_file

__all__ = ["NoMappingError", "choose_mapping", "lint_folder", "mapping_files"]

_TESTS, _TEMPLATES = "tests", "templates"


class NoMappingError(GreenchannelError):
    """No mapping, or more than one, wants this message; the message names them."""


def _shown(path: Path, root: Path) -> str:
    try:
        return str(root.name / path.relative_to(root))
    except ValueError:
        return str(path)


def mapping_files(root: Path, other_kinds: Collection[str] = ()) -> list[Path]:
    """Every mapping file under `root`, sorted (not tests, not template files, not the files
    of the top-level folders in `other_kinds`)."""
    return sorted(
        path
        for path in root.rglob("*.yaml")
        if not {_TESTS, _TEMPLATES} & set(path.relative_to(root).parts[:-1])
        and path.relative_to(root).parts[0] not in other_kinds
    )


def lint_folder(
    root: Path, other_kinds: MappingOf[str, Callable[[Path], Any]] | None = None
) -> tuple[int, list[ConfigError]]:
    """Load every mapping, template file and code table, and the files of the folders of
    `other_kinds` (folder -> loader) with their own loader; (files checked, problems)."""
    other_kinds = other_kinds or {}
    problems: list[ConfigError] = []
    checked = 0
    for path in sorted(root.rglob("*.csv")):
        if _TESTS in path.relative_to(root).parts[:-1]:
            continue
        checked += 1
        try:
            load_table(path.stem, path, display_name=_shown(path, root))
        except ConfigError as exc:
            problems.append(exc)
    for path in sorted(root.rglob("*.yaml")):
        parts = path.relative_to(root).parts[:-1]
        if _TESTS in parts:
            continue
        checked += 1
        try:
            if parts and parts[0] in other_kinds:
                other_kinds[parts[0]](path)
            elif _TEMPLATES in parts:
                load_template_file(path, display_name=_shown(path, root))
            else:
                load_mapping(path, display_name=_shown(path, root))
        except ConfigError as exc:
            problems.append(exc)
    return checked, problems


def choose_mapping(
    raw: bytes,
    mappings: list[Mapping],
    parse: Callable[[str, bytes], Document],
    *,
    timezone: tzinfo | None = None,
) -> tuple[Mapping, Document]:
    """The one mapping whose `when` holds for `raw`, and the document it reads.

    `parse(media_type, raw)` parses the message for a mapping's input type (a GreenchannelError
    when it cannot: that mapping is then not a candidate). NoMappingError for none or several.
    """
    chosen: list[tuple[Mapping, Document]] = []
    unreadable: list[str] = []
    documents: dict[str, Any] = {}
    for mapping in mappings:
        media_type = mapping.input or ""
        if media_type not in documents:
            try:
                documents[media_type] = parse(media_type, raw)
            except GreenchannelError as exc:
                documents[media_type] = exc
        document = documents[media_type]
        if isinstance(document, GreenchannelError):
            unreadable.append(f"{mapping.file} ({media_type or 'no input type'}: {document})")
            continue
        if mapping.matches(document, timezone=timezone):
            chosen.append((mapping, document))
    if len(chosen) == 1:
        return chosen[0]
    if chosen:
        names = ", ".join(mapping.file for mapping, _ in chosen)
        raise NoMappingError(
            f"{len(chosen)} mappings want this message ({names}); make their `when` "
            "conditions exclusive"
        )
    tried = ", ".join(mapping.file for mapping in mappings) or "none found"
    detail = f"; could not read it as: {'; '.join(unreadable)}" if unreadable else ""
    raise NoMappingError(
        f"no mapping's `when` matches this message (tried {tried}){detail}; give one with --mapping"
    )
