"""Read a source file into a frame of raw text, one column per source column.

Every value is read as text, so that ids such as ``00012`` keep their leading
zeros; parsing into numbers and timestamps happens later
(:mod:`ltvcast.ingest.validate`). Empty fields are the empty string ``""``,
never NaN.

Formats (chosen from the file extension, or given explicitly):

==============  =====================================  ==================================
format          extensions                             notes
==============  =====================================  ==================================
``csv``         ``.csv``, ``.tsv`` (+ ``.gz``, ``.bz2``,  separator ``,`` (``.tsv``: tab); a
                ``.xz``)                               header line without commas but
                                                       with ``;``, tab or ``|`` uses that
                                                       separator
``whitespace``  ``.txt``, ``.dat`` (+ the same         any run of spaces/tabs separates
                compressions)                          fields (fields cannot hold spaces)
``parquet``     ``.parquet``, ``.pq``                  typed columns are turned into text;
                                                       timestamp columns stay timestamps
``jsonl``       ``.jsonl``, ``.ndjson`` (+ compressions) one JSON object per line; numbers
                                                       keep their spelling; blank lines
                                                       skipped; nested values as JSON text
``excel``       ``.xlsx``, ``.xlsm``                   first sheet unless ``sheet`` is
                                                       given; date cells stay timestamps;
                                                       fully empty rows skipped
==============  =====================================  ==================================

The single-file path (``ltvcast ingest FILE``) reads :data:`FORMATS`; the
multi-source path (``ltvcast ingest --config``) reads :data:`SOURCE_FORMATS`.

Text files are decoded as UTF-8 (a byte-order mark is ignored); a file that
is not valid UTF-8 is read as Latin-1 (which decodes any byte), and the
encoding used is reported.

Malformed CSV rows
------------------
A CSV row with more fields than the header, or with broken quoting (a quote
that never closes, text after a closing quote), does not abort its file:
with ``bad_rows="keep"`` it is set aside in :attr:`RawTable.bad_rows` with
its data row number and what is wrong, and every other row is read (the
ingest quarantines it as ``bad_row``). A row with *fewer* fields than the
header gets empty trailing fields (exports often leave trailing empty fields
out), as with pandas. A quoted field may span lines; a quote that does not
close into a row of the header's width is broken quoting, and only its own
line is set aside. With ``bad_rows="raise"`` (the default) such a file is
refused, the message naming the first bad row.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import hashlib
import lzma
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ltvcast.errors import DataError

FORMATS: tuple[str, ...] = ("csv", "whitespace", "parquet")
#: Formats of ``sources.yaml`` sources (the single-file path reads :data:`FORMATS`).
SOURCE_FORMATS: tuple[str, ...] = FORMATS + ("jsonl", "excel")
_FORMAT_ALIASES = {
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "json": "jsonl",
    "excel": "excel",
    "xlsx": "excel",
    "xlsm": "excel",
    "csv": "csv",
    "whitespace": "whitespace",
    "txt": "whitespace",
    "text": "whitespace",
    "dat": "whitespace",
    "tsv": "csv",
    "parquet": "parquet",
    "pq": "parquet",
}
_EXTENSIONS = {
    ".csv": "csv",
    ".txt": "whitespace",
    ".dat": "whitespace",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".xlsx": "excel",
    ".xlsm": "excel",
}
_COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


@dataclass(frozen=True)
class RawTable:
    """A source file read as text.

    Attributes:
        frame: one row per data row of the file (header not included), one
            column per source column; values are text (``""`` when empty),
            except Parquet timestamp/date columns, which stay datetime64.
            The index is 0..n-1: data row ``i`` of the file is ``i + 1``.
        source: the file path as given.
        format: ``"csv"``, ``"whitespace"``, ``"parquet"``, ``"jsonl"``,
            ``"excel"`` or ``"sql"``.
        encoding: the text encoding used (None for Parquet, Excel, SQL).
        bad_rows: malformed CSV rows set aside (``bad_rows="keep"``), one
            :class:`BadRow` each, in file order; then ``frame``'s index
            skips their positions, so data row ``i`` is still ``i + 1``.
    """

    frame: pd.DataFrame
    source: str
    format: str
    encoding: str | None
    bad_rows: tuple[BadRow, ...] = field(default=())


@dataclass(frozen=True)
class BadRow:
    """A malformed CSV row (see the module doc).

    Attributes:
        row: 1-based data row number (the numbering of the readable rows:
            header and blank lines not counted).
        line: 1-based line of the file where the row starts.
        problem: what is wrong (``expected 3 fields, saw 4``, ``broken quoting: ...``).
        fields: the row's fields as far as they can be split (for the quarantine's raw row).
    """

    row: int
    line: int
    problem: str
    fields: tuple[str, ...]

    @property
    def note(self) -> str:
        """The quarantine's ``raw_value`` of the row: ``line 7: expected 3 fields, saw 4``."""
        return f"line {self.line}: {self.problem}"

    def record(self, columns: list[str], leave_out: set[str] = frozenset()) -> str:
        """The quarantine's ``raw_row``: JSON of the fields under the header's names (extra
        fields as ``_extra_1``, ...), the ``leave_out`` columns (personal data) omitted."""
        import json

        names = list(columns) + [f"_extra_{k + 1}" for k in range(max(0, len(self.fields) - len(columns)))]
        return json.dumps({n: v for n, v in zip(names, self.fields) if n not in leave_out}, ensure_ascii=False)


