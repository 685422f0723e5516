"""Where every source row went: kept, dropped as a duplicate, or quarantined with a reason.

The :class:`Ledger` gives each data row of each source exactly one fate and
refuses a second one, so ``rows read = kept + quarantined + duplicates +
excluded`` holds by construction and is checked at the end (:meth:`Ledger.check`).
It also builds the quarantine rows (reason, offending column and value,
the whole raw row as JSON) and finds duplicate keys (:func:`classify_keys`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from ltvcast.ingest.staging import EXCLUDED, StagedTable

KEPT = "kept"
DUPLICATE = "duplicate"


@dataclass(frozen=True)
class FileCounts:
    """Fate of the rows of one source table.

    Attributes:
        rows_read: data rows in the source.
        rows_kept: rows written to the store.
        duplicates_dropped: rows repeating a key with identical content.
        quarantined: reason -> rows (reasons that occurred).
        excluded: ``column=value`` -> rows left out by the source's ``exclude`` rule.
    """

    rows_read: int
    rows_kept: int
    duplicates_dropped: int
    quarantined: dict[str, int]
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def rows_excluded(self) -> int:
        """Rows left out by the ``exclude`` rule (all its values)."""
        return sum(self.excluded.values())

    @property
    def rows_quarantined(self) -> int:
        """All quarantined rows of the source."""
        return sum(self.quarantined.values())


class Ledger:
    """Fates of the rows of the staged tables of one run.

    Args:
        tables: the staged tables; ``_file`` values in frames passed to
            :meth:`mark` are positions in this list. Streamed tables
            (:attr:`StagedTable.streamed`) are accounted for in the database
            (:mod:`ltvcast.ingest.stream`): the ledger holds nothing for them.
    """

    def __init__(self, tables: list[StagedTable]) -> None:
        self.tables = tables
        sizes = [0 if t.streamed else t.rows_read for t in tables]
        self.fate = [np.full(n, None, dtype=object) for n in sizes]
        self.field = [np.full(n, None, dtype=object) for n in sizes]
        self.value = [np.full(n, None, dtype=object) for n in sizes]
        self.raw_row: list[dict[int, str]] = [{} for _ in tables]  # malformed rows: their own raw_row
        for i, t in enumerate(tables):
            if len(t.bad):
                rows = t.bad["_row"].to_numpy() - 1
                self.fate[i][rows] = t.bad["reason"].to_numpy()
                self.field[i][rows] = t.bad["field"].to_numpy()
                self.value[i][rows] = t.bad["value"].to_numpy()
                given = t.bad["raw_row"].notna().to_numpy()
                self.raw_row[i] = dict(zip(rows[given].tolist(), t.bad["raw_row"].to_numpy()[given]))

    def mark(self, frame: pd.DataFrame, fate: str, field: str | None = None, values: pd.Series | None = None) -> None:
        """Give the rows of ``frame`` (columns ``_file``, ``_row``) their fate.

        Args:
            frame: rows of staged tables.
            fate: :data:`KEPT`, :data:`DUPLICATE`, or a quarantine reason.
            field: canonical field that caused a quarantine (its source column
                and value are shown).
            values: explicit offending values (e.g. the currency code declared
                for the source), same index as ``frame``.

        Raises:
            AssertionError: a row already has a fate (a bug: a row counted twice).
        """
        if frame.empty:
            return
        for f, group in frame.groupby("_file", sort=False):
            rows = group["_row"].to_numpy(dtype=np.int64) - 1
            taken = self.fate[f][rows]
            if (taken != None).any():
                raise AssertionError(
                    f"{self.tables[f].source}: row(s) {(rows[taken != None] + 1).tolist()[:5]} "
                    f"given a second fate {fate!r} after {taken[taken != None][0]!r}"
                )
            self.fate[f][rows] = fate
            if field is not None:
                self.field[f][rows] = field
            if values is not None:
                self.value[f][rows] = values.loc[group.index].astype(object).to_numpy()

    def counts(self, f: int) -> FileCounts:
        """Counts of table ``f``.

        Raises:
            AssertionError: some row has no fate (rows would be lost).
        """
        fate = self.fate[f]
        if (fate == None).any():
            lost = np.flatnonzero(fate == None) + 1
            raise AssertionError(f"{self.tables[f].source}: rows {lost.tolist()[:5]} have no fate (lost rows)")
        tally = {str(k): int(v) for k, v in pd.Series(fate).value_counts(sort=False).items()}
        kept = tally.pop(KEPT, 0)
        dups = tally.pop(DUPLICATE, 0)
        excluded = tally.pop(EXCLUDED, 0)
        if excluded != sum(self.tables[f].excluded.values()):
            raise AssertionError(f"{self.tables[f].source}: {excluded} rows excluded, the rule counted otherwise")
        return FileCounts(
            rows_read=len(fate), rows_kept=kept, duplicates_dropped=dups, quarantined=dict(sorted(tally.items())),
            excluded=dict(self.tables[f].excluded),
        )

    def check(self) -> list[FileCounts | None]:
        """Counts of every table, checking ``read = kept + quarantined + duplicates + excluded`` for each
        (None for a streamed table: :mod:`ltvcast.ingest.stream` counts it when it is written)."""
        return [None if t.streamed else check_counts(self.counts(f), t.source) for f, t in enumerate(self.tables)]

    def quarantine(self, f: int) -> pd.DataFrame:
        """Quarantine rows of table ``f``: source_row, reason, source_column, raw_value, raw_row."""
        table = self.tables[f]
        fate = self.fate[f]
        bad = np.flatnonzero((fate != None) & (fate != KEPT) & (fate != DUPLICATE) & (fate != EXCLUDED))
        raw = table.raw.take(pa.array(bad, type=pa.int64())).to_pandas()
        text = {c: _text(raw[c]) for c in raw.columns}
        records = [dict(zip(text, vals)) for vals in zip(*text.values())] if text else [{} for _ in bad]
        source_cols, raw_values = [], []
        for k, i in enumerate(bad):
            field = self.field[f][i]
            col = table.columns.get(field) if field is not None else None
            explicit = self.value[f][i]
            source_cols.append(col)
            if explicit is not None:
                raw_values.append(str(explicit))
            elif col is not None and col in text:
                raw_values.append(records[k][col])
            else:
                raw_values.append(None)
        return pd.DataFrame(
            {
                "source_row": (bad + 1).astype(np.int64),
                "reason": pd.Series(fate[bad], dtype=str),
                "source_column": pd.Series(source_cols, dtype=object),
                "raw_value": pd.Series(raw_values, dtype=object),
                "raw_row": pd.Series(
                    [self.raw_row[f].get(i) or json.dumps(r, ensure_ascii=False) for i, r in zip(bad.tolist(), records)],
                    dtype=str,
                ),
            }
        )


def check_counts(counts: FileCounts, source: str) -> FileCounts:
    """``counts``, after checking ``read = kept + quarantined + duplicates + excluded``.

    Raises:
        AssertionError: the counts do not add up (a bug: rows lost or counted twice).
    """
    c = counts
    if c.rows_read != c.rows_kept + c.rows_quarantined + c.duplicates_dropped + c.rows_excluded:
        raise AssertionError(f"{source}: rows read {c.rows_read} != kept + quarantined + duplicates + excluded")
    return c


def _text(values: pd.Series) -> list[str]:
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return [("" if pd.isna(v) else str(v)) for v in values]
    return ["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in values.tolist()]


def key_strings(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    """One text key per row from ``columns`` (parts joined by ``|``; days as ``YYYY-MM-DD``)."""
    parts = []
    for c in columns:
        col = frame[c]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            text = col.dt.strftime("%Y-%m-%d")
        elif str(col.dtype) == "Int64":
            text = col.astype("string")
        else:
            text = col.astype(object)
        parts.append(text.where(col.notna(), "").astype(str))
    if not parts:
        raise ValueError("a key needs at least one column")
    out = parts[0].str.cat(parts[1:], sep="|") if len(parts) > 1 else parts[0]
    return out.astype(object)


def classify_keys(keys: pd.Series, hashes: pd.Series, known: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Find duplicate keys among rows of one kind, in order, and against the store.

    Args:
        keys: key of each row (:func:`key_strings`), in run order (earlier
            sources first, file order within a source).
        hashes: hash of each row's parsed values, same index.
        known: keys already in the store: columns ``key``, ``row_hash``.

    Returns:
        (``duplicate``, ``conflict``) boolean arrays: a row whose key is
        known (in the store, or earlier in the run) is a *duplicate* when its
        hash equals the first one's (an export duplicate, dropped and
        counted), else a *conflict* (quarantined ``duplicate_id``).
    """
    n = len(keys)
    dup = np.zeros(n, dtype=bool)
    conflict = np.zeros(n, dtype=bool)
    if n == 0:
        return dup, conflict
    stored = known.drop_duplicates("key").set_index("key")["row_hash"] if len(known) else pd.Series(dtype=object)
    in_store = keys.isin(stored.index).to_numpy()
    if in_store.any():
        same = (hashes[in_store].to_numpy() == keys[in_store].map(stored).to_numpy())
        dup[in_store] = same
        conflict[in_store] = ~same
    rest = np.flatnonzero(~in_store)
    if len(rest):
        k = keys.iloc[rest]
        later = k.duplicated(keep="first").to_numpy()
        if later.any():
            h = hashes.iloc[rest]
            first_hash = pd.Series(h[~later].to_numpy(), index=k[~later].to_numpy())
            same = h[later].to_numpy() == k[later].map(first_hash).to_numpy()
            dup[rest[later]] = same
            conflict[rest[later]] = ~same
    return dup, conflict
