"""The analyst web app (ltvcast.ui) over HTTP: sessions, CSRF, the pages' numbers against the actions layer.

The shop is the built-in CDNOW sample with a BG/NBD fitted 182 days before its end
(so its window has matured: the overview's backtest), and an A/A experiment
(hash assignment over every customer, the last 91 days as the window).
The browser tests (test_ui_browser.py) reuse the ``ui_shop`` fixture.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from ltvcast.actions import experiments as ex
from ltvcast.actions import targeting as tg
from ltvcast.actions.segments import assign_segments, rfm_at
from ltvcast.data.datasets import open_history
from ltvcast.evaluate.backtest import horizon_actuals
from ltvcast.registry import load_model, predict_registered
from ltvcast.serve.auth import ApiKey, KeyRing, hash_key
from ltvcast.ui.app import PLANNER_DEFAULTS, Experiment, UiConfig, local_app
from ltvcast.ui.local import current_label, fit_default, pick_model
from ltvcast.ui.snapshot import Z80, matured_window, total_interval

READ_KEY, WRITE_KEY = "ui-test-read-key", "ui-test-write-key"
PAGES = ("/ui/", "/ui/customer", "/ui/segments", "/ui/categories", "/ui/planner", "/ui/experiments", "/ui/health")
EXPORTS = ("/ui/segments.csv?rfm=champions", "/ui/planner.csv")
WINDOW = ("1998-04-01", "1998-06-30")


@dataclass
class UiShop:
    """The app under test and what the tests compute independently of it."""

    app: object
    config: UiConfig
    registry: Path
    label: str
    cutoff: pd.Timestamp
    predictions: pd.DataFrame  # predict_registered at the cutoff, 365 days
    segments: pd.DataFrame  # assign_segments of those


def _history():
    return open_history("cdnow-sample")


@pytest.fixture(scope="session")
def ui_shop(tmp_path_factory) -> UiShop:
    root = tmp_path_factory.mktemp("ui-shop")
    history = _history()
    try:
        label = fit_default(history, root / "models")
        cutoff = history.observation_end + pd.Timedelta(days=1)
        preds = predict_registered(load_model(label, root / "models"), history, cutoff, 365.0)
        segs = assign_segments(preds, rfm_at(history, cutoff))
        ids = preds["customer_id"].astype(str)
        ex.assign(ids, "ui-test", 0.5).to_csv(root / "arms.csv", index=False)
    finally:
        history.store.close()
    ring = KeyRing([ApiKey("crm", hash_key(READ_KEY), frozenset({"read"})),
                    ApiKey("checkout", hash_key(WRITE_KEY), frozenset({"write"}))])
    config = UiConfig(open_history=_history, registry=root / "models", model=lambda: label, keys=ring,
                      experiment=Experiment(root / "arms.csv", *WINDOW))
    return UiShop(local_app(config), config, root / "models", label, cutoff, preds, segs)


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def login(client: TestClient, key: str = READ_KEY):
    """Sign in through the login form; returns the final response."""
    token = _csrf(client.get("/ui/login").text)
    return client.post("/ui/login", data={"csrf": token, "key": key, "next": "/ui/segments"}, follow_redirects=False)


@pytest.fixture()
def client(ui_shop) -> TestClient:
    c = TestClient(ui_shop.app)
    assert login(c).status_code == 303
    return c


def _csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


# ------------------------------------------------------------------ auth
def test_every_page_and_export_needs_a_session(ui_shop):
    c = TestClient(ui_shop.app)
    for path in PAGES + EXPORTS + ("/ui/segments/list?rfm=champions",):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/ui/login?next=/ui/"), path
        assert "customer_id" not in r.text and "champions" not in r.text
    r = c.get("/ui/segments/list?rfm=champions", headers={"HX-Request": "true"}, follow_redirects=False)
    assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/ui/login")
    assert c.get("/", follow_redirects=False).headers["location"] == "/ui/"


def test_only_a_read_key_signs_in_and_the_login_form_needs_its_token(ui_shop):
    c = TestClient(ui_shop.app)
    for key in (WRITE_KEY, "not-a-key", ""):
        r = login(c, key)
        assert r.status_code == 303 and "error=1" in r.headers["location"]
        assert c.get("/ui/", follow_redirects=False).status_code == 303
    r = c.post("/ui/login", data={"csrf": "forged", "key": READ_KEY}, follow_redirects=False)
    assert r.status_code == 403
    r = login(c)
    assert r.headers["location"] == "/ui/segments"  # back to where the visitor was sent from
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert c.get("/ui/", follow_redirects=False).status_code == 200


def test_login_never_redirects_off_the_app(ui_shop):
    for nxt in ("https://evil.example/", "//evil.example/ui/", "/elsewhere"):
        c = TestClient(ui_shop.app)
        token = _csrf(c.get("/ui/login").text)
        r = c.post("/ui/login", data={"csrf": token, "key": READ_KEY, "next": nxt}, follow_redirects=False)
        assert r.headers["location"] == "/ui/"


def test_posts_need_the_sessions_csrf_token(client):
    for data in ({}, {"csrf": "forged"}):
        assert client.post("/ui/planner", data={**data, "budget": "100"}).status_code == 403
        assert client.post("/ui/logout", data=data, follow_redirects=False).status_code == 403
    token = _csrf(client.get("/ui/planner").text)
    assert client.post("/ui/planner", data={"budget": "100"}, headers={"X-CSRF-Token": token}).status_code == 200


def test_logout_ends_the_session(client):
    token = _csrf(client.get("/ui/").text)
    r = client.post("/ui/logout", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_pages_load_only_the_packaged_scripts(client):
    static = Path(__import__("ltvcast.ui", fromlist=["x"]).__file__).parent / "static"
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 200, path
        assert "default-src 'self'" in r.headers["content-security-policy"]
        for src in re.findall(r'<script src="([^"]+)"', r.text):
            assert src.startswith("/ui/static/"), src
            assert (static / src.removeprefix("/ui/static/")).is_file()
            assert client.get(src).status_code == 200
    for name in ("htmx-2.0.11", "vega-6.4.0", "vega-lite-6.5.0", "vega-embed-7.3.0", "axe-core-4.14.1"):
        assert (static / "vendor" / f"{name}.min.js").is_file() and (static / "vendor" / f"{name}.LICENSE.txt").is_file()


# ------------------------------------------------------------------ the numbers
def test_overview_shows_the_models_total(client, ui_shop):
    html = client.get("/ui/").text
    assert f"{len(ui_shop.predictions):,}" in html
    assert f"{ui_shop.predictions['pred_spend'].sum():,.2f}" in html
    assert ui_shop.label in html and "Lorenz" in html


def test_customer_page_shows_the_registered_prediction(client, ui_shop):
    row = ui_shop.predictions.sort_values("pred_spend").iloc[-1]
    html = client.get("/ui/customer", params={"id": row["customer_id"]}).text
    assert f'id="pred-spend">{row["pred_spend"]:,.2f}<' in html
    assert f'id="p-churn">{row["p_churn"]:.1%}<' in html
    assert f"{row['pred_spend_p10']:,.2f} – {row['pred_spend_p90']:,.2f}" in html
    assert 'hx-get="/ui/customer/reasons?id=' in html  # loaded after the page
    reasons = client.get("/ui/customer/reasons", params={"id": row["customer_id"]}).text
    assert reasons.count("<li>") == 6  # BG/NBD elasticities as sentences: 3 for pred_spend, 3 for p_churn
    assert "No customer" in client.get("/ui/customer", params={"id": "no such id"}).text


def test_segment_list_and_export_are_the_cells_customers(client, ui_shop):
    segs = ui_shop.segments
    cell = segs.groupby(["value_tier", "churn_risk"], observed=True).size().idxmax()
    want = segs[(segs["value_tier"] == cell[0]) & (segs["churn_risk"] == cell[1])]
    params = {"tier": cell[0], "risk": cell[1]}
    html = client.get("/ui/segments/list", params=params).text
    assert f"{len(want):,} customers" in html
    rows = _csv_rows(client.get("/ui/segments.csv", params=params).text)
    assert sorted(r["customer_id"] for r in rows) == sorted(want["customer_id"].astype(str))
    values = [float(r["value_at_risk"]) for r in rows]
    assert values == sorted(values, reverse=True)
    np.testing.assert_allclose(sum(values), want["value_at_risk"].sum(), rtol=1e-9)
    champions = _csv_rows(client.get("/ui/segments.csv", params={"rfm": "champions"}).text)
    assert len(champions) == int((segs["rfm_group"] == "champions").sum()) > 0
    assert _csv_rows(client.get("/ui/segments.csv", params={"rfm": "no such group"}).text) == []


def test_planner_gives_the_targeting_commands_numbers(client, ui_shop):
    values = {"budget": 500.0, "cost_per_contact": 1.0, "offer_cost": 2.0, "margin": 0.3, "assumed_uplift": 0.1}
    want = tg.target_by_assumption(ui_shop.predictions, tg.Economics(500.0, 1.0, 2.0, 0.3), 0.1)
    token = _csrf(client.get("/ui/planner").text)
    html = client.post("/ui/planner", data={"csrf": token, **{k: str(v) for k, v in values.items()}}).text
    s = want.summary
    assert s["contacted"] > 0
    assert f'id="plan-contacted">{s["contacted"]:,} of {s["customers_scored"]:,}<' in html
    assert f'id="plan-margin">{s["expected_incremental_margin"]:,.2f}<' in html
    assert "ASSUMPTION" in html
    rows = _csv_rows(client.get("/ui/planner.csv", params=values).text)
    assert [r["customer_id"] for r in rows] == list(want.contacts["customer_id"])
    bad = client.post("/ui/planner", data={"csrf": token, "budget": "lots"}).text
    assert "budget: &#39;lots&#39; is not a number" in bad
    assert "must be" in client.post("/ui/planner", data={"csrf": token, "margin": "-1"}).text
    assert client.get("/ui/planner.csv", params={"budget": "nan"}).status_code == 422
    assert set(PLANNER_DEFAULTS) == set(values)


def test_planner_export_link_is_the_plan_shown(client, ui_shop):
    # the link must carry the exact inputs: 6 significant digits (1.0000049 -> 1) exported another plan
    values = {"budget": 20.0, "cost_per_contact": 1.0000049, "offer_cost": 0.0, "margin": 1.0, "assumed_uplift": 1.0}
    want = tg.target_by_assumption(ui_shop.predictions, tg.Economics(20.0, 1.0000049, 0.0, 1.0), 1.0)
    token = _csrf(client.get("/ui/planner").text)
    html = client.post("/ui/planner", data={"csrf": token, **{k: repr(v) for k, v in values.items()}}).text
    link = re.search(r'href="(/ui/planner\.csv\?[^"]+)"', html).group(1).replace("&amp;", "&")
    rows = _csv_rows(client.get(link).text)
    assert want.summary["contacted"] > 0
    assert [r["customer_id"] for r in rows] == list(want.contacts["customer_id"])


def test_experiments_page_shows_the_analysis(client, ui_shop):
    history = _history()
    try:
        data = ex.campaign_outcomes(history, ex.read_assignments(ui_shop.config.experiment.assignments), *WINDOW)
    finally:
        history.store.close()
    want = ex.analyze(data, window=WINDOW)
    html = client.get("/ui/experiments").text
    first = want.effects.iloc[0]
    assert f"[{first['ci_low']:,.3f}, {first['ci_high']:,.3f}]" in html
    for arm in want.arms.itertuples():
        assert f"{arm.customers:,}" in html
    assert "Sample ratio check" in html


def test_health_page_lists_the_versions(client, ui_shop):
    html = client.get("/ui/health").text
    assert "ui-bgnbd" in html and "No monitoring run" in html


# ------------------------------------------------------------------ snapshot pieces
def test_total_interval_by_hand():
    # σ = (p90 − p10) / (2 z80): 1 and 2; total 10 ± z80 · √5
    frame = pd.DataFrame({"pred_spend": [4.0, 6.0], "pred_spend_p10": [0.0, 1.0],
                          "pred_spend_p90": [2 * Z80, 1.0 + 4 * Z80]})
    low, high = total_interval(frame)
    assert low == pytest.approx(10 - Z80 * np.sqrt(5)) and high == pytest.approx(10 + Z80 * np.sqrt(5))
    wide = frame.assign(pred_spend_p90=[100.0, 100.0])
    assert total_interval(wide)[0] == 0.0  # clipped
    assert total_interval(frame.assign(pred_spend_p10=np.nan, pred_spend_p90=np.nan)) is None


def test_matured_window_scores_the_models_own_window(ui_shop):
    history = _history()
    try:
        model = load_model(ui_shop.label, ui_shop.registry)
        m = matured_window(model, history)
        cutoff = pd.Timestamp(model.manifest["cutoff"], tz="UTC")
        scored = model.forecaster.predict(history, cutoff, m.horizon_days)["customer_id"].astype("string")
        actual = horizon_actuals(history, scored, cutoff, m.horizon_days)
    finally:
        history.store.close()
    assert m.cutoff == cutoff and m.horizon_days == 182
    assert m.deciles["sum_actual"].sum() == pytest.approx(actual["actual_spend"].sum())
    np.testing.assert_allclose(m.lorenz.iloc[[0, -1]].to_numpy(), [[0.0, 0.0], [1.0, 1.0]], atol=1e-12)
    assert np.all(np.diff(m.lorenz["share_actual"]) >= -1e-12)


def test_model_choice(ui_shop, tmp_path):
    assert pick_model(tmp_path / "none", None) is None
    assert pick_model(ui_shop.registry, None) == "ui-bgnbd"
    assert pick_model(ui_shop.registry, "x:3") == "x:3"
    assert current_label(ui_shop.registry, "ui-bgnbd") == ui_shop.label


def test_serve_ui_mounts_the_app_beside_the_api(tmp_path):
    import httpx
    from serve_kit import KEYS, Server, make_store, register, write_keys

    db = make_store(tmp_path / "shop", customers=60)
    register(db, tmp_path / "models", n_draws=50)
    server = Server(["--db", str(db), "--model", "clv", "--registry", str(tmp_path / "models"),
                     "--keys", str(write_keys(tmp_path)), "--ui"], cwd=tmp_path)
    try:
        web = httpx.Client(base_url=server.url, timeout=30.0)
        assert web.get("/ui/health", follow_redirects=False).status_code == 303  # no session
        assert web.get("/v1/customer/prediction", params={"id": "c001"}).status_code == 401  # the API's own check
        token = _csrf(web.get("/ui/login").text)
        r = web.post("/ui/login", data={"csrf": token, "key": KEYS["reader"], "next": "/ui/health"}, follow_redirects=True)
        assert r.status_code == 200 and "clv:1" in r.text
        assert server.client.get("/v1/customer/prediction", params={"id": "c001"}).status_code == 200
    finally:
        server.stop()


def test_ui_command_refuses_unclear_sources(tmp_path):
    from typer.testing import CliRunner

    from ltvcast.cli import app

    runner = CliRunner()
    for args, message in ((["ui"], "exactly one source"),
                          (["ui", "--dataset", "cdnow", "--db", str(tmp_path / "x.duckdb")], "exactly one source"),
                          (["ui", "--dataset", "cdnow", "--assignments", "arms.csv"], "together")):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.stderr, result.stderr


def test_ui_command_refuses_bad_options_before_preparing(ui_shop, tmp_path):
    # --log-level bogus and --port 70000 were raw tracebacks (the port's after preparing every page); a missing
    # assignments file or a window that ends before it starts started the app anyway
    from typer.testing import CliRunner

    from ltvcast.cli import app

    (tmp_path / "arms.csv").write_text("customer_id,arm\n1,treatment\n")
    base = ["ui", "--dataset", "cdnow-sample", "--registry", str(ui_shop.registry), "--port", "8099"]
    window = ["--campaign-start", "1998-04-01", "--campaign-end", "1998-06-30"]
    for args, message in ((["--log-level", "bogus"], "--log-level"), (["--port", "70000"], "--port"),
                          (["--port", "-1"], "--port"),
                          (["--assignments", str(tmp_path / "none.csv"), *window], "no such file"),
                          (["--assignments", str(tmp_path / "arms.csv"), "--campaign-start", "1998-06-30",
                            "--campaign-end", "1998-04-01"], "after --campaign-end"),
                          (["--assignments", str(tmp_path / "arms.csv"), "--campaign-start", "notadate",
                            "--campaign-end", "1998-04-01"], "not a date")):
        result = CliRunner().invoke(app, base + args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.output, result.exception)


def test_a_newly_served_version_is_prepared_in_the_background(ui_shop, tmp_path):
    import dataclasses
    import shutil
    import time

    root = tmp_path / "models"
    shutil.copytree(ui_shop.registry, root)
    served = {"label": ui_shop.label}
    config = dataclasses.replace(ui_shop.config, registry=root, model=lambda: served["label"], experiment=None)
    c = TestClient(local_app(config))
    login(c)
    history = _history()
    try:
        served["label"] = fit_default(history, root)  # a promotion, as the service's holder would see it
    finally:
        history.store.close()
    assert served["label"] == "ui-bgnbd:2"
    html = c.get("/ui/").text
    assert "Model in service: <strong>ui-bgnbd:1</strong>" in html and "being prepared" in html
    deadline = time.monotonic() + 300
    while "Model in service: <strong>ui-bgnbd:2</strong>" not in c.get("/ui/").text:
        assert time.monotonic() < deadline, "the new version's pages were never prepared"
        time.sleep(0.5)
    assert "being prepared" not in c.get("/ui/").text
