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

**Recent windows** (:func:`recent_windows`, optional). When every customer
is young at the training cutoffs and old at the prediction cutoff (CDNOW:
everyone joined in Q1 1997, so customers are 14–26 weeks old at ``c_0`` and
40–52 weeks old at ``C``), a model trained on full windows only has to
extrapolate in age. Recent windows close that gap: cutoffs
``r_j = C − j · stride`` (``j = 1, 2, …`` while ``j · stride < H``) with
*shorter* label windows ``[r_j, C)`` of ``h_j = j · stride`` days, which
still end at ``C``. The label length ``label_days`` is an input of every
learned model (and the horizon of the BTYD inputs of the hybrid), so the
models learn how the outcome scales with the horizon; at prediction time
``label_days = H``. Recent windows are used for the final fit only: the
validation model trains on the full windows ``k >= 1`` (their labels end
before ``C − stride`` and, for ``k >= 1``, never reach into the validation
window's future beyond ``C``).

**Same-season windows** (:func:`seasonal_windows`, on with
``seasonal_years >= 1``). When the history reaches a year before the
horizon, the windows ``s_y = C − 364·y`` (``y = 1 .. seasonal_years``; 364
days keeps the weekdays aligned) with full label windows ``[s_y, s_y + H)``
sit at the horizon's calendar position ``y`` years earlier. They join the
final fit, and the level and Platt calibrations are fitted on them (weights
``0.5^(y−1)``: the most recent year counts most) instead of on window 0,
whose season may differ from the horizon's (a January–June validation window
for a July–December horizon holding the Q4 peak). Their index is
``SEASONAL_INDEX + y``.

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
from ltvcast.features.labels import window_labels
from ltvcast.timeutil import horizon_window, local_midnight, to_day

