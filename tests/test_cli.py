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
    result = invoke("demo", "--out", out, "--models", "naive,bgnbd,paretonbd")  # the learned models: docs/speed.md
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


def test_backtest_failed_model_shown_grouped_and_untruncated(tmp_path, monkeypatch):
    """Issue 11: a failed model keeps its column with the reason; groups; a pipe never cuts a table."""
    import ltvcast.models.forecast as fc
    from ltvcast.errors import ConvergenceError

    real = fc.make_forecaster

    def make(name, calendar=None):
        model = real(name, calendar)
        if name == "paretonbd":

            def fail(*_args, **_kwargs):
                raise ConvergenceError("paretonbd: the likelihood is flat (test)")

            model.fit = fail
        return model

    monkeypatch.setattr(fc, "make_forecaster", make)
    out = tmp_path / "bt"
    result = invoke(
        "backtest", "--dataset", "cdnow-sample", "--cutoff", "1997-10-01", "--horizon", "26w",
        "--models", "naive,bgnbd,paretonbd", "--out", out,
    )
    assert result.exit_code == 0, result.output  # the others were scored
    text = result.output
    assert "paretonbd failed: paretonbd: the likelihood is flat (test)" in text
    assert "1 model(s) failed; the others were scored (exit status 0)" in text
    for group in ("Value", "Ranking", "Churn"):
        assert f"{group} — " in text
    # the failed model keeps its column: every row of the value table reads "failed" under it
    assert text.count(" failed ") >= 9
    # printed to a pipe the table is not cut: full numbers and labels, no ellipsis
    metrics = pd.read_csv(out / "metrics.csv")
    total = metrics.loc[metrics["model"] == "bgnbd", "total_spend_pred"].iloc[0]
    assert f"{total:,.0f}" in text
    assert "…" not in text.split("failed:")[0]
    assert "decile calibration MAPE (%)" in text and "top-decile capture (%)" in text
    mape = metrics.loc[metrics["model"] == "naive", "decile_mape"].iloc[0]
    assert f"{mape:.1%}" in text
    html = (out / "report.html").read_text(encoding="utf-8")
    assert '<tr class="failed">' in html and "the likelihood is flat (test)" in html
    assert "Revenue basis" in html and "net (sales minus returns and refunds)" in html
    assert "Currency" in html


def test_rolling_summary_tables_keep_a_model_that_failed_at_every_cutoff():
    import io

    from rich.console import Console

    from ltvcast.cli._show import show, summary_tables

    summary = pd.DataFrame(
        {"model": ["naive"], "n_cutoffs": [2], "decile_mape_mean": [0.1234], "decile_mape_std": [0.0101],
         "gini_norm_mean": [0.5], "gini_norm_std": [0.01]}
    )
    tables = summary_tables(summary, {"bgnbd": "cutoff 1997-10-01: flat"})
    assert [t.title for t in tables] == ["Value — how much each customer spends and buys", "Ranking — who spends most"]
    buf = io.StringIO()
    show(Console(file=buf, width=40), *tables)  # a file: printed wide, never cut
    text = buf.getvalue()
    assert "12.3% ± 1.0%" in text and "decile calibration MAPE (%)" in text
    assert "bgnbd" in text and text.count("failed") == 2
    assert "…" not in text
