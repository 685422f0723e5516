"""Online state semantics: the incremental update, the summary at a cutoff, and both backends (SQLite, Redis).

Redis: the server at ``$LTVCAST_TEST_REDIS`` (default ``redis://127.0.0.1:6379/15``). Where it cannot be
reached the Redis cases skip with the reason, except under ``CI=true``, where they fail. Each test uses
its own key prefix and deletes its keys.
"""

from __future__ import annotations

import os
import uuid
from datetime import date, datetime, timezone

import numpy as np
import pandas as pd
import pytest
from serve_kit import event_stream

from ltvcast.features import rfm_summary
from ltvcast.serve.events import EVENT_ADAPTER, OrderLineEvent, day_index, local_day
from ltvcast.serve.online import open_online
from ltvcast.serve.state import ConflictError, DayRow, MemoryState, apply_batch, rebuild, summarize
from ltvcast.serve.state import Fetched as F

REDIS_URL = os.environ.get("LTVCAST_TEST_REDIS", "redis://127.0.0.1:6379/15")
TZ = "Europe/Berlin"


def ev(**fields):
    return EVENT_ADAPTER.validate_python(fields)


def order(i, cid, ts, amount=None):
    body = {"type": "order", "id": f"o{i}", "order_id": f"O{i}", "customer_id": cid, "timestamp": ts}
    return ev(**body) if amount is None else ev(**body, amount=amount)


def line(i, n, amount):
    return ev(type="order_line", id=f"o{i}-{n}", order_id=f"O{i}", line=n, amount=amount)


def r(day, sales, returned, sale_rows, order_id=""):
    """A DayRow: one order when there are sale rows, one return row when money was given back."""
    return DayRow(day, order_id, sales, returned, sale_rows, int(sale_rows > 0), int(returned > 0))


# -- the summary --------------------------------------------------------------------
def test_summary_hand_computed():
    d = day_index
    rows = [  # no order ids: every refund counts on its own day (the rule without order ids)
        r(d(date(2024, 1, 1)), 100_0000, 0, 2),       # first occasion: 100
        r(d(date(2024, 1, 1)), 20_0000, 0, 1),        # same day, other row: merged -> 120
        r(d(date(2024, 1, 8)), 50_0000, 10_0000, 1),  # occasion, net 40 (gross 50)
        r(d(date(2024, 1, 10)), 0, 5_0000, 0),        # a return only: no occasion, counts in total_spend
        r(d(date(2024, 1, 22)), 30_0000, 0, 1),       # occasion 30
        r(d(date(2024, 2, 1)), 99_0000, 0, 1),        # at the cutoff: not history
    ]
    s = summarize(rows, date(2024, 2, 1), "W", "net")
    assert s.frequency == 2.0
    assert s.recency == 21 / 7 and s.T == 30 / 7  # 2024-01-01 .. 2024-01-31 (the day before the cutoff)
    assert s.monetary_value == pytest.approx((40 + 30) / 2, rel=1e-15)
    assert s.total_spend == pytest.approx(120 + 40 - 5 + 30)
    assert s.n_transactions == 4  # orders (01-01: two), not rows (01-01: three)
    assert (s.first_purchase, s.last_purchase) == (date(2024, 1, 1), date(2024, 1, 22))
    gross = summarize(rows, date(2024, 2, 1), "D", "gross")
    assert gross.monetary_value == (50 + 30) / 2 and gross.T == 30.0 and gross.total_spend == 200.0
    assert summarize(rows, date(2024, 1, 1), "W", "net") is None  # nothing before the cutoff: cold start
    assert summarize([r(d(date(2024, 1, 5)), 0, 3_0000, 0)], date(2024, 2, 1)) is None  # returns only
    assert (s.unmatched_refunds, s.unmatched_refund_amount) == (0, 0.0)


