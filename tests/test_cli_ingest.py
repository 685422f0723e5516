"""`ltvcast ingest` through typer's CliRunner."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ltvcast.cli import app
from ltvcast.store import Store

DATA = Path(__file__).parent / "data" / "ingest"
runner = CliRunner()


def invoke(*args: str):
    """Run ``ltvcast ingest ARGS``.

    While ``ingest`` is the only registered command, Typer runs it as the
    whole app (no sub-command name); once other commands exist the name is
    needed.
    """
    prefix = ["ingest"] if len(app.registered_commands) > 1 or app.registered_groups else []
    return runner.invoke(app, [*prefix, *args])


def flat(text: str) -> str:
    """Output with Rich's line wrapping undone."""
    return re.sub(r"\s+", " ", text)


def row(output: str, label: str) -> str:
    match = re.search(rf"{re.escape(label)}\s*│\s*([^│]+?)\s*│", output)
    assert match, f"no row {label!r} in:\n{output}"
    return match.group(1)


def test_help():
    result = invoke("--help")
    assert result.exit_code == 0
    text = flat(result.output)
    for option in ("--db", "--map", "--map-file", "--format", "--dayfirst", "--date-format", "--data-end", "--columns", "--replace"):
        assert option in text
    assert "unit_price" in text


def test_ingest_with_map_writes_store_and_prints_summary(tmp_path):
    db = tmp_path / "shop.duckdb"
    result = invoke(
        str(DATA / "orders_renamed.csv"),
        "--db", str(db),
        "--map", "customer_id=CustomerID,amount=Sales",
        "--map", "timestamp=InvoiceDate,order_id=InvoiceNo",
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert row(out, "rows read") == "12"
    assert row(out, "rows kept") == "4"
    assert row(out, "rows quarantined") == "8"
    assert row(out, "missing_customer_id") == "2"
    assert row(out, "bad_timestamp") == "2"
    assert row(out, "missing_timestamp") == "1"
    assert row(out, "bad_amount") == "2"
    assert row(out, "missing_amount") == "1"
    assert row(out, "duplicates dropped") == "0"
    assert row(out, "identical rows kept") == "0"
    assert row(out, "ids normalised") == "1"
    assert row(out, "observation end") == "2020-01-08"
    assert "quarantine" in out
    with Store.open(db, read_only=True) as store:
        tx = store.transactions()
        assert tx["customer_id"].tolist() == ["00012", "00012", "17850", "17850.5"]
        assert store.quarantine_counts()["missing_customer_id"] == 2
        assert store.observation_end() == pd.Timestamp("2020-01-08", tz="UTC")


def test_ingest_with_map_file_and_duplicates(tmp_path):
    db = tmp_path / "retail.duckdb"
    result = invoke(str(DATA / "online_retail.csv"), "--db", str(db), "--map-file", str(DATA / "online_retail.yaml"))
    assert result.exit_code == 0, result.output
    assert row(result.output, "duplicates dropped") == "2"
    assert row(result.output, "ids normalised") == "9"
    assert row(result.output, "rows kept") == "5"
    with Store.open(db, read_only=True) as store:
        assert store.transactions()["amount"].sum() == pytest.approx(32 * 1.69 - 27.5 + 6 * 2.55 + 6 * 3.39 + 6 * 1.85)


def test_headerless_columns_option_dayfirst_and_data_end(tmp_path):
    db = tmp_path / "s.duckdb"
    result = invoke(
        str(DATA / "cdnow_headerless.txt"),
        "--db", str(db),
        "--columns", "master_id,sample_id,date,number_of_cds,dollar_value",
        "--map", "customer_id=master_id,timestamp=date,amount=dollar_value,quantity=number_of_cds",
        "--data-end", "1997-09-30",
    )
    assert result.exit_code == 0, result.output
    assert row(result.output, "rows kept") == "5"
    assert row(result.output, "observation end") == "1997-09-30"
    result = invoke(str(DATA / "dayfirst.csv"), "--db", str(db), "--dayfirst")
    assert result.exit_code == 0, result.output
    with Store.open(db, read_only=True) as store:
        tx = store.transactions()
        assert len(tx) == 8
        assert tx.loc[tx["customer_id"] == "c2", "timestamp"].tolist() == [pd.Timestamp("2020-02-13 08:00", tz="UTC")]
        assert store.ingest_log()["data_end"].notna().tolist() == [True, False]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope.csv"], "file not found: nope.csv"),
        ([str(DATA / "orders_renamed.csv")], "required column customer_id not found"),
        ([str(DATA / "orders_renamed.csv"), "--map", "customer=CustomerID"], "unknown canonical column"),
        ([str(DATA / "dayfirst.csv")], "pass dayfirst (--dayfirst)"),
        ([str(DATA / "no_orders.csv"), "--data-end", "2021-04-01"], "before the last transaction day 2021-05-01"),
        ([str(DATA / "no_orders.csv"), "--format", "xlsx"], "unknown format 'xlsx'"),
        ([str(DATA / "no_orders.csv"), "--map-file", "missing.yaml"], "cannot read mapping file missing.yaml"),
    ],
)
def test_errors_are_one_clean_message_with_exit_2(tmp_path, args, message):
    result = invoke(*args, "--db", str(tmp_path / "s.duckdb"))
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert "error:" in text
    assert message in text
    assert "Traceback" not in result.output


def test_second_ingest_of_same_file_needs_replace(tmp_path):
    db = str(tmp_path / "s.duckdb")
    assert invoke(str(DATA / "no_orders.csv"), "--db", db).exit_code == 0
    again = invoke(str(DATA / "no_orders.csv"), "--db", db)
    assert again.exit_code == 2
    assert "--replace" in flat(again.output)
    replaced = invoke(str(DATA / "no_orders.csv"), "--db", db, "--replace")
    assert replaced.exit_code == 0, replaced.output
    with Store.open(db, read_only=True) as store:
        assert len(store.transactions()) == 4
