"""What `greenchannel clocks` prints and `GET /api/clocks` answers: every source's clock and
every engine host's NTP offset, read from the clock tables."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from devices.clock.store import load_hosts, load_sources

__all__ = ["clocks_report", "format_table"]


async def clocks_report(database: AsyncEngine, zone: tzinfo) -> dict[str, Any]:
    """The sources (by id) and the hosts, as JSON-ready values in `zone`."""

    def read(connection: Connection) -> dict[str, Any]:
        return {
            "sources": [
                {
                    "source": s.source_id,
                    "channel": s.channel,
                    "sender": s.sender,
                    "status": s.status,
                    "offset_s": s.estimate.offset_s,
                    "drift_ppm": s.estimate.drift_ppm,
                    "uncertainty_s": s.estimate.uncertainty_s,
                    "samples": s.samples,
                    "last_seen": _instant(s.last_seen, zone),
                    "first_seen": _instant(s.first_seen, zone),
                    "alerting": s.alerting,
                }
                for s in load_sources(connection)
            ],
            "hosts": [
                {
                    "node": h.node,
                    "ntp_server": h.server,
                    "offset_s": h.offset_s,
                    "delay_s": h.delay_s,
                    "stratum": h.stratum,
                    "checked_at": _instant(h.checked_at, zone),
                    "error": h.error,
                }
                for h in load_hosts(connection)
            ],
        }

    async with database.connect() as connection:
        return await connection.run_sync(read)


def format_table(report: dict[str, Any]) -> str:
    """The report as the aligned text table the command prints."""
    lines: list[str] = []
    hosts = report["hosts"]
    if not hosts:
        lines.append("host NTP: not checked (no clocks.ntp_server configured)")
    for host in hosts:
        if host["error"]:
            lines.append(f"host {host['node']} NTP {host['ntp_server']}: error: {host['error']}")
        else:
            lines.append(
                f"host {host['node']} NTP {host['ntp_server']}: offset "
                f"{host['offset_s']:+.3f} s, delay {host['delay_s']:.3f} s, "
                f"stratum {host['stratum']}, checked {host['checked_at']}"
            )
    sources = report["sources"]
    if not sources:
        lines.append("no source has sent a timestamped message yet")
        return "\n".join(lines) + "\n"
    header = ("SOURCE", "STATUS", "OFFSET_S", "DRIFT_PPM", "SAMPLES", "LAST_SEEN")
    rows = [
        (
            s["source"],
            s["status"],
            "-" if s["offset_s"] is None else f"{s['offset_s']:+.1f}",
            "-" if s["drift_ppm"] is None else f"{s['drift_ppm']:+.1f}",
            str(s["samples"]),
            s["last_seen"] or "-",
        )
        for s in sources
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _instant(value: datetime | None, zone: tzinfo) -> str | None:
    return None if value is None else value.astimezone(zone).isoformat(timespec="seconds")
