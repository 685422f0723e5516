"""Stage one source table: drop personal columns, parse every field of its kind, flag bad rows.

The outcome, :class:`StagedTable`, holds the good rows with canonical,
typed columns and the bad rows with a reason (first problem wins, in the
kind's field order). Which rows are kept in the end is decided later, when
all sources are seen (:mod:`ltvcast.ingest.resolve`).

Row-level reasons (besides the foundation's):

==================== ==========================================================
``missing_<field>``  a field that may not be empty is empty (``missing_order_id``,
                     ``missing_customer_id``, ``missing_timestamp``, ...)
``bad_timestamp``    not readable as a date/time (also ``signup_at``)
``bad_day``          fx ``day`` not a date
``bad_amount``       amount / unit price / list price not a number
``bad_discount``     discount not a number, or negative
``bad_quantity``     quantity not a number
``bad_discount``     ``discount_rate`` not a number in [0, 1]
``bad_line``         (no longer raised by this module: any line id is accepted)
``bad_rate``         fx rate not a number > 0 (or a shop-currency rate other than 1)
``missing_currency`` a mapped currency column is empty in the row
``bad_currency``     currency not a 3-letter code
``bad_row``          a malformed CSV row (more fields than the header, broken
                     quoting; :mod:`ltvcast.ingest.readers`), the rest of the file read
==================== ==========================================================

Rows matching the source's ``exclude:`` rule get the fate :data:`EXCLUDED`:
counted (``rows_excluded``, per ``column=value``), neither kept nor quarantined.

Event types are open: any non-empty type is kept (normalised); the four of
:data:`~ltvcast.ingest.kinds.EVENT_TYPES` get their own features, others
generic ones (``other_events``, ...). Line ids may be any text
(:func:`line_numbers`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from ltvcast.errors import DataError
from ltvcast.ingest.config import ShopConfig, SourceSpec
from ltvcast.ingest.kinds import (
    ATTRIBUTE_KINDS,
    EVENT_TYPE_SEPARATORS,
    FIELD_TYPES,
    KIND_FIELDS,
    NOT_EMPTY,
    extra_fields,
    ignored_columns,
    resolve_fields,
)
from ltvcast.ingest.mapping import excluded_rows
from ltvcast.ingest.parse import (
    as_text,
    missing_mask,
    normalise_ids,
    parse_numbers,
    parse_text,
    parse_timestamps,
)
from ltvcast.ingest.privacy import (
    drop_personal_columns,
    personal_columns_in,
    pseudonymise,
)
from ltvcast.ingest.readers import RawTable

_BAD = {
    "timestamp": "bad_timestamp",
    "day": "bad_day",
    "money": "bad_amount",
    "number": "bad_quantity",
    "line": "bad_line",
    "rate": "bad_rate",
    "currency": "bad_currency",
    "fraction": "bad_discount",
}

_HASH_CHUNK = 200_000

#: Fate of a row left out by the source's ``exclude:`` rule (counted, not quarantined).
EXCLUDED = "excluded"

#: String line ids map to numbers from here up (whole-number line ids stay as they are).
TEXT_LINE_BASE = 2**62


@dataclass
class StagedTable:
    """One source table after parsing.

    Attributes:
        spec: the source's entry in ``sources.yaml``.
        source: file path (absolute) or database label.
        format: reader format (``csv``, ..., ``sql``).
        content_hash: SHA-256 of the file bytes or of the query result.
        raw: the table as text without the dropped personal columns (and with
            pseudonymised customer ids), shape (rows read, columns); row
            ``i`` = data row ``i + 1``. An Arrow table (a few bytes per value,
            against ~60 for a Python string in pandas): it is kept only to show
            quarantined rows (:meth:`ltvcast.ingest.ledger.Ledger.quarantine`).
        columns: canonical field -> source column.
        rows: the good rows: one column per field of the kind (absent
            fields are all-missing), plus ``_row`` (1-based data row) and
            ``_hash`` (hash of the parsed values, for duplicate checks);
            index = raw index.
        bad: the bad rows: ``_row``, ``reason``, ``field`` (canonical), and for
            malformed CSV rows ``value`` (line and problem) and ``raw_row`` (JSON of
            the fields as far as they split); rows left out by ``exclude`` have
            reason :data:`EXCLUDED`.
        ids_normalised: float-spelled ids rewritten (``17850.0`` -> ``17850``).
        personal_dropped: source columns dropped as personal data.
        seconds: time spent reading and parsing.
        ignored: source columns that reach no canonical field (not stored; named
            in the summary and in ``ingest_log.mapping`` under ``_ignored``).
        excluded: ``column=value`` -> rows left out by the source's ``exclude`` rule.
        attributes: source columns with no canonical field kept as JSON in the
            ``attributes`` column of ``rows`` (kinds of
            :data:`~ltvcast.ingest.kinds.ATTRIBUTE_KINDS`; empty for others).
    """

    spec: SourceSpec
    source: str
    format: str
    content_hash: str
    raw: pa.Table
    columns: dict[str, str]
    rows: pd.DataFrame
    bad: pd.DataFrame
    ids_normalised: int
    personal_dropped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    ignored: list[str] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)
    attributes: list[str] = field(default_factory=list)
    #: Rows staged in the database in batches (:mod:`ltvcast.ingest.stream`), not held here:
    #: ``raw``, ``rows`` and ``bad`` are empty and ``rows_read`` is set by the stager.
    streamed: bool = False
    #: Data rows in the source (kept by :meth:`release`).
    rows_read: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.rows_read = self.raw.num_rows

    def release(self) -> None:
        """Drop the rows and the raw text once the run is resolved (the ledger holds their fates
        and quarantine rows), so that they do not stay in memory while the store is written."""
        self.rows = self.rows.iloc[:0]
        self.bad = self.bad.iloc[:0]
        self.raw = self.raw.slice(0, 0)


def normalise_event_type(values: pd.Series, synonyms: dict[str, str]) -> pd.Series:
    """Lower-case, ``-``/space -> ``_``, then ``synonyms`` (source value -> event type) applied.

    Returns:
        Text series; values outside :data:`~ltvcast.ingest.kinds.EVENT_TYPES` are left as they are
        (the caller flags them).
    """
    def norm(s: pd.Series) -> pd.Series:
        return as_text(s).str.lower().str.replace(EVENT_TYPE_SEPARATORS, "_", regex=True)

    text = norm(values)
    if synonyms:
        keys = norm(pd.Series(list(synonyms), dtype=str))
        table = dict(zip(keys, synonyms.values()))
        text = text.map(lambda v: table.get(v, v)).astype(str)
    return text


def line_numbers(values: pd.Series) -> pd.Series:
    """Line ids as numbers: a whole number stays itself; any other text (``L0000000137``)
    becomes ``TEXT_LINE_BASE`` + the first 62 bits of BLAKE2b-64 of the stripped text.

    The mapping is stable across files and runs (the same id always gives the
    same number), so distinct line ids stay distinct lines and a repeated id
    is a duplicate; a collision of two ids of one order has probability
    about n^2 / 2^63.

    Returns:
        ``Int64`` series, missing where the value is empty.
    """
    number = parse_numbers(values)
    whole = number.notna() & (number == np.floor(number)) & (number.abs() < TEXT_LINE_BASE)
    out = number.where(whole).astype("Int64")
    text = as_text(values)
    rest = (~whole.to_numpy()) & ~missing_mask(values)
    if rest.any():
        uniques = pd.unique(text[rest].str.strip())
        table = {
            u: TEXT_LINE_BASE + (int.from_bytes(hashlib.blake2b(u.encode("utf-8"), digest_size=8).digest(), "big") >> 2)
            for u in uniques
        }
        out.iloc[np.flatnonzero(rest)] = text[rest].str.strip().map(table).to_numpy(dtype=np.int64)
    return out


def attributes_json(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One JSON object per row of ``frame``: source column -> stripped text, for ``columns``;
    empty values (and null tokens) left out, None where every value is empty.

    Returns:
        object series on ``frame``'s index (``{"promo_name": "spring"}`` as text).
    """
    texts = [as_text(frame[c]).where(~missing_mask(frame[c]), "").tolist() for c in columns]
    out = [
        json.dumps(d, ensure_ascii=False) if (d := {c: v for c, v in zip(columns, values) if v}) else None
        for values in zip(*texts)
    ]
    return pd.Series(out, index=frame.index, dtype=object)


