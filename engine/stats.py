"""Per channel and destination counters and latencies, as JSON and as Prometheus text.

Counters are since the engine started; queue depths and error totals come from the journal at
read time, so they survive restarts and match what an operator sees in `messages list`.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LATENCY_BUCKETS_S", "Latency", "Stats"]

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(slots=True)
class Latency:
    """A fixed-bucket histogram (Prometheus style) with count and sum."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    count: int = 0
    total_s: float = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.count += 1
        self.total_s += seconds

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding the q-quantile (None when nothing was observed)."""
        if not self.count:
            return None
        rank = q * self.count
        seen = 0
        for index, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                return LATENCY_BUCKETS_S[index] if index < len(LATENCY_BUCKETS_S) else float("inf")
        return float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean_ms": round(1000 * self.total_s / self.count, 3) if self.count else None,
            "p50_le_ms": _ms(self.quantile(0.5)),
            "p99_le_ms": _ms(self.quantile(0.99)),
        }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


class Stats:
    """Counters the runtime bumps as messages move."""

    def __init__(self) -> None:
        self.channel: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.destination: dict[tuple[str, str], dict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        self.journal_latency: dict[str, Latency] = defaultdict(Latency)
        self.delivery_latency: dict[tuple[str, str], Latency] = defaultdict(Latency)

    def count(self, channel: str, event: str, n: int = 1) -> None:
        self.channel[channel][event] += n

    def count_destination(self, channel: str, destination: str, event: str, n: int = 1) -> None:
        self.destination[(channel, destination)][event] += n

    def snapshot(
        self,
        messages_by_status: dict[tuple[str, str], int],
        deliveries_by_status: dict[tuple[str, str, str], int],
        deployed: list[str],
    ) -> dict[str, Any]:
        """Everything in one JSON-ready document: since-start counters plus journal totals."""
        channels: dict[str, Any] = {}
        names = set(deployed) | set(self.channel) | {c for c, _ in messages_by_status}
        for name in sorted(names):
            counters = self.channel.get(name, {})
            channels[name] = {
                "deployed": name in deployed,
                "since_start": {
                    key: counters.get(key, 0)
                    for key in ("received", "duplicate", "filtered", "transformed", "error")
                },
                "journal": {
                    status: n for (c, status), n in sorted(messages_by_status.items()) if c == name
                },
                "journal_commit_latency": self.journal_latency[name].as_dict(),
                "destinations": {},
            }
        dest_names = {(c, d) for c, d, _ in deliveries_by_status} | set(self.destination)
        for channel, destination in sorted(dest_names):
            counters = self.destination.get((channel, destination), {})
            entry = channels.setdefault(channel, {"destinations": {}})["destinations"]
            entry[destination] = {
                "since_start": {
                    key: counters.get(key, 0) for key in ("sent", "filtered", "retried", "error")
                },
                "queue": {
                    status: n
                    for (c, d, status), n in sorted(deliveries_by_status.items())
                    if (c, d) == (channel, destination)
                },
                "latency": self.delivery_latency[(channel, destination)].as_dict(),
            }
        return {"channels": channels}

    def prometheus(
        self,
        messages_by_status: dict[tuple[str, str], int],
        deliveries_by_status: dict[tuple[str, str, str], int],
        subscribers_pending: Mapping[str, int] | None = None,
    ) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")

        family(
            "greenchannel_messages_total", "counter", "Messages by channel and event since start."
        )
        for channel, counters in sorted(self.channel.items()):
            for event, n in sorted(counters.items()):
                labels = f'channel="{_label(channel)}",event="{event}"'
                lines.append(f"greenchannel_messages_total{{{labels}}} {n}")
        family("greenchannel_journal_messages", "gauge", "Journal rows by channel and status.")
        for (channel, status), n in sorted(messages_by_status.items()):
            labels = f'channel="{_label(channel)}",status="{status}"'
            lines.append(f"greenchannel_journal_messages{{{labels}}} {n}")
        family(
            "greenchannel_destination_deliveries_total",
            "counter",
            "Deliveries by destination and outcome since start.",
        )
        for (channel, destination), counters in sorted(self.destination.items()):
            for event, n in sorted(counters.items()):
                lines.append(
                    "greenchannel_destination_deliveries_total"
                    f'{{channel="{_label(channel)}",destination="{_label(destination)}",'
                    f'event="{event}"}} {n}'
                )
        family("greenchannel_destination_queue", "gauge", "Deliveries by destination and status.")
        for (channel, destination, status), n in sorted(deliveries_by_status.items()):
            lines.append(
                "greenchannel_destination_queue"
                f'{{channel="{_label(channel)}",destination="{_label(destination)}",'
                f'status="{status}"}} {n}'
            )
        family(
            "greenchannel_journal_commit_seconds",
            "histogram",
            "Time from arrival to durable journal commit (the ACK waits for it).",
        )
        for channel, latency in sorted(self.journal_latency.items()):
            _histogram(
                lines,
                "greenchannel_journal_commit_seconds",
                f'channel="{_label(channel)}"',
                latency,
            )
        family(
            "greenchannel_delivery_seconds",
            "histogram",
            "Time from arrival to successful delivery.",
        )
        for (channel, destination), latency in sorted(self.delivery_latency.items()):
            labels = f'channel="{_label(channel)}",destination="{_label(destination)}"'
            _histogram(lines, "greenchannel_delivery_seconds", labels, latency)
        family(
            "greenchannel_subscriber_pending",
            "gauge",
            "Work a change-event subscriber has taken and not finished (0 when idle).",
        )
        for name, n in sorted((subscribers_pending or {}).items()):
            lines.append(f'greenchannel_subscriber_pending{{subscriber="{_label(name)}"}} {n}')
        return "\n".join(lines) + "\n"


def _histogram(lines: list[str], name: str, labels: str, latency: Latency) -> None:
    cumulative = 0
    for bound, n in zip(LATENCY_BUCKETS_S, latency.buckets, strict=False):
        cumulative += n
        lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {cumulative}')
    lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {latency.count}')
    lines.append(f"{name}_sum{{{labels}}} {latency.total_s:.6f}")
    lines.append(f"{name}_count{{{labels}}} {latency.count}")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
