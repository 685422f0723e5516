"""Learned models served online (``gbm``): features from the store's in-memory mirror, parity with offline.

A small gbm is registered and served (``ltvcast serve`` as a subprocess); a stream of simulated orders, lines,
returns and browse events of known and new customers goes through ``POST /v1/events``; then ``ltvcast sync``.
The model's inputs built from the mirror (three ways: appended batch by batch as the server does, loaded after
the stream by replaying the log, loaded after the sync from the store) equal the offline inputs of
``model.inputs(open_history(db=...))`` to 1e-9 relative, and the served predictions equal ``model.predict`` to
1e-6. Also: the sync's scoped rebuild of the derived tables equals a full rebuild; hybrid-like models are
refused with the reason; a promotion from a BTYD model to gbm loads the mirror.
"""

from __future__ import annotations

import copy
import shutil
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from serve_kit import CUTOFF, TZ, Server, event_stream, make_store, register, run_cli, write_keys

from ltvcast.data.datasets import open_history
from ltvcast.errors import LtvcastError
from ltvcast.features.build import CustomerSubset, build
from ltvcast.models.learned.auto import AutoForecaster
from ltvcast.models.learned.gbm import GBMForecaster
from ltvcast.registry import RegisteredModel, promote, save_model
from ltvcast.serve.events import EVENT_ADAPTER
from ltvcast.serve.mirror import Mirror
from ltvcast.serve.model import ModelHolder, Served, population_inputs, predict_learned, servable
from ltvcast.serve.online import open_online
from ltvcast.store import Store

SMALL = dict(n_windows=3, stride_days=56, max_rounds=15, early_stopping_rounds=5, min_data_in_leaf=20, n_jobs=1)
H = 182.0
CUTOFFS = ("2024-07-20", "2024-08-01")
PREDICTED = ("pred_transactions", "pred_spend", "p_churn", "p_alive", "pred_spend_p10", "pred_spend_p50",
             "pred_spend_p90", "pred_next_purchase_days")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("learned")
    db = make_store(folder)
    root = folder / "models"
    history = open_history(db=db)
    try:
        model = GBMForecaster(**SMALL).fit(history, CUTOFF, H)
        save_model(model, name="ltv", cutoff=CUTOFF, horizon_days=H, history=history, root=root)
    finally:
        history.store.close()
    server = Server(["--db", str(db), "--model", "ltv", "--registry", str(root), "--keys", str(write_keys(folder)),
                     "--watch-interval", "0.2"], folder)
    yield {"folder": folder, "db": db, "root": root, "server": server, "model": model}
    server.stop()


def _inputs(model, mirror: Mirror, ids, cutoff) -> pd.DataFrame:
    with mirror.history(ids, cutoff) as history:
        return model.inputs(history, cutoff, H).set_index("customer_id")


def _same_inputs(online: pd.DataFrame, offline: pd.DataFrame, what: str) -> None:
    assert list(online.columns) == list(offline.columns)
    a, b = online.to_numpy(float), offline.loc[online.index].to_numpy(float)
    assert np.array_equal(np.isnan(a), np.isnan(b)), what
    ok = np.isnan(a) | (np.abs(a - b) <= 1e-9 * np.maximum(np.abs(a), np.abs(b)) + 1e-12)
    assert ok.all(), (what, online.columns[~ok.all(axis=0)].tolist())


def _close(a, b, rel):
    if a is None or b is None or np.isnan(b):
        return (a is None or np.isnan(a)) and (b is None or np.isnan(b))
    return abs(a - b) <= rel * max(abs(a), abs(b)) + 1e-12


def test_online_inputs_and_predictions_equal_offline(env):
    _stream_and_check(env)


