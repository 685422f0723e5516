"""Latency and throughput of the prediction service on loopback (bounded load; stops by itself).

    .venv/bin/python benchmarks/bench_serve.py [--rate 200] [--seconds 15] [--event-rate 30] [--batches 300] [--clients 4]
        [--model-kind bgnbd|gbm|deep] [--connections 8] [--folder DIR]

Builds a store of the built-in CDNOW data (23,570 customers) in a temporary folder, registers a BG/NBD
model (400 simulation draws; ``--model-kind gbm`` / ``deep``: a small LightGBM / GRU model, whose inputs the
service takes from its in-memory mirror of the store), starts ``ltvcast serve`` (uvicorn, one worker, SQLite
online store) on 127.0.0.1, then measures:

1. single predictions, ``GET /v1/customers/{id}/prediction``, open loop at ``--rate`` requests/s for
   ``--seconds`` (random known customers); latency from the scheduled send time (so queueing counts);
2. event ingestion, ``POST /v1/events`` with batches of 100 events (50 orders + their lines): open
   loop at ``--event-rate`` batches/s for ``--seconds`` (latency from the scheduled send), then closed
   loop with ``--clients`` concurrent clients for ``--batches`` batches (the most it takes; at most
   120 s each).

For a learned model it first times, in process, where a prediction's time goes for 1 and 32 customers:
the uncached path (the mirror's history and the model's ``inputs``, i.e. the feature SQL, versus
``predict_inputs``), the one-off build of every customer's predictions at the cutoff, the served path
(``predict_learned``) and the handler's lookup of a current row (``cached_learned``), the references
the service's latency is compared with. Each prediction run prints the client's latency, the server's
(the /metrics histogram: the whole request in the app) and the handler's stages (the ``Server-Timing``
header of each answer), with the load average.

The load generator runs on the same machine as the server (it competes for the CPUs).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from ltvcast.data.datasets import load_dataset, open_history
from ltvcast.ingest.write import write_ingest
from ltvcast.models.btyd import BTYDForecaster
from ltvcast.registry import save_model
from ltvcast.serve.auth import hash_key
from ltvcast.store import Store

KEY = "bench-key-0123456789"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _quantiles(ms: list[float]) -> str:
    q = np.percentile(ms, [50, 95, 99])
    return f"p50 {q[0]:.1f} ms, p95 {q[1]:.1f} ms, p99 {q[2]:.1f} ms, max {max(ms):.1f} ms"


#: The learned model of ``--model-kind gbm``: few windows and rounds (a latency benchmark, not an accuracy one).
GBM_SETTINGS = dict(n_windows=3, stride_days=56, max_rounds=60, early_stopping_rounds=10, n_jobs=2)
#: The learned model of ``--model-kind deep``: few windows and epochs.
DEEP_SETTINGS = dict(n_windows=2, stride_days=56, max_epochs=3, default_epochs=2, patience=1, epoch_rows=20_000)


def setup(folder: Path, kind: str = "bgnbd") -> tuple[Path, Path, Path]:
    db = folder / "cdnow.duckdb"
    if (folder / "keys.yaml").exists():  # --folder: made by an earlier run
        return db, folder / "models", folder / "keys.yaml"
    with Store.open(db) as store:
        write_ingest(store, load_dataset("cdnow"))
    history = open_history(db=db)
    if kind == "gbm":
        from ltvcast.models.learned.gbm import GBMForecaster

        model = GBMForecaster(**GBM_SETTINGS).fit(history, "1998-07-01", 182.0)
    elif kind == "deep":
        from ltvcast.models.learned.deep.forecaster import DeepForecaster

        model = DeepForecaster(**DEEP_SETTINGS).fit(history, "1998-07-01", 182.0)
    else:
        model = BTYDForecaster(kind).fit(history, "1998-07-01", 182.0)
    save_model(model, name="clv", cutoff="1998-07-01", horizon_days=182.0, history=history, root=folder / "models")
    history.store.close()
    keys = folder / "keys.yaml"
    keys.write_text(f"keys:\n  - {{name: bench, sha256: {hash_key(KEY)}, scopes: [read, write]}}\n")
    return db, folder / "models", keys


def learned_breakdown(db: Path, root: Path, rng: np.random.Generator, repeats: int = 20, uncached: int = 5) -> None:
    """In process: median ms of the mirror's history + ``inputs`` (features) and of ``predict_inputs``
    (``uncached`` times: seconds each on a loaded machine), of the build of the cached rows of every
    customer, of ``predict_learned`` on them and of the handler's lookup (``cached_learned``)."""
    from datetime import date

    from ltvcast.registry import load_model
    from ltvcast.serve.mirror import Mirror
    from ltvcast.serve.model import predict_learned, servable
    from ltvcast.serve.online import open_online

    online = open_online(db.with_name("breakdown.online.sqlite"))
    mirror = Mirror(db, online)
    t0 = time.perf_counter()
    mirror.load()
    print(f"mirror load (in process): {(time.perf_counter() - t0) * 1000:.0f} ms")
    model = load_model("clv", root).forecaster
    cutoff = date(1998, 7, 1)
    try:
        for n in (1, 32):
            feats, preds = [], []
            for _ in range(uncached):
                ids = [f"{i:05d}" for i in rng.integers(1, 23571, n)]
                t0 = time.perf_counter()
                with mirror.history(ids, cutoff) as history:
                    inputs = model.inputs(history, cutoff, 182.0)
                t1 = time.perf_counter()
                model.predict_inputs(inputs, cutoff, 182.0)
                feats.append((t1 - t0) * 1000)
                preds.append((time.perf_counter() - t1) * 1000)
            print(f"learned prediction of {n} customer(s), in process, uncached: features (mirror history + "
                  f"inputs) {np.median(feats):.0f} ms, model (predict_inputs) {np.median(preds):.0f} ms (medians)")
        served = servable(load_model("clv", root))
        t0 = time.perf_counter()
        predict_learned(served, mirror, ["00001"], cutoff, 182.0)  # builds the cached rows of every customer
        print(f"the cached rows of every customer at the cutoff (once per model, cutoff and horizon): "
              f"{(time.perf_counter() - t0) * 1000:.0f} ms")
        for n in (1, 32):
            took = []
            for _ in range(repeats):
                ids = [f"{i:05d}" for i in rng.integers(1, 23571, n)]
                t0 = time.perf_counter()
                predict_learned(served, mirror, ids, cutoff, 182.0)
                took.append((time.perf_counter() - t0) * 1000)
            print(f"served learned prediction of {n} customer(s), in process (predict_learned, the reference): "
                  f"median {np.median(took):.2f} ms, p99 {np.percentile(took, 99):.2f} ms")
        try:
            from ltvcast.serve.model import cached_learned
        except ImportError:  # a tree before the cached rows (a side-by-side run against older code)
            return
        took = []
        for _ in range(1000):
            ids = [f"{i:05d}" for i in rng.integers(1, 23571, 1)]
            t0 = time.perf_counter()
            assert cached_learned(served, mirror, ids, cutoff, 182.0) is not None
            took.append((time.perf_counter() - t0) * 1000)
        print(f"cached row lookup of 1 customer, in process (cached_learned, the handler's path): "
              f"median {np.median(took):.3f} ms, p99 {np.percentile(took, 99):.3f} ms")
    finally:
        mirror.close()
        online.close()


