"""Every source's clock, kept up to date from samples: the narrow interface device feeds use.

A *source* is a channel, or a channel and the sender that stamped the message
(`monitor-oru:BSM-6501/ED`, from MSH-3/MSH-4). `ClockRegistry.observe` folds in one sample (the
sender's timestamp and the host's receipt time), `correct` turns a device time into true time by
the policy of `devices.clock.correction`. The monitor (`devices.clock.monitor`) feeds the registry
from the journal for every channel whose source fills `Inbound.sent_at`; a device connector that
sees more timestamps than it journals (a batch of UWB fixes) may call `observe` itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from devices.clock.config import ClockSettings
from devices.clock.correction import CorrectedTime, correct_time
from devices.clock.estimator import QUANTUM_S, Bucket, Estimate, add_sample, trim_and_estimate

__all__ = ["AlertEvent", "ClockRegistry", "SourceClock", "Status", "source_id_for"]

Status = Literal["ok", "drifting", "unknown"]


def source_id_for(channel: str, sender: str | None) -> str:
    """The name a source's clock is kept under."""
    return f"{channel}:{sender}" if sender else channel


@dataclass(frozen=True, slots=True)
class SourceClock:
    """One source's clock as the registry knows it."""

    source_id: str
    channel: str
    sender: str | None
    first_seen: datetime
    last_seen: datetime
    samples: int
    estimate: Estimate
    status: Status
    alerting: bool = False
    crossings: int = 0  # alerts raised so far: the number in each alert's key
    alert_journalled: str | None = None  # the key of the last alert message journalled
    buckets: tuple[Bucket, ...] = ()

    @property
    def wanted_alert(self) -> str | None:
        """The key of the alert message this state calls for (None: none ever raised)."""
        if self.crossings == 0:
            return None
        event = "raised" if self.alerting else "resolved"
        return f"clock/{self.source_id}/{self.crossings}/{event}"

    def buckets_json(self) -> str:
        return json.dumps(
            [[b.start.isoformat(), b.at.isoformat(), b.best_offset_s, b.samples]
             for b in self.buckets]
        )  # fmt: skip

    @staticmethod
    def buckets_from_json(text: str) -> tuple[Bucket, ...]:
        return tuple(
            Bucket(datetime.fromisoformat(s), datetime.fromisoformat(a), float(y), int(n))
            for s, a, y, n in json.loads(text or "[]")
        )


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A source crossed the threshold (raised) or came back under the recovery level."""

    source: SourceClock
    event: Literal["raised", "resolved"]

    @property
    def key(self) -> str:
        return f"clock/{self.source.source_id}/{self.source.crossings}/{self.event}"


class ClockRegistry:
    """The clocks of all sources, with the host's own NTP offset applied to receipt times."""

    def __init__(self, settings: ClockSettings, sources: Iterable[SourceClock] = ()) -> None:
        self.settings = settings
        self._sources = {s.source_id: s for s in sources}
        # What to add to the host's clock to get true time (NTP), 0 until measured.
        self.host_offset_s = 0.0

    def get(self, source_id: str) -> SourceClock | None:
        return self._sources.get(source_id)

    def put(self, source: SourceClock) -> None:
        self._sources[source.source_id] = source

    @property
    def sources(self) -> list[SourceClock]:
        return sorted(self._sources.values(), key=lambda s: s.source_id)

    def observe(
        self,
        source_id: str,
        device_time: datetime,
        received_at: datetime,
        *,
        channel: str | None = None,
        sender: str | None = None,
    ) -> AlertEvent | None:
        """Fold in one sample: `device_time` as the sender stamped it, `received_at` by the
        host's clock (both aware). Returns the alert the sample raises or resolves, if any."""
        self.fold(source_id, device_time, received_at, channel=channel, sender=sender)
        return self.refresh(source_id)

    def fold(
        self,
        source_id: str,
        device_time: datetime,
        received_at: datetime,
        *,
        channel: str | None = None,
        sender: str | None = None,
    ) -> None:
        """Add a sample without estimating yet: a batch of samples is folded in, then the
        source is `refresh`ed once (the fit is the costly part)."""
        true_receipt = received_at + timedelta(seconds=self.host_offset_s)
        old = self._sources.get(source_id)
        if old is None:
            old = SourceClock(
                source_id=source_id,
                channel=channel or source_id.split(":", 1)[0],
                sender=sender,
                first_seen=true_receipt,
                last_seen=true_receipt,
                samples=0,
                estimate=Estimate(None, None, QUANTUM_S, 0, None),
                status="unknown",
            )
        buckets = add_sample(old.buckets, device_time, true_receipt, self.settings.estimator)
        self._sources[source_id] = replace(
            old,
            last_seen=max(old.last_seen, true_receipt),
            samples=old.samples + 1,
            buckets=tuple(buckets),
        )

    def refresh(self, source_id: str) -> AlertEvent | None:
        """Estimate the source's clock from its samples; the alert this raises or resolves."""
        old = self._sources.get(source_id)
        if old is None:
            return None
        buckets, found = trim_and_estimate(old.buckets, self.settings.estimator)
        status, alerting = _classify(found, old.samples, old.alerting, self.settings)
        new = replace(
            old,
            estimate=found,
            status=status,
            alerting=alerting,
            crossings=old.crossings + (1 if alerting and not old.alerting else 0),
            buckets=tuple(buckets),
        )
        self._sources[source_id] = new
        if alerting != old.alerting:
            return AlertEvent(new, "raised" if alerting else "resolved")
        return None

    def correct(self, source_id: str, device_time: datetime) -> CorrectedTime:
        """`device_time` in true time, by the correction policy; the result says what it did."""
        source = self._sources.get(source_id)
        return correct_time(
            source_id,
            device_time,
            None if source is None or source.status == "unknown" else source.estimate,
            trusted=self.settings.is_trusted(source_id),
            tolerance_s=self.settings.tolerance_s,
            horizon_s=self.settings.estimator.window_s,
        )


def _classify(
    found: Estimate, samples: int, alerting: bool, settings: ClockSettings
) -> tuple[Status, bool]:
    """Status and whether the alert is up: raised past the threshold, resolved only under the
    (lower) recovery level, so an offset hovering at the threshold alerts once."""
    if found.offset_s is None or samples < settings.min_samples:
        return "unknown", alerting
    off = abs(found.offset_s)
    if alerting:
        alerting = off >= settings.recover_s
    else:
        alerting = off > settings.alert_threshold_s
    return ("drifting" if alerting else "ok"), alerting
