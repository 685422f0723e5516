"""Issue 11: events sources are staged in batches and resolved in the database (bounded memory);
extra columns of events and returns sources are kept in ``attributes``.

The same shop ingested with batches of 2 rows and in one batch gives the same
store (rows, fates, row numbers, reasons, raw rows); the counts are checked by
hand, so a batch boundary that loses or double-counts a row fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ltvcast.errors import DataError
from ltvcast.ingest import readers
from ltvcast.ingest.config import load_config
from ltvcast.ingest.multisource import ingest_sources
from ltvcast.store import Store

EVENTS = """event_id,customer_id,timestamp,event_type,campaign_id
e1,c1,2024-03-01 10:00,view,k1
e2,c1,2024-03-01 11:00,email_open,
e1,c1,2024-03-01 10:00,view,k1
e3,c9,2024-03-02 10:00,view,
e2,c2,2024-03-03 10:00,view,
,c2,2024-03-04 10:00,search,k2
e4,c1,not a date,view,
,c2,2024-03-04 10:00,search,k2
e5,TEST,2024-03-05 10:00,view,
e6,c2,2024-03-06 10:00,purchase,k3
"""
"""Rows (data row: fate): 1 kept; 2 kept; 3 duplicate of 1; 4 unknown_customer (c9); 5 duplicate_id
(e2 with other content); 6 kept (id h:...); 7 bad_timestamp; 8 duplicate of 6 (same content, no id);
9 excluded (customer TEST); 10 kept."""


def write_shop(root: Path, events: str = EVENTS, name: str = "events.csv", extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "customers.csv").write_text("customer_id\nc1\nc2\nTEST\n", encoding="utf-8")
    (root / "orders.csv").write_text(
        "order_id,customer_id,timestamp,amount,promo_name\nO1,c1,2024-03-01 12:00,20.00,spring\n"
        "C9,c1,2024-03-04 12:00,-5.00,refund desk\n", encoding="utf-8")
    (root / "returns.csv").write_text(
        "return_id,order_id,timestamp,amount,return_reason,note\nR1,O1,2024-03-05 12:00,5.00,too small,\n"
        "R2,O1,2024-03-06 12:00,2.00,,\n", encoding="utf-8")
    if isinstance(events, bytes):
        (root / name).write_bytes(events)
    elif name.endswith(".parquet"):
        frame = pd.read_csv(pd.io.common.StringIO(events), dtype=str, keep_default_na=False)
        frame.to_parquet(root / name, index=False)
    else:
        (root / name).write_text(events, encoding="utf-8")
    (root / "sources.yaml").write_text(
        "shop: {currency: EUR, timezone: UTC}\n"
        "sources:\n"
        "  - {kind: customers, path: customers.csv}\n"
        "  - {kind: orders, path: orders.csv, cancellation_prefix: C}\n"
        "  - {kind: returns, path: returns.csv}\n"
        f"  - {{kind: events, path: {name}, exclude: {{customer_id: [TEST]}}{extra}}}\n",
        encoding="utf-8",
    )
    return root / "sources.yaml"


def ingest(config: Path, db: Path, batch_rows: int, monkeypatch):
    monkeypatch.setattr(readers, "BATCH_ROWS", batch_rows)
    with Store.open(db) as store:
        return ingest_sources(load_config(config), store)


def dump(db: Path) -> dict[str, list]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            "events": con.execute("SELECT * EXCLUDE (ingest_id) FROM events ORDER BY rowid").fetchall(),
            "keys": con.execute("SELECT kind, key, row_hash FROM ingest_keys ORDER BY kind, key").fetchall(),
            "quarantine": con.execute(
                "SELECT source_row, reason, source_column, raw_value, raw_row, kind FROM quarantine "
                "ORDER BY kind, source_row").fetchall(),
            "log": con.execute(
                "SELECT kind, rows_read, rows_kept, rows_quarantined, duplicates_dropped, first_day, last_day, mapping "
                "FROM ingest_log ORDER BY ingest_id").fetchall(),
        }
    finally:
        con.close()


def events_report(result):
    return next(r for r in result.sources if r.kind == "events")


@pytest.mark.parametrize("name", ["events.csv", "events.parquet", "events.jsonl"])
def test_batches_of_two_rows_give_the_store_of_one_batch(tmp_path, monkeypatch, name):
    events = EVENTS
    if name.endswith(".jsonl"):
        frame = pd.read_csv(pd.io.common.StringIO(EVENTS), dtype=str, keep_default_na=False)
        events = "".join(json.dumps(r) + "\n" for r in frame.to_dict("records"))
    config = write_shop(tmp_path / "shop", events, name)
    one = ingest(config, tmp_path / "one.duckdb", 1000, monkeypatch)
    many = ingest(config, tmp_path / "many.duckdb", 2, monkeypatch)
    assert dump(tmp_path / "one.duckdb") == dump(tmp_path / "many.duckdb")
    for result in (one, many):
        c = events_report(result).counts
        assert (c.rows_read, c.rows_kept, c.duplicates_dropped, c.excluded) == (10, 4, 2, {"customer_id=TEST": 1})
        assert c.quarantined == {"bad_timestamp": 1, "duplicate_id": 1, "unknown_customer": 1}
    rows = {r[0]: r for r in dump(tmp_path / "many.duckdb")["quarantine"] if r[5] == "events"}
    assert sorted(rows) == [4, 5, 7]
    assert rows[4][1:4] == ("unknown_customer", "customer_id", "c9")
    assert rows[5][1:4] == ("duplicate_id", "event_id", "e2")
    assert rows[7][1:4] == ("bad_timestamp", "timestamp", "not a date")
    assert json.loads(rows[5][4]) == {"event_id": "e2", "customer_id": "c2", "timestamp": "2024-03-03 10:00",
                                      "event_type": "view", "campaign_id": ""}
    kept = dump(tmp_path / "many.duckdb")["events"]
    assert [r[0][:2] if r[0].startswith("h:") else r[0] for r in kept] == ["e1", "e2", "h:", "e6"]


def test_a_malformed_row_after_the_first_batch_reads_the_file_again(tmp_path, monkeypatch):
    lines = EVENTS.splitlines()
    lines[8] = 'e9,c1,2024-03-05 10:00,view,"k1,extra'  # data row 8: a quote that never closes
    text = "\n".join(lines) + "\n"
    config = write_shop(tmp_path / "shop", text)
    ingest(config, tmp_path / "one.duckdb", 1000, monkeypatch)
    many = ingest(config, tmp_path / "many.duckdb", 3, monkeypatch)
    assert dump(tmp_path / "one.duckdb") == dump(tmp_path / "many.duckdb")
    c = events_report(many).counts
    assert c.rows_read == 10 and c.quarantined["bad_row"] == 1
    assert c.rows_read == c.rows_kept + c.rows_quarantined + c.duplicates_dropped + c.rows_excluded
    bad = [r for r in dump(tmp_path / "many.duckdb")["quarantine"] if r[1] == "bad_row"]
    assert [(r[0], r[3]) for r in bad] == [(8, "line 9: broken quoting: a quote that never closes")]


def test_a_latin1_file_read_again_after_the_first_batch(tmp_path, monkeypatch):
    text = EVENTS.replace("e6,c2,2024-03-06 10:00,purchase,k3", "e6,c2,2024-03-06 10:00,purchase,k\xe9")
    config = write_shop(tmp_path / "shop", text.encode("latin-1"))
    result = ingest(config, tmp_path / "s.duckdb", 2, monkeypatch)
    assert events_report(result).counts.rows_kept == 4
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    assert con.execute("SELECT attributes FROM events WHERE event_id = 'e6'").fetchall() == [('{"campaign_id": "k\xe9"}',)]
    con.close()


def test_day_and_month_first_dates_in_different_batches_are_refused(tmp_path, monkeypatch):
    text = "event_id,customer_id,timestamp,event_type\ne1,c1,01/02/2024,view\ne2,c1,02/03/2024,view\ne3,c1,13/02/2024,view\n"
    config = write_shop(tmp_path / "shop", text)
    with pytest.raises(DataError, match="month-first"):
        ingest(config, tmp_path / "s.duckdb", 2, monkeypatch)
    with Store.open(tmp_path / "s.duckdb") as store:  # nothing written, no staging left behind
        assert store.fetch("SELECT count(*) FROM ingest_log") == [(0,)]
        assert store.fetch("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '_ltvcast_events%'") == [(0,)]


def test_events_already_in_the_store_are_duplicates_or_conflicts(tmp_path, monkeypatch):
    config = write_shop(tmp_path / "shop")
    ingest(config, tmp_path / "s.duckdb", 3, monkeypatch)
    (tmp_path / "shop" / "events.csv").write_text(
        "event_id,customer_id,timestamp,event_type,campaign_id\n"
        "e1,c1,2024-03-01 10:00,view,k1\ne2,c1,2024-03-09 10:00,view,\ne7,c2,2024-03-09 10:00,view,\n",
        encoding="utf-8")
    result = ingest(config, tmp_path / "s.duckdb", 2, monkeypatch)
    c = events_report(result).counts
    assert (c.rows_read, c.rows_kept, c.duplicates_dropped, c.quarantined) == (3, 1, 1, {"duplicate_id": 1})
    assert [r.status for r in result.sources] == ["skipped", "skipped", "skipped", "ingested"]


def test_events_and_returns_keep_extra_columns_as_attributes(tmp_path, monkeypatch):
    config = write_shop(tmp_path / "shop")
    result = ingest(config, tmp_path / "s.duckdb", 2, monkeypatch)
    named = {r.kind: (list(r.attributes), list(r.ignored)) for r in result.sources}
    assert named["events"] == (["campaign_id"], [])
    assert named["returns"] == (["return_reason", "note"], [])
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    try:
        got = dict(con.execute("SELECT event_id, attributes FROM events WHERE event_id LIKE 'e%'").fetchall())
        assert got == {"e1": '{"campaign_id": "k1"}', "e2": None, "e6": '{"campaign_id": "k3"}'}
        # a returns row's extra columns, and a cancellation order's (it becomes a return) too
        assert con.execute("SELECT return_id, attributes FROM returns ORDER BY return_id").fetchall() == [
            ("C9", '{"promo_name": "refund desk"}'), ("R1", '{"return_reason": "too small"}'), ("R2", None)]
        mapping = {k: json.loads(m) for k, m in con.execute("SELECT kind, mapping FROM ingest_log").fetchall()}
        assert mapping["events"]["_attributes"] == ["campaign_id"] and mapping["events"]["_ignored"] == []
        assert mapping["returns"]["_attributes"] == ["return_reason", "note"]
    finally:
        con.close()


@pytest.mark.parametrize("read_only", [False, True])
def test_a_version_3_store_without_event_and_return_attributes_gets_them(tmp_path, monkeypatch, read_only):
    db = tmp_path / "s.duckdb"
    config = write_shop(tmp_path / "shop")
    ingest(config, db, 1000, monkeypatch)
    con = duckdb.connect(str(db))
    before = {t: con.execute(f"SELECT * EXCLUDE (attributes) FROM {t} ORDER BY rowid").fetchall()
              for t in ("events", "returns")}
    for table in ("events", "returns"):  # as a store written before the columns existed
        con.execute(f"ALTER TABLE {table} DROP COLUMN attributes")
    con.close()
    with Store.open(db, read_only=read_only) as store:
        assert store.meta()["schema_version"] == "3"
        for table in ("events", "returns"):
            assert store.fetch(f"SELECT * EXCLUDE (attributes) FROM {table} ORDER BY rowid") == before[table]
            assert store.fetch(f"SELECT count(*) FROM {table} WHERE attributes IS NOT NULL") == [(0,)]


def test_a_repeat_that_differs_only_in_an_extra_column_is_a_conflict(tmp_path, monkeypatch):
    text = ("event_id,customer_id,timestamp,event_type,campaign_id\n"
            "e1,c1,2024-03-01 10:00,view,k1\ne1,c1,2024-03-01 10:00,view,k2\ne1,c1,2024-03-01 10:00,view,k1\n")
    config = write_shop(tmp_path / "shop", text)
    (tmp_path / "shop" / "returns.csv").write_text(  # the second R1 differs only in its reason
        "return_id,order_id,timestamp,amount,return_reason\nR1,O1,2024-03-05 12:00,5.00,too small\n"
        "R1,O1,2024-03-05 12:00,5.00,too big\nR1,O1,2024-03-05 12:00,5.00,too small\n", encoding="utf-8")
    result = ingest(config, tmp_path / "s.duckdb", 2, monkeypatch)
    c = events_report(result).counts
    assert (c.rows_read, c.rows_kept, c.duplicates_dropped, c.quarantined) == (3, 1, 1, {"duplicate_id": 1})
    r = next(r for r in result.sources if r.kind == "returns").counts
    assert (r.rows_read, r.rows_kept, r.duplicates_dropped, r.quarantined) == (3, 1, 1, {"duplicate_id": 1})
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    try:
        got = con.execute("SELECT kind, source_row, reason, raw_value, raw_row FROM quarantine ORDER BY kind").fetchall()
        assert [g[:4] for g in got] == [("events", 2, "duplicate_id", "e1"), ("returns", 2, "duplicate_id", "R1")]
        assert json.loads(got[0][4])["campaign_id"] == "k2" and json.loads(got[1][4])["return_reason"] == "too big"
        assert con.execute("SELECT attributes FROM events").fetchall() == [('{"campaign_id": "k1"}',)]
    finally:
        con.close()


def test_a_quarantined_unknown_customer_does_not_claim_its_id(tmp_path, monkeypatch):
    text = ("event_id,customer_id,timestamp,event_type\n"
            "e1,c9,2024-03-01 10:00,view\ne2,c1,2024-03-01 11:00,view\ne1,c1,2024-03-01 10:00,view\n"
            "e2,c9,2024-03-01 12:00,view\n")
    config = write_shop(tmp_path / "shop", text)
    (tmp_path / "shop" / "returns.csv").write_text(  # unlinked returns: the customer must be known
        "return_id,order_id,customer_id,timestamp,amount\nRMA00000001,,c9,2024-03-05 12:00,5.00\n"
        "RMA00000001,,c1,2024-03-05 12:00,5.00\n", encoding="utf-8")
    result = ingest(config, tmp_path / "s.duckdb", 2, monkeypatch)
    c = events_report(result).counts
    # e1: the c9 copy is quarantined, the c1 copy kept; e2: the c1 copy kept first, the later c9 copy conflicts
    assert (c.rows_read, c.rows_kept, c.duplicates_dropped, c.quarantined) == (
        4, 2, 0, {"duplicate_id": 1, "unknown_customer": 1})
    r = next(r for r in result.sources if r.kind == "returns").counts
    assert (r.rows_read, r.rows_kept, r.duplicates_dropped, r.quarantined) == (2, 1, 0, {"unknown_customer": 1})
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT event_id, customer_id FROM events ORDER BY event_id").fetchall() == [
            ("e1", "c1"), ("e2", "c1")]
        assert con.execute("SELECT return_id, customer_id, amount::DOUBLE FROM returns WHERE return_id LIKE 'R%'").fetchall() == [("RMA00000001", "c1", 5.0)]
        assert con.execute("SELECT kind, source_row, reason FROM quarantine ORDER BY kind, source_row").fetchall() == [
            ("events", 1, "unknown_customer"), ("events", 4, "duplicate_id"), ("returns", 1, "unknown_customer")]
    finally:
        con.close()
