"""`ltvcast sync` in process: the online log into the store exactly once; the base excludes what sync wrote."""

from __future__ import annotations

from datetime import date

import pytest
from serve_kit import TZ, make_store

from ltvcast.errors import DataError
from ltvcast.features import rfm_summary
from ltvcast.serve.events import EVENT_ADAPTER
from ltvcast.serve.online import open_online
from ltvcast.serve.state import summarize
from ltvcast.serve.sync import base_fingerprint, refresh_base, sync
from ltvcast.store import Store


def events(*items):
    return [EVENT_ADAPTER.validate_python(e) for e in items]


@pytest.fixture()
def stores(tmp_path):
    db = make_store(tmp_path, customers=30)
    online = open_online(tmp_path / "shop.online.sqlite")
    with Store.open(db) as store:
        assert refresh_base(store, online)
        assert not refresh_base(store, online)  # unchanged history: not loaded again
    yield db, online
    online.close()


def test_sync_writes_each_event_once_and_the_base_excludes_it(stores):
    db, online = stores
    online.append(events(
        {"type": "order", "id": "e1", "order_id": "N1", "customer_id": "c001", "timestamp": "2024-07-02T21:30:00Z",
         "amount": "40"},
        {"type": "order_line", "id": "e2", "order_id": "N1", "line": 1, "quantity": 2, "unit_price": "7.25"},
        {"type": "return", "id": "e3", "customer_id": "c001", "order_id": "N1", "timestamp": "2024-07-04T10:00:00Z",
         "amount": "3.5"},
        {"type": "browse", "id": "e4", "customer_id": "c001", "timestamp": "2024-07-02T21:00:00Z",
         "event_type": "view"},
    ), TZ)
    with Store.open(db) as store:
        before = base_fingerprint(store)
        first = sync(store, online)
        assert (first.read, first.written) == (4, 4) and first.ingest_id is not None
        again = sync(store, online)
        assert (again.read, again.written, again.ingest_id) == (0, 0, None)
        con = store.connection
        assert con.execute("SELECT amount FROM order_items WHERE order_id = 'N1'").fetchall()[0][0] == 14.5
        assert con.execute("SELECT linked FROM returns WHERE return_id = 'e3'").fetchone()[0] is True
        rows = con.execute("SELECT kind, amount FROM transactions WHERE order_id = 'N1' ORDER BY kind").fetchall()
        assert [(k, float(a)) for k, a in rows] == [("return", -3.5), ("sale", 14.5)]
        assert base_fingerprint(store) == before  # the synced ingest is not batch history
        assert refresh_base(store, online, force=True)
        tx = store.transactions()
    # online = offline after sync, with the base reloaded from the store that now holds the events
    cutoff = date(2024, 7, 10)
    # the online summary answers at any cutoff, so the offline one is asked past the data's end too
    offline = rfm_summary(tx, cutoff, unit="W", timezone=TZ, allow_future_cutoff=True).set_index("customer_id").loc["c001"]
    s = summarize(online.days(["c001"])["c001"], cutoff, "W", "net")
    assert (s.frequency, s.T, s.n_transactions) == (offline["frequency"], offline["T"], offline["n_transactions"])
    assert s.monetary_value == pytest.approx(offline["monetary_value"], rel=1e-12)
    assert s.total_spend == pytest.approx(offline["total_spend"], rel=1e-12)


def test_an_order_id_of_the_store_stops_sync_with_nothing_written(stores):
    db, online = stores
    online.append(events(
        {"type": "order", "id": "x1", "order_id": "B00001", "customer_id": "c001", "timestamp": "2024-07-02T10:00:00Z"},
    ), TZ)
    with Store.open(db) as store:
        n = store.connection.execute("SELECT count(*) FROM transactions").fetchone()[0]
        with pytest.raises(DataError, match="B00001"):
            sync(store, online)
        assert store.connection.execute("SELECT count(*) FROM transactions").fetchone()[0] == n
        assert store.connection.execute("SELECT count(*) FROM ingest_log WHERE kind = 'online'").fetchone()[0] == 0


