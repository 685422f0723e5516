"""Server time of every page of the web app (ltvcast.ui) on a store, against the 300 ms goal.

    .venv/bin/python benchmarks/bench_ui.py --db shop.duckdb --registry models --model shop [--repeat 7]

Builds the app as ``ltvcast ui`` does (the snapshot: predictions, segments,
the matured-window backtest; timed once), signs in, then requests each page
``--repeat`` times in process (Starlette's test client, no network) and
prints, per page, the median and the worst of the server time (the
``Server-Timing`` header the app sets: routing, the page's work, the
template) and its ratio to the 300 ms goal; beside it, as the reference run
of the same script, the login page (no data at all). ``os.getloadavg()`` is
printed before and after: on a loaded machine every figure grows.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
from pathlib import Path

GOAL_MS = 300.0


def _server_ms(response) -> float:
    return float(re.search(r"dur=([0-9.]+)", response.headers["server-timing"]).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--registry", type=Path, default=Path("models"))
    parser.add_argument("--model", required=True, help="NAME or NAME:VERSION")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from ltvcast.data.datasets import open_history
    from ltvcast.ui.app import UiConfig, local_app
    from ltvcast.ui.local import current_label, one_time_keys

    print(f"load average before: {os.getloadavg()}")
    ring, key = one_time_keys()
    label = current_label(args.registry, args.model)
    config = UiConfig(open_history=lambda: open_history(db=args.db), registry=args.registry, model=lambda: label,
                      keys=ring, monitor_db=args.db)
    started = time.perf_counter()
    app = local_app(config)
    build_s = time.perf_counter() - started
    client = TestClient(app)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/login").text).group(1)
    client.post("/ui/login", data={"csrf": token, "key": key})
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/").text).group(1)
    seg_html = client.get("/ui/segments").text
    cells = re.findall(r'data-tier="([^"]+)" data-risk="([^"]+)"><span class="sr">[^<]*</span>([0-9,]+)', seg_html)
    tier, risk, n = max(cells, key=lambda c: int(c[2].replace(",", "")))
    listed = client.get("/ui/segments/list", params={"tier": tier, "risk": risk}).text
    customer = re.search(r'href="/ui/customer\?id=([^"]+)"', listed).group(1)  # the cell's highest value at risk
    pages = [
        ("login (reference)", "GET", "/ui/login", None),
        ("overview", "GET", "/ui/", None),
        ("customer lookup", "GET", f"/ui/customer?id={customer}", None),
        ("customer reasons (htmx, after it)", "GET", f"/ui/customer/reasons?id={customer}", None),
        ("customer not found", "GET", "/ui/customer?id=no-such-customer", None),
        ("segments", "GET", "/ui/segments", None),
        (f"segment list ({n} customers)", "GET", "/ui/segments/list", {"tier": tier, "risk": risk}),
        (f"segment CSV ({n} customers)", "GET", "/ui/segments.csv", {"tier": tier, "risk": risk}),
        ("planner", "GET", "/ui/planner", None),
        ("planner run (a new budget each time)", "POST", "/ui/planner", {"csrf": csrf}),
        ("planner CSV (the last run's)", "GET", "/ui/planner.csv", None),
        ("experiments", "GET", "/ui/experiments", None),
        ("model health", "GET", "/ui/health", None),
    ]
    print(f"store {args.db}, model {label}: snapshot built in {build_s:.1f} s (once per model version)")
    print(f"{'page':38s} {'median ms':>10s} {'worst ms':>9s} {'median/300ms':>13s} {'vs login':>9s}")
    reference, budget = None, 10000.0
    for name, method, path, data in pages:
        times = []
        for _ in range(args.repeat):
            if method == "GET":
                r = client.get(path, params={"budget": budget} if name.startswith("planner CSV") else data)
            else:  # a budget not asked before: the targeting runs (the app keeps the last results)
                budget += 1.0
                r = client.post(path, data={**data, "budget": budget})
            assert r.status_code == 200, (name, r.status_code, r.text[:300])
            times.append(_server_ms(r))
        med = statistics.median(times)
        reference = reference or med
        print(f"{name:38s} {med:10.1f} {max(times):9.1f} {med / GOAL_MS:13.2f} {med / reference:9.1f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
