"""Column mapping: which source column holds each canonical field, and how to read it.

A mapping goes from the *canonical* name (see :mod:`ltvcast.schema`) to
the *source* column name in the file. Written on the command line::

    --map customer_id=CustomerID,amount=Sales,timestamp=InvoiceDate

or as a flat YAML file (``--map-file mapping.yaml``)::

    customer_id: CustomerID
    timestamp: InvoiceDate
    quantity: Quantity
    unit_price: UnitPrice      # amount = quantity x unit_price
    date_format: "%d/%m/%Y %H:%M"   # optional, strptime codes
    dayfirst: true                  # optional, 01/02/2020 = 1 February
    has_header: false               # optional, for header-less text files
    decimal: ","                    # optional, decimal commas: 1.234,56 = 1234.56
    columns: [customer_id, date, number_of_cds, dollar_value]
    exclude: {product_id: [POST, M, DOT]}   # optional, rows left out (and counted)

Rules:

* A canonical field whose source column already carries the canonical name
  needs no mapping.
* ``amount`` may be mapped directly, or derived: map ``unit_price`` (and
  ``quantity``) instead and the amount is ``quantity x unit_price`` (e.g. the
  Online Retail export's ``Quantity`` x ``UnitPrice``). Mapping both
  ``amount`` and ``unit_price`` is an error.
* ``columns`` names the columns of a file in order. Given without
  ``has_header``, the file is taken to have **no** header line; with
  ``has_header: true`` the names replace the file's own header.
* ``decimal: ","`` (``--decimal ,``) reads numbers with a decimal comma
  (``1.234,56`` = 1234.56; ``.`` or spaces group thousands), see
  :func:`ltvcast.ingest.parse.number_format`. Default ``"."``.
* ``exclude`` (``--exclude product_id=POST,M,DOT``) leaves out every row
  whose column holds one of the listed values (exact text after trimming
  spaces), e.g. postage, manual adjustments and bank charges in the Online
  Retail export. The key is a canonical field (its mapped source column is
  used) or a source column name. Excluded rows are counted per rule
  (``IngestStats.excluded``), never lost silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ltvcast.errors import DataError
from ltvcast.ingest.parse import check_decimal
from ltvcast.schema import TRANSACTION_COLUMNS
from ltvcast.yamlfile import read_yaml

#: Canonical names a mapping may target: the transaction columns plus
#: ``unit_price`` (used to derive ``amount``).
MAPPABLE_FIELDS: tuple[str, ...] = TRANSACTION_COLUMNS + ("unit_price",)

_OPTION_KEYS = ("date_format", "dayfirst", "has_header", "columns", "decimal", "exclude")


def exclude_rule(data: object, origin: str) -> dict[str, tuple[str, ...]]:
    """Check an exclusion rule (``exclude:`` of a mapping file or of a ``sources.yaml`` source,
    ``--exclude``): column name -> non-empty list of text values.

    Raises:
        DataError: not a mapping, a key that is not a name, or values that are not a
            non-empty list of text (the message starts with ``origin``).
    """
    if not isinstance(data, Mapping):
        raise DataError(f"{origin}: exclude must map a column to the values to leave out, e.g. {{product_id: [POST, M]}}")
    out: dict[str, tuple[str, ...]] = {}
    for key, values in data.items():
        if not isinstance(key, str) or not key.strip():
            raise DataError(f"{origin}: exclude keys must be column names, got {key!r}")
        if isinstance(values, (str, int)) and not isinstance(values, bool):
            values = [values]
        if not isinstance(values, (list, tuple)) or not values or not all(
            isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip() for v in values
        ):
            raise DataError(f"{origin}: exclude {key} must list the values to leave out as text, got {values!r}")
        out[key.strip()] = tuple(dict.fromkeys(str(v).strip() for v in values))
    return out


def excluded_rows(
    frame: pd.DataFrame, rules: Mapping[str, tuple[str, ...]], fields: Mapping[str, str], source: str
) -> tuple[np.ndarray, dict[str, int]]:
    """Which rows an exclusion rule leaves out (values compared as stripped text, exactly).

    Args:
        frame: the source table as text (readers), shape (rows, columns).
        rules: column -> values (:func:`exclude_rule`); a key is a canonical
            field (looked up in ``fields``) or a source column.
        fields: canonical field -> source column.
        source: file name for messages.

    Returns:
        (boolean mask of shape (rows,), ``column=value`` -> rows left out, for
        values that occurred; a row counts under the first rule it matches, so
        the counts add up to ``mask.sum()``).

    Raises:
        DataError: a rule's column is neither mapped nor in the table.
    """
    names = [str(c) for c in frame.columns]
    hit = np.zeros(len(frame), dtype=bool)
    out: dict[str, int] = {}
    for key, values in rules.items():
        column = fields.get(key, key)
        if column not in names:
            raise DataError(
                f"{source}: exclude names column {key!r}, which is not in the file; "
                f"columns found: {', '.join(names)}"
            )
        text = frame[frame.columns[names.index(column)]].astype("string").str.strip()
        for value in values:
            match = (text == value).fillna(False).to_numpy(dtype=bool) & ~hit
            if match.any():
                out[f"{key}={value}"] = int(match.sum())
                hit |= match
    return hit, out


@dataclass(frozen=True)
class ColumnMapping:
    """How to find the canonical fields in one source file.

    Attributes:
        fields: canonical name -> source column name (only the fields whose
            source name differs from the canonical one need to be listed).
        date_format: ``strptime`` format of the timestamp column, or None to
            recognise it automatically (ISO 8601, ``YYYYMMDD`` and common
            slash/dot formats).
        dayfirst: read ambiguous dates such as ``01/02/2020`` as day first
            (1 February). None means not stated (month first).
        has_header: whether the file's first line names the columns. None
            means "yes, unless ``columns`` is given".
        columns: the column names of the file, in order (for header-less files).
        decimal: the decimal mark of its numbers, ``"."`` or ``","``; None
            means ``"."``.
        exclude: column (canonical field or source column) -> values whose
            rows are left out and counted (see the module doc).
    """

    fields: Mapping[str, str] = field(default_factory=dict)
    date_format: str | None = None
    dayfirst: bool | None = None
    has_header: bool | None = None
    columns: tuple[str, ...] | None = None
    decimal: str | None = None
    exclude: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.decimal is not None:
            check_decimal(self.decimal)
        object.__setattr__(self, "exclude", exclude_rule(self.exclude, "exclude"))
        unknown = sorted(set(self.fields) - set(MAPPABLE_FIELDS))
        if unknown:
            raise DataError(
                f"unknown canonical column(s) in mapping: {', '.join(unknown)}; "
                f"mappable columns are: {', '.join(MAPPABLE_FIELDS)}"
            )
        for canonical, source in self.fields.items():
            if not isinstance(source, str) or not source.strip():
                raise DataError(f"mapping for {canonical!r} must be a non-empty column name, got {source!r}")
        if "amount" in self.fields and "unit_price" in self.fields:
            raise DataError(
                "map either amount or unit_price (amount = quantity x unit_price), not both"
            )
        if self.columns is not None and len(set(self.columns)) != len(self.columns):
            raise DataError(f"columns must be distinct names, got {list(self.columns)}")
        object.__setattr__(self, "fields", {k: v.strip() for k, v in self.fields.items()})

    @property
    def header(self) -> bool:
        """Whether the file's first line is a header (resolves the None default)."""
        if self.has_header is not None:
            return self.has_header
        return self.columns is None

    def updated(
        self,
        fields: Mapping[str, str] | None = None,
        *,
        date_format: str | None = None,
        dayfirst: bool | None = None,
        has_header: bool | None = None,
        columns: Iterable[str] | None = None,
        decimal: str | None = None,
        exclude: Mapping[str, Iterable[str]] | None = None,
    ) -> ColumnMapping:
        """Return a copy with ``fields`` and ``exclude`` merged in and every non-None option replaced.

        Used to lay command-line options over a mapping file.

        Raises:
            DataError: the merged mapping is invalid (see the class rules).
        """
        merged = dict(self.fields)
        merged.update(fields or {})
        return replace(
            self,
            fields=merged,
            date_format=date_format if date_format is not None else self.date_format,
            dayfirst=dayfirst if dayfirst is not None else self.dayfirst,
            has_header=has_header if has_header is not None else self.has_header,
            columns=tuple(columns) if columns is not None else self.columns,
            decimal=decimal if decimal is not None else self.decimal,
            exclude={**self.exclude, **{k: tuple(v) for k, v in (exclude or {}).items()}},
        )

    def to_dict(self) -> dict[str, object]:
        """The mapping as a plain dict (the YAML file layout), options left out when unset."""
        out: dict[str, object] = dict(self.fields)
        for key in _OPTION_KEYS:
            value = getattr(self, key)
            if key == "exclude":
                if value:
                    out[key] = {k: list(v) for k, v in value.items()}
            elif value is not None:
                out[key] = list(value) if key == "columns" else value
        return out


