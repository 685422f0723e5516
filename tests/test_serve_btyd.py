"""BTYD predictions from a summary: one path with predict, per-customer simulation seeds, cold start, refusal."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ltvcast.data.datasets import open_history
from ltvcast.errors import LtvcastError
from ltvcast.features import rfm_summary
from ltvcast.models.base import Forecaster
from ltvcast.models.btyd import BTYDForecaster
from ltvcast.registry import RegisteredModel, promote, save_model
from ltvcast.serve.model import ModelHolder, predict, servable, summary_frame
from ltvcast.serve.state import Summary

CUTOFF, H = "1997-10-01", 182.0


@pytest.fixture(scope="module")
def history():
    h = open_history(dataset="cdnow-sample")
    yield h
    h.store.close()


@pytest.mark.parametrize("name", ["naive", "bgnbd", "paretonbd"])
def test_prediction_of_a_customer_does_not_depend_on_the_batch(history, name):
    model = BTYDForecaster(name, n_draws=100, seed=4).fit(history, CUTOFF, H)
    full = model.predict(history, CUTOFF, H).set_index("customer_id")
    summary = rfm_summary(history.transactions, CUTOFF, unit="W")
    pd.testing.assert_frame_equal(model.predict_inputs(summary, CUTOFF, H).set_index("customer_id"), full)
    picked = summary.iloc[[17, 3, 1200]].reset_index(drop=True)  # other batch, other order
    for _, row in model.predict_inputs(picked, CUTOFF, H).iterrows():
        expected = full.loc[row["customer_id"]]
        for col in expected.index:
            assert row[col] == expected[col] or (pd.isna(row[col]) and pd.isna(expected[col])), col
    alone = model.predict_inputs(summary.iloc[[3]], CUTOFF, H).iloc[0]
    assert alone["pred_spend_p90"] == full.loc[alone["customer_id"], "pred_spend_p90"]
    if name != "naive":  # the simulated columns really vary between customers
        assert full["pred_spend_p90"].nunique() > 100


def test_cold_start_is_a_customer_first_seen_the_day_before(history):
    model = BTYDForecaster("bgnbd", n_draws=100).fit(history, CUTOFF, H)
    s = Summary(1.0, 1.0, 5.0, 20.0, 40.0, 2, date(1997, 8, 27), date(1997, 9, 3))
    rows = predict(_served(model), ["known", "new"], [s, None], date(1997, 10, 1), H)
    assert [r["cold_start"] for r in rows] == [False, True]
    new = summary_frame(["new"], [None])
    assert new[["frequency", "recency", "T", "monetary_value"]].to_numpy().tolist() == [[0.0, 0.0, 0.0, 0.0]]
    p = model.predict_inputs(new, CUTOFF, H).iloc[0]
    assert rows[1]["pred_transactions"] == p["pred_transactions"] > 0 and rows[1]["p_alive"] == 1.0
    # a brand-new customer's spend per purchase is the Gamma-Gamma population mean
    per = model.count_model_.expected_transactions(new, H / 7)[0]
    assert rows[1]["pred_spend"] == pytest.approx(per * model.spend_model_.population_mean(), rel=1e-12)
    assert rows[0]["model_name"] == "clv" and rows[0]["model_version"] == 1 and rows[0]["cutoff"] == "1997-10-01"


def _served(forecaster):
    return servable(RegisteredModel("clv", 1, Path("."), {"horizon_days": H}, forecaster))


class Learned(Forecaster):
    """Stands for a learned model whose inputs need every customer (module level, so the registry can pickle it)."""

    name = "hybrid"
    btyd_features = True

    def fit(self, data, cutoff, horizon_days):
        return self

    def inputs(self, data, cutoff, horizon_days):
        return pd.DataFrame()

    def predict_inputs(self, inputs, cutoff, horizon_days):
        return pd.DataFrame()


def test_population_models_are_refused_with_the_reason():
    with pytest.raises(LtvcastError, match=r"'hybrid' model: its inputs include BTYD models fitted on every customer"):
        _served(Learned())


def test_holder_keeps_serving_when_the_new_version_cannot_be_served(history, tmp_path):
    model = BTYDForecaster("naive", n_draws=0).fit(history, CUTOFF, H)
    save_model(model, name="clv", cutoff=CUTOFF, horizon_days=H, history=history, root=tmp_path)
    holder = ModelHolder("clv", tmp_path)
    assert holder.current.label == "clv:1" and not holder.poll()
    save_model(Learned(), name="clv", cutoff=CUTOFF, horizon_days=H, history=history, root=tmp_path)
    assert not holder.poll() and holder.current.label == "clv:1" and holder.reload_failures == 1
    save_model(model, name="clv", cutoff=CUTOFF, horizon_days=H, history=history, root=tmp_path)
    assert holder.poll() and holder.current.label == "clv:3"  # the latest, as nothing is promoted
    promote("clv:1", tmp_path)
    assert holder.poll() and holder.current.label == "clv:1"
    pinned = ModelHolder("clv:3", tmp_path)
    promote("clv:3", tmp_path)
    assert not pinned.poll() and pinned.pinned and pinned.current.version == 3


def test_summary_frame_dtypes_match_rfm_summary(history):
    model = BTYDForecaster("naive", n_draws=0).fit(history, CUTOFF, H)
    frame = summary_frame(["a"], [Summary(2.0, 3.0, 4.0, 5.0, 6.0, 3, date(2000, 1, 1), date(2000, 1, 8))])
    model.check_features(frame[["frequency", "recency", "T", "monetary_value"]])  # no SchemaMismatchError
    assert np.isfinite(model.predict_inputs(frame, CUTOFF, H)["pred_spend"]).all()
