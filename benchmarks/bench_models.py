"""Fit every BTYD model on the full CDNOW master data and print times and parameters.

Usage: python benchmarks/bench_models.py

Data: the built-in CDNOW copy; summary: ``ltvcast.features.rfm_summary`` at
the papers' calibration cutoff 1997-10-01 (39 weeks, unit weeks).
"""

from __future__ import annotations

import sys
import time

from ltvcast.data.datasets import open_history
from ltvcast.features import rfm_summary
from ltvcast.models import BGNBD, GammaGamma, Naive, ParetoNBD

CUTOFF = "1997-10-01"


def timed(label: str, fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main(argv: list[str]) -> int:
    tx = open_history(dataset="cdnow").transactions
    summary, secs = timed("summary", lambda: rfm_summary(tx, CUTOFF))
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
