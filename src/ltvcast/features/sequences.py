"""Per-period sequences: customers × periods × channels, from one SQL GROUP BY.

Periods end at the cutoff: with cutoff day ``C`` (shop-local), weekly periods
are ``[C - 7k, C - 7(k-1))`` and monthly periods ``[C - k months, C - (k-1)
months)`` (calendar months aligned to the cutoff's day of the month, clipped
to the month's end: cutoff 2024-03-31 gives ..., 2024-01-31, 2024-02-29), for
``k = lookback .. 1``; index 0 is the oldest period, the last ends at ``C``.

The SQL (``sql/sequences.sql``) maps every local day to its period through a
small calendar table and returns one row per (customer, period) with
activity (one GROUP BY); :func:`fetch_rows` keeps those rows in coordinate
form and :func:`densify` scatters them into a zero-filled float32 array with
one numpy fancy-index assignment (no loop over customers). ``build`` fetches
the rows while the history tables exist and makes the dense array after they
are dropped, which lowers the peak memory.
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


def fetch_rows(
    cur: duckdb.DuckDBPyConnection,
    sql: str,
    channels: tuple[str, ...],
    batch_rows: int = _BATCH_ROWS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the sequences SQL; return its rows in coordinate form.

    Returns:
        ``(cidx, period, values)``: int64 and int32 arrays of length m (one
        entry per customer and period with activity) and a float32 array
        (m, len(channels)). :func:`densify` turns them into the dense array.
    """
    cidx, period, values = [], [], []
    for batch in _reader(cur.sql(sql), batch_rows):
        if batch.num_rows == 0:
            continue
        cidx.append(batch.column("cidx").to_numpy().astype(np.int64, copy=False))
        period.append(batch.column("period").to_numpy().astype(np.int32, copy=False))
        block = np.empty((batch.num_rows, len(channels)), dtype=np.float32)
        for j, ch in enumerate(channels):
            block[:, j] = batch.column(ch).to_numpy(zero_copy_only=False)
        values.append(block)
    if not cidx:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros((0, len(channels)), np.float32)
    return np.concatenate(cidx), np.concatenate(period), np.concatenate(values)


def densify(rows: tuple[np.ndarray, np.ndarray, np.ndarray], n_customers: int, n_periods: int) -> np.ndarray:
    """Scatter :func:`fetch_rows` output into a zero-filled float32 array (customers, periods, channels)."""
    cidx, period, values = rows
    out = np.zeros((n_customers, n_periods, values.shape[1]), dtype=np.float32)
    out[cidx, period] = values
    return out
