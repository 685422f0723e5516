"""The per-customer online state and its incremental update: pure logic shared by every backend.

State (all money in exact integers of 1/10,000 currency units):

* ``days``: per customer, local calendar day (the shop's time zone, as days
  since 1970-01-01) and order id (``""``: none) a :class:`Day` — ``sales``
  (gross sales), ``returned`` (money given back), ``sale_rows`` (sale rows
  of the store's ``transactions``: one per order line, one for an order
  without lines), ``orders`` and ``return_rows``. A sale order is keyed by
  its own id on its day; a refund by the order id it names (``""`` without
  one) on its *own* day. These are the store's ``h_orders`` step
  (``features/sql/history_orders.sql``) summed per customer, day and order
  id, which is what the refund rule needs (``features/sql/README.md``,
  "Refunds": a refund counts on its order's day only when that order is a
  sale order of the same customer before the cutoff, which depends on the
  cutoff). So the RFM summary at any cutoff is a fold over a customer's rows
  (:func:`summarize`), O(rows of that customer).
* ``orders``: order id -> customer, day, stated total (:class:`OrderRec`).
* ``lines``: order id -> {line number: amount} (lines may arrive before
  their order; they count once the order is known, as the store's join does).

:func:`apply_batch` turns a batch of events plus the records it reads
(:class:`Fetched`) into the writes a backend commits (:class:`Applied`), in
one transaction with the log append. Adding a line to a known order moves
the order's contribution from its stated total to the sum of its lines;
deltas are additive, so arrival order does not matter (a refund that
arrives before its order is matched when the summary is taken).
:class:`MemoryState` is the reference backend: a rebuild from the log
replays it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple

from ltvcast.errors import LtvcastError
from ltvcast.serve.events import (
    BrowseEvent,
    Event,
    OrderEvent,
    OrderLineEvent,
    ReturnEvent,
    day_index,
    event_digest,
    index_day,
    local_day,
    to_e4,
)

UNIT_DAYS = {"D": 1.0, "W": 7.0, "M": 30.4375}
#: Version of the state's row shape; a backend holding another rebuilds its state from the log
#: and reloads its base (:meth:`ltvcast.serve.online_store.OnlineStore.check_version`).
STATE_VERSION = "2"


class ConflictError(LtvcastError):
    """A batch reuses a key (order id, order id + line) under another event id; nothing is applied.

    Attributes:
        index: position of the offending event in the batch.
    """

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class OrderRec:
    """An order known online: its customer, local day and stated total (1/10,000 units or None)."""

    customer_id: str
    day: int
    stated_e4: int | None


@dataclass
class Day:
    """One customer's rows of one local day and order id: gross sales and money returned (1/10,000
    units), sale rows, sale orders, return rows."""

    sales: int = 0
    returned: int = 0
    sale_rows: int = 0
    orders: int = 0
    return_rows: int = 0

    def add(self, other: Day) -> None:
        """Add ``other``'s counts to this day in place."""
        self.sales += other.sales
        self.returned += other.returned
        self.sale_rows += other.sale_rows
        self.orders += other.orders
        self.return_rows += other.return_rows

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        """``(sales, returned, sale_rows, orders, return_rows)``."""
        return (self.sales, self.returned, self.sale_rows, self.orders, self.return_rows)


class DayRow(NamedTuple):
    """One row of a customer's state as :func:`summarize` reads it (money in 1/10,000 units).

    ``day``: local day (days since 1970-01-01); ``order_id``: the sale
    order's id, or the order id a refund names (``""``: none); then the
    :class:`Day` counts.
    """

    day: int
    order_id: str
    sales: int
    returned: int
    sale_rows: int
    orders: int
    return_rows: int


@dataclass
class Fetched:
    """What a batch reads from the state: seen event ids (with the digest of their logged payload,
    :func:`~ltvcast.serve.events.event_digest`, where the backend keeps it), orders and lines of the
    orders it touches."""

    seen: set[str] = field(default_factory=set)
    digests: dict[str, str] = field(default_factory=dict)
    orders: dict[str, OrderRec] = field(default_factory=dict)
    lines: dict[str, dict[int, int]] = field(default_factory=dict)


@dataclass
class Applied:
    """The writes of one batch: new events (arrival order), duplicate ids, new orders and lines, day deltas."""

    events: list[Event] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    orders: dict[str, OrderRec] = field(default_factory=dict)
    lines: dict[tuple[str, int], int] = field(default_factory=dict)
    days: dict[tuple[str, int, str], Day] = field(default_factory=dict)

    def _add(self, customer_id: str, day: int, order_id: str, delta: Day) -> None:
        self.days.setdefault((customer_id, day, order_id), Day()).add(delta)


def needed(events: Sequence[Event]) -> tuple[list[str], list[str]]:
    """The event ids and order ids a batch must read (:class:`Fetched`)."""
    ids = list(dict.fromkeys(e.id for e in events))
    orders = list(dict.fromkeys(e.order_id for e in events if isinstance(e, (OrderEvent, OrderLineEvent))))
    return ids, orders


