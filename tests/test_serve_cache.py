"""The cached rows of learned models online (issue 12): a request reads a current row without the mirror's lock.

:class:`~ltvcast.serve.mirror.RowCache` on hand-made rows; :meth:`Mirror.cached` / :meth:`Mirror.rows` with a
``make`` whose truth is a count and a sum of each customer's transactions (stale after an event, rebuilt,
never waiting for a build that holds the mirror's lock, the least recently read table dropped); and the app:
a single learned prediction is answered from the cache (``Server-Timing`` without a ``model`` stage) with the
numbers of the offline ``predict``, and an event makes the customer's next answer a fresh build.
"""

from __future__ import annotations

import math
import threading
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest
from serve_kit import CUTOFF, TZ, event_stream, make_store

from ltvcast.data.datasets import open_history
from ltvcast.models.learned.gbm import GBMForecaster
from ltvcast.serve.events import EVENT_ADAPTER
from ltvcast.serve.mirror import CACHE_SLOTS, Mirror, RowCache
from ltvcast.serve.online import open_online

DAY = date(2024, 8, 1)


def _frame(ids, x, y) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ids, "x": np.asarray(x, float), "y": np.asarray(y, float)})


def test_row_cache_fill_mark_put_get():
    cache = RowCache()
    assert cache.get(["a"]) is None and cache.frame is None and not cache.built
    cache.put(_frame(["a"], [1], [2]), ["a"])  # before the first build: nothing is stored
    assert cache.frame is None

    cache.fill(_frame(["a", "b"], [1.0, 2.0], [10.0, math.nan]))
    assert cache.built and cache.columns == ["x", "y"]
    got = cache.get(["a", "b", "zz"])
    assert got["a"] == [1.0, 10.0] and got["b"][0] == 2.0 and math.isnan(got["b"][1]) and "zz" not in got

    cache.mark(["b"])
    assert cache.get(["a"]) == {"a": [1.0, 10.0]}
    assert cache.get(["a", "b"]) is None  # one stale customer: not answered from the cache

    # b replaced, c added, a has no row any more (e.g. its only purchase returned)
    cache.put(_frame(["b", "c"], [20.0, 30.0], [21.0, 31.0]), ["a", "b", "c"])
    assert not cache.stale
    assert cache.get(["a", "b", "c"]) == {"b": [20.0, 21.0], "c": [30.0, 31.0]}

    # more new customers than the matrix has room for: it grows, the old rows stay
    many = [f"n{i}" for i in range(300)]
    cache.put(_frame(many, np.arange(300), -np.arange(300)), many)
    got = cache.get(["b", "c", *many])
    assert len(got) == 302 and got["n299"] == [299.0, -299.0] and got["c"] == [30.0, 31.0]
    frame = cache.frame
    assert len(frame) == 302 and frame.loc["n7"].tolist() == [7.0, -7.0] and list(frame.columns) == ["x", "y"]

    empty = RowCache()
    empty.fill(None)  # no customer had a row at the first build
    assert empty.get(["a"]) == {}
    empty.mark(["a", "b"])
    empty.put(_frame(["a"], [5.0], [6.0]), ["a"])
    assert empty.columns == ["x", "y"] and empty.get(["a"]) == {"a": [5.0, 6.0]}
    assert empty.get(["b"]) is None  # still stale: its row was not made


def _count_and_sum(history) -> pd.DataFrame | None:
    """A row per customer with a transaction before DAY: their number and their amounts' sum (the truth)."""
    tx = history.transactions
    tx = tx[tx["timestamp"] < pd.Timestamp(DAY, tz="UTC")]
    if tx.empty:
        return None
    out = tx.groupby("customer_id")["amount"].agg(["size", "sum"]).reset_index()
    return out.rename(columns={"size": "n", "sum": "total"})


@pytest.fixture()
def mirror(tmp_path):
    db = make_store(tmp_path, customers=40, seed=11)
    online = open_online(tmp_path / "shop.online.sqlite")
    mirror = Mirror(db, online)
    mirror.load()
    yield mirror, online
    mirror.close()
    online.close()


def _truth(mirror: Mirror, ids) -> dict[str, list[float]]:
    with mirror.history(ids, DAY) as history:
        frame = _count_and_sum(history)
    return {r.customer_id: [float(r.n), float(r.total)] for r in frame.itertuples()}


