"""ONNX export of the deep model (`ltvcast.models.learned.deep.onnx`, `ltvcast.registry.export_onnx`, `ltvcast export`) on the CDNOW sample, tiny settings.

* every output of the network (ZILN f_p/μ/f_s, trajectory log shares, log transactions, churn logit,
  next-purchase days) from onnxruntime equals torch's to 1e-4 absolute on the model's real inputs, at
  batch sizes 1 and n, at the fitted horizon and a shorter one (masked trajectory periods) — for the
  GRU, LSTM and Transformer encoders;
* a registered model with an export predicts (``predict_inputs``) and scores (``score``) through
  onnxruntime the frame torch gives, to 1e-4 absolute or 1e-5 relative (spend in the hundreds is
  exp() of a float32 log output); the manifest records the export;
* ``score`` and ``/readyz`` name the runtime (``onnxruntime`` or ``torch``);
* a BTYD model, an unknown format, an export whose graph is not the network, a changed ``model.onnx``
  are clear errors; nothing is written when the check fails.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil

import numpy as np
import onnxruntime
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from ltvcast.cli import app
from ltvcast.data.datasets import open_history
from ltvcast.errors import LtvcastError, RegistryError
from ltvcast.models.catalog import make_forecaster
from ltvcast.models.learned.deep import DeepForecaster
from ltvcast.models.learned.deep import onnx as onnx_export
from ltvcast.models.learned.deep.onnx import OnnxRunner
from ltvcast.registry import export_onnx, load_model, save_model
from ltvcast.schema.predictions import read_predictions
from ltvcast.serve.score import score

CUTOFF = "1998-01-01"
H = 181.0
TINY = dict(
    n_windows=3, stride_days=56, lookback=13, max_epochs=2, patience=1, hidden_size=8, batch_size=256, n_threads=1
)
ATOL = 1e-4
# The spend columns are exp() of the network's log-scale outputs: a float32 difference of ~1e-7 in mu is
# ~1e-7 relative in spend, i.e. 2e-4 absolute on a 200-dollar p90 (measured on GRU/Transformer). The frames
# are held to 1e-4 absolute or 1e-5 relative, whichever is larger; the raw outputs to 1e-4 absolute.
RTOL = 1e-5
NUMBERS = ["pred_transactions", "pred_spend", "p_churn", "pred_spend_p10", "pred_spend_p50", "pred_spend_p90",
           "pred_next_purchase_days"]
runner = CliRunner()


@pytest.fixture(scope="module")
def history():
    return open_history(dataset="cdnow-sample")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def exported(history, root):
    """encoder -> (registry name, OnnxExport); a tiny model of each encoder, registered and exported."""
    out = {}
    for encoder in ("gru", "lstm", "transformer"):
        model = DeepForecaster(f"deep-{encoder}", encoder=encoder, **TINY).fit(history, CUTOFF, H)
        registered = save_model(model, name=f"d-{encoder}", cutoff=CUTOFF, horizon_days=H, history=history, root=root)
        out[encoder] = (registered.name, export_onnx(registered))
    return out


@pytest.fixture(scope="module")
def real_inputs(history, exported, root):
    return load_model("d-gru", root, use_onnx=False).forecaster.inputs(history, CUTOFF, H)


def _arrays(model: DeepForecaster, inputs: pd.DataFrame, label_days: float) -> tuple[np.ndarray, ...]:
    """The network's input arrays for rows of ``inputs`` (the host side of ``predict_inputs``)."""
    n = len(inputs)
    seq = inputs[model.sequence_columns()].to_numpy(np.float32).reshape(n, model.config_["lookback"], -1)
    return seq, model._numeric(inputs), model._categorical(inputs), np.full(n, label_days, dtype=np.float32)


def _assert_outputs_match(torch_model: DeepForecaster, onnx_model: DeepForecaster, arrays) -> None:
    """Every output of the ONNX graph equals torch's to 1e-4: the whole batch in one session call, and the runner."""
    module, _ = torch_model.export_module()
    with torch.no_grad():
        expected = [o.numpy().astype(float) for o in module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays))]
    runner = onnx_model._onnx
    whole = runner.session.run(None, dict(zip(DeepForecaster.INPUT_NAMES, arrays)))  # one call of batch size n
    chunked = runner(*arrays)  # 1,024 rows per call, as predict runs it
    assert list(chunked) == list(torch_model._run(module, *(a[:1] for a in arrays)))  # the keys predict reads
    for got in (whole, list(chunked.values())):
        for name, a, b in zip(DeepForecaster.OUTPUT_NAMES, expected, got):
            assert a.shape == b.shape, name
            if name == "log_shares":  # masked periods (label_days shorter than H): log share ~ -1e4, share exactly 0
                masked = a < -1000
                assert np.array_equal(masked, b < -1000)
                a, b = a[~masked], b[~masked]
            assert np.isfinite(a).all() and np.abs(a - b).max() <= ATOL, (name, np.abs(a - b).max())


