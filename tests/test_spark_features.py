"""Dual execution: every feature family, the sequences, rfm_summary, labels and scoring on DuckDB and on local Spark.

The same SQL files run on both engines (Spark through SQLGlot); the results
must agree within 1e-9 relative, for the same customers, with the same
dtypes, over simulated shops with dirty rows and returns (two seeds: UTC /
net, and Europe/Berlin / gross). The families are enumerated from the
catalog and the SQL folder, so a family added later is compared too, and a
SQL file that is neither a registered family nor a known step fails.

One Spark session (``local[2]``) for the whole run. Without Java the tests
skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
from importlib import resources

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark", reason="the Spark engine needs the ltvcast[spark] extra (pip install -e '.[dev]')")

from ltvcast.engines.lake import write_source  # noqa: E402
from ltvcast.engines.transpile import lint  # noqa: E402
from ltvcast.features import build, horizon_labels, rfm_summary  # noqa: E402
from ltvcast.features.build import feature_sql  # noqa: E402
from ltvcast.features.catalog import FAMILIES, feature_specs  # noqa: E402
from ltvcast.ingest.config import load_config  # noqa: E402
from ltvcast.ingest.multisource import ingest_sources  # noqa: E402
from ltvcast.simulate import simulate_shop  # noqa: E402
from ltvcast.store import Store  # noqa: E402

CUTOFF = "2023-01-01"
RTOL = 1e-9
#: (seed, shop time zone, revenue basis)
SHOPS = ((3, "UTC", "net"), (5, "Europe/Berlin", "gross"))


@pytest.fixture(scope="session")
def spark():
    if shutil.which("java") is None:
        reason = "no Java on the PATH: the Spark engine needs a Java 17 runtime (apt-get install openjdk-17-jre-headless)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI must run the Spark tests")
        pytest.skip(reason)
    from ltvcast.engines.spark import session

    spark = session(
        "local[2]",
        app_name="ltvcast-tests",
        shuffle_partitions=2,
        conf={
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.codegen.wholeStage": "false",  # tiny tables: compiling costs more than it saves
            "spark.default.parallelism": "2",
        },
    )
    spark.sparkContext.setLogLevel("ERROR")
    yield spark
    spark.stop()


class Shop:
    """One simulated shop: its store, its Parquet copy, and both engines' results (computed once)."""

    def __init__(self, root, seed: int, timezone: str, basis: str):
        simulate_shop(root / "sim", customers=250, months=14, seed=seed, dirty_rate=0.02)
        self.db = root / "shop.duckdb"
        with Store.open(self.db) as store:
            ingest_sources(load_config(root / "sim" / "sources.yaml"), store)
            store.set_shop("EUR", timezone, basis)
            write_source(store.connection, root / "lake")
        self.lake = str(root / "lake")
        self.timezone, self.basis = timezone, basis
        with Store.open(self.db, read_only=True) as store:
            self.tx = store.transactions()
            self.duck = build(store, CUTOFF)
        self.cache: dict[str, object] = {}


@pytest.fixture(scope="session", params=SHOPS, ids=lambda p: f"seed{p[0]}-{p[1]}-{p[2]}")
def shop(request, tmp_path_factory, spark):
    from ltvcast.features.spark import build_spark, open_shop

    seed, tz, basis = request.param
    s = Shop(tmp_path_factory.mktemp(f"spark-shop{seed}"), seed, tz, basis)
    s.spark_shop = open_shop(spark, s.lake)
    feats = build_spark(s.spark_shop, CUTOFF)
    s.spark = feats.to_feature_set()
    feats.release()
    return s


def assert_close(duck: pd.Series, spark: pd.Series, what: str) -> None:
    assert duck.dtype == spark.dtype, f"{what}: dtype {duck.dtype} (DuckDB) vs {spark.dtype} (Spark)"
    if pd.api.types.is_numeric_dtype(duck):
        a, b = duck.to_numpy(float), spark.to_numpy(float)
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=0, equal_nan=True, err_msg=what)
    else:
        pd.testing.assert_series_equal(duck, spark, check_names=False, obj=what)


# -- the definitions: one set of SQL files, all of it transpiles -------------------


def test_every_sql_file_is_a_known_step_and_transpiles_faithfully():
    files = {p.name[:-4] for p in resources.files("ltvcast.features").joinpath("sql").iterdir() if p.name.endswith(".sql")}
    for tz, basis, population in (("UTC", "net", "buyers"), ("Europe/Berlin", "gross", "all")):
        sql = feature_sql(CUTOFF, timezone=tz, revenue_basis=basis, population=population)
        assert files <= set(sql), f"SQL files that feature_sql does not run (no Spark twin): {files - set(sql)}"
        for name, text in sql.items():
            assert lint(text, name) == [], name