def warm_learned(url: str, limit_s: float = 300.0) -> str:
    """Single requests one after another until one takes < 50 ms (the inputs of every customer are built)."""
    client, t_start, took = _Http(url), time.perf_counter(), []
    while time.perf_counter() - t_start < limit_s:
        t0 = time.perf_counter()
        try:
            client.request("GET", "/v1/customers/00001/prediction?cutoff=1998-07-01")
        except TimeoutError:  # no answer in the client's 30 s (a loaded machine, the first build): ask again
            client = _Http(url)
        took.append((time.perf_counter() - t0) * 1000)
        if took[-1] < 50:
            break
    return f"{len(took)} requests in {time.perf_counter() - t_start:.1f} s, the last {took[-1]:.1f} ms"


def server_quantiles(url: str, route: str, before: dict[float, float]) -> tuple[str, dict[float, float]]:
    """Server-side latency quantiles of ``route`` since ``before`` (from the /metrics histogram, interpolated)."""
    text = httpx.get(url + "/metrics").text
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("ltvcast_http_request_duration_seconds_bucket{") and f'route="{route}"' in line:
            le = line.split('le="')[1].split('"')[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.split()[-1])
    diff = sorted((le, n - before.get(le, 0.0)) for le, n in buckets.items())
    total = diff[-1][1] if diff else 0.0
    out = []
    for q in (0.5, 0.95, 0.99):
        lo, lo_n = 0.0, 0.0
        for le, n in diff:
            if n >= q * total:
                frac = (q * total - lo_n) / (n - lo_n) if n > lo_n and le != float("inf") else 1.0
                out.append((lo + frac * ((le if le != float("inf") else lo) - lo)) * 1000)
                break
            lo, lo_n = le, n
    text = ", ".join(f"p{int(q * 100)} {v:.1f} ms" for q, v in zip((0.5, 0.95, 0.99), out))
    return f"server-side {text} (histogram)", buckets


