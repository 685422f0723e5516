"""Batch scoring (`ltvcast.serve.score`, `ltvcast score`) on the CDNOW sample.

Scoring in chunks must write exactly what one whole prediction gives (rows
do not depend on each other), for a BTYD model (whose quantiles come from each
customer's own horizon distribution; Parquet written straight from its
arrays) and for a small gbm.
"""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from ltvcast.cli import app
from ltvcast.data.datasets import open_history
from ltvcast.errors import LtvcastError
from ltvcast.models.catalog import make_forecaster
from ltvcast.models.learned.gbm import GBMForecaster
from ltvcast.registry import RegistryError, predict_registered, save_model
from ltvcast.schema.predictions import read_predictions
from ltvcast.serve.score import score

CUTOFF = "1998-01-01"
H = 181.0
SMALL = dict(n_windows=3, stride_days=56, max_rounds=15, early_stopping_rounds=5, min_data_in_leaf=20, n_jobs=1)
runner = CliRunner()


@pytest.fixture(scope="module")
def history():
    return open_history(dataset="cdnow-sample")


@pytest.fixture(scope="module")
def registry_root(tmp_path_factory, history):
    root = tmp_path_factory.mktemp("models")
    bg = make_forecaster("bgnbd").fit(history, CUTOFF, H)
    save_model(bg, name="bg", cutoff=CUTOFF, horizon_days=H, history=history, root=root)
    gbm = GBMForecaster(**SMALL).fit(history, CUTOFF, H)
    save_model(gbm, name="gbm", cutoff=CUTOFF, horizon_days=H, history=history, root=root)
    return root


@pytest.mark.parametrize("name", ["bg", "gbm"])
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_chunks_equal_one_prediction(tmp_path, history, registry_root, name, suffix):
    from ltvcast.registry import load_model

    model = load_model(name, registry_root)
    whole = predict_registered(model, history, CUTOFF, H)
    seen = []
    result = score(model, history, CUTOFF, H, tmp_path / f"p{suffix}", chunk_size=700, progress=lambda d, t: seen.append((d, t)))
    n = len(whole)
    assert result.customers == n == 2357 and result.model == f"{name}:1"
    assert seen == [(700, n), (1400, n), (2100, n), (n, n)]
    got = read_predictions(result.path)
    if suffix == ".csv":
        got["cutoff"] = pd.to_datetime(got["cutoff"])
        whole["cutoff"] = whole["cutoff"].astype(got["cutoff"].dtype)
    pd.testing.assert_frame_equal(got, whole, check_dtype=suffix == ".parquet", check_exact=suffix == ".parquet")


def test_refuses_earlier_cutoff_and_bad_arguments(tmp_path, history, registry_root):
    from ltvcast.registry import load_model

    model = load_model("bg", registry_root)
    with pytest.raises(RegistryError, match="trained with data up to 1998-01-01.*earlier cutoff 1997-12-31"):
        score(model, history, "1997-12-31", H, tmp_path / "p.parquet")
    with pytest.raises(LtvcastError, match=r"use a \.parquet or \.csv"):
        score(model, history, CUTOFF, H, tmp_path / "p.json")
    with pytest.raises(LtvcastError, match="chunk size must be at least 1"):
        score(model, history, CUTOFF, H, tmp_path / "p.parquet", chunk_size=0)


def test_cli_score(tmp_path, history, registry_root):
    out = tmp_path / "preds.parquet"
    args = ["score", "--dataset", "cdnow-sample", "--model", "bg", "--cutoff", CUTOFF, "--out", str(out)]
    res = runner.invoke(app, [*args, "--registry", str(registry_root), "--chunk-size", "1000"])
    assert res.exit_code == 0, res.output
    assert "2,357 customers scored by bg:1" in res.output
    frame = read_predictions(out)
    assert len(frame) == 2357 and (frame["model"] == "bg:1").all()
    assert frame["horizon_days"].eq(H).all()  # the manifest's horizon by default
    res = runner.invoke(app, [*args, "--registry", str(registry_root), "--cutoff", "1997-06-01"])
    assert res.exit_code == 2 and "earlier cutoff" in res.output
