"""The Redis online store: the same log and state for several service instances.

Keys under a prefix (default ``ltvcast:``): ``log`` (a list of
``[event_id, json]``; seq = position + 1), ``ev:<event id>`` (the SHA-256 of
the event's canonical JSON, which a reused id is compared by; ``1`` in
stores written before: such an id is not compared),
``order:<order id>`` and ``lines:<order id>`` (JSON), ``days:<customer>``
(a hash, fields ``<day>:<order id>:s|r|n|o|k`` = sales, returned, sale rows,
orders, return rows of that local day and order id — ``""`` for none —, a
:class:`~ltvcast.serve.state.DayRow`, money in 1/10,000 units),
``base:<generation>:<customer>`` (same fields) and ``meta``. A state of an
older row shape is rebuilt from the log when opened
(:meth:`~ltvcast.serve.online_store.OnlineStore.check_version`).

A batch is an optimistic transaction: WATCH the keys it reads (its event
ids, orders and lines), read them, compute the writes with the shared logic
(:func:`ltvcast.serve.state.apply_batch`), then MULTI/EXEC; a concurrent
writer of the same keys makes EXEC fail and the batch is retried. Day
counters are HINCRBY, so batches of different orders never conflict.

Durability is Redis's own: configure ``appendonly yes`` and
``appendfsync always`` to make an acknowledged event survive a crash of the
Redis server as it survives one of the service.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Sequence

import redis

from ltvcast.errors import LtvcastError
from ltvcast.serve.events import Event, event_digest, event_json
from ltvcast.serve.online_store import BaseRow, LogEntry, OnlineStore
from ltvcast.serve.state import Applied, DayRow, Fetched, OrderRec, Snapshot, apply_batch, needed

_FIELDS = ("s", "r", "n", "o", "k")
_RETRIES = 200


def _mask(url: str) -> str:
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)


def _parse_days(fields: dict[str, str]) -> dict[tuple[int, str], list[int]]:
    """``{(day, order_id): [sales, returned, sale_rows, orders, return_rows]}`` of a days hash."""
    out: dict[tuple[int, str], list[int]] = {}
    for name, value in fields.items():
        day, _, rest = name.partition(":")
        order_id, _, what = rest.rpartition(":")
        out.setdefault((int(day), order_id), [0] * len(_FIELDS))[_FIELDS.index(what)] = int(value)
    return out


def _fields(day: int, order_id: str, values) -> dict[str, int]:
    return {f"{day}:{order_id}:{f}": v for f, v in zip(_FIELDS, values) if v}


class RedisOnline(OnlineStore):
    """The online store on the Redis server at ``url``, keys under ``prefix``.

    Raises:
        LtvcastError: the server cannot be reached.
    """

    def __init__(self, url: str, prefix: str = "ltvcast:") -> None:
        self.prefix = prefix
        self.description = f"{_mask(url)}#{prefix}"
        try:
            self._r = redis.Redis.from_url(url, decode_responses=True, socket_timeout=10, socket_connect_timeout=5)
            self._r.ping()
        except (redis.RedisError, ValueError) as exc:
            raise LtvcastError(f"cannot reach Redis at {_mask(url)}: {exc}") from None
        self.check_version()

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def append(self, events: Sequence[Event], timezone: str) -> Applied:
        """See :meth:`OnlineStore.append` (WATCH/MULTI/EXEC, retried on conflicts with other writers)."""
        ids, order_ids = needed(events)
        ev_keys = [self._k("ev", i) for i in ids]
        order_keys = [self._k("order", o) for o in order_ids]
        line_keys = [self._k("lines", o) for o in order_ids]
        for _ in range(_RETRIES):
            with self._r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*ev_keys, *order_keys, *line_keys)
                    known = {i: v for i, v in zip(ids, pipe.mget(ev_keys)) if v is not None}
                    fetched = Fetched(seen=set(known), digests={i: v for i, v in known.items() if v != "1"})
                    if order_ids:
                        for oid, value in zip(order_ids, pipe.mget(order_keys)):
                            if value is not None:
                                fetched.orders[oid] = OrderRec(*json.loads(value))
                        for oid, value in zip(order_ids, pipe.mget(line_keys)):
                            if value is not None:
                                fetched.lines[oid] = {int(k): v for k, v in json.loads(value).items()}
                    applied = apply_batch(events, fetched, timezone)
                    pipe.multi()
                    self._queue(pipe, applied, fetched)
                    pipe.execute()
                    return applied
                except redis.WatchError:
                    continue
        raise LtvcastError(f"Redis: the batch kept conflicting with other writers ({_RETRIES} tries)")

    def _queue(self, pipe, applied: Applied, fetched: Fetched) -> None:
        if applied.events:
            for e in applied.events:
                pipe.set(self._k("ev", e.id), event_digest(e))
            pipe.rpush(self._k("log"), *[json.dumps([e.id, event_json(e)]) for e in applied.events])
        for oid, rec in applied.orders.items():
            pipe.set(self._k("order", oid), json.dumps([rec.customer_id, rec.day, rec.stated_e4]))
        touched: dict[str, dict[int, int]] = {}
        for (oid, line), amount in applied.lines.items():
            touched.setdefault(oid, dict(fetched.lines.get(oid, {})))[line] = amount
        for oid, lines in touched.items():
            pipe.set(self._k("lines", oid), json.dumps(lines))
        for (cid, day, order_id), delta in applied.days.items():
            key = self._k("days", cid)
            for name, v in _fields(day, order_id, delta.as_tuple()).items():
                pipe.hincrby(key, name, v)

    def days(self, customer_ids: Sequence[str]) -> dict[str, list[DayRow]]:
        """See :meth:`OnlineStore.days`."""
        gen = self._r.hget(self._k("meta"), "base_gen")
        with self._r.pipeline(transaction=False) as pipe:
            for cid in customer_ids:
                pipe.hgetall(self._k("days", cid))
                pipe.hgetall(self._k("base", gen or "-", cid))
            replies = pipe.execute()
        out: dict[str, list[DayRow]] = {}
        for i, cid in enumerate(customer_ids):
            rows = [
                DayRow(day, order_id, *v)
                for part in (replies[2 * i], replies[2 * i + 1])
                for (day, order_id), v in _parse_days(part).items()
            ]
            if rows:
                out[cid] = rows
        return out

    def log(self, after: int = 0, limit: int = 10_000) -> list[LogEntry]:
        """See :meth:`OnlineStore.log`."""
        items = self._r.lrange(self._k("log"), int(after), int(after) + int(limit) - 1)
        out = []
        for i, item in enumerate(items):
            event_id, body = json.loads(item)
            out.append(LogEntry(int(after) + i + 1, event_id, body))
        return out

    def meta(self) -> dict[str, str]:
        """See :meth:`OnlineStore.meta`."""
        return self._r.hgetall(self._k("meta"))

    def set_meta(self, values: dict[str, str]) -> None:
        """See :meth:`OnlineStore.set_meta`."""
        if values:
            self._r.hset(self._k("meta"), mapping=values)

    def _delete_matching(self, pattern: str) -> None:
        batch = []
        for key in self._r.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                self._r.delete(*batch)
                batch = []
        if batch:
            self._r.delete(*batch)

    def replace_base(self, rows: Iterable[BaseRow], fingerprint: str) -> None:
        """See :meth:`OnlineStore.replace_base`: written under a new generation, then switched in one HSET."""
        old = self._r.hget(self._k("meta"), "base_gen")
        gen = uuid.uuid4().hex[:12]
        with self._r.pipeline(transaction=False) as pipe:
            for n, (cid, day, order_id, *counts) in enumerate(rows, start=1):
                values = _fields(day, order_id, counts)
                if values:
                    pipe.hset(self._k("base", gen, cid), mapping=values)
                if n % 5000 == 0:
                    pipe.execute()
            pipe.execute()
        self._r.hset(self._k("meta"), mapping={"base_gen": gen, "base_fingerprint": fingerprint})
        if old:
            self._delete_matching(self._k("base", old, "*"))

    def snapshot(self) -> Snapshot:
        """See :meth:`OnlineStore.snapshot` (not atomic: take it while no batch is written)."""
        snap = Snapshot()
        n = len(self.prefix)
        for key in self._r.scan_iter(match=self._k("ev", "*"), count=1000):
            snap.event_ids.add(key[n + 3:])
        for key in self._r.scan_iter(match=self._k("order", "*"), count=1000):
            snap.orders[key[n + 6:]] = OrderRec(*json.loads(self._r.get(key)))
        for key in self._r.scan_iter(match=self._k("lines", "*"), count=1000):
            snap.lines[key[n + 6:]] = {int(k): v for k, v in json.loads(self._r.get(key)).items()}
        for key in self._r.scan_iter(match=self._k("days", "*"), count=1000):
            for (day, order_id), v in _parse_days(self._r.hgetall(key)).items():
                snap.days[(key[n + 5:], day, order_id)] = tuple(v)
        return snap

    def _replace_state(self, snapshot: Snapshot) -> None:
        for kind in ("order", "lines", "days"):
            self._delete_matching(self._k(kind, "*"))
        with self._r.pipeline(transaction=False) as pipe:
            for oid, rec in snapshot.orders.items():
                pipe.set(self._k("order", oid), json.dumps([rec.customer_id, rec.day, rec.stated_e4]))
            for oid, lines in snapshot.lines.items():
                pipe.set(self._k("lines", oid), json.dumps(lines))
            for (cid, day, order_id), v in snapshot.days.items():
                values = _fields(day, order_id, v)
                if values:
                    pipe.hset(self._k("days", cid), mapping=values)
            pipe.execute()

    def ping(self) -> None:
        """See :meth:`OnlineStore.ping`."""
        self._r.ping()

    def close(self) -> None:
        """Close the connection pool (idempotent)."""
        self._r.close()

    def drop(self) -> None:
        """Delete every key under the prefix (tests; an operator's reset)."""
        self._delete_matching(self.prefix + "*")



