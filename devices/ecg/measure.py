"""Measurements on the median beats: QRS onset and J point (global, from the spatial velocity
of all twelve leads), the isoelectric level (PR segment) and per lead the Q, R and S waves,
ST at J and J+60 ms, and the T wave."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from devices.ecg.model import STANDARD_LEADS
from devices.ecg.signal import ANALYSIS_HZ, Beats

__all__ = ["LeadMeasures", "Measurements", "measure"]

_MS = ANALYSIS_HZ / 1000.0  # samples per millisecond
_PR_WINDOW_MS = (-40, -12)  # before QRS onset: the isoelectric PR segment
_T_WINDOW_MS = (100, 400)  # after J: where the T wave peaks
_ONSET_FRACTION = 0.05
_OFFSET_FRACTION = 0.05
_Q_MIN_UV = 20.0  # an initial negative deflection smaller than this is no Q wave


@dataclass(frozen=True, slots=True)
class LeadMeasures:
    """One lead's median beat, amplitudes in mV relative to the PR segment."""

    q_mv: float  # the initial negative deflection (≤ 0)
    q_ms: float  # its duration
    r_mv: float  # the largest positive deflection in the QRS (≥ 0)
    s_mv: float  # the largest negative deflection after R (≤ 0)
    qrs_area: float  # mV·ms, net
    st_j_mv: float
    st_j60_mv: float
    st_slope: float  # mV per 100 ms from J to J+60 (negative: downsloping)
    t_mv: float  # the T wave's extreme, signed


@dataclass(frozen=True, slots=True)
class Measurements:
    """What the median beats give: global intervals and per-lead amplitudes."""

    qrs_onset_ms: float  # from the start of the median beat window
    qrs_ms: float
    heart_rate: float
    rr_irregularity: float  # SD / mean of the RR intervals
    leads: dict[str, LeadMeasures]


def _velocity(median: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    slope = np.diff(median, axis=1, append=median[:, -1:])
    return np.asarray(np.sqrt(np.sum(slope * slope, axis=0)))


def _qrs_bounds(median: npt.NDArray[np.float64], fiducial: int) -> tuple[int, int]:
    """QRS onset and J point: where the spatial velocity around the QRS falls below a fifth
    of its peak above the resting level; gaps under 24 ms inside the QRS are bridged."""
    velocity = _velocity(median)
    search = slice(fiducial - int(120 * _MS), fiducial + int(120 * _MS))
    peak_at = search.start + int(np.argmax(velocity[search]))
    rest = float(np.median(velocity[: int(150 * _MS)]))
    above = velocity > rest + _ONSET_FRACTION * (velocity[peak_at] - rest)
    gap = int(24 * _MS)
    onset = peak_at
    while onset > fiducial - int(150 * _MS) and (
        above[onset - 1] or above[max(onset - gap, 0) : onset].any()
    ):
        onset -= 1
    above = velocity > rest + _OFFSET_FRACTION * (velocity[peak_at] - rest)
    offset = peak_at
    while offset < fiducial + int(200 * _MS) and (
        above[offset + 1] or above[offset + 1 : offset + 1 + gap].any()
    ):
        offset += 1
    return onset, offset + 1


def _lead(beat: npt.NDArray[np.float64], onset: int, j: int) -> LeadMeasures:
    base = float(
        np.mean(beat[onset + int(_PR_WINDOW_MS[0] * _MS) : onset + int(_PR_WINDOW_MS[1] * _MS)])
    )
    wave = (beat - base) / 1000.0  # mV
    qrs = wave[onset:j]
    r_at = int(np.argmax(qrs))
    r_mv = max(float(qrs[r_at]), 0.0)
    # Q: the negative deflection before R; its duration is the time spent below the baseline.
    before_r = qrs[:r_at]
    q_mv = min(float(np.min(before_r)), 0.0) if r_at > 0 and r_mv > 0 else 0.0
    q_samples = int(np.count_nonzero(before_r < 0)) if q_mv * 1000 <= -_Q_MIN_UV else 0
    if not q_samples:
        q_mv = 0.0
    s_mv = min(float(np.min(qrs[r_at:])), 0.0)
    j60 = min(j + int(60 * _MS), len(wave) - 1)
    t_window = wave[j + int(_T_WINDOW_MS[0] * _MS) : min(j + int(_T_WINDOW_MS[1] * _MS), len(wave))]
    t_at = int(np.argmax(np.abs(t_window))) if len(t_window) else 0
    return LeadMeasures(
        q_mv=q_mv,
        q_ms=q_samples / _MS,
        r_mv=r_mv,
        s_mv=s_mv,
        qrs_area=float(np.sum(qrs) / _MS),
        st_j_mv=float(wave[j]),
        st_j60_mv=float(wave[j60]),
        st_slope=float((wave[j60] - wave[j]) / 0.6),
        t_mv=float(t_window[t_at]) if len(t_window) else 0.0,
    )


def measure(beats: Beats) -> Measurements:
    """Global QRS bounds and per-lead measures of the median beats."""
    onset, j = _qrs_bounds(beats.median, beats.fiducial)
    rr = beats.rr_s
    return Measurements(
        qrs_onset_ms=onset / _MS,
        qrs_ms=(j - onset) / _MS,
        heart_rate=float(60.0 / np.mean(rr)),  # beats over time, as carts report it
        rr_irregularity=float(np.std(rr) / np.mean(rr)),
        leads={
            name: _lead(beats.median[index], onset, j) for index, name in enumerate(STANDARD_LEADS)
        },
    )