def test_summary_nets_refunds_by_order_hand_computed():
    """features/sql/README.md, "Refunds": the rule depends on the cutoff (all days before it count)."""
    d = day_index
    rows = [
        r(d(date(2024, 1, 1)), 100_0000, 0, 1, "A"),   # order A: refunded in full on 01-20 -> no occasion
        r(d(date(2024, 1, 8)), 50_0000, 0, 2, "B"),    # order B: 30 of it refunded on 01-25 -> worth 20
        r(d(date(2024, 1, 15)), 40_0000, 0, 1, "C"),   # order C: kept, worth 40
        r(d(date(2024, 1, 20)), 0, 100_0000, 0, "A"),  # matched: on 01-01
        r(d(date(2024, 1, 25)), 0, 30_0000, 0, "B"),   # matched: on 01-08
        r(d(date(2024, 1, 26)), 0, 7_0000, 0, "Z"),    # names no order of the customer: unmatched
        r(d(date(2024, 1, 27)), 0, 2_0000, 0),         # names no order: unmatched
    ]
    s = summarize(rows, date(2024, 2, 1), "D", "net")
    # occasions 01-08 (20) and 01-15 (40): x = 1, t_x = 7, T = 2024-01-08 .. 01-31 = 23 days, m = 40
    assert (s.frequency, s.recency, s.T, s.monetary_value) == (1.0, 7.0, 23.0, 40.0)
    assert s.total_spend == pytest.approx(100 + 50 + 40 - 100 - 30 - 7 - 2)  # 51
    assert (s.n_transactions, s.first_purchase) == (2, date(2024, 1, 8))  # orders B and C
    assert (s.unmatched_refunds, s.unmatched_refund_amount) == (2, 9.0)
    # at 2024-01-21 the refund of B is not history yet: occasions 01-08 (50) and 01-15 (40)
    early = summarize(rows, date(2024, 1, 21), "D", "net")
    assert (early.frequency, early.monetary_value, early.total_spend) == (1.0, 40.0, 90.0)
    # gross: refunds change no occasion and no value
    gross = summarize(rows, date(2024, 2, 1), "D", "gross")
    assert (gross.frequency, gross.T, gross.monetary_value, gross.total_spend) == (2.0, 30.0, 45.0, 190.0)


def test_summary_equals_rfm_summary_on_the_same_transactions():
    rng = np.random.default_rng(3)
    tx = pd.DataFrame({
        "customer_id": rng.choice(["a", "b", "c", "d"], 300),
        "timestamp": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 90 * 24 * 60, 300), "min"),
        "amount": np.round(rng.gamma(2.0, 10.0, 300), 2) * np.where(rng.random(300) < 0.1, -1, 1),
    })
    tx["kind"] = np.where(tx["amount"] < 0, "return", "sale")
    cutoff = "2024-03-15"
    offline = rfm_summary(tx, cutoff, unit="W", timezone=TZ).set_index("customer_id")
    for cid, g in tx.groupby("customer_id"):
        rows = [r(local_day(t.to_pydatetime(), TZ), round(a * 1e4) if a > 0 else 0, round(-a * 1e4) if a < 0 else 0,
                  int(a > 0)) for t, a in zip(g["timestamp"], g["amount"])]
        s = summarize(rows, date.fromisoformat(cutoff), "W", "net")
        o = offline.loc[cid]
        for col in ("frequency", "recency", "T", "monetary_value", "total_spend"):
            assert getattr(s, col) == pytest.approx(o[col], rel=1e-12, abs=1e-12), (cid, col)
        assert s.n_transactions == o["n_transactions"]


# -- the incremental update -------------------------------------------------------
def test_lines_replace_the_stated_total_in_any_order():
    ts = "2024-03-01T22:30:00Z"  # 23:30 in Berlin: still 2024-03-01 there
    day = day_index(date(2024, 3, 1))
    events = [order(1, "a", ts, amount="80"), line(1, 1, "30.5"), line(1, 2, "19.5")]
    forward = MemoryState()
    forward.append(events, TZ)
    assert forward.snapshot.days == {("a", day, "O1"): (50_0000, 0, 2, 1, 0)}
    backward = MemoryState()
    for e in reversed(events):  # lines wait for their order
        backward.append([e], TZ)
        if e.type == "order_line":
            assert backward.snapshot.days == {}
    assert backward.snapshot == forward.snapshot
    only_order = MemoryState()
    only_order.append(events[:1], TZ)
    assert only_order.snapshot.days == {("a", day, "O1"): (80_0000, 0, 1, 1, 0)}