def detect_format(
    path: str | Path, format: str | None = None, *, formats: tuple[str, ...] = FORMATS
) -> str:
    """Return the reader format for ``path``, one of ``formats``.

    Args:
        path: the file; its extension decides unless ``format`` is given.
            A trailing ``.gz``/``.bz2``/``.xz`` is looked through.
        format: explicit override (also accepts ``txt``, ``tsv``, ``pq``;
            ``ndjson``/``json`` for ``jsonl``, ``xlsx`` for ``excel``).
        formats: the formats allowed: :data:`FORMATS` (single-file path) or
            :data:`SOURCE_FORMATS` (``sources.yaml``).

    Raises:
        DataError: unknown ``format``, unknown extension, or a compressed
            Parquet / Excel file.
    """
    path = Path(path)
    if format is not None:
        key = format.strip().lower()
        if key not in _FORMAT_ALIASES or _FORMAT_ALIASES[key] not in formats:
            raise DataError(f"unknown format {format!r}; use one of: {', '.join(formats)}")
        return _FORMAT_ALIASES[key]
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] in _COMPRESSIONS
    ext = suffixes[-2] if compressed and len(suffixes) >= 2 else (suffixes[-1] if suffixes and not compressed else "")
    fmt = _EXTENSIONS.get(ext)
    if fmt is None or fmt not in formats:
        known = ".csv, .parquet/.pq, .txt/.dat/.tsv (optionally .gz)"
        if "jsonl" in formats:
            known += ", .jsonl/.ndjson, .xlsx"
        raise DataError(
            f"cannot tell the format of {path} from its extension; "
            f"use {known}, or pass a format ({', '.join(formats)})"
        )
    if fmt in ("parquet", "excel") and compressed:
        label = "Parquet" if fmt == "parquet" else "Excel"
        raise DataError(f"{path}: compressed {label} files are not supported; decompress it first")
    return fmt


