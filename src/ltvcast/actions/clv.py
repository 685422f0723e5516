"""Discounted long-horizon CLV with margin, from per-period predictions.

``CLV_i = Σ_k margin_i · spend_ik · D_k`` over the periods ``k = 1..K`` that
tile ``[cutoff, cutoff + H)`` (months of 30.4375 days by default; the last
one may be shorter), where ``spend_ik`` is the customer's expected revenue in
period k and ``D_k`` a discount factor for an **annual** rate ``d``:

* ``discounting="period"`` (default): discrete compounding, each period's
  revenue counted at the period's end: ``D_k = (1 + d)^(−e_k / 365.25)``
  (``e_k`` the period's end in days from the cutoff). ``d`` is the effective
  annual rate; for equal periods this is the per-period rate
  ``(1 + d)^(Δ/365.25) − 1`` compounded period by period, the convention of
  ``lifetimes``' ``customer_lifetime_value`` (which takes the per-period
  rate directly).
* ``discounting="continuous"``: ``d`` is a continuous annual rate δ and the
  revenue of a period flows evenly through it: ``D_k = (e^{−δ s_k} −
  e^{−δ e_k}) / (δ (e_k − s_k))`` (times in years; ``s_k`` the start), the
  mean of ``e^{−δt}`` over the period. For a constant purchase rate this is
  exact: ``Σ_k λ Δ_k D_k = λ (1 − e^{−δH}) / δ`` — the finite-horizon form of
  the discounted expected transactions (DET/DERT) of Fader, Hardie & Lee
  (2005), "RFM and CLV: using iso-value curves", JMR 42(4), eq. 2 (continuous
  discounting ``∫ E[t(t)] e^{−δt} dt``).

With ``d = 0`` both give ``D_k = 1``: CLV is margin × the undiscounted
expected revenue of the horizon, which equals the model's own ``pred_spend``
at H.

Where ``spend_ik`` comes from (one per model family; the library never
draws one row per posterior draw):

* BTYD (naive, BG/NBD, Pareto/NBD; :class:`~ltvcast.models.btyd.BTYDForecaster`):
  the closed-form cumulative conditional expectation ``E[Y(t) | x, t_x, T]``
  (FHL 2005 Marketing Science eq. 10 for BG/NBD; Schmittlein, Morrison &
  Colombo 1987 / Fader, Hardie & Lee 2005 for Pareto/NBD) at the period ends,
  differenced, times the expected value per occasion (Gamma-Gamma, FHL 2005
  JMR eq. 5; independence of spend and purchasing, ibid.);
* models with a per-period trajectory (``deep``:
  :meth:`~ltvcast.models.learned.deep.forecaster.DeepForecaster.predict_trajectory`):
  the trajectory's own periods;
* other forecasters (``gbm``, ``hybrid``, ``auto``): ``pred_spend`` predicted
  at every period end from one set of inputs, differenced (the cumulative
  curve is made non-decreasing first, ``numpy.maximum.accumulate``, so no
  period is negative). A learned model only answers horizons up to the one
  it was fitted for (longer ones are extrapolation: refused).

Interval: ``clv_p10``/``clv_p90`` are the model's 10 % and 90 % quantiles of
the undiscounted horizon revenue (``pred_spend_p10``/``pred_spend_p90`` at H:
the exact horizon distribution for BTYD, the ZILN quantiles for learned models), times
the margin and the customer's discount ratio ``Σ spend_ik D_k / Σ spend_ik``
— exact when the customer's revenue arrives on its expected timing profile,
an approximation otherwise; null when the model gives no quantiles.

Margin: one number in (0, 1] for every customer, or a per-category table
(:func:`customer_margins`): each customer's margin is the spend-weighted mean
of the category margins over their order lines before the cutoff.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ltvcast.data.datasets import History
from ltvcast.errors import CutoffError, DataError
from ltvcast.models.base import Forecaster
from ltvcast.schema.predictions import write_frame
from ltvcast.timeutil import to_day

__all__ = [
    "DAYS_PER_YEAR",
    "DISCOUNTING",
    "PERIOD_DAYS",
    "CLVSettings",
    "customer_clv",
    "customer_margins",
    "discount_factors",
    "discounted_clv",
    "period_grid",
    "per_period_spend",
    "read_margin_table",
    "write_clv",
]

DAYS_PER_YEAR = 365.25
#: Period lengths by name (days).
PERIOD_DAYS: dict[str, float] = {"week": 7.0, "month": 30.4375, "quarter": 91.3125, "year": 365.25}
#: Discounting conventions (module doc).
DISCOUNTING: tuple[str, ...] = ("period", "continuous")


@dataclass(frozen=True)
class CLVSettings:
    """What a long-horizon CLV is computed with.

    Attributes:
        years: horizon length in years (365.25 days each), > 0.
        margin: gross margin share of revenue in (0, 1] (ignored per customer
            where :func:`customer_margins` gives one).
        discount_rate: annual rate >= 0 (effective for ``period``, continuous
            for ``continuous``), e.g. 0.1.
        discounting: ``"period"`` or ``"continuous"``.
        period: ``"week"``, ``"month"``, ``"quarter"`` or ``"year"``: the
            cash-flow periods of BTYD and gbm (deep uses its own).
    """

    years: float = 3.0
    margin: float = 1.0
    discount_rate: float = 0.1
    discounting: str = "period"
    period: str = "month"

    def check(self) -> CLVSettings:
        """Validate; returns self.

        Raises:
            DataError: a value outside its range, or an unknown name.
        """
        if not (np.isfinite(self.years) and self.years > 0):
            raise DataError(f"--years must be a positive number, got {self.years}")
        if not (np.isfinite(self.margin) and 0 < self.margin <= 1):
            raise DataError(f"--margin must be a share of revenue in (0, 1], got {self.margin}")
        if not (np.isfinite(self.discount_rate) and self.discount_rate >= 0):
            raise DataError(f"--discount-rate must be an annual rate >= 0, got {self.discount_rate}")
        if self.discounting not in DISCOUNTING:
            raise DataError(f"--discounting must be one of {', '.join(DISCOUNTING)}, got {self.discounting!r}")
        if self.period not in PERIOD_DAYS:
            raise DataError(f"--period must be one of {', '.join(PERIOD_DAYS)}, got {self.period!r}")
        return self

    @property
    def horizon_days(self) -> float:
        """The horizon in whole days: ``round(years × 365.25)``."""
        return float(round(self.years * DAYS_PER_YEAR))


# --------------------------------------------------------------------------- pure math
def period_grid(horizon_days: float, period_days: float) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (days from the cutoff) of the periods tiling ``[0, horizon_days)``.

    Returns:
        ``(starts, ends)``, each (K,) with ``K = ceil(H / period_days)``; the
        last period ends at H (it may be shorter; a remainder under one day
        joins the period before it, so 3 years = 1096 days are 36 months).

    Raises:
        DataError: a non-positive horizon or period.
    """
    if not (horizon_days > 0 and period_days > 0):
        raise DataError(f"horizon and period must be positive, got {horizon_days} and {period_days}")
    k = int(np.ceil(horizon_days / period_days - 1e-9))
    ends = np.minimum(np.arange(1, k + 1) * period_days, horizon_days)
    if k > 1 and ends[-1] - ends[-2] < 1.0:
        ends = np.concatenate([ends[:-2], ends[-1:]])
    starts = np.concatenate([[0.0], ends[:-1]])
    return starts, ends


