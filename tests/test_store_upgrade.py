"""A schema-1 store (written by the foundation) is upgraded in place when opened."""

from __future__ import annotations

from decimal import Decimal

import duckdb
import pandas as pd
import pytest

from ltvcast.store import STORE_TABLES_DOC, Store

V1_DDL = [
    "CREATE TABLE store_meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    (
        'CREATE TABLE transactions (ingest_id INTEGER NOT NULL, customer_id VARCHAR NOT NULL, "timestamp" TIMESTAMP NOT NULL, '
        "amount DOUBLE NOT NULL, order_id VARCHAR, line BIGINT, quantity DOUBLE, product_id VARCHAR, category VARCHAR, "
        "brand VARCHAR, channel VARCHAR, currency VARCHAR)"
    ),
    (
        "CREATE TABLE quarantine (ingest_id INTEGER NOT NULL, source VARCHAR NOT NULL, source_row BIGINT NOT NULL, "
        "reason VARCHAR NOT NULL, source_column VARCHAR, raw_value VARCHAR, raw_row VARCHAR)"
    ),
    (
        "CREATE TABLE ingest_log (ingest_id INTEGER PRIMARY KEY, source VARCHAR NOT NULL, format VARCHAR, rows_read BIGINT, "
        "rows_kept BIGINT, rows_quarantined BIGINT, duplicates_dropped BIGINT, identical_rows_kept BIGINT, "
        "ids_normalised BIGINT, first_day DATE, last_day DATE, data_end DATE, mapping VARCHAR, started_at TIMESTAMP, "
        "seconds DOUBLE)"
    ),
    "INSERT INTO store_meta VALUES ('schema_version', '1')",
    (
        "INSERT INTO transactions VALUES (1, 'c1', '2020-01-05 10:00', 54.080000000000005, 'A', 1, 32, NULL, NULL, NULL, NULL, NULL),"
        " (1, 'c1', '2020-01-06 10:00', -27.5, 'CA', 1, -10, NULL, NULL, NULL, NULL, NULL)"
    ),
    "INSERT INTO quarantine VALUES (1, '/x/orders.csv', 3, 'bad_amount', 'Sales', 'abc', '{}')",
    (
        "INSERT INTO ingest_log VALUES (1, '/x/orders.csv', 'csv', 3, 2, 1, 0, 0, 0, '2020-01-05', '2020-01-06', NULL, '{}', "
        "'2024-01-01 00:00', 0.1)"
    ),
]


@pytest.fixture
def v1_store(tmp_path):
    path = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(path))
    for statement in V1_DDL:
        con.execute(statement)
    con.close()
    return path


@pytest.mark.parametrize("read_only", [False, True])
def test_v1_store_is_upgraded(v1_store, read_only):
    with Store.open(v1_store, read_only=read_only) as store:
        tx = store.transactions()
        assert tx["kind"].tolist() == ["sale", "return"]
        assert tx["amount"].tolist() == [54.08, -27.5]
        assert store.quarantine()["kind"].tolist() == ["transactions"]
        assert store.ingest_log()["kind"].tolist() == ["transactions"]
        assert store.meta()["schema_version"] == "3" and store.meta()["revenue_basis"] == "net"
        assert store.observation_end() == pd.Timestamp("2020-01-06", tz="UTC")
        con = store.connection
        assert con.execute("SELECT sum(amount) FROM transactions").fetchone()[0] == Decimal("26.5800")
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert {"orders", "order_items", "returns", "events", "customers", "products", "fx_rates", "ingest_keys"} <= tables


@pytest.fixture
def v2_store(tmp_path):
    """A schema-2 store: today's layout without ``attributes``, one order and one customer with an extra column."""
    path = tmp_path / "v2.duckdb"
    Store.open(path).close()
    con = duckdb.connect(str(path))
    for table in ("customers", "orders", "order_items"):
        con.execute(f"ALTER TABLE {table} DROP COLUMN attributes")
    con.execute("ALTER TABLE customers ADD COLUMN segment VARCHAR")
    con.execute("INSERT INTO customers (ingest_id, customer_id, segment) VALUES (1, 'c1', 'gold')")
    con.execute("INSERT INTO orders VALUES (1, 'A', 'c1', '2024-01-05 10:00', NULL, 'EUR', 10, 10, 0, 10)")
    con.execute("UPDATE store_meta SET value = '2' WHERE key = 'schema_version'")
    con.close()
    return path


@pytest.mark.parametrize("read_only", [False, True])
def test_v2_store_gets_attributes_columns(v2_store, read_only):
    with Store.open(v2_store, read_only=read_only) as store:
        assert store.meta()["schema_version"] == "3"
        con = store.connection
        for table in ("customers", "orders", "order_items"):
            assert "attributes" in [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
        assert con.execute("SELECT order_id, net_amount, attributes FROM orders").fetchall() == [("A", Decimal("10.0000"), None)]
        assert con.execute("SELECT segment, attributes FROM customers").fetchall() == [("gold", None)]


def test_fresh_store_tables_match_the_doc(tmp_path):
    with Store.open(tmp_path / "s.duckdb") as store:
        types = {
            table: [r[0] for r in store.connection.execute(f"DESCRIBE {table}").fetchall()]
            for table in ("transactions", "quarantine", "ingest_log")
        }
        amount_type = store.connection.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'transactions' AND column_name = 'amount'"
        ).fetchone()[0]
    assert amount_type == "DECIMAL(18,4)"
    for table, columns in types.items():
        section = STORE_TABLES_DOC.split(f"**`{table}`**")[1].split("**`")[0]
        documented = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ") and not line.startswith("| column")]
        assert documented == columns


def test_contract_doc_shows_the_generated_table_layouts():
    from pathlib import Path

    from ltvcast.schema.tables import TABLES, tables_doc

    doc = (Path(__file__).resolve().parents[1] / "docs" / "multisource.md").read_text(encoding="utf-8")
    for table in TABLES:
        assert tables_doc((table,)) in doc, f"docs/multisource.md: regenerate the layout of {table}"
