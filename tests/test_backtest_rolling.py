"""Rolling-origin backtest: several cutoffs, one horizon, mean ± std per model (CDNOW sample, BTYD)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ltvcast.cli import app
from ltvcast.data.datasets import open_history
from ltvcast.errors import CutoffError
from ltvcast.evaluate import evaluate
from ltvcast.evaluate.backtest import run_backtest, run_rolling_backtest, write_rolling_backtest

MODELS = ["paretonbd", "naive"]
CUTOFFS = ["1998-01-01", "1997-10-01", "1997-11-01"]  # out of order on purpose
H = 182.0


@pytest.fixture(scope="module")
def sample():
    return open_history(dataset="cdnow-sample")


@pytest.fixture(scope="module")
def rolling(sample):
    return run_rolling_backtest(sample, CUTOFFS, H, MODELS)


def test_runs_oldest_first_with_the_last_window_clipped(rolling):
    assert [str(c.date()) for c in rolling.cutoffs] == ["1997-10-01", "1997-11-01", "1998-01-01"]
    # CDNOW ends 1998-06-30: 182 days from 1998-01-01 are scored on 181, with a note
    assert [run.horizon_days for run in rolling.runs] == [182.0, 182.0, 181.0]
    clipped = [n for n in rolling.notes if "clipped" in n]
    assert len(clipped) == 1 and clipped[0].startswith("cutoff 1998-01-01: ")
    assert list(rolling.metrics["model"]) == MODELS * 3
    assert rolling.predictions.groupby("cutoff").size().tolist() == [2 * 2357] * 3
    assert not rolling.actuals.duplicated(["cutoff", "customer_id"]).any()


@pytest.mark.parametrize("cutoff", ["1997-10-01", "1998-01-01"])
def test_per_cutoff_metrics_equal_a_single_cutoff_run(sample, rolling, cutoff):
    single = run_backtest(sample, cutoff, H, MODELS)
    part = rolling.metrics[rolling.metrics["cutoff"] == pd.Timestamp(cutoff, tz="UTC")].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, single.metrics)
    preds = rolling.predictions[rolling.predictions["cutoff"] == pd.Timestamp(cutoff, tz="UTC")]
    pd.testing.assert_frame_equal(preds.reset_index(drop=True), single.predictions)


def test_stacked_frames_score_to_the_same_metrics(rolling):
    again = evaluate(rolling.predictions, rolling.actuals).set_index(["cutoff", "model"]).sort_index()
    pd.testing.assert_frame_equal(again, rolling.metrics.set_index(["cutoff", "model"]).sort_index())


def test_mean_and_std_are_numpys_over_the_cutoff_rows(rolling):
    summary = rolling.summary.set_index("model")
    assert list(summary.index) == MODELS
    for model in MODELS:
        rows = rolling.metrics[rolling.metrics["model"] == model]
        assert summary.loc[model, "n_cutoffs"] == 3
        for col in ("spend_mae", "gini_norm", "churn_brier", "total_spend_error_pct", "next_purchase_cindex"):
            values = rows[col].to_numpy(float)
            assert summary.loc[model, f"{col}_mean"] == pytest.approx(np.mean(values), rel=1e-12)
            assert summary.loc[model, f"{col}_std"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
            assert summary.loc[model, f"{col}_std"] > 0
    assert np.isnan(summary.loc["paretonbd", "horizon_days"])  # 182 at two cutoffs, 181 at the last


def test_written_files(rolling, tmp_path):
    paths = write_rolling_backtest(rolling, tmp_path, dataset="cdnow-sample")
    assert sorted(p.name for p in paths.values()) == [
        "metrics.csv", "metrics_summary.csv", "predictions.parquet", "report.html"
    ]
    metrics = pd.read_csv(paths["metrics"])
    assert len(metrics) == 6 and metrics["cutoff"].nunique() == 3
    summary = pd.read_csv(paths["summary"])
    assert list(summary["model"]) == MODELS
    assert summary["spend_mae_mean"].to_numpy() == pytest.approx(rolling.summary["spend_mae_mean"].to_numpy())
    assert pd.read_parquet(paths["predictions"])["cutoff"].nunique() == 3
    html = paths["report"].read_text(encoding="utf-8")
    assert "Across 3 cutoffs (mean ± standard deviation)" in html
    assert "cutoff 1998-01-01" in html  # charts are the latest cutoff's
    assert html.count("<svg") == len(MODELS) + 1


@pytest.mark.parametrize(
    "cutoffs, message",
    [
        (["1998-01-01"], "at least two cutoffs"),
        (["1997-10-01", "1997-10-01T00:00"], "cutoffs repeat: 1997-10-01"),
        ("1997-10-01", "list of dates"),
        (["1997-10-01", "01/11/1997"], "not a date"),
        (["1997-10-01", "1998-03-01"], r"1998-03-01 .. 1998-08-29 reaches past the end of the data"),
    ],
)
def test_bad_cutoffs_fail_before_any_fit(sample, cutoffs, message):
    steps = []
    with pytest.raises(CutoffError, match=message):
        run_rolling_backtest(sample, cutoffs, H, MODELS, on_step=steps.append)
    assert steps == []


runner = CliRunner()


def test_cli_rolling_backtest(tmp_path):
    out = tmp_path / "bt"
    args = ["backtest", "--dataset", "cdnow-sample", "--cutoffs", "1997-10-01, 1998-01-01", "--horizon", "26w",
            "--models", "bgnbd", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "mean ± std" in result.output and " ± " in result.output
    assert "cutoff 1998-01-01: The horizon window was clipped" in result.output
    assert (out / "metrics_summary.csv").exists()
    assert len(pd.read_csv(out / "metrics.csv")) == 2


@pytest.mark.parametrize(
    "extra",
    [[], ["--cutoff", "1998-01-01", "--cutoffs", "1997-10-01,1998-01-01"]],
)
def test_cli_needs_exactly_one_of_cutoff_and_cutoffs(extra):
    result = runner.invoke(app, ["backtest", "--dataset", "cdnow-sample", *extra])
    assert result.exit_code == 2
    assert "give either --cutoff DATE or --cutoffs" in result.output
    assert "Traceback" not in result.output
