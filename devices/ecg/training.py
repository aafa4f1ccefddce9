"""Fitting and judging the MI model in numpy: L2-penalised logistic regression (Newton steps),
ROC AUC, stratified k-fold cross-validation. Used by `tools/train_mi_model.py` and the bench."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from devices.ecg.mi_model import FEATURES, MiModel

__all__ = [
    "cross_validated_scores",
    "fit",
    "roc_auc",
    "sensitivity_specificity",
    "youden_threshold",
]

Array = npt.NDArray[np.float64]
_CLIP = 6.0


def roc_auc(scores: Array, labels: npt.NDArray[np.bool_]) -> float:
    """The probability that a random positive scores above a random negative (ties: half)."""
    positives, negatives = scores[labels], scores[~labels]
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([positives, negatives]), kind="mergesort")
    ranks = np.empty(len(order), dtype=np.float64)
    ranks[order] = np.arange(1, len(order) + 1)
    combined = np.concatenate([positives, negatives])
    for value in np.unique(combined):  # average ranks of ties
        tied = combined == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    positive_ranks = ranks[: len(positives)].sum()
    return float(
        (positive_ranks - len(positives) * (len(positives) + 1) / 2)
        / (len(positives) * len(negatives))
    )


def sensitivity_specificity(
    predicted: npt.NDArray[np.bool_], labels: npt.NDArray[np.bool_]
) -> tuple[float, float]:
    sensitivity = float(np.mean(predicted[labels])) if labels.any() else float("nan")
    specificity = float(np.mean(~predicted[~labels])) if (~labels).any() else float("nan")
    return sensitivity, specificity


def _logistic(z: Array, y: Array, penalty: float, iterations: int = 50) -> tuple[Array, float]:
    """Weights and intercept minimising log loss + penalty/2 · |w|² (intercept not penalised)."""
    x = np.hstack([z, np.ones((len(z), 1))])
    w = np.zeros(x.shape[1])
    ridge = np.full(x.shape[1], penalty)
    ridge[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (p - y) + ridge * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(ridge) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w[:-1], float(w[-1])


def youden_threshold(scores: Array, labels: npt.NDArray[np.bool_]) -> float:
    """The score cut-off that maximises sensitivity + specificity."""
    best, best_value = 0.5, -1.0
    for cut in np.unique(scores):
        sensitivity, specificity = sensitivity_specificity(scores >= cut, labels)
        if sensitivity + specificity > best_value:
            best, best_value = float(cut), sensitivity + specificity
    return best


def fit(
    features: Array,
    labels: npt.NDArray[np.bool_],
    penalty: float,
    about: dict[str, Any],
    threshold: float = 0.5,
) -> MiModel:
    """A model fitted on all given records: robust standardization (median, IQR), then L2
    logistic regression."""
    mean = np.median(features, axis=0)
    q75, q25 = np.percentile(features, [75, 25], axis=0)
    scale = np.where(q75 - q25 > 1e-9, (q75 - q25) / 1.349, 1.0)
    z = np.clip((features - mean) / scale, -_CLIP, _CLIP)
    coefficients, intercept = _logistic(z, labels.astype(np.float64), penalty)
    return MiModel(FEATURES, mean, scale, coefficients, intercept, threshold, about)


def cross_validated_scores(
    features: Array, labels: npt.NDArray[np.bool_], penalty: float, folds: int, seed: int
) -> Array:
    """Out-of-fold probabilities from stratified `folds`-fold cross-validation."""
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    for value in (True, False):
        members = np.flatnonzero(labels == value)
        rng.shuffle(members)
        assignment[members] = np.arange(len(members)) % folds
    scores = np.empty(len(labels))
    for fold in range(folds):
        test = assignment == fold
        model = fit(features[~test], labels[~test], penalty, {})
        scores[test] = [model.probability(row) for row in features[test]]
    return scores
