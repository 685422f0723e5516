"""Ingest one source file: read as text, map, validate, quarantine, de-duplicate.

>>> result = ingest("orders.csv", {"customer_id": "CustomerID", "amount": "Sales",
...                                 "timestamp": "InvoiceDate"}, dayfirst=True)  # doctest: +SKIP
>>> result.stats.rows_read == (result.stats.rows_kept + result.stats.rows_quarantined
...                            + result.stats.duplicates_dropped
...                            + result.stats.rows_excluded)  # doctest: +SKIP
True

See :mod:`ltvcast.ingest.readers` (formats), :mod:`ltvcast.ingest.mapping`
(mapping, ``unit_price``), :mod:`ltvcast.ingest.validate` (quarantine reasons,
row numbers, duplicate rules), :mod:`ltvcast.timeutil` (observation end).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ltvcast.errors import DataError
from ltvcast.ingest.mapping import ColumnMapping, excluded_rows
from ltvcast.ingest.parse import normalise_ids, number_format
from ltvcast.ingest.privacy import drop_personal_columns
from ltvcast.ingest.readers import BadRow, RawTable, read_table
from ltvcast.ingest.validate import REASONS, conflict_quarantine, find_duplicates, resolve_columns, validate_rows
from ltvcast.timeutil import DateLike, declared_day, observation_end


@dataclass(frozen=True)
class IngestStats:
    """Counts of one ingest.

    Attributes:
        source: absolute path of the file.
        format: ``csv``, ``whitespace`` or ``parquet``.
        encoding: text encoding used (None for Parquet).
        rows_read: data rows in the file (header not counted).
        rows_kept: rows in ``IngestResult.transactions``.
        quarantined: reason code -> rows (only reasons that occurred).
        duplicates_dropped: export duplicates dropped (repeated order lines).
        identical_rows_kept: rows without order id identical to an earlier
            row; kept (they may be genuine repeat purchases).
        ids_normalised: float-spelled ids rewritten (``17850.0`` -> ``17850``)
            in the rows kept (a subset of ``rows_kept`` per column; dropped
            duplicates and quarantined rows are not counted), all id columns
            together; ``ids_normalised_by_column`` splits it.
        zero_value_sales: kept sale rows (amount >= 0, not a return) whose
            amount is exactly 0 (a subset of ``rows_kept``); warned about.
        excluded: ``column=value`` -> rows left out by the mapping's
            ``exclude`` rule (values that occurred; a row counts under the
            first rule it matches, so the counts add up to ``rows_excluded``).
        ids_normalised_by_column: id column -> count.
        started_at: when the ingest started (UTC).
        seconds: wall time of the ingest.
        personal_columns_dropped: personal columns dropped at read time
            (never stored, not even in quarantined raw rows).
    """

    source: str
    format: str
    encoding: str | None
    rows_read: int
    rows_kept: int
    quarantined: dict[str, int]
    duplicates_dropped: int
    identical_rows_kept: int
    ids_normalised: int
    ids_normalised_by_column: dict[str, int]
    started_at: pd.Timestamp
    seconds: float
    personal_columns_dropped: tuple[str, ...] = ()
    zero_value_sales: int = 0
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def rows_quarantined(self) -> int:
        """Total quarantined rows (all reasons)."""
        return sum(self.quarantined.values())

    @property
    def rows_excluded(self) -> int:
        """Rows left out by the mapping's exclusion rule (all rules)."""
        return sum(self.excluded.values())


@dataclass(frozen=True)
class IngestResult:
    """What :func:`ingest` returns.

    Attributes:
        transactions: canonical transactions, one row per kept row, sorted by
            customer_id then timestamp (stable: file order within ties),
            index 0..n-1. Columns and dtypes: see
            :func:`ltvcast.ingest.validate.empty_transactions`.
        quarantine: rows that could not be used, columns
            :data:`ltvcast.ingest.validate.QUARANTINE_COLUMNS`, in file order.
        stats: :class:`IngestStats`.
        mapping: the mapping used.
        data_end: the declared last observed day (UTC 00:00), or None.
    """

    transactions: pd.DataFrame
    quarantine: pd.DataFrame
    stats: IngestStats
    mapping: ColumnMapping = field(default_factory=ColumnMapping)
    data_end: pd.Timestamp | None = None

    @property
    def observation_end(self) -> pd.Timestamp:
        """``data_end`` if declared, else the last transaction day (UTC 00:00)."""
        return observation_end(self.transactions, self.data_end)