def test_lint_refuses_the_known_gaps():
    problems = lint(
        "SELECT list_sum(x), ISODOW(day), ts AT TIME ZONE 'Europe/Berlin', day - DATE '2024-01-01', my_udf(x), "
        "SUM(x) OVER (ORDER BY day RANGE BETWEEN 1 PRECEDING AND CURRENT ROW) FROM t",
        "gaps.sql",
    )
    text = "\n".join(problems)
    for needle in ("list_sum", "DayOfWeekIso", "AT TIME ZONE", "date minus date", "my_udf", "RANGE"):
        assert needle in text
    assert len(problems) == 6


# -- the same results -----------------------------------------------------------------


def test_same_customers_and_columns(shop):
    assert shop.spark.customers["customer_id"].tolist() == shop.duck.customers["customer_id"].tolist()
    assert list(shop.spark.customers.columns) == list(shop.duck.customers.columns)
    assert len(shop.duck.customers) > 100


@pytest.mark.parametrize("family", FAMILIES)
def test_family_equal_on_both_engines(shop, family):
    cols = [s.name for s in feature_specs(shop.duck.windows) if s.family == family]
    assert cols, f"family {family} has no catalog columns"
    for col in cols:
        assert_close(shop.duck.customers[col], shop.spark.customers[col], f"{family}.{col}")


def test_sequences_equal(shop):
    assert shop.spark.sequences.dtype == shop.duck.sequences.dtype
    np.testing.assert_allclose(shop.spark.sequences, shop.duck.sequences, rtol=RTOL, atol=0)
    assert shop.duck.sequences.any()
    assert np.array_equal(shop.spark.period_starts, shop.duck.period_starts)


def test_rfm_summary_equal(shop):
    from ltvcast.features.spark import rfm_frame, rfm_summary_spark

    unit = "W" if shop.timezone == "UTC" else "D"  # one Spark run per shop: each unit once

    duck = rfm_summary(shop.tx, CUTOFF, unit, timezone=shop.timezone, revenue_basis=shop.basis,
                       allow_future_cutoff=True)
    spark = rfm_frame(rfm_summary_spark(shop.spark_shop, CUTOFF, unit))
    assert list(spark.columns) == list(duck.columns)
    assert spark["customer_id"].tolist() == duck["customer_id"].tolist()
    for col in duck.columns:
        assert_close(duck[col], spark[col], f"rfm_summary.{col}")
    assert (duck["frequency"] > 0).sum() > 20


def test_horizon_labels_equal(shop):
    from ltvcast.features.spark import horizon_labels_spark

    ids = shop.duck.customers["customer_id"]
    duck = horizon_labels(shop.tx, ids, CUTOFF, 90, timezone=shop.timezone, revenue_basis=shop.basis)
    spark_ids = shop.spark_shop.spark.createDataFrame(pd.DataFrame({"customer_id": ids.astype(object)}))
    spark = (
        horizon_labels_spark(shop.spark_shop, spark_ids, CUTOFF, 90).toPandas()
        .sort_values("customer_id").reset_index(drop=True)
    )
    assert spark["customer_id"].tolist() == duck["customer_id"].tolist()
    for col in ("actual_transactions", "actual_spend"):
        assert_close(duck[col], spark[col], f"labels.{col}")
    assert (duck["actual_transactions"] > 0).sum() > 10


def test_next_purchase_labels_equal(shop):
    from ltvcast.features.labels import window_labels
    from ltvcast.features.spark import window_labels_spark

    ids = shop.duck.customers["customer_id"]
    duck = window_labels(shop.tx, ids, CUTOFF, 120, timezone=shop.timezone, revenue_basis=shop.basis)
    spark_ids = shop.spark_shop.spark.createDataFrame(pd.DataFrame({"customer_id": ids.astype(object)}))
    spark = (
        window_labels_spark(shop.spark_shop, spark_ids, CUTOFF, 120).toPandas()
        .sort_values("customer_id").reset_index(drop=True)
    )
    assert spark["customer_id"].tolist() == duck["customer_id"].astype(object).tolist()
    for col in ("actual_transactions", "actual_spend", "next_purchase_days"):
        assert_close(duck[col], spark[col], f"window_labels.{col}")
    days = duck["next_purchase_days"]
    # a next purchase exactly when the window has an occasion, on one of its 120 days
    assert (days.notna() == (duck["actual_transactions"] > 0)).all()
    assert days.notna().sum() > 10 and days.min() >= 0 and days.max() <= 119 and days.nunique() > 5