def discount_factors(starts_days: np.ndarray, ends_days: np.ndarray, rate: float, discounting: str = "period") -> np.ndarray:
    """Discount factor ``D_k`` of each period (module doc), shape (K,).

    ``period``: ``(1 + rate)^(−end/365.25)``; ``continuous``: the mean of
    ``exp(−rate · t)`` over the period (t in years), i.e.
    ``(e^{−rate s} − e^{−rate e}) / (rate (e − s))`` (FHL 2005 JMR eq. 2's
    continuous discounting, integrated exactly over a period of constant rate).

    Raises:
        DataError: a negative rate or an unknown convention.
    """
    s = np.asarray(starts_days, float) / DAYS_PER_YEAR
    e = np.asarray(ends_days, float) / DAYS_PER_YEAR
    if rate < 0 or not np.isfinite(rate):
        raise DataError(f"the discount rate must be >= 0, got {rate}")
    if discounting == "period":
        return np.power(1.0 + rate, -e)
    if discounting == "continuous":
        if rate == 0:
            return np.ones_like(e)
        width = e - s
        with np.errstate(invalid="ignore", divide="ignore"):
            avg = (np.exp(-rate * s) - np.exp(-rate * e)) / (rate * width)
        return np.where(width > 0, avg, np.exp(-rate * e))
    raise DataError(f"discounting must be one of {', '.join(DISCOUNTING)}, got {discounting!r}")


