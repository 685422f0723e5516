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


def test_transition_and_shrunk_share_inputs_by_hand():
    from ltvcast.models.categories import PRIOR_LINES, pair_inputs, shop_stats

    lines = history_lines(TINY, CUTOFF)
    cats = ("shoes", "home", "other")  # beauty and the line without a category are 'other'
    stats = shop_stats(lines, cats)
    # occasions A1 {shoes, other} -> A2 {shoes}; B1 {home} -> B2 {other}: each 'from' category once
    t = stats["trans"].set_index(["from_category", "category"])["trans"]
    assert t[("shoes", "shoes")] == 1.0 and t[("other", "shoes")] == 1.0 and t[("home", "other")] == 1.0
    assert t.sum() == 3.0
    x = pair_inputs(category_history(lines, CUTOFF, cats), lines, stats).set_index(["customer_id", "category"])
    # A's last occasion has shoes: T(shoes, .); B's has other: T(other, .)
    assert x["last_trans"].to_dict() == {("A", "shoes"): 1.0, ("A", "home"): 0.0, ("A", "other"): 0.0,
                                         ("B", "shoes"): 1.0, ("B", "home"): 0.0, ("B", "other"): 0.0}
    # the shop's 5 lines: shoes 2, home 1, other 2; A has 3 lines (2 shoes), B 2 (1 other)
    assert PRIOR_LINES == 1.0
    assert x.loc[("A", "shoes"), "cat_post"] == pytest.approx((2 + 0.4) / 4)
    assert x.loc[("A", "home"), "cat_post"] == pytest.approx(0.2 / 4)
    assert x.loc[("B", "other"), "cat_post"] == pytest.approx((1 + 0.4) / 3)
    np.testing.assert_allclose(x.groupby(level="customer_id")["cat_post"].sum(), 1.0)


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
    # the data end 2023-09-30: 13 weeks from CUTOFF reach 1 day past it, scored on the 29 + 31 + 30 observed days
    assert ["90 days" in n for n in table.attrs["notes"]] == [True]
    split = shop["split"].split(shop["pred"], shop["history"], CUTOFF)
    summary, cells = demand_backtest(shop["history"], CUTOFF, 13, split)
    assert ["90 days" in n for n in summary.attrs["notes"]] == [True]
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


def test_next_categories_offers_nothing_unlikely_and_states_the_amounts_unit():
    # a newcomer saw "0% likely ... (expected 2.68)": below min_p nothing is offered, the amount has its unit
    split = pd.DataFrame({
        "customer_id": ["a", "a", "b", "b"], "category": ["x", "y"] * 2, "p_buy": [0.004, 0.3, 0.002, 0.009],
        "share": [0.5] * 4, "pred_spend": [9.0, 2.675, 5.0, 1.0], "cat_ever": [0] * 4,
        "cat_days_since": [np.nan] * 4, "cat_pop": [0.5, 0.25, 0.5, 0.25], "brand_affinity": [0.0] * 4,
        "lift_score": [0.0] * 4,
    })
    got = next_categories(split, k=3, horizon_days=91, currency="EUR", basis="net")
    assert got["customer_id"].tolist() == ["a"] and got["category"].tolist() == ["y"]  # x: 0.4 %; b: none
    assert got["reason"].iloc[0].startswith("30% likely to buy y in the next 13 weeks (expected 2.67 EUR of net "
                                            "revenue); never bought it; 25% of customers buy y")
    every = next_categories(split, k=3, horizon_days=91, min_p=0.0, basis="gross")
    assert every["category"].tolist() == ["x", "y", "x", "y"]  # by expected spend: x 9 > y 2.675
    assert "(expected 9.00 of gross revenue (shop currency))" in every["reason"].iloc[0]
    with pytest.raises(DataError, match="min_p"):
        next_categories(split, min_p=1.5)


def test_demand_tables_sorted_by_predicted_sales():
    cells = pd.DataFrame({
        "week": [0, 0, 0, 1, 1, 1], "week_start": pd.to_datetime(["2023-07-03"] * 3 + ["2023-07-10"] * 3, utc=True),
        "category": ["x", "y", "other"] * 2, "existing": [1.0, 5.0, 0.0, 4.0, 1.0, 2.0], "new": [0.0] * 6,
        "pred_sales": [1.0, 5.0, 0.0, 4.0, 1.0, 2.0], "lower": [0.0] * 6, "upper": [2.0, 7.0, 0.0, 6.0, 2.0, 3.0],
    })
    by_cat = aggregate_demand(cells, ("category",))
    assert by_cat["category"].tolist() == ["y", "x", "other"]  # 6, 5, 2
    np.testing.assert_allclose(by_cat["pred_sales"], [6.0, 5.0, 2.0])
    # x: sd = √((1/z)² + (2/z)²) = √5 / z, so upper = 5 + √5
    np.testing.assert_allclose(by_cat["upper"].iloc[1], 5.0 + np.sqrt(5.0))
    both = aggregate_demand(cells, ("category", "week"))
    assert list(zip(both["week"], both["category"])) == [(0, "y"), (0, "x"), (0, "other"), (1, "x"), (1, "other"),
                                                         (1, "y")]