def _as_mapping(mapping: ColumnMapping | Mapping[str, str] | None) -> ColumnMapping:
    if mapping is None:
        return ColumnMapping()
    if isinstance(mapping, ColumnMapping):
        return mapping
    return ColumnMapping(fields=dict(mapping))


def _kept_ids_normalised(
    raw: RawTable, cmap: ColumnMapping, columns: Mapping[str, int], kept: pd.Index
) -> dict[str, int]:
    """Float-spelled ids among the kept rows only, per canonical id column."""
    if not any(columns.values()):
        return {name: 0 for name in columns}
    resolved = resolve_columns([str(c) for c in raw.frame.columns], cmap, raw.source)
    return {
        name: normalise_ids(raw.frame.loc[kept, resolved[name]])[1] if count else 0
        for name, count in columns.items()
    }


def _bad_row_quarantine(bad: tuple[BadRow, ...], columns: list[str], personal: set[str], source: str) -> pd.DataFrame:
    """Quarantine rows (reason ``bad_row``) of malformed CSV rows (:meth:`BadRow.note`, :meth:`BadRow.record`)."""
    return pd.DataFrame({
        "source": pd.Series([source] * len(bad), dtype=str),
        "source_row": pd.Series([b.row for b in bad], dtype="int64"),
        "reason": pd.Series(["bad_row"] * len(bad), dtype=str),
        "source_column": pd.Series([""] * len(bad), dtype=str),
        "raw_value": pd.Series([b.note for b in bad], dtype=str),
        "raw_row": pd.Series([b.record(columns, personal) for b in bad], dtype=str),
    })


def _exclude(raw: RawTable, cmap: ColumnMapping) -> tuple[RawTable, dict[str, int]]:
    """Leave out the rows matching ``cmap.exclude`` (:func:`~ltvcast.ingest.mapping.excluded_rows`);
    the rest keep their index (= data row numbers).

    Raises:
        DataError: a rule's column is neither mapped nor in the file.
    """
    if not cmap.exclude:
        return raw, {}
    hit, out = excluded_rows(raw.frame, cmap.exclude, cmap.fields, raw.source)
    if not hit.any():
        return raw, out
    kept = RawTable(frame=raw.frame.loc[~hit], source=raw.source, format=raw.format, encoding=raw.encoding,
                    bad_rows=raw.bad_rows)
    return kept, out


def _zero_value_sales(transactions: pd.DataFrame) -> int:
    """Kept sale rows (not returns) with an amount of exactly 0."""
    amount = transactions["amount"]
    sale = transactions["kind"] != "return" if "kind" in transactions.columns else amount >= 0
    return int(((amount == 0) & sale).sum())


