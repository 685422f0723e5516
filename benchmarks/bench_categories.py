"""The goals of issue 18 on the simulated shop: next categories (recall@k, NDCG@k) and demand (WAPE, bias).

Shop: the seasonal simulated shop of ``bench_seasons.py`` (8,000 customers,
36 months from 2022-01-01, seed 11), cutoff 2024-07-01, horizon 26 weeks
(holding the Q4 peak: a seasonal change). For each total model: the split
(stacked and per-category layouts), the next-category table beside the
baselines, the demand table beside seasonal naive and top-down, and the
check that the split leaves the total unchanged. Prints the goal ratios,
the absolute times beside them and the load average.

Run:  .venv/bin/python benchmarks/bench_categories.py --simulate /tmp/categories_shop --models bgnbd,gbm
      .venv/bin/python benchmarks/bench_categories.py --simulate /tmp/affinity_shop --category-affinity --models bgnbd
(``--category-affinity``: the same shop with customers' own category preferences, cross-selling and an
ageing cohort, ``ltvcast.simulate.categories``.)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_seasons import simulate  # noqa: E402

from ltvcast.data.datasets import open_history  # noqa: E402
from ltvcast.evaluate.categories import (  # noqa: E402
    BASELINES,
    MODEL_SCORES,
    demand_backtest,
    next_category_frame,
    rank_metrics,
    wape,
)
from ltvcast.models.catalog import make_forecaster  # noqa: E402
from ltvcast.models.categories import CategorySplit  # noqa: E402
from ltvcast.simulate.process import CATEGORIES, TIERS, make_world  # noqa: E402

SHOP = {"seed": 11, "start": "2022-01-01", "months": 36}  # bench_seasons.simulate's shop


def simulate_affinity(folder: Path) -> Path:
    """``bench_seasons.simulate``'s shop with the opt-in category behaviour (ltvcast.simulate.categories)."""
    from ltvcast.ingest.config import load_config
    from ltvcast.ingest.multisource import ingest_sources
    from ltvcast.simulate import ShopParams, simulate_shop
    from ltvcast.simulate.categories import CategoryAffinity
    from ltvcast.store import Store

    db = folder / "shop.duckdb"
    if not db.exists():
        simulate_shop(folder / "sim", customers=8000, months=36, seed=11, start="2022-01-01", dirty_rate=0.0,
                      overwrite=True, params=ShopParams(category_affinity=CategoryAffinity()))
        with Store.open(db) as store:
            ingest_sources(load_config(folder / "sim" / "sources.yaml"), store)
    return db


def affinity_probs(truth: pd.DataFrame, world) -> pd.DataFrame:
    """The true probability that a line falls in each category under ``CategoryAffinity()`` (one chunk).

    ``(1 − x)·q + x·(q · CO)`` with ``q = s·π + (1 − s)·b`` (``π``: the customer's replayed preferences,
    ``b``: the shop mix, ``s``: stickiness, ``x``: cross-sell share, ``CO``: the co-purchase rows), the
    previous order's category taken as distributed like ``q``.
    """
    from ltvcast.simulate.categories import CO_PURCHASE, CategoryAffinity, customer_preferences

    aff = CategoryAffinity()
    cats = [c[0] for c in CATEGORIES]
    truth = truth.sort_values("customer_id", kind="mergesort")
    t_sign = ((truth["signup_at"].dt.tz_localize(None) - world.start).dt.total_seconds() / 86_400).to_numpy(float)
    pref, mix = customer_preferences(aff, world, SHOP["seed"], 0, t_sign)
    co = np.zeros((len(cats), len(cats)))
    for a, bs in CO_PURCHASE.items():
        co[cats.index(a), [cats.index(b) for b in bs]] = 1.0 / len(bs)
    q = aff.stickiness * pref + (1 - aff.stickiness) * mix
    p = (1 - aff.cross_sell) * q + aff.cross_sell * q @ co
    return pd.DataFrame({"customer_id": np.repeat(truth["customer_id"].astype(str).to_numpy(), len(cats)),
                         "category": np.tile(cats, len(truth)), "oracle": p.ravel()})


