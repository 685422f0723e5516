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
    NULL_TOKENS,
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


# -- frames handed to the library ---------------------------------------------------

#: Reasons :func:`validate_frame` can give a row, in the order they are checked
#: (the ingest codes of :data:`REASONS`; a row with several problems gets the first).
FRAME_REASONS: tuple[str, ...] = (
    "missing_customer_id",
    "missing_timestamp",
    "bad_timestamp",
    "missing_amount",
    "bad_amount",
    "bad_line",
    "duplicate_id",
)
_MAX_LISTED = 10


@dataclass(frozen=True, eq=False)
class FrameReport:
    """What :func:`validate_frame` found in a transactions frame.

    Attributes:
        rows_in: rows of the frame handed in.
        rows_kept: rows used (``rows_in - len(invalid) - duplicates_dropped``).
        invalid: the invalid rows dropped (only with ``on_invalid="drop"``;
            empty otherwise): columns ``row`` (0-based position in the frame
            handed in, int64), ``index`` (its index label), ``reason`` (a code
            of :data:`FRAME_REASONS`), ``column`` and ``value`` (the offending
            value as text, ``""`` when missing).
        dropped: reason -> number of invalid rows dropped (reasons that occurred).
        duplicates_dropped: rows repeating an order line seen earlier in the
            frame (same ``order_id`` and ``line`` and same canonical content;
            without ``line``, same ``order_id`` and content): dropped, the
            first kept — the rule of :func:`find_duplicates`.
    """

    rows_in: int
    rows_kept: int
    invalid: pd.DataFrame
    dropped: dict[str, int]
    duplicates_dropped: int

    @property
    def rows_dropped(self) -> int:
        """Invalid rows plus duplicates dropped."""
        return len(self.invalid) + self.duplicates_dropped

    def as_dict(self, max_rows: int = 1000) -> dict[str, object]:
        """The report as plain JSON-able values (for ``DataFrame.attrs``, which Parquet writes as JSON).

        Keys: ``rows_in``, ``rows_kept``, ``dropped`` (reason -> rows),
        ``duplicates_dropped``, ``invalid_rows`` (the first ``max_rows``
        dropped rows as ``{"row", "reason", "column", "value"}``; ``row`` is
        the 0-based position in the frame handed in) and
        ``invalid_rows_listed_all`` (False when the list was cut).
        """
        head = self.invalid.head(max_rows)
        return {
            "rows_in": int(self.rows_in),
            "rows_kept": int(self.rows_kept),
            "dropped": {str(k): int(v) for k, v in self.dropped.items()},
            "duplicates_dropped": int(self.duplicates_dropped),
            "invalid_rows": [
                {"row": int(r), "reason": str(why), "column": str(c), "value": str(v)}
                for r, why, c, v in zip(head["row"], head["reason"], head["column"], head["value"], strict=True)
            ],
            "invalid_rows_listed_all": len(self.invalid) <= max_rows,
        }


def _blank_ids(ids: pd.Series) -> np.ndarray:
    """True where an id is missing: NA, or text that is empty / a null token once stripped."""
    missing = ids.isna().to_numpy()
    if ids.dtype.kind in "iub":  # integers cannot be blank
        return missing
    if pd.api.types.is_string_dtype(ids.dtype) and ids.dtype != object:
        # pandas strings (Arrow-backed in a store read): vectorised.
        return missing | ids.str.strip().isin(NULL_TOKENS).to_numpy(dtype=bool, na_value=False)
    # Python objects: checked on the distinct values only (ids repeat).
    uniq = pd.unique(np.asarray(ids[~missing], dtype=object))
    blank = [u for u in uniq if isinstance(u, str) and u.strip() in NULL_TOKENS]
    if blank:
        missing = missing | ids.isin(blank).to_numpy(dtype=bool, na_value=False)
    return missing


def _text_missing(values: pd.Series) -> np.ndarray:
    missing = values.isna().to_numpy().copy()
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        text = values[~missing]
        if len(text):
            missing[~missing] = text.astype(str).str.strip().isin(NULL_TOKENS).to_numpy()
    return missing


