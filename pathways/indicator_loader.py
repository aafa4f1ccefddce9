"""The indicator definitions as the QC office last saved them, for every reader in the process.

`indicator_definitions(folder)` is one loader per folder, shared by the pathway subscriber (the
interval Observations it writes) and the QC API and router: each asks `current()`, which reads
the files again only when one of them changed (modification time, size, files added or
removed). An edit that does not load (a typo, an unknown node) keeps the last good definitions
and logs the error once, with file, line and key, so a QC office's mistake never stops the
interval writer or the charts; a folder that has never loaded raises the ConfigError.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from engine.errors import ConfigError
from pathways.indicator_definitions import (
    FACTS_FILE,
    NODE_CATALOGUE_FILE,
    NODE_ORDER_FILE,
    Catalogue,
    default_pathways_dir,
    load_catalogue,
)
from pathways.vocabulary import CENTERS

__all__ = ["IndicatorDefinitions", "indicator_definitions"]

log = logging.getLogger(__name__)

# (path, modification time in ns, size) of each file the definitions are read from
_Signature = tuple[tuple[str, int, int], ...]

_LOADERS: dict[Path, IndicatorDefinitions] = {}
_LOADERS_LOCK = threading.Lock()


class IndicatorDefinitions:
    """The definitions of one folder, read again when its files change."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.last_error: ConfigError | None = None  # the edit that did not load, if any
        self._catalogue: Catalogue | None = None
        self._loaded: _Signature | None = None
        self._failed: _Signature | None = None
        self._lock = threading.Lock()

    def current(self) -> Catalogue:
        """The definitions now (blocking file reads: call it from a worker thread on a loop)."""
        signature = self._signature()
        if signature == self._loaded and self._catalogue is not None:
            return self._catalogue
        with self._lock:
            if signature == self._loaded and self._catalogue is not None:
                return self._catalogue
            try:
                catalogue = load_catalogue(self.folder)
            except ConfigError as error:
                if self._catalogue is None:
                    raise
                if signature != self._failed:  # once per bad edit, not per request
                    log.error(
                        "pathways.indicator_definitions_invalid",
                        extra={
                            "error": str(error),
                            "kept": "the last definitions that loaded",
                        },
                    )
                    self._failed = signature
                self.last_error = error
                return self._catalogue
            if self._catalogue is not None:
                log.info(
                    "pathways.indicator_definitions_reloaded", extra={"folder": str(self.folder)}
                )
            self._catalogue, self._loaded, self._failed = catalogue, signature, None
            self.last_error = None
            return catalogue

    def _signature(self) -> _Signature:
        files = [self.folder / name for name in (NODE_CATALOGUE_FILE, NODE_ORDER_FILE, FACTS_FILE)]
        for center in CENTERS:
            files.extend(sorted((self.folder / center).glob("*.yaml")))
        found = []
        for path in files:
            try:
                stat = path.stat()
            except OSError:
                found.append((str(path), -1, -1))  # missing: load_catalogue says which
                continue
            found.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(found)


def indicator_definitions(folder: Path | None = None) -> IndicatorDefinitions:
    """The one loader of `folder` (the shipped or configured pathways folder by default)."""
    resolved = (folder if folder is not None else default_pathways_dir()).resolve()
    with _LOADERS_LOCK:
        loader = _LOADERS.get(resolved)
        if loader is None:
            loader = _LOADERS[resolved] = IndicatorDefinitions(resolved)
        return loader
