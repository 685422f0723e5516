"""The web app's categories panel (issue 18) over HTTP, on a small simulated shop with categories.

The panel's tables are checked against the library (the split, categories per segment, demand) computed
independently; a shop without categories gets a note; a registered split is used when it fits the horizon.
The browser check (axe, the chart drawn) is in test_ui_categories_browser.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from test_ui import READ_KEY, client, login, ui_shop  # noqa: F401  (the shared fixtures)

from ltvcast.actions.segments import assign_segments, rfm_at
from ltvcast.data.datasets import open_history
from ltvcast.evaluate.categories import categories_per_segment
from ltvcast.models.catalog import make_forecaster
from ltvcast.models.categories import CategorySplit
from ltvcast.models.demand import aggregate_demand, customer_demand
from ltvcast.registry import load_model, predict_registered, save_category_split, save_model
from ltvcast.serve.auth import ApiKey, KeyRing, hash_key
from ltvcast.ui.app import UiConfig, local_app
from ltvcast.ui.categories import build_category_panel
from ltvcast.ui.snapshot import build_snapshot


@dataclass
class CategoryShop:
    app: object
    db: Path
    registry: Path
    label: str
    cutoff: pd.Timestamp
    predictions: pd.DataFrame


@pytest.fixture(scope="session")
def category_shop(tmp_path_factory) -> CategoryShop:
    from ltvcast.ingest.config import load_config
    from ltvcast.ingest.multisource import ingest_sources
    from ltvcast.simulate import simulate_shop
    from ltvcast.store import Store

    root = tmp_path_factory.mktemp("ui-categories")
    simulate_shop(root / "sim", customers=1200, months=24, seed=3, start="2021-10-01", dirty_rate=0.0)
    db = root / "shop.duckdb"
    with Store.open(db) as store:
        ingest_sources(load_config(root / "sim" / "sources.yaml"), store)
    history = open_history(db=db)
    try:
        at = (history.observation_end - pd.Timedelta(days=181)).normalize()
        reg = save_model(make_forecaster("bgnbd").fit(history, at, 182.0), name="clv", cutoff=at, horizon_days=182.0,
                         history=history, root=root / "models")
        label = f"{reg.name}:{reg.version}"
        cutoff = history.observation_end + pd.Timedelta(days=1)
        preds = predict_registered(load_model(label, root / "models"), history, cutoff, 365.0)
    finally:
        history.store.close()
    config = UiConfig(open_history=lambda: open_history(db=db), registry=root / "models", model=lambda: label,
                      keys=KeyRing([ApiKey("crm", hash_key(READ_KEY), frozenset({"read"}))]))
    return CategoryShop(local_app(config), db, root / "models", label, cutoff, preds)


def _cells(html: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_categories_panel_shows_the_split_by_segment_and_the_demand(category_shop):
    c = TestClient(category_shop.app)
    assert login(c).status_code == 303
    page = c.get("/ui/categories").text
    assert 'hx-get="/ui/categories/panel"' in page and 'aria-current="page"' in page
    html = c.get("/ui/categories/panel").text
    # the same numbers from the library: a split fitted at the prediction day for its 365 days (none registered)
    history = open_history(db=category_shop.db)
    try:
        cutoff, preds = category_shop.cutoff, category_shop.predictions
        split = CategorySplit().fit(history, cutoff, 365.0)
        by_cat = split.split(preds, history, cutoff)
        per_seg = categories_per_segment(by_cat, assign_segments(preds, rfm_at(history, cutoff)))
        cells = customer_demand(by_cat.assign(pred_spend=by_cat["pred_spend"] * 364 / 365), history, cutoff, 52)
    finally:
        history.store.close()
    seg_rows = _cells(html, "category-segments")
    assert [r[4] for r in seg_rows] == per_seg["top_categories"].tolist()
    assert [r[3] for r in seg_rows] == [f"{v:,.2f}" for v in per_seg["pred_spend"]]
    assert sum(int(r[2].replace(",", "")) for r in seg_rows) == len(preds)
    demand = aggregate_demand(cells, ("category",))
    rows = _cells(html, "category-demand")
    assert [r[0] for r in rows] == demand["category"].tolist()
    assert [r[3] for r in rows] == [f"{v:,.2f}" for v in demand["pred_sales"]]
    assert [r[4] for r in rows] == [f"{lo:,.2f} – {hi:,.2f}" for lo, hi in zip(demand["lower"], demand["upper"])]
    sales = demand["pred_sales"].to_numpy()
    assert (np.diff(sales) <= 0).all() and rows[-1][0] == "other" and rows[-1][3] == "0.00"  # nobody buys 'other'
    np.testing.assert_allclose(sales.sum(), demand[["existing", "new"]].to_numpy().sum(), rtol=1e-12)
    # 365 days of predictions, less the last day, are the 52 weeks' existing demand before net -> gross
    assert demand["existing"].sum() >= preds["pred_spend"].sum() * 364 / 365 - 1e-6
    spec = json.loads(re.search(r'<script type="application/json" id="chart-demand-spec">(.*?)</script>', html,
                                re.S).group(1))
    (points,) = spec["datasets"].values()
    assert spec["facet"]["sort"] == demand["category"].tolist()[:-1]  # 'other' sells nothing: no chart
    assert len(points) == 52 * (len(split.categories_) - 1)
    assert "none is registered" in html
    assert c.get("/ui/categories/panel").text == html  # kept with the snapshot, not rebuilt


def test_categories_panel_without_categories_says_why(client):  # noqa: F811
    html = client.get("/ui/categories/panel").text  # the CDNOW sample of test_ui: no category on any line
    assert "No categories: the order lines carry no category" in html and "<table" not in html


def test_categories_panel_uses_a_registered_split_for_its_horizon(category_shop, tmp_path):
    history = open_history(db=category_shop.db)
    try:
        at = (history.observation_end - pd.Timedelta(days=90)).normalize()
        reg = save_model(make_forecaster("bgnbd").fit(history, at, 91.0), name="q", cutoff=at, horizon_days=91.0,
                         history=history, root=tmp_path)
        split = CategorySplit(rounds=20, windows=1).fit(history, at, 91.0)
        save_category_split(reg, split)
        snap = build_snapshot(load_model("q", tmp_path), history, horizon_days=91.0)
        panel = build_category_panel(snap)
        by_cat = split.split(snap.predictions, history, snap.cutoff)
        want = categories_per_segment(by_cat, snap.segments)
        week13 = customer_demand(by_cat, history, snap.cutoff, 13)
    finally:
        history.store.close()
    assert f"from the split registered with q:1 (fitted at {at.date()})" in panel.notes[0]
    pd.testing.assert_frame_equal(panel.per_segment, want)
    assert panel.weeks == 13
    pd.testing.assert_frame_equal(panel.cells, week13)  # 91 days are 13 whole weeks: no scaling
