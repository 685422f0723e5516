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
    offline = rfm_summary(tx, cutoff, unit="W", timezone=TZ).set_index("customer_id").loc["c001"]
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
