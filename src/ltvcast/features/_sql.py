"""Rendering the feature SQL templates, and the ``src_*`` views over a store.

The templates under ``sql/`` are rendered with literal values (dates,
timestamps, the time zone, window lengths) into plain SQL text: no prepared
parameters, so the text can be read, logged and transpiled as is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import jinja2
import pandas as pd

from ltvcast.errors import CutoffError, DataError

_TZ_NAME = re.compile(r"^[A-Za-z0-9_+\-/]+$")


@cache
def _template(name: str) -> jinja2.Template:
    text = resources.files("ltvcast.features").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True
    )
    return env.from_string(text)


def check_timezone(name: str) -> str:
    """Return ``name`` if it is a known IANA time zone, else raise DataError."""
    if not isinstance(name, str) or not _TZ_NAME.match(name):
        raise DataError(f"shop time zone {name!r} is not an IANA zone name such as Europe/Berlin")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DataError(f"shop time zone {name!r} is not an IANA zone name such as Europe/Berlin") from None
    return name


def cutoff_day(cutoff) -> date:
    """The cutoff as a calendar day.

    A date, a ``YYYY-MM-DD`` string or a timestamp at 00:00 (naive or with
    any zone: its own wall-clock date is taken) is accepted.

    Raises:
        CutoffError: not a date, or a timestamp with a time of day.
    """
    if type(cutoff) is date:
        return cutoff
    try:
        ts = pd.Timestamp(cutoff)
    except (ValueError, TypeError):
        raise CutoffError(f"cutoff {cutoff!r} is not a date; write it as YYYY-MM-DD") from None
    if ts is pd.NaT:
        raise CutoffError(f"cutoff {cutoff!r} is not a date; write it as YYYY-MM-DD")
    if ts != ts.normalize():
        raise CutoffError(
            f"cutoff {cutoff!r} has a time of day; a cutoff is a calendar day "
            "(history ends at 00:00 of that day in the shop's time zone)"
        )
    return ts.date()


def local_midnight_utc(day: date, tz: str) -> pd.Timestamp:
    """00:00 of ``day`` in zone ``tz`` as a naive UTC timestamp.

    Where 00:00 does not exist (a DST jump at midnight) the first instant of
    the day is used; where it occurs twice, the first.
    """
    local = pd.Timestamp(day).tz_localize(tz, nonexistent="shift_forward", ambiguous=True)
    return local.tz_convert("UTC").tz_localize(None)


@dataclass(frozen=True)
class Context:
    """Values the templates are rendered with (see ``sql/README.md``)."""

    cutoff_day: date
    timezone: str
    windows: tuple[int, ...]
    basis: str
    population: str
    channels: tuple[str, ...]
    first_day: date

    def variables(self) -> dict[str, object]:
        cut = self.cutoff_day
        tz = self.timezone

        def before(n: int) -> str:
            return (cut - timedelta(days=int(n))).isoformat()

        def local_day(col: str) -> str:
            if tz == "UTC":
                return f"CAST({col} AS DATE)"
            return f"CAST(({col} AT TIME ZONE 'UTC') AT TIME ZONE '{tz}' AS DATE)"

        return {
            "cutoff_utc": local_midnight_utc(cut, tz).strftime("%Y-%m-%d %H:%M:%S"),
            "cutoff_day": cut.isoformat(),
            "before": before,
            "local_day": local_day,
            "windows": list(self.windows),
            "basis": self.basis,
            "population": self.population,
            "channels": list(self.channels),
            "first_day": self.first_day.isoformat(),
        }


def render(name: str, ctx: Context) -> str:
    """The template ``sql/<name>.sql`` rendered for ``ctx``."""
    return _template(name).render(**ctx.variables()).strip() + "\n"


# -- the src_* views ---------------------------------------------------------------
# Per canonical table: (store column, output name, type, required). A table or
# optional column the store lacks reads as empty / NULL, so a foundation store
# (transactions only, no `kind`) still builds.
SOURCES: dict[str, tuple[tuple[str, str, str, bool], ...]] = {
    "transactions": (
        ("customer_id", "customer_id", "VARCHAR", True),
        ("timestamp", "ts", "TIMESTAMP", True),
        ("kind", "kind", "VARCHAR", False),
        ("amount", "amount", "DECIMAL(18, 4)", True),
        ("quantity", "quantity", "DOUBLE", False),
        ("order_id", "order_id", "VARCHAR", False),
        ("line", "line", "BIGINT", False),
        ("product_id", "product_id", "VARCHAR", False),
        ("category", "category", "VARCHAR", False),
        ("brand", "brand", "VARCHAR", False),
        ("channel", "channel", "VARCHAR", False),
    ),
    "orders": (
        ("order_id", "order_id", "VARCHAR", True),
        ("customer_id", "customer_id", "VARCHAR", True),
        ("timestamp", "ts", "TIMESTAMP", True),
    ),
    "order_items": (
        ("order_id", "order_id", "VARCHAR", True),
        ("line", "line", "BIGINT", False),
        ("amount", "amount", "DECIMAL(18, 4)", True),
        ("discount", "discount", "DECIMAL(18, 4)", False),
    ),
    "events": (
        ("customer_id", "customer_id", "VARCHAR", True),
        ("session_id", "session_id", "VARCHAR", False),
        ("timestamp", "ts", "TIMESTAMP", True),
        ("event_type", "event_type", "VARCHAR", True),
    ),
    "customers": (
        ("customer_id", "customer_id", "VARCHAR", True),
        ("signup_at", "signup_at", "TIMESTAMP", False),
        ("acquisition_channel", "acquisition_channel", "VARCHAR", False),
        ("region", "region", "VARCHAR", False),
        ("country", "country", "VARCHAR", False),
    ),
}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def store_columns(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """``{table: {column (lower case): data type}}`` of the store's main schema."""
    rows = con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_catalog = current_database() AND table_schema = 'main'"
    ).fetchall()
    out: dict[str, dict[str, str]] = {}
    for table, column, dtype in rows:
        out.setdefault(table.lower(), {})[column.lower()] = dtype.upper()
    return out


