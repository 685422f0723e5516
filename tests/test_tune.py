"""`ltvcast tune`: a tiny gbm study on the CDNOW sample (2,357 customers), seconds per trial.

* the same seed gives the same trials (settings and scores); another seed other settings;
* trials read nothing at or after the cutoff C: every transaction from C on is changed,
  added or deleted (frame and store) and the trials score the same; a change inside the
  trial window [C', C) does change the score (the test has teeth);
* trial 0 is the model's defaults; the best trial is the best score;
* the registry manifest holds the study; bad arguments fail before any fit, in one line.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pandas as pd
import pytest
from typer.testing import CliRunner

from ltvcast.cli import app
from ltvcast.data.datasets import open_history
from ltvcast.errors import CutoffError, LtvcastError
from ltvcast.evaluate.tune import SEARCH_SPACES, tune
from ltvcast.models.learned.gbm import GBMForecaster
from ltvcast.registry import load_model

C = "1998-04-01"
H = 91.0  # C' = C − H = 1997-12-31
SMALL = dict(n_windows=2, stride_days=56, max_rounds=15, early_stopping_rounds=5, n_jobs=1)
SMALL_CLI = ",".join(f"{k}={v}" for k, v in SMALL.items())
SETTINGS = list(SEARCH_SPACES["gbm"])


def _history(mutate: str = ""):
    h = open_history(dataset="cdnow-sample")
    for sql in mutate.split(";"):
        if sql.strip():
            h.store.connection.execute(sql)
    return replace(h, transactions=h.store.transactions())


SCRAMBLE_FROM_C = """
UPDATE transactions SET amount = amount * 7 + 3, quantity = 99 WHERE timestamp >= TIMESTAMP '1998-04-01';
INSERT INTO transactions SELECT * REPLACE (TIMESTAMP '1998-04-01' + (timestamp - TIMESTAMP '1997-01-01') AS timestamp)
    FROM transactions WHERE timestamp < TIMESTAMP '1997-03-01';
INSERT INTO transactions SELECT * REPLACE ('new-1' AS customer_id, TIMESTAMP '1998-04-01' AS timestamp)
    FROM transactions LIMIT 1;