def discounted_clv(
    spend: np.ndarray, starts_days: np.ndarray, ends_days: np.ndarray, margin, rate: float, discounting: str = "period"
) -> np.ndarray:
    """``Σ_k margin · spend[:, k] · D_k``: discounted margin per customer.

    Args:
        spend: (n, K) expected revenue per customer and period (currency).
        starts_days, ends_days: (K,) period bounds in days from the cutoff.
        margin: scalar or (n,) margin shares.
        rate: annual discount rate >= 0.
        discounting: ``"period"`` or ``"continuous"``.

    Returns:
        (n,) CLV in currency.
    """
    d = discount_factors(starts_days, ends_days, rate, discounting)
    return np.asarray(margin, float) * (np.asarray(spend, float) @ d)


# --------------------------------------------------------------------------- per-period spend
@dataclass
class PeriodSpend:
    """Expected revenue per customer and period, and the horizon quantiles.

    Attributes:
        customer_id: (n,) ids.
        model: the model's name.
        starts, ends: (K,) period bounds, days from the cutoff.
        spend: (n, K) expected revenue per period, currency, >= 0.
        p10, p90: (n,) quantiles of the undiscounted horizon revenue, or None.
        method: how ``spend`` was made (``"btyd closed form"``,
            ``"trajectory"``, ``"horizon differences"``).
    """

    customer_id: pd.Series
    model: str
    starts: np.ndarray
    ends: np.ndarray
    spend: np.ndarray
    p10: np.ndarray | None
    p90: np.ndarray | None
    method: str


def _btyd_spend(fc, history: History, cutoff, settings: CLVSettings) -> PeriodSpend:
    h = settings.horizon_days
    starts, ends = period_grid(h, PERIOD_DAYS[settings.period])
    summary = fc.inputs(history, cutoff, h)
    cols = fc.predict_columns(summary, h)  # includes the closed-form quantiles when n_draws > 0
    tx_h, spend_h = cols["pred_transactions"], cols["pred_spend"]
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(tx_h > 0, spend_h / tx_h, 0.0)
    weeks = ends / 7.0
    model = fc.count_model_
    cum = np.column_stack([np.asarray(model.expected_transactions(summary, float(t)), float) for t in weeks])
    per = np.diff(np.column_stack([np.zeros(len(summary)), cum]), axis=1)
    spend = np.maximum(per, 0.0) * value[:, None]
    return PeriodSpend(
        summary["customer_id"].astype("string").reset_index(drop=True), str(fc.name), starts, ends, spend,
        cols.get("pred_spend_p10"), cols.get("pred_spend_p90"), "btyd closed form",
    )


def _trajectory_spend(fc, history: History, cutoff, settings: CLVSettings) -> PeriodSpend:
    h = settings.horizon_days
    traj = fc.predict_trajectory(history, cutoff, h)
    k = int(traj["period"].max())
    spend = traj["pred_spend"].to_numpy(float).reshape(-1, k)
    days = traj["period_days"].to_numpy(float)[:k]
    ends = np.cumsum(days)
    starts = ends - days
    ids = traj["customer_id"].iloc[::k].reset_index(drop=True)
    pred = fc.predict(history, cutoff, h).set_index("customer_id").loc[ids]
    return PeriodSpend(
        ids, str(getattr(fc, "name", type(fc).__name__)), starts, ends, np.maximum(spend, 0.0),
        pred["pred_spend_p10"].to_numpy(float), pred["pred_spend_p90"].to_numpy(float), "trajectory",
    )


