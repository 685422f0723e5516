"""Category predictions (issue 18): hand-computed features, labels and metrics; the split sums to the total;
no category signal from at or after the cutoff; baselines on the same windows; the two commands."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ltvcast.actions.cross_sell import next_categories
from ltvcast.cli import app
from ltvcast.errors import DataError
from ltvcast.evaluate.categories import (
    bias,
    demand_backtest,
    next_category_backtest,
    rank_metrics,
    seasonal_naive,
    top_down,
    wape,
)
from ltvcast.features.categories import (
    category_history,
    category_labels,
    history_lines,
    sales_lines,
    top_categories,
    weekly_sales,
    window_lines,
)
from ltvcast.models.catalog import make_forecaster
from ltvcast.models.categories import CategorySplit
from ltvcast.models.demand import aggregate_demand, customer_demand

CUTOFF, H = "2023-07-03", 91.0  # a Monday; 13 weeks

# ------------------------------------------------------------------ a tiny shop, values by hand


def _tx(rows):
    frame = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount", "kind", "category", "brand"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["customer_id"] = frame["customer_id"].astype("string")
    return frame


TINY = _tx([
    ("A", "2023-01-10 10:00", 50.0, "sale", "shoes", "X"),
    ("A", "2023-01-10 10:00", 10.0, "sale", "beauty", "X"),
    ("A", "2023-06-01 09:00", 40.0, "sale", "shoes", "Y"),
    ("A", "2023-06-05 09:00", -20.0, "return", None, None),
    ("B", "2023-05-01 12:00", 30.0, "sale", "home", "Y"),
    ("B", "2023-07-02 23:59", 5.0, "sale", None, None),  # last minute before the cutoff: history, 'other'
    ("B", "2023-07-03 00:00", 99.0, "sale", "shoes", "X"),  # at the cutoff: the horizon
    ("A", "2023-07-10 08:00", 20.0, "sale", "beauty", "X"),
    ("A", "2023-07-11 08:00", 60.0, "sale", "home", "Y"),
])


def test_category_history_by_hand():
    lines = history_lines(TINY, CUTOFF)
    cats = top_categories(lines, top=2)
    assert cats == ("shoes", "home", "other")  # shoes 90, home 30, beauty 10 (-> other), no-category 5
    h = category_history(lines, CUTOFF, cats).set_index(["customer_id", "category"])
    a_shoes = h.loc[("A", "shoes")]
    assert a_shoes["cat_spend"] == 90.0 and a_shoes["cat_share"] == pytest.approx(0.9)
    assert a_shoes["cat_occasions"] == 2 and a_shoes["cat_days_since"] == pytest.approx(32 - 9 / 24)
    assert h.loc[("A", "other"), "cat_spend"] == 10.0  # beauty is not in the top 2
    assert h.loc[("A", "home"), "cat_ever"] == 0 and np.isnan(h.loc[("A", "home"), "cat_days_since"])
    assert h.loc[("A", "shoes"), "occasions"] == 2 and h.loc[("A", "shoes"), "spend"] == 100.0
    assert h.loc[("A", "shoes"), "n_categories"] == 2
    assert h.loc[("B", "other"), "cat_spend"] == 5.0 and h.loc[("B", "home"), "cat_share"] == pytest.approx(30 / 35)
    assert h.loc[("B", "home"), "tenure_days"] == pytest.approx(62.5)


def test_category_labels_and_weeks_by_hand():
    cats = ("shoes", "home", "other")
    win = window_lines(TINY, CUTOFF, 14)
    y = category_labels(win, pd.Series(["A", "B"]), cats).set_index(["customer_id", "category"])
    assert y.loc[("B", "shoes"), "actual_bought"] == 1.0 and y.loc[("B", "shoes"), "actual_spend"] == 99.0
    assert y.loc[("A", "home"), "actual_share"] == pytest.approx(0.75)  # 60 of 80; beauty 20 is 'other'
    assert y.loc[("A", "shoes"), "actual_bought"] == 0.0
    w = weekly_sales(sales_lines(TINY), CUTOFF, 2, cats).set_index(["week", "category"])["sales"]
    assert w[(0, "shoes")] == 99.0 and w[(1, "home")] == 60.0 and w[(1, "other")] == 20.0 and w[(0, "home")] == 0.0


def test_rank_metrics_by_hand():
    frame = pd.DataFrame({
        "customer_id": ["a"] * 3 + ["b"] * 3,
        "category": ["x", "y", "z"] * 2,
        "order": [0, 1, 2] * 2,
        "cat_ever": [1, 0, 0, 0, 0, 0],
        "actual_bought": [1, 0, 1, 0, 1, 0],
        "s": [0.9, 0.5, 0.1, 0.2, 0.2, 0.3],  # b: z first, then x before y (tie, order)
    })
    got = rank_metrics(frame, "s", 1)
    assert got["recall"] == pytest.approx((0.5 + 0.0) / 2) and got["customers"] == 2
    got = rank_metrics(frame, "s", 2)
    ndcg_b = 0.0  # b bought y, ranked 3rd: outside k=2
    ndcg_a = 1.0 / (1.0 + 1 / np.log2(3))  # x at 1, z at 3 (outside k=2): DCG 1, IDCG 1 + 1/log2 3
    assert got["recall"] == pytest.approx((0.5 + 0.0) / 2) and got["ndcg"] == pytest.approx((ndcg_a + ndcg_b) / 2)
    new = rank_metrics(frame, "s", 1, mode="new")  # a: x excluded; y (0.5) first, z bought -> 0
    assert new["recall"] == pytest.approx(0.0) and new["customers"] == 2
    assert wape([10, 0, 30], [12, 1, 27]) == pytest.approx(6 / 40) and bias([10, 0, 30], [12, 1, 27]) == 0.0
    with pytest.raises(DataError, match="k must be"):
        rank_metrics(frame, "s", 0)


def test_next_categories_rules():
    split = pd.DataFrame({
        "customer_id": ["a"] * 4, "category": ["x", "y", "z", "other"], "p_buy": [0.5, 0.2, 0.4, 0.9],
        "share": [0.5, 0.2, 0.2, 0.1], "pred_spend": [50.0, 20.0, 20.0, 10.0], "cat_ever": [1, 0, 1, 0],
        "cat_days_since": [10.0, np.nan, 400.0, np.nan], "cat_pop": [0.5, 0.3, 0.2, 0.0],
        "brand_affinity": [0.0, 0.3, 0.0, 0.0], "lift_score": [1.0, 1.0, 2.0, 0.0],
    })
    never = next_categories(split, k=3, rule="never", horizon_days=91)
    assert never["category"].tolist() == ["y"] and never["rule"].tolist() == ["never bought"]
    assert "brands they buy also sell y" in never["reason"].iloc[0]
    lapsed = next_categories(split, k=3, rule="lapsed", recent_days=365, horizon_days=91)
    assert lapsed["category"].tolist() == ["z", "y"]  # ties on spend -> p_buy; x bought 10 days ago is out
    assert lapsed["rule"].tolist() == ["lapsed", "never bought"] and "2.0×" in lapsed["reason"].iloc[0]
    with pytest.raises(DataError, match="unknown rule"):
        next_categories(split, rule="sometimes")


# ------------------------------------------------------------------ a small simulated shop


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    from ltvcast.data.datasets import open_history
    from ltvcast.ingest.config import load_config
    from ltvcast.ingest.multisource import ingest_sources
    from ltvcast.simulate import simulate_shop
    from ltvcast.store import Store

    out = tmp_path_factory.mktemp("categories")
    simulate_shop(out / "sim", customers=1200, months=24, seed=3, start="2021-10-01", dirty_rate=0.0)
    db = out / "shop.duckdb"
    with Store.open(db) as store:
        ingest_sources(load_config(out / "sim" / "sources.yaml"), store)
    history = open_history(db=db)
    pred = make_forecaster("naive").fit(history, CUTOFF, H).predict(history, CUTOFF, H)
    split = CategorySplit(rounds=20, windows=1).fit(history, CUTOFF, H)
    return {"db": db, "history": history, "pred": pred, "split": split}


def test_split_sums_to_the_total(shop):
    out = shop["split"].split(shop["pred"], shop["history"], CUTOFF)
    k = len(shop["split"].categories_)
    assert len(out) == k * len(shop["pred"])
    sums = out.groupby("customer_id")["pred_spend"].sum()
    total = shop["pred"].set_index(shop["pred"]["customer_id"].astype("string"))["pred_spend"].reindex(sums.index)
    np.testing.assert_allclose(sums.to_numpy(), total.to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(out.groupby("customer_id")["share"].sum().to_numpy(), 1.0, atol=1e-9)
    churn = shop["pred"].set_index(shop["pred"]["customer_id"].astype("string"))["p_churn"]
    assert (out["p_buy"].to_numpy() <= (1 - churn.reindex(out["customer_id"]).to_numpy()) + 1e-12).all()


def _scrambled(history):
    """The history with every row at or after the cutoff changed, deleted or duplicated, and new future rows."""
    tx = history.transactions.copy()
    future = tx["timestamp"] >= pd.Timestamp(CUTOFF, tz="UTC")
    assert future.sum() > 100
    changed = tx[future].copy()
    changed["category"] = np.where(changed.index % 2 == 0, "zzz", "kids")
    changed["brand"] = "zzz"
    changed["amount"] = changed["amount"] * 7 + 1
    victim = tx.loc[~future, "customer_id"].iloc[0]
    extra = changed.head(50).assign(customer_id=victim, timestamp=pd.Timestamp(CUTOFF, tz="UTC"))
    kept = pd.concat([tx[~future], changed.iloc[::2], extra], ignore_index=True)
    return dataclasses.replace(history, transactions=kept)


def test_no_category_signal_from_at_or_after_the_cutoff(shop):
    history, pred = shop["history"], shop["pred"]
    other = _scrambled(history)
    split_a = shop["split"].split(pred, history, CUTOFF)
    split_b = CategorySplit(rounds=20, windows=1).fit(other, CUTOFF, H).split(pred, other, CUTOFF)
    pd.testing.assert_frame_equal(split_a, split_b)
    pd.testing.assert_frame_equal(customer_demand(split_a, history, CUTOFF, 13), customer_demand(split_b, other, CUTOFF, 13))
    cats = shop["split"].categories_
    pd.testing.assert_frame_equal(seasonal_naive(history, CUTOFF, 13, cats), seasonal_naive(other, CUTOFF, 13, cats))
    pd.testing.assert_frame_equal(top_down(history, CUTOFF, 13, cats), top_down(other, CUTOFF, 13, cats))


def test_baselines_on_the_same_windows(shop):
    table = next_category_backtest(shop["history"], CUTOFF, H, shop["split"], shop["pred"], ks=(1, 3))
    assert set(table["method"]) == {"model", "model_spend", "popularity", "own_history", "co_purchase_lift"}
    for _, g in table.groupby(["mode", "k"]):
        assert g["customers"].nunique() == 1 and g["customers"].iloc[0] > 50
    assert table["recall"].between(0, 1).all() and table["ndcg"].between(0, 1).all()
    split = shop["split"].split(shop["pred"], shop["history"], CUTOFF)
    summary, cells = demand_backtest(shop["history"], CUTOFF, 13, split)
    assert summary["method"].tolist() == ["customers", "seasonal_naive", "top_down"]
    assert len(cells) == 13 * len(shop["split"].categories_) and (cells["actual"] >= 0).all()
    week = aggregate_demand(customer_demand(split, shop["history"], CUTOFF, 13), ("week",))
    assert len(week) == 13
    np.testing.assert_allclose(week["pred_sales"].sum(), cells["customers"].sum())


def test_commands_on_the_simulated_shop(shop, tmp_path):
    preds = tmp_path / "pred.parquet"
    shop["pred"].to_parquet(preds)
    runner = CliRunner()
    res = runner.invoke(app, ["next-categories", "--predictions", str(preds), "--db", str(shop["db"]), "--k", "3",
                              "--out", str(tmp_path / "nc.csv"), "--evaluate"])
    assert res.exit_code == 0, res.output
    nc = pd.read_csv(tmp_path / "nc.csv")
    assert nc.groupby("customer_id")["rank"].max().max() == 3 and (tmp_path / "nc_backtest.csv").exists()
    res = runner.invoke(app, ["demand", "--predictions", str(preds), "--db", str(shop["db"]), "--horizon", "13w",
                              "--by", "category,week", "--out", str(tmp_path / "d.csv")])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "d.csv")) == 13 * len(shop["split"].categories_)
    res = runner.invoke(app, ["demand", "--predictions", str(preds), "--db", str(shop["db"]), "--horizon", "10d"])
    assert res.exit_code == 2 and "whole weeks" in res.output


def test_commands_refuse_bad_options_before_fitting(shop, tmp_path):
    # --recent-days 0 / -5 made every bought category "not bought in the last 0 days"; --show -3 printed the last
    # customers; both ran silently; each refusal names the option and writes nothing
    preds = tmp_path / "pred.parquet"
    shop["pred"].to_parquet(preds)
    runner = CliRunner()
    base = ["next-categories", "--predictions", str(preds), "--db", str(shop["db"]), "--out", str(tmp_path / "nc.csv")]
    for extra, option in ((["--rule", "lapsed", "--recent-days", "0"], "--recent-days"),
                          (["--rule", "lapsed", "--recent-days", "-5"], "--recent-days"),
                          (["--recent-days", "nan"], "--recent-days"), (["--show", "-3"], "--show"),
                          (["--k", "0"], "--k"), (["--top", "0"], "--top")):
        res = runner.invoke(app, base + extra)
        assert res.exit_code == 2 and option in res.output, (extra, res.output)
        assert "Traceback" not in res.output
    assert not (tmp_path / "nc.csv").exists()
    res = runner.invoke(app, ["demand", "--predictions", str(preds), "--db", str(shop["db"]), "--horizon", "13w",
                              "--top", "-1", "--out", str(tmp_path / "d.csv")])
    assert res.exit_code == 2 and "--top" in res.output, res.output


def test_next_categories_refuses_a_shop_without_categories(tmp_path):
    # CDNOW has no categories: the command wrote an empty table and said "0 customers", exit 0
    from ltvcast.data.datasets import open_history

    history = open_history("cdnow-sample")
    try:
        pred = make_forecaster("naive").fit(history, "1998-01-01", 182.0).predict(history, "1998-01-01", 182.0)
    finally:
        history.store.close()
    pred.to_parquet(tmp_path / "pred.parquet")
    res = CliRunner().invoke(app, ["next-categories", "--predictions", str(tmp_path / "pred.parquet"),
                                   "--dataset", "cdnow-sample", "--out", str(tmp_path / "nc.csv")])
    assert res.exit_code == 2 and "no categories" in res.output, res.output
    assert not (tmp_path / "nc.csv").exists()


def test_next_categories_route(shop, tmp_path):
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from ltvcast.actions.cross_sell import index_next_categories
    from ltvcast.serve.app import Service, create_app
    from ltvcast.serve.sync import ShopSettings

    split = shop["split"].split(shop["pred"], shop["history"], CUTOFF)
    table = next_categories(split, k=3, horizon_days=H)
    served = SimpleNamespace(name="clv", version=1, forecaster=SimpleNamespace(name="naive"), label="clv:1")
    holder = SimpleNamespace(current=served, reload_failures=0, on_change=None, stop=lambda: None)
    make = lambda index: Service(online=SimpleNamespace(ping=lambda: None), models=holder,  # noqa: E731
                                 settings=ShopSettings("UTC", "net", None), keys=None, next_categories=index)
    cid = str(table["customer_id"].iloc[0])
    with TestClient(create_app(make(index_next_categories(table)))) as client:
        body = client.get(f"/v1/customers/{cid}/next-categories", params={"k": 2}).json()
        assert body["customer_id"] == cid and [c["rank"] for c in body["categories"]] == [1, 2]
        first = table[(table["customer_id"] == cid) & (table["rank"] == 1)].iloc[0]
        assert body["categories"][0]["category"] == first["category"]
        assert body["categories"][0]["p_buy"] == pytest.approx(first["p_buy"])
        assert client.get("/v1/customers/nobody/next-categories").json()["categories"] == []
    with TestClient(create_app(make(None))) as client:
        assert client.get(f"/v1/customers/{cid}/next-categories").status_code == 503
    with pytest.raises(DataError, match="missing column"):
        index_next_categories(table.drop(columns="reason"), "x.csv")


def test_report_section(shop):
    from ltvcast.evaluate.categories import category_section

    section = category_section(shop["history"], CUTOFF, H, shop["pred"], "naive")
    captions = [c for c, _ in section.tables]
    assert captions == ["Next categories: recall@k and NDCG@k", "Demand per category and week"]
    assert set(section.tables[1][1]["method"]) == {"customers", "seasonal_naive", "top_down"}
    assert len(section.figures) == 1 and section.figures[0].lstrip().startswith("<svg")
    bare = dataclasses.replace(shop["history"], transactions=shop["history"].transactions.assign(category=pd.NA))
    assert "no category" in category_section(bare, CUTOFF, H, shop["pred"], "naive").notes[0]
    from ltvcast.actions.segments import assign_segments

    with_seg = category_section(shop["history"], CUTOFF, H, shop["pred"], "naive",
                                segments=assign_segments(shop["pred"]))
    caption, table = with_seg.tables[-1]
    assert caption == "Categories per segment (value tier × churn risk)"
    assert table["customers"].sum() == len(shop["pred"])
    np.testing.assert_allclose(table["pred_spend"].sum(), shop["pred"]["pred_spend"].sum(), atol=0.005 * len(table))


def test_categories_per_segment_by_hand():
    from ltvcast.evaluate.categories import categories_per_segment

    split = pd.DataFrame({
        "customer_id": ["a", "a", "a", "b", "b", "b", "c", "c", "c"],
        "category": ["x", "y", "other"] * 3,
        "p_buy": [0.5, 0.1, 0.2, 0.3, 0.6, 0.0, 0.1, 0.2, 0.0],
        "pred_spend": [60.0, 20.0, 20.0, 10.0, 30.0, 0.0, 1.0, 3.0, 0.0],
    })
    tiers = pd.Categorical(["high", "high", "low"], categories=["low", "high"], ordered=True)
    risks = pd.Categorical(["low risk"] * 3, categories=["low risk", "high risk"], ordered=True)
    segments = pd.DataFrame({"customer_id": ["a", "b", "c"], "value_tier": tiers, "churn_risk": risks})
    t = categories_per_segment(split, segments, top=2)
    assert t["value_tier"].astype(str).tolist() == ["high", "low"]
    assert t["customers"].tolist() == [2, 1]
    np.testing.assert_allclose(t["pred_spend"], [140.0, 4.0])
    # high: x 70 of 140 = 50 %, mean p 0.4; y 50 of 140 = 36 %, mean p 0.35; 'other' never listed
    assert t["top_categories"].iloc[0] == "x 50% (p 0.40), y 36% (p 0.35)"
    assert t["top_categories"].iloc[1] == "y 75% (p 0.20), x 25% (p 0.10)"
    with pytest.raises(DataError, match="value_tier"):
        categories_per_segment(split, segments.drop(columns="value_tier"))
