"""`ltvcast ui` as a new user meets it: which registered model it shows, a busy port, its temporary registry.

The newcomer run (issue 11): in a folder where `ltvcast train` had registered a model of another shop,
`ltvcast ui --dataset cdnow` picked that model and stopped with a cutoff error naming neither --model
nor --registry; a busy port failed only after the model work; the temporary registry stayed in /tmp.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from serve_kit import free_port, make_store, register
from typer.testing import CliRunner

from ltvcast.cli import app
from ltvcast.data.datasets import open_history
from ltvcast.errors import LtvcastError
from ltvcast.ui.local import fit_default, pick_model, unusable_models


@pytest.fixture(scope="module")
def other_shop(tmp_path_factory) -> tuple[Path, Path]:
    """A store of another shop (2023-07..2024-06) and a registry holding its BG/NBD ``clv`` (cutoff 2024-07-01)."""
    root = tmp_path_factory.mktemp("other-shop")
    db = make_store(root / "shop", customers=40)
    register(db, root / "models", n_draws=50)
    return db, root / "models"


@pytest.fixture()
def served(monkeypatch, tmp_path):
    """``uvicorn.run`` replaced: records, per call, the temporary registries that exist while the app runs."""
    import tempfile

    import uvicorn

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    calls = []

    def run(web, **kwargs):
        calls.append({"port": kwargs["port"], "registries": sorted(tmp_path.glob("ltvcast-ui-registry-*/*"))})

    monkeypatch.setattr(uvicorn, "run", run)
    return calls


def test_a_model_of_another_shop_is_not_shown(other_shop, served, tmp_path):
    _, models = other_shop
    port = free_port()
    result = CliRunner().invoke(app, ["ui", "--dataset", "cdnow-sample", "--registry", str(models),
                                      "--port", str(port)])
    assert result.exit_code == 0, (result.output, result.exception)
    out = " ".join(result.output.split())
    assert "fitted ui-bgnbd:1 on the data" in out and "clv: trained on" in out
    assert "--model NAME" in out and "--registry PATH" in out
    assert [c["port"] for c in served] == [port]
    assert [p.name for p in served[0]["registries"]] == ["ui-bgnbd"]  # the temporary registry while serving
    assert list(tmp_path.glob("ltvcast-ui-registry-*")) == []  # ... and none after exit


def test_a_chosen_model_that_cannot_show_the_data_says_what_to_do(other_shop, served):
    _, models = other_shop
    result = CliRunner().invoke(app, ["ui", "--dataset", "cdnow-sample", "--registry", str(models),
                                      "--model", "clv", "--port", str(free_port())])
    err = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "earlier cutoff 1998-07-01" in err, (result.output, result.exception)
    assert "--model NAME[:VERSION]" in err and "--registry PATH" in err
    assert served == []


def test_the_model_of_this_data_is_chosen(other_shop, tmp_path, monkeypatch):
    db, models = other_shop
    sample = open_history("cdnow-sample")
    try:
        assert unusable_models(models, sample) == {"clv": f"trained on {db}"}
        assert pick_model(models, None, exclude=unusable_models(models, sample)) is None
        mixed = tmp_path / "models"
        register(db, mixed, n_draws=50)
        assert fit_default(sample, mixed) == "ui-bgnbd:1"
        assert pick_model(mixed, None, exclude=unusable_models(mixed, sample)) == "ui-bgnbd"
    finally:
        sample.store.close()
    # the same store named by another path (relative to where ui runs) is the same data
    monkeypatch.chdir(db.parent)
    shop = open_history(db=db.name)
    try:
        assert shop.origin == db.name and unusable_models(models, shop) == {}
    finally:
        shop.store.close()
    assert unusable_models(tmp_path / "none", shop) == {}


def test_a_busy_port_fails_before_the_model_work(other_shop, served, monkeypatch):
    import ltvcast.data.datasets
    import ltvcast.ui.local

    def model_work(*args, **kwargs):
        raise AssertionError("the model work started before the port was checked")

    for module, name in ((ltvcast.ui.local, "pick_model"), (ltvcast.ui.local, "unusable_models"),
                         (ltvcast.ui.local, "fit_default"), (ltvcast.data.datasets, "open_history")):
        monkeypatch.setattr(module, name, model_work, raising=False)
    _, models = other_shop
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["ui", "--dataset", "cdnow-sample", "--registry", str(models),
                                          "--port", str(port)])
    err = " ".join(result.stderr.split())
    assert result.exit_code == 2 and f"port {port} on 127.0.0.1 cannot be listened on" in err, (
        result.output, result.exception)
    assert "--port" in err and served == []


def test_port_zero_becomes_the_free_port_that_is_printed():
    from ltvcast.cli.ui import check_port

    port = check_port("127.0.0.1", 0)
    assert 0 < port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))  # the port it chose is free to listen on
        s.listen()
        with pytest.raises(LtvcastError, match=f"port {port} on 127.0.0.1 cannot be listened on"):
            check_port("127.0.0.1", port)  # and a named port is still checked