def _difference_spend(fc, history: History, cutoff, settings: CLVSettings) -> PeriodSpend:
    h = settings.horizon_days
    fitted = getattr(fc, "horizon_days_", None)
    name = str(getattr(fc, "name", type(fc).__name__))
    if fitted is not None and h > float(fitted) + 0.5:
        raise CutoffError(
            f"{name} was fitted for a {float(fitted):g}-day horizon; a {settings.years:g}-year CLV ({h:g} days) "
            "would extrapolate it. Fit it for the longer horizon, or use a BTYD model (bgnbd, paretonbd)"
        )
    starts, ends = period_grid(h, PERIOD_DAYS[settings.period])
    inputs = fc.inputs(history, cutoff, h)
    cum, last = [], None
    for end in ends:
        last = fc.predict_inputs(inputs, cutoff, float(end))
        cum.append(last["pred_spend"].to_numpy(float))
    curve = np.maximum.accumulate(np.maximum(np.column_stack(cum), 0.0), axis=1)
    spend = np.diff(np.column_stack([np.zeros(len(inputs)), curve]), axis=1)
    p10 = last["pred_spend_p10"].to_numpy(float) if last["pred_spend_p10"].notna().all() else None
    p90 = last["pred_spend_p90"].to_numpy(float) if last["pred_spend_p90"].notna().all() else None
    return PeriodSpend(
        last["customer_id"].astype("string").reset_index(drop=True), name, starts, ends, spend, p10, p90,
        "horizon differences",
    )


def per_period_spend(forecaster: Forecaster, history: History, cutoff, settings: CLVSettings) -> PeriodSpend:
    """Expected revenue per customer and period over the settings' horizon (module doc).

    Args:
        forecaster: a fitted forecaster (a registered model's ``forecaster``).
        history: the shop's data; the model reads only what is before ``cutoff``.
        cutoff: the prediction date.
        settings: :class:`CLVSettings` (checked).

    Returns:
        A :class:`PeriodSpend`.

    Raises:
        CutoffError: a learned model asked for a horizon beyond its fitted one.
        DataError, NotFittedError, SchemaMismatchError: as the model's predict.
    """
    settings.check()
    if hasattr(forecaster, "count_model_") and hasattr(forecaster, "predict_columns"):
        return _btyd_spend(forecaster, history, cutoff, settings)
    if hasattr(forecaster, "predict_trajectory"):
        return _trajectory_spend(forecaster, history, cutoff, settings)
    return _difference_spend(forecaster, history, cutoff, settings)


# --------------------------------------------------------------------------- margins
def customer_margins(
    history: History, cutoff, customers: pd.Series, table: Mapping[str, float], default: float
) -> np.ndarray:
    """Each customer's margin: the spend-weighted mean of category margins over their order lines before ``cutoff``.

    Lines come from the store's ``order_items`` (``amount``, ``category``;
    a line without a category takes its product's from ``products``)
    joined to ``orders`` (``customer_id``, ``timestamp`` UTC, before the
    cutoff day's 00:00 UTC). A category missing from ``table`` (or a null
    category) gets ``default``; a customer without lines gets ``default``.

    Args:
        history: the shop (its ``store``).
        cutoff: prediction date.
        customers: (n,) ids.
        table: category -> margin in [0, 1].
        default: margin in (0, 1] for the rest.

    Returns:
        (n,) margins.

    Raises:
        DataError: a margin outside [0, 1], or the store has no order lines
            with a category (a single-file ingest has none: give ``--margin``);
            no category of ``table`` among the store's (a typo or another case).
    """
    bad = {k: v for k, v in table.items() if not (0 <= float(v) <= 1)}
    if bad:
        raise DataError(f"category margins must lie in [0, 1]: {bad}")
    items = history.store.table("order_items")
    if not items.empty and items["category"].isna().any() and "product_id" in items.columns:
        products = history.store.table("products")
        if not products.empty:  # a line without a category takes its product's
            by_product = products.dropna(subset=["category"]).set_index("product_id")["category"]
            items = items.assign(category=items["category"].fillna(items["product_id"].map(by_product)))
    if items.empty or items["category"].isna().all():
        raise DataError("the store has no order lines with a category; a per-category margin table needs "
                        "order_items (ingest --config); use --margin instead")
    known = set(items["category"].dropna().astype(str))
    if not known & set(table):
        raise DataError(f"no category of the margin table ({', '.join(sorted(map(str, table))) or 'empty'}) is a "
                        f"category of the store ({', '.join(sorted(known)[:10])}); categories match exactly, "
                        "case included")
    orders = history.store.table("orders")[["order_id", "customer_id", "timestamp"]]
    lines = items[["order_id", "amount", "category"]].merge(orders, on="order_id", how="inner")
    lines = lines[lines["timestamp"] < to_day(cutoff)]
    lines = lines.assign(
        margin=lines["category"].map(lambda c: float(table.get(c, default)) if isinstance(c, str) else default)
    )
    lines = lines.assign(weighted=lines["amount"].astype(float) * lines["margin"], amount=lines["amount"].astype(float))
    g = lines.groupby("customer_id")[["weighted", "amount"]].sum()
    per = (g["weighted"] / g["amount"]).where(g["amount"] > 0)
    ids = pd.Series(customers, dtype="string").astype(str)
    return per.reindex(ids).fillna(default).to_numpy(float)


