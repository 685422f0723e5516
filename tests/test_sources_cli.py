"""`ltvcast ingest --config` and `ltvcast quarantine` through typer's CliRunner; backtest on the result."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ltvcast.cli import app
from ltvcast.store import Store

SHOP = Path(__file__).parent / "data" / "sources" / "shop"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.fixture
def shop(tmp_path):
    from test_sources_ingest import write_products_parquet, write_returns_xlsx

    folder = tmp_path / "shop"
    shutil.copytree(SHOP, folder)
    write_returns_xlsx(folder / "returns.xlsx")
    write_products_parquet(folder / "products.parquet")
    return folder


def test_ingest_config_prints_sources_reasons_and_skips_the_second_time(shop, tmp_path):
    db = tmp_path / "shop.duckdb"
    result = invoke("ingest", "--config", shop / "sources.yaml", "--db", db)
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "7 of 7 source table(s) ingested" in out and "(run 1)" in out
    assert re.search(r"orders │ orders.csv │ 10 │ 6 │ 3 │ 1 │ 0 │ ingested", out), out
    assert re.search(r"unknown_customer │ 2", out) and re.search(r"duplicate_id │ 2", out)
    assert "personal columns dropped from customers.csv: Email, Name" in out
    assert "shop currency EUR, time zone Europe/Berlin, revenue basis net; observation end 2024-03-11" in out
    again = invoke("ingest", "--config", shop / "sources.yaml", "--db", db)
    assert again.exit_code == 0, again.output
    assert "0 of 7 source table(s) ingested" in flat(again.output)
    assert flat(again.output).count("skipped") == 7


def test_quarantine_command_counts_and_examples(shop, tmp_path):
    db = tmp_path / "shop.duckdb"
    assert invoke("ingest", "--config", shop / "sources.yaml", "--db", db).exit_code == 0
    result = invoke("quarantine", "--db", db)
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert re.search(r"orders.csv │ orders │ unknown_currency │ 1", out), out
    assert "bad_event_type" not in out  # event types are open
    assert re.search(r"total │ │ │ 7", out) and f"sources under {shop}/" in out
    assert "unknown_currency: no fx rate for the currency on or before that day" in out
    shown = invoke("quarantine", "--db", db, "--show", "1", "--kind", "orders")
    assert shown.exit_code == 0, shown.output
    text = flat(shown.output)
    assert "orders · unknown_currency" in text and "row 5 Currency = 'CHF'" in text
    assert '"OrderID": "1005"' in text and "events" not in text
    only = invoke("quarantine", "--db", db, "--reason", "unknown_order")
    assert re.search(r"order_items │ unknown_order │ 1", flat(only.output))
    none = invoke("quarantine", "--db", db, "--reason", "bad_line")
    assert "no quarantined rows" in none.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["FILE.csv", "--config", "CONFIG"], "FILE applies to a single file"),
        (["--config", "CONFIG", "--map", "amount=x", "--dayfirst"], "--map, --dayfirst apply to a single file"),
        ([], "give a FILE to ingest, or --config sources.yaml"),
        (["--config", "missing.yaml"], "cannot read config missing.yaml"),
    ],
)
def test_ingest_option_errors(shop, tmp_path, args, message):
    args = [str(shop / "sources.yaml") if a == "CONFIG" else a for a in args]
    result = invoke("ingest", *args, "--db", tmp_path / "x.duckdb")
    assert result.exit_code == 2, result.output
    assert message in flat(result.output) and "Traceback" not in result.output


def test_backtest_runs_on_a_multi_source_store(tmp_path):
    """Orders in two currencies and an order_items export, ingested by config, then backtested."""
    lines = ["order_id,customer_id,timestamp,amount,currency"]
    for c in range(12):
        for k in range(1 + c % 4):
            day = pd.Timestamp("2024-01-03") + pd.Timedelta(days=9 * k + c)
            cur = "USD" if c % 3 == 0 else "EUR"
            lines.append(f"o{c}_{k},c{c:02d},{day:%Y-%m-%d} 12:00,{10 + c + k}.50,{cur}")
    (tmp_path / "orders.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "fx.csv").write_text("day,currency,rate\n2024-01-01,USD,0.5\n")
    (tmp_path / "sources.yaml").write_text(
        "shop: {currency: EUR, timezone: Europe/Berlin, data_end: 2024-03-31}\n"
        "sources:\n  - {kind: fx_rates, path: fx.csv}\n  - {kind: orders, path: orders.csv}\n"
    )
    db = tmp_path / "m.duckdb"
    assert invoke("ingest", "--config", tmp_path / "sources.yaml", "--db", db).exit_code == 0
    with Store.open(db, read_only=True) as store:
        assert store.observation_end() == pd.Timestamp("2024-03-31", tz="UTC")
        total = store.connection.execute("SELECT sum(amount) FROM transactions").fetchone()[0]
    # 30 orders; USD ones (customers 0, 3, 6, 9) count half
    assert float(total) == pytest.approx(
        sum((10 + c + k + 0.5) * (0.5 if c % 3 == 0 else 1) for c in range(12) for k in range(1 + c % 4))
    )
    out = tmp_path / "bt"
    result = invoke("backtest", "--db", db, "--cutoff", "2024-02-01", "--horizon", "30d", "--models", "naive", "--out", out)
    assert result.exit_code == 0, result.output
    preds = pd.read_parquet(out / "predictions.parquet")
    assert preds["customer_id"].nunique() == 12
