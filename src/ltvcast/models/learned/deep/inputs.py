"""The deep model's inputs: per-period spend, the sequence FeatureSet at a cutoff, input moments, vocabularies."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ltvcast.features import build, rfm_summary
from ltvcast.features.sequences import DEFAULT_CHANNELS
from ltvcast.models.learned.calendar import CalendarEvent, calendar_inputs
from ltvcast.models.learned.features import AGE_COLUMNS, derived_features
from ltvcast.timeutil import local_midnight, to_day

#: Length of one trajectory period in days (``M``: the package's month, 365.25 / 12).
PERIOD_DAYS: dict[str, float] = {"W": 7.0, "M": 30.4375}
#: Default sequence length in periods (the last ``lookback`` periods before a cutoff).
DEFAULT_LOOKBACK: dict[str, int] = {"W": 52, "M": 12}


def period_offsets(horizon_days: float, period: str) -> np.ndarray:
    """Start day (offset from the cutoff) of every trajectory period of a horizon.

    Period ``k`` covers days ``[round(k·p), round((k+1)·p))`` after the cutoff,
    ``p`` = :data:`PERIOD_DAYS` (7 for ``W``; 30.4375 for ``M``: fixed-length
    months, not calendar months); the last period may be shorter.

    Args:
        horizon_days: ``H`` (days, rounded).
        period: ``"W"`` or ``"M"``.

    Returns:
        int64 array (K,) of the starts ``round(k·p) < H`` (K ≈ H / p rounded
        up), starting with 0.
    """
    p = PERIOD_DAYS[period]
    h = max(round(horizon_days), 1)
    return np.array([round(i * p) for i in range(h) if round(i * p) < h], dtype=np.int64)


def period_spend(
    tx: pd.DataFrame,
    customers: pd.Series,
    cutoff,
    label_days: float,
    offsets: np.ndarray,
    *,
    timezone: str = "UTC",
    revenue_basis: str = "net",
) -> np.ndarray:
    """Each customer's spend per trajectory period of ``[cutoff, cutoff + label_days)``.

    Spend follows :func:`ltvcast.features.horizon_labels`: ``net`` sums every
    row (returns subtract), ``gross`` only sale rows (``kind = 'sale'``, or
    ``amount >= 0`` without ``kind``); days are local calendar days.

    Args:
        tx: canonical transactions.
        customers: (n,) ids, the row order of the result.
        cutoff: first day of the window.
        label_days: window length (days, rounded).
        offsets: (K,) period start offsets (:func:`period_offsets`).
        timezone, revenue_basis: the shop's settings.

    Returns:
        float64 array (n, K) of spend (currency; may be negative under net
        revenue); periods starting at or after ``label_days`` are 0.
    """
    ids = pd.Index(pd.Series(customers, dtype="string"))
    out = np.zeros((len(ids), len(offsets)), dtype=float)
    start_day = to_day(cutoff).tz_localize(None)
    start = local_midnight(start_day, timezone)
    end = local_midnight(start_day + pd.Timedelta(days=round(label_days)), timezone)
    stamps = tx["timestamp"]
    if getattr(stamps.dt, "tz", None) is None:
        stamps = stamps.dt.tz_localize("UTC")
    keep = (stamps >= start) & (stamps < end)
    if revenue_basis == "gross":
        sale = tx["kind"].astype("string").fillna("sale") == "sale" if "kind" in tx.columns else tx["amount"] >= 0
        keep &= sale
    if not keep.any():
        return out
    local = stamps[keep].dt.tz_convert(timezone).dt.tz_localize(None).dt.normalize()
    days = (local - start_day).dt.days.to_numpy()
    period = np.searchsorted(offsets, days, side="right") - 1
    row = ids.get_indexer(tx.loc[keep, "customer_id"].astype("string"))
    ok = row >= 0
    np.add.at(out, (row[ok], period[ok]), pd.to_numeric(tx.loc[keep, "amount"]).to_numpy(float)[ok])
    return out


@dataclass
class SequenceFeatureMaker:
    """The deep model's inputs at one cutoff: gbm's customer features, text features, sequences.

    Called as ``maker(tx_before_c, c, label_days)`` (the
    :data:`~ltvcast.models.learned.examples.Featurizer` protocol); one
    :func:`ltvcast.features.build` per cutoff gives both the customer table
    and the sequences.

    Args:
        store: the open store (``History.store``).
        timezone, revenue_basis: the shop's settings.
        period: ``"W"`` or ``"M"``, the sequence period.
        lookback: periods in a sequence (ending at the cutoff).
        calendar: add the calendar inputs of the label window (numeric;
            :func:`ltvcast.models.learned.calendar.calendar_inputs`, from
            dates and the history before the cutoff only).
        events: the declared shop events, or None (no event columns).

    Attributes:
        sequences: cutoff (UTC timestamp) -> float32 array (n, lookback,
            channels), rows in the order of the frame returned for it
            (customers absent from the store's population: zeros).
        numeric: the numeric input columns, in order (set on the first call).
        categorical: the text input columns, in order.
        channels: the sequence channels.
    """

    store: object
    timezone: str = "UTC"
    revenue_basis: str = "net"
    period: str = "W"
    lookback: int = 52
    sequences: dict = field(default_factory=dict)
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    calendar: bool = False
    events: tuple[CalendarEvent, ...] | None = None

    def __call__(self, tx: pd.DataFrame, cutoff, horizon_days: float) -> pd.DataFrame:
        """``customer_id``, numeric and text inputs of every customer with a transaction before ``cutoff``.

        The customers are those of ``rfm_summary(tx, cutoff)`` as in
        :class:`~ltvcast.models.learned.features.FeatureMaker`, sorted by
        ``customer_id``; ``horizon_days`` is the label window's length, read
        only by the calendar inputs. The sequences are kept in :attr:`sequences`.
        """
        day = to_day(cutoff).date()
        # tx is history cut at the cutoff: observed through the cutoff day.
        ids = rfm_summary(tx, day, unit="W", timezone=self.timezone, revenue_basis=self.revenue_basis, data_end=day)
        ids = ids[["customer_id"]].astype({"customer_id": "string"})
        fs = build(
            self.store, day, self.period, self.lookback, channels=self.channels,
            timezone=self.timezone, revenue_basis=self.revenue_basis,
        )
        cust = fs.customers
        cols = [c for c in cust.columns if c != "customer_id"]
        numeric = [c for c in cols if pd.api.types.is_numeric_dtype(cust[c]) and c not in AGE_COLUMNS]
        text = [c for c in cols if not pd.api.types.is_numeric_dtype(cust[c])]
        derived = derived_features(cust)
        table = pd.concat(
            [cust[["customer_id"]].astype({"customer_id": "string"}), cust[numeric].astype(float), derived,
             cust[text].astype("string")],
            axis=1,
        )
        out = ids.merge(table, on="customer_id", how="left", validate="one_to_one")
        out = out.sort_values("customer_id", kind="stable").reset_index(drop=True)
        pos = pd.Index(cust["customer_id"].astype("string")).get_indexer(out["customer_id"])
        seq = np.zeros((len(out), fs.sequences.shape[1], fs.sequences.shape[2]), dtype=np.float32)
        seq[pos >= 0] = fs.sequences[pos[pos >= 0]]
        self.sequences[to_day(cutoff)] = seq
        cal: dict[str, float] = {}
        if self.calendar:
            cal = calendar_inputs(tx, day, horizon_days, events=self.events, timezone=self.timezone,
                                  revenue_basis=self.revenue_basis)
            out = out.assign(**cal)
        if not self.numeric:
            self.numeric = numeric + list(derived.columns) + list(cal)
            self.categorical = text
        return out


def signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def channel_moments(seq: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per channel of ``sign(x)·ln(1 + |x|)`` over rows and periods.

    Zeros (most periods of most customers) transform to 0 and add nothing to
    the sums: only the nonzero values are transformed.

    Args:
        seq: (n, periods, channels) float32.

    Returns:
        Two (channels,) float64 arrays (computed in chunks of rows, float64 sums).
    """
    total = np.zeros(seq.shape[2])
    squares = np.zeros(seq.shape[2])
    for b in range(0, len(seq), chunk):
        part = seq[b:b + chunk].reshape(-1, seq.shape[2])
        for c in range(seq.shape[2]):
            values = part[:, c]
            values = signed_log1p(values[values != 0].astype(np.float64))
            total[c] += values.sum()
            squares[c] += (values**2).sum()
    count = max(seq.shape[0] * seq.shape[1], 1)
    mean = total / count
    return mean, np.sqrt(np.maximum(squares / count - mean**2, 0.0))


def vocabulary(values: pd.Series, max_size: int) -> list[str]:
    """The ``max_size`` most frequent non-missing values (ties by value), most frequent first."""
    counts = values.dropna().value_counts()
    if counts.empty:
        return []
    frame = pd.DataFrame({"value": counts.index.astype(str), "n": counts.to_numpy()})
    return frame.sort_values(["n", "value"], ascending=[False, True], kind="stable")["value"].head(max_size).tolist()