# --------------------------------------------------------------------------- the frame
def customer_clv(
    forecaster: Forecaster,
    history: History,
    cutoff,
    settings: CLVSettings,
    *,
    model_label: str | None = None,
    margin_table: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Discounted CLV with margin over ``settings.years``, one row per customer.

    Args:
        forecaster: a fitted forecaster.
        history: the shop's data.
        cutoff: prediction date (``YYYY-MM-DD``).
        settings: :class:`CLVSettings`.
        model_label: the ``model`` column (default: the forecaster's name).
        margin_table: category -> margin: each customer's margin from
            :func:`customer_margins` (``settings.margin`` for categories not
            in the table and customers without order lines).

    Returns:
        One row per customer with a purchase before the cutoff, sorted by
        ``customer_id``: ``customer_id``, ``model``, ``cutoff`` (UTC
        midnight), ``years``, ``horizon_days``, ``periods``, ``margin``,
        ``discount_rate``, ``discounting``, ``pred_spend`` (undiscounted
        expected revenue over the horizon, currency), ``clv`` (discounted
        margin, currency), ``clv_p10``, ``clv_p90`` (NaN when the model gives
        no quantiles), ``discount_ratio`` (``Σ spend·D / Σ spend``; 1 when
        no spend is expected).

    Raises:
        DataError: bad settings or margins (:func:`customer_margins`).
        CutoffError, NotFittedError, SchemaMismatchError: as
            :func:`per_period_spend`.
    """
    settings.check()
    ps = per_period_spend(forecaster, history, cutoff, settings)
    n = ps.spend.shape[0]
    if margin_table is None:
        m = np.full(n, float(settings.margin))
    else:
        m = customer_margins(history, cutoff, ps.customer_id, margin_table, float(settings.margin))
    total = ps.spend.sum(axis=1)
    disc = ps.spend @ discount_factors(ps.starts, ps.ends, settings.discount_rate, settings.discounting)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(total > 0, disc / total, 1.0)
    nan = np.full(n, np.nan)
    out = pd.DataFrame(
        {
            "customer_id": pd.array(ps.customer_id.to_numpy(dtype=object), dtype="string"),
            "model": pd.array(np.repeat(model_label or ps.model, n), dtype="string"),
            "cutoff": np.repeat(to_day(cutoff), n),
            "years": float(settings.years),
            "horizon_days": float(ps.ends[-1]),
            "periods": len(ps.ends),
            "margin": m,
            "discount_rate": float(settings.discount_rate),
            "discounting": settings.discounting,
            "pred_spend": total,
            "clv": m * disc,
            "clv_p10": nan if ps.p10 is None else m * ratio * np.asarray(ps.p10, float),
            "clv_p90": nan if ps.p90 is None else m * ratio * np.asarray(ps.p90, float),
            "discount_ratio": ratio,
        }
    )
    out.attrs["method"] = ps.method
    return out.sort_values("customer_id", kind="stable").reset_index(drop=True)


def read_margin_table(path) -> dict[str, float]:
    """A per-category margin table from a CSV with columns ``category``, ``margin``.

    Raises:
        DataError: the file is missing, lacks the columns, repeats a
            category, or a margin is not a number in [0, 1].
    """
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise DataError(f"margin table not found: {path}")
    frame = pd.read_csv(path, dtype={"category": "string"})
    if not {"category", "margin"} <= set(frame.columns):
        raise DataError(f"{path}: a margin table needs columns category,margin; found {list(frame.columns)}")
    if frame["category"].isna().any() or frame["category"].duplicated().any():
        raise DataError(f"{path}: every category must be given once")
    margins = pd.to_numeric(frame["margin"], errors="coerce")
    if margins.isna().any() or ((margins < 0) | (margins > 1)).any():
        raise DataError(f"{path}: margins must be numbers in [0, 1]")
    return dict(zip(frame["category"].astype(str), margins.astype(float)))


def write_clv(frame: pd.DataFrame, path) -> None:
    """Write the frame of :func:`customer_clv` as ``.parquet`` or ``.csv``.

    Raises:
        DataError: another extension.
    """
    write_frame(frame, path, "the CLV frame")