def true_probs(truth: pd.DataFrame, world) -> pd.DataFrame:
    """The simulator's true probability that a customer's line falls in each category (process.py, Lines).

    A line is from the favourite brand with probability ``loyalty`` (uniform over the brand's products), else
    from a tier drawn by the spend level's softmax and a product by popularity inside the tier.
    """
    cats = [c[0] for c in CATEGORIES]
    n_cat = len(cats)
    # per-product popularity weight within its tier (products sorted by tier)
    weights = np.concatenate([np.diff(np.concatenate([[0.0], c])) for c in world.tier_cum])
    popcat = np.zeros((len(TIERS), n_cat))
    for t in range(len(TIERS)):
        sel = world.product_tier == t
        popcat[t] = np.bincount(world.product_category[sel], weights=weights[sel], minlength=n_cat)
    brandcat = np.zeros((len(world.brand_names), n_cat))
    for b in range(len(world.brand_names)):
        s, k = world.brand_start[b], world.brand_count[b]
        brandcat[b] = np.bincount(world.product_category[s : s + k], minlength=n_cat) / k
    log_nu = np.log(truth["spend_level"].to_numpy(float))
    logits = np.stack([0.3 - log_nu, np.full(len(log_nu), 0.6), 1.3 * log_nu - 0.9], axis=1)
    tp = np.exp(logits - logits.max(axis=1, keepdims=True))
    tp /= tp.sum(axis=1, keepdims=True)
    idx = {n: i for i, n in enumerate(world.brand_names)}
    fav = truth["favourite_brand"].map(idx)
    loy = np.where(fav.notna(), truth["brand_loyalty"].fillna(0).to_numpy(float), 0.0)
    favcat = np.zeros((len(truth), n_cat))
    has = fav.notna().to_numpy()
    favcat[has] = brandcat[fav[has].astype(int).to_numpy()]
    p = loy[:, None] * favcat + (1 - loy)[:, None] * (tp @ popcat)
    return pd.DataFrame({"customer_id": np.repeat(truth["customer_id"].astype(str).to_numpy(), n_cat),
                         "category": np.tile(cats, len(truth)), "oracle": p.ravel()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db")
    ap.add_argument("--simulate", help="folder: simulate the seasonal shop there (once) and use it")
    ap.add_argument("--cutoff", default="2024-07-01")
    ap.add_argument("--weeks", type=int, default=26)
    ap.add_argument("--models", default="bgnbd")
    ap.add_argument("--layouts", default="stacked,per_category")
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--category-affinity", action="store_true",
                    help="simulate the same shop with CategoryAffinity() (category preferences, cross-sell, cohort)")
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    db = (simulate_affinity(Path(args.simulate)) if args.simulate and args.category_affinity
          else simulate(Path(args.simulate), 8000) if args.simulate else args.db)
    data = open_history(db=db)
    truth = Path(args.simulate) / "sim" / "truth.parquet" if args.simulate else None
    oracle = None
    if truth is not None and truth.exists():
        world = make_world(SHOP["seed"], pd.Timestamp(SHOP["start"]), SHOP["months"])
        oracle = (affinity_probs if args.category_affinity else true_probs)(pd.read_parquet(truth), world)
    days = 7.0 * args.weeks
    for name in args.models.split(","):
        t = time.perf_counter()
        pred = make_forecaster(name).fit(data, args.cutoff, days).predict(data, args.cutoff, days)
        t_total = time.perf_counter() - t
        print(f"\n=== total model {name}: fit+predict {t_total:.1f} s, {len(pred):,} customers")
        for layout in args.layouts.split(","):
            t = time.perf_counter()
            split = CategorySplit(layout=layout, windows=args.windows).fit(data, args.cutoff, days)
            t_fit = time.perf_counter() - t
            t = time.perf_counter()
            by_cat = split.split(pred, data, args.cutoff)
            t_split = time.perf_counter() - t
            sums = by_cat.groupby("customer_id")["pred_spend"].sum()
            total = pred.set_index(pred["customer_id"].astype("string"))["pred_spend"].reindex(sums.index)
            print(f"--- layout {layout}: fit {t_fit:.1f} s ({split.n_train_rows_:,} rows), split {t_split:.1f} s; "
                  f"max |Σ categories − total| = {np.abs(sums.to_numpy() - total.to_numpy()).max():.2e}")
            frame = next_category_frame(data, args.cutoff, days, split, pred)
            methods = [*MODEL_SCORES, *BASELINES]
            if oracle is not None:
                frame = frame.assign(customer_id=frame["customer_id"].astype(str),
                                     category=frame["category"].astype(str))
                frame = frame.merge(oracle, on=["customer_id", "category"], how="left").fillna({"oracle": 0.0})
                methods.append("oracle")
            ranks = pd.DataFrame([{"method": m, "mode": mode, "k": k, **rank_metrics(frame, m, k, mode)}
                                  for m in methods for mode in ("all", "new") for k in (1, 3)])
            print(ranks.to_string(index=False))
            for mode in ("all", "new"):
                r3 = ranks[(ranks["k"] == 3) & (ranks["mode"] == mode)].set_index("method")["recall"]
                base = r3[list(BASELINES)]
                ceiling = f", oracle (true probabilities) {r3['oracle']:.3f}" if "oracle" in r3 else ""
                for m in MODEL_SCORES:
                    print(f"goal recall@3 ({mode}): {m} {r3[m]:.3f}, best baseline {base.max():.3f} "
                          f"({base.idxmax()}), difference {r3[m] - base.max():+.3f} (goal >= +0.100){ceiling}")
            summary, cells = demand_backtest(data, args.cutoff, args.weeks, by_cat)
            print(summary.to_string(index=False))
            sold = cells[cells.groupby("category", sort=False)["actual"].transform("sum") > 0]
            per_cat = pd.DataFrame({
                m: {c: wape(g["actual"], g[m]) for c, g in sold.groupby("category", sort=False)}
                for m in ("customers", "seasonal_naive", "top_down")})
            per_cat["actual_sales"] = sold.groupby("category", sort=False)["actual"].sum()
            print("WAPE per category:")
            print(per_cat.round(3).to_string())
            w = summary.set_index("method")["wape"]
            print(f"goal demand WAPE: customers {w['customers']:.3f} vs seasonal naive {w['seasonal_naive']:.3f}: "
                  f"{1 - w['customers'] / w['seasonal_naive']:.1%} lower (goal >= 10 %); top-down {w['top_down']:.3f}")
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
