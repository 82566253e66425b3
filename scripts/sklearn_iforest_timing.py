#!/usr/bin/env python3
"""Time scikit-learn's IsolationForest on the matrix shape of itap-anomaly's bench.

Usage:
    python3 scripts/sklearn_iforest_timing.py [ROWS...]     (default 54000 864000)
    python3 scripts/sklearn_iforest_timing.py --matrix DIR/features-ROWSxCOLS.f64 ...

With --matrix, times the very matrices the root crate's `detectors` bench made
(`ITAP_BENCH_DUMP=DIR cargo bench --bench detectors`: the default feature set of
the simulated fleet, standardised, row-major little-endian f64).

Builds, for each size, a 40-column matrix with the recipe of
crates/itap-anomaly/benches/anomaly.rs (five AR(1) latent signals, z ← 0.95 z + 0.3 ε,
mixed into 40 columns with standard-normal weights, plus 0.5 ε noise, and a shift of
4 in every seventh column of every 200th row; numpy's generator, so the same
distribution, not the same numbers), fits IsolationForest(n_estimators=200,
max_samples=256) and times fit and score_samples with n_jobs 1 and 2 (best of a few
runs, matrix built outside the timing). Prints one JSON line per measurement;
compare rows_per_s with criterion's `anomaly/iforest_score/ROWS` throughput.

Needs numpy, scipy and scikit-learn (pip install numpy scikit-learn).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import sklearn
from scipy.signal import lfilter
from sklearn.ensemble import IsolationForest

COLUMNS, LATENT = 40, 5


def matrix(rows: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((LATENT, COLUMNS))
    z = lfilter([0.3], [1.0, -0.95], rng.standard_normal((rows, LATENT)), axis=0)
    x = z @ weights + 0.5 * rng.standard_normal((rows, COLUMNS))
    shifted = np.arange(rows) % 200 == 199
    x[np.ix_(shifted, np.arange(0, COLUMNS, 7))] += 4.0
    return x


def best_of(runs: int, f) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def load(path: str) -> np.ndarray:
    rows, cols = (int(v) for v in path.rsplit("-", 1)[1].split(".")[0].split("x"))
    return np.fromfile(path, dtype="<f8").reshape(rows, cols)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--matrix"]:
        inputs = [(p, load(p)) for p in argv[1:]]
    else:
        inputs = [(None, matrix(int(a))) for a in argv or ["54000", "864000"]]
    for path, x in inputs:
        rows = x.shape[0]
        runs = 3 if rows <= 100_000 else 2
        for jobs in (1, 2):
            model = IsolationForest(n_estimators=200, max_samples=256, random_state=0, n_jobs=jobs)
            fit_s = best_of(runs, lambda: model.fit(x))
            score_s = best_of(runs, lambda: model.score_samples(x))
            print(
                json.dumps(
                    {
                        "sklearn": sklearn.__version__,
                        "rows": rows,
                        "columns": x.shape[1],
                        "matrix": path or "synthetic",
                        "n_jobs": jobs,
                        "fit_s": round(fit_s, 4),
                        "score_s": round(score_s, 4),
                        "rows_per_s": round(rows / score_s),
                    }
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