def _base_suffix(path: Path) -> str:
    """The extension under any compression suffix: ``a.tsv.gz`` -> ``.tsv``."""
    suffixes = [x.lower() for x in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSIONS:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _opener(path: Path):
    return _COMPRESSIONS.get(path.suffix.lower(), open)


def _first_line(path: Path, encoding: str) -> str:
    with _opener(path)(path, "rt", encoding=encoding, errors="replace") as fh:
        for line in fh:
            if line.strip():
                return line
    return ""


def _csv_separator(header_line: str) -> str:
    if "," in header_line:
        return ","
    counts = {sep: header_line.count(sep) for sep in (";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


#: Physical lines a quoted field may span before its quote counts as broken.
MAX_QUOTED_LINES = 1000


def _loose_fields(text: str, sep: str) -> tuple[str, ...]:
    """A malformed row split as far as possible (non-strict csv; newlines kept inside fields)."""
    try:
        return tuple(next(csv.reader([text.replace("\n", " ")], delimiter=sep), []))
    except csv.Error:
        return (text,)


def _read_csv_lenient(
    path: Path, sep: str, has_header: bool, columns: tuple[str, ...] | None, encoding: str
) -> tuple[pd.DataFrame, tuple[BadRow, ...]]:
    """Read a CSV file record by record, setting malformed rows aside (slow path; module doc)."""
    with _opener(path)(path, "rt", encoding=encoding, newline="") as fh:
        lines = fh.read().split("\n")
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    if lines and lines[-1] == "":
        lines.pop()
    i, n_lines = 0, len(lines)
    while i < n_lines and lines[i] == "":
        i += 1
    names: list[str] | None = list(columns) if columns is not None else None
    if has_header:
        if i >= n_lines:
            raise pd.errors.EmptyDataError("no header")
        header = _loose_fields(lines[i], sep)
        if names is None:
            names = [c.strip() for c in header]
        i += 1
    width = len(names) if names is not None else None
    rows: list[tuple[str, ...]] = []
    index: list[int] = []
    bad: list[BadRow] = []
    number = 0  # data rows so far
    while i < n_lines:
        if lines[i] == "":
            i += 1
            continue
        number += 1
        start, j, text = i, i, lines[i]
        while text.count('"') % 2 and j + 1 < n_lines and j - start < MAX_QUOTED_LINES:
            j += 1
            text += "\n" + lines[j]
        problem = None
        if text.count('"') % 2:
            problem, j = "broken quoting: a quote that never closes", start
        else:
            try:
                fields = tuple(next(csv.reader([text], delimiter=sep, strict=True), []))
            except csv.Error as exc:
                problem = f"broken quoting: {exc}"
            else:
                if width is None:
                    width = len(fields)
                if len(fields) > width:
                    problem = f"expected {width} fields, saw {len(fields)}"
        if problem is not None and j > start:  # a quote spanning lines into a bad row: only its own line is bad
            problem, j = "broken quoting: a quote that does not close into a row", start
        if problem is not None:
            bad.append(BadRow(number, start + 1, problem, _loose_fields(lines[start] if j == start else text, sep)))
        else:
            rows.append(fields + ("",) * (width - len(fields)))
            index.append(number - 1)
        i = j + 1
    if names is None:
        names = [f"column_{k + 1}" for k in range(width or 0)]
    frame = pd.DataFrame(rows, columns=names, index=pd.Index(index, dtype="int64"), dtype=str)
    if not rows:
        frame = pd.DataFrame({c: pd.Series([], dtype=str) for c in names})
    return frame, tuple(bad)


def _read_text(
    path: Path, fmt: str, has_header: bool, columns: tuple[str, ...] | None, encoding: str,
    bad_rows: str = "raise",
) -> pd.DataFrame | tuple[pd.DataFrame, tuple[BadRow, ...]]:
    kwargs = _text_kwargs(path, fmt, has_header, columns, encoding)
    try:
        frame = pd.read_csv(path, **kwargs)
    except pd.errors.ParserError:
        if fmt != "csv":
            raise
        frame, bad = _read_csv_lenient(path, str(kwargs["sep"]), has_header, columns, encoding)
        if bad_rows == "raise" and bad:
            first = bad[0]
            raise DataError(
                f"cannot parse {path} as csv: data row {first.row} (line {first.line}): {first.problem}"
                f"{f' (and {len(bad) - 1} more malformed row(s))' if len(bad) > 1 else ''}; "
                "ingest sets such rows aside in the quarantine (bad_row)"
            ) from None
        return frame, bad
    _name_columns(frame, has_header, columns)
    return (frame, ()) if bad_rows == "keep" else frame


def _name_columns(frame: pd.DataFrame, has_header: bool, columns: tuple[str, ...] | None) -> None:
    """Header names stripped, or ``column_1``, ... for a file without header (in place)."""
    if columns is None:
        if has_header:
            frame.columns = [str(c).strip() for c in frame.columns]
        else:
            frame.columns = [f"column_{i + 1}" for i in range(frame.shape[1])]


def _text_kwargs(
    path: Path, fmt: str, has_header: bool, columns: tuple[str, ...] | None, encoding: str
) -> dict[str, object]:
    """``pandas.read_csv`` arguments that read every field of a csv / whitespace file as text."""
    kwargs: dict[str, object] = dict(
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        skip_blank_lines=True,
        encoding=encoding,
        compression="infer",
        index_col=False,
    )
    if fmt == "whitespace":
        kwargs["sep"] = r"\s+"
    elif _base_suffix(path) == ".tsv":
        kwargs["sep"] = "\t"
    else:
        kwargs["sep"] = _csv_separator(_first_line(path, encoding))
    if has_header:
        kwargs["header"] = 0
        if columns is not None:
            kwargs["names"] = list(columns)
    else:
        kwargs["header"] = None
        if columns is not None:
            kwargs["names"] = list(columns)
    return kwargs


def _parquet_to_text(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return _arrow_to_text(pq.read_table(path))


def _arrow_to_text(table: pa.Table) -> pd.DataFrame:
    import pyarrow.compute as pc
    import pyarrow.types as pat

    out: dict[str, pd.Series] = {}
    for name, column in zip(table.column_names, table.columns):
        kind = column.type
        if pat.is_timestamp(kind) or pat.is_date(kind):
            out[str(name)] = pd.Series(column.to_pandas(date_as_object=False), name=str(name))
            continue
        if pat.is_floating(kind):
            # keep the float spelling ("17850.0") so that id normalisation sees and counts it
            values = column.to_pandas()
            text = values.map(str).where(values.notna(), "").astype(str)
        else:
            try:
                text = pc.cast(column, pa.string()).to_pandas().astype(object)
            except pa.ArrowException:
                text = column.to_pandas().astype(object)
            text = text.where(pd.notna(text), "").astype(str)
        out[str(name)] = text.str.strip()
    return pd.DataFrame(out, index=pd.RangeIndex(table.num_rows))


def values_to_text(values: pd.Series) -> pd.Series:
    """Turn one column of Python/NumPy values into text, the way every reader does.

    Datetime columns (all non-null values are dates/datetimes) come back as
    ``datetime64`` (naive or tz-aware as they were); everything else as
    stripped text: ``None``/NaN -> ``""``, floats keep their spelling
    (``17850.0``), :class:`decimal.Decimal` as written, booleans
    ``true``/``false``, bytes decoded as UTF-8.
    """
    import datetime as dt
    import decimal

    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values
    present = values[values.notna()]
    if len(present) and all(isinstance(v, (dt.datetime, dt.date, pd.Timestamp)) for v in present):
        try:
            return pd.to_datetime(values)
        except (ValueError, TypeError):
            pass  # mixed zones: fall through to text

    def one(v: object) -> str:
        if v is None or (isinstance(v, float) and v != v) or v is pd.NaT or v is pd.NA:
            return ""
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, decimal.Decimal):
            return format(v, "f")
        if isinstance(v, bytes):
            return v.decode("utf-8", errors="replace")
        return str(v)

    return pd.Series([one(v).strip() for v in values.tolist()], index=values.index, dtype=str)


def _read_excel(path: Path, sheet: str | int | None) -> pd.DataFrame:
    try:
        frame = pd.read_excel(path, sheet_name=0 if sheet is None else sheet, dtype=object, engine="openpyxl")
    except ValueError as exc:
        if "not found" in str(exc).lower() or "worksheet" in str(exc).lower():
            raise DataError(f"{path}: sheet {sheet!r} not found") from None
        raise
    except IndexError:
        raise DataError(f"{path}: sheet {sheet!r} not found") from None
    frame = frame.dropna(how="all").reset_index(drop=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    return pd.DataFrame({c: values_to_text(frame[c]) for c in frame.columns}, index=frame.index)


class _JsonNumber(str):
    """A JSON number kept as it was written (``19.90`` stays ``19.90``)."""


def _json_text(value: object) -> str:
    """JSON text of a nested value, numbers as written."""
    import json

    if isinstance(value, _JsonNumber):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {_json_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_json_text(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _json_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return _json_text(value)
    return str(value).strip()


def _read_jsonl(path: Path, encoding: str | None) -> tuple[pd.DataFrame, str]:
    import json

    used = encoding or "utf-8"
    try:
        with _opener(path)(path, "rt", encoding="utf-8-sig" if used == "utf-8" else used) as fh:
            lines = fh.read().splitlines()
    except UnicodeDecodeError:
        if encoding is not None:
            raise
        used = "latin-1"
        with _opener(path)(path, "rt", encoding=used) as fh:
            lines = fh.read().splitlines()
    records: list[dict[str, str]] = []
    columns: dict[str, None] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            # numbers keep their spelling: "19.90" stays "19.90", 17850 stays "17850"
            obj = json.loads(line, parse_float=_JsonNumber, parse_int=_JsonNumber)
        except json.JSONDecodeError as exc:
            raise DataError(f"cannot parse {path} as jsonl: line {number}: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"cannot parse {path} as jsonl: line {number} is not a JSON object")
        record = {str(k).strip(): _json_value(v) for k, v in obj.items()}
        columns.update(dict.fromkeys(record))
        records.append(record)
    if not records:
        raise DataError(f"{path} is empty (no JSON objects)")
    names = list(columns)
    frame = pd.DataFrame(
        {c: pd.Series([r.get(c, "") for r in records], dtype=str) for c in names},
        index=pd.RangeIndex(len(records)),
    )
    return frame, used


def read_table(
    path: str | Path,
    format: str | None = None,
    *,
    has_header: bool = True,
    columns: tuple[str, ...] | list[str] | None = None,
    encoding: str | None = None,
    sheet: str | int | None = None,
    formats: tuple[str, ...] = FORMATS,
    bad_rows: str = "raise",
) -> RawTable:
    """Read ``path`` with every column as text.

    Args:
        path: CSV, whitespace-separated text, Parquet, JSON lines or Excel
            file (see module doc; ``formats`` says which are accepted).
        format: override the format chosen from the extension.
        has_header: whether the first line names the columns (text formats).
        columns: column names in file order; for a header-less file they name
            the columns (default ``column_1``, ``column_2``, ...), with a
            header they replace it. Only for csv / whitespace files.
        encoding: text encoding; None = UTF-8 with a Latin-1 fallback.
        sheet: Excel sheet name or 0-based index (default: the first sheet).
        formats: accepted formats, :data:`FORMATS` or :data:`SOURCE_FORMATS`.
        bad_rows: ``"raise"`` (a malformed CSV row refuses the file) or
            ``"keep"`` (it is set aside in :attr:`RawTable.bad_rows` and the
            rest is read; module doc, "Malformed CSV rows").

    Returns:
        :class:`RawTable` with ``frame`` of shape (data rows, source columns).

    Raises:
        DataError: the file does not exist, cannot be read or parsed (the
            message names the file and, where known, the line); a JSON line
            is not an object; the Excel sheet does not exist; ``bad_rows``
            is ``"raise"`` and a CSV row is malformed.
    """
    if bad_rows not in ("raise", "keep"):
        raise ValueError(f"bad_rows must be 'raise' or 'keep', got {bad_rows!r}")
    path = Path(path)
    fmt = detect_format(path, format, formats=formats)
    cols = _check_file(path, fmt, columns)
    with _read_errors(path, fmt):
        if fmt == "parquet":
            frame = _parquet_to_text(path)
            return RawTable(frame=frame, source=str(path), format=fmt, encoding=None)
        if fmt == "excel":
            return RawTable(frame=_read_excel(path, sheet), source=str(path), format=fmt, encoding=None)
        if fmt == "jsonl":
            frame, used = _read_jsonl(path, encoding)
            return RawTable(frame=frame, source=str(path), format=fmt, encoding=used)
        if encoding is not None:
            out, used = _read_text(path, fmt, has_header, cols, encoding, bad_rows), encoding
        else:
            try:
                out, used = _read_text(path, fmt, has_header, cols, "utf-8-sig", bad_rows), "utf-8"
            except UnicodeDecodeError:
                out, used = _read_text(path, fmt, has_header, cols, "latin-1", bad_rows), "latin-1"
        frame, bad = out if isinstance(out, tuple) else (out, ())
        if bad:  # the frame's index keeps the data row numbers (it skips the bad rows)
            return RawTable(frame=frame, source=str(path), format=fmt, encoding=used, bad_rows=bad)
    frame = frame.reset_index(drop=True)
    return RawTable(frame=frame, source=str(path), format=fmt, encoding=used)


def _check_file(path: Path, fmt: str, columns: tuple[str, ...] | list[str] | None) -> tuple[str, ...] | None:
    """The ``columns`` as a tuple, after checking that ``path`` is a file they may name.

    Raises:
        DataError: the file does not exist or is a directory, or ``columns`` is
            given for a format that names its own columns.
    """
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a data file")
    cols = tuple(columns) if columns is not None else None
    if cols is not None and fmt not in ("csv", "whitespace"):
        raise DataError(f"{path}: 'columns' applies to text files; {fmt} columns are already named")
    return cols


@contextlib.contextmanager
def _read_errors(path: Path, fmt: str) -> Iterator[None]:
    """Turn a reader's exceptions into a :class:`DataError` naming the file and the format."""
    try:
        yield
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty (no header and no data rows)") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"cannot parse {path} as {fmt}: {str(exc).strip()}") from None
    except (OSError, EOFError, UnicodeError, ValueError, lzma.LZMAError) as exc:
        detail = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
        raise DataError(f"cannot read {path} as {fmt}: {detail}") from None
    except pa.ArrowException as exc:
        raise DataError(f"cannot read {path} as {fmt}: {exc}") from None
    except Exception as exc:  # openpyxl / zipfile raise their own types on corrupt files
        if fmt != "excel":
            raise
        raise DataError(f"cannot read {path} as excel: {str(exc).strip() or type(exc).__name__}") from None


#: Data rows per batch of :func:`read_batches`.
BATCH_ROWS = 100_000


class ReadAgain(Exception):
    """:func:`read_batches` found that the file must be read another way (it is not UTF-8, or
    it has malformed CSV rows), possibly after batches were yielded: the caller discards
    them and iterates ``read_batches(..., encoding=self.encoding, lenient=self.lenient)``."""

    def __init__(self, encoding: str | None, lenient: bool) -> None:
        super().__init__(f"read again with encoding {encoding or 'detected'}{' (lenient)' if lenient else ''}")
        self.encoding = encoding
        self.lenient = lenient


def batches_of(raw: RawTable, batch_rows: int | None = None) -> Iterator[tuple[int, RawTable]]:
    """``raw`` in pieces of ``batch_rows`` (default :data:`BATCH_ROWS`) data rows (malformed rows
    included), as :func:`read_batches` yields them.

    Yields:
        (offset, batch): data row ``i + 1`` of ``batch`` (index ``i``, numbered
        within the batch, malformed rows too) is data row ``offset + i + 1`` of
        ``raw``. A table without rows gives one empty batch (it names the columns).
    """
    batch_rows = batch_rows or BATCH_ROWS
    index = raw.frame.index.to_numpy()
    total = len(raw.frame) + len(raw.bad_rows)
    for offset in range(0, max(total, 1), batch_rows):
        lo, hi = np.searchsorted(index, [offset, offset + batch_rows])
        part = raw.frame.iloc[lo:hi]
        bad = tuple(replace(b, row=b.row - offset) for b in raw.bad_rows if offset < b.row <= offset + batch_rows)
        part.index = pd.Index(index[lo:hi] - offset, dtype="int64") if bad else pd.RangeIndex(hi - lo)
        yield offset, RawTable(frame=part, source=raw.source, format=raw.format, encoding=raw.encoding, bad_rows=bad)


def read_batches(
    path: str | Path,
    format: str | None = None,
    *,
    has_header: bool = True,
    columns: tuple[str, ...] | list[str] | None = None,
    encoding: str | None = None,
    sheet: str | int | None = None,
    formats: tuple[str, ...] = FORMATS,
    batch_rows: int | None = None,
    lenient: bool = False,
) -> Iterator[tuple[int, RawTable]]:
    """Read ``path`` like :func:`read_table` with ``bad_rows="keep"``, ``batch_rows`` data rows at a time.

    CSV / whitespace files (pandas' chunked reader) and Parquet files (row
    batches) are read in bounded memory; JSON lines and Excel files are read
    whole and handed out in pieces, and so is a CSV file with malformed rows
    (``lenient``; the module doc's slow path).

    Args:
        path, format, has_header, columns, encoding, sheet, formats: as for :func:`read_table`.
        batch_rows: data rows per batch (> 0; default :data:`BATCH_ROWS`).
        lenient: read a CSV file record by record, setting malformed rows aside
            (what :class:`ReadAgain` asks for once the fast reader met one).

    Yields:
        (offset, batch) as :func:`batches_of`: the batches together hold the
        rows :func:`read_table` reads, in file order.

    Raises:
        ReadAgain: the file is not UTF-8 (no ``encoding`` given) or has a
            malformed CSV row; raised as soon as the reader meets it.
        DataError: as :func:`read_table`.
    """
    path = Path(path)
    batch_rows = batch_rows or BATCH_ROWS
    fmt = detect_format(path, format, formats=formats)
    if fmt not in ("csv", "whitespace", "parquet") or lenient:
        raw = read_table(path, fmt, has_header=has_header, columns=columns, encoding=encoding, sheet=sheet,
                         formats=formats, bad_rows="keep")
        yield from batches_of(raw, batch_rows)
        return
    cols = _check_file(path, fmt, columns)
    with _read_errors(path, fmt):
        if fmt == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            offset = 0
            for batch in parquet.iter_batches(batch_size=batch_rows):
                yield offset, RawTable(frame=_arrow_to_text(pa.Table.from_batches([batch])), source=str(path),
                                       format=fmt, encoding=None)
                offset += batch.num_rows
            if offset == 0:
                yield 0, RawTable(frame=_arrow_to_text(parquet.schema_arrow.empty_table()), source=str(path),
                                  format=fmt, encoding=None)
            return
        used = encoding or "utf-8"
        kwargs = _text_kwargs(path, fmt, has_header, cols, "utf-8-sig" if encoding is None else encoding)
        offset = 0
        try:
            with pd.read_csv(path, chunksize=batch_rows, **kwargs) as reader:
                for chunk in reader:
                    _name_columns(chunk, has_header, cols)
                    chunk.index = pd.RangeIndex(len(chunk))
                    yield offset, RawTable(frame=chunk, source=str(path), format=fmt, encoding=used)
                    offset += len(chunk)
        except UnicodeDecodeError:
            if encoding is not None:
                raise
            raise ReadAgain("latin-1", lenient=False) from None
        except pd.errors.ParserError:
            if fmt != "csv":
                raise
            raise ReadAgain(encoding, lenient=True) from None


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, 64 hex characters.

    Raises:
        DataError: the file cannot be read.
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return h.hexdigest()
