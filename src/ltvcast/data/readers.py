"""Read a source file into a frame of raw text, one column per source column.

Every value is read as text, so that ids such as ``00012`` keep their leading
zeros; parsing into numbers and timestamps happens later
(:mod:`ltvcast.data.validate`). Empty fields are the empty string ``""``,
never NaN.

Formats (chosen from the file extension, or given explicitly):

==============  =====================================  ==================================
format          extensions                             notes
==============  =====================================  ==================================
``csv``         ``.csv`` (+ ``.gz``, ``.bz2``, ``.xz``)  separator ``,``; a header line
                                                       without commas but with ``;``,
                                                       tab or ``|`` uses that separator
``whitespace``  ``.txt``, ``.dat``, ``.tsv`` (+ the    any run of spaces/tabs separates
                same compressions)                     fields (fields cannot hold spaces)
``parquet``     ``.parquet``, ``.pq``                  typed columns are turned into text;
                                                       timestamp columns stay timestamps
==============  =====================================  ==================================

Text files are decoded as UTF-8 (a byte-order mark is ignored); a file that
is not valid UTF-8 is read as Latin-1 (which decodes any byte), and the
encoding used is reported.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ltvcast.errors import DataError

FORMATS: tuple[str, ...] = ("csv", "whitespace", "parquet")
_FORMAT_ALIASES = {
    "csv": "csv",
    "whitespace": "whitespace",
    "txt": "whitespace",
    "text": "whitespace",
    "dat": "whitespace",
    "tsv": "whitespace",
    "parquet": "parquet",
    "pq": "parquet",
}
_EXTENSIONS = {
    ".csv": "csv",
    ".txt": "whitespace",
    ".dat": "whitespace",
    ".tsv": "whitespace",
    ".parquet": "parquet",
    ".pq": "parquet",
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
        format: ``"csv"``, ``"whitespace"`` or ``"parquet"``.
        encoding: the text encoding used (None for Parquet).
    """

    frame: pd.DataFrame
    source: str
    format: str
    encoding: str | None


def detect_format(path: str | Path, format: str | None = None) -> str:
    """Return the reader format for ``path``: ``"csv"``, ``"whitespace"`` or ``"parquet"``.

    Args:
        path: the file; its extension decides unless ``format`` is given.
            A trailing ``.gz``/``.bz2``/``.xz`` is looked through.
        format: explicit override (also accepts ``txt``, ``tsv``, ``pq``).

    Raises:
        DataError: unknown ``format``, unknown extension, or a compressed Parquet file.
    """
    path = Path(path)
    if format is not None:
        key = format.strip().lower()
        if key not in _FORMAT_ALIASES:
            raise DataError(f"unknown format {format!r}; use one of: {', '.join(FORMATS)}")
        return _FORMAT_ALIASES[key]
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] in _COMPRESSIONS
    ext = suffixes[-2] if compressed and len(suffixes) >= 2 else (suffixes[-1] if suffixes and not compressed else "")
    fmt = _EXTENSIONS.get(ext)
    if fmt is None:
        raise DataError(
            f"cannot tell the format of {path} from its extension; "
            "use .csv, .parquet/.pq, .txt/.dat/.tsv (optionally .gz), or pass a format "
            f"({', '.join(FORMATS)})"
        )
    if fmt == "parquet" and compressed:
        raise DataError(f"{path}: compressed Parquet files are not supported; decompress it first")
    return fmt


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


def _read_text(
    path: Path, fmt: str, has_header: bool, columns: tuple[str, ...] | None, encoding: str
) -> pd.DataFrame:
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
    frame = pd.read_csv(path, **kwargs)
    if columns is None:
        if has_header:
            frame.columns = [str(c).strip() for c in frame.columns]
        else:
            frame.columns = [f"column_{i + 1}" for i in range(frame.shape[1])]
    return frame


def _parquet_to_text(path: Path) -> pd.DataFrame:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import pyarrow.types as pat

    table = pq.read_table(path)
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


def read_table(
    path: str | Path,
    format: str | None = None,
    *,
    has_header: bool = True,
    columns: tuple[str, ...] | list[str] | None = None,
    encoding: str | None = None,
) -> RawTable:
    """Read ``path`` with every column as text.

    Args:
        path: CSV, whitespace-separated text or Parquet file (see module doc).
        format: override the format chosen from the extension.
        has_header: whether the first line names the columns (text formats).
        columns: column names in file order; for a header-less file they name
            the columns (default ``column_1``, ``column_2``, ...), with a
            header they replace it. Ignored for Parquet, which must be named.
        encoding: text encoding; None = UTF-8 with a Latin-1 fallback.

    Returns:
        :class:`RawTable` with ``frame`` of shape (data rows, source columns).

    Raises:
        DataError: the file does not exist, cannot be read or parsed (the
            message names the file and, where pandas says it, the line).
    """
    path = Path(path)
    fmt = detect_format(path, format)
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a data file")
    cols = tuple(columns) if columns is not None else None
    try:
        if fmt == "parquet":
            frame = _parquet_to_text(path)
            if cols is not None:
                raise DataError(f"{path}: 'columns' applies to text files; Parquet columns are already named")
            return RawTable(frame=frame, source=str(path), format=fmt, encoding=None)
        if encoding is not None:
            frame = _read_text(path, fmt, has_header, cols, encoding)
            used = encoding
        else:
            try:
                frame = _read_text(path, fmt, has_header, cols, "utf-8-sig")
                used = "utf-8"
            except UnicodeDecodeError:
                frame = _read_text(path, fmt, has_header, cols, "latin-1")
                used = "latin-1"
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
    frame = frame.reset_index(drop=True)
    return RawTable(frame=frame, source=str(path), format=fmt, encoding=used)