def test_mirror_rows_are_cached_current_and_read_without_the_mirror_lock(mirror):
    mirror, online = mirror
    ids = ["c001", "c002", "c003", "nobody"]
    assert mirror.cached("k", ids) is None  # not asked for yet
    rows = mirror.rows("k", _count_and_sum, ids, DAY)  # no watcher thread: the whole table is built in this call
    assert rows == _truth(mirror, ids) and "nobody" not in rows and len(rows) == 3
    assert mirror.cached("k", ids) == rows
    assert len(mirror._inputs["k"].frame) >= 35  # every customer's row

    order = {"type": "order", "id": "e1", "order_id": "O-new", "customer_id": "c002",
             "timestamp": "2024-07-15T10:00:00Z", "amount": "40.5"}
    mirror.append(online.append([EVENT_ADAPTER.validate_python(order)], TZ).events)
    assert mirror.cached("k", ["c002"]) is None and mirror.cached("k", ["c001"]) == {"c001": rows["c001"]}
    # the watcher rebuilds stale rows when its duty cycle allows, or at once when no batch came for an interval
    mirror._next_refresh = mirror._last_append + 100.0
    assert not mirror.refresh_due(mirror._last_append + 0.5, 1.0)
    assert mirror.refresh_due(mirror._last_append + 1.0, 1.0) and mirror.refresh_due(mirror._next_refresh, 60.0)
    after = mirror.rows("k", _count_and_sum, ["c002"], DAY)
    assert after == _truth(mirror, ["c002"])
    assert after["c002"][0] == rows["c002"][0] + 1 and after["c002"][1] == pytest.approx(rows["c002"][1] + 40.5)
    assert mirror.cached("k", ids) == {**rows, **after}

    # a build (or an event batch) holds the mirror's lock: a lookup does not wait for it
    found = {}
    with mirror._lock:
        reader = threading.Thread(target=lambda: found.update(mirror.cached("k", ["c003"])))
        reader.start()
        reader.join(timeout=10)
        assert not reader.is_alive()
    assert found == {"c003": rows["c003"]}

    # the least recently read table goes first
    mirror.rows("k2", _count_and_sum, ["c001"], DAY)
    assert mirror.cached("k", ["c001"]) is not None  # "k" read after "k2" was built
    for key in range(CACHE_SLOTS - 1):
        mirror.rows(("more", key), _count_and_sum, ["c001"], DAY)
    assert "k" in mirror._inputs and "k2" not in mirror._inputs and len(mirror._inputs) == CACHE_SLOTS


def test_app_answers_learned_predictions_from_the_cache_with_offline_numbers(tmp_path):
    from fastapi.testclient import TestClient

    from ltvcast.serve.app import Service, create_app
    from ltvcast.serve.model import Served
    from ltvcast.serve.sync import ShopSettings

    db = make_store(tmp_path, customers=60, seed=4)
    history = open_history(db=db)
    try:
        model = GBMForecaster(n_windows=2, stride_days=56, max_rounds=10, early_stopping_rounds=3,
                              min_data_in_leaf=10, n_jobs=1).fit(history, CUTOFF, 182.0)
        offline = model.predict(history, DAY, 182.0).set_index("customer_id")
    finally:
        history.store.close()
    online = open_online(tmp_path / "shop.online.sqlite")
    mirror = Mirror(db, online)
    mirror.load()
    served = Served("ltv", 1, model, 182.0)
    holder = type("Holder", (), {"current": served, "reload_failures": 0, "on_change": None,
                                 "stop": lambda self: None})()
    service = Service(online=online, models=holder, settings=ShopSettings(TZ, "net", "EUR"), keys=None,
                      mirror=mirror)
    cid = str(offline.index[0])
    url = f"/v1/customers/{cid}/prediction?cutoff={DAY}&horizon=182d"

    def stages(response) -> set[str]:
        return {part.split(";")[0].strip() for part in response.headers["server-timing"].split(",")}

    try:
        with TestClient(create_app(service)) as client:
            first = client.get(url)
            assert first.status_code == 200 and stages(first) == {"inputs", "cache", "model", "total"}
            second = client.get(url)  # the table was built by the first request: a lookup
            assert stages(second) == {"inputs", "cache", "total"} and second.json() == first.json()
            many = client.post("/v1/predict", json={"customer_ids": list(offline.index), "cutoff": str(DAY),
                                                    "horizon": "182d"}).json()["predictions"]
            for row in many:  # the batch path's numbers, exactly
                expected = offline.loc[row["customer_id"]]
                for col in ("pred_transactions", "pred_spend", "p_churn", "pred_spend_p50", "pred_next_purchase_days"):
                    assert row[col] == float(expected[col]), (row["customer_id"], col)
                assert row["p_alive"] is None and not row["cold_start"]
            assert next(r for r in many if r["customer_id"] == cid) == second.json()

            events = event_stream(np.random.default_rng(3), [cid], 4, datetime(2024, 7, 2), 20)
            assert client.post("/v1/events", json={"events": events}).status_code == 200
            third = client.get(url)  # stale: built again for this request
            assert "model" in stages(third) and third.json()["pred_spend"] != second.json()["pred_spend"]
            with mirror.history([cid], DAY) as h:
                fresh = model.predict_inputs(model.inputs(h, DAY, 182.0), DAY, 182.0).set_index("customer_id")
            assert third.json()["pred_spend"] == float(fresh.loc[cid, "pred_spend"])
            assert "model" not in stages(client.get(url))
    finally:
        mirror.close()
        online.close()