def _arrow_text(frame: pd.DataFrame) -> pa.Table:
    """``frame`` as an Arrow table: datetime columns as timestamps, every other column as text (null where missing)."""
    arrays = {}
    for c in frame.columns:
        col = frame[c]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            arrays[str(c)] = pa.array(col)
            continue
        values = col.to_numpy(dtype=object)
        try:
            arrays[str(c)] = pa.array(values, type=pa.string(), from_pandas=True)
        except (pa.ArrowTypeError, pa.ArrowInvalid):  # not all text (e.g. numbers from a database driver)
            arrays[str(c)] = pa.array([None if pd.isna(v) else str(v) for v in values], type=pa.string())
    return pa.table(arrays)


class _Flags:
    """First-problem-wins reason per row."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, None, dtype=object)
        self.field = np.full(n, None, dtype=object)

    def flag(self, mask, reason: str, name: str) -> None:
        new = np.asarray(mask, dtype=bool) & (self.reason == None)
        self.reason[new] = reason
        self.field[new] = name

    @property
    def bad(self) -> np.ndarray:
        return self.reason != None


def _canonical_text(col: pd.Series) -> np.ndarray:
    """Values as text for hashing (object array): timestamps as epoch microseconds,
    numbers in their shortest round-trip spelling, text as is; missing -> ``\x00``."""
    missing = col.isna().to_numpy()
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        text = col.dt.as_unit("us").astype("int64").astype(str).to_numpy(dtype=object)
    elif pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        text = col.astype("float64").to_numpy().astype(str).astype(object)
    else:
        text = col.to_numpy(dtype=object, na_value=None)
    text = text.copy()
    text[missing] = "\x00"
    return text


def row_hashes(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Hash of each row's values in ``columns`` (BLAKE2b, 32 hex), equal for equal parsed values."""
    if not len(frame):
        return pd.Series([], index=frame.index, dtype=str)
    digests: list[str] = []
    for start in range(0, len(frame), _HASH_CHUNK):  # chunks: the joined texts of one chunk at a time
        part = frame.iloc[start:start + _HASH_CHUNK]
        parts = [_canonical_text(part[c]) for c in columns]
        digests.extend(
            hashlib.blake2b("\x1f".join(map(str, values)).encode("utf-8"), digest_size=16).hexdigest()
            for values in zip(*parts)
        )
    return pd.Series(digests, index=frame.index, dtype=object)


