"""Cross-selling: the next categories to offer each customer, from the category split, with a reason.

Candidates are the named categories (never ``other``) that pass a rule:

* ``never``: the customer has never bought in the category before the cutoff;
* ``lapsed``: never bought, or not in the last ``recent_days`` days
  (default: the horizon) — bought once, long ago, counts as a candidate again.

Candidates below ``min_p`` (default :data:`MIN_P`, 1 %) chance of a purchase
in the horizon are never offered: a customer likely to churn gets fewer
than ``k`` categories, or none, rather than a list of "0 % likely" ones.
The rest are ranked by expected value (the split's ``pred_spend`` in the
category over the horizon, in the shop's currency and revenue basis), then
by ``p_buy``; the first ``k`` are returned with the probability, the
expected spend and a reason: the rule
that made the category a candidate plus the strongest signal behind it — a
brand the customer buys also sells the category (``brand_affinity`` ≥ 0.1),
the category is bought together with theirs (``lift_score`` ≥ 1.2), or its
popularity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ltvcast.errors import DataError
from ltvcast.features.categories import OTHER

RULES = ("never", "lapsed")
BRAND_AFFINITY_MIN = 0.1
LIFT_MIN = 1.2
#: Smallest ``p_buy`` offered (module doc).
MIN_P = 0.01


def _amount(value: float, currency: str | None, basis: str) -> str:
    unit = f"{currency} " if currency else ""
    return f"{value:,.2f} {unit}of {basis} revenue" + ("" if currency else " (shop currency)")


def _reason(r, rule_text: str, weeks: float, currency: str | None, basis: str) -> str:
    cat = r["category"]
    if r["brand_affinity"] >= BRAND_AFFINITY_MIN:
        why = f"brands they buy also sell {cat} ({r['brand_affinity']:.0%} of those brands' sales)"
    elif r["lift_score"] >= LIFT_MIN:
        why = f"{cat} is bought {r['lift_score']:.1f}× as often as chance with the categories they buy"
    else:
        why = f"{r['cat_pop']:.0%} of customers buy {cat}"
    return (f"{r['p_buy']:.0%} likely to buy {cat} in the next {weeks:g} weeks "
            f"(expected {_amount(r['pred_spend'], currency, basis)}); {rule_text}; {why}")


def next_categories(split: pd.DataFrame, k: int = 3, rule: str = "never", recent_days: float | None = None,
                    horizon_days: float = 182.0, min_p: float = MIN_P, currency: str | None = None,
                    basis: str = "net") -> pd.DataFrame:
    """The ``k`` best categories per customer under ``rule`` (module doc).

    Args:
        split: :meth:`ltvcast.models.categories.CategorySplit.split` output.
        k: categories per customer (>= 1).
        rule: ``"never"`` or ``"lapsed"``.
        recent_days: the ``lapsed`` window in days (default: ``horizon_days``).
        horizon_days: the split's horizon (for the reason's wording and the default window).
        min_p: smallest ``p_buy`` offered (0 .. 1).
        currency: the shop's currency code for the reason's amount (None: "shop currency").
        basis: the revenue basis of ``pred_spend`` (``net`` or ``gross``), for the reason.

    Returns:
        Up to ``k`` rows per customer (fewer when fewer categories qualify),
        sorted by customer then rank: ``customer_id``, ``rank`` (1 = best),
        ``category``, ``p_buy``, ``pred_spend`` (currency), ``rule``
        (``never bought`` or ``lapsed``), ``reason`` (a sentence).

    Raises:
        DataError: ``k`` < 1, ``min_p`` outside [0, 1] or an unknown rule.
    """
    if k < 1:
        raise DataError(f"k must be >= 1, got {k}")
    if not 0.0 <= min_p <= 1.0:
        raise DataError(f"min_p must be between 0 and 1, got {min_p:g}")
    if rule not in RULES:
        raise DataError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    window = float(horizon_days if recent_days is None else recent_days)
    f = split[split["category"] != OTHER]
    never = (f["cat_ever"] == 0).to_numpy(bool)
    lapsed = ~never & (f["cat_days_since"].to_numpy(float) >= window)
    keep = (never | (lapsed if rule == "lapsed" else False)) & (f["p_buy"].to_numpy(float) >= min_p)
    f = f[keep].assign(rule=np.where(never[keep], "never bought", "lapsed"))
    f = f.sort_values(["customer_id", "pred_spend", "p_buy"], ascending=[True, False, False], kind="mergesort")
    f = f.assign(rank=f.groupby("customer_id").cumcount() + 1)
    f = f[f["rank"] <= k]
    weeks = round(horizon_days / 7.0, 1)
    texts = {"never bought": "never bought it", "lapsed": f"not bought in the last {window:g} days"}
    reasons = [_reason(r, texts[r["rule"]], weeks, currency, basis) for _, r in f.iterrows()]
    out = f[["customer_id", "rank", "category", "p_buy", "pred_spend", "rule"]].copy()
    out["reason"] = pd.array(reasons, dtype="string")
    return out.reset_index(drop=True)


COLUMNS = ("customer_id", "rank", "category", "p_buy", "pred_spend", "rule", "reason")


def index_next_categories(frame: pd.DataFrame, source: str = "frame") -> dict[str, list[dict]]:
    """Customer id -> that customer's rows of a :func:`next_categories` table (by rank), for the service.

    Raises:
        DataError: a column of :data:`COLUMNS` is missing (naming ``source``).
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: not a next-categories table (written by `ltvcast next-categories`); "
                        f"missing column(s) {', '.join(missing)}")
    f = frame[list(COLUMNS)].sort_values(["customer_id", "rank"], kind="mergesort")
    out: dict[str, list[dict]] = {}
    for cid, g in f.groupby(f["customer_id"].astype(str), sort=False):
        out[cid] = [
            {"rank": int(r.rank), "category": str(r.category), "p_buy": float(r.p_buy),
             "pred_spend": float(r.pred_spend), "rule": str(r.rule), "reason": str(r.reason)}
            for r in g.itertuples(index=False)
        ]
    return out


__all__ = ["COLUMNS", "MIN_P", "RULES", "index_next_categories", "next_categories"]