def _column_expr(col: str, dtype: str | None, target: str) -> str:
    if dtype is None:
        return f"CAST(NULL AS {target})"
    if target == "TIMESTAMP" and "TIME ZONE" in dtype:
        # DuckDB: TIMESTAMPTZ AT TIME ZONE 'UTC' is the naive UTC wall clock.
        return f"({_q(col)} AT TIME ZONE 'UTC')"
    if dtype == target.replace(" ", ""):
        return _q(col)
    return f"CAST({_q(col)} AS {target})"


def source_views(
    columns: dict[str, dict[str, str]], customer_key: str = "VARCHAR", customers: str | None = None
) -> dict[str, str]:
    """``CREATE TEMP VIEW src_<table>`` statements for the store's columns.

    ``customer_key`` is the SQL type ``customer_id`` is read as (the store's
    text ids: ``VARCHAR``; :func:`ltvcast.features.rfm_summary` passes
    ``INTEGER`` codes it maps back to the ids itself, so the group-bys hash
    integers, not strings).

    ``customers`` names a relation with a ``customer_id`` column: when
    given, every table with a ``customer_id`` column (transactions, orders,
    events, customers) is read for those customers only (``order_items``
    reaches the features only through its order, so it needs no filter).

    Raises:
        DataError: the store has no ``transactions`` table, or a present
            table lacks a required column.
    """
    if "transactions" not in columns:
        raise DataError("the store has no transactions table; run `ltvcast ingest` first")
    out = {}
    for table, spec in SOURCES.items():
        have = columns.get(table)
        exprs = []
        for col, name, target, required in spec:
            dtype = None if have is None else have.get(col)
            if have is not None and dtype is None and required:
                raise DataError(f"store table {table} lacks the column {col!r}; found {sorted(have)}")
            if table == "transactions" and col == "kind" and dtype is None:
                # A foundation store: a negative amount is a return.
                expr = "CASE WHEN amount < 0 THEN 'return' ELSE 'sale' END"
            else:
                expr = _column_expr(col, dtype, customer_key if col == "customer_id" else target)
            exprs.append(f"{expr} AS {name}")
        body = ",\n       ".join(exprs)
        source = table if have is not None else "(SELECT 1 AS one) empty_ WHERE 1 = 0"
        if customers is not None and have is not None and "customer_id" in have:
            key = _column_expr("customer_id", have["customer_id"], "VARCHAR")
            source += f"\nWHERE {key} IN (SELECT customer_id FROM {customers})"
        out[table] = f"CREATE OR REPLACE TEMP VIEW src_{table} AS\nSELECT {body}\nFROM {source}\n"
    return out


def store_meta(con: duckdb.DuckDBPyConnection, columns: dict[str, dict[str, str]]) -> dict[str, str]:
    """The store's ``store_meta`` key/value pairs (empty when there is no such table)."""
    if "store_meta" not in columns:
        return {}
    return {str(k): str(v) for k, v in con.execute("SELECT key, value FROM store_meta").fetchall() if v is not None}