def parse_map_option(text: str) -> dict[str, str]:
    """Parse ``"customer_id=CustomerID,amount=Sales"`` into ``{canonical: source}``.

    Whitespace around names is ignored; an empty text gives ``{}``.

    Raises:
        DataError: an item is not ``canonical=source`` or names an unknown
            canonical column.
    """
    out: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        canonical, sep, source = item.partition("=")
        canonical, source = canonical.strip(), source.strip()
        if not sep or not canonical or not source:
            raise DataError(
                f"--map item {item.strip()!r} is not canonical=source "
                "(e.g. customer_id=CustomerID,amount=Sales)"
            )
        out[canonical] = source
    ColumnMapping(fields=out)  # validate names
    return out


def parse_exclude_option(text: str) -> dict[str, tuple[str, ...]]:
    """Parse ``--exclude "product_id=POST,M,DOT"`` into ``{"product_id": ("POST", "M", "DOT")}``.

    Raises:
        DataError: the text is not ``column=value,value,...``.
    """
    column, sep, values = text.partition("=")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not column.strip() or not items:
        raise DataError(f"--exclude {text!r} is not column=value,value,... (e.g. product_id=POST,M,DOT)")
    return exclude_rule({column.strip(): items}, "--exclude")


def _bool(value: object, key: str, path: Path) -> bool:
    if isinstance(value, bool):
        return value
    raise DataError(f"{path}: {key} must be true or false, got {value!r}")