def test_registered_split_round_trip(shop, tmp_path):
    from ltvcast.errors import RegistryError
    from ltvcast.registry import load_category_split, load_model, save_category_split, save_model

    history, split = shop["history"], shop["split"]
    fc = make_forecaster("naive").fit(history, CUTOFF, H)
    reg = save_model(fc, name="clv", cutoff=CUTOFF, horizon_days=H, history=history, root=tmp_path)
    assert load_category_split(reg) is None
    entry = save_category_split(reg, split)
    assert entry["categories"] == list(split.categories_) and entry["horizon_days"] == H
    loaded = load_model("clv", tmp_path)
    assert loaded.manifest["categories"]["sha256"] == entry["sha256"]
    again = load_category_split(loaded)
    later = "2023-08-07"  # a later cutoff: the registered split predicts there without refitting
    for at in (CUTOFF, later):
        pred = fc.predict(history, at, H)
        pd.testing.assert_frame_equal(again.split(pred, history, at), split.split(pred, history, at))
    other = CategorySplit(rounds=5, windows=1).fit(history, CUTOFF, 28.0)
    with pytest.raises(RegistryError, match="for 28 days"):
        save_category_split(reg, other)
    path = reg.path / entry["file"]
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(RegistryError, match="corrupt"):
        load_category_split(load_model("clv", tmp_path))


def test_commands_use_the_registered_split(shop, tmp_path):
    runner = CliRunner()
    reg = str(tmp_path / "models")
    res = runner.invoke(app, ["train", "--db", str(shop["db"]), "--cutoff", CUTOFF, "--horizon", "13w",
                              "--models", "naive", "--name", "clv", "--registry", reg, "--categories"])
    assert res.exit_code == 0, res.output
    assert "category split registered with each: " + ", ".join(shop["split"].categories_) in res.output
    from ltvcast.registry import load_category_split, load_model

    model = load_model("clv", reg)
    split = load_category_split(model)
    base = ["--model", "clv", "--db", str(shop["db"]), "--cutoff", CUTOFF, "--registry", reg]
    res = runner.invoke(app, ["next-categories", *base, "--out", str(tmp_path / "nc.csv")])
    assert res.exit_code == 0, res.output
    assert f"category split: registered with clv:1 (fitted at {CUTOFF} for 91 days)" in res.output
    pred = model.forecaster.predict(shop["history"], CUTOFF, H)
    want = next_categories(split.split(pred, shop["history"], CUTOFF), k=3, horizon_days=H)
    got = pd.read_csv(tmp_path / "nc.csv", dtype={"customer_id": str})
    assert got["customer_id"].tolist() == want["customer_id"].astype(str).tolist()
    assert got["category"].tolist() == want["category"].tolist()
    res = runner.invoke(app, ["demand", *base, "--horizon", "13w", "--top", "3", "--evaluate", "--out",
                              str(tmp_path / "d.csv")])
    assert res.exit_code == 0, res.output
    assert "fitted at 2023-07-03 for 91 days (clv:1's registered split is for another horizon or --top)" in res.output


def test_a_category_without_recent_occasions_gets_an_interval():
    # 'other' printed a zero-width interval: E[X²]/E[X] of a category without an occasion in the last year was 0
    from ltvcast.data.datasets import History
    from ltvcast.models.demand import Z80

    tx = _tx([
        ("A", "2021-01-10 10:00", 80.0, "sale", "shoes", "X"),  # shoes only before the last 365 days
        ("A", "2023-05-01 10:00", 40.0, "sale", "beauty", "X"),
        ("A", "2023-06-01 10:00", 60.0, "sale", "beauty", "X"),
    ])
    history = History(tx, pd.Timestamp("2023-07-02", tz="UTC"), "hand", None)
    split = pd.DataFrame({"customer_id": ["A", "A"], "category": ["shoes", "beauty"], "pred_spend": [10.0, 30.0]})
    cells = customer_demand(split, history, CUTOFF, 13).set_index(["week", "category"])
    # no acquisitions and no sales in last year's weeks: the spend spread flat over 13 weeks, nothing new
    mean = 10.0 / 13
    pooled = (40.0**2 + 60.0**2) / 100.0  # the beauty occasions of the last year: E[X²]/E[X] = 52
    assert cells.loc[(0, "shoes"), "new"] == 0.0 and cells.loc[(0, "shoes"), "pred_sales"] == pytest.approx(mean)
    assert cells.loc[(0, "shoes"), "upper"] == pytest.approx(mean + Z80 * np.sqrt(mean * pooled))
    assert cells.loc[(0, "beauty"), "upper"] == pytest.approx(30.0 / 13 + Z80 * np.sqrt(30.0 / 13 * pooled))


def test_a_category_nobody_bought_gets_nothing(shop):
    # the share head's sigmoid gave the empty 'other' of the simulated shop 77 of spend (and a zero-width interval)
    split = shop["split"]
    pop = split.stats_["pop"].set_index("category")["cat_pop"]
    assert pop["other"] == 0.0 and (pop.drop("other") > 0).all()  # every simulated line has a category
    out = split.split(shop["pred"], shop["history"], CUTOFF)
    other = out[out["category"] == "other"]
    assert (other["pred_spend"] == 0).all() and (other["p_buy"] == 0).all() and (other["share"] == 0).all()
    cells = customer_demand(out, shop["history"], CUTOFF, 13)
    assert (cells.loc[cells["category"] == "other", ["pred_sales", "lower", "upper"]].to_numpy() == 0).all()
    assert (cells.loc[cells["category"] != "other", "upper"] > cells.loc[cells["category"] != "other", "pred_sales"]).all()