def test_scoring_equal(shop, tmp_path):
    from ltvcast.data.datasets import open_history
    from ltvcast.models.catalog import make_forecaster
    from ltvcast.registry import load_model, save_model
    from ltvcast.serve.score import score
    from ltvcast.serve.spark_score import score_spark

    history = open_history(db=shop.db)
    try:
        model = make_forecaster("bgnbd").fit(history, CUTOFF, 91.0)
        save_model(model, name="clv", cutoff=CUTOFF, horizon_days=91.0, history=history, root=tmp_path / "reg")
        registered = load_model("clv", tmp_path / "reg")
        score(registered, history, CUTOFF, 91.0, tmp_path / "duck.parquet")
    finally:
        history.store.close()
    done = score_spark(registered, shop.spark_shop, CUTOFF, 91.0, str(tmp_path / "spark"), partitions=3)
    duck = pd.read_parquet(tmp_path / "duck.parquet")
    spark = pd.read_parquet(tmp_path / "spark").sort_values("customer_id").reset_index(drop=True)
    assert done.customers == len(duck) == len(spark)
    assert spark["customer_id"].tolist() == duck["customer_id"].tolist()
    assert spark["model"].unique().tolist() == ["clv:1"]
    for col in ("pred_transactions", "pred_spend", "p_churn", "p_alive", "horizon_days"):
        np.testing.assert_allclose(spark[col], duck[col], rtol=RTOL, atol=0, equal_nan=True, err_msg=col)
    assert (pd.to_datetime(spark["cutoff"]).dt.tz_localize(None) == pd.to_datetime(duck["cutoff"]).dt.tz_localize(None)).all()


def test_gbm_scoring_equal(shop, tmp_path):
    """gbm on Spark: the feature table from build_spark, the inputs made per executor batch, the same predictions."""
    from ltvcast.data.datasets import open_history
    from ltvcast.models.learned.gbm import GBMForecaster
    from ltvcast.registry import load_model, save_model
    from ltvcast.serve.score import score
    from ltvcast.serve.spark_score import score_spark

    calendar = "on" if shop.timezone == "UTC" else "off"  # the calendar path on one shop, its absence on the other
    history = open_history(db=shop.db)
    try:
        model = GBMForecaster(n_windows=2, stride_days=56, max_rounds=15, early_stopping_rounds=5,
                              min_data_in_leaf=10, n_jobs=1, calendar_inputs=calendar)
        model.fit(history, CUTOFF, 91.0)
        assert model.calendar_used_ == (calendar == "on")
        save_model(model, name="gbm", cutoff=CUTOFF, horizon_days=91.0, history=history, root=tmp_path / "reg")
        registered = load_model("gbm", tmp_path / "reg")
        score(registered, history, CUTOFF, 91.0, tmp_path / "duck.parquet")
    finally:
        history.store.close()
    done = score_spark(registered, shop.spark_shop, CUTOFF, 91.0, str(tmp_path / "spark"), partitions=3)
    duck = pd.read_parquet(tmp_path / "duck.parquet")
    spark = pd.read_parquet(tmp_path / "spark").sort_values("customer_id").reset_index(drop=True)
    assert done.customers == len(duck) == len(spark) > 100
    assert spark["customer_id"].tolist() == duck["customer_id"].tolist()
    assert spark["model"].unique().tolist() == ["gbm:1"]
    for col in ("pred_transactions", "pred_spend", "p_churn", "pred_spend_p10", "pred_spend_p50", "pred_spend_p90",
                "pred_next_purchase_days", "horizon_days"):
        np.testing.assert_allclose(spark[col], duck[col], rtol=RTOL, atol=0, equal_nan=True, err_msg=col)
    assert duck["pred_spend"].nunique() > 20 and duck["p_alive"].isna().all() and spark["p_alive"].isna().all()


def test_models_spark_cannot_score_are_refused_with_the_reason():
    from ltvcast.models.catalog import make_forecaster
    from ltvcast.models.learned.gbm import GBMForecaster
    from ltvcast.serve.spark_score import _refusal

    assert _refusal(GBMForecaster(), "clv:1") is None
    assert _refusal(make_forecaster("bgnbd"), "clv:1") is None
    hybrid = _refusal(GBMForecaster("hybrid", btyd_features=True), "clv:3")
    assert hybrid.startswith("clv:3 is a hybrid model") and "Pareto/NBD" in hybrid and "--db" in hybrid
    deep = _refusal(make_forecaster("deep"), "seq:2")
    assert deep.startswith("seq:2 is a deep model") and "PyTorch" in deep
