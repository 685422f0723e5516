"""BTYD summary (frequency, recency, T, monetary_value) at a cutoff, in DuckDB SQL.

Definitions (Fader, Hardie & Lee 2005, "Counting your customers the easy way",
Marketing Science 24(2), section 2; monetary value as in their JMR 2005
paper "RFM and CLV: using iso-value curves"). The SQL is the ``rfm`` feature
family of :func:`ltvcast.features.build` (``features/sql/rfm.sql`` and the
history steps it reads), run here over a transactions frame, so the models
and the learned features share one definition:

* history is every transaction before 00:00 of the cutoff day in the shop's
  time zone; returns count at their own time, never back-dated;
* a *purchase occasion* is a local calendar day with at least one sale row
  (``kind = 'sale'``; without a ``kind`` column a negative amount is a
  return); zero-value sales still make an occasion, a day with only returns
  does not;
* refunds are netted by order (``features/sql/README.md``, "Refunds"): with
  an ``order_id`` column, a refund naming a sale order of the same customer
  before the cutoff counts on that order's day, and (``net``) a day whose
  sales such refunds bring to <= 0 is no occasion; a refund naming no such
  order lowers ``total_spend`` only and is reported in
  ``unmatched_refunds`` / ``unmatched_refund_amount``; without order ids a
  refund counts on its own day;
* an occasion's value is the spend of that day's orders in the revenue
  basis (``net``: sales minus their refunds; ``gross``: sales), summed
  exactly in DECIMAL(18,4);
* ``frequency`` x = occasions − 1 (repeat occasions);
* ``recency`` t_x = days from the first to the last occasion, in ``unit``;
* ``T`` = days from the first occasion to the last day *before* the cutoff,
  in ``unit`` — the papers' convention: with calibration data before
  1997-10-01, a customer first seen 1997-01-01 has T = 272 d / 7 = 38.86 w;
* ``monetary_value`` = mean value of the repeat occasions (the first occasion
  excluded); 0.0 when frequency is 0.

Input checks (docs/data.md, "Frames handed to the library"): the frame goes
through :func:`ltvcast.ingest.validate.validate_frame`, the checks of
``ltvcast ingest``: a missing customer id, timestamp or amount is a
:class:`~ltvcast.errors.DataError` naming the rows and column (or, with
``on_invalid="drop"``, the row is dropped and counted); repeated order lines
are dropped and counted. The counts are in ``result.attrs["validation"]``.

Also returned: ``n_transactions`` (the sale orders of the occasions: an order
of many lines is one; rows without an order id are one order per timestamp,
as ``history_orders.sql`` groups them), ``total_spend``
(all spend before the cutoff in the revenue basis, returns on non-purchase
days and unmatched refunds included; currency), ``first_purchase`` and
``last_purchase`` (local dates), ``unmatched_refunds`` (count) and
``unmatched_refund_amount`` (currency, positive).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from ltvcast.errors import DataError
from ltvcast.features._sql import Context, check_timezone, cutoff_day, render, source_views, store_columns
from ltvcast.ingest.validate import validate_frame
from ltvcast.timeutil import DateLike, check_cutoff, observation_end, unit_days

#: Days per unit of recency and T (``H`` hours, ``D`` days, ``W`` weeks, ``M`` months).
UNIT_DAYS = {"H": 1.0 / 24.0, "D": 1.0, "W": 7.0, "M": 30.4375}
#: The columns of :func:`rfm_summary`, in order.
SUMMARY_COLUMNS = ("customer_id", "frequency", "recency", "T", "monetary_value", "total_spend", "n_transactions",
                   "first_purchase", "last_purchase", "unmatched_refunds", "unmatched_refund_amount")


def summary_sql(ctx: Context, unit_days: float) -> str:
    """The one query of the BTYD summary over the history steps (DuckDB text; the Spark engine transpiles it).

    Reads ``rfm.sql`` (rendered with ``ctx``) and ``h_daily``; one row per
    customer with a sale before the cutoff: ``customer_id``, ``frequency``,
    ``recency`` and ``T`` in units of ``unit_days`` days, ``monetary_value``,
    ``total_spend``, ``n_transactions``, ``first_offset`` / ``last_offset``
    (days from the first / last purchase day to the cutoff day; the first
    purchase day is ``cutoff − first_offset − 1``, the last ``cutoff −
    last_offset``), ``unmatched_refunds``, ``unmatched_refund_amount``. Dates
    are left to each engine: DuckDB's date − integer does not transpile.
    """
    return f"""
        WITH rfm AS ({render("rfm", ctx)}),
        sales AS (SELECT customer_id, SUM(orders) AS n_transactions FROM h_daily GROUP BY customer_id)
        SELECT rfm.customer_id,
               rfm.frequency,
               rfm.recency_days / CAST({unit_days!r} AS DOUBLE) AS recency,
               rfm."T_days" / CAST({unit_days!r} AS DOUBLE) AS "T",
               rfm.monetary_value,
               rfm.spend_total AS total_spend,
               sales.n_transactions,
               rfm."T_days" AS first_offset,
               rfm.days_since_last_purchase AS last_offset,
               rfm.unmatched_refunds,
               rfm.unmatched_refund_amount
        FROM rfm JOIN sales USING (customer_id)
        WHERE rfm.occasions > 0
        """

_STEPS = ("history_lines", "history_orders", "history_daily")
_COLUMNS = ("customer_id", "timestamp", "amount", "kind", "order_id")
#: Key of the input check report in ``rfm_summary(...).attrs``
#: (:meth:`ltvcast.ingest.validate.FrameReport.as_dict`).
REPORT_KEY = "validation"


def rfm_summary(
    tx: pd.DataFrame,
    cutoff,
    unit: str = "W",
    *,
    timezone: str = "UTC",
    revenue_basis: str = "net",
    on_invalid: str = "raise",
    data_end: DateLike | None = None,
    allow_future_cutoff: bool = False,
) -> pd.DataFrame:
    """BTYD summary of every customer with a purchase before ``cutoff``.

    Args:
        tx: transactions (``customer_id``, ``timestamp`` UTC — naive read as
            UTC, or ISO 8601 text —, ``amount`` in currency, optional
            ``kind``, ``order_id`` (refunds are netted by it), ``line``);
            other columns are ignored; any
            index (the result is keyed by ``customer_id``, never by
            position). Checked by
            :func:`ltvcast.ingest.validate.validate_frame`.
        cutoff: calendar day (``"YYYY-MM-DD"``, date or midnight timestamp).
        unit: time unit of recency and T: ``"H"`` hours, ``"D"`` days,
            ``"W"`` weeks, ``"M"`` months of 30.4375 days (case-insensitive).
            Occasions are calendar days whatever the unit, so in hours
            recency and T are whole days x 24.
        timezone: the shop's IANA time zone; it decides calendar days.
        revenue_basis: ``"net"`` (sales minus returns) or ``"gross"``.
        on_invalid: ``"raise"`` (default): a row with a missing customer id,
            timestamp or amount (or an unreadable one) is an error;
            ``"drop"``: such rows are dropped and listed in the report.
        data_end: the last observed day of the data (``YYYY-MM-DD``), as
            ``--data-end`` of the CLI; None: the day of the last
            transaction (the CLI's rule). A cutoff later than the day after
            it is refused as the CLI refuses it
            (:func:`ltvcast.timeutil.check_cutoff`), and a ``data_end``
            before the last transaction day is an error. History already
            cut at the cutoff (the models hold it so) says nothing about
            where the data ends: pass its ``observation_end``. An empty
            frame without ``data_end`` is not checked (its summary is empty).
        allow_future_cutoff: accept a cutoff after the data's end anyway.

    Returns:
        One row per customer, sorted by ``customer_id`` (pandas string):
        ``customer_id``, ``frequency``, ``recency``, ``T`` (floats,
        ``unit``), ``monetary_value``, ``total_spend`` (currency),
        ``n_transactions``, ``first_purchase``, ``last_purchase`` (dates),
        ``unmatched_refunds`` (int), ``unmatched_refund_amount`` (currency).
        Customers with no sale before the cutoff are absent.
        ``result.attrs["validation"]`` reports the input check as plain
        values (:meth:`ltvcast.ingest.validate.FrameReport.as_dict`):
        ``rows_in``, ``rows_kept``, ``dropped`` (reason -> rows),
        ``duplicates_dropped``, ``invalid_rows`` (positions, reasons,
        columns, values of the dropped rows).

    Raises:
        DataError: a required column is missing; the unit, time zone,
            revenue basis or ``on_invalid`` is unknown; a row is invalid
            (``on_invalid="raise"``; the message names reason, column and
            0-based row positions); ``data_end`` is not a date or is before
            the last transaction day.
        CutoffError: ``cutoff`` is not a calendar day, or it is after the
            day following the data's end (``data_end``, else the last
            transaction day) and ``allow_future_cutoff`` is False.
    """
    missing = [c for c in _COLUMNS[:3] if c not in tx.columns]
    if missing:
        raise DataError(f"transactions lack column(s) {missing}; found {list(tx.columns)}")
    per_unit = unit_days(unit)
    if revenue_basis not in ("net", "gross"):
        raise DataError(f"revenue basis {revenue_basis!r} is not 'net' or 'gross'")
    tx, report = validate_frame(tx, on_invalid=on_invalid, what="transactions")
    day = cutoff_day(cutoff)
    ctx = Context(
        cutoff_day=day,
        timezone=check_timezone(timezone),
        windows=(),
        basis=revenue_basis,
        population="buyers",
        channels=(),
        first_day=day,
    )
    if data_end is not None or len(tx):
        check_cutoff(day, observation_end(tx, data_end), allow_future=allow_future_cutoff)
    # The ids are encoded once (codes in sorted id order, so ORDER BY code is
    # ORDER BY customer_id) and the SQL groups integers; the ids come back at
    # the end by position. Only the needed columns are handed to DuckDB, as an
    # Arrow table over the frame's own buffers (numbers and timestamps are not
    # copied; a pandas frame would be scanned value by value).
    codes, ids = pd.factorize(tx["customer_id"], sort=True)  # no missing id: validated
    ids = pd.array(ids, dtype="string")
    ts = tx["timestamp"]
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    frame = {
        "customer_id": pa.array(codes.astype("int32", copy=False)),
        "timestamp": pa.array(ts.to_numpy()),
        "amount": pa.array(tx["amount"].to_numpy(dtype="float64")),
    }
    if "kind" in tx.columns:
        frame["kind"] = _arrow_text(tx["kind"])
    if "order_id" in tx.columns:  # refunds are netted by order (features/sql/README.md, "Refunds")
        frame["order_id"] = _arrow_text(tx["order_id"])
    frame = pa.table(frame)
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET enable_progress_bar = false")
        # h_orders / h_daily are temp tables whose row order nothing reads
        # (the sums are exact DECIMALs, the result is ordered): DuckDB may
        # write them in parallel without keeping the input's order.
        con.execute("SET preserve_insertion_order = false")
        con.register("tx_frame", frame)
        con.execute("CREATE VIEW transactions AS SELECT * FROM tx_frame")
        con.execute(source_views(store_columns(con), customer_key="INTEGER")["transactions"])
        for step in _STEPS:
            con.execute(render(step, ctx))
        out = con.execute(summary_sql(ctx, per_unit) + "ORDER BY rfm.customer_id").df()
    finally:
        con.close()
    for col, offset, extra in (("first_purchase", "first_offset", 1), ("last_purchase", "last_offset", 0)):
        out[col] = _days_before(day, out.pop(offset).round().astype("int64").to_numpy() + extra)
    out = out[list(SUMMARY_COLUMNS)]
    out["customer_id"] = pd.Series(ids.take(out["customer_id"].to_numpy()), dtype="string")
    out = out.reset_index(drop=True)
    out.attrs[REPORT_KEY] = report.as_dict()
    return out


def _arrow_text(col: pd.Series) -> pa.ChunkedArray | pa.Array:
    """A text column as Arrow strings (nulls kept), without a copy when it is Arrow-backed already."""
    arr = col.astype("string").array
    data = getattr(arr, "_pa_array", None)
    return data if data is not None else pa.array(arr.to_numpy(dtype=object, na_value=None), type=pa.string())


def _days_before(day, days: np.ndarray) -> np.ndarray:
    """``day − days[i]`` as an object array of :class:`datetime.date` (one date object per distinct value)."""
    uniq, inverse = np.unique(days, return_inverse=True)
    start = np.datetime64(day.isoformat(), "D")
    dates = pd.to_datetime(start - uniq.astype("timedelta64[D]")).date
    return dates.take(inverse.reshape(-1))
