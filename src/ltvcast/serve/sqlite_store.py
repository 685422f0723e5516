"""The SQLite online store (default): one local file in WAL mode, ``synchronous=FULL``.

Each batch is one ``BEGIN IMMEDIATE`` transaction: the new events go to the
``log`` table (``event_id`` unique), the state tables are updated, and the
commit (an fsync of the write-ahead log) happens before the HTTP response,
so an acknowledged event survives a crash of the process or the machine.
Readers do not block the writer (WAL). Each thread has its own connection.

Tables: ``log(seq, event_id UNIQUE, type, body)``, ``orders``, ``lines``,
``days`` (online part) and ``base_days`` (base), one row per customer, local
day and order id (:class:`~ltvcast.serve.state.DayRow`), ``meta``; money in
integers of 1/10,000 currency units. A file of an older row shape (days
without ``order_id``) gets the new tables and its state rebuilt from the log
when opened (:meth:`~ltvcast.serve.online_store.OnlineStore.check_version`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from ltvcast.errors import LtvcastError
from ltvcast.serve.events import Event, body_digest, event_json
from ltvcast.serve.online_store import BaseRow, LogEntry, OnlineStore
from ltvcast.serve.state import Applied, DayRow, Fetched, OrderRec, Snapshot, apply_batch, needed

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, day INTEGER NOT NULL, stated_e4 INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lines (
    order_id TEXT NOT NULL, line INTEGER NOT NULL, amount_e4 INTEGER NOT NULL, PRIMARY KEY (order_id, line)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS days (
    customer_id TEXT NOT NULL, day INTEGER NOT NULL, order_id TEXT NOT NULL, sales_e4 INTEGER NOT NULL,
    returned_e4 INTEGER NOT NULL, sale_rows INTEGER NOT NULL, orders INTEGER NOT NULL,
    return_rows INTEGER NOT NULL, PRIMARY KEY (customer_id, day, order_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS base_days (
    customer_id TEXT NOT NULL, day INTEGER NOT NULL, order_id TEXT NOT NULL, sales_e4 INTEGER NOT NULL,
    returned_e4 INTEGER NOT NULL, sale_rows INTEGER NOT NULL, orders INTEGER NOT NULL,
    return_rows INTEGER NOT NULL, PRIMARY KEY (customer_id, day, order_id)
) WITHOUT ROWID;
"""
_UPSERT_DAY = (
    "INSERT INTO days VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (customer_id, day, order_id) DO UPDATE SET "
    "sales_e4 = sales_e4 + excluded.sales_e4, returned_e4 = returned_e4 + excluded.returned_e4, "
    "sale_rows = sale_rows + excluded.sale_rows, orders = orders + excluded.orders, "
    "return_rows = return_rows + excluded.return_rows"
)
_COLS = "day, order_id, sales_e4, returned_e4, sale_rows, orders, return_rows"
_DAYS_ONE = (
    f"SELECT {_COLS} FROM days WHERE customer_id = ?1 "
    f"UNION ALL SELECT {_COLS} FROM base_days WHERE customer_id = ?1"
)
_DAYS_MANY = (
    f"SELECT customer_id, {_COLS} FROM days "
    "WHERE customer_id IN (SELECT value FROM json_each(?1)) UNION ALL "
    f"SELECT customer_id, {_COLS} FROM base_days "
    "WHERE customer_id IN (SELECT value FROM json_each(?1))"
)


