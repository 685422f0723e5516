"""Fit every BTYD model on the full CDNOW master data and print times and parameters.

Usage: python benchmarks/bench_models.py [path/to/CDNOW_master.txt]

Calibration: the 39 weeks 1997-01-01 .. 1997-09-30 (cutoff 1997-10-01,
exclusive). Same-day rows of a customer are merged into one purchase
occasion (dollars summed). As in the papers, T and recency are measured to
the last calibration day inclusive: T_days = (cutoff - first_day).days - 1,
recency_days = last_day - first_day, both divided by 7 (weeks).
monetary_value = mean value of the repeat occasions in the calibration period.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ltvcast.models import BGNBD, GammaGamma, Naive, ParetoNBD

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cdnow" / "CDNOW_master.txt"
CUTOFF = pd.Timestamp("1997-10-01")


def calibration_summary(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, sep=r"\s+", dtype={"customer_id": str, "date": str})
    raw["date"] = pd.to_datetime(raw["date"], format="%Y%m%d")
    occ = raw.groupby(["customer_id", "date"], as_index=False)["dollar_value"].sum()
    cal = occ[occ["date"] < CUTOFF].sort_values(["customer_id", "date"])
    g = cal.groupby("customer_id")
    first = g["date"].min()
    last = g["date"].max()
    n_occ = g.size()
    total = g["dollar_value"].sum()
    first_value = g["dollar_value"].first()
    frequency = (n_occ - 1).astype(float)
    repeat_value = total - first_value
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(frequency > 0, repeat_value / frequency.where(frequency > 0), 0.0)
    return pd.DataFrame(
        {
            "customer_id": first.index,
            "frequency": frequency.to_numpy(),
            "recency": ((last - first).dt.days / 7.0).to_numpy(),
            "T": (((CUTOFF - first).dt.days - 1) / 7.0).to_numpy(),
            "monetary_value": monetary,
        }
    ).reset_index(drop=True)


def timed(label: str, fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT
    if not path.exists():
        print(f"CDNOW master data not found at {path}; pass its path as the first argument")
        return 1
    summary, secs = timed("summary", lambda: calibration_summary(path))
    n_unique = len(summary.drop_duplicates(["frequency", "recency", "T"]))
    print(f"CDNOW master: {len(summary)} customers ({n_unique} distinct (x, t_x, T) rows), "
          f"{int((summary['frequency'] > 0).sum())} repeat buyers; summary built in {secs:.2f} s")
    for cls in (BGNBD, ParetoNBD, Naive):
        model, secs = timed(cls.__name__, lambda cls=cls: cls().fit(summary))
        params = ", ".join(f"{k}={v:.4f}" for k, v in model.params_.items())
        print(f"{cls.__name__:10s} fit {secs:7.3f} s  LL {model.log_likelihood_:12.2f}  {params}")
    repeat = summary[summary["frequency"] > 0]
    positive = repeat[repeat["monetary_value"] > 0]
    if len(positive) < len(repeat):
        print(f"Gamma-Gamma: {len(repeat) - len(positive)} repeat buyer(s) with monetary_value <= 0 left out")
    gg, secs = timed("GammaGamma", lambda: GammaGamma().fit(positive))
    params = ", ".join(f"{k}={v:.4f}" for k, v in gg.params_.items())
    print(f"{'GammaGamma':10s} fit {secs:7.3f} s  LL {gg.log_likelihood_:12.2f}  {params}  (n={gg.n_customers_})")
    bg = BGNBD().fit(summary)
    _, secs = timed("predict", lambda: (bg.expected_transactions(summary, 39.0), bg.p_no_purchase(summary, 39.0)))
    pn = ParetoNBD().fit(summary)
    _, secs_pn = timed("predict", lambda: (pn.expected_transactions(summary, 39.0), pn.p_no_purchase(summary, 39.0)))
    print(f"predictions for all customers (E[Y(39)], P(no purchase in 39 w)): BG/NBD {secs:.3f} s, "
          f"Pareto/NBD {secs_pn:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