DELETE FROM transactions WHERE timestamp >= TIMESTAMP '1998-04-01' AND hash(rowid) % 3 = 0
"""
TRIAL_WINDOW_X3 = "UPDATE transactions SET amount = amount * 3 WHERE timestamp >= TIMESTAMP '1997-12-31'"


def _study(history, n_trials=3, seed=0, **kw):
    return tune("gbm", history, C, H, n_trials=n_trials, seed=seed, fixed_params=SMALL, **kw)


def _scores(result) -> pd.DataFrame:
    return result.trials[["number", "state", "value", *SETTINGS]]


@pytest.fixture(scope="module")
def study():
    return _study(_history(), refit=True)


def test_study_protocol_and_best_trial(study):
    assert study.trial_cutoff == pd.Timestamp("1997-12-31", tz="UTC")
    assert study.cutoff == pd.Timestamp(C, tz="UTC") and study.horizon_days == 91.0
    assert list(study.trials["number"]) == [0, 1, 2]
    assert (study.trials["state"] == "COMPLETE").all() and study.stopped_by == "n_trials"
    defaults = GBMForecaster()
    assert {k: study.trials.loc[0, k] for k in SETTINGS} == {k: getattr(defaults, k) for k in SETTINGS}
    best = study.trials["value"].idxmin()  # rmse: lower is better
    assert study.best_trial == best and study.best_value == study.trials.loc[best, "value"]
    assert study.best_params == {k: study.trials.loc[best, k] for k in SETTINGS}
    # the final model is fitted at C with the best settings
    model = study.forecaster
    assert model.cutoff_ == pd.Timestamp(C, tz="UTC")
    assert all(getattr(model, k) == v for k, v in {**SMALL, **study.best_params}.items())


def test_same_seed_same_study_other_seed_other_settings(study):
    again = _study(_history(), n_trials=2, refit=False)
    pd.testing.assert_frame_equal(_scores(again), _scores(study).iloc[:2])
    other = _study(_history(), n_trials=2, seed=7, refit=False)
    assert other.trials.loc[1, SETTINGS].tolist() != study.trials.loc[1, SETTINGS].tolist()


def test_trials_read_nothing_from_the_cutoff_on(study):
    scrambled = _history(SCRAMBLE_FROM_C)
    after = scrambled.transactions["timestamp"] >= pd.Timestamp(C, tz="UTC")
    assert after.sum() > 1000  # the mutation really changed the future
    pd.testing.assert_frame_equal(_scores(_study(scrambled, n_trials=2, refit=False)), _scores(study).iloc[:2])


@pytest.fixture(scope="module")
def one_trial():
    # the trial window's spend tripled; the time budget ends the study after its first trial
    return _study(_history(TRIAL_WINDOW_X3), n_trials=3, timeout=0.5, refit=False)


def test_the_trial_window_is_what_trials_are_scored_on(study, one_trial):
    assert one_trial.trials.loc[0, SETTINGS].tolist() == study.trials.loc[0, SETTINGS].tolist()
    assert one_trial.best_value > 2 * study.trials.loc[0, "value"]


def test_time_budget_stops_the_study(one_trial):
    assert len(one_trial.trials) == 1 and one_trial.stopped_by == "timeout"
    assert one_trial.forecaster is None and one_trial.manifest()["budget"] == {"n_trials": 3, "timeout_s": 0.5}


def test_manifest_is_json_and_complete(study):
    m = json.loads(json.dumps(study.manifest(), allow_nan=False))
    assert m["best_params"] == study.best_params and m["best_value"] == study.best_value
    assert m["sampler"] == {"name": "TPESampler", "seed": 0, "n_startup_trials": 10}
    assert m["protocol"] == {
        "cutoff": "1998-04-01", "trial_cutoff": "1997-12-31", "trial_window": ["1997-12-31", "1998-03-31"],
        "horizon_days": 91.0,
    }
    assert [t["value"] for t in m["trials"]] == study.trials["value"].tolist()
    assert all(t["duration_s"] > 0 and set(t["params"]) == set(SETTINGS) for t in m["trials"])
    assert m["fixed_params"] == {**SMALL, "seed": 0}


@pytest.mark.parametrize(
    "model, kwargs, error, message",
    [
        ("naive", {}, LtvcastError, "cannot tune model 'naive'; tunable: gbm, hybrid, deep"),
        ("gbm", {"metric": "r2"}, LtvcastError, "unknown metric 'r2'; choose from rmse"),
        ("gbm", {"n_trials": 0}, LtvcastError, "trial budget"),
        ("gbm", {"timeout": -5}, LtvcastError, "time budget"),
        ("gbm", {"fixed_params": {"leaves": 3}}, LtvcastError, "gbm: bad parameters .*leaves"),
        ("gbm", {"fixed_params": {"spend_loss": "l1"}}, LtvcastError, "spend_loss must be one of"),
        ("gbm", {"fixed_params": dict.fromkeys(SETTINGS, 1)}, LtvcastError, "every searched parameter is fixed"),
        ("gbm", {"cutoff": "1998-07-02"}, CutoffError, "after the end of the data"),
        ("gbm", {"cutoff": "1997-03-01"}, CutoffError, r"C' = cutoff − horizon = 1996-11-30.*no purchase"),
        # CDNOW starts 1997-01-01: at C' = 1997-07-03 no 182-day training window fits
        ("gbm", {"cutoff": "1998-01-01", "horizon": 182.0}, CutoffError, r"C' = cutoff − horizon = 1997-07-03.*no training window"),
    ],
)
def test_bad_arguments(model, kwargs, error, message):
    h = _history()
    cutoff, horizon = kwargs.pop("cutoff", C), kwargs.pop("horizon", H)
    with pytest.raises(error, match=message):
        tune(model, h, cutoff, horizon, **{"n_trials": 2, **kwargs})


runner = CliRunner()


def test_cli_tunes_and_registers(tmp_path):
    args = ["tune", "--model", "gbm", "--dataset", "cdnow-sample", "--cutoff", C, "--horizon", "13w",
            "--trials", "2", "--metric", "gini", "--seed", "3", "--fixed", SMALL_CLI + ",num_leaves=7",
            "--name", "shop-gbm", "--registry", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "saved shop-gbm:1" in result.output and "gini_norm (higher is better)" in result.output
    assert "Trial 0 finished" not in result.output  # no Optuna log lines
    saved = load_model("shop-gbm", root=tmp_path)
    tuning = saved.manifest["tuning"]
    assert tuning["metric"] == "gini" and tuning["direction"] == "maximize"
    assert len(tuning["trials"]) == 2 and tuning["sampler"]["seed"] == 3
    values = [t["value"] for t in tuning["trials"]]
    assert tuning["best_value"] == max(values) and not any(math.isnan(v) for v in values)
    assert saved.manifest["cutoff"] == C and saved.manifest["horizon_days"] == 91.0
    params = saved.manifest["model"]["params"]
    assert all(params[k] == v for k, v in tuning["best_params"].items())
    assert params["n_windows"] == 2 and saved.manifest["seed"] == 3
    # a fixed setting is not searched
    assert params["num_leaves"] == 7 and "num_leaves" not in tuning["search_space"]
    assert tuning["fixed_params"]["num_leaves"] == 7


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--name", "a:2"], "without a version"),
        (["--name", "ok", "--fixed", "n_windows"], "NAME=VALUE"),
        (["--name", "ok", "--model", "paretonbd"], "cannot tune model"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, extra, message):
    args = ["tune", "--model", "gbm", "--dataset", "cdnow-sample", "--cutoff", C, "--registry", str(tmp_path), *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