@pytest.mark.parametrize("encoder", ["gru", "lstm", "transformer"])
def test_every_output_matches_torch_on_real_inputs(exported, root, real_inputs, encoder):
    name, result = exported[encoder]
    torch_model = load_model(name, root, use_onnx=False).forecaster
    onnx_model = load_model(name, root).forecaster
    assert (torch_model.runtime, onnx_model.runtime) == ("torch", "onnxruntime")
    assert result.max_abs_diff <= ATOL and result.checked_rows == 303
    for label_days in (H, 50.0):  # 50 days: periods 8..26 of the trajectory are masked
        arrays = _arrays(torch_model, real_inputs, label_days)
        _assert_outputs_match(torch_model, onnx_model, arrays)  # batch n = 2,357
        for i in (0, 1234):  # batch size 1
            _assert_outputs_match(torch_model, onnx_model, tuple(a[i : i + 1] for a in arrays))
    # predict_inputs through onnxruntime: torch's frame to 1e-4
    p_torch = torch_model.predict_inputs(real_inputs, CUTOFF, H)
    p_onnx = onnx_model.predict_inputs(real_inputs, CUTOFF, H)
    pd.testing.assert_frame_equal(p_onnx.drop(columns=NUMBERS), p_torch.drop(columns=NUMBERS))
    np.testing.assert_allclose(p_onnx[NUMBERS].to_numpy(), p_torch[NUMBERS].to_numpy(), rtol=RTOL, atol=ATOL)


def test_manifest_records_the_export(exported, root):
    name, result = exported["gru"]
    folder = root / name / "1"
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["onnx"]
    blob = (folder / "model.onnx").read_bytes()
    assert result.path == folder / "model.onnx" and entry["file"] == "model.onnx"
    assert entry["bytes"] == len(blob) == result.bytes and entry["sha256"] == hashlib.sha256(blob).hexdigest()
    assert entry["opset"] == result.opset >= 17
    assert entry["exporter"] == f"torch.onnx.export dynamo=True, torch {torch.__version__}"
    assert entry["onnxruntime"] == onnxruntime.__version__
    assert entry["max_abs_diff"] == max(entry["max_abs_diff_by_output"].values()) <= ATOL
    assert list(entry["max_abs_diff_by_output"]) == list(DeepForecaster.OUTPUT_NAMES)
    assert manifest["artifact"]["sha256"] == hashlib.sha256((folder / "model.pkl").read_bytes()).hexdigest()
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]  # no temporary file left
    modes = {p.name: p.stat().st_mode for p in folder.iterdir()}
    assert modes["model.onnx"] == modes["manifest.json"] == modes["model.pkl"]  # not mkstemp's 0600


def test_score_with_the_export_writes_torch_frame(tmp_path, history, exported, root):
    name, _ = exported["gru"]
    with_onnx = score(load_model(name, root), history, CUTOFF, H, tmp_path / "onnx.parquet", chunk_size=1000)
    with_torch = score(load_model(name, root, use_onnx=False), history, CUTOFF, H, tmp_path / "torch.parquet",
                       chunk_size=1000)
    assert (with_onnx.runtime, with_torch.runtime, with_onnx.customers) == ("onnxruntime", "torch", 2357)
    a, b = read_predictions(with_onnx.path), read_predictions(with_torch.path)
    pd.testing.assert_frame_equal(a.drop(columns=NUMBERS), b.drop(columns=NUMBERS))
    np.testing.assert_allclose(a[NUMBERS].to_numpy(), b[NUMBERS].to_numpy(), rtol=RTOL, atol=ATOL)
    res = runner.invoke(app, ["score", "--dataset", "cdnow-sample", "--model", name, "--cutoff", CUTOFF,
                              "--registry", str(root), "--out", str(tmp_path / "cli.parquet")])
    assert res.exit_code == 0, res.output
    assert f"2,357 customers scored by {name}:1 (onnxruntime)" in " ".join(res.output.split())


def test_session_stays_out_of_the_pickle(exported, root, real_inputs):
    model = load_model(exported["gru"][0], root).forecaster
    back = pickle.loads(pickle.dumps(model))
    assert back.runtime == "torch" and model.runtime == "onnxruntime"
    model.use_onnx(None)
    assert model.runtime == "torch"
    pd.testing.assert_frame_equal(back.predict_inputs(real_inputs, CUTOFF, H), model.predict_inputs(real_inputs, CUTOFF, H))


