"""Turn a raw table into canonical transactions, quarantining bad rows; find duplicates.

Quarantine
----------
A row that cannot become a transaction is not dropped: it goes to the
quarantine frame (columns :data:`QUARANTINE_COLUMNS`) with one reason code.
When a row has several problems, the first in :data:`REASONS` order is kept.

===================== =========================================================
reason                meaning
===================== =========================================================
missing_customer_id   customer id empty (or a null token such as ``NA``)
missing_timestamp     timestamp empty
bad_timestamp         timestamp not readable as a date/time
missing_amount        amount empty (or quantity / unit price, when amount is
                      derived as quantity x unit_price)
bad_amount            amount (or quantity / unit price) not a plain number
bad_quantity          quantity present but not a number
bad_line              line present but not a whole number
duplicate_id          an order line (order id and line) seen before with other
                      content: not an export duplicate, and which one is right
                      is unknown, so the later one waits here
===================== =========================================================

``source_row`` is the 1-based number of the *data row* in the file: the
header line is not counted and blank lines are skipped, so in a file with a
header row N is on line N + 1.

Duplicates
----------
A row repeating an order line already seen is an export duplicate and is
dropped (the first is kept): same ``order_id``, ``line`` and content when the
line is known (the same order and line with other content is quarantined as
``duplicate_id``), else same ``order_id`` and identical content in every
column of the source row. Rows without an order id may be genuine repeat purchases (two
identical coffees on one day): identical ones are kept and only counted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ltvcast.errors import DataError
from ltvcast.ingest.mapping import ColumnMapping
from ltvcast.ingest.parse import (
    missing_mask,
    normalise_ids,
    parse_numbers,
    parse_text,
    parse_timestamps,
)
from ltvcast.ingest.readers import RawTable
from ltvcast.schema import (
    REQUIRED_COLUMNS,
    TRANSACTION_COLUMNS,
    canonical_dtype,
    empty_quarantine,
)
from ltvcast.schema.quarantine import REASONS as ALL_REASONS

#: Reason codes, in the order they are checked.
REASONS: tuple[str, ...] = (
    "missing_customer_id",
    "missing_timestamp",
    "bad_timestamp",
    "missing_amount",
    "bad_amount",
    "bad_quantity",
    "bad_line",
    "duplicate_id",
)
assert set(REASONS) <= set(ALL_REASONS)
_ID_COLUMNS = ("customer_id", "order_id", "product_id")
_TEXT_COLUMNS = ("category", "brand", "channel", "currency")


@dataclass(frozen=True)
class ValidatedRows:
    """Outcome of :func:`validate_rows`.

    Attributes:
        transactions: the good rows in file order, columns
            :data:`~ltvcast.schema.TRANSACTION_COLUMNS` with canonical
            dtypes (:func:`empty_transactions`); index = 0-based data row.
        quarantine: the bad rows, columns :data:`QUARANTINE_COLUMNS`.
        ids_normalised: per id column, how many float-spelled ids were
            rewritten (``17850.0`` -> ``17850``), counted over all rows read.
    """

    transactions: pd.DataFrame
    quarantine: pd.DataFrame
    ids_normalised: dict[str, int]


def resolve_columns(columns: Sequence[str], mapping: ColumnMapping, source: str) -> dict[str, str]:
    """Find the source column of each canonical field.

    Args:
        columns: the column names found in the file.
        mapping: explicit canonical -> source names; fields not mapped are
            looked up under their canonical name.
        source: file path, for messages.

    Returns:
        canonical name -> source column, for every field found (``amount``
        absent and ``unit_price`` + ``quantity`` present when the amount is
        to be derived).

    Raises:
        DataError: a mapped column is not in the file, or a required column
            (customer_id, timestamp, amount — or unit_price and quantity) is
            missing; the message names it, the file, and the columns found.
    """
    found = list(columns)
    listing = ", ".join(found) if found else "(none)"

    def missing(what: str, name: str) -> DataError:
        lowered = {c.strip().lower(): c for c in found}
        hint = ""
        if name.lower() in lowered and lowered[name.lower()] != name:
            hint = f" (did you mean {lowered[name.lower()]!r}? names are case-sensitive)"
        return DataError(
            f"{source}: {what} not found{hint}; columns found: {listing}. "
            "Map columns with --map canonical=SourceColumn or --map-file"
        )

    resolved: dict[str, str] = {}
    for canonical, src in mapping.fields.items():
        if src not in found:
            raise missing(f"column {src!r} (mapped to {canonical})", src)
        resolved[canonical] = src
    explicit_price = "unit_price" in mapping.fields
    for canonical in TRANSACTION_COLUMNS + ("unit_price",):
        if canonical in resolved or canonical not in found:
            continue
        if canonical == "amount" and explicit_price:
            continue  # the user asked for the derived amount
        resolved[canonical] = canonical
    if "amount" in resolved:
        resolved.pop("unit_price", None)
    for canonical in REQUIRED_COLUMNS:
        if canonical in resolved:
            continue
        if canonical == "amount" and "unit_price" in resolved:
            if "quantity" not in resolved:
                raise missing("required column quantity (amount = quantity x unit_price)", "quantity")
            continue
        what = f"required column {canonical}"
        if canonical == "amount":
            what += " (or unit_price and quantity)"
        raise missing(what, canonical)
    return resolved


def _raw_rows_json(frame: pd.DataFrame) -> list[str]:
    records = frame.to_dict(orient="records")
    return [json.dumps(r, ensure_ascii=False, default=str) for r in records]


class _Flags:
    """First-problem-wins bookkeeping of reasons per row."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        n = len(frame)
        self.reason = np.full(n, None, dtype=object)
        self.column = np.full(n, None, dtype=object)

    def flag(self, mask: np.ndarray, reason: str, column: str) -> None:
        new = np.asarray(mask, dtype=bool) & (self.reason == None)
        self.reason[new] = reason
        self.column[new] = column

    @property
    def bad(self) -> np.ndarray:
        return self.reason != None

    def quarantine(self, source: str) -> pd.DataFrame:
        bad = self.bad
        if not bad.any():
            return empty_quarantine()
        rows = self.frame.loc[bad]
        columns = self.column[bad]
        raw_value = np.empty(len(rows), dtype=object)
        for col in pd.unique(columns):
            here = columns == col
            raw_value[here] = rows[col].to_numpy()[here]
        raw_value = pd.Series(raw_value).astype(object)
        raw_value = raw_value.where(raw_value.notna(), "").astype(str)
        return pd.DataFrame(
            {
                "source": pd.Series([source] * len(rows), dtype=str),
                "source_row": (rows.index.to_numpy() + 1).astype(np.int64),
                "reason": pd.Series(self.reason[bad], dtype=str),
                "source_column": pd.Series(columns, dtype=str),
                "raw_value": raw_value,
                "raw_row": pd.Series(_raw_rows_json(rows), dtype=str),
            }
        )


