"""A private in-memory DuckDB connection for feature SQL over in-memory frames."""

from __future__ import annotations

import duckdb
import pandas as pd


def query(sql: str, params: dict[str, object], **frames: pd.DataFrame) -> pd.DataFrame:
    """Run ``sql`` with the given frames registered as views; return a pandas frame.

    The session time zone is UTC, so ``CAST(timestamp AS DATE)`` is the UTC
    calendar day.
    """
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        for name, frame in frames.items():
            con.register(name, frame)
        return con.execute(sql, params).df()
    finally:
        con.close()