def _stream_and_check(env) -> None:
    """The parity check; it leaves the store holding synced online events. Once per module fixture: the
    tests that read those events call it too, so they hold when pytest-xdist runs them on another worker."""
    if env.get("streamed"):
        return
    env["streamed"] = True
    server, db, folder, model = env["server"], env["db"], env["folder"], env["model"]
    assert server.client.get("/readyz").json() == {"status": "ready", "model": "ltv:1", "kind": "gbm"}
    side = open_online(db.with_name("shop.online.sqlite"))  # the server's online store (SQLite, WAL)
    appended = Mirror(db, side)
    appended.load()  # before the stream: the store alone
    rng = np.random.default_rng(5)
    known = [f"c{i:03d}" for i in range(150)]
    new = [f"n{i}" for i in range(15)]
    events = event_stream(rng, known[:40] + new, 140, datetime(2024, 7, 1), 30)
    for i in range(0, len(events), 40):
        chunk = events[i:i + 40]
        r = server.client.post("/v1/events", json={"events": chunk})
        assert r.status_code == 200, r.text
        appended.append([EVENT_ADAPTER.validate_python(e) for e in chunk])  # as the server does (repeats skipped)
    browse_only = {"type": "browse", "id": "only-browse", "customer_id": "b1", "timestamp": "2024-07-10T09:00:00Z",
                   "event_type": "view", "session_id": "s-b1"}
    assert server.client.post("/v1/events", json={"events": [browse_only]}).json()["applied"] == 1
    appended.append([EVENT_ADAPTER.validate_python(browse_only)])
    replayed = Mirror(db, side)
    replayed.load()  # the store plus the whole log, replayed

    ids = known[:45] + new + ["b1", "never-seen"]
    preds = {}
    for cutoff in CUTOFFS:
        r = server.client.post("/v1/predict", json={"customer_ids": ids, "cutoff": cutoff, "horizon": "26w"})
        assert r.status_code == 200 and r.headers["x-ltvcast-model"] == "ltv:1", r.text
        preds[cutoff] = {p["customer_id"]: p for p in r.json()["predictions"]}
    single = server.client.get("/v1/customers/n3/prediction", params={"cutoff": CUTOFFS[1], "horizon": "26w"})
    assert single.json() == preds[CUTOFFS[1]]["n3"]  # one customer or many: the same numbers
    online = {c: (_inputs(model, appended, ids, c), _inputs(model, replayed, ids, c)) for c in CUTOFFS}

    result = run_cli("sync", "--db", str(db), cwd=folder)
    assert result.returncode == 0, result.stderr
    synced = Mirror(db, side)
    synced.load()  # the store, which now holds the events
    history = open_history(db=db)
    try:
        for cutoff in CUTOFFS:
            offline = model.inputs(history, cutoff, H).set_index("customer_id")
            expected = model.predict(history, cutoff, H).set_index("customer_id")
            for what, frame in zip(("appended", "replayed", "synced"), (*online[cutoff], _inputs(model, synced, ids, cutoff))):
                assert sorted(frame.index) == sorted(offline.index.intersection(ids)), what
                _same_inputs(frame, offline, f"{what} at {cutoff}")
            assert len(online[cutoff][0]) >= 50 and online[cutoff][0]["views"].max() > 0  # the browse events count
            for cid in ids:
                p = preds[cutoff][cid]
                assert p["model"] == "gbm" and p["model_version"] == 1 and p["horizon_days"] == H
                if cid not in expected.index:
                    assert cid in ("b1", "never-seen") or cid.startswith("n"), cid
                    assert p["cold_start"] and all(p[c] is None for c in PREDICTED)
                    continue
                assert not p["cold_start"]
                for col in PREDICTED:
                    assert _close(p[col], float(expected.loc[cid, col]), 1e-6), (cutoff, cid, col)
    finally:
        history.store.close()
        for m in (appended, replayed, synced):
            m.close()
        side.close()


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)


def test_sync_rebuilds_only_touched_customers_as_a_full_rebuild_would(env, tmp_path):
    _stream_and_check(env)  # the store holds synced online events (orders, lines, returns, browse)
    copy_db = tmp_path / "copy.duckdb"
    shutil.copy(env["db"], copy_db)
    with Store.open(copy_db) as store:
        assert store.connection.execute("SELECT count(*) FROM ingest_log WHERE kind = 'online'").fetchone()[0] >= 1
        tx, orders = store.transactions(), store.table("orders")
        with store.transaction():
            store.rebuild_derived()
        # the same rows (a sale and a return of one order at one time tie in the rebuild's ORDER BY)
        for before, after in ((tx, store.transactions()), (orders, store.table("orders"))):
            pd.testing.assert_frame_equal(_sorted(after), _sorted(before))


def test_subset_features_equal_the_whole_store(env):
    _stream_and_check(env)  # n2 is a customer of the stream
    ids = ("c001", "c017", "n2", "nobody")
    with Store.open(env["db"], read_only=True) as store:
        full = build(store, "2024-08-01")
        part = build(CustomerSubset(store, ids), "2024-08-01")
    rows = full.customers["customer_id"].isin(ids).to_numpy()
    pd.testing.assert_frame_equal(part.customers, full.customers[rows].reset_index(drop=True))
    assert np.array_equal(part.sequences, full.sequences[rows]) and part.sequences.shape[0] == 3


def test_models_that_need_the_whole_population_are_refused(env):
    gbm = env["model"]
    hybrid = copy.copy(gbm)
    hybrid.name, hybrid.btyd_features = "hybrid", True
    auto = AutoForecaster()
    auto.learned_ = {"gbm": gbm}
    assert not population_inputs(gbm) and not population_inputs(auto)
    auto.learned_["hybrid"] = hybrid
    assert population_inputs(hybrid) and population_inputs(auto)

    def registered(forecaster):
        return RegisteredModel("m", 3, env["root"], {"horizon_days": H}, forecaster)

    assert servable(registered(gbm)).learned
    for forecaster in (hybrid, auto):
        with pytest.raises(LtvcastError, match=r"^model m:3 is a '(hybrid|auto)' model: its inputs include BTYD "
                                               "models fitted on every customer"):
            servable(registered(forecaster))
    # the CLI refuses to start with the reason on one line (exit 2)
    history = open_history(db=env["db"])
    try:
        save_model(hybrid, name="hyb", cutoff=CUTOFF, horizon_days=H, history=history, root=env["root"])
    finally:
        history.store.close()
    result = run_cli("serve", "--db", str(env["db"]), "--model", "hyb", "--registry", str(env["root"]), "--no-auth",
                     "--online", str(env["folder"] / "other.online.sqlite"), cwd=env["folder"])
    assert result.returncode == 2
    assert "cannot be computed for one customer online" in result.stderr and result.stderr.count("\n") == 1


