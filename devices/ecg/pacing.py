"""Pacemaker spikes: slopes far steeper than any QRS, just before the QRS complexes. Only
recordings sampled at 500 Hz or more show them; below that, the device's own flag decides."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from devices.ecg.model import Ecg
from devices.ecg.signal import ANALYSIS_HZ

__all__ = ["MIN_RATE_HZ", "paced_beats_share"]

MIN_RATE_HZ = 500.0
_BEFORE_QRS_S = 0.12


def paced_beats_share(ecg: Ecg, peaks: npt.NDArray[np.int64], spike_uv_per_ms: float) -> float:
    """The share of QRS complexes (peaks at ANALYSIS_HZ) preceded by a pacing spike in any
    lead; 0.0 when the sampling rate is too low to see spikes."""
    fs = ecg.sampling_rate_hz
    if fs < MIN_RATE_HZ or len(peaks) == 0:
        return 0.0
    stacked = np.vstack(list(ecg.leads.values()))
    slope = np.abs(np.diff(stacked, axis=1)) * fs / 1000.0  # µV per ms
    spikes = np.flatnonzero(np.max(slope, axis=0) >= spike_uv_per_ms)
    if len(spikes) == 0:
        return 0.0
    at = peaks / ANALYSIS_HZ * fs
    window = _BEFORE_QRS_S * fs
    lo = np.searchsorted(spikes, at - window)
    hi = np.searchsorted(spikes, at)
    return float(np.mean(hi > lo))
