"""A store's canonical tables written as the Parquet layout the Spark engine reads (docs/scale.md)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from ltvcast.engines.spark import CANONICAL_TABLES


def write_source(con: duckdb.DuckDBPyConnection, root: str | Path) -> dict[str, int]:
    """Copy the canonical tables of a store to ``root/<table>/part-0.parquet``.

    Args:
        con: a connection to a store (``Store.connection``).
        root: the folder to write (created; existing table folders are
            replaced).

    Returns:
        ``{table: rows written}`` for the tables the store has.
    """
    root = Path(root)
    have = {
        name.lower()
        for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() AND table_schema = 'main'"
        ).fetchall()
    }
    out = {}
    for table in CANONICAL_TABLES:
        if table not in have:
            continue
        folder = root / table
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.parquet"):
            old.unlink()
        path = str(folder / "part-0.parquet").replace("'", "''")
        con.execute(f"COPY (SELECT * FROM main.\"{table}\") TO '{path}' (FORMAT parquet)")
        out[table] = int(con.execute(f'SELECT COUNT(*) FROM main."{table}"').fetchone()[0])
    return out
