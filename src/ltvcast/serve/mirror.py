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

* :meth:`Mirror.inputs` gives a learned model's inputs of some customers
  from a per-(model, cutoff, horizon) table of every customer's inputs
  (:class:`InputsCache`), kept exact as events arrive: see below.

Memory: a copy of those tables (``quarantine`` and ``fx_rates`` are left
out), plus the cached inputs (:data:`CACHE_SLOTS` tables of n_customers ×
n_inputs, 8 B a number: CDNOW's 23,570 customers × ~100 gbm inputs, 19 MB).
One lock orders writes and reads: a history is read (the features built)
with no write in between, so a prediction never sees half a batch.

Why a cache of inputs (issue 12, measured in ``docs/serving.md``): a
feature build costs the same ~30 SQL statements whatever the number of
customers (~160 ms quiet for one customer), so a learned prediction
cannot be computed per request in milliseconds. But a customer's inputs
depend only on that customer's rows (the rule of every feature family and
of :func:`~ltvcast.serve.model.servable`), so the inputs of every customer
at a cutoff, built once (the batch build, seconds), stay exact for every
customer no event has touched since. The first request at a new (model,
cutoff, horizon) starts that build in the background; until it ends,
requests are answered as before or wait for it; each acknowledged batch marks the customers it touches (the scope
``ltvcast sync`` rebuilds, :meth:`Mirror.append`) stale, and a background
refresh rebuilds the stale customers' inputs together (one subset build
for all of them, at most once a watch interval and 10% of the time); a
request for a stale customer not refreshed yet builds its inputs itself,
as before. Every row served thus equals the subset build's, which equals
the offline one (``tests/test_serve_learned.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
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


class InputsCache:
    """One learned model's inputs of every customer at one cutoff and horizon, with the stale customers.

    Attributes:
        frame: the inputs indexed by ``customer_id`` (None while the first build runs).
        stale: customers touched by events since their row was built; their rows must be built again.
    """

    def __init__(self) -> None:
        self.frame: pd.DataFrame | None = None
        self.stale: set[str] = set()

    def put(self, rows: pd.DataFrame | None, ids: Sequence[str]) -> None:
        """Replace the rows of ``ids`` by ``rows`` (``customer_id`` + inputs; an id without a row has none)."""
        if self.frame is None:
            return
        ids = list(ids)
        new = None if rows is None else rows[rows["customer_id"].isin(ids)].set_index("customer_id")
        if not len(self.frame.columns):  # built when no customer had a purchase
            self.frame = self.frame.reindex(columns=[] if new is None else new.columns)
        keep = self.frame.loc[~self.frame.index.isin(ids)]
        self.frame = keep if new is None or not len(new) else pd.concat([keep, new[self.frame.columns]])
        self.stale.difference_update(ids)

    def get(self, ids: Sequence[str]) -> pd.DataFrame | None:
        """The rows of those ``ids`` that have one (none is stale), as :meth:`Mirror.inputs` returns them."""
        have = [i for i in ids if i in self.frame.index]
        return self.frame.loc[have].rename_axis("customer_id").reset_index() if have else None


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
        self._inputs: OrderedDict[Hashable, InputsCache] = OrderedDict()
        self._wake = threading.Event()  # set when a cached input table must be built
        self._next_refresh = 0.0  # monotonic time from which the watcher may rebuild stale rows again
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
                    cache.stale.update(touched)

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

    def inputs(
        self, key: Hashable, make: Callable[[History], pd.DataFrame | None], customer_ids: Sequence[str], cutoff
    ) -> pd.DataFrame | None:
        """A learned model's inputs of ``customer_ids`` at ``cutoff``, from the cache where it holds them.

        Args:
            key: names the model version, cutoff and horizon (one cache table per key).
            make: ``make(history)`` -> the model's inputs of the history's
                customers with a purchase before ``cutoff`` (``customer_id`` +
                one column per input, a row depending on that customer's rows
                only), or None when none has one.
            customer_ids: the customers wanted.
            cutoff: the prediction cutoff (a history is cut the day before, see :meth:`history`).

        Returns:
            ``customer_id`` + inputs of those wanted that have a row (in any
            order), or None when none has one: ``make`` on :meth:`history`
            of those customers, row for row.

        The first call for a key schedules the whole table's build (on the
        thread of :meth:`start`; without it, this call builds it); until it
        is built, and for stale customers, the rows are built by ``make`` on
        the customers' own history (and stored).

        Raises:
            LtvcastError: the mirror is not loaded; what ``make`` raises.
        """
        ids = list(dict.fromkeys(str(c) for c in customer_ids))
        with self._lock:
            new = key not in self._inputs
            if new:
                self._inputs[key] = InputsCache()
                self._builds[key] = (make, cutoff)
                while len(self._inputs) > CACHE_SLOTS:
                    gone, _ = self._inputs.popitem(last=False)
                    self._builds.pop(gone, None)
            self._inputs.move_to_end(key)
        if new:
            if self._thread is None:
                self.refresh()
            else:
                self._wake.set()
        with self._lock:  # no write until the rows are taken
            cache = self._inputs.get(key)
            built = cache is not None and cache.frame is not None
            if built and not any(i in cache.stale for i in ids):
                return cache.get(ids)
            rows = make(self._history(ids, cutoff))
            if built:
                cache.put(rows, [i for i in ids if i in cache.stale])
            return rows

    def refresh(self, stale: bool = True) -> None:
        """Build each cached table not built yet, then the rows of its stale customers (one build for all).

        Args:
            stale: also rebuild the stale rows. The watcher passes False until
                :data:`REFRESH_DUTY` allows it: a rebuild holds the lock, and
                event batches wait for it.

        Raises:
            What ``make`` raises (the table is dropped first: the next request schedules it again).
        """
        for key in list(self._inputs):
            with self._lock:
                cache, (make, cutoff) = self._inputs.get(key), self._builds.get(key, (None, None))
                if cache is None or make is None or self._store is None:
                    continue
                try:
                    if cache.frame is None:
                        rows = make(self._history(None, cutoff))
                        frame = pd.DataFrame({"customer_id": []}) if rows is None else rows
                        cache.frame = frame.set_index("customer_id")
                        cache.stale.clear()
                    elif cache.stale and stale:
                        ids, t0 = sorted(cache.stale), time.monotonic()
                        cache.put(make(self._history(ids, cutoff)), ids)
                        took = time.monotonic() - t0
                        self._next_refresh = time.monotonic() + took * (1 - REFRESH_DUTY) / REFRESH_DUTY
                except BaseException:
                    self._inputs.pop(key, None)
                    self._builds.pop(key, None)
                    raise

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

        The stale rows are rebuilt at most once per ``interval``, and only so
        often that these rebuilds hold the lock :data:`REFRESH_DUTY` of the
        time at most (one subset build for all of them; event batches wait
        for it)."""
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
                    self.refresh(stale=time.monotonic() >= self._next_refresh)
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
