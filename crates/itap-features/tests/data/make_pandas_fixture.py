#!/usr/bin/env python3
"""Makes the pandas reference fixture for itap-features' rolling statistics.

Reads the seed platform's reference telemetry (seed_telemetry_54k.csv), keeps a
few devices' rows around their sensor dropouts (so that missing values are in the
windows), thins one device at random so that its sampling is irregular, and writes:

  seed_subset.csv       the kept rows, byte for byte as in the seed file
  pandas_rolling.csv    per device, in the order of seed_subset.csv: pandas'
                        rolling mean/std/min/max of every signal over
                        - the last 30 rows (`rolling(30, min_periods=1)`, the seed's
                          row window), and
                        - the last 5 minutes (`rolling("5min", min_periods=1)` on the
                          timestamps, closed on the right: (t - 5 min, t]).

The seed computed its rolling features with min_periods=1 (a value as soon as the
window holds one observation). Missing values are NaN and are skipped by pandas,
as they are by itap-features. pandas' std is the sample standard deviation
(ddof=1), so a window with one observation has std NaN.

Run from the repository root (needs pandas):

    python3 crates/itap-features/tests/data/make_pandas_fixture.py \
        ../shared/data/reference/seed_telemetry_54k.csv crates/itap-features/tests/data
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

SIGNALS = ["rpm", "temp_c", "vibration_g", "current_a", "voltage_v"]
DEVICES = ["DEV-0003", "DEV-0011", "DEV-0024"]  # the devices with the most dropouts
ROWS_PER_DEVICE = 240  # 40 minutes at 10 s
THINNED = "DEV-0024"  # a random 20% of its rows are dropped: irregular sampling
STATS = ["mean", "std", "min", "max"]


def main(seed_csv: str, out_dir: str) -> None:
    out = Path(out_dir)
    lines = Path(seed_csv).read_text().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    df = pd.read_csv(seed_csv, keep_default_na=False, na_values=[""])
    df["line"] = range(len(body))
    keep = []
    rng = np.random.default_rng(54)
    for dev in DEVICES:
        d = df[df.device_id == dev]
        missing = d[SIGNALS].isna().any(axis=1).to_numpy()
        first = int(np.argmax(missing)) if missing.any() else 0
        start = max(0, first - ROWS_PER_DEVICE // 3)
        d = d.iloc[start : start + ROWS_PER_DEVICE]
        if dev == THINNED:
            d = d[rng.random(len(d)) >= 0.2]
        keep.append(d)
    sub = pd.concat(keep).sort_values("line", kind="stable")
    (out / "seed_subset.csv").write_text(
        header + "".join(body[i] for i in sub["line"])
    )

    sub = sub.assign(ts=pd.to_datetime(sub["timestamp"]))
    cols = {}
    for sig in SIGNALS:
        by_dev = sub.groupby("device_id", sort=False)[sig]
        rows = by_dev.rolling(30, min_periods=1)
        for stat in STATS:
            cols[f"{sig}__{stat}__30rows"] = getattr(rows, stat)().reset_index(
                level=0, drop=True
            )
        timed = sub.set_index("ts").groupby("device_id", sort=False)[sig]
        for stat in STATS:
            r = getattr(timed.rolling("5min", min_periods=1), stat)()
            # back to the subset's row order: the groups keep their rows in order
            vals = pd.Series(index=sub.index, dtype="float64")
            for dev, g in sub.groupby("device_id", sort=False):
                vals.loc[g.index] = r.loc[dev].to_numpy()
            cols[f"{sig}__{stat}__5m"] = vals
    res = pd.DataFrame(cols).loc[sub.index]
    res.insert(0, "device_id", sub["device_id"])
    res.insert(0, "timestamp", sub["timestamp"])
    with open(out / "pandas_rolling.csv", "w") as f:
        f.write(",".join(res.columns) + "\n")
        for row in res.itertuples(index=False):
            f.write(",".join(fmt(v) for v in row) + "\n")
    print(f"{len(res)} rows, {len(cols)} reference columns written to {out}")


def fmt(v) -> str:
    if isinstance(v, str):
        return v
    return "" if np.isnan(v) else repr(float(v))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