class _Http:
    """A keep-alive HTTP/1.1 connection (the standard library's: light on the CPU the server needs)."""

    def __init__(self, url: str) -> None:
        host, port = url.split("//")[1].split(":")
        self.con = http.client.HTTPConnection(host, int(port), timeout=30)

    def request(self, method: str, path: str, body: bytes | None = None) -> int:
        headers = {"X-API-Key": KEY}
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.con.request(method, path, body=body, headers=headers)
        r = self.con.getresponse()
        r.read()
        self.timing = r.getheader("Server-Timing")
        return r.status


def _stages(header: str | None) -> dict[str, float]:
    """``Server-Timing: inputs;dur=0.1, ...`` -> {"inputs": 0.1, ...} (ms)."""
    out = {}
    for part in (header or "").split(","):
        name, _, dur = part.strip().partition(";dur=")
        if dur:
            out[name] = float(dur)
    return out


def predictions(url: str, rate: float, seconds: float, rng: np.random.Generator, report: bool = True,
                connections: int = 8) -> None:
    n = int(rate * seconds)
    ids = [f"{i:05d}" for i in rng.integers(1, 23571, n)]
    route = "/v1/customers/{customer_id}/prediction"
    _, before = server_quantiles(url, route, {})
    start = time.perf_counter() + 0.2
    lat: list[float] = []
    stages: list[dict[str, float]] = []
    errors = [0]
    lock = threading.Lock()
    nxt = [0]

    def worker():
        client = _Http(url)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= n:
                return
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            status = client.request("GET", f"/v1/customers/{ids[i]}/prediction?cutoff=1998-07-01")
            done = time.perf_counter()
            with lock:
                lat.append((done - due) * 1000)
                stages.append(_stages(client.timing))
                errors[0] += status != 200

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    if report:
        server, _ = server_quantiles(url, route, before)
        print(f"single predictions: {n} requests at {rate:g}/s offered over {connections} connections, "
              f"{n / took:.0f}/s served, "
              f"{errors[0]} errors; latency from the scheduled send {_quantiles(lat)}; {server}; "
              f"load average {os.getloadavg()}")
        for name in ("total", "inputs", "cache", "model"):
            ms = [s[name] for s in stages if name in s]
            if ms:
                print(f"  in the handler (Server-Timing), {name}: {_quantiles(ms)}")
        if any("cache" in s for s in stages):
            hits = sum("cache" in s and "model" not in s for s in stages)
            print(f"  answered from the cached rows: {hits} of {len(stages)}")