def test_promotion_from_btyd_to_gbm_loads_the_mirror(env, tmp_path):
    db = make_store(tmp_path, customers=60, seed=3)
    root = tmp_path / "models"
    register(db, root, "clv", "naive", n_draws=0)
    online = open_online(tmp_path / "shop.online.sqlite")
    mirror = Mirror(db, online)
    order = {"type": "order", "id": "p1", "order_id": "P1", "customer_id": "c001", "timestamp": "2024-07-02T10:00Z",
             "amount": "25"}
    batch = [EVENT_ADAPTER.validate_python(order)]
    mirror.append(online.append(batch, TZ).events)  # not loaded: nothing is written (the load replays the log)
    assert not mirror.loaded

    def prepare(served):
        if served.learned and not mirror.loaded:
            mirror.load()

    holder = ModelHolder("clv", root, prepare=prepare)
    try:
        assert not holder.current.learned and not mirror.loaded
        history = open_history(db=db)
        try:  # the gbm of the other store: same features, and this test is about loading, not accuracy
            save_model(env["model"], name="clv", cutoff=CUTOFF, horizon_days=H, history=history, root=root)
        finally:
            history.store.close()
        promote("clv:2", root)
        assert holder.poll() and holder.current.learned and mirror.loaded
        rows = predict_learned(holder.current, mirror, ["c001", "zz"], pd.Timestamp("2024-07-10").date(), H)
        assert [r["cold_start"] for r in rows] == [False, True] and rows[0]["model_version"] == 2
        with mirror.history(["c001"], "2024-07-10") as h:
            assert "P1" in set(h.transactions["order_id"])  # the event acknowledged before the load
        # a changed base fingerprint (a new batch history, after `ltvcast sync`) reloads the mirror
        assert not mirror.poll()
        online.set_meta({"base_fingerprint": "changed"})
        assert mirror.poll()
        assert predict_learned(holder.current, mirror, ["c001"], pd.Timestamp("2024-07-10").date(), H)[0] == rows[0]
    finally:
        holder.stop()
        mirror.close()
        online.close()



def _prefixed(events: list[dict], prefix: str) -> list[dict]:
    return [{**e, "id": prefix + e["id"], **({"order_id": prefix + e["order_id"]} if "order_id" in e else {})}
            for e in events]


def test_cached_inputs_stay_equal_to_a_fresh_build_as_events_arrive(env, tmp_path):
    """The mirror's table of every customer's inputs: customers touched by events are rebuilt (on request, or
    together by ``refresh``), untouched rows are kept, and every served row equals the subset build's."""
    db = make_store(tmp_path, customers=60, seed=4)
    online = open_online(tmp_path / "shop.online.sqlite")
    mirror = Mirror(db, online)
    mirror.load()
    served, model = Served("ltv", 1, env["model"], H), env["model"]
    day, ids = pd.Timestamp("2024-08-01").date(), ["c001", "c002", "c003", "c004", "n1", "zz"]

    def fresh(who):
        with mirror.history(who, day) as h:
            frame = model.predict_inputs(model.inputs(h, day, H), day, H).set_index("customer_id")
        return {c: float(frame.loc[c, "pred_spend"]) if c in frame.index else None for c in who}

    def served_now():
        return {r["customer_id"]: r["pred_spend"] for r in predict_learned(served, mirror, ids, day, H)}

    def send(events):
        mirror.append(online.append([EVENT_ADAPTER.validate_python(e) for e in events], TZ).events)

    try:
        before = served_now()  # builds the table of every customer (no refresh thread: in this call)
        assert before == fresh(ids) and before["zz"] is None and before["n1"] is None
        cache = next(iter(mirror._inputs.values()))
        assert cache.frame is not None and len(cache.frame) >= 55 and not cache.stale
        send(_prefixed(event_stream(np.random.default_rng(1), ["c001", "n1"], 12, datetime(2024, 7, 1), 25), "a"))
        assert cache.stale == {"c001", "n1"}
        after = served_now()  # the stale rows are built for this request and stored
        assert after == fresh(ids) and after["n1"] is not None and after["c001"] != before["c001"]
        assert after["c003"] == before["c003"] and not cache.stale
        send(_prefixed(event_stream(np.random.default_rng(2), ["c003"], 6, datetime(2024, 7, 2), 20), "b"))
        assert cache.stale == {"c003"}
        mirror.refresh()  # what the watcher thread does after each batch
        assert not cache.stale and served_now() == fresh(ids)
    finally:
        mirror.close()
        online.close()
