"""The per-customer online state and its incremental update: pure logic shared by every backend.

State (all money in exact integers of 1/10,000 currency units):

* ``days``: per customer and local calendar day (the shop's time zone, as
  days since 1970-01-01) a :class:`Day` — ``sales`` (gross sales),
  ``returned`` (money given back), ``sale_rows`` (sale rows of the store's
  ``transactions``: one per order line, one for an order without lines) and
  ``orders``. These are the columns of the store's ``h_daily`` step
  (``features/sql/history_daily.sql``), so the RFM summary at any cutoff is
  a fold over a customer's days (:func:`summarize`), O(days of that customer).
* ``orders``: order id -> customer, day, stated total (:class:`OrderRec`).
* ``lines``: order id -> {line number: amount} (lines may arrive before
  their order; they count once the order is known, as the store's join does).

:func:`apply_batch` turns a batch of events plus the records it reads
(:class:`Fetched`) into the writes a backend commits (:class:`Applied`), in
one transaction with the log append. Adding a line to a known order moves
the order's contribution from its stated total to the sum of its lines;
deltas are additive, so arrival order does not matter. :class:`MemoryState`
is the reference backend: a rebuild from the log replays it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from ltvcast.errors import LtvcastError
from ltvcast.serve.events import (
    BrowseEvent,
    Event,
    OrderEvent,
    OrderLineEvent,
    ReturnEvent,
    day_index,
    index_day,
    local_day,
    to_e4,
)

UNIT_DAYS = {"D": 1.0, "W": 7.0, "M": 30.4375}


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
    """One customer's local day: gross sales and money returned (1/10,000 units), sale rows, orders."""

    sales: int = 0
    returned: int = 0
    sale_rows: int = 0
    orders: int = 0

    def add(self, other: Day) -> None:
        """Add ``other``'s counts to this day in place."""
        self.sales += other.sales
        self.returned += other.returned
        self.sale_rows += other.sale_rows
        self.orders += other.orders

    def as_tuple(self) -> tuple[int, int, int, int]:
        """``(sales, returned, sale_rows, orders)``."""
        return (self.sales, self.returned, self.sale_rows, self.orders)


@dataclass
class Fetched:
    """What a batch reads from the state: seen event ids, orders and lines of the orders it touches."""

    seen: set[str] = field(default_factory=set)
    orders: dict[str, OrderRec] = field(default_factory=dict)
    lines: dict[str, dict[int, int]] = field(default_factory=dict)