def mapping_from_dict(data: Mapping[str, object], origin: str = "mapping") -> ColumnMapping:
    """Build a :class:`ColumnMapping` from the flat YAML layout (see module doc).

    Raises:
        DataError: unknown keys, non-text column names, or invalid options;
            the message starts with ``origin``.
    """
    path = Path(origin)
    fields: dict[str, str] = {}
    options: dict[str, object] = {}
    for key, value in data.items():
        key = str(key)
        if key in _OPTION_KEYS:
            options[key] = value
        elif key in MAPPABLE_FIELDS:
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise DataError(f"{origin}: column name for {key!r} must be text, got {value!r}")
            fields[key] = str(value)
        else:
            raise DataError(
                f"{origin}: unknown key {key!r}; use canonical columns "
                f"({', '.join(MAPPABLE_FIELDS)}) or options ({', '.join(_OPTION_KEYS)})"
            )
    date_format = options.get("date_format")
    if date_format is not None and not isinstance(date_format, str):
        raise DataError(f"{origin}: date_format must be text such as '%d/%m/%Y', got {date_format!r}")
    columns = options.get("columns")
    if columns is not None:
        if not isinstance(columns, list) or not all(isinstance(c, (str, int)) for c in columns):
            raise DataError(f"{origin}: columns must be a list of names, got {columns!r}")
        columns = tuple(str(c) for c in columns)
    try:
        return ColumnMapping(
            fields=fields,
            date_format=date_format,
            dayfirst=_bool(options["dayfirst"], "dayfirst", path) if "dayfirst" in options else None,
            has_header=_bool(options["has_header"], "has_header", path) if "has_header" in options else None,
            columns=columns,
            decimal=None if options.get("decimal") is None else str(options["decimal"]),
            exclude=exclude_rule(options["exclude"], "exclude") if options.get("exclude") is not None else {},
        )
    except DataError as exc:
        raise DataError(f"{origin}: {exc}") from None


def load_mapping_file(path: str | Path) -> ColumnMapping:
    """Read a flat YAML mapping file (layout in the module doc).

    Raises:
        DataError: the file is missing, is not YAML, is not a flat mapping,
            or holds unknown keys / invalid options (the message names the file).
    """
    path = Path(path)
    data = read_yaml(path, "mapping file")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DataError(f"mapping file {path} must be a flat mapping such as 'customer_id: CustomerID'")
    return mapping_from_dict(data, origin=str(path))
