"""Learned models on the CDNOW sample (2,357 customers) with tiny settings.

* no leak: every transaction at or after the cutoff changed, added or
  deleted (in the transactions frame and in the store) -> identical
  predictions, through the whole training path (windows, store features,
  BTYD fits, labels, boosting, calibration, prediction);
* a deterministic re-train gives identical predictions;
* the net-revenue rule: labels <= 0 count as zero, predictions stay finite
  and non-negative, the count is reported;
* the canonical frame and the auto model's choice.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ltvcast.data.datasets import open_history
from ltvcast.errors import LtvcastError
from ltvcast.models.catalog import MODEL_NAMES, make_forecaster
from ltvcast.models.learned.auto import AutoForecaster
from ltvcast.models.learned.gbm import GBMForecaster
from ltvcast.models.learned.hybrid import HybridForecaster
from ltvcast.schema import PREDICTION_COLUMNS

CUTOFF = "1998-01-01"
H = 181.0
SMALL = dict(n_windows=3, stride_days=56, max_rounds=15, early_stopping_rounds=5, min_data_in_leaf=20, n_jobs=1)


def _history(mutate: str | None = None):
    h = open_history(dataset="cdnow-sample")
    if mutate:
        for sql in mutate.strip().split(";"):
            if sql.strip():
                h.store.connection.execute(sql)
    return replace(h, transactions=h.store.transactions())


SCRAMBLE_FUTURE = """
UPDATE transactions SET amount = amount * 7 + 3, quantity = 99 WHERE timestamp >= TIMESTAMP '1998-01-01';
INSERT INTO transactions SELECT * REPLACE (TIMESTAMP '1998-01-01' + (timestamp - TIMESTAMP '1997-01-01') AS timestamp)
    FROM transactions WHERE timestamp < TIMESTAMP '1998-01-01';
INSERT INTO transactions SELECT * REPLACE (TIMESTAMP '1998-01-01' AS timestamp, -40 AS amount, 'return' AS kind)
    FROM transactions LIMIT 25;
INSERT INTO transactions SELECT * REPLACE ('new-1' AS customer_id, TIMESTAMP '1998-01-01' AS timestamp)
    FROM transactions LIMIT 1;
DELETE FROM transactions WHERE timestamp >= TIMESTAMP '1998-01-01' AND hash(rowid) % 3 = 0
"""


@pytest.fixture(scope="module")
def history():
    return _history()


@pytest.fixture(scope="module")
def scrambled():
    h = _history(SCRAMBLE_FUTURE)
    after = h.transactions["timestamp"] >= pd.Timestamp(CUTOFF, tz="UTC")
    assert after.sum() > 4000  # the mutation really changed the future
    return h


@pytest.fixture(scope="module")
def gbm_predictions(history):
    model = GBMForecaster(**SMALL).fit(history, CUTOFF, H)
    return model, model.predict(history, CUTOFF, H)


def test_no_leak_gbm(gbm_predictions, scrambled):
    _, before = gbm_predictions
    model = GBMForecaster(**SMALL).fit(scrambled, CUTOFF, H)
    after = model.predict(scrambled, CUTOFF, H)
    pd.testing.assert_frame_equal(before, after)


def test_no_leak_hybrid(history, scrambled):
    preds = [HybridForecaster(**SMALL).fit(h, CUTOFF, H).predict(h, CUTOFF, H) for h in (history, scrambled)]
    pd.testing.assert_frame_equal(preds[0], preds[1])


def test_no_leak_deep(history, scrambled):
    from ltvcast.models.learned.deep import DeepForecaster

    tiny = dict(n_windows=3, stride_days=56, lookback=13, max_epochs=2, patience=1, hidden_size=8, n_threads=1)
    models = [DeepForecaster(**tiny).fit(h, CUTOFF, H) for h in (history, scrambled)]
    preds = [m.predict(h, CUTOFF, H) for m, h in zip(models, (history, scrambled))]
    pd.testing.assert_frame_equal(preds[0], preds[1])
    trajectories = [m.predict_trajectory(h, CUTOFF, H) for m, h in zip(models, (history, scrambled))]
    pd.testing.assert_frame_equal(trajectories[0], trajectories[1])


def test_retrain_is_deterministic(history, gbm_predictions):
    model, first = gbm_predictions
    again = GBMForecaster(**SMALL).fit(history, CUTOFF, H).predict(history, CUTOFF, H)
    pd.testing.assert_frame_equal(first, again)
    # a different seed is a different model (feature subsampling), so the test has teeth
    other = GBMForecaster(**{**SMALL, "seed": 5}).fit(history, CUTOFF, H).predict(history, CUTOFF, H)
    assert not np.allclose(other["pred_spend"], first["pred_spend"])


def test_prepared_fit_and_predict_columns_equal_predict(history, gbm_predictions):
    # tune's trials share one prepare(); batch scoring calls predict_columns: both give predict's numbers
    model, before = gbm_predictions
    again = GBMForecaster(**SMALL)
    prep = again.prepare(history, CUTOFF, H, features=True)
    pd.testing.assert_frame_equal(again.fit_prepared(prep).predict_prepared(prep), before)
    cols = model.predict_columns(model.inputs(history, CUTOFF, H), H)
    assert set(cols) == {c for c in PREDICTION_COLUMNS[4:] if c != "p_alive"}
    for name, values in cols.items():
        np.testing.assert_array_equal(values, before[name].to_numpy(float))


def test_canonical_frame(history, gbm_predictions):
    model, p = gbm_predictions
    assert list(p.columns) == list(PREDICTION_COLUMNS)
    assert len(p) == history.transactions["customer_id"].nunique()
    assert (p["model"] == "gbm").all() and (p["horizon_days"] == H).all()
    assert p["p_alive"].isna().all()
    assert p["p_churn"].between(0, 1).all()
    assert (p["pred_spend"] >= 0).all() and np.isfinite(p["pred_spend"]).all()
    assert (p["pred_transactions"] >= 0).all()
    assert (p["pred_spend_p10"] <= p["pred_spend_p50"]).all() and (p["pred_spend_p50"] <= p["pred_spend_p90"]).all()
    assert p["pred_next_purchase_days"].between(0, H - 1).all()
    assert any("validates" in n for n in model.notes_)
    assert model.spend_loss_ in ("ziln", "tweedie")
    assert model.feature_importance_["feature"].isin(model.feature_names_).all()
    # no absolute-age inputs (age-robust feature set)
    assert not {"T", "T_days", "tenure_days", "days_since_last_purchase"} & set(model.feature_names_)


RETURNS = """
INSERT INTO transactions SELECT * REPLACE (TIMESTAMP '1997-09-15' AS timestamp, -500 AS amount, 'return' AS kind)
    FROM (SELECT * FROM transactions WHERE timestamp < TIMESTAMP '1997-06-01' ORDER BY customer_id, timestamp LIMIT 40);
