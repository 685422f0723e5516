"""The service over HTTP (``ltvcast serve`` started as a subprocess on a free loopback port).

Parity: a stream of simulated events goes through ``POST /v1/events``; ``ltvcast sync`` writes the log to the
store; the offline RFM summary and the offline model's predictions at the same cutoffs equal the online
ones (1e-9 relative for features, 1e-6 for predictions). Then auth, validation, errors, metrics and a
promotion while requests are in flight.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from datetime import datetime

import httpx
import numpy as np
import pandas as pd
import pytest
import redis
from serve_kit import KEYS, TZ, Server, event_stream, make_store, register, run_cli, write_keys
from typer.testing import CliRunner

from ltvcast.cli import app
from ltvcast.data.datasets import open_history
from ltvcast.features import rfm_summary
from ltvcast.registry import load_model, promote
from ltvcast.serve.auth import KeyRing, hash_key
from ltvcast.serve.model import summary_frame
from ltvcast.serve.online import open_online
from ltvcast.serve.sync import refresh_base
from ltvcast.store import Store

MAX_BODY = 400_000
FEATURES = ("frequency", "recency", "T", "monetary_value", "total_spend")
PREDICTED = ("pred_transactions", "pred_spend", "p_churn", "p_alive", "pred_spend_p10", "pred_spend_p50",
             "pred_spend_p90", "pred_next_purchase_days")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    db = make_store(folder)
    root = folder / "models"
    register(db, root, "clv", "bgnbd")
    promote("clv:1", root)
    keys = write_keys(folder)
    server = Server(["--db", str(db), "--model", "clv", "--registry", str(root), "--keys", str(keys),
                     "--max-body", str(MAX_BODY), "--watch-interval", "0.2"], folder)
    yield {"folder": folder, "db": db, "root": root, "server": server}
    server.stop()


def _close(a, b, rel):
    if a is None or b is None or (isinstance(b, float) and np.isnan(b)):
        return (a is None or np.isnan(a)) and (b is None or np.isnan(b))
    return abs(a - b) <= rel * max(abs(a), abs(b)) + 1e-12


def test_online_features_and_predictions_equal_offline(env):
    server, db, folder = env["server"], env["db"], env["folder"]
    rng = np.random.default_rng(11)
    known = [f"c{i:03d}" for i in range(150)]
    new = [f"n{i}" for i in range(15)]
    events = event_stream(rng, known[:40] + new, 140, datetime(2024, 7, 1), 30)
    applied = 0
    for i in range(0, len(events), 40):
        r = server.client.post("/v1/events", json={"events": events[i:i + 40]})
        assert r.status_code == 200, r.text
        applied += r.json()["applied"]
    assert applied == len({e["id"] for e in events})

    ids = known[:45] + new + ["never-seen"]
    online = {}
    for cutoff in ("2024-07-20", "2024-08-01"):
        online[cutoff] = {c: server.client.get(f"/v1/customers/{c}/summary", params={"cutoff": cutoff}).json()
                          for c in ids}
    preds = {}
    for cutoff in ("2024-07-20", "2024-08-01"):
        r = server.client.post("/v1/predict", json={"customer_ids": ids, "cutoff": cutoff, "horizon": "26w"})
        assert r.status_code == 200 and r.headers["x-ltvcast-model"] == "clv:1"
        preds[cutoff] = {p["customer_id"]: p for p in r.json()["predictions"]}
    single = server.client.get("/v1/customers/n3/prediction", params={"cutoff": "2024-08-01", "horizon": "26w"})
    assert single.json() == preds["2024-08-01"]["n3"]  # one customer or many: the same numbers

    side = open_online(db.with_name("shop.online.sqlite"))  # the service's log (other tests may add to it)
    logged = [e.body for e in side.iter_log()]
    side.close()
    with Store.open(db, read_only=True) as store:
        synced = store.connection.execute("SELECT count(*) FROM ingest_keys WHERE kind = 'online'").fetchone()[0]
    result = run_cli("sync", "--db", str(db), cwd=folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{len(logged) - synced} new event(s)")

    history = open_history(db=db)
    try:
        model = load_model("clv", env["root"]).forecaster
        for cutoff, summaries in online.items():
            # the service answers at any cutoff, so the offline summary is asked past the data's end too
            offline = rfm_summary(history.transactions, cutoff, unit="W", timezone=TZ, allow_future_cutoff=True)
            offline = offline.set_index("customer_id")
            assert summaries["never-seen"]["cold_start"] is True
            compared = 0
            for cid, s in summaries.items():
                if cid not in offline.index:
                    assert s["cold_start"], cid  # no purchase before the cutoff online either
                    continue
                compared += 1
                o = offline.loc[cid]
                for col in FEATURES:
                    assert _close(s[col], float(o[col]), 1e-9), (cutoff, cid, col, s[col], o[col])
                assert s["n_transactions"] == o["n_transactions"]
                assert s["first_purchase"] == o["first_purchase"].isoformat()
            assert compared >= 50
            expected = model.predict(history, cutoff, 182.0).set_index("customer_id")
            for cid, p in preds[cutoff].items():
                if cid not in expected.index:
                    assert p["cold_start"]
                    cold = model.predict_inputs(summary_frame([cid], [None]), cutoff, 182.0).iloc[0]
                    assert all(_close(p[c], float(cold[c]), 1e-12) for c in PREDICTED)
                    continue
                assert not p["cold_start"] and p["model_version"] == 1
                for col in PREDICTED:
                    assert _close(p[col], float(expected.loc[cid, col]), 1e-6), (cutoff, cid, col)
    finally:
        history.store.close()

    # sync again (and resend events): nothing is written twice
    again = server.client.post("/v1/events", json={"events": events[:100]}).json()
    assert again["applied"] == 0 and len(again["duplicates"]) == 100
    assert run_cli("sync", "--db", str(db), cwd=folder).stdout.startswith("0 new event(s)")
    with Store.open(db, read_only=True) as store:
        con = store.connection
        n_keys = con.execute("SELECT count(*) FROM ingest_keys WHERE kind = 'online'").fetchone()[0]
        assert n_keys == len(logged)  # every logged event once
        browse = sum(1 for body in logged if json.loads(body)["type"] == "browse")
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == browse > 0
    # reloading the base from the store (which now holds the synced events) does not count them twice
    with Store.open(db, read_only=True) as store:
        side = open_online(db.with_name("shop.online.sqlite"))
        try:
            assert refresh_base(store, side, force=True)
        finally:
            side.close()
    for cid in ids[:20] + new:
        now = server.client.get(f"/v1/customers/{cid}/summary", params={"cutoff": "2024-08-01"}).json()
        assert now == online["2024-08-01"][cid]


def _error(r, status, code):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    assert "Traceback" not in r.text
    return body["error"]


def test_auth_scopes(env):
    url = env["server"].url
    order = {"type": "order", "id": "auth-1", "order_id": "A1", "customer_id": "x", "timestamp": "2024-07-01T10:00Z"}
    _error(httpx.post(url + "/v1/events", json={"events": [order]}), 401, "unauthorized")
    _error(httpx.post(url + "/v1/events", json={"events": [order]}, headers={"X-API-Key": "nope"}), 401,
           "unauthorized")
    reader = {"Authorization": f"Bearer {KEYS['reader']}"}
    writer = {"X-API-Key": KEYS["writer"]}
    _error(httpx.post(url + "/v1/events", json={"events": [order]}, headers=reader), 403, "forbidden")
    _error(httpx.get(url + "/v1/customers/x/prediction", headers=writer), 403, "forbidden")
    _error(httpx.get(url + "/v1/customers/x/prediction"), 401, "unauthorized")
    assert httpx.post(url + "/v1/events", json={"events": [order]}, headers=writer).json()["applied"] == 1
    r = httpx.get(url + "/v1/customers/x/prediction", headers=reader)
    assert r.status_code == 200 and r.json()["cold_start"] is False  # the order before tomorrow counts
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}


def test_validation_and_errors(env):
    c = env["server"].client
    ok = {"type": "order", "id": "v-1", "order_id": "V1", "customer_id": "x", "timestamp": "2024-07-01T10:00:00Z"}
    bad_return = {"type": "return", "id": "v-3", "customer_id": "x", "timestamp": "2024-07-02T10:00:00Z"}
    e = _error(c.post("/v1/events", json={"events": [ok, ok | {"id": "v-2", "order_id": "V2"}, bad_return]}), 422,
               "validation_error")
    assert e["message"].startswith("events[2].amount: Field required")
    assert c.post("/v1/events", json={"events": [ok]}).json()["applied"] == 1  # v-1 was not applied before
    e = _error(c.post("/v1/events", json={"events": [ok | {"id": "v-9", "amount": "-3"}]}), 422, "validation_error")
    assert e["message"].startswith("events[0].amount")
    e = _error(c.post("/v1/events", json={"events": [{"type": "refund", "id": "q"}]}), 422, "validation_error")
    assert e["message"].startswith("events[0]")
    e = _error(c.post("/v1/events", json={"events": [ok | {"id": "v-8", "colour": "red"}]}), 422,
               "validation_error")
    assert e["message"].startswith("events[0].colour")
    e = _error(c.post("/v1/events", json={"events": [ok | {"id": "v-7", "timestamp": "1899-12-31T00:00:00Z"}]}),
               422, "validation_error")
    assert e["message"].startswith("events[0].timestamp")
    e = _error(c.post("/v1/events", json={"events": [ok | {"id": "v-6", "order_id": "V6", "currency": "USD"}]}),
               422, "validation_error")
    assert e["message"].startswith("events[0].currency: USD is not the shop currency EUR")
    line = {"type": "order_line", "id": "l", "order_id": "V1", "line": 1, "quantity": 2}
    e = _error(c.post("/v1/events", json={"events": [line]}), 422, "validation_error")
    assert "events[0]" in e["message"] and "unit_price" in e["message"]
    many = [ok | {"id": f"m{i}", "order_id": f"M{i}"} for i in range(1001)]
    e = _error(c.post("/v1/events", json={"events": many}), 422, "validation_error")
    assert e["message"].startswith("events: List should have at most 1000 items")
    clash = ok | {"id": "v-other"}
    e = _error(c.post("/v1/events", json={"events": [ok | {"id": "v-5", "order_id": "V5"}, clash]}), 409,
               "conflict")
    assert e["index"] == 1 and "'V1'" in e["message"]
    big = json.dumps({"events": [ok | {"id": "x" * 200, "channel": "y" * 250}] * 900})
    assert len(big) > MAX_BODY
    _error(c.post("/v1/events", content=big, headers={"content-type": "application/json"}), 413,
           "payload_too_large")
    _error(c.post("/v1/events", content=b'{"events": [', headers={"content-type": "application/json"}), 400,
           "invalid_json")
    e = _error(c.post("/v1/predict", json={"customer_ids": [str(i) for i in range(10_001)]}), 422,
               "validation_error")
    assert e["message"].startswith("customer_ids: List should have at most 10000 items")
    e = _error(c.get("/v1/customers/x/prediction", params={"horizon": "soon"}), 422, "validation_error")
    assert e["message"].startswith("horizon: horizon 'soon' is not understood")
    e = _error(c.get("/v1/customers/x/prediction", params={"cutoff": "01/07/2024"}), 422, "validation_error")
    assert e["message"].startswith("cutoff: '01/07/2024' is not a date")
    e = _error(c.get("/v1/customers/x/prediction", params={"cutoff": "2024-06-30"}), 422, "validation_error")
    assert e["message"].startswith("cutoff: 2024-06-30 is before clv:") and "training cutoff 2024-07-01" in e["message"]
    _error(c.get("/v1/nothing"), 404, "not_found")
    _error(c.delete("/v1/predict"), 405, "method_not_allowed")


def test_reused_event_id_odd_customer_ids_and_decimals(env):
    c = env["server"].client
    cid = "shop/eu 50% ü"  # a slash, a space, a percent sign, a non-ASCII letter
    first = {"type": "order", "id": "odd-1", "order_id": "ODD1", "customer_id": cid,
             "timestamp": "2024-07-01T10:00:00Z", "amount": "12.5"}
    assert c.post("/v1/events", json={"events": [first]}).json()["applied"] == 1
    again = c.post("/v1/events", json={"events": [first]}).json()  # an identical repeat: a duplicate
    assert again["applied"] == 0 and again["duplicates"] == ["odd-1"]
    e = _error(c.post("/v1/events", json={"events": [first | {"amount": "13"}]}), 409, "conflict")
    assert e["index"] == 0 and "'odd-1'" in e["message"] and "another payload" in e["message"]
    e = _error(c.post("/v1/events", json={"events": [first | {"id": "odd-2", "order_id": "ODD2",
                                                              "amount": "1.00001"}]}), 422, "validation_error")
    assert e["message"].startswith("events[0].amount") and "more than 4 decimals" in e["message"]
    # read back: the query form (httpx encodes the id), the path form with an encoded slash
    by_query = c.get("/v1/customer/summary", params={"id": cid, "cutoff": "2024-07-02"})
    assert by_query.status_code == 200, by_query.text
    s = by_query.json()
    assert s["customer_id"] == cid and s["cold_start"] is False and s["total_spend"] == 12.5  # 13 was refused
    assert s["frequency"] == 0.0 and s["first_purchase"] == "2024-07-01"
    encoded = "shop%2Feu%2050%25%20%C3%BC"
    assert c.get(f"/v1/customers/{encoded}/summary", params={"cutoff": "2024-07-02"}).json() == s
    p = c.get("/v1/customer/prediction", params={"id": cid})
    assert p.status_code == 200 and p.json()["customer_id"] == cid and p.json()["cold_start"] is False
    assert c.get(f"/v1/customers/{encoded}/prediction").json()["customer_id"] == cid
    x = c.get("/v1/customer/explanation", params={"id": cid})
    assert x.status_code == 200 and x.json()["customer_id"] == cid
    _error(c.get("/v1/customer/summary"), 422, "validation_error")  # id is required


def test_default_cutoff_and_horizon(env):
    c = env["server"].client
    p = c.get("/v1/customers/c001/prediction").json()
    today = pd.Timestamp.now(tz=TZ).date()
    assert p["cutoff"] == (today + pd.Timedelta(days=1)).isoformat() and p["horizon_days"] == 182.0
    assert c.get("/v1/customers/c001/prediction", params={"horizon": "12m"}).json()["horizon_days"] == 365.0


def test_health_readiness_and_metrics(env):
    url, c = env["server"].url, env["server"].client
    assert httpx.get(url + "/readyz").json() == {"status": "ready", "model": "clv:1", "kind": "bgnbd"}
    order = {"type": "order", "id": "m-1", "order_id": "M-1", "customer_id": "m", "timestamp": "2024-07-01T10:00Z"}
    assert c.post("/v1/events", json={"events": [order]}).status_code == 200
    for _ in range(3):
        assert c.get("/v1/customers/m/prediction").status_code == 200
    assert c.post("/v1/predict", json={"customer_ids": ["m", "n"]}).status_code == 200
    text = httpx.get(url + "/metrics").text
    assert 'ltvcast_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/events"}' in text
    assert 'route="/v1/customers/{customer_id}/prediction"' in text
    assert 'ltvcast_events_applied_total{type="order"}' in text
    assert 'ltvcast_model_info{kind="bgnbd",name="clv",version="1"} 1.0' in text
    served = [float(line.split()[-1]) for line in text.splitlines()
              if line.startswith('ltvcast_predictions_served_total{model_version="clv:1"}')]
    assert served and served[0] >= 5


def test_promotion_swaps_the_model_while_requests_run(env):
    server, root = env["server"], env["root"]
    register(env["db"], root, "clv", "paretonbd")  # version 2; version 1 stays promoted
    time.sleep(0.5)
    assert server.client.get("/readyz").json()["model"] == "clv:1"
    seen, failures, stop = [], [], threading.Event()

    def hammer():
        with httpx.Client(base_url=server.url, headers={"X-API-Key": KEYS["reader"]}) as client:
            while not stop.is_set():
                r = client.get("/v1/customers/c002/prediction", params={"cutoff": "2024-08-01"})
                if r.status_code != 200:
                    failures.append(r.text)
                    continue
                body = r.json()
                seen.append((body["model_version"], body["model"], r.headers["x-ltvcast-model"]))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        result = run_cli("promote", "clv:2", "--registry", str(root), cwd=env["folder"])
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (seen and seen[-1][0] == 2):
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures
    versions = [v for v, _, _ in seen]
    assert versions[0] == 1 and versions[-1] == 2 and set(versions) == {1, 2}
    # every response is consistent: the version named is the model that computed it
    assert all((v, m, h) in {(1, "bgnbd", "clv:1"), (2, "paretonbd", "clv:2")} for v, m, h in seen)
    assert httpx.get(server.url + "/readyz").json()["model"] == "clv:2"
    assert 'ltvcast_model_info{kind="paretonbd",name="clv",version="2"} 1.0' in httpx.get(server.url + "/metrics").text
    promote("clv:1", root)  # back, for the other tests of this server
    deadline = time.monotonic() + 20
    while httpx.get(server.url + "/readyz").json()["model"] != "clv:1" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(server.url + "/readyz").json()["model"] == "clv:1"


def test_hash_key_and_keys_required(tmp_path, monkeypatch):
    runner = CliRunner()
    out = runner.invoke(app, ["serve", "--hash-key"], input="s3cret\n")
    assert out.exit_code == 0 and out.stdout.strip() == f"sha256: {hash_key('s3cret')}"
    assert hash_key("s3cret") == hashlib.sha256(b"s3cret").hexdigest()
    ring = KeyRing.from_env(f"crm:{hash_key('k1')}:read,etl:{hash_key('k2')}:read+write")
    assert ring.find("k1").scopes == {"read"} and ring.find("k2").scopes == {"read", "write"}
    assert ring.find("k3") is None
    monkeypatch.delenv("LTVCAST_API_KEYS", raising=False)
    monkeypatch.chdir(tmp_path)
    out = runner.invoke(app, ["serve", "--db", "x.duckdb", "--model", "clv"])
    assert out.exit_code == 2 and "no API keys" in out.output and "Traceback" not in out.output
    (tmp_path / "bad.yaml").write_text("keys:\n  - {sha256: abc, scopes: [read]}\n")
    out = runner.invoke(app, ["serve", "--db", "x.duckdb", "--model", "clv", "--keys", "bad.yaml"])
    assert out.exit_code == 2 and "64 lower-case hex digits" in out.output


def test_redis_backend_end_to_end(tmp_path):
    """The same service on Redis: events in, predictions out, sync into the store, keys cleaned up."""
    url = os.environ.get("LTVCAST_TEST_REDIS", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must test Redis, but {url} is not reachable: {exc}")
        pytest.skip(f"no Redis server at {url} ({exc}); set LTVCAST_TEST_REDIS")
    prefix = f"ltvcast-test:{uuid.uuid4().hex}:"
    db = make_store(tmp_path, customers=60)
    register(db, tmp_path / "models", "clv", "paretonbd", n_draws=50)
    server = Server(["--db", str(db), "--model", "clv", "--registry", str(tmp_path / "models"),
                     "--keys", str(write_keys(tmp_path)), "--redis", url, "--redis-prefix", prefix], tmp_path)
    try:
        events = event_stream(np.random.default_rng(4), ["c001", "c002", "new1"], 20, datetime(2024, 7, 1), 10)
        r = server.client.post("/v1/events", json={"events": events})
        applied = r.json()["applied"]
        assert r.status_code == 200 and applied == len({e["id"] for e in events})
        online = server.client.post("/v1/predict", json={"customer_ids": ["c001", "new1"], "cutoff": "2024-07-15"})
        rows = online.json()["predictions"]
        assert [p["cold_start"] for p in rows] == [False, False] and rows[0]["model"] == "paretonbd"
        result = run_cli("sync", "--db", str(db), "--redis", url, "--redis-prefix", prefix, cwd=tmp_path)
        assert result.returncode == 0 and result.stdout.startswith(f"{applied} new event(s)"), result.stderr
        history = open_history(db=db)
        try:
            expected = load_model("clv", tmp_path / "models").forecaster.predict(history, "2024-07-15", 182.0)
        finally:
            history.store.close()
        expected = expected.set_index("customer_id")
        for p in rows:
            for col in PREDICTED:
                assert _close(p[col], float(expected.loc[p["customer_id"], col]), 1e-6), (p["customer_id"], col)
    finally:
        server.stop()
        side = open_online(redis_url=url, prefix=prefix)
        side.drop()
        side.close()
    assert not redis.Redis.from_url(url).keys(prefix + "*")
