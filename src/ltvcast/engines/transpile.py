"""DuckDB SQL to Spark SQL with SQLGlot, and the lint that refuses what does not transpile faithfully.

The feature SQL (``ltvcast/features/sql/``) is written for DuckDB and stays
the one definition; :func:`to_spark` turns each rendered statement into Spark
SQL. SQLGlot is pinned (``SQLGLOT_VERSION``) because its output is part of the
definition on Spark: a new SQLGlot may spell a function differently.

Two rewrites on top of SQLGlot's own, both for semantics SQLGlot does not
carry over:

* ``a / b``: DuckDB's ``/`` is always floating-point division (DOUBLE), even
  for two DECIMALs; Spark divides DECIMALs as DECIMAL with at most 6
  fractional digits when precision runs out (``DATE_DIFF(...) / 7.0`` would
  lose digits). Both operands are cast to DOUBLE.
* ``timezone(tz, ts)`` (DuckDB: the wall clock in ``tz`` of an instant) is
  ``from_utc_timestamp(ts, tz)``: every timestamp the engines hand to SQL is
  naive UTC and the Spark session runs in UTC (:mod:`ltvcast.engines.spark`).

The lint (:func:`lint`) fails on constructs whose Spark spelling means
something else or does not exist:

* DuckDB ``list_*`` / ``array_*`` / ``struct_*`` / ``map_*`` functions,
  lambdas, ``UNNEST``, list and struct literals;
* window frames in ``RANGE`` mode (Spark orders and bounds them differently
  for dates and NULLs);
* ``ISODOW`` / ``DAYOFWEEKISO`` (SQLGlot writes ``DAYOFWEEK(d) % 7 + 1``,
  which gives Sunday 2, not 7);
* ``x AT TIME ZONE 'zone'`` other than the local-day pattern
  ``(ts AT TIME ZONE 'UTC') AT TIME ZONE 'zone'`` of ``local_day()``
  (DuckDB reads a naive timestamp as local time there; Spark as UTC);
* ``date - date`` against a DATE literal (DuckDB: days as an integer;
  Spark: an interval);
* any function SQLGlot does not know (passed through unchanged, so its
  meaning on Spark is unknown), except those rewritten above;
* anything SQLGlot's Spark generator reports as unsupported.

Where a dialect really differs, a file ``features/sql/spark/NAME.sql``
beside the query overrides it on Spark (see
``ltvcast.features.spark``); there are none today.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError, UnsupportedError

from ltvcast.errors import LtvcastError

#: The SQLGlot version the Spark feature SQL was checked with (tests/test_spark_transpile.py).
SQLGLOT_VERSION = "30.30.0"
READ, WRITE = "duckdb", "spark"

_DUCK_ONLY_PREFIXES = ("list_", "array_", "struct_", "map_", "json_")
#: Functions SQLGlot leaves as written that the rewrites below handle.
_REWRITTEN = {"timezone"}
_UNFAITHFUL = tuple(
    cls
    for cls in (
        getattr(exp, name, None)
        for name in ("Unnest", "Lambda", "Array", "Struct", "List", "DayOfWeekIso", "Explode", "ArrayAgg")
    )
    if cls is not None
)


class TranspileError(LtvcastError):
    """A feature statement that does not transpile faithfully to Spark SQL."""


def _parse(sql: str, name: str) -> exp.Expression:
    try:
        statements = [s for s in sqlglot.parse(sql, read=READ) if s is not None]
    except SqlglotError as exc:
        raise TranspileError(f"{name}: SQLGlot cannot parse the DuckDB SQL: {exc}") from None
    if len(statements) != 1:
        raise TranspileError(f"{name}: expected one SQL statement, found {len(statements)}")
    return statements[0]


def _is_date_literal(node: exp.Expression) -> bool:
    return isinstance(node, exp.Cast) and node.to.is_type("date") and isinstance(node.this, exp.Literal)


def _at_utc(node: exp.Expression) -> bool:
    node = node.unnest() if isinstance(node, exp.Paren) else node
    return (
        isinstance(node, exp.AtTimeZone)
        and isinstance(node.args.get("zone"), exp.Literal)
        and node.args["zone"].this.upper() == "UTC"
    )


def lint(sql: str, name: str = "statement") -> list[str]:
    """The constructs of one DuckDB statement that do not transpile faithfully to Spark.

    Args:
        sql: one rendered DuckDB statement.
        name: what to call it in the messages (e.g. the feature file).

    Returns:
        One message per problem (empty: the statement transpiles faithfully).

    Raises:
        TranspileError: SQLGlot cannot parse it, or it is not one statement.
    """
    tree = _parse(sql, name)
    problems = []
    for node in tree.walk():
        where = f"{name}: `{node.sql(READ)[:80]}`"
        if isinstance(node, exp.Anonymous):
            fn = node.name.lower()
            if fn.startswith(_DUCK_ONLY_PREFIXES):
                problems.append(f"{where}: DuckDB list/struct function {fn} has no faithful Spark twin")
            elif fn not in _REWRITTEN:
                problems.append(f"{where}: SQLGlot does not know the function {fn}; its Spark meaning is unchecked")
        elif _UNFAITHFUL and isinstance(node, _UNFAITHFUL):
            problems.append(f"{where}: {type(node).__name__} does not transpile faithfully to Spark")
        elif isinstance(node, exp.WindowSpec) and (node.args.get("kind") or "").upper() == "RANGE":
            problems.append(f"{where}: RANGE window frames differ on Spark; use ROWS")
        elif isinstance(node, exp.AtTimeZone):
            outer = node.parent.unnest() if isinstance(node.parent, exp.Paren) else node.parent
            if not (_at_utc(node.this) or (_at_utc(node) and isinstance(outer, exp.AtTimeZone))):
                problems.append(
                    f"{where}: AT TIME ZONE only as (ts AT TIME ZONE 'UTC') AT TIME ZONE 'zone' (local_day())"
                )
        elif isinstance(node, exp.Sub) and (_is_date_literal(node.this) or _is_date_literal(node.expression)):
            problems.append(f"{where}: date minus date is an integer in DuckDB, an interval in Spark; use DATE_DIFF")
    try:
        sqlglot.transpile(sql, read=READ, write=WRITE, unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as exc:
        problems.append(f"{name}: SQLGlot cannot write it for Spark: {exc}")
    return problems


def _rewrite(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Div):
        return exp.Div(
            this=exp.cast(node.this, "DOUBLE"), expression=exp.cast(node.expression, "DOUBLE"), typed=False
        )
    if isinstance(node, exp.Anonymous) and node.name.lower() == "timezone" and len(node.expressions) == 2:
        zone, ts = node.expressions
        return exp.Anonymous(this="FROM_UTC_TIMESTAMP", expressions=[ts, zone])
    return node


def to_spark(sql: str, name: str = "statement") -> str:
    """One DuckDB statement as Spark SQL (SQLGlot plus the rewrites of this module).

    Args:
        sql: one rendered DuckDB statement (comments are dropped).
        name: what to call it in error messages.

    Returns:
        The Spark SQL text.

    Raises:
        TranspileError: :func:`lint` found a problem (every message is in
            the error), or SQLGlot cannot parse it.
    """
    problems = lint(sql, name)
    if problems:
        raise TranspileError("does not transpile faithfully to Spark SQL:\n  " + "\n  ".join(problems))
    tree = _parse(sql, name).transform(_rewrite)
    return tree.sql(WRITE, unsupported_level=ErrorLevel.RAISE, comments=False)


def split_create(sql: str, name: str = "statement") -> tuple[str | None, bool, str]:
    """One DuckDB statement as Spark SQL, a ``CREATE`` split from its query.

    Args:
        sql: a DuckDB ``CREATE [OR REPLACE] TEMP TABLE|VIEW t AS SELECT ...``
            or a plain query.
        name: what to call it in error messages.

    Returns:
        ``(target, materialise, spark_select)``: the created relation's name
        (None for a plain query), True for a ``TABLE`` (DuckDB materialises
        it; cache it on Spark) and the query as Spark SQL.

    Raises:
        TranspileError: as :func:`to_spark`.
    """
    tree = _parse(sql, name)
    if not isinstance(tree, exp.Create):
        return None, False, to_spark(sql, name)
    table = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
    materialise = (tree.args.get("kind") or "").upper() == "TABLE"
    return table.name, materialise, to_spark(tree.expression.sql(READ), name)
