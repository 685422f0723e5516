"""Durability: SIGKILL the server mid-stream, restart it; every acknowledged event is in the log exactly
once, and the online state equals a rebuild from the log."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime

import httpx
import numpy as np
from serve_kit import TZ, Server, event_stream, make_store, register, write_keys

from ltvcast.serve.online import open_online


def test_acknowledged_events_survive_sigkill(tmp_path):
    db = make_store(tmp_path, customers=80)
    register(db, tmp_path / "models", "clv", "naive", n_draws=0)
    args = ["--db", str(db), "--model", "clv", "--registry", str(tmp_path / "models"),
            "--keys", str(write_keys(tmp_path))]
    rng = np.random.default_rng(21)
    events = event_stream(rng, [f"c{i:03d}" for i in range(80)], 400, datetime(2024, 7, 1), 20)
    batches = [events[i:i + 10] for i in range(0, len(events), 10)]
    server = Server(args, tmp_path)
    acked: list[str] = []
    sent = {"batches": 0}
    stop = threading.Event()

    def stream():
        for batch in batches:
            if stop.is_set():
                return
            sent["batches"] += 1
            try:
                r = server.client.post("/v1/events", json={"events": batch})
            except httpx.TransportError:
                return  # the server died with this batch in flight: not acknowledged
            if r.status_code == 200:
                acked.extend(e["id"] for e in batch)

    writer = threading.Thread(target=stream)
    writer.start()
    deadline = time.monotonic() + 60
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.005)
    server.kill()  # SIGKILL mid-stream
    stop.set()
    writer.join(30)
    assert 300 <= len(acked) and sent["batches"] < len(batches), "the kill did not land mid-stream"

    online = open_online(db.with_name("shop.online.sqlite"))
    try:
        logged = Counter(e.event_id for e in online.iter_log())
        assert max(logged.values()) == 1  # no event twice
        assert set(acked) <= set(logged)  # every acknowledged event is there
        assert online.snapshot() == online.replay(TZ)  # the state equals a rebuild from the log
    finally:
        online.close()

    server = Server(args, tmp_path)  # restart on the same files; the client resends everything
    try:
        applied = sum(server.client.post("/v1/events", json={"events": b}).json()["applied"] for b in batches)
        assert applied == len({e["id"] for e in events}) - len(logged)
    finally:
        server.stop()
    online = open_online(db.with_name("shop.online.sqlite"))
    try:
        logged = Counter(e.event_id for e in online.iter_log())
        assert set(logged) == {e["id"] for e in events} and max(logged.values()) == 1
        assert online.snapshot() == online.replay(TZ)
    finally:
        online.close()