def test_local_day_uses_the_shop_zone():
    ts = datetime(2024, 3, 1, 23, 30, tzinfo=timezone.utc)  # 00:30 on 2024-03-02 in Berlin
    assert local_day(ts, TZ) == day_index(date(2024, 3, 2)) and local_day(ts, "UTC") == day_index(date(2024, 3, 1))


def test_line_amount_from_quantity_and_price():
    e = ev(type="order_line", id="x", order_id="O", line=1, quantity=3, unit_price="2.345", discount="0.50")
    assert isinstance(e, OrderLineEvent) and e.amount_e4 == 3 * 2_3450 - 5000


def test_duplicates_and_conflicts():
    state = MemoryState()
    a = state.append([order(1, "a", "2024-03-01T10:00:00Z"), order(1, "a", "2024-03-01T10:00:00Z")], TZ)
    assert len(a.events) == 1 and a.duplicates == ["o1"]
    before = state.snapshot.days.copy()
    again = state.append([order(1, "a", "2024-03-01T10:00:00Z")], TZ)  # the same event resent
    assert again.duplicates == ["o1"] and again.events == [] and state.snapshot.days == before
    with pytest.raises(ConflictError) as err:  # the same id, another payload: refused, not acknowledged
        state.append([order(3, "a", "2024-03-03T10:00:00Z"), order(1, "b", "2024-04-01T10:00:00Z", amount="5")], TZ)
    assert err.value.index == 1 and "'o1'" in str(err.value) and "another payload" in str(err.value)
    assert state.snapshot.days == before and "o3" not in state.snapshot.event_ids
    clash = ev(type="order", id="other", order_id="O2", customer_id="a", timestamp="2024-03-02T10:00:00Z")
    with pytest.raises(ConflictError) as err:
        apply_batch([order(2, "c", "2024-03-01T10:00:00Z"), clash], F(), TZ)
    assert err.value.index == 1
    with pytest.raises(ConflictError):
        state.append([line(1, 1, "3"), ev(type="order_line", id="dup-line", order_id="O1", line=1, amount="4")], TZ)
    assert state.snapshot.days == before and "o1-1" not in state.snapshot.event_ids


# -- the backends ---------------------------------------------------------------------
def _redis_or_skip():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must test Redis, but {REDIS_URL} is not reachable: {exc}")
        pytest.skip(f"no Redis server at {REDIS_URL} ({exc}); set LTVCAST_TEST_REDIS")


@pytest.fixture(params=["sqlite", "redis"])
def online(request, tmp_path):
    if request.param == "sqlite":
        store = open_online(tmp_path / "online.sqlite")
        yield store
        store.close()
        return
    _redis_or_skip()
    store = open_online(redis_url=REDIS_URL, prefix=f"ltvcast-test:{uuid.uuid4().hex}:")
    try:
        yield store
    finally:
        store.drop()
        store.close()


def _stream(seed=5, n=120):
    rng = np.random.default_rng(seed)
    raw = event_stream(rng, [f"c{i}" for i in range(12)], n, datetime(2024, 3, 1), 20)
    return [EVENT_ADAPTER.validate_python(e) for e in raw]