INSERT INTO transactions SELECT * REPLACE (TIMESTAMP '1997-05-20' AS timestamp, -300 AS amount, 'return' AS kind)
    FROM (SELECT * FROM transactions WHERE timestamp < TIMESTAMP '1997-04-01' ORDER BY customer_id DESC LIMIT 30)
"""


def test_net_revenue_rule(history):
    h = _history(RETURNS)
    assert (h.transactions["amount"] < 0).sum() == 70
    for cls in (GBMForecaster, HybridForecaster):
        model = cls(**{**SMALL, "spend_loss": "ziln"}).fit(h, CUTOFF, H)
        p = model.predict(h, CUTOFF, H)
        assert np.isfinite(p[["pred_spend", "pred_spend_p90", "pred_transactions"]].to_numpy()).all()
        assert (p["pred_spend"] >= 0).all() and (p["pred_spend_p10"] >= 0).all()
        labels = model.examples_.frame
        n_nonpos = int(((labels["actual_transactions"] > 0) & (labels["actual_spend"] <= 0)).sum())
        assert n_nonpos > 0
        assert any(f"{n_nonpos:,} training example(s)" in n and "zero spend" in n for n in model.notes_)


def test_auto_chooses_on_validation(history):
    model = AutoForecaster(**SMALL).fit(history, CUTOFF, H)
    p = model.predict(history, CUTOFF, H)
    assert list(p.columns) == list(PREDICTION_COLUMNS) and (p["model"] == "auto").all()
    assert set(model.choice_) == {"pred_spend", "pred_transactions", "p_churn", "quantiles", "pred_next_purchase_days"}
    for out, c in model.choice_.items():
        assert c["learned"] in ("gbm", "hybrid", "mean(gbm, hybrid)") and 0.0 <= c["w"] <= 1.0
        best = model.scores_[model.scores_["output"] == out]["score"].min()
        assert c["score"] == pytest.approx(best)
    assert any("chosen on the validation window" in n for n in model.notes_)
    assert p["p_churn"].between(0, 1).all() and (p["pred_spend"] >= 0).all()


def test_catalog_knows_every_model():
    assert MODEL_NAMES == (
        "naive", "bgnbd", "paretonbd", "gbm", "hybrid", "auto", "deep", "deep-lstm", "deep-transformer"
    )
    assert isinstance(make_forecaster("hybrid"), HybridForecaster)
    assert make_forecaster("gbm").name == "gbm" and make_forecaster("auto").name == "auto"
    with pytest.raises(LtvcastError, match="available: naive, bgnbd, paretonbd, gbm, hybrid, auto, deep, "):
        make_forecaster("xgb")


def test_a_gbm_pickled_before_the_new_parameters_still_loads_and_predicts(history):
    """Models registered before seasonal windows, calendar inputs and text categoricals keep working."""
    import pickle

    model = GBMForecaster(**SMALL).fit(history, CUTOFF, H)
    before = model.predict(history, CUTOFF, H)
    old = pickle.loads(pickle.dumps(model))
    for name in ("seasonal_years", "reconcile", "calendar_inputs", "calendar", "categoricals", "max_categories"):
        del old.__dict__[name]  # as an artifact written before these parameters existed
    after = old.predict(history, CUTOFF, H)  # was: AttributeError 'GBMForecaster' object has no attribute ...
    pd.testing.assert_frame_equal(after, before)  # cdnow-sample has no text features and < 2 years: same inputs


def test_a_model_fitted_before_a_feature_was_added_ignores_it():
    """Registered models keep predicting when a feature family later gains columns (trend, event types)."""
    model = GBMForecaster()
    model.feature_schema_ = {"frequency": "float64", "label_days": "float64"}
    feats = pd.DataFrame({"customer_id": ["a", "b"], "frequency": [1.0, 2.0], "spend_slope_13w": [0.5, -0.5],
                          "country": ["DE", "FR"]})
    kept = model.known_features(feats)
    assert list(kept.columns) == ["customer_id", "frequency"]
    assert kept["frequency"].tolist() == [1.0, 2.0]
    assert GBMForecaster().known_features(feats) is feats  # unfitted: nothing to compare with
