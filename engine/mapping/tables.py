"""CSV code tables for `lookup()`: one file per table, read once and cached by path and mtime.

A table has a header row with at least `code,target`; `system` and `display` are optional.
Blank lines and lines whose first cell starts with `#` are skipped; a code may appear only once.
"""

from __future__ import annotations

import csv
import io
import threading
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigError

__all__ = ["CodeTable", "TableRow", "load_table"]

MAX_TABLE_BYTES = 16 * 1024 * 1024

_cache: dict[tuple[str, int, int], CodeTable] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class TableRow:
    """What one code translates to."""

    target: str
    system: str | None = None
    display: str | None = None


@dataclass(frozen=True, slots=True)
class CodeTable:
    """A code table: source code → target code (and optional system and display)."""

    name: str
    file: str
    rows: dict[str, TableRow]

    def get(self, code: str) -> TableRow | None:
        """The row for `code` (compared after trimming spaces), or None."""
        return self.rows.get(code.strip())


def load_table(name: str, path: Path, *, display_name: str | None = None) -> CodeTable:
    """Read (or reuse from the cache) the CSV table at `path`; ConfigError names file and line."""
    shown = display_name if display_name is not None else str(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise ConfigError(f"code table '{name}' not found", file=shown) from exc
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and cached.name == name:
        return cached
    table = _read(name, path, shown, stat.st_size)
    with _cache_lock:
        _cache[key] = table
    return table


def _read(name: str, path: Path, shown: str, size: int) -> CodeTable:
    if size > MAX_TABLE_BYTES:
        raise ConfigError(f"code table is larger than {MAX_TABLE_BYTES} bytes", file=shown)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read code table ({exc.strerror})", file=shown) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"byte {exc.start} is not valid UTF-8", file=shown) from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: dict[str, TableRow] = {}
    try:
        for cells in reader:
            line = reader.line_num
            if not cells or not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                continue
            cells = [c.strip() for c in cells]
            if header is None:
                header = [c.lower() for c in cells]
                missing = {"code", "target"} - set(header)
                if missing:
                    raise ConfigError(
                        f"the header must name the columns {', '.join(sorted(missing))}",
                        file=shown,
                        line=line,
                    )
                continue
            if len(cells) > len(header):
                raise ConfigError(
                    f"{len(cells)} cells but the header has {len(header)}", file=shown, line=line
                )
            record = dict(zip(header, cells, strict=False))
            code = record.get("code", "")
            if not code:
                raise ConfigError("empty code", file=shown, line=line)
            if code in rows:
                raise ConfigError("code appears twice", file=shown, line=line)
            rows[code] = TableRow(
                target=record.get("target", ""),
                system=record.get("system") or None,
                display=record.get("display") or None,
            )
    except csv.Error as exc:
        raise ConfigError(f"CSV error: {exc}", file=shown, line=reader.line_num) from exc
    if header is None:
        raise ConfigError("code table is empty (needs a header code,target)", file=shown)
    return CodeTable(name=name, file=shown, rows=rows)
