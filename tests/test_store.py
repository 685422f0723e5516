"""The DuckDB store: round trip, all-or-nothing writes, observation end."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from ltvcast.errors import DataError
from ltvcast.ingest import write as ingest_write
from ltvcast.ingest.mapping import load_mapping_file
from ltvcast.ingest.single import ingest
from ltvcast.ingest.write import write_ingest
from ltvcast.store import STORE_TABLES_DOC, Store

DATA = Path(__file__).parent / "data" / "ingest"
RENAMED = {"customer_id": "CustomerID", "timestamp": "InvoiceDate", "amount": "Sales", "order_id": "InvoiceNo"}


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def counts(path: Path) -> tuple[int, int, int]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return tuple(
            con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
            for t in ("transactions", "quarantine", "ingest_log")
        )
    finally:
        con.close()


@pytest.fixture
def renamed():
    return ingest(DATA / "orders_renamed.csv", RENAMED)


@pytest.fixture
def retail():
    return ingest(DATA / "online_retail.csv", load_mapping_file(DATA / "online_retail.yaml"))


def test_round_trip(tmp_path, renamed, retail):
    db = tmp_path / "shop.duckdb"
    with Store.open(db) as store:
        assert write_ingest(store, renamed) == 1
        assert write_ingest(store, retail) == 2
        tx = store.transactions()
        log = store.ingest_log()
        q = store.quarantine()
        assert store.quarantine_counts() == {
            "missing_customer_id": 3,
            "missing_timestamp": 1,
            "bad_timestamp": 2,
            "missing_amount": 2,
            "bad_amount": 3,
        }
        assert store.observation_end() == utc("2020-01-08")
    # all rows, canonical dtypes, sorted by customer_id then timestamp
    expected = (
        pd.concat([renamed.transactions, retail.transactions], ignore_index=True)
        .sort_values(["customer_id", "timestamp"], kind="mergesort")
        .reset_index(drop=True)
    )
    # the store adds `kind` (single-file rule: amount < 0 is a return)
    expected["kind"] = np.where(expected["amount"] < 0, "return", "sale")
    pd.testing.assert_frame_equal(tx, expected)
    assert tx["customer_id"].tolist() == ["00012", "00012", "13047", "14527", "17850", "17850", "17850", "17850", "17850.5"]

    assert log["ingest_id"].tolist() == [1, 2]
    first = log.iloc[0]
    assert first["source"] == renamed.stats.source
    assert (first["rows_read"], first["rows_kept"], first["rows_quarantined"]) == (12, 4, 8)
    assert (first["duplicates_dropped"], first["identical_rows_kept"], first["ids_normalised"]) == (0, 0, 1)
    assert first["first_day"] == utc("2020-01-05") and first["last_day"] == utc("2020-01-08")
    assert pd.isna(first["data_end"])
    assert json.loads(first["mapping"]) == RENAMED
    assert log.iloc[1]["duplicates_dropped"] == 2
    assert str(log["started_at"].dtype) == "datetime64[us, UTC]"

    assert len(q) == 11
    assert q["ingest_id"].tolist() == [1] * 8 + [2] * 3
    assert q.loc[q["ingest_id"] == 2, "source_row"].tolist() == [8, 9, 10]


def test_transactions_before_cutoff(tmp_path, renamed):
    with Store.open(tmp_path / "s.duckdb") as store:
        write_ingest(store, renamed)
        early = store.transactions(before="2020-01-07")
    assert early["timestamp"].tolist() == [utc("2020-01-05 10:00"), utc("2020-01-06 07:30")]


def test_reopen_reads_back_and_read_only(tmp_path, renamed):
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        write_ingest(store, renamed)
    with Store.open(db, read_only=True) as store:
        expected = renamed.transactions.assign(kind=np.where(renamed.transactions["amount"] < 0, "return", "sale"))
        pd.testing.assert_frame_equal(store.transactions(), expected)
        with pytest.raises(DataError, match="read-only"):
            write_ingest(store, renamed)
    with pytest.raises(DataError, match="does not exist"):
        Store.open(tmp_path / "nope.duckdb", read_only=True)


def test_write_is_all_or_nothing(tmp_path, renamed, retail, monkeypatch):
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        write_ingest(store, renamed)
    before = counts(db)
    assert before == (4, 8, 1)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full (simulated)")

    # fails after transactions and quarantine rows were inserted
    monkeypatch.setattr(ingest_write, "_insert_log", boom)
    with Store.open(db) as store:
        with pytest.raises(RuntimeError, match="simulated"):
            write_ingest(store, retail)
        # the same connection sees the old state too
        assert len(store.transactions()) == 4
    assert counts(db) == before
    monkeypatch.undo()
    with Store.open(db) as store:
        assert write_ingest(store, retail) == 2
    assert counts(db) == (9, 11, 2)


def test_declared_data_end_before_last_day_is_refused_and_nothing_written(tmp_path, renamed):
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        with pytest.raises(DataError, match="data_end 2020-01-07 is before the last transaction day 2020-01-08"):
            write_ingest(store, renamed, data_end="2020-01-07")
    assert counts(db) == (0, 0, 0)


def test_observation_end_declared_and_latest(tmp_path, renamed):
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        with pytest.raises(DataError, match="holds no transactions"):
            store.observation_end()
        write_ingest(store, renamed, data_end="2020-01-31")
        assert store.observation_end() == utc("2020-01-31")
        log = store.ingest_log()
        assert log["data_end"].tolist() == [utc("2020-01-31")]


def test_result_data_end_is_stored(tmp_path):
    result = ingest(DATA / "no_orders.csv", data_end="2021-05-31")
    with Store.open(tmp_path / "s.duckdb") as store:
        write_ingest(store, result)
        assert store.observation_end() == utc("2021-05-31")
        # a later ingest's declared end must cover all data in the store
        late = ingest(DATA / "orders_renamed.csv", RENAMED)
        with pytest.raises(DataError, match="data_end 2020-01-31 is before the last transaction day 2021-05-01"):
            write_ingest(store, late, data_end="2020-01-31")
        assert len(store.ingest_log()) == 1


def test_same_source_twice_is_refused_unless_replaced(tmp_path, renamed):
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        write_ingest(store, renamed)
        with pytest.raises(DataError, match="already ingested .*count every purchase twice"):
            write_ingest(store, renamed)
        assert write_ingest(store, renamed, replace=True) == 2
        assert store.ingest_log()["ingest_id"].tolist() == [2]
        assert len(store.transactions()) == 4
        assert store.quarantine()["ingest_id"].unique().tolist() == [2]


def test_not_a_store(tmp_path):
    junk = tmp_path / "junk.duckdb"
    junk.write_text("this is not a database", encoding="utf-8")
    with pytest.raises(DataError, match="cannot open store .*junk.duckdb"):
        Store.open(junk)
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE store_meta (key VARCHAR, value VARCHAR)")
    con.execute("INSERT INTO store_meta VALUES ('schema_version', '99')")
    con.close()
    with pytest.raises(DataError, match="schema version 3 \\(found 99\\)"):
        Store.open(other)


def test_table_doc_matches_tables(tmp_path):
    with Store.open(tmp_path / "s.duckdb"):
        pass
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    try:
        for table in ("transactions", "quarantine", "ingest_log"):
            columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
            section = STORE_TABLES_DOC.split(f"**`{table}`**")[1].split("**`")[0]
            documented = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ") and not line.startswith("| column")]
            assert documented == columns, table
            types = {r[0]: r[1] for r in con.execute(f"DESCRIBE {table}").fetchall()}
            assert types.get("timestamp", "TIMESTAMP") == "TIMESTAMP"
    finally:
        con.close()


def test_docs_document_the_store_tables_as_they_are():
    readme = (Path(__file__).resolve().parents[1] / "docs" / "store.md").read_text(encoding="utf-8")
    block = readme.split("<!-- store-tables:start -->")[1].split("<!-- store-tables:end -->")[0]
    from ltvcast.store import STORE_TABLES_DOC

    assert block.strip() == STORE_TABLES_DOC.strip()


def test_same_bytes_under_another_name_are_refused(tmp_path):
    from ltvcast.ingest.single import ingest

    first = tmp_path / "export.csv"
    first.write_text("customer_id,timestamp,amount\n1,2024-01-01,5\n2,2024-01-02,7\n")
    copy = tmp_path / "export_copy.csv"
    copy.write_bytes(first.read_bytes())
    with Store.open(tmp_path / "s.duckdb") as store:
        write_ingest(store, ingest(first))
        with pytest.raises(DataError, match="same content as .*export.csv"):
            write_ingest(store, ingest(copy))
        assert len(store.transactions()) == 2


def test_amount_too_large_for_the_store_is_quarantined_not_a_crash(tmp_path):
    from ltvcast.ingest.single import ingest

    path = tmp_path / "big.csv"
    path.write_text("customer_id,timestamp,amount\n1,2024-01-01,1e15\n1,2024-01-02,5\n")
    result = ingest(path)
    assert result.stats.quarantined == {"bad_amount": 1}
    with Store.open(tmp_path / "s.duckdb") as store:
        write_ingest(store, result)
        assert store.transactions()["amount"].tolist() == [5.0]
