"""``sources.yaml``: the shop's settings and the list of its data sources.

Layout and meaning: ``docs/multisource.md`` (the contract). In short::

    shop:
      currency: EUR                 # required
      timezone: Europe/Berlin       # default UTC
      revenue_basis: net            # net | gross
      pseudonymise_ids: false       # key from $LTVCAST_ID_KEY
      personal_columns: [...]       # default DEFAULT_PERSONAL_COLUMNS
      allow_personal: []
      data_end: 2024-06-30          # optional declared last observed day
    sources:
      - kind: orders
        path: orders/*.csv          # or url: + table: / query:
        mapping: {order_id: OrderID}

``${NAME}`` (or ``${NAME:-default}``) in any text value is replaced by the
environment variable ``NAME`` before anything else is read, so a database
password never needs to be written into the file (``url: ${PGURL}``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ltvcast.errors import DataError
from ltvcast.ingest.kinds import KINDS, check_mapping
from ltvcast.ingest.mapping import exclude_rule
from ltvcast.ingest.parse import check_decimal, check_timezone
from ltvcast.ingest.readers import SOURCE_FORMATS, detect_format
from ltvcast.yamlfile import read_yaml

#: Column names treated as personal data when ``personal_columns`` is not given.
DEFAULT_PERSONAL_COLUMNS: tuple[str, ...] = (
    "email",
    "name",
    "first_name",
    "last_name",
    "phone",
    "address",
    "street",
    "ip",
    "ip_address",
)
REVENUE_BASES: tuple[str, ...] = ("net", "gross")
#: Environment variable holding the pseudonymisation key unless ``id_key_env`` names another.
DEFAULT_ID_KEY_ENV = "LTVCAST_ID_KEY"

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_SHOP_KEYS = (
    "currency",
    "timezone",
    "revenue_basis",
    "pseudonymise_ids",
    "id_key_env",
    "personal_columns",
    "allow_personal",
    "data_end",
)
_SOURCE_KEYS = (
    "kind",
    "name",
    "path",
    "url",
    "table",
    "query",
    "format",
    "mapping",
    "timezone",
    "date_format",
    "dayfirst",
    "currency",
    "cancellation_prefix",
    "has_header",
    "columns",
    "encoding",
    "sheet",
    "event_types",
    "invert",
    "decimal",
    "exclude",
)
_KIND_ONLY = {
    "cancellation_prefix": ("orders", "order_items"),
    "event_types": ("events",),
    "invert": ("fx_rates",),
}


@dataclass(frozen=True)
class ShopConfig:
    """The ``shop:`` section.

    Attributes:
        currency: ISO 4217 code of the shop currency (every amount is converted to it).
        timezone: IANA zone deciding which calendar day a purchase belongs to;
            also the default zone of naive timestamps.
        revenue_basis: ``net`` (after returns) or ``gross``.
        pseudonymise_ids: replace customer ids by HMAC-SHA256 pseudonyms.
        id_key_env: environment variable holding the pseudonymisation key.
        personal_columns: source column names holding personal data (matched
            ignoring case and punctuation: ``E-Mail`` matches ``email``).
        allow_personal: personal columns explicitly allowed into the store.
        data_end: declared last observed day (``YYYY-MM-DD``) or None.
    """

    currency: str
    timezone: str = "UTC"
    revenue_basis: str = "net"
    pseudonymise_ids: bool = False
    id_key_env: str = DEFAULT_ID_KEY_ENV
    personal_columns: tuple[str, ...] = DEFAULT_PERSONAL_COLUMNS
    allow_personal: tuple[str, ...] = ()
    data_end: str | None = None


@dataclass(frozen=True)
class SourceSpec:
    """One entry of ``sources:``.

    Attributes:
        kind: one of :data:`ltvcast.ingest.kinds.KINDS`.
        path: file or glob, absolute (resolved against the YAML's folder), or None.
        url: SQLAlchemy database URL (environment variables expanded), or None.
        table: table name (``schema.table`` allowed) when ``url`` is given.
        query: SQL query when ``url`` is given (instead of ``table``).
        format: reader format (``csv``, ``whitespace``, ``parquet``,
            ``jsonl``, ``excel``) or None = from the extension.
        mapping: canonical field -> source column.
        timezone: zone of naive timestamps (None = the shop's).
        date_format, dayfirst: how to read dates (as in the single-file mapping).
        currency: currency of amounts when the source has no currency column;
            None = not declared (the shop's; for returns linked to an order,
            the order's).
        cancellation_prefix: orders / order_items: an order id starting with
            it is a cancellation invoice (None = no prefix rule).
        has_header, columns, encoding: text-file options as in the single-file mapping.
        decimal: the decimal mark of the source's numbers, ``"."`` or ``","``
            (``1.234,56`` = 1234.56; :func:`ltvcast.ingest.parse.number_format`); None = ``"."``.
        sheet: Excel sheet name or index.
        event_types: events: source value -> canonical event type.
        invert: fx_rates: the file gives units of the currency per 1 unit of
            the shop currency (e.g. the ECB's "1 EUR = 1.08 USD").
        name: label for messages (default: path or table).
        index: position in ``sources:`` (0-based), for messages.
        exclude: column (canonical field or source column) -> values whose rows
            are left out and counted (``rows_excluded``), as ``--exclude`` of a
            single-file ingest (:func:`ltvcast.ingest.mapping.excluded_rows`).
    """

    kind: str
    path: str | None = None
    url: str | None = None
    table: str | None = None
    query: str | None = None
    format: str | None = None
    mapping: Mapping[str, str] = field(default_factory=dict)
    timezone: str | None = None
    date_format: str | None = None
    dayfirst: bool | None = None
    currency: str | None = None
    cancellation_prefix: str | None = None
    has_header: bool | None = None
    columns: tuple[str, ...] | None = None
    encoding: str | None = None
    sheet: str | int | None = None
    event_types: Mapping[str, str] = field(default_factory=dict)
    invert: bool = False
    name: str | None = None
    index: int = 0
    decimal: str | None = None
    exclude: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Short name of the source for messages: ``name``, path or table/query."""
        if self.name:
            return self.name
        if self.path:
            return self.path
        return f"{self.table}" if self.table else "query"

    @property
    def header(self) -> bool:
        """Whether a text file's first line names the columns."""
        if self.has_header is not None:
            return self.has_header
        return self.columns is None


@dataclass(frozen=True)
class SourcesConfig:
    """A parsed ``sources.yaml``.

    Attributes:
        shop: the shop settings.
        sources: the sources in file order.
        path: the YAML file (absolute), or None for a config built in code.
    """

    shop: ShopConfig
    sources: tuple[SourceSpec, ...]
    path: Path | None = None


def expand_env(value: object, where: str = "sources.yaml", environ: Mapping[str, str] | None = None) -> object:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of ``value`` (recursively).

    Args:
        value: a YAML tree (dicts, lists, scalars).
        where: file name for messages.
        environ: variables (default ``os.environ``).

    Returns:
        The tree with strings expanded; other values unchanged.

    Raises:
        DataError: a referenced variable is not set and has no default (the
            message names the variable and the file).
    """
    env = os.environ if environ is None else environ
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise DataError(
                f"{where}: environment variable {name} is not set (used as ${{{name}}}); "
                f"set it, e.g. export {name}=..."
            )

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v, where, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, where, env) for v in value]
    return value


def _text(value: object, key: str, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"{where}: {key} must be text, got {value!r}")
    return str(value).strip()


def _flag(value: object, key: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    raise DataError(f"{where}: {key} must be true or false, got {value!r}")


def _names(value: object, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        raise DataError(f"{where}: {key} must be a list of names, got {value!r}")
    return tuple(str(v).strip() for v in value)


def check_currency(value: object, where: str) -> str:
    """Return ``value`` upper-cased if it is a 3-letter ISO 4217 code.

    Raises:
        DataError: not three letters (the message names ``where``).
    """
    text = _text(value, "currency", where).upper()
    if not _CURRENCY.match(text):
        raise DataError(f"{where}: currency must be a 3-letter ISO code such as EUR, got {value!r}")
    return text


def _shop(data: object, where: str) -> ShopConfig:
    if not isinstance(data, dict):
        raise DataError(f"{where}: 'shop:' must be a mapping with at least 'currency: EUR'")
    unknown = sorted(set(map(str, data)) - set(_SHOP_KEYS))
    if unknown:
        raise DataError(f"{where}: unknown key(s) in shop: {', '.join(unknown)}; known: {', '.join(_SHOP_KEYS)}")
    if "currency" not in data:
        raise DataError(f"{where}: shop.currency is required (the currency every amount is converted to)")
    basis = str(data.get("revenue_basis", "net")).strip().lower()
    if basis not in REVENUE_BASES:
        raise DataError(f"{where}: shop.revenue_basis must be net or gross, got {data['revenue_basis']!r}")
    data_end = data.get("data_end")
    if data_end is not None:
        data_end = str(data_end).strip()
    return ShopConfig(
        currency=check_currency(data["currency"], f"{where}: shop"),
        timezone=check_timezone(str(data.get("timezone", "UTC")), f"{where}: shop.timezone"),
        revenue_basis=basis,
        pseudonymise_ids=_flag(data.get("pseudonymise_ids", False), "shop.pseudonymise_ids", where),
        id_key_env=_text(data.get("id_key_env", DEFAULT_ID_KEY_ENV), "shop.id_key_env", where),
        personal_columns=(
            _names(data["personal_columns"], "shop.personal_columns", where)
            if "personal_columns" in data and data["personal_columns"] is not None
            else DEFAULT_PERSONAL_COLUMNS
        ),
        allow_personal=_names(data.get("allow_personal") or [], "shop.allow_personal", where),
        data_end=data_end,
    )


def _source(data: object, index: int, base: Path, where: str) -> SourceSpec:
    at = f"{where}: sources[{index}]"
    if not isinstance(data, dict):
        raise DataError(f"{at} must be a mapping with kind and path (or url)")
    unknown = sorted(set(map(str, data)) - set(_SOURCE_KEYS))
    if unknown:
        raise DataError(f"{at}: unknown key(s) {', '.join(unknown)}; known: {', '.join(_SOURCE_KEYS)}")
    kind = str(data.get("kind", "")).strip()
    if kind not in KINDS:
        raise DataError(f"{at}: kind must be one of {', '.join(KINDS)}, got {data.get('kind')!r}")
    at = f"{at} ({kind})"
    for key, kinds in _KIND_ONLY.items():
        if key in data and kind not in kinds:
            raise DataError(f"{at}: {key} applies to {' / '.join(kinds)} sources only")
    has_path, has_url = data.get("path") is not None, data.get("url") is not None
    if has_path == has_url:
        raise DataError(f"{at}: give exactly one of path (a file or glob) and url (a database)")
    path = url = table = query = None
    if has_path:
        raw = _text(data["path"], "path", at)
        path = str(Path(raw) if Path(raw).is_absolute() else (base / raw))
        for key in ("table", "query"):
            if key in data:
                raise DataError(f"{at}: {key} needs url (a database), not path")
        fmt = data.get("format")
        if fmt is not None or not any(ch in raw for ch in "*?["):
            fmt = detect_format(path, None if fmt is None else _text(fmt, "format", at), formats=SOURCE_FORMATS)
    else:
        url = _text(data["url"], "url", at)
        if ("table" in data) == ("query" in data):
            raise DataError(f"{at}: a database source needs exactly one of table and query")
        table = _text(data["table"], "table", at) if "table" in data else None
        query = _text(data["query"], "query", at) if "query" in data else None
        if "format" in data:
            raise DataError(f"{at}: format applies to files, not to a database source")
        fmt = "sql"
    mapping = data.get("mapping") or {}
    if not isinstance(mapping, dict):
        raise DataError(f"{at}: mapping must be a mapping canonical: SourceColumn, got {mapping!r}")
    mapping = {str(k).strip(): _text(v, f"mapping.{k}", at) for k, v in mapping.items()}
    check_mapping(kind, mapping, at)
    tz = data.get("timezone")
    date_format = data.get("date_format")
    if date_format is not None and not isinstance(date_format, str):
        raise DataError(f"{at}: date_format must be text such as '%d/%m/%Y', got {date_format!r}")
    prefix = data.get("cancellation_prefix")
    if prefix is not None:
        prefix = _text(prefix, "cancellation_prefix", at) or None
    event_types = data.get("event_types") or {}
    if not isinstance(event_types, dict):
        raise DataError(f"{at}: event_types must map source values to event types, got {event_types!r}")
    sheet = data.get("sheet")
    if sheet is not None and (isinstance(sheet, bool) or not isinstance(sheet, (str, int))):
        raise DataError(f"{at}: sheet must be a sheet name or a 0-based index, got {sheet!r}")
    return SourceSpec(
        kind=kind,
        path=path,
        url=url,
        table=table,
        query=query,
        format=fmt,
        mapping=mapping,
        timezone=None if tz is None else check_timezone(str(tz), f"{at}: timezone"),
        date_format=date_format,
        dayfirst=_flag(data["dayfirst"], "dayfirst", at) if "dayfirst" in data else None,
        currency=None if data.get("currency") is None else check_currency(data["currency"], at),
        cancellation_prefix=prefix,
        has_header=_flag(data["has_header"], "has_header", at) if "has_header" in data else None,
        columns=_names(data["columns"], "columns", at) if data.get("columns") is not None else None,
        encoding=_text(data["encoding"], "encoding", at) if data.get("encoding") is not None else None,
        sheet=sheet,
        event_types={str(k).strip().lower(): _text(v, "event_types", at) for k, v in event_types.items()},
        invert=_flag(data.get("invert", False), "invert", at),
        name=_text(data["name"], "name", at) if data.get("name") is not None else None,
        index=index,
        decimal=None if data.get("decimal") is None else check_decimal(str(data["decimal"]), f"{at}: decimal"),
        exclude=exclude_rule(data["exclude"], at) if data.get("exclude") is not None else {},
    )


def config_from_dict(
    data: Mapping[str, object], base: str | Path = ".", where: str = "sources.yaml",
    environ: Mapping[str, str] | None = None,
) -> SourcesConfig:
    """Build a :class:`SourcesConfig` from the YAML tree.

    Args:
        data: the parsed YAML (``shop:`` and ``sources:``).
        base: folder that relative paths are resolved against.
        where: file name for messages.
        environ: environment for ``${NAME}`` expansion (default ``os.environ``).

    Raises:
        DataError: unknown or missing keys, invalid values, an unset
            environment variable; the message names the file and the source
            (``sources[2] (orders)``).
    """
    if not isinstance(data, dict):
        raise DataError(f"{where} must be a mapping with 'shop:' and 'sources:'")
    data = expand_env(data, where, environ)
    unknown = sorted(set(map(str, data)) - {"shop", "sources"})
    if unknown:
        raise DataError(f"{where}: unknown top-level key(s) {', '.join(unknown)}; expected shop and sources")
    shop = _shop(data.get("shop"), where)
    sources = data.get("sources")
    if not isinstance(sources, list) or not sources:
        raise DataError(f"{where}: 'sources:' must be a non-empty list of sources")
    base = Path(base).resolve()
    specs = tuple(_source(item, i, base, where) for i, item in enumerate(sources))
    return SourcesConfig(shop=shop, sources=specs)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> SourcesConfig:
    """Read ``sources.yaml``; relative source paths are relative to its folder.

    Raises:
        DataError: the file is missing or not YAML, or its content is invalid
            (see :func:`config_from_dict`).
    """
    path = Path(path)
    data = read_yaml(path, "config")
    config = config_from_dict(data, base=path.resolve().parent, where=str(path), environ=environ)
    return SourcesConfig(shop=config.shop, sources=config.sources, path=path.resolve())
