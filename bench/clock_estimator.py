"""How close the clock offset estimate gets, and what folding in a sample costs.

Simulates senders with a known offset and drift whose messages (whole-second MSH-7) arrive
after random delays (exponential, or mostly small with queue stalls), one every `interval`
seconds for a day, and prints the estimate's error and the drift found; then the time per
`ClockRegistry.refresh` (the fit, once per source per journal batch) with a full window
of 600 buckets. Samples are folded one by one and refreshed every 20, as journal batches
would. Figures only, nothing asserted.

Usage: python bench/clock_estimator.py [--seed N]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from devices.clock import ClockRegistry, ClockSettings

START = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)

Delay = Callable[[random.Random], float]
DELAYS: dict[str, Delay] = {
    "exp(0.2 s)": lambda r: r.expovariate(5),
    "exp(2 s)": lambda r: r.expovariate(0.5),
    "0.1 s + 5% stalls of 30 s": lambda r: 0.1 + (30 * r.random() if r.random() < 0.05 else 0),
}


def simulate(
    offset_s: float, drift_ppm: float, interval_s: float, delay: Delay, rng: random.Random
) -> tuple[float, float | None]:
    registry = ClockRegistry(ClockSettings())
    t = 0.0
    samples = 0
    last_offset = offset_s
    while t < 86_400:
        sent = START + timedelta(seconds=t)
        last_offset = offset_s + drift_ppm * 1e-6 * t
        device = (sent + timedelta(seconds=last_offset)).replace(microsecond=0)
        received = sent + timedelta(seconds=delay(rng))
        registry.fold("bench", device, received)
        samples += 1
        if samples % 20 == 0:
            registry.refresh("bench")
        t += interval_s * rng.uniform(0.5, 1.5)
    registry.refresh("bench")
    source = registry.get("bench")
    assert source is not None and source.estimate.offset_s is not None
    return source.estimate.offset_s - last_offset, source.estimate.drift_ppm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"{'delays':28} {'msg every':>9} {'drift':>7} {'offset error s':>15} {'drift found':>11}")
    for name, delay in DELAYS.items():
        for interval_s in (60.0, 300.0):
            for drift_ppm in (0.0, 50.0, 500.0):
                error, found = simulate(120.0, drift_ppm, interval_s, delay, rng)
                shown = "-" if found is None else f"{found:+.1f}"
                print(f"{name:28} {interval_s:>8g}s {drift_ppm:>6g}  {error:>+15.2f} {shown:>11}")
    registry = ClockRegistry(ClockSettings())
    for minute in range(600):
        at = START + timedelta(minutes=minute)
        registry.observe("bench", at, at)
    rounds = 100
    began = time.process_time()
    for _ in range(rounds):
        registry.refresh("bench")
    per_ms = (time.process_time() - began) / rounds * 1000
    print(f"refresh() with a full window of 600 buckets: {per_ms:.2f} ms CPU per source and batch")


if __name__ == "__main__":
    main()
