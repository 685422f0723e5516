"""Monitoring (ltvcast.monitor): drift statistics by hand, the policy, regime changes of the simulator,
a year of daily monitoring on a stable simulated shop (false alarms) and after a change (days to alert),
score logging, `ltvcast monitor` end to end with its exit code, monitor_log and a webhook receiver.

The year-long runs are vectorised: the BTYD inputs (the RFM summary, weeks) of every day come from one
sorted array of purchase occasions (`DailyShop`), the model is fitted once, and each day costs a
prediction (n_draws=0, closed form) plus the drift statistics; no model is refitted per day.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ltvcast.cli import app
from ltvcast.data.datasets import open_history
from ltvcast.errors import LtvcastError
from ltvcast.ingest.config import load_config
from ltvcast.ingest.multisource import ingest_sources
from ltvcast.metrics import total_error_pct
from ltvcast.models.btyd import BTYDForecaster
from ltvcast.monitor import policy_from_dict
from ltvcast.monitor.checks import accuracy_rows, data_health_rows, drift_rows, worst
from ltvcast.monitor.stats import (
    ks_distance,
    ks_sketch,
    psi,
    psi_samples,
    psi_sketch,
    wasserstein_samples,
    wasserstein_sketch,
)
from ltvcast.registry import feature_sketch
from ltvcast.simulate import ShopParams, simulate_shop
from ltvcast.simulate.regimes import Regime
from ltvcast.store import Store

DAY0 = pd.Timestamp("2024-01-01", tz="UTC")  # training cutoff of the monitored model (year 3 of the shop)
HORIZON = 91.0
RUN_EVERY = 7  # a logged scoring run every week
SEEDS = tuple(int(s) for s in os.environ.get("LTVCAST_MONITOR_SEEDS", "1").split(","))
JUDGED = ["frequency", "recency", "T", "monetary_value"]


# ------------------------------------------------------------------------------------------ statistics by hand
def test_psi_by_hand():
    # (0.25-0.5) ln(0.25/0.5) + (0.75-0.5) ln(0.75/0.5) = 0.25 ln 2 + 0.25 ln 1.5
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * np.log(2) + 0.25 * np.log(1.5), abs=1e-12)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # an empty bin is floored at 1e-4: (0.5-1e-4) ln(0.5/1e-4) + (0.5-1) ln(0.5/1)
    assert psi([1.0, 0.0], [0.5, 0.5]) == pytest.approx((0.5 - 1e-4) * np.log(0.5 / 1e-4) + (-0.5) * np.log(0.5))
    with pytest.raises(ValueError):
        psi([0.5, 0.5], [1.0])
    # samples: reference 1..10, bins at its deciles (1.9, 2.8, ...): one value per bin; current = 10 x the value 10
    # -> current all in the top bin: PSI = 9 (1e-4 - 0.1) ln(1e-4/0.1) + (1 - 0.1) ln(1/0.1)
    ref = np.arange(1.0, 11.0)
    expected = 9 * (1e-4 - 0.1) * np.log(1e-4 / 0.1) + 0.9 * np.log(10.0)
    assert psi_samples(ref, np.full(10, 10.0)) == pytest.approx(expected)
    assert psi_sketch(feature_sketch(ref), np.full(10, 10.0)) == pytest.approx(expected)
    assert psi_samples(ref, ref) == 0.0


def test_ks_and_wasserstein_by_hand():
    # F_ref - F_cur is largest at x in [2, 3): 0.5 - 0 -> KS 0.5
    assert ks_distance([1, 2, 3, 4], [3, 4, 5, 6]) == pytest.approx(0.5)
    assert ks_distance([1, 2], [1, 2]) == 0.0
    # shift by 1 of {0, 1}: W1 = 1, reference std 0.5 -> 2
    assert wasserstein_samples([0.0, 1.0], [1.0, 2.0]) == pytest.approx(2.0)
    # the sketch versions agree with the exact ones on large samples (grid resolution 0.01)
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 20_000), rng.normal(0.3, 1.2, 20_000)
    sk = feature_sketch(a)
    assert ks_sketch(sk, b) == pytest.approx(ks_distance(a, b), abs=0.011)
    assert wasserstein_sketch(sk, b) == pytest.approx(wasserstein_samples(a, b), rel=0.05)
    assert ks_sketch(sk, a) <= 0.011 and wasserstein_sketch(sk, a) < 0.01
    # discrete values: KS of a count feature against itself is 0 even with ties
    counts = rng.poisson(1.0, 5000).astype(float)
    assert ks_sketch(feature_sketch(counts), counts) <= 0.011


def test_sketch_is_compact_and_handles_missing():
    sk = feature_sketch([1.0, 2.0, np.nan, 4.0])
    assert sk["n"] == 4 and sk["missing"] == 0.25 and len(sk["quantiles"]) == 101
    assert sum(sk["shares"]) == pytest.approx(1.0)
    empty = feature_sketch([np.nan, np.nan])
    assert empty["quantiles"] is None and np.isnan(psi_sketch(empty, [1.0]))


def test_policy_defaults_and_errors(tmp_path):
    p = policy_from_dict()
    assert (p.psi.warn, p.psi.alert) == (0.1, 0.25)
    assert p.psi.status(0.05) == "ok" and p.psi.status(0.1) == "warn" and p.psi.status(0.3) == "alert"
    assert p.churn_auc.status(0.55) == "warn" and p.churn_auc.status(0.45) == "alert"  # lower is worse
    assert p.psi.status(float("nan")) == "info"
    assert policy_from_dict({"drift": {"psi": {"warn": 0.2, "alert": None}}}).psi.status(5.0) == "warn"
    with pytest.raises(LtvcastError, match="unknown policy key"):
        policy_from_dict({"drift": {"pis": {"warn": 1}}})
    with pytest.raises(LtvcastError, match="warn"):
        policy_from_dict({"drift": {"psi": {"warn": "high"}}})
    bad = tmp_path / "p.yaml"
    bad.write_text("drift: [1, 2")
    from ltvcast.monitor import load_policy

    with pytest.raises(LtvcastError, match="not valid YAML"):
        load_policy(bad)
    assert worst(["ok", "info", "warn"]) == "warn" and worst([]) == "ok"


@pytest.mark.parametrize("over, match", [
    ({"drift": 5}, "drift must be a mapping"),  # was a TypeError traceback
    ({"drift": {"psi": {"warn": -0.1, "alert": 0.25}}}, "finite number >= 0"),  # every customer warned
    ({"accuracy": {"total_error_pct": {"warn": float("nan"), "alert": None}}}, "finite number"),
    ({"drift": {"psi": {"warn": 0.3, "alert": 0.1}}}, "less severe than warn"),
    ({"accuracy": {"churn_auc": {"warn": 0.5, "alert": 0.6}}}, "less severe than warn"),  # lower is worse
    ({"accuracy": {"min_elapsed_days": -5}}, "min_elapsed_days"),
    ({"retrain": {"min_total_error_gain_pct": -10}}, "min_total_error_gain_pct"),
    ({"drift": {"report_only": "frequency"}}, "list of column names"),  # was split into letters
])
def test_policy_rejects_malformed_values(over, match):
    with pytest.raises(LtvcastError, match=match):
        policy_from_dict(over)
    # edge values that stay valid: zero thresholds (alert on any drift), equal warn and alert
    assert policy_from_dict({"drift": {"psi": {"warn": 0.0, "alert": 0.0}}}).psi.status(0.0) == "alert"


def test_live_decile_mape_is_a_fraction_as_in_backtest_and_retrain():
    # 20 customers, predicted 10 each, realised 1..20: decile k (2 customers) sums 20 vs 4k-1 realised;
    # decile |error| / realised of each decile averaged = metrics.decile_mape, a fraction (was x100)
    from ltvcast.metrics import decile_mape

    exp = np.full(20, 10.0)
    act = np.arange(1.0, 21.0)
    rows, _ = accuracy_rows("run 1", exp, np.full(20, 0.5), (act > 5).astype(float), act, policy_from_dict(),
                            elapsed_days=30, horizon_days=90)
    (mape,) = [r["value"] for r in rows if r["statistic"] == "decile_mape"]
    assert mape == pytest.approx(decile_mape(act, exp)) and 0 < mape < 10


def test_policy_yaml_error_is_one_line(tmp_path):
    from ltvcast.monitor import load_policy

    bad = tmp_path / "p.yaml"
    bad.write_text("this is: [not yaml\n  {{{\n")
    with pytest.raises(LtvcastError, match="not valid YAML") as info:
        load_policy(bad)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------ simulator regimes
def _orders(out: Path) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(f) for f in sorted((out / "orders").glob("*.parquet")))


def test_regimes_change_only_what_they_say(tmp_path):
    kw = {"customers": 1500, "months": 24, "seed": 4, "dirty_rate": 0.0, "chunk_customers": 1500}
    base = simulate_shop(tmp_path / "a", **kw)
    same = simulate_shop(tmp_path / "b", **kw, params=ShopParams(regimes=()))
    for kind in ("orders", "order_items", "customers"):
        for fa, fb in zip(sorted((tmp_path / "a" / kind).glob("*")), sorted((tmp_path / "b" / kind).glob("*"))):
            assert fa.read_bytes() == fb.read_bytes()
    assert base.order_lines == same.order_lines
    simulate_shop(tmp_path / "c", **kw, params=ShopParams(regimes=(Regime("2023-01-01", purchase_rate=0.5),)))
    a, c = _orders(tmp_path / "a"), _orders(tmp_path / "c")
    ts = [pd.to_datetime(f["CreatedAt"], utc=True, errors="coerce") for f in (a, c)]
    before = [int((t < pd.Timestamp("2023-01-01", tz="UTC")).sum()) for t in ts]
    after = [int((t >= pd.Timestamp("2023-01-01", tz="UTC")).sum()) for t in ts]
    assert before[0] == before[1]  # nothing changes before the day
    assert 0.45 < after[1] / after[0] < 0.75  # repeat orders halved, first orders kept
    with pytest.raises(LtvcastError):
        Regime("2023-01-01", purchase_rate=0.0)
    with pytest.raises(LtvcastError):
        Regime("not a day")


# ------------------------------------------------------------------------------------------ a year of monitoring
def make_shop(folder: Path, seed: int, regimes=(), customers: int = 2500, months: int = 36) -> Path:
    """A simulated shop (2022-01 .. 2024-12 by default) ingested into ``folder/shop.duckdb``."""
    simulate_shop(folder, customers=customers, months=months, seed=seed, dirty_rate=0.0,
                  chunk_customers=customers, params=ShopParams(regimes=tuple(regimes)))
    db = folder / "shop.duckdb"
    with Store.open(db) as store:
        ingest_sources(load_config(folder / "sources.yaml"), store)
    return db


class DailyShop:
    """The BTYD inputs of every customer at any day, from one sorted array of purchase occasions (UTC days).

    Occasions are (customer, day) pairs with a sale; an occasion's value is its sales total (gross: the
    returns are left out of this fast path, unlike `rfm_summary`'s net basis). Reference and current
    inputs come from the same definition, so drift is measured like for like.
    """

    def __init__(self, tx: pd.DataFrame) -> None:
        sale = tx[tx["kind"] == "sale"]
        day = (sale["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[D]")
               .astype(np.int64))
        occ = (pd.DataFrame({"c": sale["customer_id"].to_numpy(), "d": day, "v": sale["amount"].astype(float)})
               .groupby(["c", "d"], sort=True)["v"].sum().reset_index())
        self.ids, code = np.unique(occ["c"].to_numpy(str), return_inverse=True)
        self.code, self.day, self.value = code.astype(np.int64), occ["d"].to_numpy(), occ["v"].to_numpy()
        self.start = np.searchsorted(self.code, np.arange(self.ids.size))  # first occasion of each customer
        self.cum = np.concatenate([[0.0], np.cumsum(self.value)])
        self.key = self.code * 100_000 + self.day

    def _count_before(self, d: int) -> np.ndarray:
        return np.searchsorted(self.key, np.arange(self.ids.size) * 100_000 + d) - self.start

    def rfm(self, cutoff) -> pd.DataFrame:
        """`customer_id, frequency, recency, T, monetary_value, total_spend, n_transactions` (weeks) at a cutoff."""
        d = int(pd.Timestamp(cutoff).tz_localize(None).to_datetime64().astype("datetime64[D]").astype(np.int64))
        n = self._count_before(d)
        seen = n > 0
        s, k = self.start[seen], n[seen]
        first, last = self.day[s], self.day[s + k - 1]
        total = self.cum[s + k] - self.cum[s]
        repeat = total - self.value[s]
        freq = (k - 1).astype(float)
        return pd.DataFrame({
            "customer_id": pd.array(self.ids[seen], dtype="string"),
            "frequency": freq,
            "recency": (last - first) / 7.0,
            "T": (d - first) / 7.0,
            "monetary_value": np.where(freq > 0, repeat / np.maximum(freq, 1), 0.0),
            "total_spend": total,
            "n_transactions": k.astype(float),
        })

    def window(self, customers: pd.Series, start, days: float) -> tuple[np.ndarray, np.ndarray]:
        """Occasions and sales of ``customers`` in ``[start, start + days)``."""
        d = int(pd.Timestamp(start).tz_localize(None).to_datetime64().astype("datetime64[D]").astype(np.int64))
        idx = np.searchsorted(self.ids, customers.to_numpy(str))
        lo = np.searchsorted(self.key, idx * 100_000 + d)
        hi = np.searchsorted(self.key, idx * 100_000 + d + int(round(days)))
        return (hi - lo).astype(float), self.cum[hi] - self.cum[lo]


class FastBTYD(BTYDForecaster):
    """A BTYD forecaster whose inputs come from a :class:`DailyShop` (the same model, cheap inputs)."""

    shop: DailyShop | None = None

    def _summary(self, data, cutoff):  # noqa: D102  (the base class's staticmethod, with the fast inputs)
        return self.shop.rfm(cutoff)


def monitor_year(db: Path, policy, first: int = 1, last: int = 365, regime_day=None) -> pd.DataFrame:
    """Monitor a BG/NBD model trained at DAY0 every day ``first..last`` after it; one row per day and check.

    Each day: input and prediction drift against the reference at DAY0, live accuracy of the latest weekly
    scoring run with >= min_elapsed_days matured (exact BTYD expectation at the elapsed days, minus the error
    of the same model on the same window 52 weeks earlier: `same_window_error`'s definition, with the fast
    inputs), and data health on the store.
    """
    history = open_history(db=db)
    shop = DailyShop(history.transactions)
    model = FastBTYD("bgnbd", n_draws=0)
    model.shop = shop
    model.fit(history, DAY0, HORIZON)
    log = history.store.ingest_log()

    def predict(at, days: float) -> tuple[pd.DataFrame, dict]:
        inputs = shop.rfm(at)
        return inputs, model.predict_columns(inputs, days)

    ref_inputs, ref_preds = predict(DAY0, HORIZON)
    reference = {"inputs": {c: feature_sketch(ref_inputs[c]) for c in JUDGED},
                 "predictions": {c: feature_sketch(ref_preds[c]) for c in ("pred_spend", "p_churn")}}
    out = []
    for i in range(first, last + 1):
        day = DAY0 + pd.Timedelta(days=i)
        inputs, preds = predict(day, HORIZON)
        rows = drift_rows(reference, inputs, pd.DataFrame({c: preds[c] for c in ("pred_spend", "p_churn")}), policy)
        k = (i - int(policy.min_elapsed_days)) // RUN_EVERY
        if k >= 0:
            run = DAY0 + pd.Timedelta(days=k * RUN_EVERY)
            e = float((day - run).days)
            at_run, exp = predict(run, e)
            tx, spend = shop.window(at_run["customer_id"], run, e)
            then = run - pd.Timedelta(days=364)
            at_then, exp_then = predict(then, e)
            base = total_error_pct(shop.window(at_then["customer_id"], then, e)[1], exp_then["pred_spend"])
            acc, _ = accuracy_rows(f"run {k}", exp["pred_spend"], exp["p_churn"], tx, spend, policy,
                                   elapsed_days=e, horizon_days=HORIZON, baseline_error=base, deciles=False)
            rows += acc
        rows += data_health_rows(history.store, day, policy, ingest_log=log)
        for r in rows:
            r["day"] = i
        out += rows
    history.store.close()
    frame = pd.DataFrame(out)
    if regime_day is not None:
        frame["after_change"] = frame["day"] >= (pd.Timestamp(regime_day, tz="UTC") - DAY0).days
    return frame


def daily_status(frame: pd.DataFrame) -> pd.Series:
    """The worst status of each day."""
    return frame.groupby("day")["status"].agg(lambda s: worst(list(s)))


def test_stable_shop_raises_few_alerts_over_a_year(tmp_path):
    """False alarms: the share of days with an alert over a year of daily monitoring, per seed, is <= 5 %."""
    policy = policy_from_dict()
    for seed in SEEDS:
        frame = monitor_year(make_shop(tmp_path / f"s{seed}", seed), policy)
        status = daily_status(frame)
        assert len(status) == 365
        rate = float((status == "alert").mean())
        print(f"seed {seed}: alert on {rate:.1%} of days, warn on {float((status == 'warn').mean()):.1%}")
        assert rate <= 0.05, frame[frame["status"] == "alert"].groupby(["check_kind", "statistic"]).size()


def test_purchase_rate_drop_is_alerted_within_30_days(tmp_path):
    """After purchase rates halve on 2024-05-01 (day 121), an alert fires within 30 days (measured: 19)."""
    change = 121
    db = make_shop(tmp_path / "rate", 1, [Regime("2024-05-01", purchase_rate=0.5)])
    frame = monitor_year(db, policy_from_dict(), first=change - 7, last=change + 30)
    status = daily_status(frame)
    assert (status[status.index < change] != "alert").all()  # no alert in the week before
    alerted = status[(status.index >= change) & (status == "alert")].index
    assert len(alerted) and alerted.min() - change <= 30
    first = frame[(frame["day"] == alerted.min()) & (frame["status"] == "alert")]
    assert "live_accuracy" in set(first["check_kind"])
    # the model over-predicts: the excess error is positive
    assert (first.loc[first["statistic"] == "excess_total_error_pct", "value"] > 50).all()


# ------------------------------------------------------------------------------------------ end to end
class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802  (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):  # keep the test output quiet
        pass


def test_score_monitor_end_to_end_with_webhook(tmp_path):
    db = make_shop(tmp_path / "shop", 3, customers=1200, months=27)  # 2022-01 .. 2024-03
    root, run = tmp_path / "models", CliRunner()
    common = ["--db", str(db), "--registry", str(root)]
    r = run.invoke(app, ["train", "--cutoff", "2024-01-01", "--models", "bgnbd", "--name", "shop",
                         "--horizon", "13w", *common])
    assert r.exit_code == 0, r.output
    assert (root / "shop" / "1" / "reference.json").is_file()
    r = run.invoke(app, ["score", "--model", "shop", "--cutoff", "2024-01-01", "--out", str(tmp_path / "p.parquet"),
                         *common])
    assert r.exit_code == 0 and "logged as scoring run 1" in r.output, r.output
    with Store.open(db, read_only=True) as store:
        runs = store.score_runs("shop")
        assert list(runs["model"]) == ["shop:1"] and runs["horizon_days"].iloc[0] == 91.0
        logged = store.score_run_predictions(1)
    assert len(logged) == runs["customers"].iloc[0] and logged["customer_id"].is_unique
    assert logged["pred_spend"].sum() == pytest.approx(runs["pred_spend_total"].iloc[0])

    r = run.invoke(app, ["monitor", "--model", "shop", "--at", "2024-03-01", "--json", *common])
    result = json.loads(r.output)
    assert r.exit_code == {"ok": 0, "warn": 1, "alert": 2}[result["status"]]
    kinds = {c["check_kind"] for c in result["checks"]}
    assert kinds == {"input_drift", "prediction_drift", "live_accuracy", "data_health", "model_age"}
    acc = {c["statistic"]: c for c in result["checks"] if c["check_kind"] == "live_accuracy"}
    assert "exact BTYD expectation" in acc["churn_auc"]["subject"] and 0.5 < acc["churn_auc"]["value"] <= 1.0
    assert "excess_total_error_pct" in acc  # a year of history before the run: the baseline exists

    # an alert (a policy that alerts on any drift) is POSTed to the webhook and the exit code is 2
    policy = tmp_path / "policy.yaml"
    policy.write_text("drift:\n  psi: {warn: 0.0, alert: 0.0}\n")
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        r = run.invoke(app, ["monitor", "--model", "shop", "--at", "2024-03-01", "--policy", str(policy),
                             "--webhook", url, *common])
    finally:
        server.shutdown()
    assert r.exit_code == 2, r.output
    (body,) = _Receiver.received
    assert body["status"] == "alert" and body["model"] == "shop:1" and body["alerts"]
    assert all(a["status"] in ("warn", "alert") for a in body["alerts"])

    with Store.open(db, read_only=True) as store:
        log = store.monitor_log("shop")
    assert log["checked_at"].nunique() == 2 and set(log["model"]) == {"shop:1"}

    # the report's model-health section and the service's gauges
    from ltvcast.monitor import health_section
    from ltvcast.serve.metrics import Metrics

    section = health_section(db, "shop", root)
    assert section.title == "Model health" and "ALERT" in section.tables[0][0]
    assert health_section(db, "other", root) is None
    metrics = Metrics()
    checks = pd.DataFrame(result["checks"]).astype({"value": float})
    metrics.set_monitoring("shop:1", checks, result["status"])
    text = metrics.text().decode()
    assert 'ltvcast_live_accuracy{model="shop:1",statistic="churn_auc"}' in text
    assert 'ltvcast_drift{kind="input_drift",model="shop:1",statistic="psi",subject="frequency"}' in text

    # the real app reads the latest run from the store for /metrics
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from ltvcast.registry import load_model
    from ltvcast.serve.app import Service, create_app
    from ltvcast.serve.model import servable
    from ltvcast.serve.sync import ShopSettings

    served = servable(load_model("shop", root))
    holder = SimpleNamespace(current=served, reload_failures=0, on_change=None, stop=lambda: None)
    service = Service(online=SimpleNamespace(ping=lambda: None), models=holder,
                      settings=ShopSettings("UTC", "net", None), keys=None, monitor_db=db)
    with TestClient(create_app(service)) as client:
        served_text = client.get("/metrics").text
    assert 'ltvcast_monitor_status{model="shop:1"} 2.0' in served_text  # the latest run is the alerting one
    assert 'ltvcast_live_accuracy{model="shop:1",statistic="churn_auc"}' in served_text

    # bad input: a clear error, exit 2, no traceback
    r = run.invoke(app, ["monitor", "--model", "nope", *common])
    assert r.exit_code == 2 and "Traceback" not in r.output
    r = run.invoke(app, ["monitor", "--model", "shop", "--webhook", "ftp://x", "--policy", str(policy), *common])
    assert r.exit_code == 2
    # a replay before the training cutoff would judge a model on data it was fitted on (was: model age -214 days, ok)
    r = run.invoke(app, ["monitor", "--model", "shop", "--at", "2023-06-01", "--no-log", *common])
    assert r.exit_code == 2 and "before shop:1's training cutoff 2024-01-01" in r.output, r.output
    # a bad webhook URL is refused even when nothing would be posted (was: exit 0 with the default policy)
    r = run.invoke(app, ["monitor", "--model", "shop", "--at", "2024-03-01", "--no-log", "--webhook", "ftp://x",
                         *common])
    assert r.exit_code == 2 and "http://" in r.output, r.output
    # an unreachable receiver: the result is still printed before the error (was: only the error)
    r = run.invoke(app, ["monitor", "--model", "shop", "--at", "2024-03-01", "--no-log", "--json", "--policy",
                         str(policy), "--webhook", "http://127.0.0.1:9/hook", *common])
    assert r.exit_code == 2 and '"status": "alert"' in r.output and "cannot reach webhook" in r.output, r.output
