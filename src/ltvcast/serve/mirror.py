"""The service's in-memory mirror of the store, for learned models: their predictions from the offline feature code.

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

* :meth:`Mirror.rows` gives rows made from some customers' history (a
  learned model's predictions) from a per-(model, cutoff, horizon) table of
  every customer's rows (:class:`RowCache`), kept exact as events arrive;
  :meth:`Mirror.cached` reads current rows without waiting: see below.

Memory: a copy of those tables (``quarantine`` and ``fx_rates`` are left
out), plus the cached rows (:data:`CACHE_SLOTS` tables of n_customers × 8
prediction columns, 8 B a number: CDNOW's 23,570 customers, 1.5 MB).
One lock orders writes and reads: a history is read (the features built)
with no write in between, so a prediction never sees half a batch.

Why a cache of predictions (issue 12, measured in ``docs/speed.md``): a
feature build costs the same ~30 SQL statements whatever the number of
customers (~160 ms quiet for one customer), so a learned prediction
cannot be computed per request in milliseconds. But a customer's inputs,
and so their prediction, depend only on that customer's rows (the rule of
every feature family and of :func:`~ltvcast.serve.model.servable`), so the
predictions of every customer at a cutoff, made once (the batch path,
seconds), stay exact for every customer no event has touched since. The
first request at a new (model, cutoff, horizon) starts that build in the
background; until it ends, requests are answered from their own history
or wait for it; each acknowledged batch marks the customers it touches
(the scope ``ltvcast sync`` rebuilds, :meth:`Mirror.append`) stale, and a
background refresh rebuilds the stale customers' rows together (one
subset build for all of them, at most once a watch interval and, while
event batches arrive, 10% of the time); a request for a stale customer not refreshed yet builds its rows
itself. Every row served thus equals the subset build's, which equals the
offline one (``tests/test_serve_learned.py``).

A current row is read under the table's own lock (held for microseconds),
never the mirror's, which a build holds for seconds and an event batch for
tens of ms: before, a request's cached inputs were read, and the model run
on them, behind that lock and on a worker thread (~9 ms of CPU a request,
pandas and LightGBM, and the waits); now an async handler reads the row on
the event loop (:func:`ltvcast.serve.model.cached_learned`, tens of µs).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
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
#: Most (model, cutoff, horizon) input tables kept; the least recently used goes first.
CACHE_SLOTS = 2
#: Most share of the time the watcher's rebuilds of stale rows hold the lock (the rest is the events').
REFRESH_DUTY = 0.1

#: Customers of the orders named in a batch, and of earlier returns of the batch's orders.
_ORDER_CUSTOMERS = """
SELECT customer_id FROM orders WHERE order_id IN (SELECT unnest($named::VARCHAR[]))
UNION SELECT customer_id FROM returns WHERE order_id IN (SELECT unnest($placed::VARCHAR[]))
"""


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


def write_events(store: Store, events: Iterable[tuple[Event, str]]) -> set[str]:
    """Write ``(event, canonical JSON)`` pairs to ``store`` as ``ltvcast sync`` does.

    Events already written (their id is an ``online`` key) are skipped.

    Returns:
        The customers whose features the written rows can change (empty when nothing was new).

    Raises:
        DataError: a row conflicts with one in the store (nothing is written).
    """
    currency = store.meta().get("shop_currency") or "XXX"
    rows = store_rows(events, currency)
    if rows.keys.empty:
        return set()
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    info = {"source": "online:mirror", "first_day": rows.first_day, "last_day": rows.last_day,
            "started_at": now, "seconds": 0.0, "content_hash": rows.content_hash}
    if store.write_online(rows.keys, rows.tables, info)[0] is None:
        return set()
    return touched_customers(store, rows.tables)


def touched_customers(store: Store, tables: dict[str, pd.DataFrame]) -> set[str]:
    """The customers whose features a batch's rows can change: those the rows name, those of the orders
    its lines and returns name, and those of earlier returns of its orders (the customers whose derived
    rows ``ltvcast sync`` rebuilds, ``ltvcast.store.writes._TOUCHED``, plus browse events); rows written
    before (repeated events) may add customers that did not change."""

    def values(table: str, column: str) -> set[str]:
        frame = tables.get(table)
        return set() if frame is None or column not in frame else set(frame[column].dropna().astype(str))

    out = values("orders", "customer_id") | values("returns", "customer_id") | values("events", "customer_id")
    named = sorted(values("order_items", "order_id") | values("returns", "order_id"))
    placed = sorted(values("orders", "order_id"))
    if named or placed:
        found = store.connection.execute(_ORDER_CUSTOMERS, {"named": named, "placed": placed}).fetchall()
        out |= {str(r[0]) for r in found if r[0] is not None}
    return out


class RowCache:
    """Every customer's row of one table (a learned model's predictions at one cutoff and horizon), with the
    stale customers.

    The rows (the float columns ``make`` gives besides ``customer_id``) live
    in one matrix with a position per customer, behind a lock of their own
    held for microseconds (a lookup, a put): a request reads its rows without
    waiting for the mirror's lock, which writes and builds hold for seconds.

    Attributes:
        columns: the rows' column names (None while the first build runs).
        stale: customers touched by events since their row was built; their rows must be built again.
        used: ``time.monotonic()`` of the last lookup (the least recently used table is dropped first).
    """

    def __init__(self) -> None:
        self.columns: list[str] | None = None
        self.stale: set[str] = set()
        self.used = time.monotonic()
        self._lock = threading.Lock()
        self._pos: dict[str, int] = {}
        self._values = np.empty((0, 0))
        self._n = 0

    @property
    def built(self) -> bool:
        """True once the first build (:meth:`fill`) is in."""
        return self.columns is not None

    @property
    def frame(self) -> pd.DataFrame | None:
        """The rows as a frame indexed by ``customer_id`` (a copy; None while the first build runs)."""
        with self._lock:
            if self.columns is None:
                return None
            ids, at = list(self._pos), list(self._pos.values())
            return pd.DataFrame(self._values[at], index=pd.Index(ids, name="customer_id"), columns=self.columns)

    def fill(self, rows: pd.DataFrame | None) -> None:
        """Every customer's rows (``customer_id`` + float columns), or None: no customer has one; none is stale."""
        names = [] if rows is None else [c for c in rows.columns if c != "customer_id"]
        values = np.empty((0, 0)) if rows is None else rows[names].to_numpy(dtype=float, copy=True)
        ids = [] if rows is None else rows["customer_id"].astype(str).tolist()
        with self._lock:
            self.columns, self._values, self._n = names, values, len(values)
            self._pos = dict(zip(ids, range(len(ids))))
            self.stale.clear()

    def mark(self, ids: Iterable[str]) -> None:
        """Mark customers stale (their rows are rebuilt before they are served again)."""
        with self._lock:
            self.stale.update(ids)

    def put(self, rows: pd.DataFrame | None, ids: Sequence[str]) -> None:
        """Replace the rows of ``ids`` by ``rows`` (``customer_id`` + the float columns; an id without a row has
        none) and clear their stale marks."""
        if self.columns is None:
            return
        ids = list(ids)
        if rows is not None and len(rows) and not self.columns:  # the first build found no customer
            with self._lock:
                self.columns = [c for c in rows.columns if c != "customer_id"]
                self._values = np.empty((0, len(self.columns)))
        new = {} if rows is None else dict(zip(rows["customer_id"].astype(str).tolist(),
                                               rows[self.columns].to_numpy(dtype=float)))
        with self._lock:
            for cid in ids:
                row = new.get(cid)
                if row is None:
                    self._pos.pop(cid, None)
                    continue
                at = self._pos.get(cid)
                if at is None:
                    if self._n == len(self._values):  # room for twice as many (amortised O(1) a row)
                        more = np.empty((max(64, self._n), len(self.columns)))
                        self._values = np.concatenate([self._values, more])
                    at, self._n = self._n, self._n + 1
                    self._pos[cid] = at
                self._values[at] = row
            self.stale.difference_update(ids)

    def get(self, ids: Sequence[str]) -> dict[str, list[float]] | None:
        """The rows of those ``ids`` that have one, or None when the table is not built or one of them is stale."""
        with self._lock:
            if self.columns is None or not self.stale.isdisjoint(ids):
                return None
            self.used = time.monotonic()
            return {cid: self._values[at].tolist() for cid in ids if (at := self._pos.get(cid)) is not None}