def test_only_deep_models_export(tmp_path, history):
    bg = save_model(make_forecaster("bgnbd").fit(history, CUTOFF, H), name="bg", cutoff=CUTOFF, horizon_days=H,
                    history=history, root=tmp_path)
    with pytest.raises(LtvcastError, match="bg:1 is a 'bgnbd' model; only deep models"):
        export_onnx(bg)
    res = runner.invoke(app, ["export", "--model", "bg", "--format", "onnx", "--registry", str(tmp_path)])
    assert res.exit_code == 2 and "'bgnbd' model; only deep models" in res.output
    res = runner.invoke(app, ["export", "--model", "bg", "--format", "torchscript", "--registry", str(tmp_path)])
    assert res.exit_code == 2 and "the only export format is onnx" in res.output
    assert not (tmp_path / "bg" / "1" / "model.onnx").exists()


def test_export_refused_when_the_graph_is_not_the_network(monkeypatch, exported, root):
    """The GRU network's graph offered as the LSTM's export (same input sizes) fails the check: nothing is written."""
    folder = root / exported["lstm"][0] / "1"
    gru_graph = (root / exported["gru"][0] / "1" / "model.onnx").read_bytes()
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr(onnx_export, "_export", lambda module, sample, label: (gru_graph, 20))
    with pytest.raises(LtvcastError, match=r"d-lstm:1: the ONNX export differs from torch by .* > 0.0001 .*ziln"):
        export_onnx(load_model("d-lstm", root, use_onnx=False))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_changed_export_is_refused_at_load_and_export_repairs_it(tmp_path, exported, root):
    name, _ = exported["gru"]
    shutil.copytree(root / name, tmp_path / name)
    onnx_file = tmp_path / name / "1" / "model.onnx"
    blob = bytearray(onnx_file.read_bytes())
    blob[-1] ^= 0xFF
    onnx_file.write_bytes(bytes(blob))
    with pytest.raises(RegistryError, match="model.onnx was changed or is corrupt: its SHA-256 differs"):
        load_model(name, tmp_path)
    assert load_model(name, tmp_path, use_onnx=False).forecaster.runtime == "torch"
    res = runner.invoke(app, ["score", "--dataset", "cdnow-sample", "--model", name, "--cutoff", CUTOFF,
                              "--registry", str(tmp_path), "--out", str(tmp_path / "p.parquet")])
    assert res.exit_code == 2 and "SHA-256 differs" in res.output
    res = runner.invoke(app, ["export", "--model", f"{name}:1", "--format", "onnx", "--registry", str(tmp_path)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert f"exported {name}:1 to {onnx_file}" in text and "max |ONNX - torch|" in text and "303 generated rows" in text
    assert load_model(name, tmp_path).forecaster.runtime == "onnxruntime"
    onnx_file.unlink()
    with pytest.raises(RegistryError, match="cannot read the ONNX export"):
        load_model(name, tmp_path)


def test_runner_threads_and_sizes(exported, root, real_inputs):
    model = load_model(exported["gru"][0], root, use_onnx=False).forecaster
    path = root / exported["gru"][0] / "1" / "model.onnx"
    arrays = _arrays(model, real_inputs, H)
    one, two = OnnxRunner(path, model.config_, n_threads=1)(*arrays), OnnxRunner(path, model.config_, n_threads=2)(*arrays)
    for key in one:  # chunks run on two threads: the same numbers, in row order
        assert one[key].shape[0] == len(real_inputs) and np.array_equal(one[key], two[key]), key
    with pytest.raises(LtvcastError, match="does not fit this network"):
        OnnxRunner(path, {**model.config_, "lookback": 14})
    with pytest.raises(LtvcastError, match="onnxruntime cannot load"):
        OnnxRunner(b"not an onnx model", model.config_)


def test_readyz_names_the_runtime(exported, root):
    """`ltvcast serve` loads through load_model: /readyz of the real app says which runtime runs the network."""
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from ltvcast.serve.app import Service, create_app
    from ltvcast.serve.model import servable
    from ltvcast.serve.sync import ShopSettings

    name = exported["gru"][0]
    for use_onnx, runtime in ((True, "onnxruntime"), (False, "torch")):
        served = servable(load_model(name, root, use_onnx=use_onnx))
        holder = SimpleNamespace(current=served, reload_failures=0, on_change=None, stop=lambda: None)
        service = Service(online=SimpleNamespace(ping=lambda: None), models=holder,
                          settings=ShopSettings("UTC", "net", None), keys=None, mirror=SimpleNamespace(loaded=True))
        with TestClient(create_app(service)) as client:
            body = client.get("/readyz").json()
        assert body == {"status": "ready", "model": f"{name}:1", "kind": "deep-gru", "runtime": runtime}