def test_incremental_state_equals_rebuild_and_is_idempotent(online):
    events = _stream()
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(events)), 15, replace=False))
    applied = 0
    for chunk in np.split(np.arange(len(events)), cuts):
        applied += len(online.append([events[i] for i in chunk], TZ).events)
    unique_ids = {e.id for e in events}
    assert applied == len(unique_ids)
    snap = online.snapshot()
    assert snap == online.replay(TZ)  # the state equals a rebuild from the log
    canonical = rebuild(sorted({e.id: e for e in events}.values(), key=lambda e: e.id), TZ)
    assert snap == canonical  # ... and does not depend on arrival order or batching
    log = list(online.iter_log(page=50))
    assert [e.seq for e in log] == list(range(1, len(unique_ids) + 1))
    assert sorted(e.event_id for e in log) == sorted(unique_ids)
    again = online.append(events[:500], TZ)  # a resent stream changes nothing
    assert again.events == [] and len(again.duplicates) == min(500, len(events))
    assert online.snapshot() == snap
    # days() returns exactly the customer's rows
    days = online.days(["c1", "nobody"])
    assert "nobody" not in days
    assert sorted(days["c1"]) == sorted((d, o, *v) for (c, d, o), v in snap.days.items() if c == "c1")


def test_conflict_writes_nothing(online):
    online.append([order(1, "a", "2024-03-01T10:00:00Z")], TZ)
    snap = online.snapshot()
    clash = ev(type="order", id="other", order_id="O1", customer_id="b", timestamp="2024-03-02T10:00:00Z")
    with pytest.raises(ConflictError):
        online.append([order(2, "c", "2024-03-01T10:00:00Z"), clash], TZ)
    assert online.snapshot() == snap and len(online.log()) == 1


def test_reused_event_id_with_another_payload_is_a_conflict(online):
    first = order(1, "a", "2024-03-01T10:00:00Z", amount="10")
    online.append([first], TZ)
    snap = online.snapshot()
    assert online.append([first], TZ).duplicates == ["o1"]  # an identical repeat: acknowledged duplicate
    other = order(1, "a", "2024-03-01T10:00:00Z", amount="12")  # same id and order, another amount
    with pytest.raises(ConflictError) as err:
        online.append([order(2, "b", "2024-03-02T10:00:00Z"), other], TZ)
    assert err.value.index == 1 and "'o1'" in str(err.value)
    assert online.snapshot() == snap and len(online.log()) == 1  # nothing of the batch written
    within = ev(type="order", id="o5", order_id="O6", customer_id="c", timestamp="2024-03-05T10:00:00Z")
    with pytest.raises(ConflictError) as err:  # reused inside one batch
        online.append([order(5, "c", "2024-03-05T10:00:00Z"), within], TZ)
    assert err.value.index == 1 and online.snapshot() == snap


def test_amounts_beyond_four_decimals_are_refused():
    from pydantic import ValidationError

    assert order(1, "a", "2024-03-01T10:00:00Z", amount="1.2345").stated_e4 == 1_2345
    assert order(1, "a", "2024-03-01T10:00:00Z", amount="1.23450").stated_e4 == 1_2345  # trailing zero: exact
    for field, body in [("amount", {"amount": "1.23456"}), ("unit_price", {"quantity": 1, "unit_price": "0.00001"}),
                        ("discount", {"amount": "2", "discount": "0.12345"})]:
        with pytest.raises(ValidationError, match="more than 4 decimals") as err:
            ev(type="order_line", id="x", order_id="O", line=1, **body)
        assert err.value.errors()[0]["loc"][-1] == field
    with pytest.raises(ValidationError, match="more than 4 decimals"):
        ev(type="return", id="r", customer_id="a", timestamp="2024-03-01T10:00:00Z", amount="3.00001")
    # an event already in a log (written before the rule) still replays
    from ltvcast.serve.events import parse_event

    logged = '{"type":"order","id":"o","order_id":"O","customer_id":"a","timestamp":"2024-03-01T10:00:00Z",' \
             '"amount":"1.23456"}'
    assert parse_event(logged).stated_e4 == 1_2346