def _frame_timestamps(values: pd.Series, what: str) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """(timestamps as UTC datetimes, missing, unreadable) of a timestamp column."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values, values.isna().to_numpy(), np.zeros(len(values), dtype=bool)
    if not (values.dtype == object or pd.api.types.is_string_dtype(values.dtype)):
        raise DataError(
            f"{what}: column timestamp has dtype {values.dtype}; give datetimes (naive = UTC) or ISO 8601 text"
        )
    missing = _text_missing(values)
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
    todo = ~missing
    if todo.any():
        text = values[todo].astype(str).str.strip()
        parsed[todo] = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce").astype(
            "datetime64[us, UTC]"
        )
    return parsed, missing, parsed.isna().to_numpy() & ~missing


def _frame_amounts(values: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """(amounts as float64, missing, not a finite number) of an amount column."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values, np.zeros(len(values), dtype=bool), np.ones(len(values), dtype=bool)
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(numbers)
        return values, missing, ~np.isfinite(numbers) & ~missing
    missing = _text_missing(values)
    numbers = pd.to_numeric(values.where(~missing), errors="coerce").astype(np.float64)
    arr = numbers.to_numpy()
    return numbers, missing, ~np.isfinite(arr) & ~missing


def validate_frame(
    frame: pd.DataFrame, *, on_invalid: str = "raise", what: str = "transactions frame"
) -> tuple[pd.DataFrame, FrameReport]:
    """Check a transactions frame handed to the library, as :func:`validate_rows` checks a file.

    The frame's own values are used (no text parsing of ids or numbers
    beyond what is described here): ``customer_id`` is missing where NA or,
    for text, empty / a null token (:data:`~ltvcast.ingest.parse.NULL_TOKENS`)
    once stripped; ``timestamp`` must be datetimes (naive = UTC) or ISO 8601
    text (missing -> ``missing_timestamp``, unreadable -> ``bad_timestamp``);
    ``amount`` must be numbers or numeric text (missing -> ``missing_amount``,
    not a finite number -> ``bad_amount``); ``line``, when present, whole
    numbers (``bad_line``). Repeated order lines are de-duplicated by
    :func:`find_duplicates` on the canonical columns present (rows without an
    order id are never de-duplicated); an order line seen before with other
    content is invalid (``duplicate_id``; the first is kept).

    Cost on an already-canonical frame (a store read): a few vectorised
    passes; the id check looks at distinct ids only, the duplicate check at
    rows with an order id only; no copy is made when nothing changes.

    Args:
        frame: transactions with at least ``customer_id``, ``timestamp``,
            ``amount``; any index (rows are reported by 0-based position).
        on_invalid: ``"raise"`` (default): invalid rows are an error;
            ``"drop"``: they are dropped and listed in the report.
        what: the frame's name in messages.

    Returns:
        ``(clean, report)``: ``clean`` holds the kept rows in frame order,
        same columns and index labels (the input itself when nothing was
        dropped or converted; a text ``timestamp`` becomes
        ``datetime64[us, UTC]``, a text ``amount`` float64); ``report`` a
        :class:`FrameReport`.

    Raises:
        DataError: a required column is missing (the message lists the
            columns found); ``on_invalid`` is unknown; a column has an
            unusable dtype; a ``kind`` column holds a value other than
            ``sale`` / ``return`` or a return with a positive amount (the
            store's contract, whatever ``on_invalid``); or, with
            ``on_invalid="raise"``, some row is
            invalid (the message gives reason, column and row positions).
    """
    if on_invalid not in ("raise", "drop"):
        raise DataError(f"on_invalid {on_invalid!r} is not 'raise' or 'drop'")
    missing_cols = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing_cols:
        raise DataError(f"{what} lacks column(s) {missing_cols}; found {list(frame.columns)}")
    n = len(frame)
    # First problem wins: per row the 1-based index into `flags` (0 = fine).
    first = np.zeros(n, dtype=np.int8)
    flags: list[tuple[str, str]] = []

    def flag(mask: np.ndarray, code: str, col: str) -> None:
        if not mask.any():
            return
        flags.append((code, col))
        first[mask & (first == 0)] = len(flags)

    ts, ts_missing, ts_bad = _frame_timestamps(frame["timestamp"], what)
    amount, amount_missing, amount_bad = _frame_amounts(frame["amount"])
    flag(_blank_ids(frame["customer_id"]), "missing_customer_id", "customer_id")
    flag(ts_missing, "missing_timestamp", "timestamp")
    flag(ts_bad, "bad_timestamp", "timestamp")
    flag(amount_missing, "missing_amount", "amount")
    flag(amount_bad, "bad_amount", "amount")
    line = None
    if "line" in frame.columns:
        line_values = frame["line"]
        if pd.api.types.is_numeric_dtype(line_values.dtype) and not pd.api.types.is_bool_dtype(line_values.dtype):
            numbers = line_values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            numbers = pd.to_numeric(line_values.where(~_text_missing(line_values)), errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
        present = ~_text_missing(line_values)
        flag(present & ~(np.isfinite(numbers) & (numbers == np.floor(numbers))), "bad_line", "line")
        line = numbers
    original = frame
    ts_converted = not pd.api.types.is_datetime64_any_dtype(frame["timestamp"].dtype)
    amount_converted = not pd.api.types.is_numeric_dtype(frame["amount"].dtype)
    if ts_converted or amount_converted:
        frame = frame.assign(
            **({"timestamp": ts.to_numpy()} if ts_converted else {}),
            **({"amount": amount.to_numpy()} if amount_converted else {}),
        )

    if "kind" in frame.columns:  # the store's contract: 'sale' or 'return', returns < 0 (docs/store.md)
        kinds = frame["kind"].astype("string")
        unknown = ~kinds.isin(("sale", "return")).to_numpy(dtype=bool, na_value=False)
        positive_return = (kinds == "return").to_numpy(dtype=bool, na_value=False) & (
            pd.to_numeric(frame["amount"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan) > 0
        )
        for mask, problem in ((unknown, "kind is not 'sale' or 'return'"),
                              (positive_return, "a 'return' has a positive amount (returns are < 0)")):
            if mask.any():
                pos = np.flatnonzero(mask)
                values = sorted({str(v) for v in frame["kind"].iloc[pos[:_MAX_LISTED]]})
                raise DataError(f"{what}: {problem} at row(s) {', '.join(map(str, pos[:_MAX_LISTED]))}"
                                f"{f' and {len(pos) - _MAX_LISTED} more' if len(pos) > _MAX_LISTED else ''}"
                                f" (kind {values}; rows are 0-based positions)")

    # Repeated order lines: only sale rows with an order id can repeat one (a return of an order line
    # shares its order id and line: a `kind` of 'return', or without `kind` a negative amount).
    drop_dup = np.zeros(n, dtype=bool)
    if "order_id" in frame.columns:
        if "kind" in frame.columns:
            sale = (frame["kind"].astype("string").fillna("sale") == "sale").to_numpy(dtype=bool)
        else:
            sale = ~(pd.to_numeric(frame["amount"], errors="coerce").to_numpy(dtype=np.float64) < 0)
        has_order = frame["order_id"].notna().to_numpy() & (first == 0) & sale
        if has_order.sum() > 1:
            pos = np.flatnonzero(has_order)
            sub = frame.iloc[pos]
            canon = pd.DataFrame(
                {
                    c: (sub[c].to_numpy() if c in sub.columns else np.full(len(sub), None, dtype=object))
                    for c in TRANSACTION_COLUMNS
                }
            )
            if line is not None:
                canon["line"] = pd.array(line[pos], dtype="Float64")
            drop, _identical, conflict = find_duplicates(canon)
            drop_dup[pos[drop]] = True
            clash = np.zeros(n, dtype=bool)
            clash[pos[conflict]] = True
            flag(clash, "duplicate_id", "line" if "line" in frame.columns else "order_id")

    bad = first > 0
    positions = np.flatnonzero(bad)
    reason = np.array([None] + [code for code, _ in flags], dtype=object)[first[positions]]
    column = np.array([None] + [col for _, col in flags], dtype=object)[first[positions]]
    invalid = pd.DataFrame(
        {
            "row": positions.astype(np.int64),
            "index": pd.Series(frame.index[positions], dtype=object),
            "reason": pd.Series(reason, dtype=object),
            "column": pd.Series(column, dtype=object),
            "value": pd.Series(
                [
                    "" if pd.isna(v) else str(v)
                    for v in (original[c].iloc[p] for c, p in zip(column, positions, strict=True))
                ],
                dtype=object,
            ),
        }
    )
    found = pd.Series(reason, dtype=object).value_counts()
    counts = {r: int(found[r]) for r in FRAME_REASONS if r in found.index}
    if len(invalid) and on_invalid == "raise":
        parts = []
        for r in counts:
            rows = invalid.loc[invalid["reason"] == r, ["row", "column"]]
            listed = ", ".join(str(p) for p in rows["row"].head(_MAX_LISTED))
            more = f" and {len(rows) - _MAX_LISTED} more" if len(rows) > _MAX_LISTED else ""
            parts.append(f"{r} (column {rows['column'].iloc[0]}) at row(s) {listed}{more}")
        raise DataError(
            f"{what}: {len(invalid)} invalid row(s) of {n}: " + "; ".join(parts)
            + " (rows are 0-based positions). Fix them, or pass on_invalid='drop' to drop and count them"
        )
    keep = ~bad & ~drop_dup
    clean = frame if keep.all() else frame.iloc[np.flatnonzero(keep)]
    report = FrameReport(
        rows_in=n,
        rows_kept=int(keep.sum()),
        invalid=invalid if on_invalid == "drop" else invalid.iloc[:0],
        dropped=counts,
        duplicates_dropped=int(drop_dup.sum()),
    )
    return clean, report