def _check_personal_mapping(raw: RawTable, spec: SourceSpec, shop: ShopConfig, columns: dict[str, str]) -> list[str]:
    personal = set(personal_columns_in(list(raw.frame.columns), shop.personal_columns, shop.allow_personal))
    for canonical, source in columns.items():
        if source not in personal:
            continue
        if canonical == "customer_id" and shop.pseudonymise_ids:
            continue
        advice = (
            "set shop.pseudonymise_ids: true (the ids are then stored as pseudonyms) or "
            if canonical == "customer_id"
            else ""
        )
        raise DataError(
            f"{raw.source}: column {source!r} (mapped to {canonical}) holds personal data; "
            f"{advice}add it to shop.allow_personal to store it"
        )
    return [columns["customer_id"]] if "customer_id" in columns else []


def stage_table(
    raw: RawTable,
    spec: SourceSpec,
    shop: ShopConfig,
    content_hash: str,
    id_key: bytes | None = None,
    date_orders: dict[str, dict[str, str]] | None = None,
) -> StagedTable:
    """Parse a source table (or one batch of it) for its kind.

    Args:
        raw: the table as text (:func:`ltvcast.ingest.readers.read_table` or
            :func:`ltvcast.ingest.sql_source.read_sql_source`).
        spec: the source's settings (kind, mapping, zone, date format, currency).
        shop: the shop settings (zone default, personal columns).
        content_hash: hash of the file bytes / query result.
        id_key: pseudonymisation key when ``shop.pseudonymise_ids``.
        date_orders: field -> day/month order seen so far
            (:func:`~ltvcast.ingest.parse.parse_timestamps` ``orders``), updated in
            place; one dict for all batches of a source read in pieces.

    Returns:
        :class:`StagedTable`; ``len(rows) + len(bad) == rows read`` (malformed CSV
        rows of ``raw.bad_rows`` included, as ``bad_row``).

    Raises:
        DataError: a required column is missing, a mapped column holds
            personal data that is not allowed, an ``exclude`` rule names a
            column the source does not have, or dates mix day-first and
            month-first. A source with a header and no rows is fine (a quiet
            day's export): it is logged with 0 rows.
    """
    import time

    t0 = time.perf_counter()
    kind = spec.kind
    columns = resolve_fields(kind, [str(c) for c in raw.frame.columns], spec.mapping, raw.source)
    keep = _check_personal_mapping(raw, spec, shop, columns)
    frame, dropped = drop_personal_columns(raw.frame, shop.personal_columns, shop.allow_personal, keep=keep)
    read_columns = [str(c) for c in raw.frame.columns]
    if raw.bad_rows:  # malformed CSV rows: empty placeholders at their own positions (index = data row - 1)
        frame = frame.reindex(pd.RangeIndex(len(frame) + len(raw.bad_rows)), fill_value="")
    else:  # a new frame object sharing the data (copy-on-write): the pseudonymised column below replaces, not mutates
        frame = frame.copy(deep=False)
    tz = spec.timezone or shop.timezone
    date_orders = {} if date_orders is None else date_orders
    flags = _Flags(len(frame))
    malformed = np.array([b.row - 1 for b in raw.bad_rows], dtype=np.int64)
    flags.reason[malformed] = "bad_row"
    hit, excluded = excluded_rows(frame, spec.exclude, {**spec.mapping, **columns}, raw.source)
    flags.flag(hit, EXCLUDED, None)
    out: dict[str, pd.Series] = {}
    normalised = 0
    for name in KIND_FIELDS[kind] + extra_fields(kind, spec.mapping):
        kind_of = FIELD_TYPES.get(name, "text")
        if name not in columns:
            out[name] = pd.Series(pd.NA, index=frame.index, dtype=object)
            continue
        values = frame[columns[name]]
        empty = missing_mask(values)
        if name in NOT_EMPTY[kind]:
            flags.flag(empty, f"missing_{name}", name)
        if kind_of == "id":
            parsed, count = normalise_ids(values)
            normalised += count
        elif kind_of == "text":
            parsed = parse_text(values)
        elif kind_of == "currency":
            parsed = as_text(values).str.upper()
            flags.flag(empty, "missing_currency", name)
            flags.flag(~empty & ~parsed.str.fullmatch(r"[A-Z]{3}").to_numpy(), "bad_currency", name)
            parsed = parsed.where(~empty)
        elif kind_of == "timestamp":
            parsed = parse_timestamps(values, spec.date_format, spec.dayfirst, tz, date_orders.setdefault(name, {}))
        elif kind_of == "day":
            parsed = parse_timestamps(values, spec.date_format, spec.dayfirst, None, date_orders.setdefault(name, {}))
            parsed = parsed.dt.tz_localize(None).dt.normalize()
        elif kind_of == "event":
            parsed = normalise_event_type(values, dict(spec.event_types))
            parsed = parsed.where(~empty)
        elif kind_of == "line":
            parsed = line_numbers(values)
        else:  # money, number, rate
            parsed = parse_numbers(values)
        if kind_of in ("timestamp", "day", "money", "number", "line", "rate", "fraction"):
            flags.flag(~empty & parsed.isna().to_numpy(), _BAD[kind_of], name)
        if name == "discount":
            flags.flag(~empty & (parsed < 0).fillna(False).to_numpy(), "bad_discount", name)
        if kind_of == "fraction":
            flags.flag(~empty & ((parsed < 0) | (parsed > 1)).fillna(False).to_numpy(), "bad_discount", name)
        if kind_of == "rate":
            flags.flag(~empty & (parsed <= 0).fillna(False).to_numpy(), "bad_rate", name)
        out[name] = parsed
    if "discount_rate" in out:
        # a fraction of the line value: discount money = rate x quantity x unit price (source currency);
        # only the money is kept (row hashes stay those of a source that gives discount as money)
        rate_col = out.pop("discount_rate")
        if "discount_rate" in columns:
            out["discount"] = (rate_col * out["quantity"] * out["unit_price"]).round(4)
    if kind in ("order_items", "returns"):
        if "amount" in columns:
            flags.flag(missing_mask(frame[columns["amount"]]), "missing_amount", "amount")
        else:
            for part in ("quantity", "unit_price"):
                flags.flag(missing_mask(frame[columns[part]]), "missing_amount", part)
    if kind == "returns":
        has_ref = (out["order_id"].notna() | out["customer_id"].notna()).to_numpy()
        flags.flag(~has_ref, "missing_customer_id", "customer_id" if "customer_id" in columns else "order_id")
    if kind == "fx_rates":
        if spec.invert:
            out["rate"] = 1.0 / out["rate"].where(out["rate"] > 0)
        wrong_shop = (out["currency"] == shop.currency).fillna(False) & (out["rate"] != 1.0).fillna(False)
        flags.flag(wrong_shop.to_numpy(), "bad_rate", "rate")
    if "customer_id" in columns and shop.pseudonymise_ids:
        if id_key is None:
            raise ValueError("id_key is required when shop.pseudonymise_ids is on")
        out["customer_id"] = pseudonymise(out["customer_id"], id_key)
        # the raw row (kept for quarantine) must not hold the real id either
        source_col = columns["customer_id"]
        frame[source_col] = frame[source_col].astype(object).where(out["customer_id"].isna(), out["customer_id"])
    good = ~flags.bad
    names = list(out)
    rows = pd.DataFrame({n: out[n][good] for n in names}, index=frame.index[good])
    out.clear()  # the parsed columns of every row: only the good rows' copies are needed from here
    for n in names:
        if FIELD_TYPES.get(n, "text") in ("id", "text", "currency", "event"):
            rows[n] = rows[n].astype(object).where(rows[n].notna(), None)
    rows["_row"] = (rows.index.to_numpy() + 1).astype(np.int64)
    rows["_hash"] = row_hashes(rows, names).astype("str")  # attributes are not part of a row's identity
    for n in names:  # text as Arrow-backed strings (a few bytes a value, not a Python object each)
        if FIELD_TYPES.get(n, "text") in ("id", "text", "currency", "event"):
            rows[n] = rows[n].astype("str")
    ignored = ignored_columns([str(c) for c in frame.columns], columns, dropped)
    kept_extra: list[str] = []
    if kind in ATTRIBUTE_KINDS:
        kept_extra, ignored = ignored, []
        rows["attributes"] = attributes_json(frame.loc[rows.index], kept_extra) if kept_extra else None
    bad = pd.DataFrame(
        {
            "_row": (frame.index[~good].to_numpy() + 1).astype(np.int64),
            "reason": pd.Series(flags.reason[~good], dtype=str),
            "field": pd.Series(flags.field[~good], dtype=str),
            "value": None,
            "raw_row": None,
        }
    )
    if raw.bad_rows:
        leave_out = set(dropped) | ({columns["customer_id"]} if "customer_id" in columns and shop.pseudonymise_ids else set())
        at = bad.set_index("_row").index.get_indexer([b.row for b in raw.bad_rows])
        bad.iloc[at, bad.columns.get_loc("value")] = [b.note for b in raw.bad_rows]
        bad.iloc[at, bad.columns.get_loc("raw_row")] = [b.record(read_columns, leave_out) for b in raw.bad_rows]
    return StagedTable(
        spec=spec,
        source=raw.source,
        format=raw.format,
        content_hash=content_hash,
        raw=_arrow_text(frame),
        columns=columns,
        rows=rows,
        bad=bad,
        ids_normalised=normalised,
        personal_dropped=dropped,
        seconds=time.perf_counter() - t0,
        ignored=ignored,
        excluded=excluded,
        attributes=kept_extra,
    )