def test_base_rows_merge_with_online_rows(online):
    online.append([order(1, "a", "2024-03-01T10:00:00Z", amount="10")], TZ)
    day = day_index(date(2024, 3, 1))
    online.replace_base([("a", day, "B1", 5_0000, 0, 1, 1, 0), ("a", day - 10, "B2", 7_0000, 0, 1, 1, 0),
                         ("z", day, "", 1, 0, 1, 1, 0)], "fp1")
    assert online.meta()["base_fingerprint"] == "fp1"
    s = summarize(online.days(["a"])["a"], date(2024, 3, 2), "D")
    assert (s.frequency, s.T, s.monetary_value) == (1.0, 10.0, 15.0)  # the online and base rows of one day merge
    online.replace_base([("z", day, "", 1, 0, 1, 1, 0)], "fp2")
    assert summarize(online.days(["a"])["a"], date(2024, 3, 2), "D").frequency == 0.0
    assert online.snapshot().days == {("a", day, "O1"): (10_0000, 0, 1, 1, 0)}  # the base is not the online state


def test_rebuild_state_in_another_zone(online):
    online.append([order(1, "a", "2024-03-01T23:30:00Z", amount="10")], TZ)
    assert list(online.snapshot().days) == [("a", day_index(date(2024, 3, 2)), "O1")]
    online.rebuild_state("UTC")
    assert list(online.snapshot().days) == [("a", day_index(date(2024, 3, 1)), "O1")]
    assert online.meta()["state_timezone"] == "UTC"


def _refund_shop(seed: int) -> pd.DataFrame:
    """Orders of 1-3 lines with order ids, and refunds naming their own order (full or partial, possibly
    dated before it), another customer's order, or none; customer 'legacy' has no order ids at all."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01 00:00", tz="UTC")
    rows, orders = [], []
    for k in range(160):
        cid = f"c{int(rng.integers(0, 12))}"
        ts = start + pd.Timedelta(minutes=int(rng.integers(0, 80 * 24 * 60)))
        lines = [round(float(rng.gamma(2.0, 10.0)), 2) for _ in range(int(rng.integers(1, 4)))]
        rows += [(cid, ts, a, "sale", f"O{k}") for a in lines]
        orders.append((cid, f"O{k}", ts, sum(lines)))
    for _ in range(90):
        cid, oid, ts, total = orders[int(rng.integers(0, len(orders)))]
        when = (ts + pd.Timedelta(hours=float(rng.uniform(-30, 600)))).floor("s")
        amount = round(total if rng.random() < 0.4 else float(rng.uniform(0.5, total)), 2)
        named = [oid, oid, oid, None, orders[int(rng.integers(0, len(orders)))][1]][int(rng.integers(0, 5))]
        rows.append((cid, when, -amount, "return", named))
    for k in range(12):  # no order ids: refunds on their own day
        ts = start + pd.Timedelta(days=int(rng.integers(0, 80)), hours=12)
        rows.append(("legacy", ts, 20.0, "sale", None))
        rows.append(("legacy", ts + pd.Timedelta(days=int(rng.integers(0, 3))), -float(rng.choice([5, 20])), "return", None))
    tx = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount", "kind", "order_id"])
    return tx.astype({"order_id": "string"}).assign(line=np.arange(len(tx)))  # distinct lines: none is a repeat


def _rows_as_online(tx: pd.DataFrame) -> dict[str, list[DayRow]]:
    """The online state's rows of a frame: sale rows under their order id, refunds under the id they name.

    Rows without an order id are one order per timestamp, as the store's ``h_orders`` groups them."""
    out: dict[str, list[DayRow]] = {}
    first_line = ~tx.duplicated(["customer_id", "order_id"]) | (
        tx["order_id"].isna() & ~tx.duplicated(["customer_id", "order_id", "timestamp", "kind"]))
    for (cid, ts, amount, kind, oid, _), first in zip(tx.itertuples(index=False), first_line):
        e4 = round(abs(amount) * 1e4)
        oid = "" if pd.isna(oid) else oid
        row = (DayRow(local_day(ts.to_pydatetime(), TZ), oid, e4, 0, 1, int(first), 0) if kind == "sale"
               else DayRow(local_day(ts.to_pydatetime(), TZ), oid, 0, e4, 0, 0, 1))
        out.setdefault(cid, []).append(row)
    return out