def _as_rows(frame: pd.DataFrame | None) -> dict[str, list[float]]:
    """customer id -> the frame's other columns as floats (as :meth:`RowCache.get` returns them)."""
    if frame is None or not len(frame):
        return {}
    values = frame.drop(columns="customer_id").to_numpy(dtype=float)
    return dict(zip(frame["customer_id"].astype(str).tolist(), values.tolist()))


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
        self._inputs: dict[Hashable, RowCache] = {}  # the cached tables, one per key of :meth:`rows`
        self._wake = threading.Event()  # set when a cached table must be built
        self._next_refresh = 0.0  # monotonic time from which the watcher may rebuild stale rows again
        self._last_append = -float("inf")  # monotonic time of the last batch written
        self._builds: dict[Hashable, tuple[Callable[[History], pd.DataFrame | None], object]] = {}

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
                self._inputs.clear()
                self._builds.clear()
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
                touched = write_events(self._store, [(e, event_json(e)) for e in events])
                for cache in self._inputs.values():
                    cache.mark(touched)
                self._last_append = time.monotonic()

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
        with self._lock:
            yield self._history(customer_ids, cutoff)

    def _history(self, customer_ids: Sequence[str] | None, cutoff) -> History:
        """:meth:`history` (every customer: None) for a caller that holds the lock."""
        store = self._store
        if store is None:
            raise LtvcastError("the store's mirror for learned models is not loaded yet")
        tz, basis = self._settings
        end = pd.Timestamp(cutoff).tz_localize(None).tz_localize("UTC") - pd.Timedelta(days=1)
        if customer_ids is None:
            tx, source = store.transactions(), store
        else:
            ids = tuple(dict.fromkeys(str(c) for c in customer_ids))
            tx, source = store.transactions(customers=ids), CustomerSubset(store, ids)
        if len(tx):
            end = max(end, to_day(tx["timestamp"].max()))
        return History(tx, end, f"online mirror of {self.db}", source, tz, basis)

    def cached(self, key: Hashable, customer_ids: Sequence[str]) -> dict[str, list[float]] | None:
        """The cached rows of ``customer_ids`` under ``key`` when all are current, without the mirror's lock.

        Returns:
            customer id -> row (the float columns of the ``make`` that built
            the table, in its order) for those with a row; None when the
            table is not built (or not asked for yet, :meth:`rows`) or one of
            them is stale. A batch being written may not be in the rows yet:
            its events are not acknowledged until :meth:`append` returns.
        """
        cache = self._inputs.get(key)
        return None if cache is None else cache.get([str(c) for c in customer_ids])

    def rows(
        self, key: Hashable, make: Callable[[History], pd.DataFrame | None], customer_ids: Sequence[str], cutoff
    ) -> dict[str, list[float]]:
        """Rows of ``customer_ids`` made from their history at ``cutoff``, from the cache where it holds them.

        Args:
            key: names the table (a model version, cutoff and horizon); at most
                :data:`CACHE_SLOTS` tables are kept, the least recently read goes first.
            make: ``make(history)`` -> ``customer_id`` + float columns, one row
                per customer of the history that has one, a row depending on
                that customer's rows only (a learned model's predictions), or
                None when none has one.
            customer_ids: the customers wanted.
            cutoff: the cutoff (a history is cut the day before, see :meth:`history`).

        Returns:
            As :meth:`cached`: ``make`` on :meth:`history` of those customers, row for row.

        The first call for a key schedules the whole table's build (on the
        thread of :meth:`start`; without it, this call builds it); until it
        is built, the rows are made from the customers' own history; stale
        customers' rows are made again (one history for all of them) and stored.

        Raises:
            LtvcastError: the mirror is not loaded; what ``make`` raises.
        """
        ids = list(dict.fromkeys(str(c) for c in customer_ids))
        found = self.cached(key, ids)
        if found is not None:
            return found
        with self._lock:
            new = key not in self._inputs
            if new:
                self._inputs[key] = RowCache()
                self._builds[key] = (make, cutoff)
                while len(self._inputs) > CACHE_SLOTS:
                    gone = min(self._inputs, key=lambda k: self._inputs[k].used)
                    del self._inputs[gone]
                    self._builds.pop(gone, None)
        if new:
            if self._thread is None:
                self.refresh()
            else:
                self._wake.set()
        with self._lock:  # no write until the rows are taken
            cache = self._inputs.get(key)
            if cache is None or not cache.built:
                return _as_rows(make(self._history(ids, cutoff)))
            todo = [i for i in ids if i in cache.stale]
            if todo:
                cache.put(make(self._history(todo, cutoff)), todo)
            return cache.get(ids)

    def refresh(self, stale: bool = True) -> None:
        """Build each cached table not built yet, then the rows of its stale customers (one build for all).

        Args:
            stale: also rebuild the stale rows. The watcher passes False until
                :meth:`refresh_due`: a rebuild holds the lock, and event batches wait for it.

        Raises:
            What ``make`` raises (the table is dropped first: the next request schedules it again).
        """
        for key in list(self._inputs):
            with self._lock:
                cache, (make, cutoff) = self._inputs.get(key), self._builds.get(key, (None, None))
                if cache is None or make is None or self._store is None:
                    continue
                try:
                    if not cache.built:
                        cache.fill(make(self._history(None, cutoff)))
                    elif cache.stale and stale:
                        ids, t0 = sorted(cache.stale), time.monotonic()
                        cache.put(make(self._history(ids, cutoff)), ids)
                        took = time.monotonic() - t0
                        self._next_refresh = time.monotonic() + took * (1 - REFRESH_DUTY) / REFRESH_DUTY
                except BaseException:
                    self._inputs.pop(key, None)
                    self._builds.pop(key, None)
                    raise

    def refresh_due(self, now: float, interval: float) -> bool:
        """True when the watcher may rebuild stale rows at ``now`` (``time.monotonic()``): the rebuilds so far
        held the lock at most :data:`REFRESH_DUTY` of the time, or no batch came in the last ``interval``
        seconds (none waits for the lock; after a burst of events, the stale rows are made at once instead of
        by the requests that find them, each paying a feature build)."""
        return now >= self._next_refresh or now - self._last_append >= interval

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
        """Call :meth:`poll` and :meth:`refresh` every ``interval`` seconds, and at once when a cached input
        table must be built, in a daemon thread (once started, idempotent).

        The stale rows are rebuilt at most once per ``interval``, and while
        event batches arrive only so often that these rebuilds hold the lock
        :data:`REFRESH_DUTY` of the time at most (one subset build for all of
        them; event batches wait for it): :meth:`refresh_due`."""
        if self._thread is not None:
            return

        def loop() -> None:
            while True:
                self._wake.wait(interval)
                self._wake.clear()
                if self._stop.is_set():
                    return
                try:
                    self.poll()
                    self.refresh(stale=self.refresh_due(time.monotonic(), interval))
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
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()