def contribution(stated_e4: int | None, lines: dict[int, int]) -> tuple[int, int]:
    """An order's (sales, sale_rows) on its day: the sum and count of its lines, else its stated total and 1.

    The store's rule (``Store.rebuild_derived``): one ``transactions`` row
    per order line; an order without lines is one row of its stated amount
    (0 when none was stated).
    """
    if lines:
        return sum(lines.values()), len(lines)
    return (stated_e4 or 0), 1


def apply_batch(events: Sequence[Event], fetched: Fetched, timezone: str) -> Applied:
    """Apply a batch to the fetched state; returns the writes.

    Args:
        events: validated events in arrival order.
        fetched: the records :func:`needed` names, as the state holds them.
        timezone: the shop's IANA zone (decides local days).

    Returns:
        :class:`Applied`; a repeated id with the same payload (seen before or
        earlier in the batch) is listed in ``duplicates`` and changes nothing.

    Raises:
        ConflictError: an event id already known with another payload (its
            canonical JSON differs; a logged event without a digest counts as
            the same), or an order id, or an order id and line, that is
            already known under another event id.
    """
    out = Applied()
    seen = set(fetched.seen)
    digests = dict(fetched.digests)
    orders = dict(fetched.orders)
    lines = {k: dict(v) for k, v in fetched.lines.items()}
    for i, ev in enumerate(events):
        digest = event_digest(ev)
        if ev.id in seen:
            if digests.get(ev.id, digest) != digest:
                raise ConflictError(i, f"events[{i}]: event id {ev.id!r} is already known with another payload "
                                       "(an event id names one event: send a new id for a new event)")
            out.duplicates.append(ev.id)
            continue
        seen.add(ev.id)
        digests[ev.id] = digest
        if isinstance(ev, OrderEvent):
            if ev.order_id in orders:
                raise ConflictError(i, f"events[{i}]: order {ev.order_id!r} is already known under another event id")
            rec = OrderRec(ev.customer_id, local_day(ev.timestamp, timezone), ev.stated_e4)
            orders[ev.order_id] = out.orders[ev.order_id] = rec
            sales, rows = contribution(rec.stated_e4, lines.get(ev.order_id, {}))
            out._add(rec.customer_id, rec.day, ev.order_id, Day(sales, 0, rows, 1))
        elif isinstance(ev, OrderLineEvent):
            have = lines.setdefault(ev.order_id, {})
            if ev.line in have:
                raise ConflictError(
                    i, f"events[{i}]: line {ev.line} of order {ev.order_id!r} is already known under another event id"
                )
            rec = orders.get(ev.order_id)
            before = contribution(rec.stated_e4, have) if rec is not None else (0, 0)
            have[ev.line] = out.lines[(ev.order_id, ev.line)] = ev.amount_e4
            if rec is not None:
                after = contribution(rec.stated_e4, have)
                out._add(rec.customer_id, rec.day, ev.order_id, Day(after[0] - before[0], 0, after[1] - before[1], 0))
        elif isinstance(ev, ReturnEvent):
            # On its own day under the order id it names: summarize matches it to the order (if any).
            out._add(ev.customer_id, local_day(ev.timestamp, timezone), ev.order_id or "", Day(0, to_e4(ev.amount), 0, 0, 1))
        else:
            assert isinstance(ev, BrowseEvent)
        out.events.append(ev)
    return out


@dataclass(frozen=True)
class Summary:
    """A customer's BTYD summary at a cutoff (the columns of :func:`ltvcast.features.rfm_summary`).

    ``recency`` and ``T`` are in the summary's unit; ``monetary_value``,
    ``total_spend`` and ``unmatched_refund_amount`` in currency;
    ``first_purchase``/``last_purchase`` local dates.
    """

    frequency: float
    recency: float
    T: float
    monetary_value: float
    total_spend: float
    n_transactions: int
    first_purchase: date
    last_purchase: date
    unmatched_refunds: int = 0
    unmatched_refund_amount: float = 0.0


