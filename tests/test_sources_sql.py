"""Database sources through SQLAlchemy: SQLite (a file) and a real PostgreSQL server.

PostgreSQL: the server at ``$LTVCAST_TEST_PGURL`` (default
``postgresql://postgres@127.0.0.1:5432/test``, trust auth). Where it cannot
be reached the PostgreSQL tests skip with the reason — except under
``CI=true``, where they fail: CI must test the real database. Each test
creates its own uniquely named tables and drops them.
"""

from __future__ import annotations

import os
import uuid
from decimal import Decimal

import pandas as pd
import pytest
import sqlalchemy as sa

from ltvcast.errors import DataError
from ltvcast.ingest.config import load_config
from ltvcast.ingest.multisource import ingest_sources
from ltvcast.ingest.sql_source import engine_url, frame_hash, masked_url, read_sql_source
from ltvcast.store import Store

PG_URL = os.environ.get("LTVCAST_TEST_PGURL", "postgresql://postgres@127.0.0.1:5432/test")


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# -- SQLite: no server needed ------------------------------------------------------
def test_sqlite_table_and_query_sources(tmp_path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as con:
        con.execute(sa.text("CREATE TABLE orders (id TEXT, cust TEXT, at TEXT, total NUMERIC, cur TEXT)"))
        con.execute(sa.text(
            "INSERT INTO orders VALUES ('o1', '00012', '2024-01-01 10:00', 19.90, 'EUR'), "
            "('o2', '00012', '2024-01-05 10:00', 5, 'EUR'), ('o3', '7', '2024-01-06 10:00', 1, 'EUR')"
        ))
    engine.dispose()
    raw = read_sql_source(url, table="orders")
    assert raw.format == "sql" and raw.source.endswith("crm.db#orders")
    assert raw.frame.values.tolist()[0] == ["o1", "00012", "2024-01-01 10:00", "19.9", "EUR"]
    (tmp_path / "sources.yaml").write_text(
        "shop: {currency: EUR}\n"
        "sources:\n"
        "  - kind: orders\n"
        f"    url: {url}\n"
        "    query: SELECT * FROM orders WHERE cust = '00012'\n"
        "    mapping: {order_id: id, customer_id: cust, timestamp: at, amount: total, currency: cur}\n"
    )
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        result = ingest_sources(load_config(tmp_path / "sources.yaml"), store)
        assert result.sources[0].counts.rows_kept == 2
        assert result.sources[0].source.startswith("sqlite:///") and "#query:" in result.sources[0].source
        assert store.transactions()["amount"].tolist() == [19.9, 5.0]
        again = ingest_sources(load_config(tmp_path / "sources.yaml"), store)
        assert again.sources[0].status == "skipped"
    with pytest.raises(DataError, match=r"cannot read sqlite:///.*crm.db#nope: .*no such table"):
        read_sql_source(url, table="nope")


def test_result_hash_ignores_row_order_and_urls_are_masked():
    frame = pd.DataFrame({"a": ["1", "2", "3"], "b": ["x", "y", "z"]})
    assert frame_hash(frame) == frame_hash(frame.iloc[::-1])
    assert frame_hash(frame) != frame_hash(frame.assign(b=["x", "y", "w"]))
    assert frame_hash(frame) != frame_hash(frame.rename(columns={"b": "c"}))
    assert masked_url("postgresql://u:hunter2@db:5432/shop") == "postgresql+psycopg://u:***@db:5432/shop"
    assert engine_url("postgres://db/x").drivername == "postgresql+psycopg"
    with pytest.raises(DataError, match="not a database URL"):
        engine_url("not a url at all")


# -- PostgreSQL -----------------------------------------------------------------
def _reachable(url: str) -> str | None:
    try:
        engine = sa.create_engine(engine_url(url), connect_args={"connect_timeout": 3}, poolclass=sa.pool.NullPool)
        with engine.connect() as con:
            con.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any driver error means: no server here
        return str(exc).strip().splitlines()[0]


@pytest.fixture(scope="module")
def pg_url() -> str:
    problem = _reachable(PG_URL)
    if problem is not None:
        message = f"PostgreSQL at {masked_url(PG_URL)} is not reachable ({problem}); set LTVCAST_TEST_PGURL"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true requires the PostgreSQL tests to run: {message}")
        pytest.skip(message)
    return PG_URL


@pytest.fixture
def pg_tables(pg_url):
    """Unique table names in the test database; dropped afterwards."""
    prefix = f"ltvcast_test_{uuid.uuid4().hex[:10]}"
    names = {"customers": f"{prefix}_customers", "orders": f"{prefix}_orders"}
    engine = sa.create_engine(engine_url(pg_url), poolclass=sa.pool.NullPool)
    yield engine, names
    with engine.begin() as con:
        for name in names.values():
            con.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
    engine.dispose()


def test_postgres_sources_end_to_end(pg_tables, tmp_path, monkeypatch):
    engine, names = pg_tables
    customers, orders = names["customers"], names["orders"]
    with engine.begin() as con:
        con.execute(sa.text(
            f'CREATE TABLE "{customers}" (customer_ref TEXT, email TEXT, signed_up TIMESTAMPTZ, country TEXT)'
        ))
        con.execute(sa.text(
            f'INSERT INTO "{customers}" VALUES '
            "('00012', 'a@x.de', '2023-12-31 23:30:00+00', 'DE'), ('17850', 'b@x.de', NULL, 'GB')"
        ))
        con.execute(sa.text(
            f'CREATE TABLE "{orders}" (order_no BIGINT, customer_ref TEXT, placed TIMESTAMP, '
            "total NUMERIC(12, 2), currency CHAR(3))"
        ))
        con.execute(sa.text(
            f'INSERT INTO "{orders}" VALUES '
            "(1001, '00012', '2024-03-10 01:30', 19.90, 'EUR'), "  # New York naive, EST: 06:30 UTC
            "(1002, '17850', '2024-07-01 20:30', 0.30, 'EUR'), "  # EDT: 00:30 UTC on 07-02
            "(1003, '17850', '2024-07-02 09:00', -0.30, 'EUR'), "  # a refund without reference: own day
            "(1004, '99999', '2024-07-03 09:00', 5.00, 'EUR')"
        ))
    monkeypatch.setenv("SHOP_DB", PG_URL)
    (tmp_path / "sources.yaml").write_text(
        "shop: {currency: EUR, timezone: Europe/Berlin}\n"
        "sources:\n"
        "  - kind: customers\n"
        "    url: ${SHOP_DB}\n"
        f"    table: public.{customers}\n"
        "    mapping: {customer_id: customer_ref, signup_at: signed_up, country: country}\n"
        "  - kind: orders\n"
        "    url: ${SHOP_DB}\n"
        f"    query: SELECT * FROM {orders} WHERE customer_ref <> '99999'\n"
        "    timezone: America/New_York\n"
        "    mapping: {order_id: order_no, customer_id: customer_ref, timestamp: placed, amount: total}\n"
    )
    db = tmp_path / "pg.duckdb"
    with Store.open(db) as store:
        result = ingest_sources(load_config(tmp_path / "sources.yaml"), store)
        first, second = result.sources
        assert first.personal_dropped == ("email",)
        assert (first.counts.rows_read, first.counts.rows_kept) == (2, 2)
        assert (second.counts.rows_read, second.counts.rows_kept) == (3, 3)
        assert first.source.endswith(f"/test#public.{customers}") and second.format == "sql"
        cust = store.table("customers").set_index("customer_id")
        assert cust.loc["00012", "signup_at"] == utc("2023-12-31 23:30")  # TIMESTAMPTZ keeps its instant
        assert pd.isna(cust.loc["17850", "signup_at"])
        tx = store.transactions()
        assert [(r.customer_id, r.timestamp, r.amount, r.kind) for r in tx.itertuples()] == [
            ("00012", utc("2024-03-10 06:30"), 19.9, "sale"),
            ("17850", utc("2024-07-02 00:30"), 0.3, "sale"),
            ("17850", utc("2024-07-02 13:00"), -0.3, "return"),  # 09:00 EDT
        ]
        total = store.connection.execute("SELECT sum(amount) FROM transactions WHERE customer_id = '17850'").fetchone()[0]
        assert total == Decimal("0.0000")
        # the same query result again (in another row order) adds nothing
        again = ingest_sources(load_config(tmp_path / "sources.yaml"), store)
        assert [r.status for r in again.sources] == ["skipped", "skipped"]
    with engine.begin() as con:
        con.execute(sa.text(f"INSERT INTO \"{orders}\" VALUES (1005, '00012', '2024-08-01 12:00', 7.25, 'EUR')"))
    with Store.open(db) as store:
        third = ingest_sources(load_config(tmp_path / "sources.yaml"), store)
        orders_report = third.sources[1]
        assert orders_report.status == "ingested"
        assert (orders_report.counts.rows_kept, orders_report.counts.duplicates_dropped) == (1, 3)
        assert store.connection.execute("SELECT sum(amount) FROM transactions").fetchone()[0] == Decimal("27.1500")


def test_postgres_errors_are_clear_and_mask_the_password(pg_url):
    url = pg_url.replace("postgresql://postgres@", "postgresql://postgres:hunter2@")
    with pytest.raises(DataError) as info:
        read_sql_source(url, table=f"no_such_table_{uuid.uuid4().hex[:8]}")
    assert "cannot read postgresql+psycopg://postgres:***@" in str(info.value)
    assert "does not exist" in str(info.value) and "hunter2" not in str(info.value)
    with pytest.raises(DataError, match="syntax error"):
        read_sql_source(pg_url, query="SELEC 1")
    with pytest.raises(DataError, match=r"cannot read postgresql\+psycopg://postgres@127.0.0.1:1/test#t"):
        read_sql_source("postgresql://postgres@127.0.0.1:1/test", table="t")
