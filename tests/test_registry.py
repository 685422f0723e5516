"""The model registry on the CDNOW sample: artifacts, versions, promotion, schema checks, fingerprints, CLI.

* save -> load gives identical predictions (BTYD and a small gbm);
* versions increment (also when another writer takes a number first);
  ``NAME`` resolves to the promoted version, else the latest;
* references, unknown names/versions and corrupt artifacts are clear errors;
* a feature schema mismatch names the missing, extra and retyped features;
* a deterministic gbm re-train with the same seed predicts identically;
* the data fingerprint follows the transactions before the cutoff only;
* ``ltvcast train -> predict`` writes what the library predicts.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pandas as pd
import pytest
from typer.testing import CliRunner

from ltvcast import registry
from ltvcast.cli import app
from ltvcast.data.datasets import open_history
from ltvcast.errors import LtvcastError
from ltvcast.models.catalog import make_forecaster
from ltvcast.models.learned.gbm import GBMForecaster
from ltvcast.registry import (
    ModelRef,
    RegistryError,
    SchemaMismatchError,
    list_models,
    load_model,
    parse_ref,
    predict_registered,
    promote,
    promoted_version,
    save_model,
)
from ltvcast.schema import PREDICTION_COLUMNS

CUTOFF = "1998-01-01"
H = 181.0
SMALL = dict(n_windows=3, stride_days=56, max_rounds=15, early_stopping_rounds=5, min_data_in_leaf=20, n_jobs=1)
RFM = {"frequency": "float64", "recency": "float64", "T": "float64", "monetary_value": "float64"}
runner = CliRunner()


def _history(sql: str | None = None):
    """The CDNOW sample with its store-read transactions, optionally after an SQL change of the store."""
    h = open_history(dataset="cdnow-sample")
    if sql:
        h.store.connection.execute(sql)
    return replace(h, transactions=h.store.transactions())


@pytest.fixture(scope="module")
def history():
    return _history()


@pytest.fixture(scope="module")
def naive(history):
    return make_forecaster("naive").fit(history, CUTOFF, H)


@pytest.fixture(scope="module")
def gbm(history):
    return GBMForecaster(**SMALL).fit(history, CUTOFF, H)


def _save(forecaster, history, root, name="m"):
    return save_model(forecaster, name=name, cutoff=CUTOFF, horizon_days=H, history=history, root=root)


def _same_predictions(got, expected, label):
    """``got`` is ``expected`` with ``model`` = label (same dtype: the canonical frame's)."""
    assert (got["model"] == label).all() and got["model"].dtype == expected["model"].dtype
    pd.testing.assert_frame_equal(got.drop(columns="model"), expected.drop(columns="model"))


# ---------------------------------------------------------------- references
@pytest.mark.parametrize(
    "text, ref",
    [("gbm", ModelRef("gbm", None)), (" shop-gbm:12 ", ModelRef("shop-gbm", 12)), ("a.b_c:1", ModelRef("a.b_c", 1))],
)
def test_parse_ref(text, ref):
    assert parse_ref(text) == ref
    assert parse_ref(str(ref)) == ref


@pytest.mark.parametrize("text", ["", ":3", "gbm:", "gbm:0", "gbm:-1", "gbm:x", "gbm:1:2", "a/b", "../x", ".tmp", "g m"])
def test_parse_ref_refuses_bad_references(text):
    with pytest.raises(RegistryError, match="NAME or NAME:VERSION"):
        parse_ref(text)


# ---------------------------------------------------------------- round trips
def test_btyd_round_trip_and_manifest(history, tmp_path):
    model = make_forecaster("paretonbd").fit(history, CUTOFF, H)
    saved = _save(model, history, tmp_path, "pnbd")
    loaded = load_model("pnbd", tmp_path)
    assert (loaded.name, loaded.version, loaded.path) == ("pnbd", 1, tmp_path / "pnbd" / "1")
    got = predict_registered(loaded, history, CUTOFF, H)
    _same_predictions(got, model.predict(history, CUTOFF, H), "pnbd:1")
    assert list(got.columns) == list(PREDICTION_COLUMNS)

    m = json.loads((tmp_path / "pnbd" / "1" / "manifest.json").read_text())
    assert m == saved.manifest == loaded.manifest
    assert m["model"]["kind"] == "paretonbd" and m["model"]["class"] == "ltvcast.models.btyd.BTYDForecaster"
    assert m["model"]["params"] == {"name": "paretonbd", "n_draws": 400, "seed": 0}
    assert (m["cutoff"], m["horizon_days"], m["seed"], m["training_windows"]) == ("1998-01-01", 181.0, 0, None)
    assert m["features"] == RFM
    before = history.transactions[history.transactions["timestamp"] < pd.Timestamp(CUTOFF, tz="UTC")]
    assert m["data"]["rows"] == len(before) == 5728
    assert m["data"]["customers"] == 2357
    assert m["data"]["revenue"] == pytest.approx(before["amount"].sum())
    assert m["data"]["last_timestamp"] == "1997-12-31T00:00:00+00:00"
    assert m["metrics"] == {} and m["tuning"] is None
    assert {"python", "numpy", "pandas", "lightgbm", "duckdb"} <= set(m["packages"])
    assert m["artifact"]["bytes"] == (tmp_path / "pnbd" / "1" / "model.pkl").stat().st_size
    assert [p.name for p in (tmp_path / "pnbd").iterdir()] == ["1"]  # no temporary folder left


def test_gbm_round_trip_keeps_schema_windows_and_drops_examples(gbm, history, tmp_path):
    saved = save_model(
        gbm, name="g", cutoff=CUTOFF, horizon_days=H, history=history, root=tmp_path,
        metrics={"holdout_gini": 0.5}, tuning={"trials": pd.DataFrame({"lr": [0.05, 0.1], "score": [1.0, float("nan")]})},
    )
    loaded = load_model("g:1", tmp_path)
    _same_predictions(predict_registered(loaded, history, CUTOFF, H), gbm.predict(history, CUTOFF, H), "g:1")
    m = loaded.manifest
    assert m["features"] == dict.fromkeys(gbm.feature_names_, "float64") == gbm.feature_schema_
    assert "label_days" in m["features"] and "pnbd_tx" not in m["features"]
    assert [(w["index"], w["role"]) for w in m["training_windows"]][:2] == [(0, "validation"), (1, "training")]
    assert m["training_windows"][0] == {"index": 0, "cutoff": "1997-07-04", "label_days": 181, "role": "validation"}
    assert m["metrics"]["validation_gini_ziln"] == pytest.approx(gbm.validation_scores_["gini_ziln"])
    assert m["metrics"]["holdout_gini"] == 0.5
    assert m["tuning"] == {"trials": [{"lr": 0.05, "score": 1.0}, {"lr": 0.1, "score": None}]}
    assert m["model"]["params"]["max_rounds"] == 15 and m["seed"] == 0
    assert loaded.forecaster.examples_ is None and gbm.examples_ is not None
    assert saved.forecaster is gbm


def test_gbm_retrain_with_same_seed_predicts_identically(gbm, history, tmp_path):
    first = _save(gbm, history, tmp_path, "g")
    second = _save(GBMForecaster(**SMALL).fit(history, CUTOFF, H), history, tmp_path, "g")
    assert (first.version, second.version) == (1, 2)
    a = predict_registered(load_model("g:1", tmp_path), history, CUTOFF, H)
    b = predict_registered(load_model("g:2", tmp_path), history, CUTOFF, H)
    _same_predictions(b, a.assign(model=a["model"].str.replace("g:1", "g:2")), "g:2")
    assert first.manifest["data"] == second.manifest["data"]


# ---------------------------------------------------------------- versions and promotion
def test_versions_increment_and_name_resolves_to_promoted_else_latest(naive, history, tmp_path):
    assert [_save(naive, history, tmp_path).version for _ in range(3)] == [1, 2, 3]
    assert promoted_version("m", tmp_path) is None
    assert load_model("m", tmp_path).version == 3
    assert promote("m:2", tmp_path).version == 2
    assert (tmp_path / "m" / "PROMOTED").read_text() == "2\n"
    assert promoted_version("m", tmp_path) == 2
    assert load_model("m", tmp_path).version == 2
    assert _save(naive, history, tmp_path).version == 4  # a new version is not promoted by itself
    assert load_model(ModelRef("m"), tmp_path).version == 2
    assert load_model("m:4", tmp_path).version == 4
    frame = list_models(tmp_path)
    assert list(frame.columns) == ["name", "version", "kind", "cutoff", "horizon_days", "created_at", "promoted"]
    assert list(frame["version"]) == [1, 2, 3, 4] and list(frame["promoted"]) == [False, True, False, False]
    assert set(frame["kind"]) == {"naive"} and (frame["cutoff"] == pd.Timestamp(CUTOFF, tz="UTC")).all()


def test_a_version_taken_by_another_writer_is_skipped(naive, history, tmp_path, monkeypatch):
    _save(naive, history, tmp_path)
    _save(naive, history, tmp_path)
    real, calls = registry._versions, []

    def stale(folder):  # the first look misses version 2, as if another process had just written it
        calls.append(folder)
        return [1] if len(calls) == 1 else real(folder)

    monkeypatch.setattr(registry, "_versions", stale)
    saved = _save(naive, history, tmp_path)
    assert saved.version == 3 and len(calls) == 2
    assert load_model("m:2", tmp_path).manifest["version"] == 2
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "2", "3"]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda root: load_model("nope", root), "no model 'nope'"),
        (lambda root: load_model("m:7", root), "has no version 7 (versions: 1)"),
        (lambda root: load_model("m:x", root), "NAME or NAME:VERSION"),
        (lambda root: promote("m", root), "promote needs NAME:VERSION"),
        (lambda root: promote("m:2", root), "has no version 2"),
        (lambda root: list_models(root / "missing"), "no model registry at"),
        (lambda root: load_model("m", root / "missing"), "no model registry at"),
    ],
)
def test_registry_errors(naive, history, tmp_path, call, message):
    _save(naive, history, tmp_path)
    with pytest.raises(RegistryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(tmp_path)
    assert issubclass(RegistryError, LtvcastError)


def test_corrupt_artifacts_are_refused(naive, history, tmp_path):
    _save(naive, history, tmp_path)
    _save(naive, history, tmp_path)
    pkl = tmp_path / "m" / "1" / "model.pkl"
    pkl.write_bytes(pkl.read_bytes()[:-10])
    with pytest.raises(RegistryError, match="model.pkl is corrupt"):
        load_model("m:1", tmp_path)
    (tmp_path / "m" / "2" / "manifest.json").write_text("{not json")
    with pytest.raises(RegistryError, match="cannot read the manifest"):
        load_model("m:2", tmp_path)
    (tmp_path / "m" / "PROMOTED").write_text("two\n")
    with pytest.raises(RegistryError, match="PROMOTED is corrupt"):
        load_model("m", tmp_path)


# ---------------------------------------------------------------- feature schema
def test_schema_mismatch_names_missing_extra_and_retyped_features(naive, history):
    assert naive.feature_schema_ == RFM
    tampered = copy.copy(naive)
    tampered.feature_schema_ = {"frequency": "float64", "recency": "int64", "T": "float64", "avg_value": "float64"}
    with pytest.raises(SchemaMismatchError) as err:
        tampered.predict(history, CUTOFF, H)
    assert "missing: avg_value" in str(err.value)
    assert "extra: monetary_value" in str(err.value)
    assert "retyped: recency (int64 -> float64)" in str(err.value)
    assert issubclass(SchemaMismatchError, LtvcastError)


def test_gbm_refuses_retyped_and_missing_features(gbm, history):
    tampered = copy.copy(gbm)
    tampered.feature_schema_ = {**gbm.feature_schema_, "label_days": "int64", "not_a_feature": "float64"}
    with pytest.raises(SchemaMismatchError, match=r"missing: not_a_feature; retyped: label_days \(int64 -> float64\)"):
        tampered.predict(history, CUTOFF, H)


def test_manifest_schema_must_match_the_pickle(naive, history, tmp_path):
    _save(naive, history, tmp_path)
    path = tmp_path / "m" / "1" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["features"]["T"] = "int64"
    path.write_text(json.dumps(manifest))
    model = load_model("m", tmp_path)
    with pytest.raises(SchemaMismatchError, match=r"m:1 \(manifest vs model.pkl\).*retyped: T \(float64 -> int64\)"):
        predict_registered(model, history, CUTOFF, H)


# ---------------------------------------------------------------- data fingerprint
def test_fingerprint_follows_the_transactions_before_the_cutoff(history):
    fp = registry._data_fingerprint
    base = fp(history, CUTOFF)
    assert len(base["fingerprint"]) == 64
    # the same data read another way (the dataset's frame, shuffled rows) -> same fingerprint
    dataset = open_history(dataset="cdnow-sample")
    shuffled = replace(history, transactions=history.transactions.sample(frac=1.0, random_state=1))
    assert fp(dataset, CUTOFF)["fingerprint"] == fp(shuffled, CUTOFF)["fingerprint"] == base["fingerprint"]
    # a change after the cutoff -> same; one transaction before it -> different
    later = _history("UPDATE transactions SET amount = amount + 1 WHERE timestamp >= TIMESTAMP '1998-01-01'")
    assert fp(later, CUTOFF) == base
    one = "UPDATE transactions SET amount = amount + 0.01 WHERE rowid = (SELECT min(rowid) FROM transactions)"
    changed = fp(_history(one), CUTOFF)
    assert changed["fingerprint"] != base["fingerprint"]
    assert changed["revenue"] == pytest.approx(base["revenue"] + 0.01)
    assert fp(replace(history, revenue_basis="gross"), CUTOFF)["fingerprint"] != base["fingerprint"]


# ---------------------------------------------------------------- command line
def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_train_predict_promote_models(tmp_path):
    root = tmp_path / "reg"
    result = invoke("train", "--dataset", "cdnow-sample", "--models", "naive,paretonbd", "--cutoff", CUTOFF,
                    "--horizon", "26w", "--name", "shop", "--registry", root)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in root.iterdir()) == ["shop-naive", "shop-paretonbd"]
    out = tmp_path / "preds.csv"
    result = invoke("predict", "--model", "shop-paretonbd", "--dataset", "cdnow-sample", "--cutoff", "1998-03-01",
                    "--out", out, "--registry", root)
    assert result.exit_code == 0, result.output
    model = load_model("shop-paretonbd:1", root)
    assert model.manifest["horizon_days"] == 182.0
    expected = predict_registered(model, open_history(dataset="cdnow-sample"), "1998-03-01", 182.0)
    got = pd.read_csv(out, dtype={"customer_id": str})
    assert (got["model"] == "shop-paretonbd:1").all() and (got["horizon_days"] == 182).all()
    numeric = [c for c in PREDICTION_COLUMNS if c.startswith(("pred_", "p_"))]
    pd.testing.assert_frame_equal(got[numeric], expected[numeric], check_exact=False, rtol=1e-12)
    assert list(got["customer_id"]) == list(expected["customer_id"])

    assert invoke("train", "--dataset", "cdnow-sample", "--models", "naive", "--cutoff", CUTOFF,
                  "--name", "shop-naive", "--registry", root).exit_code == 0
    result = invoke("promote", "shop-naive:1", "--registry", root)
    assert result.exit_code == 0 and "promoted shop-naive:1" in result.output
    assert load_model("shop-naive", root).version == 1
    result = invoke("models", "--registry", root)
    assert result.exit_code == 0, result.output
    assert list(list_models(root)["promoted"]) == [True, False, False]


