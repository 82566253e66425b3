#!/usr/bin/env python3
"""Make itap-anomaly's scikit-learn parity fixture.

Usage:
    python3 scripts/make_iforest_fixture.py [SEED_CSV]

Reads the seed platform's reference telemetry (default
../shared/data/reference/seed_telemetry_54k.csv beside the repository), keeps the
rows whose five signals are all present, draws 3,000 of them (numpy seed 7), and
writes crates/itap-anomaly/tests/data/:

- iforest_fixture.csv: rpm, temp_c, vibration_g, current_a, voltage_v (6
  significant digits; scikit-learn is fitted on exactly these values), label (1 when
  the row's anomaly_tag is not blank), sklearn_score: the negated
  IsolationForest(n_estimators=200, max_samples=256, random_state=42).score_samples,
  so higher is more anomalous, as in itap-anomaly.
- iforest_fixture.json: scikit-learn's version, its ROC-AUC on the fixture, and the
  mean and standard deviation of its ROC-AUC over random_state 0..9 (the spread a
  different random forest gives), for the parity test to compare against.

Needs numpy and scikit-learn (pip install numpy scikit-learn).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

SIGNALS = ["rpm", "temp_c", "vibration_g", "current_a", "voltage_v"]
ROWS = 3000
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "itap-anomaly" / "tests" / "data"


def forest(seed: int) -> IsolationForest:
    return IsolationForest(n_estimators=200, max_samples=256, random_state=seed)


def main(argv: list[str]) -> int:
    src = Path(argv[0]) if argv else ROOT.parent / "shared" / "data" / "reference" / "seed_telemetry_54k.csv"
    x, y = [], []
    with open(src, newline="") as f:
        for row in csv.DictReader(f):
            try:
                values = [float(row[s]) for s in SIGNALS]
            except ValueError:
                continue
            if any(np.isnan(values)):
                continue
            x.append([float(f"{v:.6g}") for v in values])
            y.append(1 if row["anomaly_tag"].strip() else 0)
    x, y = np.array(x), np.array(y)
    pick = np.sort(np.random.default_rng(7).choice(len(x), ROWS, replace=False))
    x, y = x[pick], y[pick]

    score = -forest(42).fit(x).score_samples(x)
    aucs = [roc_auc_score(y, -forest(s).fit(x).score_samples(x)) for s in range(10)]

    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "iforest_fixture.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([*SIGNALS, "label", "sklearn_score"])
        for values, label, s in zip(x, y, score):
            w.writerow([*(f"{v:.6g}" for v in values), int(label), repr(float(s))])
    meta = {
        "source": src.name,
        "rows": ROWS,
        "anomalous_rows": int(y.sum()),
        "sklearn_version": sklearn.__version__,
        "params": {"n_estimators": 200, "max_samples": 256, "random_state": 42},
        "sklearn_auc": roc_auc_score(y, score),
        "sklearn_auc_seeds_0_9_mean": float(np.mean(aucs)),
        "sklearn_auc_seeds_0_9_std": float(np.std(aucs)),
    }
    (OUT / "iforest_fixture.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
