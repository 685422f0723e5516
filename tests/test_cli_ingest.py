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
    assert row(out, "ids normalised (in rows kept)") == "1"
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
    # issue 11: only the 5 kept rows count (17850.0 x3, 14527.0, 13047.0), not the 2 dropped
    # duplicates nor the 2 quarantined rows with a float-spelled id: a subset of the rows kept
    assert row(result.output, "ids normalised (in rows kept)") == "5"
    assert row(result.output, "rows kept") == "5"
    assert row(result.output, "zero-value sale lines (in rows kept)") == "0"
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


def test_zero_value_sale_lines_are_counted_and_warned(tmp_path):
    """Issue 11: sale lines of amount 0 are kept but counted and warned about; returns are not counted."""
    src = tmp_path / "z.csv"
    src.write_text(
        "customer,date,amount\n"
        "a,2020-01-01,10\n"
        "a,2020-01-02,0\n"
        "b,2020-01-03,0.00\n"
        "b,2020-01-04,-5\n"
        "c,2020-01-05,3\n"
    )
    result = invoke(str(src), "--db", str(tmp_path / "z.duckdb"), "--map", "customer_id=customer,timestamp=date,amount=amount")
    assert result.exit_code == 0, result.output
    assert row(result.output, "rows kept") == "5"
    assert row(result.output, "zero-value sale lines (in rows kept)") == "2"
    assert "2 sale line(s) with amount 0 were kept" in flat(result.output)


def test_malformed_rows_are_quarantined_and_decimal_commas_read(tmp_path):
    src = tmp_path / "shop.csv"
    src.write_text(
        "customer_id;timestamp;amount\n"
        "c1;2024-01-01;1.234,56\n"  # 1234.56
        "c2;2024-01-02;3;extra\n"  # row 2: one field too many
        'c3;"2024-01-03;7\n'  # row 3: a quote that never closes
        "c1;2024-01-05;2,5\n",  # 2.5
        encoding="utf-8",
    )
    db = tmp_path / "shop.duckdb"
    result = invoke(str(src), "--db", str(db), "--decimal", ",")
    assert result.exit_code == 0, result.output
    assert row(result.output, "rows read") == "4"
    with Store.open(db, read_only=True) as store:
        amounts = store.transactions().sort_values("timestamp")["amount"].tolist()
        bad = store.quarantine().sort_values("source_row")
    assert amounts == [1234.56, 2.5]
    assert bad["source_row"].tolist() == [2, 3] and set(bad["reason"]) == {"bad_row"}
    assert bad["raw_value"].tolist()[0] == "line 3: expected 3 fields, saw 4"
    wrong = invoke(str(src), "--db", str(tmp_path / "x.duckdb"), "--decimal", ";")
    assert wrong.exit_code == 2 and "not a decimal mark" in wrong.output


def test_exclude_rule_counts_rows_on_cli_and_in_map_file(tmp_path):
    """Issue 11: --exclude / exclude: in a mapping leaves rows out and counts them; counts add up."""
    import json

    src = tmp_path / "retail.csv"
    src.write_text(
        "Invoice,StockCode,Customer,Date,Sales\n"
        "1,85123A,17850.0,2020-01-01,10\n"
        "1,POST,17850.0,2020-01-01,18\n"
        "2,M,13047,2020-01-02,-3\n"
        "3,22633,13047,2020-01-03,4\n"
        "3,22633,13047,2020-01-03,4\n"
        "4, POST ,,2020-01-04,18\n"
        "5,DOT,12583,2020-01-05,xx\n"
        "6,21756,,2020-01-06,7\n"
    )
    db = tmp_path / "r.duckdb"
    result = invoke(
        str(src), "--db", str(db),
        "--map", "customer_id=Customer,timestamp=Date,amount=Sales,order_id=Invoice,product_id=StockCode",
        "--exclude", "product_id=POST,M,DOT",
    )
    assert result.exit_code == 0, result.output
    out = result.output
    # 8 rows = 2 kept + 1 quarantined (row 8, no customer) + 1 duplicate (row 5 repeats row 4's
    # order line) + 4 excluded
    assert row(out, "rows read") == "8"
    assert row(out, "rows kept") == "2"
    assert row(out, "rows quarantined") == "1"
    assert row(out, "duplicates dropped") == "1"
    assert row(out, "rows excluded (mapping rule)") == "4"
    assert row(out, "product_id=POST") == "2"  # padded " POST " matches too
    assert row(out, "product_id=M") == "1"
    assert row(out, "product_id=DOT") == "1"  # its bad amount is never quarantined: excluded first
    assert row(out, "ids normalised (in rows kept)") == "1"  # only row 1's 17850.0 (row 2 excluded)
    with Store.open(db, read_only=True) as store:
        assert sorted(store.transactions()["amount"].astype(float)) == [4.0, 10.0]
        log = store.ingest_log()
        mapping = json.loads(log["mapping"].iloc[-1])
        assert mapping["exclude"] == {"product_id": ["POST", "M", "DOT"]}
        assert mapping["_excluded"] == {"product_id=POST": 2, "product_id=M": 1, "product_id=DOT": 1}
        assert int(log["rows_read"].iloc[-1]) == 8

    spec = tmp_path / "m.yaml"
    spec.write_text(
        "customer_id: Customer\ntimestamp: Date\namount: Sales\norder_id: Invoice\nproduct_id: StockCode\n"
        "exclude: {StockCode: [POST]}\n"
    )
    result = invoke(str(src), "--db", str(tmp_path / "r2.duckdb"), "--map-file", str(spec))
    assert result.exit_code == 0, result.output
    assert row(result.output, "rows excluded (mapping rule)") == "2"
    assert row(result.output, "StockCode=POST") == "2"
    assert row(result.output, "rows kept") == "3"  # rows 1, 3 (the return), 4
    assert row(result.output, "rows quarantined") == "2"  # row 7 (bad amount), row 8 (no customer)
    assert row(result.output, "duplicates dropped") == "1"

    bad = invoke(str(src), "--db", str(tmp_path / "r3.duckdb"), "--map", "customer_id=Customer,timestamp=Date,amount=Sales",
                 "--exclude", "sku=POST")
    assert bad.exit_code == 2 and "exclude names column 'sku'" in flat(bad.output)
    bad = invoke(str(src), "--db", str(tmp_path / "r3.duckdb"), "--exclude", "product_id")
    assert bad.exit_code == 2 and "is not column=value" in flat(bad.output)