@dataclass
class Applied:
    """The writes of one batch: new events (arrival order), duplicate ids, new orders and lines, day deltas."""

    events: list[Event] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    orders: dict[str, OrderRec] = field(default_factory=dict)
    lines: dict[tuple[str, int], int] = field(default_factory=dict)
    days: dict[tuple[str, int], Day] = field(default_factory=dict)

    def _add(self, customer_id: str, day: int, delta: Day) -> None:
        self.days.setdefault((customer_id, day), Day()).add(delta)


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
        :class:`Applied`; a repeated id (seen before or earlier in the batch)
        is listed in ``duplicates`` and changes nothing.

    Raises:
        ConflictError: an order id, or an order id and line, that is already
            known under another event id.
    """
    out = Applied()
    seen = set(fetched.seen)
    orders = dict(fetched.orders)
    lines = {k: dict(v) for k, v in fetched.lines.items()}
    for i, ev in enumerate(events):
        if ev.id in seen:
            out.duplicates.append(ev.id)
            continue
        seen.add(ev.id)
        if isinstance(ev, OrderEvent):
            if ev.order_id in orders:
                raise ConflictError(i, f"events[{i}]: order {ev.order_id!r} is already known under another event id")
            rec = OrderRec(ev.customer_id, local_day(ev.timestamp, timezone), ev.stated_e4)
            orders[ev.order_id] = out.orders[ev.order_id] = rec
            sales, rows = contribution(rec.stated_e4, lines.get(ev.order_id, {}))
            out._add(rec.customer_id, rec.day, Day(sales, 0, rows, 1))
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
                out._add(rec.customer_id, rec.day, Day(after[0] - before[0], 0, after[1] - before[1], 0))
        elif isinstance(ev, ReturnEvent):
            out._add(ev.customer_id, local_day(ev.timestamp, timezone), Day(0, to_e4(ev.amount), 0, 0))
        else:
            assert isinstance(ev, BrowseEvent)
        out.events.append(ev)
    return out


@dataclass(frozen=True)
class Summary:
    """A customer's BTYD summary at a cutoff (the columns of :func:`ltvcast.features.rfm_summary`).

    ``recency`` and ``T`` are in the summary's unit; ``monetary_value`` and
    ``total_spend`` in currency; ``first_purchase``/``last_purchase`` local dates.
    """

    frequency: float
    recency: float
    T: float
    monetary_value: float
    total_spend: float
    n_transactions: int
    first_purchase: date
    last_purchase: date


def summarize(
    days: Iterable[tuple[int, int, int, int]], cutoff: date, unit: str = "W", revenue_basis: str = "net"
) -> Summary | None:
    """The BTYD summary at ``cutoff`` from a customer's ``(day, sales, returned, sale_rows)`` rows.

    The definitions of :func:`ltvcast.features.rfm_summary` (Fader, Hardie &
    Lee 2005): rows of one day are merged; only days before the cutoff
    count; an occasion is a day with a sale row; its value is sales −
    returned (``net``) or sales (``gross``); ``frequency`` = occasions − 1;
    ``recency`` = first to last occasion; ``T`` = first occasion to the day
    before the cutoff (both in ``unit``: days / 1, 7 or 30.4375);
    ``monetary_value`` = mean value of the repeat occasions (0.0 without);
    ``total_spend`` = value of every day (returns on other days included).

    Returns:
        The summary, or None when the customer has no occasion before the cutoff.
    """
    limit = day_index(cutoff)
    merged: dict[int, list[int]] = {}
    for day, sales, returned, rows in days:
        if day < limit:
            acc = merged.setdefault(day, [0, 0, 0])
            acc[0] += sales
            acc[1] += returned
            acc[2] += rows
    net = revenue_basis == "net"
    occasions = sorted(d for d, v in merged.items() if v[2] > 0)
    if not occasions:
        return None

    def value(v: list[int]) -> int:
        return v[0] - v[1] if net else v[0]

    first, last = occasions[0], occasions[-1]
    n = len(occasions)
    repeat = sum(value(merged[d]) for d in occasions) - value(merged[first])
    scale = UNIT_DAYS[unit.upper()]
    return Summary(
        frequency=float(n - 1),
        recency=float(last - first) / scale,
        T=float(limit - first - 1) / scale,
        monetary_value=(repeat / 1e4) / (n - 1) if n > 1 else 0.0,
        total_spend=sum(value(v) for v in merged.values()) / 1e4,
        n_transactions=sum(v[2] for v in merged.values()),
        first_purchase=index_day(first),
        last_purchase=index_day(last),
    )


@dataclass
class Snapshot:
    """The whole online state, for comparisons (a backend's state vs a rebuild from its log)."""

    event_ids: set[str] = field(default_factory=set)
    orders: dict[str, OrderRec] = field(default_factory=dict)
    lines: dict[str, dict[int, int]] = field(default_factory=dict)
    days: dict[tuple[str, int], tuple[int, int, int, int]] = field(default_factory=dict)


class MemoryState:
    """The reference backend in memory: :meth:`append` = fetch, :func:`apply_batch`, commit."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def append(self, events: Sequence[Event], timezone: str) -> Applied:
        """Apply a batch (see :func:`apply_batch`); nothing changes when it raises."""
        s = self.snapshot
        ids, order_ids = needed(events)
        fetched = Fetched(
            seen={i for i in ids if i in s.event_ids},
            orders={o: s.orders[o] for o in order_ids if o in s.orders},
            lines={o: s.lines[o] for o in order_ids if o in s.lines},
        )
        applied = apply_batch(events, fetched, timezone)
        s.event_ids.update(e.id for e in applied.events)
        s.orders.update(applied.orders)
        for (oid, line), amount in applied.lines.items():
            s.lines.setdefault(oid, {})[line] = amount
        for key, delta in applied.days.items():
            day = Day(*s.days.get(key, (0, 0, 0, 0)))
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
