"""The MI probability: a logistic regression on median-beat features (Q, R, S, ST, T per lead,
QRS duration, heart rate), trained on the 250 labelled PTB-XL records by
`tools/train_mi_model.py`. Its weights ship as `devices/ecg/mi-model.json`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from devices.ecg.measure import Measurements
from devices.ecg.model import STANDARD_LEADS
from engine.errors import ConfigError

__all__ = ["FEATURES", "MODEL_FILE", "MiModel", "feature_vector", "load_model"]

MODEL_FILE = "mi-model.json"
_LEAD_FIELDS = ("q_mv", "q_ms", "r_mv", "s_mv", "st_j_mv", "st_j60_mv", "t_mv")
FEATURES: tuple[str, ...] = (
    *(f"{lead}.{name}" for lead in STANDARD_LEADS for name in _LEAD_FIELDS),
    "qrs_ms",
    "heart_rate",
)
_CLIP = 6.0  # standardized features beyond ±6 SD are clipped: one odd lead cannot dominate


def feature_vector(m: Measurements) -> npt.NDArray[np.float64]:
    """The features of FEATURES, in order."""
    values = [
        float(getattr(m.leads[lead], name)) for lead in STANDARD_LEADS for name in _LEAD_FIELDS
    ]
    return np.array([*values, m.qrs_ms, m.heart_rate], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class MiModel:
    """Standardize, clip, weigh, squash."""

    features: tuple[str, ...]
    mean: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    coefficients: npt.NDArray[np.float64]
    intercept: float
    threshold: float  # probabilities at or above it count as MI (chosen by cross-validation)
    about: dict[str, Any]

    def probability(self, features: npt.NDArray[np.float64]) -> float:
        z = np.clip((features - self.mean) / self.scale, -_CLIP, _CLIP)
        return float(1.0 / (1.0 + np.exp(-(z @ self.coefficients + self.intercept))))

    def as_json(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": self.mean.round(6).tolist(),
            "scale": self.scale.round(6).tolist(),
            "coefficients": self.coefficients.round(6).tolist(),
            "intercept": round(self.intercept, 6),
            "threshold": round(self.threshold, 4),
            "about": self.about,
        }


@cache
def load_model() -> MiModel:
    """The shipped weights, read once. ConfigError if they do not fit this code's features."""
    where = f"devices/ecg/{MODEL_FILE}"
    try:
        data = json.loads(resources.files("devices.ecg").joinpath(MODEL_FILE).read_text("utf-8"))
        model = MiModel(
            features=tuple(data["features"]),
            mean=np.array(data["mean"], dtype=np.float64),
            scale=np.array(data["scale"], dtype=np.float64),
            coefficients=np.array(data["coefficients"], dtype=np.float64),
            intercept=float(data["intercept"]),
            threshold=float(data["threshold"]),
            about=dict(data.get("about", {})),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"the MI model weights cannot be read ({type(exc).__name__})",
            file=where,
            hint="reinstall greenchannel or retrain with tools/train_mi_model.py",
        ) from exc
    if model.features != FEATURES or not (
        len(model.mean) == len(model.scale) == len(model.coefficients) == len(FEATURES)
    ):
        raise ConfigError(
            "the MI model was trained on other features than this code computes",
            file=where,
            hint="retrain with tools/train_mi_model.py",
        )
    return model
