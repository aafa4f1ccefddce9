"""Is a recording a usable 12-lead ECG? The twelve standard leads, enough seconds, no NaN, no
flat line, amplitudes in a range that says the units are right. Raises ImplausibleEcgError."""

from __future__ import annotations

import numpy as np

from devices.ecg.errors import ImplausibleEcgError
from devices.ecg.model import STANDARD_LEADS, Ecg, with_derived_limb_leads

__all__ = ["MAX_SECONDS", "MIN_SECONDS", "plausible_twelve_leads"]

MIN_SECONDS = 4.0  # three beats at 45/min
MAX_SECONDS = 300.0  # a resting ECG is 10 s; a Holter day is no 12-lead reading
_RATES_HZ = (50.0, 20_000.0)
_FLAT_UV = 30.0  # a lead whose 1st–99th percentile span is under 0.03 mV carries no ECG
# The median lead's span says whether the values are µV: one drifting electrode may span 15 mV,
# a typical lead spans 0.5–3 mV.
_LARGEST_UV = 15_000.0  # more: mV read as V, or the like
_SMALLEST_UV = 100.0  # less: µV read as mV, or every lead off


def plausible_twelve_leads(ecg: Ecg) -> Ecg:
    """The recording with its standard leads (limb leads derived from I and II if missing),
    or ImplausibleEcgError saying what is wrong."""
    leads = with_derived_limb_leads(ecg.leads)
    file = ecg.source
    missing = [name for name in STANDARD_LEADS if name not in leads]
    if missing:
        raise ImplausibleEcgError(
            f"{len(leads)} leads, missing {', '.join(missing)}: a 12-lead ECG is needed", file=file
        )
    if not _RATES_HZ[0] <= ecg.sampling_rate_hz <= _RATES_HZ[1]:
        raise ImplausibleEcgError(
            f"sampling rate {ecg.sampling_rate_hz:g} Hz is outside {_RATES_HZ[0]:g}–"
            f"{_RATES_HZ[1]:g} Hz",
            file=file,
        )
    lengths = {len(leads[name]) for name in STANDARD_LEADS}
    if len(lengths) > 1:
        raise ImplausibleEcgError("the leads have different numbers of samples", file=file)
    seconds = lengths.pop() / ecg.sampling_rate_hz
    if seconds < MIN_SECONDS:
        raise ImplausibleEcgError(
            f"{seconds:.1f} s recorded; at least {MIN_SECONDS:g} s are needed", file=file
        )
    if seconds > MAX_SECONDS:
        raise ImplausibleEcgError(
            f"{seconds:.0f} s recorded; a resting 12-lead ECG is at most {MAX_SECONDS:g} s",
            file=file,
        )
    spans = {}
    for name in STANDARD_LEADS:
        signal = leads[name]
        bad = int(np.count_nonzero(~np.isfinite(signal)))
        if bad:
            raise ImplausibleEcgError(f"lead {name}: {bad} samples are NaN or infinite", file=file)
        low, high = np.percentile(signal, [1, 99])
        spans[name] = float(high - low)
    typical = float(np.median(list(spans.values())))
    if typical > _LARGEST_UV:
        raise ImplausibleEcgError(
            f"the leads span {typical / 1000:.0f} mV: the units are wrong "
            "(a lead spans a few mV at most)",
            file=file,
        )
    if typical < _SMALLEST_UV:
        raise ImplausibleEcgError(
            "the leads span less than 0.1 mV: the units are wrong (or the leads are off)",
            file=file,
        )
    flat = [name for name, span in spans.items() if span < _FLAT_UV]
    if flat:
        raise ImplausibleEcgError(
            f"flat line in lead {', '.join(flat)} (electrode off?)", file=file
        )
    return Ecg(
        leads={name: leads[name] for name in STANDARD_LEADS},
        sampling_rate_hz=ecg.sampling_rate_hz,
        source=ecg.source,
        acquired_at=ecg.acquired_at,
        device=ecg.device,
        patient=ecg.patient,
        device_statements=ecg.device_statements,
        paced=ecg.paced,
    )
