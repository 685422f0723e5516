"""Shared helpers of the tests/test_serve_*.py files: a small multi-source store, a registered BTYD model,
API keys, a server started as a subprocess (``ltvcast serve``) on a free loopback port, and event streams."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pandas as pd

from ltvcast.data.datasets import open_history
from ltvcast.ingest.config import load_config
from ltvcast.ingest.multisource import ingest_sources
from ltvcast.models.btyd import BTYDForecaster
from ltvcast.registry import save_model
from ltvcast.serve.auth import hash_key
from ltvcast.store import Store

TZ = "Europe/Berlin"
BASE_END = "2024-06-30"  # last day of the batch history
CUTOFF = "2024-07-01"  # training cutoff of the registered model
KEYS = {"reader": "read-key-0123456789", "writer": "write-key-0123456789", "admin": "admin-key-0123456789"}
LTVCAST = [sys.executable, "-c", "from ltvcast.cli import main; main()"]


def make_store(folder: Path, customers: int = 150, seed: int = 7) -> Path:
    """A store from ``sources.yaml`` (orders, order lines, returns; EUR, Europe/Berlin) of 2023-07..2024-06."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    orders, items, returns = [], [], []
    start = pd.Timestamp("2023-07-01", tz="UTC")
    n = 0
    for c in range(customers):
        first = start + pd.Timedelta(days=int(rng.integers(0, 300)), hours=int(rng.integers(0, 24)))
        drop, rate = rng.beta(1.0, 3.0), rng.gamma(2.0, 20.0)  # BG/NBD-like: dropout after a purchase, own rate
        scale = rng.gamma(3.0, 5.0)  # each customer's own spend level (Gamma-Gamma-like)
        t = first
        while t < pd.Timestamp(BASE_END, tz="UTC") + pd.Timedelta(hours=22):
            n += 1
            oid = f"B{n:05d}"
            orders.append({"order_id": oid, "customer_id": f"c{c:03d}", "timestamp": t.isoformat(), "currency": "EUR"})
            for line in range(1, int(rng.integers(1, 4)) + 1):
                items.append({"order_id": oid, "line": line, "quantity": int(rng.integers(1, 3)),
                              "unit_price": round(float(rng.gamma(4.0, scale)), 2)})
            if rng.random() < 0.1:
                returns.append({"return_id": f"R{n}", "order_id": oid, "customer_id": f"c{c:03d}",
                                "timestamp": (t + pd.Timedelta(days=5)).isoformat(), "amount": 5.5})
            if rng.random() < drop:
                break
            t = t + pd.Timedelta(days=float(rng.exponential(rate)) + 0.5)
    pd.DataFrame(orders).to_csv(folder / "orders.csv", index=False)
    pd.DataFrame(items).to_csv(folder / "order_items.csv", index=False)
    pd.DataFrame(returns).to_csv(folder / "returns.csv", index=False)
    (folder / "sources.yaml").write_text(
        f"shop: {{currency: EUR, timezone: {TZ}, data_end: {BASE_END}}}\n"
        "sources:\n"
        "  - {kind: orders, path: orders.csv}\n"
        "  - {kind: order_items, path: order_items.csv}\n"
        "  - {kind: returns, path: returns.csv}\n"
    )
    db = folder / "shop.duckdb"
    with Store.open(db) as store:
        ingest_sources(load_config(folder / "sources.yaml"), store)
    return db


def register(db: Path, root: Path, name: str = "clv", kind: str = "bgnbd", n_draws: int = 200) -> BTYDForecaster:
    """Fit a BTYD model on the store before :data:`CUTOFF` and save it as the next version of ``name``."""
    history = open_history(db=db)
    try:
        model = BTYDForecaster(kind, n_draws=n_draws).fit(history, CUTOFF, 182.0)
        save_model(model, name=name, cutoff=CUTOFF, horizon_days=182.0, history=history, root=root)
    finally:
        history.store.close()
    return model


