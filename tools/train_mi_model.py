"""Train the MI probability model on the 250 labelled PTB-XL records and write its weights to
devices/ecg/mi-model.json. Only `labels.csv` is read: the holdout records are never touched.

    .venv/bin/python tools/train_mi_model.py [--data ../shared/data/ecg] [--dry-run]

Prints the cross-validated AUC for each penalty tried and picks the best; the weights file
records the data, the penalty and the cross-validated figures.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from devices.ecg.analysis import measure_ecg
from devices.ecg.mi_model import MODEL_FILE, feature_vector
from devices.ecg.read import read_ecg
from devices.ecg.training import (
    cross_validated_scores,
    fit,
    roc_auc,
    sensitivity_specificity,
    youden_threshold,
)

ROOT = Path(__file__).resolve().parents[1]
PENALTIES = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
FOLDS = 5
REPEATS = 5


def labelled(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """Features and MI labels of the records in ptbxl/labels.csv."""
    rows = list(csv.DictReader((data / "ptbxl" / "labels.csv").open(encoding="utf-8")))
    features, labels = [], []
    for row in rows:
        _, m, _ = measure_ecg(read_ecg(data / "ptbxl" / row["record"]))
        features.append(feature_vector(m))
        labels.append(row["label"] == "MI")
    return np.array(features), np.array(labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ecg")
    parser.add_argument("--dry-run", action="store_true", help="report, do not write weights")
    args = parser.parse_args()
    features, labels = labelled(args.data)
    print(f"{len(labels)} records: {labels.sum()} MI, {(~labels).sum()} normal")
    results = {}
    for penalty in PENALTIES:
        aucs = [
            roc_auc(cross_validated_scores(features, labels, penalty, FOLDS, seed), labels)
            for seed in range(REPEATS)
        ]
        results[penalty] = (float(np.mean(aucs)), float(np.std(aucs)))
        print(
            f"penalty {penalty:>6g}: {FOLDS}-fold CV AUC {np.mean(aucs):.3f} ± {np.std(aucs):.3f}"
        )
    best = max(results, key=lambda p: results[p][0])
    # The operating point: the cut-off that balances sensitivity and specificity out of fold.
    out_of_fold = cross_validated_scores(features, labels, best, FOLDS, seed=0)
    threshold = youden_threshold(out_of_fold, labels)
    sensitivity, specificity = sensitivity_specificity(out_of_fold >= threshold, labels)
    print(
        f"threshold {threshold:.3f}: "
        f"CV sensitivity {sensitivity:.3f}, specificity {specificity:.3f}"
    )
    about = {
        "trained_on": "PTB-XL 100 Hz, the 250 records of ptbxl/labels.csv (MI vs NORM)",
        "records": int(len(labels)),
        "mi": int(labels.sum()),
        "penalty": best,
        "cv": f"{FOLDS}-fold stratified, {REPEATS} repeats",
        "cv_auc_mean": round(results[best][0], 4),
        "cv_auc_sd": round(results[best][1], 4),
        "cv_sensitivity": round(sensitivity, 4),
        "cv_specificity": round(specificity, 4),
        "script": "tools/train_mi_model.py",
    }
    model = fit(features, labels, best, about, threshold)
    print(
        f"chosen penalty {best:g}; training AUC "
        f"{roc_auc(np.array([model.probability(r) for r in features]), labels):.3f}"
    )
    if not args.dry_run:
        target = ROOT / "devices" / "ecg" / MODEL_FILE
        target.write_text(json.dumps(model.as_json(), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
