"""Reasons (ltvcast.explain): exactness of each method, a planted driver found, the service equals batch.

* gbm: LightGBM's tree SHAP (+ the booster's start) sums to each booster's raw score within 1e-6, and
  base + Σ contributions = ln pred_spend / logit p_churn of ``predict`` within 1e-6 (ZILN and Tweedie);
* a simulated shop where browsing spells (10 product views in a week) are followed 30-45 days later by
  two large purchases: ``views_30d`` ranks first in global importance of pred_spend and is among the top 3
  reasons of >= 80 % of the customers whose spell puts the large purchases in the horizon (the truth);
* BTYD elasticities (Pareto/NBD, BG/NBD) equal plain central finite differences to 1e-4; the frequency
  factor is the ratio of two predictions;
* deep: integrated gradients complete (Σ IG = F(x) − F(baseline) within 0.05·max(1, |ΔF|) per customer
  with 64 Gauss-Legendre nodes and 0.03 with 192, the gap shrinking with more nodes) and the ablation of a sequence group
  equals the prediction with those periods zeroed;
* the service's ``/v1/customers/{id}/explanation`` equals the batch explanation; the CLI card and file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from serve_kit import CUTOFF as SERVE_CUTOFF
from serve_kit import Server, make_store, run_cli, write_keys

from ltvcast.data.datasets import open_history
from ltvcast.evaluate.report import ReportSection
from ltvcast.explain import (
    REASON_COLUMNS,
    explain_inputs,
    explain_registered,
    global_importance,
    importance_from,
    importance_section,
)
from ltvcast.explain.btyd import btyd_outputs, explain_btyd
from ltvcast.ingest.config import load_config
from ltvcast.ingest.multisource import ingest_sources
from ltvcast.models.btyd import BTYDForecaster
from ltvcast.models.learned.gbm import GBMForecaster
from ltvcast.registry import load_model, save_model
from ltvcast.store import Store

CUTOFF = "1998-01-01"
H = 181.0
SMALL = dict(n_windows=3, stride_days=56, max_rounds=15, early_stopping_rounds=5, min_data_in_leaf=20, n_jobs=1)


@pytest.fixture(scope="module")
def cdnow():
    return open_history(dataset="cdnow-sample")


# ----------------------------------------------------------------------------- gbm
def test_gbm_contributions_sum_to_raw_prediction(cdnow):
    model = GBMForecaster(**SMALL, spend_loss="tweedie").fit(cdnow, CUTOFF, H)
    inputs = model.inputs(cdnow, CUTOFF, H)
    raw = model.raw_contributions(inputs, H)
    X = raw["matrix"]
    assert raw["spend"].shape == (len(inputs), len(model.feature_names_) + 1)
    assert raw["ziln"].shape == (len(inputs), 3, len(model.feature_names_) + 1)
    np.testing.assert_allclose(raw["spend"].sum(axis=1), model._spend.raw(X), rtol=0, atol=1e-6)
    np.testing.assert_allclose(raw["ziln"].sum(axis=2), model._ziln.raw(X), rtol=0, atol=1e-6)
    np.testing.assert_allclose(raw["churn"].sum(axis=1), model._churn.raw(X), rtol=0, atol=1e-6)

    result = explain_inputs(model, inputs, CUTOFF, H)
    spend, churn = result.attributions
    pred = result.predictions
    assert spend.contributions.shape == (len(inputs), len(model.feature_names_) - 1)  # label_days joins the base
    np.testing.assert_allclose(spend.base + spend.contributions.sum(axis=1), np.log(pred["pred_spend"]), atol=1e-6)
    np.testing.assert_allclose(expit(churn.base + churn.contributions.sum(axis=1)), pred["p_churn"], atol=1e-9)
    # the long frame: k = 3 per customer and output, ranked by |contribution|, effect = e^c
    r = result.reasons
    assert list(r.columns) == list(REASON_COLUMNS)
    assert len(r) == 2 * 3 * len(inputs)
    first = r[r["rank"] == 1].set_index(["customer_id", "target"])["contribution"].abs()
    third = r[r["rank"] == 3].set_index(["customer_id", "target"])["contribution"].abs()
    assert (first >= third.loc[first.index]).all()
    np.testing.assert_allclose(r["effect"], np.exp(r["contribution"]))
    assert r["sentence"].str.contains("→ (?:expected spend|churn odds) ×", regex=True).all()


# ----------------------------------------------------------------------------- planted driver
PLANT_START = pd.Timestamp("2023-01-01", tz="UTC")
PLANT_CUTOFF = "2024-07-01"
PLANT_H = 28.0


def _planted_store(folder: Path, n: int = 800, seed: int = 3) -> tuple[Path, set[str]]:
    """Orders and views of n customers; returns the store and the customers the planted behaviour affects.

    Everyone buys ~every 45 days for ~20 and views a product every 20 days. Spells (every ~120 days): 10
    views within a week starting at day s, then two purchases of ~200 at s + 30..45 days. Affected at the
    cutoff C: a spell with s in [C − 30, C − 2) (its views inside the last 30 days, its purchases in [C, C + 28)).
    """
    rng = np.random.default_rng(seed)
    span = (pd.Timestamp("2024-06-30 23:00", tz="UTC") - PLANT_START).days
    c_day = (pd.Timestamp(PLANT_CUTOFF, tz="UTC") - PLANT_START).days
    orders, events, affected = [], [], set()
    for c in range(n):
        cid = f"c{c:04d}"
        first = rng.uniform(0, 120)
        days = [first, *(first + np.cumsum(rng.exponential(45.0, size=20)))]
        amounts = [rng.gamma(2.0, 10.0) for _ in days]
        events += [(cid, d) for d in np.arange(rng.uniform(0, 20), span, 20.0)]
        for s in np.cumsum(rng.exponential(120.0, size=8)):
            events += [(cid, v) for v in rng.uniform(s, s + 7, size=10)]
            for b in rng.uniform(s + 30, s + 45, size=2):
                days.append(b)
                amounts.append(rng.gamma(2.0, 100.0))
            if c_day - 30 <= s < c_day - 2:
                affected.add(cid)
        orders += [{"order_id": f"{cid}-{k}", "customer_id": cid, "amount": round(a, 2),
                    "timestamp": (PLANT_START + pd.Timedelta(days=float(d))).isoformat()}
                   for k, (d, a) in enumerate(zip(days, amounts)) if d < span]
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(orders).to_csv(folder / "orders.csv", index=False)
    pd.DataFrame([{"customer_id": c, "event_type": "view",
                   "timestamp": (PLANT_START + pd.Timedelta(days=float(d))).isoformat()}
                  for c, d in events if d < span]).to_csv(folder / "events.csv", index=False)
    (folder / "sources.yaml").write_text(
        "shop: {currency: EUR, timezone: UTC, data_end: 2024-06-30}\n"
        "sources:\n  - {kind: orders, path: orders.csv}\n  - {kind: events, path: events.csv}\n"
    )
    db = folder / "shop.duckdb"
    with Store.open(db) as store:
        ingest_sources(load_config(folder / "sources.yaml"), store)
    return db, affected


def test_planted_driver_ranks_first_and_is_a_top_reason(tmp_path):
    db, affected = _planted_store(tmp_path / "planted")
    history = open_history(db=db)
    try:
        settings = {**SMALL, "stride_days": 28, "max_rounds": 60, "early_stopping_rounds": 10}
        model = GBMForecaster(**settings, spend_loss="ziln").fit(history, PLANT_CUTOFF, PLANT_H)
        inputs = model.inputs(history, PLANT_CUTOFF, PLANT_H)
    finally:
        history.store.close()
    result = explain_inputs(model, inputs, PLANT_CUTOFF, PLANT_H)
    imp = importance_from(result.attributions)  # = global_importance over every customer
    spend_imp = imp[imp["target"] == "pred_spend"]
    assert spend_imp.iloc[0]["feature"] == "views_30d"
    assert spend_imp.iloc[0]["direction"] == 1  # more views, more spend
    assert global_importance(model, inputs, PLANT_CUTOFF, PLANT_H, max_customers=300).query(
        "target == 'pred_spend'").iloc[0]["feature"] == "views_30d"
    # the ZILN decomposition is exact too
    spend = result.attributions[0]
    np.testing.assert_allclose(spend.base + spend.contributions.sum(axis=1),
                               np.log(result.predictions["pred_spend"]), atol=1e-6)
    assert 80 <= len(affected) <= 250
    r = result.reasons[(result.reasons["target"] == "pred_spend") & (result.reasons["feature"] == "views_30d")]
    share = np.mean([c in set(r["customer_id"]) for c in affected])
    assert share >= 0.8, share
    assert r["sentence"].str.contains("product views? in the last 30 days", regex=True).all()


# ----------------------------------------------------------------------------- BTYD
@pytest.mark.parametrize("kind", ["paretonbd", "bgnbd"])
def test_btyd_elasticities_equal_finite_differences(cdnow, kind):
    model = BTYDForecaster(kind, n_draws=0).fit(cdnow, CUTOFF)
    summary = model.inputs(cdnow, CUTOFF).iloc[::6].reset_index(drop=True)  # ~400 customers
    atts = {a.target: a for a in explain_btyd(model, summary, H)}
    h = 1e-5
    rec, T = summary["recency"].to_numpy(float), summary["T"].to_numpy(float)

    for j, column in enumerate(("frequency", "recency", "T", "monetary_value")):
        if column == "frequency":
            continue
        ok = np.ones(len(summary), bool)
        if column == "recency":
            ok = rec * np.exp(h) <= T
        if column == "T":
            ok = T * np.exp(-h) >= rec
        s_ok = summary[ok].reset_index(drop=True)
        plus = s_ok.assign(**{column: s_ok[column] * np.exp(h)})
        minus = s_ok.assign(**{column: s_ok[column] * np.exp(-h)})
        up = {k: np.log(v) for k, v in btyd_outputs(model, plus, H).items()}
        down = {k: np.log(v) for k, v in btyd_outputs(model, minus, H).items()}
        for target in ("pred_spend", "p_churn"):
            fd = (up[target] - down[target]) / (2 * h)
            got = atts[target].contributions[ok, j]
            np.testing.assert_allclose(got, fd, rtol=0, atol=1e-4, err_msg=f"{kind} {column} {target}")
        assert ok.mean() > 0.5
    # monetary value: elasticity of spend x z/(gamma + x z) (analytic), none on churn
    assert np.all(atts["p_churn"].contributions[:, 3] == 0)
    assert atts["pred_spend"].contributions[:, 3].max() > 0.5
    # frequency: the factor of one more repeat purchase is the ratio of two predictions
    x = summary["frequency"].to_numpy(float)
    rows = np.flatnonzero(x >= 1)
    more = summary.iloc[rows].assign(frequency=lambda d: d["frequency"] + 1.0)
    ratio = btyd_outputs(model, more, H)["pred_spend"] / atts["pred_spend"].output[rows]
    np.testing.assert_allclose(atts["pred_spend"].extra["arc_factor"]["frequency"][rows], ratio, rtol=1e-12)
    assert np.isnan(atts["pred_spend"].contributions[x == 0, 0]).all()


# ----------------------------------------------------------------------------- deep
def test_deep_integrated_gradients_complete_and_ablation_exact(cdnow):
    from ltvcast.explain.deep import explain_deep
    from ltvcast.models.learned.deep import DeepForecaster

    tiny = dict(n_windows=3, stride_days=56, lookback=13, max_epochs=3, patience=1, hidden_size=8, batch_size=256,
                n_threads=1)
    model = DeepForecaster(**tiny).fit(cdnow, CUTOFF, H)
    inputs = model.inputs(cdnow, CUTOFF, H).iloc[:80].reset_index(drop=True)
    atts = explain_deep(model, inputs, CUTOFF, H, steps=64)
    finer = explain_deep(model, inputs, CUTOFF, H, steps=192)
    pred = model.predict_inputs(inputs, CUTOFF, H)
    for att, fine in zip(atts, finer):
        delta = att.extra["ig_delta"]
        change = np.abs(att.output - att.base)
        scale = np.maximum(1.0, change)
        assert np.all(np.abs(delta) <= 0.05 * scale), np.max(np.abs(delta) / scale)
        # a quadrature error, not a bias: it shrinks with more nodes
        assert np.all(np.abs(fine.extra["ig_delta"]) <= 0.03 * scale), np.max(np.abs(fine.extra["ig_delta"]) / scale)
        assert np.max(np.abs(fine.extra["ig_delta"])) < np.max(np.abs(delta))
    np.testing.assert_allclose(np.exp(atts[0].output), pred["pred_spend"], rtol=1e-5)
    # ablation of the recent spend periods = the prediction with those periods set to 0
    spend = atts[0]
    j = spend.features.index("seq:spend:recent")
    n_recent = spend.extra["groups"]["seq:spend:recent"]["periods"]
    cols = [c for c in model.sequence_columns() if c.endswith("_spend") and int(c.split("_")[1]) <= n_recent]
    assert len(cols) == n_recent
    zeroed = model.predict_inputs(inputs.assign(**{c: np.float32(0) for c in cols}), CUTOFF, H)
    expected = np.log(pred["pred_spend"].to_numpy()) - np.log(zeroed["pred_spend"].to_numpy())
    np.testing.assert_allclose(spend.contributions[:, j], expected, atol=1e-4)
    assert (spend.values[:, j] >= 0).all()


# ----------------------------------------------------------------------------- service, CLI, report
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain-serve")
    db = make_store(folder)
    root = folder / "models"
    history = open_history(db=db)
    try:
        model = GBMForecaster(**SMALL).fit(history, SERVE_CUTOFF, 182.0)
        save_model(model, name="ltv", cutoff=SERVE_CUTOFF, horizon_days=182.0, history=history, root=root)
    finally:
        history.store.close()
    server = Server(["--db", str(db), "--model", "ltv", "--registry", str(root), "--keys", str(write_keys(folder))],
                    folder)
    yield {"folder": folder, "db": db, "root": root, "server": server}
    server.stop()


def test_service_explanation_equals_batch(served):
    history = open_history(db=served["db"])
    try:
        batch = explain_registered(load_model("ltv", served["root"]), history, SERVE_CUTOFF, 182.0)
    finally:
        history.store.close()
    ids = batch.predictions["customer_id"].astype(str).tolist()[:4]
    for cid in ids:
        resp = served["server"].client.get(f"/v1/customers/{cid}/explanation",
                                           params={"cutoff": SERVE_CUTOFF, "horizon": "182d"})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["model_name"] == "ltv" and body["model_version"] == 1 and not body["cold_start"]
        want = batch.reasons[batch.reasons["customer_id"] == cid]
        row = batch.predictions[batch.predictions["customer_id"].astype(str) == cid].iloc[0]
        assert body["pred_spend"] == pytest.approx(row["pred_spend"], rel=1e-9)
        for target in ("pred_spend", "p_churn"):
            got = body["reasons"][target]
            exp = want[want["target"] == target]
            assert [g["feature"] for g in got] == exp["feature"].tolist()
            assert [g["sentence"] for g in got] == exp["sentence"].tolist()
            np.testing.assert_allclose([g["contribution"] for g in got], exp["contribution"], rtol=1e-9, atol=1e-12)
    unknown = served["server"].client.get("/v1/customers/nobody/explanation", params={"cutoff": SERVE_CUTOFF})
    assert unknown.status_code == 200 and unknown.json()["cold_start"] and unknown.json()["reasons"] == {}


def test_cli_card_and_reasons_file(served):
    folder, db, root = served["folder"], str(served["db"]), str(served["root"])
    out = run_cli("explain", "--model", "ltv", "--db", db, "--registry", root, "--cutoff", SERVE_CUTOFF,
                  "--customer", "c001", cwd=folder)
    assert out.returncode == 0, out.stderr
    assert "customer c001" in out.stdout and "expected spend" in out.stdout
    out = run_cli("explain", "--model", "ltv", "--db", db, "--registry", root, "--cutoff", SERVE_CUTOFF,
                  "--out", "reasons.parquet", cwd=folder)
    assert out.returncode == 0, out.stderr
    frame = pd.read_parquet(folder / "reasons.parquet")
    assert list(frame.columns) == list(REASON_COLUMNS)
    assert set(frame["rank"]) == {1, 2, 3} and set(frame["target"]) == {"pred_spend", "p_churn"}
    bad = run_cli("explain", "--model", "ltv", "--db", db, "--registry", root, "--cutoff", SERVE_CUTOFF,
                  "--customer", "nobody", cwd=folder)
    assert bad.returncode == 2 and "no purchase before" in bad.stderr
    bad = run_cli("explain", "--model", "ltv", "--db", db, "--registry", root, "--cutoff", SERVE_CUTOFF,
                  "--out", "reasons.csv", "--top", "0", cwd=folder)
    assert bad.returncode == 2 and "--top must be at least 1" in bad.stderr  # was "k must be at least 1"


def test_importance_section_and_btyd_partial_dependence(cdnow):
    model = BTYDForecaster("bgnbd", n_draws=0).fit(cdnow, CUTOFF)
    inputs = model.inputs(cdnow, CUTOFF)
    section = importance_section(model, inputs, CUTOFF, H, pd_features=2, max_customers=600)
    assert isinstance(section, ReportSection)
    assert len(section.tables) == 2 and len(section.figures) == 1 and section.figures[0].lstrip().startswith("<svg")
    table = section.tables[0][1]
    assert set(table["driver"]) <= {"frequency", "recency", "T", "monetary_value"}
    # partial dependence of spend on T (customers kept valid): older customers with the same history buy less
    from ltvcast.explain import partial_dependence

    curve = partial_dependence(model, inputs, CUTOFF, H, "T", max_customers=300)
    assert curve["pred_spend"].iloc[0] > curve["pred_spend"].iloc[-1]


def test_an_elasticity_sentence_never_takes_a_probability_above_one():
    """p_churn 0.2 with elasticity 30: 1.1^30 − 1 = +1645 %, but the chance can at most reach 1 (+400 %)."""
    from ltvcast.explain.attribution import Attribution
    from ltvcast.explain.sentences import effect_phrase

    att = Attribution("p_churn", "elasticity", np.array(["a"]), ["T"], ["elasticity"], np.array([[498.0]]),
                      np.array([[30.0]]), np.array([np.nan]), np.array([0.2]), "bgnbd", [], None, {})
    assert effect_phrase(att, 0, 0) == "10 % higher: the chance of no purchase +400.0%"
    att.contributions[0, 0] = 1.0  # inside the bound: 1.1^1 − 1
    assert effect_phrase(att, 0, 0) == "10 % higher: the chance of no purchase +10.0%"
