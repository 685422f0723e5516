"""The deep forecaster: fit (time-shifted windows, early stopping, calibration), predict, export hooks."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ltvcast.data.datasets import History
from ltvcast.errors import CutoffError, DataError, NotFittedError, SchemaMismatchError
from ltvcast.models.base import Forecaster, OnnxGraph, check_feature_schema, feature_schema
from ltvcast.models.learned.calendar import calendar_wanted, load_calendar, parse_calendar
from ltvcast.models.learned.calibration import LevelCalibration, PlattCalibration
from ltvcast.models.learned.deep.inputs import (
    DEFAULT_LOOKBACK,
    PERIOD_DAYS,
    SequenceFeatureMaker,
    channel_moments,
    period_offsets,
    period_spend,
    signed_log1p,
    vocabulary,
)
from ltvcast.models.learned.deep.network import ENCODERS, INPUT_NAMES, OUTPUT_NAMES, DeepNet
from ltvcast.models.learned.deep.training import Tensors, head_losses, leading_zeros, torch_state
from ltvcast.models.learned.examples import (
    ExampleSet,
    calibration_windows,
    history_at,
    scored_window,
    training_examples,
    window_notes,
)
from ltvcast.models.learned.gbm import QUANTILES
from ltvcast.models.learned.ziln import ziln_init_score, ziln_mean, ziln_quantile
from ltvcast.schema.predictions import predictions_frame
from ltvcast.timeutil import to_day

_PREDICT_ROWS = 8192


class DeepForecaster(Forecaster):
    """Sequence network with ZILN, trajectory, Poisson, churn and next-purchase heads.

    Args:
        name: model name in the predictions frame (``deep``, ``deep-lstm``,
            ``deep-transformer`` in the catalog).
        encoder: ``"gru"``, ``"lstm"`` or ``"transformer"``.
        hidden_size: width of the encoder, MLP and trunk.
        n_layers: encoder layers.
        dropout: dropout rate (MLP, trunk, multi-layer encoders).
        learning_rate, weight_decay: AdamW settings.
        batch_size: rows per gradient step.
        max_epochs: epochs at most (early stopping on validation).
        patience: epochs without a lower validation loss before stopping
            (the loss is that of the weight average, which is smooth from
            epoch to epoch: on CDNOW the best epoch of patience 5 was also
            that of patience 2, for 3 fewer epochs).
        seed: seed of the initial weights, dropout and shuffling.
        n_windows, stride_days, recent_windows, min_label_days,
        min_history_days: the training windows (as ``gbm``).
        period: ``"W"`` or ``"M"``: sequence and trajectory period.
        lookback: sequence length in periods (default
            :data:`DEFAULT_LOOKBACK`: 52 weeks or 12 months).
        n_threads: torch threads during fit and predict.
        refit: final network trained on every window (True) or the
            best-validation weights kept (False).
        bucket_batches: form each epoch's batches from pools of 8 batches
            of rows sorted by their count of leading empty periods (the
            batches then run in random order), and run the periods that are
            empty in every row of a batch once (a recurrent encoder of one
            layer, or without dropout; see ``_RNNEncoder``): the
            lookback of a training window often reaches back before the
            shop's first sale (on CDNOW, 46 of the earliest window's 52 weeks).
        warm_refit: with ``refit``, the final network starts from the
            validation network's best weights and trains
            ``ceil(warm_refit × best epoch)`` epochs on every window
            (``None``, the default: a fresh network for the best epoch
            count; 0.5 measured a worse total on CDNOW, docs/speed.md).
        default_epochs: epochs when no validation window fits.
        epoch_rows: rows per epoch at most (a fresh draw without
            replacement each epoch; ``None`` = every training row), so that
            early stopping looks at the validation loss often enough on
            large shops and the training time grows with the epochs, not
            with the shop.
        ema_decay: decay per step of the moving average of the weights
            that is evaluated and kept (0 = the last step's weights).
        max_categories: vocabulary size at most per text feature.
        calibrate_level, calibrate_churn: as ``gbm``.
        seasonal_years, reconcile: as ``gbm``: same-season windows (the
            level and Platt calibrations are fitted on them) and the
            top-down reconciliation of the spend level
            (:func:`ltvcast.models.level.reconcile`).
        calendar_inputs, calendar: as ``gbm``: the calendar of each label
            window as numeric inputs (``"auto"``: when the history spans
            ``364 + 2H`` days) and the declared shop events.

    Attributes (after ``fit``):
        cutoff_, horizon_days_: what the model was fitted for.
        examples_: the :class:`~ltvcast.models.learned.examples.ExampleSet`
            (``None`` after a pickle round trip: the training data stays out).
        feature_schema_: the inputs (``numeric_names_``, every text
            feature, ``label_days``) -> dtype, checked by ``predict``.
        numeric_names_, categorical_names_, channels_: the inputs, in order.
        vocabularies_: text feature -> list of values (index i + 1).
        offsets_: (K,) start day of each trajectory period.
        config_: the network's configuration (:class:`DeepNet`).
        epochs_: epochs of the final network; history_: per-epoch losses
            of the validation run (``epoch``, ``train_loss``, ``val_loss``).
        validation_: validation-window frame (labels and the validation
            network's predictions) or ``None``.
        level_, churn_calibration_: the calibrations.
        notes_: what was done.

    Raises (constructor):
        ValueError: unknown encoder or period, or a setting out of range.
    """

    name = "deep"

    # Parameters added after models were first registered: an unpickled older model has none of them
    # and keeps the behaviour it was trained with (no same-season window, no reconciliation, no calendar
    # inputs, text features dropped).
    seasonal_years = 0
    reconcile = "off"
    calendar_inputs = "off"
    calendar = None
    warm_refit = None
    bucket_batches = False

    def __init__(
        self,
        name: str = "deep",
        *,
        encoder: str = "gru",
        hidden_size: int = 32,
        n_layers: int = 1,
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 512,
        max_epochs: int = 40,
        patience: int = 2,
        seed: int = 0,
        n_windows: int = 6,
        stride_days: int = 28,
        recent_windows: bool = True,
        min_label_days: int = 28,
        min_history_days: int = 28,
        period: str = "W",
        lookback: int | None = None,
        n_threads: int = 2,
        refit: bool = True,
        warm_refit: float | None = None,
        bucket_batches: bool = True,
        default_epochs: int = 10,
        epoch_rows: int | None = 100_000,
        ema_decay: float = 0.995,
        max_categories: int = 100,
        calibrate_level: bool = True,
        calibrate_churn: bool = True,
        seasonal_years: int = 1,
        reconcile: str = "auto",
        calendar_inputs: str = "auto",
        calendar=None,
    ) -> None:
        super().__init__()
        if calendar_inputs not in ("auto", "on", "off"):
            raise ValueError(f"calendar_inputs must be 'auto', 'on' or 'off', got {calendar_inputs!r}")
        if reconcile not in ("auto", "off"):
            raise ValueError(f"reconcile must be 'auto' or 'off', got {reconcile!r}")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        if period not in PERIOD_DAYS:
            raise ValueError(f"period must be one of {tuple(PERIOD_DAYS)}, got {period!r}")
        if min(hidden_size, n_layers, batch_size, max_epochs, patience, default_epochs, n_threads) < 1:
            raise ValueError("hidden_size, n_layers, batch_size, max_epochs, patience, default_epochs, n_threads must be >= 1")
        if warm_refit is not None and not 0.0 < warm_refit <= 1.0:
            raise ValueError(f"warm_refit must lie in (0, 1] or be None, got {warm_refit}")
        if lookback is not None and lookback < 1:
            raise ValueError(f"lookback must be a positive number of periods, got {lookback}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.name = name
        self.encoder = encoder
        self.hidden_size = hidden_size
        self.n_layers = n_layers
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.seed = seed
        self.n_windows = n_windows
        self.stride_days = stride_days
        self.recent_windows = recent_windows
        self.min_label_days = min_label_days
        self.min_history_days = min_history_days
        self.period = period
        self.lookback = lookback
        self.n_threads = n_threads
        self.refit = refit
        self.warm_refit = warm_refit
        self.bucket_batches = bucket_batches
        self.default_epochs = default_epochs
        self.epoch_rows = epoch_rows
        self.ema_decay = ema_decay
        self.max_categories = max_categories
        self.calibrate_level = calibrate_level
        self.calibrate_churn = calibrate_churn
        self.seasonal_years = seasonal_years
        self.reconcile = reconcile
        self.calendar_inputs = calendar_inputs
        self.calendar = calendar

    # ------------------------------------------------------------------ inputs
    def _maker(self, data: History) -> SequenceFeatureMaker:
        lookback = self.lookback or DEFAULT_LOOKBACK[self.period]
        use = bool(getattr(self, "calendar_used_", False))
        events = None
        if use and self.calendar is not None:
            events = (load_calendar(self.calendar) if isinstance(self.calendar, (str, Path))
                      else parse_calendar(list(self.calendar)))
        return SequenceFeatureMaker(data.store, data.timezone, data.revenue_basis, self.period, lookback,
                                    calendar=use, events=events)

    def _numeric(self, frame: pd.DataFrame) -> np.ndarray:
        x = frame[self.numeric_names_].to_numpy(dtype=np.float64, copy=True)
        x[~np.isfinite(x)] = np.nan
        return x.astype(np.float32)

    def _categorical(self, frame: pd.DataFrame) -> np.ndarray:
        if not self.categorical_names_:  # one constant slot keeps the input shape (n, >= 1)
            return np.zeros((len(frame), 1), dtype=np.int64)
        codes = [
            pd.Categorical(frame[name].astype("string"), categories=self.vocabularies_[name]).codes.astype(np.int64) + 1
            for name in self.categorical_names_
        ]  # code -1 (missing or not in the vocabulary) becomes 0
        return np.column_stack(codes)

    def _fit_inputs(self, ex: ExampleSet, maker: SequenceFeatureMaker, seq: np.ndarray, spend: np.ndarray) -> None:
        """Input statistics and vocabularies from the training rows (every window; features only)."""
        frame = ex.frame
        self.numeric_names_ = list(maker.numeric)
        self.vocabularies_ = {}
        for name in maker.categorical:
            vocab = vocabulary(frame[name].astype("string"), self.max_categories)
            if vocab:
                self.vocabularies_[name] = vocab
        self.categorical_names_ = list(self.vocabularies_)
        self.channels_ = tuple(maker.channels)
        num = signed_log1p(self._numeric(frame).astype(np.float64))
        with warnings.catch_warnings():  # an all-missing column has no mean: it stays 0
            warnings.simplefilter("ignore", RuntimeWarning)
            num_mean = np.nan_to_num(np.nanmean(num, axis=0))
            num_std = np.nan_to_num(np.nanstd(num, axis=0))
        missing = np.flatnonzero(np.isnan(num).any(axis=0))
        seq_mean, seq_std = channel_moments(seq)
        positive = np.log(spend[spend > 0])
        mu_bounds = (
            (float(positive.min()) - math.log(10.0), float(positive.max()) + math.log(10.0))
            if positive.size else (-5.0, 10.0)
        )
        self.config_ = {
            "encoder": self.encoder,
            "hidden_size": self.hidden_size,
            "n_layers": self.n_layers,
            "dropout": self.dropout,
            "lookback": int(seq.shape[1]),
            "n_channels": int(seq.shape[2]),
            "n_numeric": len(self.numeric_names_),
            "missing": missing.astype(np.int64),
            "cat_sizes": [len(self.vocabularies_[c]) + 1 for c in self.categorical_names_] or [1],
            "offsets": self.offsets_.astype(np.float32),
            "label_scale": float(self.horizon_days_),
            "seq_mean": seq_mean.astype(np.float32),
            "seq_std": np.where(seq_std > 1e-6, seq_std, 1.0).astype(np.float32),
            "num_mean": num_mean.astype(np.float32),
            "num_std": np.where(num_std > 1e-6, num_std, 1.0).astype(np.float32),
            "mu_bounds": mu_bounds,
        }

    def _tensors(self, frame: pd.DataFrame, seq: np.ndarray, shares: np.ndarray) -> Tensors:
        def t(a, dtype=torch.float32):
            a = np.asarray(a)
            return torch.from_numpy(a if a.flags.writeable else a.copy()).to(dtype)

        spend = np.maximum(frame["actual_spend"].to_numpy(float), 0.0)
        txn = frame["actual_transactions"].to_numpy(float)
        return Tensors(
            seq=t(seq),
            num=t(self._numeric(frame)),
            cat=t(self._categorical(frame), torch.int64),
            label_days=t(frame["label_days"].to_numpy(float)),
            spend=t(spend),
            transactions=t(txn),
            churn=t((txn == 0).astype(float)),
            next_days=t(frame["next_purchase_days"].to_numpy(float)),
            shares=t(shares),
            lead=t(leading_zeros(seq), torch.int64),
        )

    # ------------------------------------------------------------------ training
    def _new_net(self, data: Tensors, rows: torch.Tensor) -> DeepNet:
        """A fresh network whose heads start at the constant fits of the labels of ``data[rows]``."""
        net = DeepNet(self.config_)
        spend, txn, churn = data.spend[rows], data.transactions[rows], data.churn[rows]
        next_days, label_days = data.next_days[rows], data.label_days[rows]
        with torch.no_grad():
            net.ziln.bias.copy_(torch.as_tensor(ziln_init_score(spend.numpy()), dtype=torch.float32))
            net.transactions.bias.fill_(math.log(max(float(txn.mean()), 1e-6)))
            share = float(np.clip(float(churn.mean()), 1e-4, 1 - 1e-4))
            net.churn.bias.fill_(math.log(share / (1 - share)))
            buyers = ~torch.isnan(next_days)
            frac = 0.5
            if bool(buyers.any()):
                frac = float((next_days[buyers] / (label_days[buyers] - 1).clamp(min=1)).mean())
            frac = float(np.clip(frac, 0.02, 0.98))
            net.next_purchase.bias.fill_(math.log(frac / (1 - frac)))
        return net

    def _skip(self, part: Tensors) -> int:
        """Leading periods of ``part`` run once in eval mode (0 for a Transformer: it has no recurrence)."""
        return 0 if self.encoder == "transformer" else part.common_lead()

    def _eval_parts(self, data: Tensors, rows: np.ndarray) -> tuple[torch.Tensor, Tensors, list[tuple[int, int, int]]]:
        """``data[rows]`` sorted by the rows' leading empty periods, for passes without gradients.

        In eval mode (no dropout) the leading periods shared by a chunk of
        rows can be run once for any number of recurrent layers
        (:class:`DeepNet`'s ``skip``): the same outputs up to float rounding
        for a fraction of the recurrence. Gathered once, reused by every
        epoch's validation loss.

        Returns:
            ``(order, sorted_rows, chunks)``: (m,) positions in ``rows`` of
            the sorted rows; those rows; ``(lo, hi, skip)`` per chunk of at
            most ``_PREDICT_ROWS`` sorted rows.
        """
        idx = torch.from_numpy(np.asarray(rows))
        order = torch.argsort(data.lead[idx], stable=True)
        sorted_rows = data.take(idx[order])
        chunks = []
        for lo in range(0, len(order), _PREDICT_ROWS):
            hi = min(lo + _PREDICT_ROWS, len(order))
            chunks.append((lo, hi, self._skip(sorted_rows.rows(lo, hi))))
        return order, sorted_rows, chunks

    def _forward_sorted(self, net: DeepNet, parts) -> tuple[torch.Tensor, ...]:
        """``net``'s outputs (eval mode, no gradients) on the sorted rows of :meth:`_eval_parts`."""
        _, rows, chunks = parts
        net.eval()
        with torch.no_grad():
            outs = [net(*rows.rows(lo, hi).inputs(), skip=skip) for lo, hi, skip in chunks]
        return tuple(torch.cat(o) for o in zip(*outs))

    def _evaluate(self, net: DeepNet, parts) -> float:
        """Total loss of ``net`` (eval mode) on the rows of :meth:`_eval_parts` (each head's mean over all of them)."""
        out = self._forward_sorted(net, parts)
        with torch.no_grad():
            return float(sum(head_losses(out, parts[1]).values()))

    def _raw(self, net: DeepNet, parts) -> dict[str, np.ndarray]:
        """Raw head outputs (float64, in the order of the rows given to :meth:`_eval_parts`): fit-time calibration.

        Predictions run :meth:`_run` on whole sequences instead, so that they
        do not depend on which rows are predicted together.
        """
        order = parts[0].numpy()
        keys = ("ziln", "log_shares", "log_tx", "churn_logit", "next_days")
        out = {}
        for k, o in zip(keys, self._forward_sorted(net, parts)):
            out[k] = np.empty(o.shape, dtype=np.float64)
            out[k][order] = o.numpy()
        return out

    def _train(
        self, data: Tensors, train: np.ndarray, val: np.ndarray | None, epochs: int, start: DeepNet | None = None
    ) -> tuple[DeepNet, int, list[dict]]:
        """Train a network on ``data[train]`` for ``epochs`` at most; early stopping on ``data[val]``.

        The network starts from ``start``'s weights (a warm start) or, with
        ``None``, fresh (:meth:`_new_net`). An epoch is one pass over
        ``min(len(train), epoch_rows)`` rows drawn without replacement (all of
        them, reshuffled, when there are fewer); the epoch's rows are gathered
        once and its batches are views of them. The network evaluated and
        returned is the exponential moving average of the weights over the
        steps (Polyak averaging, decay ``min(ema_decay, (1 + t) / (10 + t))``
        at step t), which is much less noisy from epoch to epoch than the last
        step's weights.

        Returns:
            ``(net, best_epoch, history)``; with ``val`` the net holds the
            (averaged) weights of the best validation epoch.
        """
        train_idx = torch.from_numpy(train)
        val_parts = None if val is None else self._eval_parts(data, val)
        net = self._new_net(data, train_idx) if start is None else copy.deepcopy(start)
        avg = copy.deepcopy(net)
        avg_params, net_params = list(avg.parameters()), list(net.parameters())
        step = 0
        # fused: one kernel per parameter instead of a dozen (the loop of small ops cost 20 ms a step)
        opt = torch.optim.AdamW(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay, fused=True)
        gen = torch.Generator().manual_seed(self.seed)
        per_epoch = min(len(train_idx), self.epoch_rows or len(train_idx))
        starts = list(range(0, per_epoch, self.batch_size))
        skipping = self.bucket_batches and self.encoder != "transformer" and (self.n_layers == 1 or self.dropout == 0)
        history, best, best_epoch, best_state, waited = [], math.inf, epochs, None, 0
        for epoch in range(1, epochs + 1):
            net.train()
            running = 0.0
            drawn_idx = train_idx[torch.randperm(len(train_idx), generator=gen)[:per_epoch]]
            order = range(len(starts))
            if skipping:
                pool = 8 * self.batch_size
                lead = data.lead[drawn_idx]
                drawn_idx = torch.cat([
                    drawn_idx[lo:lo + pool][torch.argsort(lead[lo:lo + pool], stable=True)]
                    for lo in range(0, per_epoch, pool)
                ])
                order = torch.randperm(len(starts), generator=gen).tolist()
            drawn = data.take(drawn_idx)
            for b in order:
                batch = drawn.rows(starts[b], starts[b] + self.batch_size)
                skip = batch.common_lead() if skipping else 0
                loss = sum(head_losses(net(*batch.inputs(), skip=skip), batch).values())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(net_params, 1.0)
                opt.step()
                step += 1
                weight = 1.0 - min(self.ema_decay, (1.0 + step) / (10.0 + step))
                with torch.no_grad():
                    torch._foreach_lerp_(avg_params, net_params, weight)
                running += float(loss.detach()) * len(batch)
            del drawn
            row = {"epoch": epoch, "train_loss": running / per_epoch, "val_loss": math.nan}
            if val_parts is not None:
                row["val_loss"] = self._evaluate(avg, val_parts)
                if row["val_loss"] < best - 1e-6:
                    best, best_epoch, waited = row["val_loss"], epoch, 0
                    best_state = copy.deepcopy(avg.state_dict())
                else:
                    waited += 1
            history.append(row)
            if val_parts is not None and waited >= self.patience:
                break
        if best_state is not None:
            avg.load_state_dict(best_state)
        avg.eval()
        return avg, best_epoch, history

    def _run(self, net: DeepNet, seq, num, cat, label_days) -> dict[str, np.ndarray]:
        """Raw head outputs for input arrays, in chunks (float64 numpy)."""
        net.eval()
        arrays = (seq, num, cat, label_days)
        parts: list[tuple] = []
        with torch.no_grad():
            for b in range(0, len(num), _PREDICT_ROWS):
                sl = slice(b, b + _PREDICT_ROWS)
                out = net(*(torch.from_numpy(np.require(a[sl], requirements=["C", "W"])) for a in arrays))
                parts.append(tuple(o.numpy().astype(np.float64) for o in out))
        keys = ("ziln", "log_shares", "log_tx", "churn_logit", "next_days")
        return {k: np.concatenate([p[i] for p in parts]) for i, k in enumerate(keys)}

    # ------------------------------------------------------------------ fit
    def fit(self, data: History, cutoff, horizon_days: float) -> DeepForecaster:
        """Train on time-shifted windows before ``cutoff`` (see the module docstring).

        Args:
            data: the shop's history (rows at or after ``cutoff`` are never
                read).
            cutoff: prediction cutoff ``C``.
            horizon_days: horizon ``H`` in days (rounded to whole days).

        Returns:
            self.

        Raises:
            CutoffError: no full training window fits before ``cutoff``.
            DataError: no transaction before ``cutoff``, or nobody bought in
                any training window.
        """
        self.notes_ = []
        first_start, first_h = scored_window(cutoff, horizon_days)
        first_day = history_at(data, first_start, self.name)["timestamp"].min()
        self.calendar_used_, calendar_note = calendar_wanted(self.calendar_inputs, first_day, first_start, first_h)
        self.notes_.append(f"{self.name}: {calendar_note}")
        maker = self._maker(data)
        start, h, tx, ex = training_examples(self, data, cutoff, horizon_days, maker)
        self.cutoff_, self.horizon_days_ = start, h
        self.offsets_ = period_offsets(h, self.period)
        frame = ex.frame
        seqs, spends = [], []
        for win in ex.windows:
            rows = frame[frame["window"] == win.index]
            c = to_day(win.cutoff)
            seqs.append(maker.sequences.pop(c))
            spends.append(period_spend(
                tx, rows["customer_id"], c, win.label_days, self.offsets_,
                timezone=data.timezone, revenue_basis=data.revenue_basis,
            ))
            if len(seqs[-1]) != len(rows):  # pragma: no cover - the featurizer's order is the frame's
                raise RuntimeError("sequence rows do not match the example rows")
        order = np.concatenate([np.flatnonzero(frame["window"].to_numpy() == w.index) for w in ex.windows])
        if not np.array_equal(order, np.arange(len(frame))):  # pragma: no cover
            raise RuntimeError("example rows are not grouped by window in plan order")
        seq = np.concatenate(seqs)
        del seqs
        per_period = np.maximum(np.concatenate(spends), 0.0)
        totals = per_period.sum(axis=1, keepdims=True)
        shares = np.divide(per_period, totals, out=np.zeros_like(per_period), where=totals > 0)
        self.examples_ = ex
        self.notes_ += window_notes(self.name, ex)
        spend_all = frame["actual_spend"].to_numpy(float)
        if not (frame["actual_transactions"].to_numpy(float) > 0).any():
            raise DataError(f"{self.name}: nobody bought in any training window; nothing to learn from")
        self._fit_inputs(ex, maker, seq, spend_all)
        self.feature_schema_ = feature_schema(frame[maker.numeric + maker.categorical + ["label_days"]])
        window = frame["window"].to_numpy()
        cal_idx, cal_w, cal_note = calibration_windows(ex.windows)
        seasonal = np.isin(window, [w.index for w in ex.windows if w.is_seasonal])
        is_val, is_old = window == 0, (window >= 1) & ~seasonal

        data_t = self._tensors(frame, seq, shares)
        everything = np.arange(len(frame))
        val = np.flatnonzero(is_val) if is_old.any() else None
        with torch_state(self.n_threads, self.seed):
            if val is None:
                self.notes_.append(
                    f"{self.name}: only one full training window fits before {start.date()}: no validation; "
                    f"{self.default_epochs} epochs, no calibration"
                )
                net, self.epochs_, self.history_ = self._train(data_t, everything, None, self.default_epochs)
                val_net = None
            elif self.refit:
                val_net, self.epochs_, self.history_ = self._train(data_t, np.flatnonzero(is_old), val, self.max_epochs)
                if self.warm_refit is None:
                    net, _, _ = self._train(data_t, everything, None, self.epochs_)
                else:
                    self.refit_epochs_ = math.ceil(self.warm_refit * self.epochs_)
                    net, _, _ = self._train(data_t, everything, None, self.refit_epochs_, start=val_net)
            else:
                val_net, self.epochs_, self.history_ = self._train(data_t, np.flatnonzero(~is_val), val, self.max_epochs)
                net = val_net
            self._net = net
            self._calibrate(val_net, data_t, val, frame[is_val])
            if val_net is not None and seasonal.any():
                rows = np.flatnonzero(np.isin(window, cal_idx))
                out = self._raw(val_net, self._eval_parts(data_t, rows))
                weight = pd.Series(window[rows]).map(dict(zip(cal_idx, cal_w))).to_numpy(float)
                self.level_.fit(frame["actual_spend"].to_numpy(float)[rows], ziln_mean(out["ziln"]), sample_weight=weight)
                self.churn_calibration_.fit(
                    data_t.churn[rows].numpy(), 1.0 / (1.0 + np.exp(-out["churn_logit"])), sample_weight=weight
                )
                self.notes_.append(f"{self.name}: {cal_note}; level factor {self.level_.factor_:.3f}")
        if self.reconcile == "auto" and self.validation_ is not None:
            from ltvcast.models.level import reconcile

            bottom_up = float(self.predict_inputs(self.inputs(data, start, h), start, h)["pred_spend"].sum())
            same = bool(seasonal.any()) and self.calibrate_level
            val_frame = self.validation_
            rec = reconcile(
                tx, data.timezone, start, h, bottom_up,
                val_cutoff=to_day(ex.windows[0].cutoff) if same else None,
                val_bottom_up=float(val_frame["pred_spend"].sum()) * self.level_.factor_,
                val_actual=float(np.maximum(val_frame["actual_spend"].to_numpy(float), 0).sum()),
            )
            self.level_.factor_ *= rec.factor
            self.level_forecast_, self.bottom_up_total_, self.reconciled_ = rec.forecast, bottom_up, rec.reconciled
            self.notes_.extend(f"{self.name}: {n}" for n in rec.notes)
        self.notes_.append(
            f"{self.name}: {self.encoder} encoder, {len(self.numeric_names_)} numeric + "
            f"{len(self.categorical_names_)} text features, {seq.shape[1]} × {self.period} sequences of "
            f"{seq.shape[2]} channels; "
            + (
                f"best validation epoch {self.epochs_} of {len(self.history_)}; "
                + (("final network retrained on every window" if self.warm_refit is None else
                    f"final network: the validation network trained {self.refit_epochs_} more epoch(s) on every window")
                   if self.refit else "best-validation weights kept")
                if val is not None else f"{self.epochs_} epochs"
            )
        )
        return self

    def _calibrate(self, val_net: DeepNet | None, data: Tensors, val: np.ndarray | None, val_frame: pd.DataFrame) -> None:
        self.level_ = LevelCalibration()
        self.churn_calibration_ = PlattCalibration()
        self.validation_ = None
        if val_net is None or val is None:
            return
        out = self._raw(val_net, self._eval_parts(data, val))
        spend = val_frame["actual_spend"].to_numpy(float)
        mean = ziln_mean(out["ziln"])
        p_churn = 1.0 / (1.0 + np.exp(-out["churn_logit"]))
        self.level_.fit(spend, mean)
        self.churn_calibration_.fit(data.churn[val].numpy(), p_churn)
        validation = pd.DataFrame({
            "customer_id": val_frame["customer_id"].to_numpy(),
            "actual_transactions": val_frame["actual_transactions"].to_numpy(float),
            "actual_spend": spend,
            "next_purchase_days": val_frame["next_purchase_days"].to_numpy(float),
            "pred_spend": mean,
            "pred_transactions": np.exp(out["log_tx"]),
            "p_churn": p_churn,
            "pred_next_purchase_days": out["next_days"],
        })
        for q in QUANTILES:
            validation[f"pred_spend_p{int(q * 100)}"] = ziln_quantile(out["ziln"], q)
        self.validation_ = validation
        self.notes_.append(
            f"{self.name}: validation window {to_day(self.examples_.windows[0].cutoff).date()}: predicted/actual "
            f"spend total {mean.sum() / max(np.maximum(spend, 0).sum(), 1e-9):.3f}"
            + (f", level factor {self.level_.factor_:.3f} applied" if self.calibrate_level else " (not recalibrated)")
            + (
                f"; p_churn Platt a={self.churn_calibration_.a_:.3f}, b={self.churn_calibration_.b_:.3f} applied"
                if self.calibrate_churn else ""
            )
        )

    # ------------------------------------------------------------------ predict
    def _window(self, cutoff, horizon_days: float) -> tuple[pd.Timestamp, float]:
        if not hasattr(self, "_net"):
            raise NotFittedError(f"{self.name}: call fit() before predict()")
        start, h = scored_window(cutoff, horizon_days)
        if h > self.horizon_days_:
            raise CutoffError(
                f"{self.name} was fitted for a {self.horizon_days_:g}-day horizon and cannot predict {h:g} days "
                "(its trajectory has no periods beyond); fit it for the longer horizon"
            )
        return start, h

    def sequence_columns(self) -> list[str]:
        """Names of the flattened sequence columns of :meth:`inputs`, in array order.

        ``seq_{k}_{channel}`` is the channel's value in the ``k``-th period
        before the cutoff (``k = 1``: the period ending at the cutoff), ``k``
        zero-padded; the array order is oldest period first, channels
        within a period.
        """
        lookback, width = self.config_["lookback"], len(str(self.config_["lookback"]))
        return [f"seq_{lookback - t:0{width}d}_{c}" for t in range(lookback) for c in self.channels_]

    def inputs(self, data: History, cutoff, horizon_days: float) -> pd.DataFrame:
        """This model's inputs at ``cutoff``: one row per customer with a purchase before it.

        Returns:
            ``customer_id``, the customer-level features
            (:class:`SequenceFeatureMaker`) and the sequences flattened into
            float32 columns (:meth:`sequence_columns`), sorted by
            ``customer_id``. A row depends on that customer's data only, so
            the rows can be predicted in chunks (:meth:`predict_inputs`).

        Raises:
            NotFittedError: ``fit`` was not called.
            CutoffError: ``horizon_days`` longer than the fitted horizon.
            DataError: no customer before ``cutoff``.
            SchemaMismatchError: the features differ from those of ``fit``.
        """
        start, h = self._window(cutoff, horizon_days)
        tx = history_at(data, start, self.name)
        maker = self._maker(data)
        feats = self.known_features(maker(tx, start, h))  # columns added after this model was fitted
        self.check_features(feats.drop(columns="customer_id").assign(label_days=h))
        seq = maker.sequences.pop(to_day(start))
        flat = pd.DataFrame(seq.reshape(len(seq), -1), columns=self.sequence_columns(), index=feats.index)
        return pd.concat([feats, flat], axis=1).copy()  # the copy consolidates the column blocks

    def network_inputs(self, inputs: pd.DataFrame, cutoff, horizon_days: float) -> tuple[np.ndarray, ...]:
        """The arrays :meth:`predict_inputs` feeds the network (:meth:`export_module`) for :meth:`inputs`' rows.

        Returns:
            ``(sequence, numeric, categorical, label_days)``: float32 (n,
            lookback, channels), float32 (n, n_numeric) (NaN = missing),
            int64 (n, n_categorical or 1), float32 (n,) (= the horizon H).

        Raises:
            as :meth:`predict_inputs`.
        """
        return self._arrays(inputs, cutoff, horizon_days)[2]

    def _arrays(self, inputs: pd.DataFrame, cutoff, horizon_days: float) -> tuple[pd.Timestamp, float, tuple]:
        start, h = self._window(cutoff, horizon_days)
        # customer_id and the sequence columns are inputs beyond the schema
        check_feature_schema(
            self.feature_schema_, {**feature_schema(inputs), "label_days": "float64"}, what=self.name, allow_extra=True
        )
        cols = self.sequence_columns()
        absent = [c for c in cols if c not in inputs.columns]
        if absent:
            raise SchemaMismatchError(
                f"{self.name}: the inputs lack {len(absent)} sequence column(s), e.g. {', '.join(absent[:3])}"
            )
        seq = inputs[cols].to_numpy(dtype=np.float32).reshape(len(inputs), self.config_["lookback"], -1)
        return start, h, (seq, self._numeric(inputs), self._categorical(inputs),
                          np.full(len(inputs), h, dtype=np.float32))

    def _columns(self, inputs: pd.DataFrame, cutoff, horizon_days: float) -> tuple[pd.Timestamp, float, dict]:
        """Cutoff, horizon and the calibrated prediction columns plus ``trajectory`` (n, K)."""
        start, h, arrays = self._arrays(inputs, cutoff, horizon_days)
        if getattr(self, "_onnx", None) is not None:  # use_onnx(): the exported network in onnxruntime
            out = self._onnx(*arrays)
        else:
            with torch_state(self.n_threads, self.seed):
                out = self._run(self._net, *arrays)
        factor = self.level_.factor_ if self.calibrate_level else 1.0
        p_churn = 1.0 / (1.0 + np.exp(-out["churn_logit"]))
        if self.calibrate_churn:
            p_churn = self.churn_calibration_.transform(p_churn)
        spend = factor * ziln_mean(out["ziln"])
        result = {
            "pred_transactions": np.exp(out["log_tx"]),
            "pred_spend": spend,
            "p_churn": p_churn,
            "pred_next_purchase_days": out["next_days"],
        }
        for q in QUANTILES:
            result[f"pred_spend_p{int(q * 100)}"] = factor * ziln_quantile(out["ziln"], q)
        k = int(np.sum(self.offsets_ < h))
        result["trajectory"] = np.exp(out["log_shares"][:, :k]) * spend[:, None]
        return start, h, result

    def predict_inputs(self, inputs: pd.DataFrame, cutoff, horizon_days: float) -> pd.DataFrame:
        """Canonical predictions for ``[cutoff, cutoff + horizon_days)`` from :meth:`inputs`' rows.

        ``pred_spend`` (currency, >= 0): the ZILN mean; ``pred_spend_p10/p50/p90``:
        ZILN quantiles (both × the level factor with ``calibrate_level``);
        ``pred_transactions``: expected purchase occasions; ``p_churn``:
        P(no occasion) (Platt-recalibrated with ``calibrate_churn``);
        ``p_alive``: null; ``pred_next_purchase_days``: ``E[τ | τ < H]`` in
        days from the cutoff, in ``[0, H − 1]``. A row's prediction depends
        on that row only.

        Raises:
            NotFittedError: ``fit`` was not called.
            CutoffError: ``horizon_days`` longer than the fitted horizon.
            SchemaMismatchError: a feature or sequence column is missing or retyped.
        """
        start, h, cols = self._columns(inputs, cutoff, horizon_days)
        cols.pop("trajectory")
        return predictions_frame(inputs["customer_id"], self.name, start, h, **cols)

    def predict(self, data: History, cutoff, horizon_days: float) -> pd.DataFrame:
        """Canonical predictions for every customer with a purchase before ``cutoff``.

        ``predict_inputs(inputs(data, cutoff, horizon_days), ...)``; see both.
        """
        return self.predict_inputs(self.inputs(data, cutoff, horizon_days), cutoff, horizon_days)

    def predict_trajectory(self, data: History, cutoff, horizon_days: float) -> pd.DataFrame:
        """Expected spend per period of the horizon, one row per customer and period.

        Periods are those of :func:`period_offsets` (7-day weeks or
        30.4375-day months from the cutoff; the last one may be shorter);
        each customer's periods sum to ``pred_spend`` of :meth:`predict`.

        Returns:
            Long frame of n × K rows sorted by ``customer_id`` then
            ``period``: ``customer_id`` (string), ``period`` (1..K),
            ``period_start`` (UTC timestamp, first day), ``period_days``
            (length in days), ``pred_spend`` (currency, >= 0).

        Raises:
            as :meth:`inputs` and :meth:`predict_inputs`.
        """
        inputs = self.inputs(data, cutoff, horizon_days)
        start, h, cols = self._columns(inputs, cutoff, horizon_days)
        traj = cols["trajectory"]
        n, k = traj.shape
        offsets = self.offsets_[:k]
        ends = np.append(offsets[1:], h).astype(float)
        return pd.DataFrame({
            "customer_id": pd.array(np.repeat(inputs["customer_id"].to_numpy(dtype=object), k), dtype="string"),
            "period": np.tile(np.arange(1, k + 1), n),
            "period_start": np.tile(start + pd.to_timedelta(offsets, unit="D"), n),
            "period_days": np.tile(ends - offsets, n),
            "pred_spend": traj.reshape(-1),
        })

    # ------------------------------------------------------------------ export, pickle
    #: Names of :class:`DeepNet`'s inputs and outputs, in order (for an exporter).
    INPUT_NAMES = INPUT_NAMES
    OUTPUT_NAMES = OUTPUT_NAMES

    def export_module(self, n_rows: int = 2) -> tuple[DeepNet, tuple[torch.Tensor, ...]]:
        """The fitted network (eval mode) and a sample input tuple, e.g. for ``torch.onnx.export``.

        The host side of the model, not in the network: building the
        FeatureSet at the cutoff (:class:`SequenceFeatureMaker`), ordering the
        columns as ``numeric_names_`` / ``categorical_names_``, mapping text
        values to ``vocabularies_`` indexes (unknown → 0; one constant 0
        column when there is no text feature), and turning the raw outputs
        into the canonical columns (``ziln_mean``/``ziln_quantile``, the
        level factor ``level_.factor_``, Platt ``churn_calibration_``).

        Args:
            n_rows: rows of the sample input.

        Returns:
            ``(module, (sequence, numeric, categorical, label_days))`` with
            shapes (n, lookback, channels) float32, (n, n_numeric) float32,
            (n, n_categorical or 1) int64, (n,) float32 (= the fitted H).

        Raises:
            NotFittedError: ``fit`` was not called.
        """
        if not hasattr(self, "_net"):
            raise NotFittedError(f"{self.name}: call fit() before export_module()")
        c = self.config_
        sample = (
            torch.zeros(n_rows, c["lookback"], c["n_channels"]),
            torch.zeros(n_rows, c["n_numeric"]),
            torch.zeros(n_rows, len(c["cat_sizes"]), dtype=torch.int64),
            torch.full((n_rows,), float(self.horizon_days_)),
        )
        return self._net.eval(), sample

    def to_onnx(self, label: str, *, atol: float, seed: int = 0) -> OnnxGraph:
        """The network as an ONNX graph checked against torch (:func:`ltvcast.models.learned.deep.onnx.export_checked`)."""
        from ltvcast.models.learned.deep.onnx import export_checked  # torch.onnx and onnxruntime only when asked for

        return export_checked(self, label, atol=atol, seed=seed)

    def use_onnx(self, path) -> None:
        """Run the network through an ONNX export in onnxruntime from now on (``None``: torch again).

        Only the network changes runtime: inputs, calibration and the
        canonical frame are computed as before (the export is checked
        against torch to 1e-4 by :func:`ltvcast.registry.export_onnx`).
        The session is not pickled: a pickled or copied forecaster runs torch.

        Args:
            path: an ``.onnx`` file (or its bytes) exported from this
                forecaster's :meth:`export_module`, or ``None``.

        Raises:
            NotFittedError: ``fit`` was not called.
            LtvcastError: onnxruntime cannot load the file, or its inputs
                do not fit this network (:class:`~ltvcast.models.learned.deep.onnx.OnnxRunner`).
        """
        if path is None:
            self._onnx = None
            return
        if not hasattr(self, "_net"):
            raise NotFittedError(f"{self.name}: call fit() before use_onnx()")
        from ltvcast.models.learned.deep.onnx import OnnxRunner  # onnxruntime only when asked for

        self._onnx = OnnxRunner(path, self.config_, n_threads=self.n_threads)

    @property
    def runtime(self) -> str:
        """What runs the network in ``predict``: ``"onnxruntime"`` (:meth:`use_onnx`) or ``"torch"``."""
        return "torch" if getattr(self, "_onnx", None) is None else "onnxruntime"

    def __getstate__(self) -> dict:
        """Pickle the network as its configuration and weights (numpy); ``examples_`` becomes ``None``."""
        state = self.__dict__.copy()
        state.pop("_onnx", None)  # an onnxruntime session does not pickle; the copy runs torch
        if "examples_" in state:
            state["examples_"] = None
        net = state.pop("_net", None)
        if net is not None:
            state["_net_weights"] = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
        return state

    def __setstate__(self, state: dict) -> None:
        """Rebuild the network from ``config_`` and the pickled weights."""
        weights = state.pop("_net_weights", None)
        self.__dict__.update(state)
        if weights is not None:
            net = DeepNet(self.config_)
            net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
            self._net = net.eval()

