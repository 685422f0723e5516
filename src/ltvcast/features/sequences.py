"""Per-period sequences: customers × periods × channels, from one SQL GROUP BY.

Periods end at the cutoff: with cutoff day ``C`` (shop-local), weekly periods
are ``[C - 7k, C - 7(k-1))`` and monthly periods ``[C - k months, C - (k-1)
months)`` (calendar months aligned to the cutoff's day of the month, clipped
to the month's end: cutoff 2024-03-31 gives ..., 2024-01-31, 2024-02-29), for
``k = lookback .. 1``; index 0 is the oldest period, the last ends at ``C``.

The SQL (``sql/sequences.sql``) maps every local day to its period through a
small calendar table and returns one row per (customer, period) with
activity; numpy scatters the rows into a zero-filled float32 array, batch by
batch (no loop over customers).
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from ltvcast.errors import DataError

#: Every channel sequences.sql can return, with its definition and unit.
CHANNEL_DOCS: dict[str, str] = {
    "occasions": "purchase occasions (local days with a sale row) in the period [count]",
    "orders": "distinct orders with a sale row in the period [count]",
    "spend": "spend in the revenue basis in the period (net: sales + returns of the period) [currency]",
    "items": "units sold (sale quantity, missing = 1) in the period [units]",
    "returns": "return rows with a timestamp in the period [count]",
    "returned_value": "money given back by returns in the period (positive) [currency]",
    "sessions": "sessions whose first event falls in the period [count]",
    "views": "view events in the period [count]",
    "add_to_carts": "add_to_cart events in the period [count]",
    "purchase_events": "purchase events in the period [count]",
}
SEQUENCE_CHANNELS: tuple[str, ...] = tuple(CHANNEL_DOCS)
DEFAULT_CHANNELS: tuple[str, ...] = ("orders", "spend", "items", "returns", "sessions", "views", "add_to_carts")
DEFAULT_LOOKBACK: dict[str, int] = {"W": 52, "M": 24}
_BATCH_ROWS = 1 << 20


def check_channels(channels) -> tuple[str, ...]:
    """Return ``channels`` as a tuple; raise DataError for an unknown or repeated one."""
    chans = tuple(channels)
    unknown = [c for c in chans if c not in CHANNEL_DOCS]
    if unknown or not chans or len(set(chans)) != len(chans):
        raise DataError(
            f"sequence channels {list(chans)} must be distinct names from {list(SEQUENCE_CHANNELS)}"
        )
    return chans


def period_starts(cutoff: date, period: str, lookback: int) -> np.ndarray:
    """Start days of the ``lookback`` periods before ``cutoff`` (oldest first), ``datetime64[D]``."""
    if period == "W":
        starts = [cutoff - timedelta(days=7 * k) for k in range(lookback, 0, -1)]
    elif period == "M":
        base = pd.Timestamp(cutoff)
        starts = [(base - pd.DateOffset(months=k)).date() for k in range(lookback, 0, -1)]
    else:
        raise DataError(f"period {period!r} is not 'W' (weeks) or 'M' (months)")
    return np.array(starts, dtype="datetime64[D]")


def calendar(starts: np.ndarray, cutoff: date) -> pa.Table:
    """Arrow table (``day`` date32, ``period`` int32): every local day of the lookback and its period."""
    end = np.datetime64(cutoff, "D")
    if len(starts) == 0:
        days = np.array([], dtype="datetime64[D]")
    else:
        days = np.arange(starts[0], end, dtype="datetime64[D]")
    periods = np.searchsorted(starts, days, side="right") - 1
    return pa.table(
        {
            "day": pa.array(days, type=pa.date32()),
            "period": pa.array(periods.astype(np.int32), type=pa.int32()),
        }
    )


def _reader(rel: duckdb.DuckDBPyRelation, batch_rows: int):
    for name in ("to_arrow_reader", "fetch_arrow_reader", "record_batch"):
        method = getattr(rel, name, None)
        if method is not None:
            return method(batch_rows)
    raise RuntimeError("this duckdb version offers no Arrow batch reader")  # pragma: no cover


def scatter(
    cur: duckdb.DuckDBPyConnection,
    sql: str,
    n_customers: int,
    n_periods: int,
    channels: tuple[str, ...],
    batch_rows: int = _BATCH_ROWS,
) -> np.ndarray:
    """Run the sequences SQL and scatter its rows into a float32 array.

    Args:
        cur: connection holding ``h_pop``, ``h_calendar`` and the history tables.
        sql: rendered ``sequences.sql`` (columns ``cidx``, ``period``, then
            ``channels``; one row per customer and period with activity).

    Returns:
        Array of shape ``(n_customers, n_periods, len(channels))``, zeros
        where a customer had no activity in a period. Rows arrive in Arrow
        batches and are scattered batch by batch (no loop over customers).
    """
    out = np.zeros((n_customers, n_periods, len(channels)), dtype=np.float32)
    for batch in _reader(cur.sql(sql), batch_rows):
        if batch.num_rows == 0:
            continue
        cidx = batch.column("cidx").to_numpy()
        per = batch.column("period").to_numpy()
        for j, ch in enumerate(channels):
            out[cidx, per, j] = batch.column(ch).to_numpy(zero_copy_only=False)
    return out