def _batches(first: int, count: int, rng: np.random.Generator) -> list[bytes]:
    """``count`` bodies of 100 events (50 orders + their lines), ids from ``first`` on."""
    out = []
    for b in range(first, first + count):
        events = []
        for k in range(50):
            oid = f"b{b}-{k}"
            cid = f"{int(rng.integers(1, 30000)):05d}"
            ts = f"1998-06-{1 + k % 28:02d}T{k % 24:02d}:15:00Z"
            events.append({"type": "order", "id": "e" + oid, "order_id": oid, "customer_id": cid, "timestamp": ts})
            events.append({"type": "order_line", "id": "l" + oid, "order_id": oid, "line": 1, "amount": "12.50"})
        out.append(json.dumps({"events": events}).encode())
    return out


def events(url: str, payloads: list[bytes], rate: float | None, clients: int) -> None:
    """POST the batches: open loop at ``rate`` batches/s (latency from the scheduled send), or closed loop."""
    lat: list[float] = []
    lock = threading.Lock()
    nxt = [0]
    errors = [0]
    deadline = time.perf_counter() + 120
    start = time.perf_counter() + 0.2

    def worker():
        client = _Http(url)
        while time.perf_counter() < deadline:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(payloads):
                return
            t0 = time.perf_counter()
            if rate is not None:
                t0 = start + i / rate
                if t0 > time.perf_counter():
                    time.sleep(t0 - time.perf_counter())
            status = client.request("POST", "/v1/events", payloads[i])
            with lock:
                lat.append((time.perf_counter() - t0) * 1000)
                errors[0] += status != 200

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    mode = f"open loop at {rate * 100:g} events/s offered" if rate else f"closed loop, {clients} clients"
    print(f"event ingestion ({mode}): {len(lat)} batches of 100, {len(lat) * 100 / took:.0f} events/s, "
          f"{errors[0]} errors; per batch {_quantiles(lat)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--event-rate", type=float, default=30.0, help="batches of 100 per second (open loop)")
    parser.add_argument("--batches", type=int, default=300, help="batches of the closed-loop run")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--model-kind", default="bgnbd", choices=("naive", "bgnbd", "paretonbd", "gbm", "deep"))
    parser.add_argument("--connections", type=int, default=None,
                        help="keep-alive connections of the prediction load, each one request at a time "
                        "(default 8; 128 for gbm and deep, whose uncached answers take a feature build)")
    parser.add_argument("--folder", default=None,
                        help="keep the store and the registered model here, and reuse them when already there "
                        "(a folder per --model-kind)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.online.sqlite*"):  # each run starts with an empty online store
            old.unlink()
        t0 = time.perf_counter()
        db, root, keys = setup(folder, args.model_kind)
        if args.model_kind in ("gbm", "deep"):
            learned_breakdown(db, root, rng)
        port = _port()
        cmd = [sys.executable, "-c", "from ltvcast.cli import main; main()", "serve", "--db", str(db),
               "--model", "clv", "--registry", str(root), "--keys", str(keys), "--port", str(port),
               "--log-level", "warning"]
        server = subprocess.Popen(cmd, cwd=folder, env={**os.environ}, stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                raise SystemExit("the server did not start")
            print(f"{args.model_kind}: setup (store, fit, server start): {time.perf_counter() - t0:.1f} s; "
                  f"{os.cpu_count()} CPUs; load average {os.getloadavg()}")
            conns = args.connections or (128 if args.model_kind in ("gbm", "deep") else 8)
            if args.model_kind in ("gbm", "deep"):
                print(f"first learned answers (the service builds every customer's inputs meanwhile): "
                      f"{warm_learned(url)}")
            predictions(url, args.rate / 4, 4.0, rng, report=False, connections=conns)  # warm-up
            predictions(url, args.rate, args.seconds, rng, connections=conns)
            events(url, _batches(0, int(args.event_rate * args.seconds), rng), args.event_rate, 4)
            events(url, _batches(10**6, args.batches, rng), None, args.clients)
            predictions(url, args.rate, args.seconds, rng, connections=conns)  # again, with the online state grown
            print(f"load average {os.getloadavg()}")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