def ingest(
    source: str | Path,
    mapping: ColumnMapping | Mapping[str, str] | None = None,
    *,
    format: str | None = None,
    date_format: str | None = None,
    dayfirst: bool | None = None,
    data_end: DateLike | None = None,
    encoding: str | None = None,
    personal_columns: tuple[str, ...] | None = None,
    decimal: str | None = None,
) -> IngestResult:
    """Read ``source`` into canonical transactions plus a quarantine of bad rows.

    Args:
        source: CSV / whitespace text / Parquet file (optionally ``.gz``).
        mapping: canonical -> source column names (dict), or a full
            :class:`ColumnMapping` (with date options / header-less columns).
        format: reader format override (``csv``, ``whitespace``, ``parquet``).
        date_format: ``strptime`` format of the timestamps (overrides the mapping's).
        dayfirst: ``01/02/2020`` is 1 February (overrides the mapping's).
        data_end: declared last observed day (``YYYY-MM-DD``); must not be
            before the last transaction day.
        encoding: text encoding; default UTF-8 with a Latin-1 fallback.
        personal_columns: column names holding personal data, dropped at
            read time unless mapped (matching as in
            :mod:`ltvcast.ingest.privacy`); None = the defaults of
            ``sources.yaml`` (email, name, phone, address, ip, ...).
        decimal: the numbers' decimal mark, ``"."`` or ``","`` (``1.234,56``
            = 1234.56; overrides the mapping's; :func:`ltvcast.ingest.parse.number_format`).

    Returns:
        :class:`IngestResult`. Always ``rows_read == rows_kept +
        rows_quarantined + duplicates_dropped + rows_excluded``.

    Raises:
        DataError: the file cannot be read; a required column is missing
            (the message lists the columns found); the file has no data rows
            or no valid row at all; dates mix day-first and month-first
            readings; ``data_end`` is not a date or is before the last
            transaction day; an ``exclude`` rule of the mapping names a column
            the file does not have, or leaves out every readable row.
    """
    t0 = time.perf_counter()
    started_at = pd.Timestamp.now(tz="UTC")
    cmap = _as_mapping(mapping).updated(date_format=date_format, dayfirst=dayfirst, decimal=decimal)
    declared = declared_day(data_end) if data_end is not None else None
    raw = read_table(
        source, format, has_header=cmap.header, columns=cmap.columns, encoding=encoding, bad_rows="keep"
    )
    if personal_columns is None:
        from ltvcast.ingest.config import DEFAULT_PERSONAL_COLUMNS

        personal_columns = DEFAULT_PERSONAL_COLUMNS
    mapped = set(cmap.fields.values())
    read_columns = [str(c) for c in raw.frame.columns]  # before personal columns go: bad rows' field names
    frame, dropped = drop_personal_columns(raw.frame, personal_columns, keep=mapped)
    if dropped:
        raw = RawTable(frame=frame, source=raw.source, format=raw.format, encoding=raw.encoding,
                       bad_rows=raw.bad_rows)
    rows_read = len(raw.frame) + len(raw.bad_rows)
    if rows_read == 0:
        raise DataError(f"{raw.source} has no data rows")
    if len(raw.frame) == 0:
        first = raw.bad_rows[0]
        raise DataError(f"{raw.source}: no readable rows, all {rows_read} are malformed; "
                        f"e.g. row {first.row} (line {first.line}): {first.problem}")
    raw, excluded = _exclude(raw, cmap)
    if excluded and raw.frame.empty:
        raise DataError(f"{raw.source}: the mapping's exclude rule left out every readable row: {excluded}")
    with number_format(cmap.decimal):
        checked = validate_rows(raw, cmap)
    kept_rows = raw.frame.loc[checked.transactions.index]
    drop, identical, conflict = find_duplicates(
        checked.transactions, content=pd.util.hash_pandas_object(kept_rows.astype(str), index=False)
    )
    transactions = checked.transactions.loc[~drop & ~conflict]
    normalised = _kept_ids_normalised(raw, cmap, checked.ids_normalised, transactions.index)
    transactions = transactions.sort_values(
        ["customer_id", "timestamp"], kind="mergesort"
    ).reset_index(drop=True)
    source_path = str(Path(source).resolve())
    quarantine = checked.quarantine
    if conflict.any():
        line_column = cmap.fields.get("line", "line")
        clashes = conflict_quarantine(raw.frame, checked.transactions.index[conflict], source_path, line_column)
        quarantine = pd.concat([quarantine, clashes], ignore_index=True)
    if raw.bad_rows:
        bad = _bad_row_quarantine(raw.bad_rows, read_columns, set(dropped), source_path)
        quarantine = pd.concat([bad, quarantine], ignore_index=True)
    quarantine = quarantine.assign(source=source_path)
    quarantine["source"] = quarantine["source"].astype(str)
    counts = quarantine["reason"].value_counts()
    quarantined = {r: int(counts[r]) for r in ("bad_row", *REASONS) if r in counts.index}
    duplicates = int(drop.sum())
    rows_kept = len(transactions)
    if rows_read != rows_kept + len(quarantine) + duplicates + sum(excluded.values()):
        raise AssertionError(
            f"ingest lost rows: read {rows_read}, kept {rows_kept}, "
            f"quarantined {len(quarantine)}, duplicates {duplicates}"
        )
    if rows_kept == 0:
        first = quarantine.iloc[0]
        summary = ", ".join(f"{r}: {n}" for r, n in quarantined.items())
        raise DataError(
            f"{raw.source}: no usable rows, all {rows_read} were rejected ({summary}); "
            f"e.g. row {first['source_row']}, column {first['source_column']}: "
            f"{first['raw_value']!r}. Check the column mapping and date options"
        )
    if declared is not None:
        observation_end(transactions, declared)  # raises if before the last day
    stats = IngestStats(
        source=source_path,
        format=raw.format,
        encoding=raw.encoding,
        rows_read=rows_read,
        rows_kept=rows_kept,
        quarantined=quarantined,
        duplicates_dropped=duplicates,
        identical_rows_kept=int(identical[~drop].sum()),
        ids_normalised=sum(normalised.values()),
        ids_normalised_by_column=normalised,
        started_at=started_at,
        seconds=time.perf_counter() - t0,
        personal_columns_dropped=tuple(dropped),
        zero_value_sales=_zero_value_sales(transactions),
        excluded=excluded,
    )
    return IngestResult(
        transactions=transactions,
        quarantine=quarantine,
        stats=stats,
        mapping=cmap,
        data_end=declared,
    )
