"""The deep sequence model on the CDNOW sample (2,357 customers) with tiny settings.

* the torch ZILN loss equals the NumPy one (ltvcast.models.learned.ziln);
* trajectory periods and per-period labels, hand-computed;
* the canonical frame: columns, bounds, quantile order, trajectory sums;
* a deterministic re-train, a pickle round trip, every encoder, the export
  module. The leak test is in test_learned_models.py (beside gbm's).
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from ltvcast.data.datasets import open_history
from ltvcast.errors import CutoffError, SchemaMismatchError
from ltvcast.models.catalog import make_forecaster
from ltvcast.models.learned.deep import DeepForecaster, DeepNet, period_offsets, period_spend, ziln_loss_torch
from ltvcast.models.learned.deep.training import leading_zeros
from ltvcast.models.learned.ziln import SIGMA_MAX, SIGMA_MIN, ziln_loss, ziln_mean
from ltvcast.schema import PREDICTION_COLUMNS

CUTOFF = "1998-01-01"
H = 181.0
TINY = dict(
    n_windows=3, stride_days=56, lookback=13, max_epochs=3, patience=1, hidden_size=8, batch_size=256, n_threads=1
)


@pytest.fixture(scope="module")
def history():
    return open_history(dataset="cdnow-sample")


@pytest.fixture(scope="module")
def fitted(history):
    model = DeepForecaster(**TINY).fit(history, CUTOFF, H)
    return model, model.predict(history, CUTOFF, H)


def test_torch_ziln_loss_equals_numpy():
    rng = np.random.default_rng(3)
    n = 40
    raw = np.column_stack([rng.normal(size=n), rng.normal(2, 1, size=n), rng.normal(-0.5, 2.0, size=n)])
    raw[:3, 2] = [math.log(SIGMA_MIN) - 1, math.log(SIGMA_MAX) + 1, 0.0]  # sigma clipped both ways
    y = np.where(rng.random(n) < 0.4, 0.0, np.exp(rng.normal(2, 1, size=n)))
    y[3:6] = [-5.0, -0.01, 0.0]  # net revenue <= 0 counts as zero
    got = ziln_loss_torch(torch.tensor(y), torch.tensor(raw)).numpy()
    np.testing.assert_allclose(got, ziln_loss(y, raw), rtol=1e-12, atol=1e-12)
    # by hand: f_p = 0, mu = 1, sigma = 1, y = e^2 -> ln 2 + 2 + ln(2 pi)/2 + 1/2
    one = ziln_loss_torch(torch.tensor([math.e**2]), torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64))
    assert float(one[0]) == pytest.approx(math.log(2) + 2.0 + 0.5 * math.log(2 * math.pi) + 0.5, rel=1e-12)


@pytest.mark.parametrize("encoder", ["gru", "lstm"])
def test_skipping_leading_empty_periods_changes_nothing(encoder):
    torch.manual_seed(0)
    config = dict(
        encoder=encoder, hidden_size=8, n_layers=1, dropout=0.0, lookback=10, n_channels=3, n_numeric=2,
        missing=np.array([], np.int64), cat_sizes=[1], offsets=np.arange(0, 28, 7).astype(np.float32),
        label_scale=28.0, seq_mean=np.full(3, 0.3), seq_std=np.full(3, 2.0), num_mean=np.zeros(2),
        num_std=np.ones(2), mu_bounds=(-5.0, 10.0),
    )
    net = DeepNet(config)
    seq = torch.rand(5, 10, 3) * 10
    seq[:, :4] = 0.0  # four empty periods in every row (the normalised input there is -0.15, not 0)
    seq[0, 4] = 0.0
    args = (seq, torch.rand(5, 2), torch.zeros(5, 1, dtype=torch.int64), torch.full((5,), 28.0))
    assert leading_zeros(seq.numpy()).tolist() == [5, 4, 4, 4, 4]
    grads = []
    for skip in (0, 4):
        net.zero_grad()
        out = net(*args, skip=skip)
        sum(o.sum() for o in out).backward()
        grads.append([p.grad.clone() for p in net.parameters()])
        if skip == 0:
            full = [o.detach() for o in out]
        else:
            for a, b in zip(full, out):
                torch.testing.assert_close(b.detach(), a, rtol=1e-5, atol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_period_offsets():
    assert period_offsets(181, "W").tolist() == list(range(0, 181, 7))  # 26 weeks, the last one 6 days
    assert period_offsets(61, "M").tolist() == [0, 30]  # months of 30.4375 days; no empty third period
    assert period_offsets(365, "M").tolist()[:4] == [0, 30, 61, 91]


def test_period_spend_by_hand():
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "a", "b"],
            "timestamp": pd.to_datetime(
                ["2024-01-01 10:00", "2024-01-09 00:00", "2024-01-10 00:00", "2024-01-14 23:59", "2024-01-15 00:00",
                 "2023-12-31 00:00"],
                utc=True,
            ),
            "amount": [10.0, 5.0, -3.0, 7.0, 100.0, 50.0],
            "kind": ["sale", "sale", "return", "sale", "sale", "sale"],
        }
    )
    offsets = period_offsets(14, "W")  # [0, 7]: days 0-6 and 7-13 from 2024-01-01
    net = period_spend(tx, pd.Series(["b", "a", "c"]), "2024-01-01", 14, offsets)
    np.testing.assert_allclose(net, [[0.0, 7.0], [10.0, 2.0], [0.0, 0.0]])
    gross = period_spend(tx, pd.Series(["a"]), "2024-01-01", 14, offsets, revenue_basis="gross")
    np.testing.assert_allclose(gross, [[10.0, 5.0]])


def test_canonical_frame_and_trajectory(history, fitted):
    model, p = fitted
    assert list(p.columns) == list(PREDICTION_COLUMNS)
    assert len(p) == history.transactions["customer_id"].nunique()
    assert (p["model"] == "deep").all() and (p["horizon_days"] == H).all()
    assert p["p_alive"].isna().all()
    filled = [c for c in PREDICTION_COLUMNS[4:] if c != "p_alive"]
    assert np.isfinite(p[filled].to_numpy()).all()
    assert p["p_churn"].between(0, 1).all() and (p["pred_transactions"] >= 0).all()
    assert (p["pred_spend"] >= 0).all() and (p["pred_spend_p10"] >= 0).all()
    assert (p["pred_spend_p10"] <= p["pred_spend_p50"]).all() and (p["pred_spend_p50"] <= p["pred_spend_p90"]).all()
    assert p["pred_next_purchase_days"].between(0, H - 1).all()
    assert p["pred_spend"].std() > 0
    assert any("validates" in n for n in model.notes_) and model.validation_ is not None

    traj = model.predict_trajectory(history, CUTOFF, H)
    assert list(traj.columns) == ["customer_id", "period", "period_start", "period_days", "pred_spend"]
    assert len(traj) == 26 * len(p)  # ceil(181 / 7) weeks
    first = traj[traj["customer_id"] == p["customer_id"].iloc[0]]
    assert first["period"].tolist() == list(range(1, 27))
    assert first["period_days"].sum() == H and first["period_days"].iloc[-1] == 6.0
    assert first["period_start"].iloc[1] == pd.Timestamp("1998-01-08", tz="UTC")
    assert (traj["pred_spend"] >= 0).all()
    sums = traj.groupby("customer_id", sort=True)["pred_spend"].sum()
    np.testing.assert_allclose(sums.to_numpy(), p.sort_values("customer_id")["pred_spend"].to_numpy(), rtol=1e-5)
    with pytest.raises(CutoffError, match="fitted for a 181-day horizon"):
        model.predict(history, CUTOFF, 200)


def test_level_calibration_fixes_the_validation_total(fitted):
    model, _ = fitted
    val = model.validation_
    spend = np.maximum(val["actual_spend"].to_numpy(), 0)
    raw_total = val["pred_spend"].sum()
    assert model.level_.factor_ == pytest.approx(np.clip(spend.sum() / raw_total, 1 / 1.5, 1.5))
    assert 0.0 < model.churn_calibration_.a_


def test_warm_refit_starts_from_the_validation_network(fitted):
    model, _ = fitted
    net = model._net
    data = model._tensors(
        pd.DataFrame({"actual_spend": [0.0, 5.0], "actual_transactions": [0.0, 1.0], "label_days": [H, H],
                      "next_purchase_days": [np.nan, 3.0], **{c: [1.0, 2.0] for c in model.numeric_names_},
                      **{c: ["a", "b"] for c in model.categorical_names_}}),
        np.zeros((2, 13, len(model.channels_)), np.float32), np.zeros((2, 26), np.float32),
    )
    same, _, _ = model._train(data, np.arange(2), None, 0, start=net)  # zero epochs: the start's weights
    moved, _, _ = model._train(data, np.arange(2), None, 1, start=net)
    for (k, a), b, c in zip(net.state_dict().items(), same.state_dict().values(), moved.state_dict().values()):
        assert torch.equal(a, b), k
    assert not all(torch.equal(a, c) for a, c in zip(net.state_dict().values(), moved.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), model._net.state_dict().values()))


def test_retrain_is_deterministic(history, fitted):
    _, first = fitted
    settings = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    again = DeepForecaster(**TINY).fit(history, CUTOFF, H).predict(history, CUTOFF, H)
    pd.testing.assert_frame_equal(first, again)
    other = DeepForecaster(**{**TINY, "seed": 7}).fit(history, CUTOFF, H).predict(history, CUTOFF, H)
    assert not np.allclose(other["pred_spend"], first["pred_spend"])
    # fitting restores torch's global settings
    assert (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()) == settings


def test_pickle_round_trip(history, fitted):
    model, first = fitted
    blob = pickle.dumps(model)
    back = pickle.loads(blob)
    assert back.examples_ is None  # the training data stays out of the artifact
    pd.testing.assert_frame_equal(back.predict(history, CUTOFF, H), first)
    assert len(blob) < 1_000_000


@pytest.mark.parametrize("name", ["deep-lstm", "deep-transformer"])
def test_other_encoders_fit(history, name):
    encoder = name.split("-")[1]
    assert make_forecaster(name).encoder == encoder and make_forecaster(name).name == name
    model = DeepForecaster(name, encoder=encoder, warm_refit=0.5, **{**TINY, "max_epochs": 2})
    p = model.fit(history, CUTOFF, H).predict(history, CUTOFF, H)
    assert (p["model"] == name).all()
    # warm_refit=0.5: the final network is the validation network trained ceil(0.5 × best epoch) more epochs
    assert model.refit_epochs_ == math.ceil(0.5 * model.epochs_)
    assert any(f"trained {model.refit_epochs_} more epoch(s) on every window" in n for n in model.notes_)
    assert (p["pred_spend"] >= 0).all() and p["p_churn"].between(0, 1).all()
    assert (p["pred_spend_p10"] <= p["pred_spend_p90"]).all()


def test_export_module_is_the_prediction_path(history, fitted):
    model, p = fitted
    module, sample = model.export_module(n_rows=3)
    assert [t.shape[0] for t in sample] == [3, 3, 3, 3]
    assert sample[0].shape[1:] == (13, len(model.channels_)) and sample[1].shape[1] == len(model.numeric_names_)
    out = module(*sample)
    assert [o.shape for o in out] == [(3, 3), (3, 26), (3,), (3,), (3,)]
    # the module on the host-side inputs of five customers gives predict()'s spend
    rows = model.inputs(history, CUTOFF, H).head(5)
    seq = torch.tensor(rows[model.sequence_columns()].to_numpy(np.float32).reshape(5, 13, -1))
    num = torch.from_numpy(model._numeric(rows))
    cat = torch.from_numpy(model._categorical(rows))
    with torch.no_grad():
        zraw = module(seq, num, cat, torch.full((5,), H))[0].numpy().astype(float)
    np.testing.assert_allclose(model.level_.factor_ * ziln_mean(zraw), p["pred_spend"].to_numpy()[:5], rtol=1e-5)


def test_inputs_predict_in_chunks(history, fitted):
    model, p = fitted
    inputs = model.inputs(history, CUTOFF, H)
    assert model.sequence_columns()[-len(model.channels_):] == [f"seq_01_{c}" for c in model.channels_]
    # the sequences are the store's: a customer's last-week spend column sums to the spend of that week
    last_week = history.transactions[
        (history.transactions["timestamp"] >= pd.Timestamp("1997-12-25", tz="UTC"))
        & (history.transactions["timestamp"] < pd.Timestamp(CUTOFF, tz="UTC"))
    ].groupby("customer_id")["amount"].sum()
    got = inputs.set_index("customer_id")["seq_01_spend"]
    np.testing.assert_allclose(got.loc[last_week.index].to_numpy(), last_week.to_numpy(), rtol=1e-5)
    assert got.drop(last_week.index).eq(0).all()
    chunks = [model.predict_inputs(inputs.iloc[lo : lo + 700], CUTOFF, H) for lo in range(0, len(inputs), 700)]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), p)
    with pytest.raises(SchemaMismatchError, match="sequence column"):
        model.predict_inputs(inputs.drop(columns="seq_01_spend"), CUTOFF, H)
    with pytest.raises(SchemaMismatchError, match="missing: occasions"):
        model.predict_inputs(inputs.drop(columns="occasions"), CUTOFF, H)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="encoder"):
        DeepForecaster(encoder="rnn")
    with pytest.raises(ValueError, match="period"):
        DeepForecaster(period="D")
    with pytest.raises(ValueError, match="warm_refit"):
        DeepForecaster(warm_refit=0.0)
