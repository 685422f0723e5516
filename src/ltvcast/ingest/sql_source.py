"""Read a table or a query from a SQL database (SQLAlchemy) as a raw text table.

URLs are SQLAlchemy URLs. ``postgresql://`` and ``postgres://`` use the
psycopg 3 driver (``postgresql+psycopg://``), which ltvcast installs; other
databases work with their SQLAlchemy driver installed (``sqlite:///shop.db``
needs nothing). Keep passwords out of ``sources.yaml``: write
``url: ${PGURL}`` and set ``PGURL``, or leave the password out of the URL and
set ``PGPASSWORD`` (libpq reads it).

Values are turned into text the way the file readers do
(:func:`ltvcast.ingest.readers.values_to_text`): date/time columns stay
timestamps, numbers keep their spelling (``NUMERIC`` as written).
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from ltvcast.errors import DataError
from ltvcast.ingest.readers import RawTable, values_to_text


def engine_url(url: str):
    """Parse ``url`` into a SQLAlchemy URL, choosing psycopg 3 for PostgreSQL.

    Raises:
        DataError: the text is not a database URL.
    """
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise DataError(f"{url!r} is not a database URL such as postgresql://user@host:5432/db") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def masked_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and the ingest log)."""
    try:
        return engine_url(url).render_as_string(hide_password=True)
    except DataError:
        return "(invalid url)"


def source_label(url: str, table: str | None, query: str | None) -> str:
    """How a database source is named in the store: ``masked-url#table`` or ``masked-url#query:<sha>``."""
    base = masked_url(url)
    if table is not None:
        return f"{base}#{table}"
    digest = hashlib.sha256((query or "").encode("utf-8")).hexdigest()[:12]
    return f"{base}#query:{digest}"


def _select(table: str):
    import sqlalchemy as sa

    schema, _, name = table.rpartition(".")
    return sa.select(sa.text("*")).select_from(sa.table(name, schema=schema or None))


def read_sql_source(url: str, table: str | None = None, query: str | None = None) -> RawTable:
    """Read ``table`` (``schema.table`` allowed) or ``query`` from the database at ``url``.

    Args:
        url: SQLAlchemy URL (see module doc for PostgreSQL).
        table: table to read completely; exactly one of table and query.
        query: a SELECT statement.

    Returns:
        :class:`RawTable` with ``format="sql"``, ``source`` =
        :func:`source_label`, ``frame`` of shape (result rows, columns), rows
        numbered 1.. in result order.

    Raises:
        DataError: the database cannot be reached, the table does not exist,
            or the query fails (the message names the masked URL and the
            database's own message).
    """
    import sqlalchemy as sa

    if (table is None) == (query is None):
        raise DataError("a database source needs exactly one of table and query")
    label = source_label(url, table, query)
    engine = sa.create_engine(engine_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as con:
            statement = _select(table) if table is not None else sa.text(query)
            result = con.execute(statement)
            names = [str(c) for c in result.keys()]
            rows = result.fetchall()
    except sa.exc.SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DataError(f"cannot read {label}: {detail}") from None
    finally:
        engine.dispose()
    if len(set(names)) != len(names):
        raise DataError(f"{label}: the result has repeated column names {names}; alias them in the query")
    columns = list(zip(*rows)) if rows else [()] * len(names)
    frame = pd.DataFrame(
        {name: values_to_text(pd.Series(list(values), dtype=object)) for name, values in zip(names, columns)},
        index=pd.RangeIndex(len(rows)),
    )
    return RawTable(frame=frame, source=label, format="sql", encoding=None)


def frame_hash(frame: pd.DataFrame) -> str:
    """SHA-256 of a table's content, independent of row order.

    Column names (in order) and every row's values as text are hashed;
    the row digests are sorted first, so the same query result in another
    order (SQL without ORDER BY) has the same hash.

    Returns:
        64 hex characters.
    """
    h = hashlib.sha256(json.dumps([str(c) for c in frame.columns]).encode("utf-8"))
    text = frame.astype(str) if len(frame.columns) else frame
    rows = sorted(
        hashlib.sha256(json.dumps(r, ensure_ascii=False).encode("utf-8")).digest()
        for r in text.itertuples(index=False, name=None)
    )
    for r in rows:
        h.update(r)
    return h.hexdigest()
