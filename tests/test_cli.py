"""The command line as a user drives it: demo, ingest → backtest → forecast, errors, help."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ltvcast.cli import app

SHOP = Path(__file__).parent / "data/shop/orders.csv"
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_demo_writes_every_output(tmp_path):
    out = tmp_path / "demo"
    result = invoke("demo", "--out", out)
    assert result.exit_code == 0, result.output
    for name in ("ltvcast.duckdb", "predictions.parquet", "metrics.csv", "report.html", "forecast.parquet"):
        assert (out / name).exists(), name
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics["model"]) == ["naive", "bgnbd", "paretonbd"]
    forecast = pd.read_parquet(out / "forecast.parquet")
    assert len(forecast) == 3 * 23570
    assert (forecast["cutoff"] == pd.Timestamp("1998-07-01", tz="UTC")).all()
    assert (forecast["horizon_days"] == 364).all()
    assert "normalized Gini" in result.output and "paretonbd" in result.output


def test_hand_written_csv_with_other_column_names(tmp_path):
    db = tmp_path / "shop.duckdb"
    mapping = "customer_id=Client,timestamp=OrderDate,amount=Total,order_id=OrderNo,quantity=Items"
    result = invoke("ingest", SHOP, "--db", db, "--map", mapping, "--dayfirst")
    assert result.exit_code == 0, result.output
    assert "ids normalised" in result.output
    out = tmp_path / "bt"
    result = invoke("backtest", "--db", db, "--cutoff", "2021-05-01", "--horizon", "60d", "--models", "naive", "--out", out)
    assert result.exit_code == 0, result.output
    preds = pd.read_parquet(out / "predictions.parquet")
    # 11 customers bought before 2021-05-01; "17850.0" and "17850" are one customer.
    assert preds["customer_id"].nunique() == 11
    assert set(preds["customer_id"]) >= {"00012", "17850"}
    assert (preds["horizon_days"] == 60).all()
    metrics = pd.read_csv(out / "metrics.csv")
    # Actual spend in [2021-05-01, 2021-06-30): 30 + 7.5 + 19 + 20 + 45 + 13 + 62.
    assert metrics["total_spend_actual"].iloc[0] == pytest.approx(196.5)
    fc = tmp_path / "fc.csv"
    result = invoke("forecast", "--db", db, "--cutoff", "2021-07-12", "--horizon", "12m", "--models", "naive", "--out", fc)
    assert result.exit_code == 0, result.output
    assert (pd.read_csv(fc)["horizon_days"] == 365).all()
    # Eleven customers over four months cannot identify BG/NBD + Gamma-Gamma by maximum likelihood:
    # the fit answers with weak priors and says so with the counts (issue 10; this was an error before).
    result = invoke("backtest", "--db", db, "--cutoff", "2021-05-01", "--horizon", "60d", "--models", "bgnbd", "--out", out)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "11 customers, 5 with repeat purchases: too few to estimate BG/NBD" in text
    assert "5 repeat buyers: too few to estimate Gamma-Gamma" in text
    assert "Traceback" not in result.output


def test_future_cutoff_is_refused_with_both_dates(tmp_path):
    result = invoke("forecast", "--dataset", "cdnow-sample", "--cutoff", "1999-01-01", "--out", tmp_path / "f.parquet")
    assert result.exit_code == 2
    assert "1999-01-01" in result.output and "1998-06-30" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (("backtest", "--cutoff", "1998-01-01"), "exactly one source"),
        (("backtest", "--dataset", "nope", "--cutoff", "1998-01-01"), "unknown dataset"),
        (("backtest", "--dataset", "cdnow-sample", "--cutoff", "1998-01-01", "--horizon", "6x"), "horizon"),
        (("backtest", "--dataset", "cdnow-sample", "--cutoff", "1998-01-01", "--models", "magic"), "unknown model"),
        (("backtest", "--dataset", "cdnow-sample", "--cutoff", "yesterday-ish"), "not a date"),
    ],
)
def test_user_errors_are_one_clean_line(args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["ingest", "backtest", "forecast", "demo"])
def test_every_command_has_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.output
