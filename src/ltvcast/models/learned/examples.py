"""Time-shifted training examples for learned models.

A prediction at cutoff ``C`` for a horizon of ``H`` days may use nothing at or
after ``C``. A learned model therefore trains on *earlier* cutoffs whose
label windows end by ``C``:

    c_k = C − H − k · stride      (k = 0, 1, …, n_windows − 1; days)

Features are computed strictly before ``c_k``; labels are what the customer
did in ``[c_k, c_k + H)``, which ends at ``C − k·stride <= C``. Window
``k = 0`` (the latest) is the *validation* window: models are selected and
calibrated on it, then refitted on every window.

Example (hand-computed in the tests): ``C = 1998-01-01``, ``H = 181`` days,
stride 28 days gives ``c_0 = 1997-07-04``, ``c_1 = 1997-06-06``,
``c_2 = 1997-05-09``, …

Labels per customer and window (:func:`window_labels`):

* ``actual_transactions``: purchase occasions (distinct UTC days with a
  transaction) in the window;
* ``actual_spend``: sum of ``amount`` in the window (currency; ≤ 0 possible
  under the net revenue basis, when returns outweigh purchases);
* ``next_purchase_days``: days from the window start to the first purchase
  occasion in it (0 = on the cutoff day), ``NaN`` when there is none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ltvcast.errors import CutoffError, DataError
from ltvcast.features import horizon_labels
from ltvcast.timeutil import horizon_window, to_day

__all__ = [
    "ExampleSet",
    "build_examples",
    "history_before",
    "next_purchase_labels",
    "training_cutoffs",
    "window_labels",
]


def training_cutoffs(
    cutoff,
    horizon_days: float,
    *,
    n_windows: int = 8,
    stride_days: int = 28,
    first_day=None,
    min_history_days: int = 28,
) -> list[pd.Timestamp]:
    """The training cutoffs ``c_k = C − H − k·stride``, newest first.

    Args:
        cutoff: the prediction cutoff ``C`` (date).
        horizon_days: horizon ``H`` in days (rounded to whole days, as
            :func:`ltvcast.timeutil.horizon_window`).
        n_windows: how many windows at most (``k = 0 .. n_windows − 1``).
        stride_days: days between consecutive training cutoffs (> 0).
        first_day: the first day of the data (date); windows whose cutoff
            leaves fewer than ``min_history_days`` days of history after it
            are dropped. ``None`` keeps all ``n_windows``.
        min_history_days: see ``first_day``.

    Returns:
        Cutoffs as UTC timestamps at 00:00, newest (the validation window)
        first; every label window ``[c_k, c_k + H)`` ends on or before ``C``.

    Raises:
        CutoffError: ``n_windows`` or ``stride_days`` not positive, or no
            window fits the data before ``C`` (the message gives the latest
            possible training cutoff and the first day).
    """
    if n_windows < 1 or stride_days < 1:
        raise CutoffError(f"n_windows and stride_days must be positive, got {n_windows} and {stride_days}")
    start, end = horizon_window(cutoff, horizon_days)
    h = (end - start).days
    latest = start - pd.Timedelta(days=h)
    cutoffs = [latest - pd.Timedelta(days=k * stride_days) for k in range(n_windows)]
    if first_day is not None:
        earliest = to_day(first_day) + pd.Timedelta(days=min_history_days)
        cutoffs = [c for c in cutoffs if c >= earliest]
        if not cutoffs:
            raise CutoffError(
                f"no training window fits before the cutoff {start.date()}: a {h}-day label window needs a "
                f"training cutoff on or before {latest.date()}, and the data start {to_day(first_day).date()} "
                f"(+{min_history_days} days of history); choose a later cutoff or a shorter horizon"
            )
    return cutoffs


def history_before(tx: pd.DataFrame, cutoff) -> pd.DataFrame:
    """The transactions strictly before ``cutoff`` (00:00 UTC of its day).

    Args:
        tx: canonical transactions (``timestamp`` UTC).
        cutoff: date.

    Returns:
        The rows with ``timestamp < cutoff`` (a copy-free view for pandas).
    """
    return tx[tx["timestamp"] < to_day(cutoff)]


def next_purchase_labels(tx: pd.DataFrame, customers: pd.Series, cutoff, horizon_days: float) -> pd.DataFrame:
    """Days from ``cutoff`` to each customer's first purchase occasion in the horizon.

    Args:
        tx: canonical transactions (``customer_id``, ``timestamp`` UTC).
        customers: ids to label, shape (n,).
        cutoff: start of the window (date).
        horizon_days: window length in days (``[cutoff, cutoff + round(H))``).

    Returns:
        Frame of n rows sorted by ``customer_id``: ``customer_id`` (string),
        ``next_purchase_days`` (float: whole days from the cutoff day to the
        UTC day of the first transaction in the window, 0 = on the cutoff
        day; NaN when the customer has none in the window).
    """
    start, end = horizon_window(cutoff, horizon_days)
    ids = pd.Series(pd.Series(customers, dtype="string").unique(), dtype="string")
    window = tx.loc[(tx["timestamp"] >= start) & (tx["timestamp"] < end), ["customer_id", "timestamp"]]
    first = window.groupby(window["customer_id"].astype("string"))["timestamp"].min()
    days = (first.dt.floor("D") - start).dt.days.astype(float)
    out = pd.DataFrame({"customer_id": ids})
    out["next_purchase_days"] = out["customer_id"].map(days).astype(float)
    return out.sort_values("customer_id", kind="stable").reset_index(drop=True)


def window_labels(tx: pd.DataFrame, customers: pd.Series, cutoff, horizon_days: float) -> pd.DataFrame:
    """All labels of one window: occasions, spend and next-purchase days.

    Returns:
        Frame sorted by ``customer_id`` with ``customer_id``,
        ``actual_transactions``, ``actual_spend`` (see
        :func:`ltvcast.features.horizon_labels`) and ``next_purchase_days``
        (see :func:`next_purchase_labels`).
    """
    labels = horizon_labels(tx, customers, cutoff, horizon_days)
    labels["customer_id"] = labels["customer_id"].astype("string")
    nxt = next_purchase_labels(tx, customers, cutoff, horizon_days)
    return labels.merge(nxt, on="customer_id", how="left", validate="one_to_one")


#: ``(transactions before c, c) -> frame of customer_id + features`` for one cutoff.
Featurizer = Callable[[pd.DataFrame, pd.Timestamp], pd.DataFrame]


@dataclass
class ExampleSet:
    """Stacked training examples from several time-shifted windows.

    Attributes:
        frame: one row per customer and window: ``window`` (int, 0 = the
            validation window), ``cutoff`` (UTC timestamp), ``customer_id``,
            the feature columns, then ``actual_transactions``,
            ``actual_spend``, ``next_purchase_days``.
        feature_names: the feature columns, in order.
        cutoffs: the window cutoffs, newest first (index = ``window``).
        horizon_days: label window length in days.
        notes: remarks (e.g. windows dropped).
    """

    frame: pd.DataFrame
    feature_names: list[str]
    cutoffs: list[pd.Timestamp]
    horizon_days: float
    notes: list[str] = field(default_factory=list)

    def window(self, k: int) -> pd.DataFrame:
        """The rows of window ``k``."""
        return self.frame[self.frame["window"] == k]


def build_examples(
    tx: pd.DataFrame,
    cutoff,
    horizon_days: float,
    cutoffs: Sequence[pd.Timestamp],
    featurize: Featurizer,
) -> ExampleSet:
    """Features before each training cutoff and labels in the window after it.

    Only transactions strictly before ``cutoff`` are read: ``tx`` is cut there
    first, so nothing at or after the prediction cutoff can reach training.

    Args:
        tx: canonical transactions (may include rows after ``cutoff``; they
            are dropped).
        cutoff: the prediction cutoff ``C``.
        horizon_days: label window length ``H`` (days).
        cutoffs: training cutoffs (e.g. :func:`training_cutoffs`); each
            window ``[c, c + H)`` must end on or before ``C``.
        featurize: called as ``featurize(tx_before_c, c)``; returns
            ``customer_id`` plus numeric features for every customer it
            scores (the customers seen before ``c``).

    Returns:
        An :class:`ExampleSet`.

    Raises:
        CutoffError: a label window reaches past ``C``.
        DataError: a featurizer returns no customers or changes its columns
            between windows.
    """
    stop = to_day(cutoff)
    tx = history_before(tx, stop)
    h = float((horizon_window(stop, horizon_days)[1] - stop).days)
    frames, names = [], None
    for k, c in enumerate(cutoffs):
        c = to_day(c)
        if c + pd.Timedelta(days=h) > stop:
            raise CutoffError(f"training window {c.date()} + {h:g} days reaches past the cutoff {stop.date()}")
        feats = featurize(history_before(tx, c), c)
        if feats.empty:
            raise DataError(f"no customer is seen before the training cutoff {c.date()}")
        cols = [col for col in feats.columns if col != "customer_id"]
        if names is None:
            names = cols
        elif cols != names:
            raise DataError(f"features at {c.date()} differ from those of the first window")
        feats = feats.copy()
        feats["customer_id"] = feats["customer_id"].astype("string")
        labels = window_labels(tx, feats["customer_id"], c, h)
        part = feats.merge(labels, on="customer_id", how="left", validate="one_to_one")
        part.insert(0, "cutoff", c)
        part.insert(0, "window", k)
        frames.append(part)
    frame = pd.concat(frames, ignore_index=True)
    return ExampleSet(frame, list(names or []), [to_day(c) for c in cutoffs], h)


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """``sign(v) · ln(1 + |v|)``: a log scale that keeps returns (negative money) finite."""
    v = np.asarray(values, dtype=float)
    return np.sign(v) * np.log1p(np.abs(v))
