"""The online store: the append-only event log and the per-customer online state, behind one interface.

Two backends: :class:`~ltvcast.serve.sqlite_store.SQLiteOnline` (default; a
local file in WAL mode) and :class:`~ltvcast.serve.redis_store.RedisOnline`
(for several service instances). Both append a batch to the log and update
the state (:mod:`ltvcast.serve.state`) in one transaction, before the HTTP
response. The state has two parts:

* the *online* part, from the log (events acknowledged by this service);
* the *base*, the daily aggregates of the DuckDB store's own history
  (every ingest except the ones ``ltvcast sync`` wrote from this log),
  loaded by :func:`ltvcast.serve.sync.refresh_base`.

A customer's days are the rows of both; :func:`ltvcast.serve.state.summarize`
merges them.
"""

from __future__ import annotations

from pathlib import Path

from ltvcast.errors import LtvcastError
from ltvcast.serve.online_store import OnlineStore


def open_online(path: str | Path | None = None, redis_url: str | None = None, prefix: str = "ltvcast:") -> OnlineStore:
    """Open the SQLite file ``path`` or the Redis server at ``redis_url`` (exactly one).

    Raises:
        LtvcastError: neither or both given; the store cannot be opened or reached.
    """
    if (path is None) == (redis_url is None):
        raise LtvcastError("give exactly one online store: a SQLite file (--online) or a Redis URL (--redis)")
    if redis_url is not None:
        from ltvcast.serve.redis_store import RedisOnline

        return RedisOnline(redis_url, prefix)
    from ltvcast.serve.sqlite_store import SQLiteOnline

    return SQLiteOnline(path)


def default_online_path(db: str | Path) -> Path:
    """The default SQLite online store next to the DuckDB store: ``shop.duckdb`` -> ``shop.online.sqlite``."""
    db = Path(db)
    return db.with_name(db.stem + ".online.sqlite")