def summarize(
    days: Iterable[Sequence], cutoff: date, unit: str = "W", revenue_basis: str = "net"
) -> Summary | None:
    """The BTYD summary at ``cutoff`` from a customer's :class:`DayRow` rows (online and base).

    The definitions of :func:`ltvcast.features.rfm_summary` (Fader, Hardie &
    Lee 2005) and the refund rule of ``features/sql/README.md`` ("Refunds"),
    evaluated at ``cutoff``: only rows of days before it count; rows of one
    day and order id are merged. A refund naming a sale order of the
    customer before the cutoff counts on that order's day ("matched"); else,
    when any of the customer's rows before the cutoff has an order id, it is
    "unmatched" (its own day, total spend only, counted in
    ``unmatched_refunds``); else it counts on its own day (the rule without
    order ids). An occasion is a day with a sale row, unless (``net``) its
    matched refunds bring its sales to <= 0; its value is sales − refunds
    counted that day except unmatched ones (``net``) or sales (``gross``);
    ``frequency`` = occasions − 1; ``recency`` = first to last occasion;
    ``T`` = first occasion to the day before the cutoff (both in ``unit``:
    days / 1, 7 or 30.4375); ``monetary_value`` = mean value of the repeat
    occasions (0.0 without); ``total_spend`` = sales − every refund
    (``net``) or sales; ``n_transactions`` = sale orders of the occasions.

    Returns:
        The summary, or None when the customer has no occasion before the cutoff.
    """
    limit = day_index(cutoff)
    rows: dict[tuple[int, str], list[int]] = {}
    for day, order_id, sales, returned, sale_rows, orders, return_rows in days:
        if day < limit:
            acc = rows.setdefault((day, order_id), [0, 0, 0, 0, 0])
            acc[0] += sales
            acc[1] += returned
            acc[2] += sale_rows
            acc[3] += orders
            acc[4] += return_rows
    # order id -> day of the customer's sale order before the cutoff; any order id at all?
    order_day: dict[str, int] = {}
    for (day, oid), v in rows.items():
        if oid and v[3] > 0 and day < order_day.get(oid, limit):
            order_day[oid] = day
    has_ids = any(oid for _, oid in rows)
    # per day: [sales, sale_rows, refunds counted here, matched refunds, unmatched refunds, unmatched rows, orders]
    per: dict[int, list[int]] = {}
    for (day, oid), v in rows.items():
        acc = per.setdefault(day, [0, 0, 0, 0, 0, 0, 0])
        acc[0] += v[0]
        acc[1] += v[2]
        acc[6] += v[3]
        if v[1] == 0 and v[4] == 0:
            continue
        if oid in order_day:  # matched: on its order's day
            target = per.setdefault(order_day[oid], [0, 0, 0, 0, 0, 0, 0])
            target[2] += v[1]
            target[3] += v[1]
        elif has_ids:  # unmatched: its own day, spend only
            acc[2] += v[1]
            acc[4] += v[1]
            acc[5] += v[4]
        else:  # no order ids: its own day
            acc[2] += v[1]
    net = revenue_basis == "net"

    def given_back(v: list[int]) -> bool:
        return net and v[3] > 0 and v[0] - v[3] <= 0

    occasions = sorted(d for d, v in per.items() if v[1] > 0 and not given_back(v))
    if not occasions:
        return None

    def value(v: list[int]) -> int:  # the day's orders (unmatched refunds excluded)
        return v[0] - (v[2] - v[4]) if net else v[0]

    first, last = occasions[0], occasions[-1]
    n = len(occasions)
    repeat = sum(value(per[d]) for d in occasions) - value(per[first])
    scale = UNIT_DAYS[unit.upper()]
    return Summary(
        frequency=float(n - 1),
        recency=float(last - first) / scale,
        T=float(limit - first - 1) / scale,
        monetary_value=(repeat / 1e4) / (n - 1) if n > 1 else 0.0,
        total_spend=sum((v[0] - v[2]) if net else v[0] for v in per.values()) / 1e4,
        n_transactions=sum(per[d][6] for d in occasions),
        first_purchase=index_day(first),
        last_purchase=index_day(last),
        unmatched_refunds=sum(v[5] for v in per.values()),
        unmatched_refund_amount=sum(v[4] for v in per.values()) / 1e4,
    )


@dataclass
class Snapshot:
    """The whole online state, for comparisons (a backend's state vs a rebuild from its log)."""

    event_ids: set[str] = field(default_factory=set)
    orders: dict[str, OrderRec] = field(default_factory=dict)
    lines: dict[str, dict[int, int]] = field(default_factory=dict)
    days: dict[tuple[str, int, str], tuple[int, int, int, int, int]] = field(default_factory=dict)


class MemoryState:
    """The reference backend in memory: :meth:`append` = fetch, :func:`apply_batch`, commit."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self._digests: dict[str, str] = {}

    def append(self, events: Sequence[Event], timezone: str) -> Applied:
        """Apply a batch (see :func:`apply_batch`); nothing changes when it raises."""
        s = self.snapshot
        ids, order_ids = needed(events)
        fetched = Fetched(
            seen={i for i in ids if i in s.event_ids},
            digests={i: self._digests[i] for i in ids if i in self._digests},
            orders={o: s.orders[o] for o in order_ids if o in s.orders},
            lines={o: s.lines[o] for o in order_ids if o in s.lines},
        )
        applied = apply_batch(events, fetched, timezone)
        s.event_ids.update(e.id for e in applied.events)
        self._digests.update((e.id, event_digest(e)) for e in applied.events)
        s.orders.update(applied.orders)
        for (oid, line), amount in applied.lines.items():
            s.lines.setdefault(oid, {})[line] = amount
        for key, delta in applied.days.items():
            day = Day(*s.days.get(key, (0, 0, 0, 0, 0)))
            day.add(delta)
            s.days[key] = day.as_tuple()
        return applied


def rebuild(events: Iterable[Event], timezone: str, batch: int = 1000) -> Snapshot:
    """The state a fresh backend reaches by replaying ``events`` (log order) in batches."""
    state = MemoryState()
    chunk: list[Event] = []
    for ev in events:
        chunk.append(ev)
        if len(chunk) >= batch:
            state.append(chunk, timezone)
            chunk = []
    if chunk:
        state.append(chunk, timezone)
    return state.snapshot
