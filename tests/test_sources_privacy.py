"""Personal data at ingest: dropped columns, pseudonymised ids that still join, refusals."""

from __future__ import annotations

import hashlib
import hmac
import json

import duckdb
import pytest

from ltvcast.errors import DataError
from ltvcast.ingest.config import load_config
from ltvcast.ingest.multisource import ingest_sources
from ltvcast.ingest.write import write_ingest
from ltvcast.store import Store

KEY = "k3y-for-tests"


def pseudo(customer_id: str, key: str = KEY) -> str:
    return hmac.new(key.encode(), customer_id.encode(), hashlib.sha256).hexdigest()[:32]


def write_shop(folder, pseudonymise=True, extra_shop="", customers_mapping="{customer_id: Client, country: Country}"):
    folder.mkdir(exist_ok=True)
    (folder / "customers.csv").write_text(
        "Client,E-Mail,Phone,Country,IP Address\n"
        "17850.0,a@x.de,+49 1,DE,10.0.0.1\n"
        "00012,b@x.de,+49 2,FR,10.0.0.2\n"
    )
    (folder / "orders.csv").write_text(
        "order_id,customer_id,timestamp,amount\n"
        "o1,17850,2024-01-01 10:00,10\n"
        "o2,00012,2024-01-02 10:00,5\n"
        "o3,00012,2024-01-03 10:00,abc\n"
    )
    (folder / "events.csv").write_text(
        "event_id,customer_id,timestamp,event_type\n"
        "e1,17850,2024-01-01 09:00,view\n"
        "e2,99999,2024-01-01 09:00,view\n"
    )
    (folder / "sources.yaml").write_text(
        f"shop: {{currency: EUR, pseudonymise_ids: {str(pseudonymise).lower()}{extra_shop}}}\n"
        "sources:\n"
        f"  - {{kind: customers, path: customers.csv, mapping: {customers_mapping}}}\n"
        "  - {kind: orders, path: orders.csv}\n"
        "  - {kind: events, path: events.csv}\n"
    )
    return folder / "sources.yaml"


def rows(db, query):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_pseudonyms_join_across_sources_and_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LTVCAST_ID_KEY", KEY)
    config = load_config(write_shop(tmp_path / "shop"))
    db = tmp_path / "p.duckdb"
    with Store.open(db) as store:
        result = ingest_sources(config, store)
    a, b = pseudo("17850"), pseudo("00012")  # "17850.0" is normalised to "17850" first
    assert sorted(r[0] for r in rows(db, "SELECT customer_id FROM customers")) == sorted([a, b])
    assert rows(db, "SELECT order_id, customer_id FROM orders ORDER BY 1") == [("o1", a), ("o2", b)]
    assert rows(db, "SELECT customer_id FROM events") == [(a,)]
    # personal columns are dropped and logged; the raw id never reaches the store
    assert result.sources[0].personal_dropped == ("E-Mail", "Phone", "IP Address")
    quarantine = rows(db, "SELECT reason, raw_value, raw_row FROM quarantine ORDER BY reason")
    assert [q[0] for q in quarantine] == ["bad_amount", "unknown_customer"]
    assert json.loads(quarantine[0][2])["customer_id"] == b
    assert json.loads(quarantine[1][2])["customer_id"] == pseudo("99999") == quarantine[1][1]
    for table in ("customers", "orders", "events", "transactions", "quarantine", "ingest_log"):
        texts = [
            r[0] for r in rows(db, "SELECT column_name FROM information_schema.columns WHERE table_name = "
                                   f"'{table}' AND data_type = 'VARCHAR' AND column_name <> 'content_hash'")
        ]
        text = " ".join(str(r) for r in rows(db, f"SELECT {', '.join(texts)} FROM {table}"))
        for secret in ("17850", "00012", "99999", "a@x.de", "+49", "10.0.0"):
            assert secret not in text, (table, secret)
    # a second store with the same key gives the same pseudonyms
    other = tmp_path / "q.duckdb"
    with Store.open(other) as store:
        ingest_sources(config, store)
    assert rows(other, "SELECT order_id, customer_id FROM orders ORDER BY 1") == [("o1", a), ("o2", b)]


def test_missing_key_is_an_error_before_anything_is_read(tmp_path, monkeypatch):
    monkeypatch.delenv("LTVCAST_ID_KEY", raising=False)
    config = load_config(write_shop(tmp_path / "shop"))
    with Store.open(tmp_path / "p.duckdb") as store:
        with pytest.raises(DataError, match="pseudonymise_ids is on but environment variable LTVCAST_ID_KEY is not set"):
            ingest_sources(config, store)
        assert len(store.ingest_log()) == 0


def test_mapping_a_personal_column_needs_permission(tmp_path):
    path = write_shop(tmp_path / "a", pseudonymise=False, customers_mapping="{customer_id: Client, phone: Phone}")
    with Store.open(tmp_path / "a.duckdb") as store:
        with pytest.raises(DataError, match=r"customers.csv: column 'Phone' \(mapped to phone\) holds personal data; "
                                             r"add it to shop.allow_personal"):
            ingest_sources(load_config(path), store)
    path = write_shop(tmp_path / "b", pseudonymise=False, extra_shop=", allow_personal: [phone]",
                      customers_mapping="{customer_id: Client, phone: Phone}")
    with Store.open(tmp_path / "b.duckdb") as store:
        result = ingest_sources(load_config(path), store)
        assert result.sources[0].personal_dropped == ("E-Mail", "IP Address")
        assert sorted(store.table("customers")["phone"]) == ["+49 1", "+49 2"]
    path = write_shop(tmp_path / "c", pseudonymise=False, customers_mapping="{customer_id: E-Mail}")
    with Store.open(tmp_path / "c.duckdb") as store:
        with pytest.raises(DataError, match="set shop.pseudonymise_ids: true .* or add it to shop.allow_personal"):
            ingest_sources(load_config(path), store)


def test_single_file_path_drops_unmapped_personal_columns(tmp_path):
    from ltvcast.ingest.single import ingest

    path = tmp_path / "export.csv"
    path.write_text("customer_id,timestamp,amount,Email,Name\nc1,2024-01-01,x,a@x.de,Anna\nc2,2024-01-02,5,b@x.de,Bob\n")
    result = ingest(path)
    assert result.stats.personal_columns_dropped == ("Email", "Name")
    assert "a@x.de" not in result.quarantine["raw_row"].iloc[0]
    with Store.open(tmp_path / "s.duckdb") as store:
        write_ingest(store, result)
        assert json.loads(store.ingest_log()["personal_columns_dropped"].iloc[0]) == ["Email", "Name"]
    kept = ingest(path, {"customer_id": "Email"})  # a column you map yourself is kept
    assert kept.stats.personal_columns_dropped == ("Name",)
    assert kept.transactions["customer_id"].tolist() == ["b@x.de"]