__all__ = [
    "ExampleSet",
    "build_examples",
    "calibration_windows",
    "seasonal_windows",
    "history_before",
    "training_cutoffs",
    "window_labels",
    "window_notes",
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


def recent_windows(
    cutoff,
    horizon_days: float,
    *,
    stride_days: int = 28,
    min_label_days: int = 28,
    first_day=None,
    min_history_days: int = 28,
) -> list[tuple[pd.Timestamp, int]]:
    """Recent training cutoffs with label windows shortened to end at ``C``.

    Args:
        cutoff: the prediction cutoff ``C``.
        horizon_days: ``H`` (days, rounded).
        stride_days: spacing of the cutoffs (> 0).
        min_label_days: shortest label window kept.
        first_day, min_history_days: as :func:`training_cutoffs`.

    Returns:
        ``(r_j, h_j)`` pairs, newest first: ``r_j = C − j·stride`` (UTC
        00:00) and ``h_j = j·stride`` days, for every ``j >= 1`` with
        ``min_label_days <= h_j < H``. Empty when none fits.

    Raises:
        CutoffError: ``stride_days`` not positive.
    """
    if stride_days < 1:
        raise CutoffError(f"stride_days must be positive, got {stride_days}")
    start, end = horizon_window(cutoff, horizon_days)
    h = (end - start).days
    earliest = None if first_day is None else to_day(first_day) + pd.Timedelta(days=min_history_days)
    out = []
    j = 1
    while j * stride_days < h:
        days = j * stride_days
        c = start - pd.Timedelta(days=days)
        if days >= min_label_days and (earliest is None or c >= earliest):
            out.append((c, days))
        j += 1
    return out


#: Index offset of the same-season windows (``SEASONAL_INDEX + y``).
SEASONAL_INDEX = 1000
#: Days in a "year" for the same-season windows: 52 weeks, so weekdays align.
SEASON_DAYS = 364


def seasonal_windows(
    cutoff,
    horizon_days: float,
    *,
    years: int = 1,
    first_day=None,
    min_history_days: int = 28,
) -> list[tuple[pd.Timestamp, int]]:
    """The same-season training cutoffs ``s_y = C − 364·y`` with full label windows of ``H`` days.

    Args:
        cutoff: the prediction cutoff ``C``.
        horizon_days: ``H`` (days, rounded as :func:`ltvcast.timeutil.horizon_window`).
        years: how many years back at most (``y = 1 .. years``; 0 = none).
        first_day, min_history_days: a window needs ``min_history_days``
            of data before its cutoff (as :func:`training_cutoffs`).

    Returns:
        ``(s_y, y)`` pairs, newest first, for the years that fit the data
        (and whose label window ends on or before ``C``: needs ``H <= 364·y``).
        Empty when none fits (less than a year of history).

    Raises:
        CutoffError: ``years`` negative.
    """
    if years < 0:
        raise CutoffError(f"seasonal years must be >= 0, got {years}")
    start, end = horizon_window(cutoff, horizon_days)
    h = (end - start).days
    earliest = None if first_day is None else to_day(first_day) + pd.Timedelta(days=min_history_days)
    out = []
    for y in range(1, years + 1):
        c = start - pd.Timedelta(days=SEASON_DAYS * y)
        if h <= SEASON_DAYS * y and (earliest is None or c >= earliest):
            out.append((c, y))
    return out


def calibration_windows(windows: Sequence["Window"]) -> tuple[list[int], list[float], str]:
    """Which windows the level and Platt calibrations are fitted on, with weights and a note.

    Returns:
        ``(indices, weights, note)``: the same-season windows with weights
        ``0.5^(y−1)`` when any is in ``windows``, else ``[0], [1.0]`` (the
        most recent full window).
    """
    seasonal = sorted((w for w in windows if w.is_seasonal), key=lambda w: w.years_before)
    if seasonal:
        idx = [w.index for w in seasonal]
        weights = [0.5 ** (w.years_before - 1) for w in seasonal]
        note = (
            "level and Platt calibrations fitted on the same-season window(s) "
            + ", ".join(f"{w.cutoff.date()} ({w.years_before} y before, weight {wt:g})" for w, wt in zip(seasonal, weights))
            + " (the horizon's calendar position a year before) instead of the most recent window"
        )
        return idx, weights, note
    return [0], [1.0], (
        "level and Platt calibrations fitted on the most recent window (no same-season window in the plan: "
        "seasonal_years=0, or less than a year of history before the horizon)"
    )


@dataclass(frozen=True)
class Window:
    """One training window: features before ``cutoff``, labels in ``[cutoff, cutoff + label_days)``.

    Attributes:
        index: 0 = the validation window (latest full window), 1, 2, … =
            older full windows, −1, −2, … = recent (shortened) windows,
            ``SEASONAL_INDEX + y`` = the same-season window ``y`` years
            before the horizon.
        cutoff: UTC 00:00.
        label_days: label window length in days.
    """

    index: int
    cutoff: pd.Timestamp
    label_days: int

    @property
    def is_validation(self) -> bool:
        """True for the latest full window (index 0)."""
        return self.index == 0

    @property
    def is_recent(self) -> bool:
        """True for a shortened recent window (negative index)."""
        return self.index < 0

    @property
    def is_seasonal(self) -> bool:
        """True for a same-season window (index ``SEASONAL_INDEX + y``, ``y`` years before the horizon)."""
        return self.index > SEASONAL_INDEX

    @property
    def years_before(self) -> int:
        """``y`` of a same-season window, 0 otherwise."""
        return self.index - SEASONAL_INDEX if self.is_seasonal else 0


def window_plan(
    cutoff,
    horizon_days: float,
    *,
    n_windows: int = 6,
    stride_days: int = 28,
    recent: bool = True,
    min_label_days: int = 28,
    first_day=None,
    min_history_days: int = 28,
    seasonal_years: int = 0,
) -> list[Window]:
    """Every training window for a prediction at ``cutoff``: full windows, recent ones, same-season ones.

    Full windows come from :func:`training_cutoffs` (index ``k``), recent
    ones from :func:`recent_windows` (index ``−j``) when ``recent`` is true,
    same-season ones from :func:`seasonal_windows` (index
    ``SEASONAL_INDEX + y``) when ``seasonal_years >= 1``; a same-season
    cutoff equal to a full window's is not repeated.

    Raises:
        CutoffError: as :func:`training_cutoffs` (no full window fits).
    """
    start, end = horizon_window(cutoff, horizon_days)
    h = (end - start).days
    full = training_cutoffs(
        cutoff, horizon_days, n_windows=n_windows, stride_days=stride_days,
        first_day=first_day, min_history_days=min_history_days,
    )
    plan = [Window(k, c, h) for k, c in enumerate(full)]
    if recent:
        rec = recent_windows(
            cutoff, horizon_days, stride_days=stride_days, min_label_days=min_label_days,
            first_day=first_day, min_history_days=min_history_days,
        )
        plan += [Window(-(days // stride_days), c, days) for c, days in rec]
    if seasonal_years:
        taken = {w.cutoff for w in plan}
        plan += [
            Window(SEASONAL_INDEX + y, c, h)
            for c, y in seasonal_windows(
                start, h, years=seasonal_years, first_day=first_day, min_history_days=min_history_days
            )
            if c not in taken
        ]
    return plan


def _utc(stamps: pd.Series) -> pd.Series:
    return stamps.dt.tz_localize("UTC") if getattr(stamps.dt, "tz", None) is None else stamps


def history_before(tx: pd.DataFrame, cutoff, timezone: str = "UTC") -> pd.DataFrame:
    """The transactions strictly before the cutoff day (00:00 in the shop's time zone).

    Args:
        tx: canonical transactions (``timestamp`` UTC; naive read as UTC).
        cutoff: calendar day.
        timezone: the shop's IANA time zone.

    Returns:
        The rows with ``timestamp <`` 00:00 of ``cutoff`` in ``timezone``.
    """
    return tx[_utc(tx["timestamp"]) < local_midnight(cutoff, timezone)]


def scored_window(cutoff, horizon_days: float) -> tuple[pd.Timestamp, float]:
    """The cutoff day and the horizon in whole days, as the labels count them (:func:`horizon_window`)."""
    start, end = horizon_window(cutoff, horizon_days)
    return start, float((end - start).days)


def history_at(data, cutoff, who: str) -> pd.DataFrame:
    """``data.transactions`` strictly before the cutoff day in the shop's time zone (:func:`history_before`).

    Args:
        data: a :class:`~ltvcast.data.datasets.History`.
        cutoff: calendar day.
        who: the model's name, for the message.

    Raises:
        DataError: no transaction before the cutoff.
    """
    tx = history_before(data.transactions, cutoff, data.timezone)
    if tx.empty:
        raise DataError(f"{who}: no transaction before the cutoff {to_day(cutoff).date()}")
    return tx


#: ``(transactions before c, c, label_days) -> frame of customer_id + features`` for one cutoff.
Featurizer = Callable[[pd.DataFrame, pd.Timestamp, float], pd.DataFrame]


@dataclass
class ExampleSet:
    """Stacked training examples from several time-shifted windows.

    Attributes:
        frame: one row per customer and window: ``window`` (int, see
            :class:`Window`), ``cutoff`` (UTC timestamp), ``label_days``
            (float, also a model input), ``customer_id``, the feature
            columns, then ``actual_transactions``, ``actual_spend``,
            ``next_purchase_days``.
        feature_names: the feature columns, in order (``label_days`` first).
        windows: the windows, in the order built.
        notes: remarks.
    """

    frame: pd.DataFrame
    feature_names: list[str]
    windows: list[Window]
    notes: list[str] = field(default_factory=list)

    def rows(self, mask_fn: Callable[[Window], bool]) -> pd.DataFrame:
        """The rows of the windows for which ``mask_fn(window)`` is true."""
        keep = [w.index for w in self.windows if mask_fn(w)]
        return self.frame[self.frame["window"].isin(keep)]


def build_examples(
    tx: pd.DataFrame,
    cutoff,
    windows: Sequence[Window],
    featurize: Featurizer,
    *,
    timezone: str = "UTC",
    revenue_basis: str = "net",
) -> ExampleSet:
    """Features before each training cutoff and labels in the window after it.

    Only transactions strictly before ``cutoff`` are read: ``tx`` is cut there
    first, so nothing at or after the prediction cutoff can reach training.

    Args:
        tx: canonical transactions (may include rows at or after ``cutoff``;
            they are dropped).
        cutoff: the prediction cutoff ``C``.
        windows: the training windows (e.g. :func:`window_plan`); each label
            window ``[c, c + label_days)`` must end on or before ``C``.
        featurize: called as ``featurize(tx_before_c, c, label_days)``;
            returns ``customer_id`` plus numeric features for every customer
            seen before ``c``, the same columns for every window.
        timezone, revenue_basis: the shop's settings (calendar days of the
            cutoffs and labels; net or gross spend).

    Returns:
        An :class:`ExampleSet`.

    Raises:
        CutoffError: a label window reaches past ``C``.
        DataError: no window given, a featurizer returns no customers, or
            its columns change between windows.
    """
    if not windows:
        raise DataError("no training window given")
    stop = to_day(cutoff)
    tx = history_before(tx, stop, timezone)
    frames, names = [], None
    for win in windows:
        c = to_day(win.cutoff)
        if c + pd.Timedelta(days=win.label_days) > stop:
            raise CutoffError(
                f"training window {c.date()} + {win.label_days} days reaches past the cutoff {stop.date()}"
            )
        feats = featurize(history_before(tx, c, timezone), c, float(win.label_days))
        if feats.empty:
            raise DataError(f"no customer is seen before the training cutoff {c.date()}")
        cols = [col for col in feats.columns if col != "customer_id"]
        if names is None:
            names = cols
        elif cols != names:
            raise DataError(f"features at {c.date()} differ from those of the first window")
        feats = feats.copy()
        feats["customer_id"] = feats["customer_id"].astype("string")
        feats.insert(1, "label_days", float(win.label_days))
        labels = window_labels(
            tx, feats["customer_id"], c, float(win.label_days), timezone=timezone, revenue_basis=revenue_basis
        )
        part = feats.merge(labels, on="customer_id", how="left", validate="one_to_one")
        part.insert(0, "cutoff", c)
        part.insert(0, "window", win.index)
        frames.append(part)
    frame = pd.concat(frames, ignore_index=True)
    return ExampleSet(frame, ["label_days"] + list(names or []), list(windows))


def training_examples(
    settings, data, cutoff, horizon_days: float, maker
) -> tuple[pd.Timestamp, float, pd.DataFrame, ExampleSet]:
    """The training examples of a learned model at ``cutoff``: the window plan, features and labels.

    Args:
        settings: the model, read for ``name``, ``n_windows``, ``stride_days``,
            ``recent_windows``, ``min_label_days``, ``min_history_days`` and
            (when it has one) ``seasonal_years`` (see :func:`window_plan`).
        data: a :class:`~ltvcast.data.datasets.History`; only rows before
            ``cutoff`` are read.
        cutoff, horizon_days: the prediction the model is trained for.
        maker: the features at a window's cutoff, ``maker(tx, c, label_days)``.

    Returns:
        ``(cutoff day, horizon in whole days, the transactions before the
        cutoff day, examples)``.

    Raises:
        DataError: no transaction before ``cutoff``.
        CutoffError: no full training window fits before ``cutoff``.
    """
    start, h = scored_window(cutoff, horizon_days)
    tx = history_at(data, start, settings.name)
    plan = window_plan(
        start, h,
        n_windows=settings.n_windows, stride_days=settings.stride_days, recent=settings.recent_windows,
        min_label_days=settings.min_label_days, first_day=tx["timestamp"].min(),
        min_history_days=settings.min_history_days, seasonal_years=getattr(settings, "seasonal_years", 0),
    )
    ex = build_examples(tx, start, plan, maker, timezone=data.timezone, revenue_basis=data.revenue_basis)
    return start, h, tx, ex


def window_notes(name: str, ex: ExampleSet) -> list[str]:
    """The notes a learned model gives on its training windows: the windows, the examples, net spend <= 0.

    Args:
        name: the model's name (each note starts with it).
        ex: the training examples (:func:`training_examples`).

    Returns:
        One or two lines of text.
    """
    full = [w for w in ex.windows if not w.is_recent]
    recent = [w for w in ex.windows if w.is_recent]
    text = (
        f"{name}: {len(full)} full training window(s) at "
        + ", ".join(str(w.cutoff.date()) for w in full)
        + f" ({full[0].label_days} days each; {full[0].cutoff.date()} validates)"
    )
    if recent:
        text += "; recent windows " + ", ".join(f"{w.cutoff.date()} ({w.label_days} d)" for w in recent)
    notes = [text + f"; {len(ex.frame):,} examples"]
    spend = ex.frame["actual_spend"].to_numpy(float)
    n_nonpos = int(np.sum((ex.frame["actual_transactions"].to_numpy(float) > 0) & (spend <= 0)))
    if n_nonpos:
        notes.append(
            f"{name}: {n_nonpos:,} training example(s) bought but had a net spend <= 0 in the window; "
            "counted as zero spend (the net-revenue rule)"
        )
    return notes