def validate_rows(raw: RawTable, mapping: ColumnMapping) -> ValidatedRows:
    """Parse and check every row of ``raw`` against the canonical schema.

    Args:
        raw: the file read as text (:func:`ltvcast.ingest.readers.read_table`).
        mapping: column names and date options.

    Returns:
        :class:`ValidatedRows`; ``len(transactions) + len(quarantine) ==
        len(raw.frame)``.

    Raises:
        DataError: a required column is missing (:func:`resolve_columns`), or
            the dates mix day-first and month-first readings.
    """
    frame = raw.frame
    cols = resolve_columns([str(c) for c in frame.columns], mapping, raw.source)
    flags = _Flags(frame)
    out: dict[str, pd.Series] = {}
    normalised: dict[str, int] = {}

    for name in _ID_COLUMNS:
        if name in cols:
            out[name], normalised[name] = normalise_ids(frame[cols[name]])
    flags.flag(out["customer_id"].isna().to_numpy(), "missing_customer_id", cols["customer_id"])

    ts_col = cols["timestamp"]
    ts_missing = missing_mask(frame[ts_col])
    out["timestamp"] = parse_timestamps(frame[ts_col], mapping.date_format, mapping.dayfirst)
    flags.flag(ts_missing, "missing_timestamp", ts_col)
    flags.flag(out["timestamp"].isna().to_numpy(), "bad_timestamp", ts_col)

    if "quantity" in cols:
        out["quantity"] = parse_numbers(frame[cols["quantity"]])
    if "amount" in cols:
        parts = {"amount": parse_numbers(frame[cols["amount"]])}
        out["amount"] = parts["amount"]
    else:  # derived: amount = quantity x unit_price
        parts = {"quantity": out["quantity"], "unit_price": parse_numbers(frame[cols["unit_price"]])}
        out["amount"] = parts["quantity"] * parts["unit_price"]
    for part in parts:
        flags.flag(missing_mask(frame[cols[part]]), "missing_amount", cols[part])
    for part, values in parts.items():
        flags.flag(values.isna().to_numpy(), "bad_amount", cols[part])
    flags.flag(~np.isfinite(out["amount"].to_numpy()), "bad_amount", cols[list(parts)[-1]])

    if "quantity" in cols:
        col = cols["quantity"]
        flags.flag(out["quantity"].isna().to_numpy() & ~missing_mask(frame[col]), "bad_quantity", col)
    if "line" in cols:
        col = cols["line"]
        line = parse_numbers(frame[col])
        whole = line.notna() & (line == np.floor(line))
        flags.flag((~whole).to_numpy() & ~missing_mask(frame[col]), "bad_line", col)
        out["line"] = line.where(whole).astype("Int64")

    for name in _TEXT_COLUMNS:
        if name in cols:
            out[name] = parse_text(frame[cols[name]])

    good = ~flags.bad
    index = frame.index[good]
    transactions = pd.DataFrame(
        {
            name: (
                out[name][good].astype(canonical_dtype(name))
                if name in out
                else pd.Series(index=index, dtype=canonical_dtype(name))
            )
            for name in TRANSACTION_COLUMNS
        },
        index=index,
    )
    return ValidatedRows(
        transactions=transactions,
        quarantine=flags.quarantine(raw.source),
        ids_normalised=normalised,
    )