def test_refunds_net_by_order_online_as_offline_base_and_log_together(stores):
    """The refund rule (features/sql/README.md, "Refunds") across the base and the log: an online refund
    of a batch order, of an unknown order, of another customer's order, and one that arrives before its
    order; the online summaries equal rfm_summary of the store after the sync at every cutoff."""
    db, online = stores
    with Store.open(db, read_only=True) as store:
        base = store.connection.execute(
            "SELECT customer_id, order_id, CAST(gross_amount AS VARCHAR), timestamp FROM orders "
            "WHERE customer_id IN ('c002', 'c006') ORDER BY timestamp"
        ).fetchall()
    c002 = next(b for b in base if b[0] == "c002")
    c006 = next(b for b in base if b[0] == "c006")
    online.append(events(
        # c002: its first batch order refunded in full online -> that day is no occasion any more
        {"type": "return", "id": "f1", "customer_id": "c002", "order_id": c002[1], "timestamp": "2024-07-03T09:00:00Z",
         "amount": c002[2]},
        # c003: a refund of an order nobody knows -> unmatched (total spend only)
        {"type": "return", "id": "f2", "customer_id": "c003", "order_id": "NOPE", "timestamp": "2024-07-03T09:00:00Z",
         "amount": "4.25"},
        # c005: names c006's order -> unmatched for c005
        {"type": "return", "id": "f3", "customer_id": "c005", "order_id": c006[1], "timestamp": "2024-07-03T09:00:00Z",
         "amount": "2"},
        # c004: a partial refund that arrives before its order (matched once the order is known)
        {"type": "return", "id": "f4", "customer_id": "c004", "order_id": "N4", "timestamp": "2024-07-05T09:00:00Z",
         "amount": "15"},
        {"type": "order", "id": "f5", "order_id": "N4", "customer_id": "c004", "timestamp": "2024-07-02T21:30:00Z",
         "amount": "40"},
        # n1: a new customer whose only order is refunded in full the next day -> cold start
        {"type": "order", "id": "f6", "order_id": "N5", "customer_id": "n1", "timestamp": "2024-07-02T10:00:00Z",
         "amount": "25"},
        {"type": "return", "id": "f7", "customer_id": "n1", "order_id": "N5", "timestamp": "2024-07-03T10:00:00Z",
         "amount": "25"},
    ), TZ)
    ids = ["c002", "c003", "c004", "c005", "n1"]
    before = {c: summarize(online.days([c]).get(c, ()), date(2024, 7, 10), "D", "net") for c in ids}
    with Store.open(db) as store:
        assert sync(store, online).written == 7
        tx = store.transactions()
    assert online.days(["c002", "c003", "c004", "c005", "n1"]).keys() == set(ids)
    for cutoff in (date(2024, 7, 3), date(2024, 7, 4), date(2024, 7, 6), date(2024, 8, 1)):
        offline = rfm_summary(tx, cutoff, unit="D", timezone=TZ, allow_future_cutoff=True).set_index("customer_id")
        for cid in ids:
            s = summarize(online.days([cid])[cid], cutoff, "D", "net")
            if cid not in offline.index:
                assert s is None, (cutoff, cid)
                continue
            o = offline.loc[cid]
            for col in ("frequency", "recency", "T", "monetary_value", "total_spend", "unmatched_refund_amount"):
                assert getattr(s, col) == pytest.approx(o[col], rel=1e-12, abs=1e-9), (cutoff, cid, col)
            assert (s.n_transactions, s.unmatched_refunds) == (o["n_transactions"], o["unmatched_refunds"])
    assert before["n1"] is None  # N5 refunded in full
    assert (before["c003"].unmatched_refunds, before["c003"].unmatched_refund_amount) == (1, 4.25)
    assert (before["c005"].unmatched_refunds, before["c005"].unmatched_refund_amount) == (1, 2.0)
    # c002 lost the occasion of its first order (or its whole day): fewer occasions than the gross basis has
    gross = summarize(online.days(["c002"])["c002"], date(2024, 7, 10), "D", "gross")
    assert before["c002"] is None or before["c002"].frequency < gross.frequency