@pytest.mark.parametrize(
    "args, message",
    [
        (("predict", "--model", "nope", "--dataset", "cdnow-sample", "--cutoff", CUTOFF), "no model 'nope'"),
        (("predict", "--model", "m:9", "--dataset", "cdnow-sample", "--cutoff", CUTOFF), "has no version 9"),
        (("predict", "--model", "m", "--dataset", "cdnow-sample", "--cutoff", CUTOFF), "retyped: T"),
        (("promote", "m"), "promote needs NAME:VERSION"),
        (("train", "--dataset", "cdnow-sample", "--models", "naive", "--cutoff", CUTOFF, "--name", "m:2"), "without a version"),
    ],
)
def test_cli_errors_are_one_line(naive, history, tmp_path, args, message):
    saved = _save(naive, history, tmp_path)
    manifest = dict(saved.manifest, features={**RFM, "T": "int64"})
    (saved.path / "manifest.json").write_text(json.dumps(manifest))
    result = invoke(*args, "--registry", tmp_path)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_cli_missing_registry(tmp_path):
    for args in (("models",), ("predict", "--model", "m", "--dataset", "cdnow-sample", "--cutoff", CUTOFF)):
        result = invoke(*args, "--registry", tmp_path / "none")
        assert result.exit_code == 2 and "no model registry at" in result.output


@pytest.mark.parametrize("command", ["train", "predict", "promote", "models"])
def test_registry_commands_have_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output