@pytest.mark.parametrize("basis", ["net", "gross"])
def test_summary_equals_rfm_summary_with_refunds_netted_by_order(basis):
    """Parity of the refund rule (features/sql/README.md, "Refunds") at cutoffs before, among and after the
    refunds: matched (full: a given-back day; partial), unmatched, another customer's order, none."""
    tx = _refund_shop(11)
    rows = _rows_as_online(tx)
    checked = given_back = unmatched = 0
    for cutoff in ("2024-01-15", "2024-02-01", "2024-02-20", "2024-03-10", "2024-04-15"):
        offline = rfm_summary(tx, cutoff, unit="W", timezone=TZ, revenue_basis=basis, allow_future_cutoff=True)
        offline = offline.set_index("customer_id")
        for cid, r_ in rows.items():
            s = summarize(r_, date.fromisoformat(cutoff), "W", basis)
            if cid not in offline.index:
                assert s is None, (cutoff, cid)
                continue
            o = offline.loc[cid]
            for col in ("frequency", "recency", "T", "monetary_value", "total_spend", "unmatched_refund_amount"):
                assert getattr(s, col) == pytest.approx(o[col], rel=1e-12, abs=1e-9), (cutoff, cid, col)
            assert (s.n_transactions, s.unmatched_refunds) == (o["n_transactions"], o["unmatched_refunds"])
            assert (s.first_purchase, s.last_purchase) == (o["first_purchase"], o["last_purchase"])
            unmatched += s.unmatched_refunds
            checked += 1
        gross = rfm_summary(tx, cutoff, unit="W", timezone=TZ, revenue_basis="gross", allow_future_cutoff=True)
        given_back += int(gross["frequency"].sum() - offline["frequency"].sum() + len(gross) - len(offline))
    assert checked > 40 and unmatched > 0  # the cases occur
    assert (given_back > 0) == (basis == "net")  # full refunds remove occasions in the net basis only


def test_sqlite_file_of_the_older_row_shape_is_rebuilt_from_its_log(tmp_path):
    import sqlite3

    from ltvcast.serve.events import event_json

    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE log (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,"
        " body TEXT NOT NULL);"
        "CREATE TABLE days (customer_id TEXT NOT NULL, day INTEGER NOT NULL, sales_e4 INTEGER NOT NULL,"
        " returned_e4 INTEGER NOT NULL, sale_rows INTEGER NOT NULL, orders INTEGER NOT NULL,"
        " PRIMARY KEY (customer_id, day));"
        "CREATE TABLE base_days AS SELECT * FROM days;"
    )
    e = order(1, "a", "2024-03-01T10:00:00Z", amount="10")
    con.execute("INSERT INTO log (event_id, type, body) VALUES (?, ?, ?)", (e.id, e.type, event_json(e)))
    con.execute("INSERT INTO meta VALUES ('state_timezone', ?), ('base_fingerprint', 'old')", (TZ,))
    con.commit()
    con.close()
    store = open_online(path)
    try:
        assert store.snapshot().days == {("a", day_index(date(2024, 3, 1)), "O1"): (10_0000, 0, 1, 1, 0)}
        assert store.meta()["base_fingerprint"] == ""  # the next refresh_base reloads the base
        assert store.meta()["state_version"] == "2"
    finally:
        store.close()


def test_twelve_months_is_365_days_everywhere():
    """One rule: number x unit days, rounded once to whole days (halves up); 12 x 30.4375 = 365.25 -> 365."""
    import pandas as pd

    from ltvcast.timeutil import horizon_window, parse_horizon

    assert parse_horizon("12m") == 365.0 and parse_horizon("12M") == 365.0
    assert parse_horizon("6m") == 183.0  # 182.625
    assert parse_horizon("1m") == 30.0  # 30.4375
    assert parse_horizon("18m") == 548.0  # 547.875
    assert parse_horizon("26w") == 182.0 and parse_horizon("1.5d") == 2.0  # halves up
    assert parse_horizon("12m") == parse_horizon("365d")  # the same horizon, however it is written
    start, end = horizon_window("2024-01-01", parse_horizon("12m"))
    assert (end - start).days == 365 and end == pd.Timestamp("2024-12-31", tz="UTC")  # 2024 is a leap year
