"""The deep model's fit-time shortcuts give the results of the plain computation.

* the validation loss and the calibration's raw outputs, computed on rows
  sorted by their leading empty periods with those periods run once per
  chunk (any number of recurrent layers: eval mode has no dropout), equal
  the plain per-row computation and come back in the rows' order;
* early stopping ends the validation run ``patience`` epochs after the best
  one and keeps that epoch (a scripted loss sequence).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ltvcast.models.learned.deep.forecaster as fmod
from ltvcast.models.learned.deep import DeepForecaster, DeepNet
from ltvcast.models.learned.deep.training import Tensors, head_losses, leading_zeros

LOOKBACK, CHANNELS, K = 12, 3, 4


def _config(encoder: str, n_layers: int) -> dict:
    return dict(
        encoder=encoder, hidden_size=8, n_layers=n_layers, dropout=0.2, lookback=LOOKBACK, n_channels=CHANNELS,
        n_numeric=2, missing=np.array([1], np.int64), cat_sizes=[3], offsets=np.arange(0, 7 * K, 7).astype(np.float32),
        label_scale=28.0, seq_mean=np.full(CHANNELS, 0.3), seq_std=np.full(CHANNELS, 2.0), num_mean=np.zeros(2),
        num_std=np.ones(2), mu_bounds=(-5.0, 10.0),
    )


def _rows(n: int, seed: int = 0) -> Tensors:
    """``n`` example rows whose sequences start after 2 to 11 empty periods (a few rows have none at all)."""
    g = torch.Generator().manual_seed(seed)
    seq = torch.rand(n, LOOKBACK, CHANNELS, generator=g) * 10
    lead = torch.randint(2, LOOKBACK, (n,), generator=g)
    seq[torch.arange(LOOKBACK).unsqueeze(0) < lead.unsqueeze(1)] = 0.0
    seq[:3] = 0.0
    num = torch.rand(n, 2, generator=g)
    num[::4, 1] = float("nan")
    spend = torch.where(torch.rand(n, generator=g) < 0.5, 0.0, torch.rand(n, generator=g) * 50)
    buyers = spend > 0
    shares = torch.rand(n, K, generator=g) * buyers.unsqueeze(1)
    shares = shares / shares.sum(dim=1, keepdim=True).clamp(min=1e-9)
    return Tensors(
        seq=seq, num=num, cat=torch.randint(0, 3, (n, 1), generator=g), label_days=torch.full((n,), 28.0),
        spend=spend, transactions=buyers.float() * 2, churn=(~buyers).float(),
        next_days=torch.where(buyers, torch.rand(n, generator=g) * 27, torch.tensor(float("nan"))),
        shares=shares, lead=torch.from_numpy(leading_zeros(seq.numpy())),
    )


@pytest.mark.parametrize(("encoder", "n_layers"), [("gru", 1), ("gru", 2), ("lstm", 2), ("transformer", 1)])
def test_sorted_chunks_with_skipped_periods_equal_the_plain_pass(monkeypatch, encoder, n_layers):
    monkeypatch.setattr(fmod, "_PREDICT_ROWS", 16)  # several chunks, each with its own shared lead
    torch.manual_seed(0)
    net = DeepNet(_config(encoder, n_layers)).eval()
    model = DeepForecaster(encoder=encoder, n_layers=n_layers)
    data = _rows(70)
    rows = np.arange(1, 70, dtype=np.int64)[::-1].copy()  # not in the data's order; rows 1, 2 have no sale
    parts = model._eval_parts(data, rows)
    order, sorted_rows, chunks = parts
    assert sorted(order.tolist()) == list(range(len(rows))) and len(sorted_rows) == len(rows)
    assert chunks[-1][1] == len(rows) and len(chunks) == 5
    skips = [skip for _, _, skip in chunks]
    if encoder == "transformer":
        assert skips == [0] * len(chunks)
    else:  # sorted by lead (2 to 11 empty periods, 12 in the rows without a sale): every chunk skips some
        assert skips == sorted(skips) and skips[0] == 2 and skips[-1] > skips[0]
    plain = data.take(torch.from_numpy(rows))
    with torch.no_grad():
        expected = net(*plain.inputs())
        loss = float(sum(head_losses(expected, plain).values()))
    assert model._evaluate(net, parts) == pytest.approx(loss, rel=1e-6)
    got = model._raw(net, parts)
    for key, e in zip(("ziln", "log_shares", "log_tx", "churn_logit", "next_days"), expected):
        np.testing.assert_allclose(got[key], e.numpy().astype(np.float64), rtol=1e-5, atol=1e-5, err_msg=key)
    # the plain prediction path (_run, whole sequences) gives the same outputs in the same order
    run = model._run(net, plain.seq.numpy(), plain.num.numpy(), plain.cat.numpy(), plain.label_days.numpy())
    np.testing.assert_allclose(got["ziln"], run["ziln"], rtol=1e-5, atol=1e-5)


def test_early_stopping_keeps_the_best_epoch_and_waits_patience_epochs(monkeypatch):
    losses = iter([3.0, 2.0, 2.5, 2.0, 1.0])  # epoch 4 ties epoch 2: not lower, so it counts as waiting
    monkeypatch.setattr(DeepForecaster, "_evaluate", lambda self, net, parts: next(losses))
    model = DeepForecaster(patience=2, batch_size=32, hidden_size=8, n_threads=1)
    model.config_ = {**_config("gru", 1), "dropout": 0.1}
    data = _rows(64)
    _, best, history = model._train(data, np.arange(48), np.arange(48, 64), 10)
    assert best == 2
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert [row["val_loss"] for row in history] == [3.0, 2.0, 2.5, 2.0]