def find_duplicates(
    transactions: pd.DataFrame, content: pd.Series | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Locate export duplicates and identical rows (rules in the module doc).

    Args:
        transactions: canonical transactions (columns
            :data:`~ltvcast.schema.TRANSACTION_COLUMNS`), any order:
            the first occurrence in frame order is the one kept.
        content: per row, a hash of the whole source row (every column of
            the file, mapped or not), aligned with ``transactions``. Rows
            "with the same content" must agree on it, so two lines of one
            order that differ only in an unmapped column (a product code,
            say) are not duplicates. Without it the canonical columns decide.

    Returns:
        (``drop``, ``identical``, ``conflict``): boolean arrays of length
        ``len(transactions)``. ``drop`` marks rows repeating an order line
        already seen; ``identical`` marks rows without an order id identical
        to an earlier row (kept, for reporting); ``conflict`` marks rows whose
        order id and line were seen before with other content (to quarantine
        as ``duplicate_id``).
    """
    n = len(transactions)
    drop = np.zeros(n, dtype=bool)
    identical = np.zeros(n, dtype=bool)
    conflict = np.zeros(n, dtype=bool)
    if n == 0:
        return drop, identical, conflict
    has_order = transactions["order_id"].notna().to_numpy()
    has_line = transactions["line"].notna().to_numpy()
    by_line = has_order & has_line
    by_content = has_order & ~has_line
    rows = transactions[list(TRANSACTION_COLUMNS)]
    if content is not None:
        rows = rows.assign(_content=np.asarray(content))
    if by_line.any():
        seen_key = transactions.loc[by_line, ["order_id", "line"]].duplicated(keep="first").to_numpy()
        seen_row = rows.loc[by_line].duplicated(keep="first").to_numpy()
        drop[by_line] = seen_key & seen_row
        conflict[by_line] = seen_key & ~seen_row
    if by_content.any():
        drop[by_content] = rows.loc[by_content].duplicated(keep="first").to_numpy()
    no_order = ~has_order
    if no_order.any():
        identical[no_order] = rows.loc[no_order].duplicated(keep="first").to_numpy()
    return drop, identical, conflict


def conflict_quarantine(raw: pd.DataFrame, rows: pd.Index, source: str, line_column: str) -> pd.DataFrame:
    """Quarantine rows of ``raw`` (0-based data rows ``rows``) as ``duplicate_id``.

    Args:
        raw: the source table as text.
        rows: data-row indices to quarantine.
        source: the file path for the ``source`` column.
        line_column: the source column holding the line number.
    """
    picked = raw.loc[rows]
    return pd.DataFrame(
        {
            "source": pd.Series([source] * len(picked), dtype=str),
            "source_row": (picked.index.to_numpy() + 1).astype(np.int64),
            "reason": pd.Series(["duplicate_id"] * len(picked), dtype=str),
            "source_column": pd.Series([line_column] * len(picked), dtype=str),
            "raw_value": picked[line_column].astype(str).reset_index(drop=True),
            "raw_row": pd.Series(_raw_rows_json(picked), dtype=str),
        }
    )