class SQLiteOnline(OnlineStore):
    """The online store in the SQLite file ``path`` (created with its tables if missing).

    Raises:
        LtvcastError: the file cannot be opened as a SQLite database.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.description = str(self.path.resolve())
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = self._con()
            con.execute("PRAGMA journal_mode=WAL")
            old = [r[1] for r in con.execute("PRAGMA table_info(days)")]
            if old and "order_id" not in old:  # an older row shape: rebuilt below
                con.executescript("DROP TABLE days; DROP TABLE IF EXISTS base_days;")
            con.executescript(_SCHEMA)
            self.check_version()
        except (sqlite3.Error, OSError) as exc:
            raise LtvcastError(f"cannot open the online store {self.path}: {exc}") from None

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA busy_timeout=30000")
            self._local.con = con
            with self._guard:
                self._connections.append(con)
        return con

    def _write(self, work):
        """Run ``work(con)`` in one ``BEGIN IMMEDIATE`` transaction; roll back on any exception."""
        con = self._con()
        with self._write_lock:
            con.execute("BEGIN IMMEDIATE")
            try:
                result = work(con)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        return result

    def append(self, events: Sequence[Event], timezone: str) -> Applied:
        """See :meth:`OnlineStore.append`."""
        ids, order_ids = needed(events)

        def work(con: sqlite3.Connection) -> Applied:
            fetched = Fetched()
            fetched.digests = {
                r[0]: body_digest(r[1]) for r in con.execute(
                    "SELECT event_id, body FROM log WHERE event_id IN (SELECT value FROM json_each(?))",
                    (json.dumps(ids),),
                )
            }
            fetched.seen = set(fetched.digests)
            if order_ids:
                oids = json.dumps(order_ids)
                for oid, cid, day, stated in con.execute(
                    "SELECT order_id, customer_id, day, stated_e4 FROM orders "
                    "WHERE order_id IN (SELECT value FROM json_each(?))",
                    (oids,),
                ):
                    fetched.orders[oid] = OrderRec(cid, day, stated)
                for oid, line, amount in con.execute(
                    "SELECT order_id, line, amount_e4 FROM lines WHERE order_id IN (SELECT value FROM json_each(?))",
                    (oids,),
                ):
                    fetched.lines.setdefault(oid, {})[line] = amount
            applied = apply_batch(events, fetched, timezone)
            con.executemany(
                "INSERT INTO log (event_id, type, body) VALUES (?, ?, ?)",
                [(e.id, e.type, event_json(e)) for e in applied.events],
            )
            con.executemany(
                "INSERT INTO orders VALUES (?, ?, ?, ?)",
                [(oid, r.customer_id, r.day, r.stated_e4) for oid, r in applied.orders.items()],
            )
            con.executemany("INSERT INTO lines VALUES (?, ?, ?)", [(o, ln, a) for (o, ln), a in applied.lines.items()])
            con.executemany(_UPSERT_DAY, [(*k, *v.as_tuple()) for k, v in applied.days.items()])
            return applied

        return self._write(work)

    def days(self, customer_ids: Sequence[str]) -> dict[str, list[DayRow]]:
        """See :meth:`OnlineStore.days`."""
        con = self._con()
        if len(customer_ids) == 1:
            rows = [DayRow(*r) for r in con.execute(_DAYS_ONE, (customer_ids[0],))]
            return {customer_ids[0]: rows} if rows else {}
        out: dict[str, list[DayRow]] = {}
        for cid, *row in con.execute(_DAYS_MANY, (json.dumps(list(customer_ids)),)):
            out.setdefault(cid, []).append(DayRow(*row))
        return out

    def log(self, after: int = 0, limit: int = 10_000) -> list[LogEntry]:
        """See :meth:`OnlineStore.log`."""
        rows = self._con().execute(
            "SELECT seq, event_id, body FROM log WHERE seq > ? ORDER BY seq LIMIT ?", (int(after), int(limit))
        )
        return [LogEntry(*r) for r in rows]

    def meta(self) -> dict[str, str]:
        """See :meth:`OnlineStore.meta`."""
        return dict(self._con().execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, values: dict[str, str]) -> None:
        """See :meth:`OnlineStore.set_meta`."""
        self._write(lambda con: con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items())))

    def replace_base(self, rows: Iterable[BaseRow], fingerprint: str) -> None:
        """See :meth:`OnlineStore.replace_base` (one transaction)."""

        def work(con: sqlite3.Connection) -> None:
            con.execute("DELETE FROM base_days")
            con.executemany("INSERT INTO base_days VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            con.execute("INSERT OR REPLACE INTO meta VALUES ('base_fingerprint', ?)", (fingerprint,))

        self._write(work)

    def snapshot(self) -> Snapshot:
        """See :meth:`OnlineStore.snapshot` (one read transaction)."""
        con = self._con()
        snap = Snapshot()
        con.execute("BEGIN")
        try:
            snap.event_ids = {r[0] for r in con.execute("SELECT event_id FROM log")}
            snap.orders = {o: OrderRec(c, d, s) for o, c, d, s in con.execute("SELECT * FROM orders")}
            for oid, line, amount in con.execute("SELECT * FROM lines"):
                snap.lines.setdefault(oid, {})[line] = amount
            snap.days = {(c, d, o): tuple(v) for c, d, o, *v in con.execute("SELECT * FROM days")}
        finally:
            con.execute("COMMIT")
        return snap

    def _replace_state(self, snapshot: Snapshot) -> None:
        def work(con: sqlite3.Connection) -> None:
            for table in ("orders", "lines", "days"):
                con.execute(f"DELETE FROM {table}")
            con.executemany(
                "INSERT INTO orders VALUES (?, ?, ?, ?)",
                [(o, r.customer_id, r.day, r.stated_e4) for o, r in snapshot.orders.items()],
            )
            con.executemany(
                "INSERT INTO lines VALUES (?, ?, ?)",
                [(o, ln, a) for o, lines in snapshot.lines.items() for ln, a in lines.items()],
            )
            con.executemany(
                "INSERT INTO days VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(*k, *v) for k, v in snapshot.days.items()]
            )

        self._write(work)

    def ping(self) -> None:
        """See :meth:`OnlineStore.ping`."""
        self._con().execute("SELECT count(*) FROM meta").fetchone()

    def close(self) -> None:
        """Close every thread's connection (idempotent)."""
        with self._guard:
            for con in self._connections:
                con.close()
            self._connections.clear()
        self._local = threading.local()

