"""Inputs of the learned models: point-in-time features, age-robust ratios, BTYD outputs.

Three layers, each computed at one cutoff ``c`` from data strictly before it:

* **store features** — :func:`ltvcast.features.build` (``FeatureSet.customers``,
  about 70 columns; numeric ones are used, text ones are dropped).
* **age-robust ratios** (:func:`derived_features`) — rates per week of tenure,
  recency and inactivity relative to tenure and to the customer's own gap
  between purchases, spend shares of recent windows. They keep their meaning
  when the customers scored are older than the ones trained on (the CDNOW
  case: everyone joined in Q1 1997, so customers at training cutoffs are
  younger than at the prediction cutoff).
* **BTYD outputs** (:func:`btyd_features`, the *hybrid*) — Pareto/NBD and
  BG/NBD fitted at ``c`` on history before ``c`` (never later), with
  Gamma-Gamma spend: expected occasions, P(alive), P(no purchase) and
  expected spend for the horizon. These models extrapolate in age by their
  structure (the posterior given frequency, recency and T).

With ``age_robust=True`` the absolute age columns (:data:`AGE_COLUMNS`:
tenure, T, recency in days, and windows longer than the shortest label
window) are left out, so a tree cannot split on an age that the training
windows never reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ltvcast.errors import ConvergenceError, DataError
from ltvcast.features import build, rfm_summary
from ltvcast.models.bgnbd import BGNBD
from ltvcast.models.gammagamma import GammaGamma
from ltvcast.models.learned.calendar import CALENDAR_DOCS, CalendarEvent, calendar_inputs
from ltvcast.models.paretonbd import ParetoNBD
from ltvcast.timeutil import to_day

__all__ = ["AGE_COLUMNS", "FeatureMaker", "btyd_features", "derived_features"]

DAYS_PER_WEEK = 7.0

#: Store features that measure absolute age or long windows (they equal the
#: whole history for young customers); left out with ``age_robust=True``.
AGE_COLUMNS: tuple[str, ...] = (
    "recency",
    "T",
    "recency_days",
    "T_days",
    "tenure_days",
    "days_since_first_activity",
    "signup_age_days",
    "days_since_last_purchase",
    "occasions_180d",
    "spend_180d",
    "occasions_365d",
    "spend_365d",
    "sessions_180d",
    "views_180d",
    "add_to_carts_180d",
    "sessions_365d",
    "views_365d",
    "add_to_carts_365d",
    "spend_trend_slope",
    "spend_recent_ratio",
)

#: Documentation of :func:`derived_features` (name -> definition [unit]).
DERIVED_DOCS: dict[str, str] = {
    "rate_occasions_wk": "occasions / tenure weeks (tenure = days since the first occasion, >= 1 day) [per week]",
    "rate_repeat_wk": "frequency / T weeks (0 when T = 0) [per week]",
    "rate_spend_wk": "spend_total / tenure weeks [currency per week]",
    "value_per_occasion": "spend_total / occasions [currency]",
    "recency_share": "recency / T: share of the tenure at which the last occasion fell (1 when T = 0) [fraction]",
    "inactive_share": "days since the last occasion / tenure days [fraction]",
    "inactive_per_gap": "days since the last occasion / mean gap between occasions (NaN with one occasion) [ratio]",
    "expected_gaps_missed": "inactive days x occasions per tenure day: occasions the customer's own rate predicts "
    "since the last one [count]",
    "share_occasions_30d": "occasions in the last 30 days / occasions [fraction]",
    "share_occasions_90d": "occasions in the last 90 days / occasions [fraction]",
    "share_spend_90d": "spend in the last 90 days / spend_total (NaN when spend_total <= 0) [fraction]",
}


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)


def derived_features(customers: pd.DataFrame) -> pd.DataFrame:
    """Age-robust ratios of the store features (see :data:`DERIVED_DOCS`).

    Args:
        customers: ``FeatureSet.customers`` (reads ``occasions``,
            ``frequency``, ``recency_days``, ``T_days``, ``tenure_days``,
            ``days_since_last_purchase``, ``ipt_mean_days``, ``spend_total``,
            ``occasions_30d``, ``occasions_90d``, ``spend_90d``; a missing
            column reads as NaN).

    Returns:
        Frame with the same row order and the columns of :data:`DERIVED_DOCS`
        (float; NaN where a ratio is undefined).
    """
    occ = _col(customers, "occasions")
    freq = _col(customers, "frequency")
    rec = _col(customers, "recency_days")
    t_days = _col(customers, "T_days")
    tenure = np.maximum(_col(customers, "tenure_days"), 1.0)
    inactive = _col(customers, "days_since_last_purchase")
    gap = _col(customers, "ipt_mean_days")
    spend = _col(customers, "spend_total")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            "rate_occasions_wk": occ / tenure * DAYS_PER_WEEK,
            "rate_repeat_wk": np.where(t_days > 0, freq / np.maximum(t_days, 1.0) * DAYS_PER_WEEK, 0.0),
            "rate_spend_wk": spend / tenure * DAYS_PER_WEEK,
            "value_per_occasion": np.where(occ > 0, spend / np.maximum(occ, 1.0), np.nan),
            "recency_share": np.where(t_days > 0, rec / np.maximum(t_days, 1.0), 1.0),
            "inactive_share": inactive / tenure,
            "inactive_per_gap": np.where(gap > 0, inactive / gap, np.nan),
            "expected_gaps_missed": inactive * occ / tenure,
            "share_occasions_30d": np.where(occ > 0, _col(customers, "occasions_30d") / np.maximum(occ, 1.0), np.nan),
            "share_occasions_90d": np.where(occ > 0, _col(customers, "occasions_90d") / np.maximum(occ, 1.0), np.nan),
            "share_spend_90d": np.where(spend > 0, _col(customers, "spend_90d") / np.where(spend > 0, spend, 1.0), np.nan),
        }
    frame = pd.DataFrame(out, index=customers.index)
    return frame.replace([np.inf, -np.inf], np.nan)


#: Documentation of :func:`btyd_features` columns.
BTYD_DOCS: dict[str, str] = {
    "pnbd_tx": "Pareto/NBD expected purchase occasions in the horizon [count]",
    "pnbd_p_alive": "Pareto/NBD P(alive) at the cutoff [probability]",
    "pnbd_p_none": "Pareto/NBD P(no purchase occasion in the horizon) [probability]",
    "bgnbd_tx": "BG/NBD expected purchase occasions in the horizon [count]",
    "bgnbd_p_alive": "BG/NBD P(alive) at the cutoff [probability]",
    "bgnbd_p_none": "BG/NBD P(no purchase occasion in the horizon) [probability]",
    "gg_value": "Gamma-Gamma expected value per occasion (population mean for customers without a positive "
    "mean repeat value) [currency]",
    "pnbd_spend": "pnbd_tx x gg_value [currency]",
    "bgnbd_spend": "bgnbd_tx x gg_value [currency]",
}


def btyd_features(
    tx: pd.DataFrame, cutoff, horizon_days: float, *, timezone: str = "UTC", revenue_basis: str = "net"
) -> tuple[pd.DataFrame, list[str]]:
    """BTYD predictions at ``cutoff`` from a fit on the transactions before it.

    Pareto/NBD and BG/NBD are fitted on the RFM summary (weeks) of ``tx``
    strictly before ``cutoff``; Gamma-Gamma on the repeat buyers whose mean
    repeat value is positive (the rule of
    :class:`ltvcast.models.btyd.BTYDForecaster`). A model whose fit does not
    converge gives NaN columns and a note (the trees treat NaN as missing).

    Args:
        tx: canonical transactions (rows at or after ``cutoff`` are ignored).
        cutoff: date.
        horizon_days: horizon in days.
        timezone, revenue_basis: the shop's settings (see
            :func:`ltvcast.features.rfm_summary`).

    Returns:
        ``(frame, notes)``: frame sorted by ``customer_id`` with
        ``customer_id`` and the columns of :data:`BTYD_DOCS` (float); notes
        for fits that failed or customers left out of Gamma-Gamma.

    Raises:
        DataError: no customer is seen before ``cutoff``.
    """
    day = to_day(cutoff).date()
    # tx is history cut at the cutoff: observed through the cutoff day (a row of a zone west
    # of UTC can fall on its UTC day), whatever its last row is.
    summary = rfm_summary(tx, day, unit="W", timezone=timezone, revenue_basis=revenue_basis, data_end=day)
    if summary.empty:
        raise DataError(f"no customer has a purchase before {pd.Timestamp(cutoff).date()}")
    t = float(horizon_days) / DAYS_PER_WEEK
    n = len(summary)
    out = pd.DataFrame({"customer_id": summary["customer_id"].astype("string").to_numpy()})
    notes: list[str] = []
    for prefix, cls in (("pnbd", ParetoNBD), ("bgnbd", BGNBD)):
        try:
            model = cls().fit(summary)
            out[f"{prefix}_tx"] = model.expected_transactions(summary, t)
            out[f"{prefix}_p_alive"] = model.p_alive(summary)
            out[f"{prefix}_p_none"] = model.p_no_purchase(summary, t)
        except (ConvergenceError, DataError) as exc:
            notes.append(f"BTYD features at {day}: {cls.__name__} not available ({exc})")
            for col in ("tx", "p_alive", "p_none"):
                out[f"{prefix}_{col}"] = np.full(n, np.nan)
    repeat = summary["frequency"].to_numpy() > 0
    usable = repeat & (summary["monetary_value"].to_numpy() > 0)
    value = np.full(n, np.nan)
    try:
        gg = GammaGamma().fit(summary[usable])
        value[:] = gg.population_mean()
        if usable.any():
            value[usable] = gg.conditional_expected_value(summary[usable])
    except (ConvergenceError, DataError) as exc:
        notes.append(f"BTYD features at {day}: Gamma-Gamma not available ({exc}); own mean value used")
        total = summary["total_spend"].to_numpy(float) / (summary["frequency"].to_numpy(float) + 1.0)
        value = np.maximum(total, 0.0)
    out["gg_value"] = value
    out["pnbd_spend"] = out["pnbd_tx"] * value
    out["bgnbd_spend"] = out["bgnbd_tx"] * value
    return out, notes


def vocabulary(values: pd.Series, max_size: int) -> list[str]:
    """The ``max_size`` most frequent non-missing values of a text feature (ties by value), most frequent first.

    Returns:
        The categories; a value's code is its position (empty when every value is missing).
    """
    counts = values.dropna().value_counts()
    if counts.empty:
        return []
    frame = pd.DataFrame({"value": counts.index.astype(str), "n": counts.to_numpy()})
    return frame.sort_values(["n", "value"], ascending=[False, True], kind="stable")["value"].head(max_size).tolist()


@dataclass
class FeatureMaker:
    """Computes every learned model's inputs at one cutoff.

    Args:
        store: the open store (``History.store``) for
            :func:`ltvcast.features.build`.
        timezone, revenue_basis: the shop's settings (``History.timezone``,
            ``History.revenue_basis``), passed to every feature query.
        age_robust: leave out :data:`AGE_COLUMNS` and add
            :func:`derived_features`.
        btyd: add :func:`btyd_features` (the hybrid).
        drop: further store feature names to leave out.
        calendar: add the calendar inputs of the label window
            (:func:`ltvcast.models.learned.calendar.calendar_inputs`: month
            shares, declared events, the shop's seasonal index from the
            history before the cutoff), the same value for every row.
        events: the declared shop events (``calendar.yaml``), or None (no
            event columns); read only with ``calendar``.
        categoricals: keep the store's text features (customer attributes,
            first-order channel and category) as ``string`` columns; the
            model encodes them (gbm: LightGBM categorical codes).

    Attributes:
        notes: remarks collected over calls (BTYD fits that failed, ...).
        docs: feature name -> definition [unit], filled on the first call.

    Calling it as ``maker(tx_before_c, c, horizon_days)`` returns ``customer_id`` plus the
    numeric features of every customer with a purchase before ``c`` (the
    customers of ``rfm_summary``), sorted by ``customer_id``.
    """

    store: object
    timezone: str = "UTC"
    revenue_basis: str = "net"
    age_robust: bool = True
    btyd: bool = False
    drop: Sequence[str] = ()
    calendar: bool = False
    events: tuple[CalendarEvent, ...] | None = None
    categoricals: bool = False
    notes: list[str] = field(default_factory=list)
    docs: dict[str, str] = field(default_factory=dict)

    def __call__(self, tx: pd.DataFrame, cutoff, horizon_days: float) -> pd.DataFrame:
        """Features at ``cutoff``; ``tx`` must hold only rows before it.

        ``horizon_days`` is the horizon of the BTYD outputs (the label window
        of a training window, the forecast horizon when predicting).

        The customers are those of ``rfm_summary(tx, cutoff)`` (anyone with a
        transaction before ``cutoff``, the population every model scores);
        a customer the store's feature population lacks (e.g. only returns)
        gets NaN store features.
        """
        day = to_day(cutoff).date()
        # tx is history cut at the cutoff: observed through the cutoff day (see btyd_features).
        ids = rfm_summary(tx, day, unit="W", timezone=self.timezone, revenue_basis=self.revenue_basis, data_end=day)
        ids = ids[["customer_id"]].astype({"customer_id": "string"})
        fs = build(self.store, day, timezone=self.timezone, revenue_basis=self.revenue_basis)
        cust = fs.customers
        numeric = [c for c in cust.columns if c != "customer_id" and pd.api.types.is_numeric_dtype(cust[c])]
        skip = set(self.drop) | (set(AGE_COLUMNS) if self.age_robust else set())
        keep = [c for c in numeric if c not in skip]
        parts = [cust[["customer_id"]].astype({"customer_id": "string"}), cust[keep].astype(float)]
        docs = {c: fs.feature_docs.get(c, c) for c in keep}
        if self.age_robust:
            parts.append(derived_features(cust))
            docs.update(DERIVED_DOCS)
        if self.categoricals:
            text = [c for c in cust.columns if c != "customer_id" and c not in numeric and c not in self.drop]
            parts.append(cust[text].astype("string"))
            docs.update({c: fs.feature_docs.get(c, c) + " [category]" for c in text})
        out = ids.merge(pd.concat(parts, axis=1), on="customer_id", how="left", validate="one_to_one")
        if self.btyd:
            bt, notes = btyd_features(
                tx, cutoff, horizon_days, timezone=self.timezone, revenue_basis=self.revenue_basis
            )
            self.notes.extend(notes)
            out = out.merge(bt, on="customer_id", how="left", validate="one_to_one")
            docs.update(BTYD_DOCS)
        if self.calendar:
            # dates and history before the cutoff only (tx is cut there), never the label window
            cal = calendar_inputs(tx, day, horizon_days, events=self.events, timezone=self.timezone,
                                  revenue_basis=self.revenue_basis)
            out = out.assign(**cal)
            docs.update({k: CALENDAR_DOCS[k] for k in cal})
        if not self.docs:
            self.docs = docs
        return out.sort_values("customer_id", kind="stable").reset_index(drop=True)
