"""The opt-in category behaviour of the simulator (ltvcast.simulate.categories) against its known truth:
customers keep to their own categories, the early 'home' cohort ages out, the true preferences rank the
categories bought in a horizon, and the category split finds them better than the baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ltvcast.errors import LtvcastError
from ltvcast.simulate import ShopParams, simulate_shop
from ltvcast.simulate.categories import CategoryAffinity, customer_preferences
from ltvcast.simulate.process import CATEGORIES, make_world

SEED, START, MONTHS = 5, "2022-01-01", 30
CUTOFF, H = "2024-01-01", 182.0  # the horizon ends with the simulation


def _lines(folder):
    items, orders, products = (pd.read_parquet(folder / k) for k in ("order_items", "orders", "products"))
    x = items.merge(products, on="SKU").merge(orders, on="OrderID")
    x["amount"] = x["Qty"] * x["UnitPrice"]
    x["at"] = pd.to_datetime(x["CreatedAt"], utc=True)
    return x


@pytest.fixture(scope="module")
def shops(tmp_path_factory):
    root = tmp_path_factory.mktemp("affinity")
    kw = {"customers": 2000, "months": MONTHS, "seed": SEED, "start": START, "dirty_rate": 0.0}
    simulate_shop(root / "plain", **kw)
    simulate_shop(root / "aff", params=ShopParams(category_affinity=CategoryAffinity()), **kw)
    return root


def _top_share(lines):
    counts = lines.groupby(["CustomerRef", "Category"]).size().unstack(fill_value=0)
    counts = counts[counts.sum(axis=1) >= 5]
    return float((counts.max(axis=1) / counts.sum(axis=1)).mean())


def test_customers_keep_to_their_categories_and_the_cohort_ages_out(shops):
    plain, aff = _lines(shops / "plain"), _lines(shops / "aff")
    assert len(plain) > 5000 and len(aff) > 5000
    assert _top_share(aff) > _top_share(plain) + 0.1
    # the early cohort's home share is boosted, and the cohort drops out twice as fast: home's share of sales falls
    year = aff["at"].dt.year
    share = aff[aff["Category"] == "home"].groupby(year)["amount"].sum() / aff.groupby(year)["amount"].sum()
    assert share[2022] > 1.8 * share[2024]


def test_the_true_preferences_rank_the_categories_bought(shops):
    truth = pd.read_parquet(shops / "aff" / "truth.parquet").sort_values("customer_id", kind="mergesort")
    world = make_world(SEED, pd.Timestamp(START), MONTHS)
    t_sign = ((truth["signup_at"].dt.tz_localize(None) - world.start).dt.total_seconds() / 86_400).to_numpy(float)
    pref, mix = customer_preferences(CategoryAffinity(), world, SEED, 0, t_sign)
    np.testing.assert_allclose(pref.sum(axis=1), 1.0)
    np.testing.assert_allclose(mix.sum(), 1.0)
    names = [c[0] for c in CATEGORIES]
    lines = _lines(shops / "aff")
    counts = lines.groupby(["CustomerRef", "Category"]).size().unstack(fill_value=0).reindex(columns=names, fill_value=0)
    p = pd.DataFrame(pref, index=truth["customer_id"].to_numpy(), columns=names).loc[counts.index]
    heavy = counts.sum(axis=1) >= 10
    # a buyer's most-bought category is their most-preferred one far more often than the shop's top category is
    hit_pref = (counts[heavy].idxmax(axis=1) == p[heavy].idxmax(axis=1)).mean()
    hit_shop = (counts[heavy].idxmax(axis=1) == names[int(np.argmax(mix))]).mean()
    assert hit_pref > 0.6 and hit_pref > hit_shop + 0.2


def test_the_split_beats_the_baselines_on_the_affinity_shop(shops, tmp_path):
    from ltvcast.data.datasets import open_history
    from ltvcast.evaluate.categories import next_category_backtest
    from ltvcast.ingest.config import load_config
    from ltvcast.ingest.multisource import ingest_sources
    from ltvcast.models.catalog import make_forecaster
    from ltvcast.models.categories import CategorySplit
    from ltvcast.store import Store

    db = tmp_path / "shop.duckdb"
    with Store.open(db) as store:
        ingest_sources(load_config(shops / "aff" / "sources.yaml"), store)
    history = open_history(db=db)
    pred = make_forecaster("naive").fit(history, CUTOFF, H).predict(history, CUTOFF, H)
    split = CategorySplit(rounds=40, windows=1).fit(history, CUTOFF, H)
    table = next_category_backtest(history, CUTOFF, H, split, pred, ks=(3,))
    r = table.set_index(["mode", "method"])["recall"]
    assert table["customers"].min() > 100
    # 2,000 customers: the spend order beats popularity and lift on every category, and every baseline on new
    # ones (0.738 vs 0.706 popularity); own history is as good on all categories here (0.652 vs 0.641), the
    # model pulls ahead with more customers (docs/categories.md)
    assert r["all", "model_spend"] > max(r["all", "popularity"] + 0.1, r["all", "co_purchase_lift"] + 0.03)
    assert r["new", "model_spend"] > max(r["new", b] for b in ("popularity", "own_history", "co_purchase_lift")) + 0.02


def test_settings_are_checked():
    with pytest.raises(LtvcastError, match="unknown cohort_category 'garden'"):
        CategoryAffinity(cohort_category="garden")
    with pytest.raises(LtvcastError, match="stickiness and cross_sell"):
        CategoryAffinity(cross_sell=1.5)
    with pytest.raises(LtvcastError, match="must be > 0"):
        CategoryAffinity(concentration=0.0)