def write_keys(folder: Path) -> Path:
    """keys.yaml: reader (read), writer (write), admin (read + write)."""
    path = folder / "keys.yaml"
    path.write_text(
        "keys:\n"
        f"  - {{name: reader, sha256: {hash_key(KEYS['reader'])}, scopes: [read]}}\n"
        f"  - {{name: writer, sha256: {hash_key(KEYS['writer'])}, scopes: [write]}}\n"
        f"  - {{name: admin, sha256: {hash_key(KEYS['admin'])}, scopes: [read, write]}}\n"
    )
    return path


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``ltvcast serve`` as a subprocess on 127.0.0.1; ``client`` talks to it with the admin key."""

    def __init__(self, args: list[str], cwd: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"serve-{self.port}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*LTVCAST, "serve", "--port", str(self.port), "--log-level", "warning", *args],
                cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env,
            )
        self.client = httpx.Client(base_url=self.url, headers={"X-API-Key": KEYS["admin"]}, timeout=30.0)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL (no shutdown of any kind)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.client.close()

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.client.close()


def run_cli(*args: str, cwd: Path) -> SimpleNamespace:
    """Run ``ltvcast ARGS`` in this process (Typer's runner) from ``cwd``: ``returncode``, ``stdout``, ``stderr``."""
    from typer.testing import CliRunner

    from ltvcast.cli import app

    here = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(args))
    finally:
        os.chdir(here)
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def event_stream(rng: np.random.Generator, customers: list[str], n_orders: int, start: datetime,
                 days: int) -> list[dict]:
    """Orders with lines (some without lines, some with a stated total), returns and browse events.

    Times are spread over ``days`` days after ``start`` and clustered near
    midnight in Europe/Berlin (local day != UTC day); several orders of one
    customer fall on one day. Arrival order is shuffled (lines before their
    orders, returns before purchases), and about 5% of events are sent twice.
    """
    events: list[dict] = []
    for k in range(n_orders):
        cid = customers[int(rng.integers(0, len(customers)))]
        day = start + timedelta(days=int(rng.integers(0, days)))
        minute = int(rng.choice([60 * 22 + 30, 60 * 23 - 5, 60 * 10, 15]))  # 22:30 / 22:55 UTC = next local day
        ts = day.replace(tzinfo=timezone.utc) + timedelta(minutes=minute)
        oid = f"O{k:05d}"
        kind = rng.random()
        order = {"type": "order", "id": f"e-{oid}", "order_id": oid, "customer_id": cid, "timestamp": ts.isoformat(),
                 "currency": "EUR", "channel": "web"}
        if kind < 0.2:
            order["amount"] = f"{rng.gamma(2.0, 20.0):.4f}"  # no lines: the stated total counts
            events.append(order)
        else:
            if kind < 0.35:
                order["amount"] = "999.99"  # stated, but the lines decide
            events.append(order)
            for line in range(1, int(rng.integers(1, 4)) + 1):
                item = {"type": "order_line", "id": f"e-{oid}-{line}", "order_id": oid, "line": line}
                if rng.random() < 0.5:
                    item["amount"] = round(float(rng.gamma(2.0, 10.0)), 2)
                else:
                    item.update(quantity=int(rng.integers(1, 4)), unit_price=f"{rng.gamma(2.0, 8.0):.2f}",
                                discount="0.50")
                events.append(item)
        if rng.random() < 0.15:
            events.append({"type": "return", "id": f"e-r-{oid}", "order_id": oid, "customer_id": cid,
                           "timestamp": (ts + timedelta(days=int(rng.integers(0, 3)))).isoformat(),
                           "amount": f"{rng.uniform(1, 15):.2f}"})
        if rng.random() < 0.3:
            events.append({"type": "browse", "id": f"e-b-{oid}", "customer_id": cid, "session_id": f"s{k}",
                           "timestamp": (ts - timedelta(minutes=3)).isoformat(), "event_type": "view",
                           "product_id": "p1"})
    order = rng.permutation(len(events))
    shuffled = [events[i] for i in order]
    repeats = [shuffled[i] for i in rng.choice(len(shuffled), size=len(shuffled) // 20, replace=False)]
    return shuffled + repeats
