"""Category commands at the edges of the data (a break-it run): a failed `train --categories` registers nothing;
`--evaluate` refuses a horizon window the data has not observed, as `ltvcast backtest` does."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from ltvcast.cli import app
from ltvcast.models.catalog import make_forecaster


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    from ltvcast.data.datasets import open_history
    from ltvcast.ingest.config import load_config
    from ltvcast.ingest.multisource import ingest_sources
    from ltvcast.simulate import simulate_shop
    from ltvcast.store import Store

    out = tmp_path_factory.mktemp("categories_edges")
    simulate_shop(out / "sim", customers=300, months=24, seed=3, start="2021-10-01", dirty_rate=0.0)
    db = out / "shop.duckdb"
    with Store.open(db) as store:
        ingest_sources(load_config(out / "sim" / "sources.yaml"), store)
    history = open_history(db=db)
    try:
        end = pd.Timestamp(history.observation_end)
    finally:
        history.store.close()
    return {"db": db, "end": end}


def test_failed_train_with_categories_registers_nothing(shop, tmp_path):
    # the split needs a training window a horizon before the cutoff: 13 weeks before 2021-12-01 has no data;
    # the model used to be registered anyway (one version per try) without a split
    from ltvcast.registry import list_models

    reg = tmp_path / "models"
    res = CliRunner().invoke(app, ["train", "--db", str(shop["db"]), "--cutoff", "2021-12-01", "--horizon", "13w",
                                   "--models", "naive", "--name", "early", "--registry", str(reg), "--categories"])
    assert res.exit_code == 2 and "no training window before" in res.output, res.output
    assert not reg.exists() or list_models(reg).empty


def test_evaluate_refuses_a_window_past_the_data(shop, tmp_path):
    # recall and WAPE were printed over a window mostly not yet observed, with no warning
    from ltvcast.data.datasets import open_history

    cutoff = (shop["end"] - pd.Timedelta(days=27)).date().isoformat()  # 13 weeks from here: 63 days unobserved
    history = open_history(db=shop["db"])
    try:
        pred = make_forecaster("naive").fit(history, cutoff, 91.0).predict(history, cutoff, 91.0)
    finally:
        history.store.close()
    preds = tmp_path / "pred.parquet"
    pred.to_parquet(preds)
    runner = CliRunner()
    for command in ("next-categories", "demand"):
        out = tmp_path / f"{command}.csv"
        res = runner.invoke(app, [command, "--predictions", str(preds), "--db", str(shop["db"]), "--evaluate",
                                  "--out", str(out)])
        assert res.exit_code == 2, (command, res.output)
        assert "reaches past the end of the data" in res.output and "Traceback" not in res.output, res.output
        assert not out.exists()
