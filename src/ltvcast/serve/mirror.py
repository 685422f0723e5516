"""The service's in-memory mirror of the store, for learned models: their inputs from the offline feature code.

A learned model (``gbm``, ``deep``) predicts from the point-in-time
features of :func:`ltvcast.features.build`, SQL over the store's tables. The
mirror is an in-memory :class:`~ltvcast.store.Store` holding what that SQL
reads (and what the store derives it from): ``transactions``, ``orders``,
``order_items``, ``returns``, ``products``, ``events``, ``customers``,
``store_meta``, ``ingest_log`` and the ``online`` rows of ``ingest_keys``.

* :meth:`Mirror.load` copies those tables from the store file (attached
  read-only and detached again), then replays the events of the online log
  that ``ltvcast sync`` has not written to the store yet.
* :meth:`Mirror.append` writes each acknowledged batch as ``ltvcast sync``
  would: the same mapping (:func:`ltvcast.serve.sync.store_rows`) and the
  same write (:meth:`ltvcast.store.Store.write_online`: rows, ``returns.linked``,
  the derived ``orders`` amounts and ``transactions`` rows of the customers
  touched). So the mirror holds what the store will hold after the next sync.
* :meth:`Mirror.history` gives a :class:`~ltvcast.data.datasets.History` of
  some customers (their transactions, and the mirror as a
  :class:`~ltvcast.features.build.CustomerSubset`), from which the model's
  own ``inputs`` computes their features exactly as offline.
* :meth:`Mirror.start` watches the online store's ``base_fingerprint`` (set
  by :func:`~ltvcast.serve.sync.refresh_base` when the store's batch history
  changed: at start-up, after ``ltvcast sync``) and reloads when it changes,
  as the BTYD base is reloaded.

Memory: a copy of those tables (``quarantine`` and ``fx_rates`` are left
out). One lock orders writes and reads: a history is read (the features
built) with no write in between, so a prediction never sees half a batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from ltvcast.data.datasets import History
from ltvcast.errors import DataError, LtvcastError
from ltvcast.features.build import CustomerSubset
from ltvcast.schema.tables import columns
from ltvcast.serve.events import Event, event_json, parse_event
from ltvcast.serve.online_store import OnlineStore
from ltvcast.serve.sync import store_rows
from ltvcast.store import Store
from ltvcast.timeutil import to_day

log = logging.getLogger("ltvcast.serve")

#: Tables copied from the store, with the rows kept (SQL condition).
MIRRORED: dict[str, str] = {
    "ingest_log": "TRUE",
    "ingest_keys": "kind = 'online'",
    "customers": "TRUE",
    "products": "TRUE",
    "orders": "TRUE",
    "order_items": "TRUE",
    "returns": "TRUE",
    "events": "TRUE",
    "transactions": "TRUE",
}
_PAGE = 10_000


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def copy_store(db: str | Path) -> Store:
    """An in-memory store with the :data:`MIRRORED` tables and ``store_meta`` of the store file ``db``.

    The file is checked (:meth:`ltvcast.store.Store.open`, read-only), then
    attached read-only to the in-memory database, copied table by table in
    SQL, and detached.

    Raises:
        DataError: the file is missing, locked by a writer, or not a store.
    """
    Store.open(db, read_only=True).close()  # a readable store of this schema version (else DataError)
    mirror = Store.open(":memory:")
    con = mirror.connection
    path = str(Path(db).resolve()).replace("'", "''")
    try:
        con.execute(f"ATTACH '{path}' AS ltvcast_source (READ_ONLY)")
        try:
            con.execute("INSERT OR REPLACE INTO store_meta SELECT key, value FROM ltvcast_source.main.store_meta")
            for table, keep in MIRRORED.items():
                names = ", ".join(_q(c) for c in columns(table))
                con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM ltvcast_source.main.{table} WHERE {keep}")
        finally:
            con.execute("DETACH ltvcast_source")
    except duckdb.Error as exc:
        mirror.close()
        raise DataError(f"cannot copy the store {db} for learned models: {exc}") from None
    except BaseException:
        mirror.close()
        raise
    return mirror


def write_events(store: Store, events: Iterable[tuple[Event, str]]) -> int:
    """Write ``(event, canonical JSON)`` pairs to ``store`` as ``ltvcast sync`` does; returns the events written.

    Events already written (their id is an ``online`` key) are skipped.

    Raises:
        DataError: a row conflicts with one in the store (nothing is written).
    """
    currency = store.meta().get("shop_currency") or "XXX"
    rows = store_rows(events, currency)
    if rows.keys.empty:
        return 0
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    info = {"source": "online:mirror", "first_day": rows.first_day, "last_day": rows.last_day,
            "started_at": now, "seconds": 0.0, "content_hash": rows.content_hash}
    return store.write_online(rows.keys, rows.tables, info)[1]


class Mirror:
    """The in-memory mirror of the store ``db`` plus the events of ``online`` (see the module doc).

    Args:
        db: the DuckDB store file.
        online: the online store whose log is mirrored.

    Attributes:
        failures: reloads and appends that failed (each is logged).
    """

    def __init__(self, db: str | Path, online: OnlineStore) -> None:
        self.db = Path(db)
        self.online = online
        self.failures = 0
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._settings: tuple[str, str] = ("UTC", "net")
        self._fingerprint: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def loaded(self) -> bool:
        """True once :meth:`load` has succeeded."""
        return self._store is not None

    def _replay(self, store: Store, after: int) -> int:
        """Write the log entries after ``after`` to ``store``; returns the last sequence number read."""
        while True:
            entries = self.online.log(after, _PAGE)
            if entries:
                write_events(store, [(parse_event(e.body), e.body) for e in entries])
                after = entries[-1].seq
            if len(entries) < _PAGE:
                return after

    def load(self) -> None:
        """(Re)load from the store file and the online log; the new copy replaces the old one at once.

        Raises:
            DataError: the store cannot be read (missing, locked by ``ltvcast
                sync`` or ``ingest``), or an online event conflicts with its rows.
        """
        seen = self.online.meta().get("base_fingerprint")
        progress = f"online_sync:{self.online.ensure_log_id()}"
        new = copy_store(self.db)
        try:
            after = self._replay(new, int(new.meta().get(progress, "0")))
            with self._lock:
                self._replay(new, after)  # events acknowledged while copying
                old, self._store, self._fingerprint = self._store, new, seen
                meta = new.meta()
                self._settings = (meta["shop_timezone"], meta["revenue_basis"])
        except BaseException:
            new.close()
            raise
        if old is not None:
            old.close()
        log.info("mirror of %s loaded for learned models", self.db)

    def append(self, events: Sequence[Event]) -> None:
        """Write a batch the online store has acknowledged (duplicates are skipped); nothing before :meth:`load`.

        Before the first load nothing is written: the load replays the log.

        Raises:
            DataError: a row conflicts with one in the store (nothing is written).
        """
        if not events:
            return
        with self._lock:
            if self._store is not None:
                write_events(self._store, [(e, event_json(e)) for e in events])

    @contextmanager
    def history(self, customer_ids: Sequence[str], cutoff) -> Iterator[History]:
        """The history of ``customer_ids`` as every model reads it, while no write happens.

        ``transactions`` holds their rows, ``store`` the mirror seen through
        :class:`~ltvcast.features.build.CustomerSubset`; ``observation_end``
        is the day before ``cutoff`` (a prediction at ``cutoff`` reads the
        history before it), or the day of their last transaction when that
        is later (a cutoff in the past: the data are observed beyond it).

        Raises:
            LtvcastError: the mirror is not loaded.
        """
        ids = tuple(dict.fromkeys(str(c) for c in customer_ids))
        with self._lock:
            store = self._store
            if store is None:
                raise LtvcastError("the store's mirror for learned models is not loaded yet")
            tz, basis = self._settings
            end = pd.Timestamp(cutoff).tz_localize(None).tz_localize("UTC") - pd.Timedelta(days=1)
            tx = store.transactions(customers=ids)
            if len(tx):
                end = max(end, to_day(tx["timestamp"].max()))
            yield History(
                tx, end, f"online mirror of {self.db}",
                CustomerSubset(store, ids), tz, basis,
            )

    def poll(self) -> bool:
        """Reload when the online store's ``base_fingerprint`` changed since the last load.

        Returns:
            True when reloaded.
        """
        if self._store is None or self.online.meta().get("base_fingerprint") == self._fingerprint:
            return False
        self.load()
        return True

    def start(self, interval: float = 1.0) -> None:
        """Call :meth:`poll` every ``interval`` seconds in a daemon thread (once started, idempotent)."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.poll()
                except DataError as exc:  # e.g. the store is locked by `ltvcast sync`: retry on the next poll
                    self.failures += 1
                    log.warning("mirror of %s: not reloaded (%s); serving the previous copy", self.db, exc)
                except Exception:  # never let the watcher die; the previous copy stays
                    self.failures += 1
                    log.exception("mirror of %s: reloading failed; serving the previous copy", self.db)

        self._thread = threading.Thread(target=loop, name="ltvcast-mirror-watch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop watching and free the copy (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()
