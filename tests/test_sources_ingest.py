"""`ingest_sources` end to end on a small hand-written shop: every kind, hand-computed values.

The shop (tests/data/sources/shop, EUR, Europe/Berlin = UTC+1 in March 2024):

* fx: USD 0.90 from 03-01, 0.80 from 03-04; GBP 1.25 from 03-01; no CHF.
* orders: 1001 c1 100 EUR; 1002 c2 50 USD at 00:30 on 03-04 Berlin (23:30 UTC on 03-03:
  the Berlin day 03-04 takes the 0.80 rate) = 40.00; 1003 c2 10 USD at 23:30 on 03-03
  Berlin = 9.00; 1004 c3 20 GBP = 25.00; 1005 CHF (unknown_currency); 1006 c1 without
  total (gross from its lines); C1007 c1 -15 (cancellation, no order 1007: unlinked);
  1008 without customer; a repeat of 1001 (export duplicate) and of 1003 with another
  total (duplicate_id).
* order_items of 1006: 2 x 9.99, 1 x 5.01 - 1.00 discount, a returned line -1 x 9.99;
  and a line of an unknown order 9999.
* returns (Excel): R1 of 1002 (50 USD at the order's day rate 0.80 = 40.00: 1002 nets
  to exactly 0); R2 of order 0999 (before the data starts) of c3, 7.50 EUR, on its own
  day; R3 of unknown customer c9.
* events (JSON lines): three of c1, one of unknown zz, one of bad type, a repeat, a
  conflicting id.
"""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ltvcast.errors import DataError
from ltvcast.ingest.config import load_config
from ltvcast.ingest.multisource import ingest_sources
from ltvcast.ingest.write import write_ingest
from ltvcast.store import Store

SHOP = Path(__file__).parent / "data" / "sources" / "shop"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def write_returns_xlsx(path: Path) -> None:
    frame = pd.DataFrame(
        {
            "ReturnID": ["R1", "R2", "R3"],
            "OrderID": ["1002", "0999", None],
            "Customer": [None, "c3", "c9"],
            "ReturnedAt": pd.to_datetime(["2024-03-10 12:00", "2024-03-11 09:00", "2024-03-11 09:00"]),
            "Refund": [50, 7.5, 3],
        }
    )
    frame.to_excel(path, index=False, engine="openpyxl")


def write_products_parquet(path: Path) -> None:
    table = pa.table(
        {
            "SKU": ["P1", "P2"],
            "Category": ["shoes", "socks"],
            "Brand": ["acme", "bolt"],
            "ListPrice": [9.99, 5.00],
            "Cur": ["EUR", "USD"],
        }
    )
    pq.write_table(table, path)


@pytest.fixture
def shop_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "shop"
    shutil.copytree(SHOP, folder)
    write_returns_xlsx(folder / "returns.xlsx")
    write_products_parquet(folder / "products.parquet")
    return folder


@pytest.fixture
def ingested(shop_dir: Path, tmp_path: Path):
    db = tmp_path / "shop.duckdb"
    with Store.open(db) as store:
        result = ingest_sources(load_config(shop_dir / "sources.yaml"), store)
    return result, db


def sql(db: Path, query: str, params=None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(query, params or []).fetchall()
    finally:
        con.close()


def table_counts(db: Path) -> dict[str, int]:
    tables = [r[0] for r in sql(db, "SELECT table_name FROM information_schema.tables ORDER BY 1")]
    return {t: sql(db, f"SELECT count(*) FROM {t}")[0][0] for t in tables}


def test_counts_per_source_add_up(ingested):
    result, _ = ingested
    got = {
        r.kind: (r.counts.rows_read, r.counts.rows_kept, r.counts.quarantined, r.counts.duplicates_dropped)
        for r in result.sources
    }
    assert got == {
        "fx_rates": (3, 3, {}, 0),
        "customers": (4, 4, {}, 0),
        "products": (2, 2, {}, 0),
        "orders": (10, 6, {"duplicate_id": 1, "missing_customer_id": 1, "unknown_currency": 1}, 1),
        "order_items": (4, 3, {"unknown_order": 1}, 0),
        "returns": (3, 2, {"unknown_customer": 1}, 0),
        "events": (7, 4, {"duplicate_id": 1, "unknown_customer": 1}, 1),  # "wishlist": types are open
    }
    for r in result.sources:
        c = r.counts
        assert c.rows_read == c.rows_kept + c.rows_quarantined + c.duplicates_dropped
    assert result.quarantined == {
        "missing_customer_id": 1,
        "duplicate_id": 2,
        "unknown_currency": 1,
        "unknown_order": 1,
        "unknown_customer": 2,
    }
    assert result.run_id == 1
    assert result.observation_end == utc("2024-03-11")


def test_orders_gross_returned_net_exact(ingested):
    _, db = ingested
    rows = sql(db, "SELECT order_id, customer_id, currency, stated_amount, gross_amount, returned_amount, net_amount "
                   "FROM orders ORDER BY order_id")
    D = Decimal
    assert rows == [
        ("1001", "c1", "EUR", D("100.0000"), D("100.0000"), D("0.0000"), D("100.0000")),
        # 50 USD on Berlin day 03-04 (rate 0.80), returned in full at the same rate: exactly 0
        ("1002", "c2", "USD", D("40.0000"), D("40.0000"), D("40.0000"), D("0.0000")),
        # 23:30 on 03-03 in Berlin is still 03-03: rate 0.90 (from 03-01)
        ("1003", "c2", "USD", D("9.0000"), D("9.0000"), D("0.0000"), D("9.0000")),
        ("1004", "c3", "GBP", D("25.0000"), D("25.0000"), D("0.0000"), D("25.0000")),
        # lines 2 x 9.99 + (5.01 - 1.00) = 23.99; the returned line 9.99
        ("1006", "c1", "EUR", None, D("23.9900"), D("9.9900"), D("14.0000")),
    ]
    times = dict(sql(db, "SELECT order_id, timestamp FROM orders"))
    assert pd.Timestamp(times["1002"]) == pd.Timestamp("2024-03-03 23:30")  # UTC, stored without zone
    assert pd.Timestamp(times["1003"]) == pd.Timestamp("2024-03-03 22:30")


def test_items_returns_products_events_customers(ingested):
    _, db = ingested
    D = Decimal
    assert sql(db, "SELECT order_id, line, product_id, quantity, unit_price, discount, amount FROM order_items ORDER BY line") == [
        ("1006", 1, "P1", 2.0, D("9.9900"), D("0.0000"), D("19.9800")),
        ("1006", 2, "P2", 1.0, D("5.0100"), D("1.0000"), D("4.0100")),
    ]
    assert sql(db, "SELECT return_id, order_id, line, customer_id, timestamp, quantity, amount, linked, product_id "
                   "FROM returns ORDER BY return_id") == [
        # the returned line of 1006 has no time of its own: the order's
        ("1006", "1006", 3, "c1", pd.Timestamp("2024-03-06 08:15").to_pydatetime(), 1.0, D("9.9900"), True, "P1"),
        # the cancellation invoice: no order 1007 exists, so it reduces c1 on its own day
        ("C1007", None, None, "c1", pd.Timestamp("2024-03-08 09:00").to_pydatetime(), None, D("15.0000"), False, None),
        ("R1", "1002", None, "c2", pd.Timestamp("2024-03-10 11:00").to_pydatetime(), None, D("40.0000"), True, None),
        ("R2", None, None, "c3", pd.Timestamp("2024-03-11 08:00").to_pydatetime(), None, D("7.5000"), False, None),
    ]
    # P2 lists at 5.00 USD, converted at the latest USD rate (0.80)
    assert sql(db, "SELECT product_id, category, brand, list_price FROM products ORDER BY 1") == [
        ("P1", "shoes", "acme", D("9.9900")),
        ("P2", "socks", "bolt", D("4.0000")),
    ]
    assert sql(db, "SELECT event_id, customer_id, timestamp, event_type, product_id FROM events ORDER BY event_id") == [
        ("e1", "c1", pd.Timestamp("2024-03-01 08:55").to_pydatetime(), "view", "P1"),  # +01:00 offset kept
        ("e2", "c1", pd.Timestamp("2024-03-01 08:58").to_pydatetime(), "add_to_cart", "P1"),  # naive: Berlin
        ("e3", "c1", pd.Timestamp("2024-03-01 09:00").to_pydatetime(), "purchase", None),
        ("e5", "c2", pd.Timestamp("2024-03-02 09:00").to_pydatetime(), "wishlist", None),
    ]
    customers = sql(db, "SELECT customer_id, signup_at, country, segment FROM customers ORDER BY 1")
    assert customers[0] == ("c1", pd.Timestamp("2024-01-14 23:00").to_pydatetime(), "DE", "gold")
    assert customers[3] == ("c4", pd.Timestamp("2024-02-25 17:30").to_pydatetime(), "DE", None)
    columns = [r[0] for r in sql(db, "DESCRIBE customers")]
    assert "Email" not in columns and "email" not in columns and "segment" in columns
    assert sql(db, "SELECT rate FROM fx_rates WHERE currency = 'USD' ORDER BY day") == [(D("0.90000000"),), (D("0.80000000"),)]


def test_transactions_are_derived_with_returns_on_their_own_day(ingested):
    _, db = ingested
    with Store.open(db, read_only=True) as store:
        tx = store.transactions()
        meta = store.meta()
    got = [
        (r.customer_id, r.timestamp, r.amount, r.order_id if isinstance(r.order_id, str) else None, r.kind)
        for r in tx.itertuples()
    ]
    assert got == [
        ("c1", utc("2024-03-01 09:00"), 100.0, "1001", "sale"),
        ("c1", utc("2024-03-06 08:15"), 19.98, "1006", "sale"),
        ("c1", utc("2024-03-06 08:15"), 4.01, "1006", "sale"),
        ("c1", utc("2024-03-06 08:15"), -9.99, "1006", "return"),
        ("c1", utc("2024-03-08 09:00"), -15.0, None, "return"),
        ("c2", utc("2024-03-03 22:30"), 9.0, "1003", "sale"),
        ("c2", utc("2024-03-03 23:30"), 40.0, "1002", "sale"),
        ("c2", utc("2024-03-10 11:00"), -40.0, "1002", "return"),
        ("c3", utc("2024-03-05 11:00"), 25.0, "1004", "sale"),
        ("c3", utc("2024-03-11 08:00"), -7.5, None, "return"),
    ]
    assert tx.loc[tx["order_id"] == "1006", "category"].tolist() == ["shoes", "socks", "shoes"]
    assert set(tx["currency"]) == {"EUR"}
    D = Decimal
    gross, net = sql(db, "SELECT sum(amount) FILTER (WHERE kind = 'sale'), sum(amount) FROM transactions")[0]
    assert (gross, net) == (D("197.9900"), D("125.5000"))
    assert sql(db, "SELECT sum(net_amount) FROM orders")[0][0] + D("-15") + D("-7.5") == net
    assert meta["shop_currency"] == "EUR" and meta["shop_timezone"] == "Europe/Berlin"
    assert meta["revenue_basis"] == "net" and meta["schema_version"] == "3"


def test_quarantine_rows_name_source_row_column_value(ingested, shop_dir):
    _, db = ingested
    with Store.open(db, read_only=True) as store:
        q = store.quarantine()
    by = {(r.kind, r.reason): r for r in q.itertuples()}
    cur = by[("orders", "unknown_currency")]
    assert (Path(cur.source).name, cur.source_row, cur.source_column, cur.raw_value) == ("orders.csv", 5, "Currency", "CHF")
    assert json.loads(cur.raw_row)["OrderID"] == "1005"
    dup = by[("orders", "duplicate_id")]
    assert (dup.source_row, dup.source_column, dup.raw_value) == (10, "OrderID", "1003")
    item = by[("order_items", "unknown_order")]
    assert (item.source_row, item.raw_value) == (4, "9999")  # the blank line is not counted
    ret = by[("returns", "unknown_customer")]
    assert (Path(ret.source).name, ret.source_row, ret.source_column, ret.raw_value) == ("returns.xlsx", 3, "Customer", "c9")
    assert ("events", "bad_event_type") not in by  # event types are open: "wishlist" is kept
    assert sql(db, "SELECT count(*) FROM events WHERE event_type = 'wishlist'")[0][0] == 1
    # personal columns never reach the store, not even inside raw rows
    assert not sql(ingested[1], "SELECT count(*) FROM quarantine WHERE raw_row LIKE '%example%'")[0][0]
    log = sql(db, "SELECT kind, personal_columns_dropped FROM ingest_log WHERE kind = 'customers'")
    assert json.loads(log[0][1]) == ["Email", "Name"]


def test_second_run_adds_nothing_and_a_new_file_appends(shop_dir, tmp_path):
    db = tmp_path / "s.duckdb"
    config = load_config(shop_dir / "sources.yaml")
    with Store.open(db) as store:
        ingest_sources(config, store)
    before = table_counts(db)
    with Store.open(db) as store:
        again = ingest_sources(config, store)
    assert [r.status for r in again.sources] == ["skipped"] * 7
    assert again.run_id is None
    assert table_counts(db) == before
    # a cumulative export: yesterday's orders again plus one new order
    (shop_dir / "orders.csv").write_text(
        (SHOP / "orders.csv").read_text() + "1009,c3,2024-03-12 10:00,web,EUR,12.34\n", encoding="utf-8"
    )
    with Store.open(db) as store:
        third = ingest_sources(config, store)
    orders = [r for r in third.sources if r.kind == "orders"][0]
    assert orders.status == "ingested"
    # 1001..1006 and C1007 were kept before: now export duplicates; 1008 and the two bad rows as before
    assert (orders.counts.rows_read, orders.counts.rows_kept, orders.counts.duplicates_dropped) == (11, 1, 7)
    assert orders.counts.quarantined == {"duplicate_id": 1, "missing_customer_id": 1, "unknown_currency": 1}
    after = table_counts(db)
    assert after["orders"] == before["orders"] + 1
    assert after["transactions"] == before["transactions"] + 1
    assert sql(db, "SELECT sum(amount) FROM transactions")[0][0] == Decimal("137.8400")


def test_failure_half_way_leaves_the_store_as_before(shop_dir, tmp_path, monkeypatch):
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        write_ingest(store, __import__("ltvcast.ingest.single", fromlist=["ingest"]).ingest(
            Path(__file__).parent / "data" / "ingest" / "no_orders.csv"))
    before = table_counts(db)
    meta_before = sql(db, "SELECT * FROM store_meta ORDER BY key")

    def boom(self):
        raise RuntimeError("disk full (simulated) after every source was written")

    monkeypatch.setattr(Store, "rebuild_derived", boom)
    with Store.open(db) as store, pytest.raises(RuntimeError, match="simulated"):
        ingest_sources(load_config(shop_dir / "sources.yaml"), store)
    assert table_counts(db) == before
    assert sql(db, "SELECT * FROM store_meta ORDER BY key") == meta_before
    monkeypatch.undo()
    with Store.open(db) as store:
        result = ingest_sources(load_config(shop_dir / "sources.yaml"), store)
    assert all(r.status == "ingested" for r in result.sources)
    assert table_counts(db)["orders"] == 5


def test_replace_reingests_changed_sources(shop_dir, tmp_path):
    db = tmp_path / "s.duckdb"
    config = load_config(shop_dir / "sources.yaml")
    with Store.open(db) as store:
        ingest_sources(config, store)
    # CHF rates arrive: with replace, the orders file is read again and 1005 is kept
    (shop_dir / "fx_rates.csv").write_text((SHOP / "fx_rates.csv").read_text() + "2024-03-01,CHF,1.0500\n")
    with Store.open(db) as store:
        result = ingest_sources(config, store, replace=True)
        orders = [r for r in result.sources if r.kind == "orders"][0]
        assert orders.counts.quarantined == {"duplicate_id": 1, "missing_customer_id": 1}
        assert store.table("orders").set_index("order_id").loc["1005", "gross_amount"] == pytest.approx(31.5)
        assert store.ingest_log()["ingest_id"].tolist() == list(range(8, 15))
        assert len(store.transactions()) == 11


def test_a_fully_returned_order_nets_to_exactly_zero(tmp_path):
    # 0.1 + 0.2 + 0.7 USD in 20 orders at a rate of 0.9123, every line returned later by a
    # negative line: in floats such sums leave residues like 1e-15; here they are exactly 0.
    lines = ["order,line,customer,at,price,qty,currency"]
    for k in range(20):
        for line, price in enumerate(("0.10", "0.20", "0.70"), start=1):
            lines.append(f"o{k},{line},z,2024-01-{k + 1:02d} 10:00,{price},1,USD")
        for line, price in enumerate(("0.10", "0.20", "0.70"), start=4):
            lines.append(f"o{k},{line},z,2024-01-{k + 2:02d} 18:00,{price},-1,USD")
    (tmp_path / "lines.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "fx.csv").write_text("day,currency,rate\n2023-12-31,USD,0.9123\n")
    (tmp_path / "sources.yaml").write_text(
        "shop: {currency: EUR}\n"
        "sources:\n"
        "  - {kind: fx_rates, path: fx.csv}\n"
        "  - kind: order_items\n"
        "    path: lines.csv\n"
        "    mapping: {order_id: order, customer_id: customer, timestamp: at, unit_price: price, quantity: qty}\n"
    )
    db = tmp_path / "z.duckdb"
    with Store.open(db) as store:
        ingest_sources(load_config(tmp_path / "sources.yaml"), store)
    net = sql(db, "SELECT sum(amount), sum(amount) FILTER (WHERE kind = 'sale') FROM transactions")[0]
    assert net == (Decimal("0.0000"), Decimal("18.2460"))  # 20 x (0.0912 + 0.1825 + 0.6386)
    assert sql(db, "SELECT DISTINCT net_amount FROM orders") == [(Decimal("0.0000"),)]
    assert sql(db, "SELECT count(*) FROM returns WHERE linked")[0][0] == 60
    # the returns stay on their own day (the day after each order), never back-dated
    assert sql(db, "SELECT min(CAST(timestamp AS DATE)) FROM transactions WHERE kind = 'return'")[0][0].isoformat() == "2024-01-02"
    # what float arithmetic would have given:
    assert sum([0.1 * 0.9123, 0.2 * 0.9123, 0.7 * 0.9123, -0.1 * 0.9123, -0.7 * 0.9123, -0.2 * 0.9123]) != 0.0


def test_single_file_export_with_cancellation_invoices(tmp_path):
    """Online Retail layout: one file of order lines; C-invoices cancel, some name their original."""
    (tmp_path / "retail.csv").write_text(
        "InvoiceNo,StockCode,Quantity,InvoiceDate,UnitPrice,CustomerID\n"
        "536365,A,6,12/1/2010 8:26,2.55,17850.0\n"
        "536365,B,6,12/1/2010 8:26,3.39,17850.0\n"
        "536366,A,2,12/1/2010 9:00,2.55,13047\n"
        "C536365,A,-6,12/2/2010 10:00,2.55,17850.0\n"  # links to 536365 by the stripped prefix
        "C999999,B,-1,12/3/2010 10:00,3.39,13047\n"  # original unknown: 13047's own day
        "C888888,B,-1,12/3/2010 10:00,3.39,55555\n"  # unknown customer
        "536367,A,1,12/4/2010 10:00,2.55,\n"  # no customer: the order cannot be derived
    )
    (tmp_path / "sources.yaml").write_text(
        "shop: {currency: GBP, timezone: Europe/London}\n"
        "sources:\n"
        "  - kind: order_items\n"
        "    path: retail.csv\n"
        "    cancellation_prefix: C\n"
        "    mapping: {order_id: InvoiceNo, product_id: StockCode, quantity: Quantity, timestamp: InvoiceDate,\n"
        "              unit_price: UnitPrice, customer_id: CustomerID}\n"
    )
    db = tmp_path / "r.duckdb"
    with Store.open(db) as store:
        result = ingest_sources(load_config(tmp_path / "sources.yaml"), store)
        counts = result.sources[0].counts
        assert (counts.rows_read, counts.rows_kept, counts.quarantined) == (7, 5, {"unknown_customer": 1, "unknown_order": 1})
        assert result.sources[0].ids_normalised == 3
        orders = store.table("orders").set_index("order_id")
    D = Decimal
    assert sql(db, "SELECT order_id, customer_id, gross_amount, returned_amount, net_amount FROM orders ORDER BY 1") == [
        ("536365", "17850", D("35.6400"), D("15.3000"), D("20.3400")),
        ("536366", "13047", D("5.1000"), D("0.0000"), D("5.1000")),
    ]
    assert orders.loc["536365", "timestamp"] == utc("2010-12-01 08:26")  # London = UTC in winter
    assert sql(db, "SELECT return_id, order_id, customer_id, amount, linked FROM returns ORDER BY 1") == [
        ("C536365", "536365", "17850", D("15.3000"), True),
        ("C999999", None, "13047", D("3.3900"), False),
    ]
    assert sql(db, "SELECT customer_id, sum(amount) FROM transactions GROUP BY 1 ORDER BY 1") == [
        ("13047", D("1.7100")),
        ("17850", D("20.3400")),
    ]


def test_duplicates_between_files_of_a_glob(tmp_path):
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "2024-01.csv").write_text(
        "order_id,customer_id,timestamp,amount\nA1,c1,2024-01-05,10\nA2,c2,2024-01-06,20\n"
    )
    (tmp_path / "orders" / "2024-02.csv").write_text(
        "order_id,customer_id,timestamp,amount\nA2,c2,2024-01-06,20.00\nA3,c1,2024-02-01,5\nA1,c1,2024-01-05,11\n"
    )
    (tmp_path / "sources.yaml").write_text("shop: {currency: EUR}\nsources:\n  - {kind: orders, path: 'orders/*.csv'}\n")
    db = tmp_path / "g.duckdb"
    with Store.open(db) as store:
        result = ingest_sources(load_config(tmp_path / "sources.yaml"), store)
        log = store.ingest_log()
    first, second = result.sources
    assert Path(first.source).name == "2024-01.csv" and Path(second.source).name == "2024-02.csv"
    assert (first.counts.rows_kept, first.counts.duplicates_dropped) == (2, 0)
    # A2 again with the same values ("20.00" = "20"): an export duplicate; A1 with another amount: duplicate_id
    assert (second.counts.rows_kept, second.counts.duplicates_dropped, second.counts.quarantined) == (1, 1, {"duplicate_id": 1})
    assert log["content_hash"].nunique() == 2 and log["run_id"].tolist() == [1, 1]
    assert sql(db, "SELECT sum(gross_amount) FROM orders")[0][0] == Decimal("35.0000")


def test_time_zones_source_zone_dst_and_shop_day(tmp_path):
    (tmp_path / "o.csv").write_text(
        "order_id,customer_id,timestamp,amount,currency\n"
        "n1,c1,2024-03-10 01:30,1,USD\n"  # New York, EST (UTC-5)
        "n2,c1,2024-03-10 02:30,1,USD\n"  # does not exist (clocks jump 02:00 -> 03:00): read with EST
        "n3,c1,2024-11-03 01:30,1,USD\n"  # happens twice: the first (EDT, UTC-4)
        "n4,c1,2024-07-01 20:30,1,USD\n"  # EDT: 00:30 UTC on 07-02 = 02:30 on 07-02 in Berlin
        "n5,c1,2024-07-01T20:30:00Z,1,USD\n"  # an explicit zone wins over the source's
    )
    (tmp_path / "fx.csv").write_text("day,currency,rate\n2024-01-01,USD,0.5\n2024-07-02,USD,0.25\n")
    (tmp_path / "sources.yaml").write_text(
        "shop: {currency: EUR, timezone: Europe/Berlin}\n"
        "sources:\n  - {kind: fx_rates, path: fx.csv}\n"
        "  - {kind: orders, path: o.csv, timezone: America/New_York}\n"
    )
    db = tmp_path / "t.duckdb"
    with Store.open(db) as store:
        ingest_sources(load_config(tmp_path / "sources.yaml"), store)
        orders = store.table("orders").set_index("order_id")
    assert orders.loc["n1", "timestamp"] == utc("2024-03-10 06:30")
    assert orders.loc["n2", "timestamp"] == utc("2024-03-10 07:30")
    assert orders.loc["n3", "timestamp"] == utc("2024-11-03 05:30")
    assert orders.loc["n4", "timestamp"] == utc("2024-07-02 00:30")
    assert orders.loc["n5", "timestamp"] == utc("2024-07-01 20:30")
    # n4's Berlin day is 07-02 (rate 0.25); n5's is 07-01 (rate 0.5)
    assert (orders.loc["n4", "gross_amount"], orders.loc["n5", "gross_amount"]) == (0.25, 0.5)


def test_unknown_currency_is_never_guessed_and_shop_currency_needs_no_rate(tmp_path):
    (tmp_path / "o.csv").write_text(
        "order_id,customer_id,timestamp,amount,currency\n"
        "a,c1,2024-01-01,10,EUR\n"  # shop currency: no rate needed
        "b,c1,2024-01-01,10,USD\n"  # rate only from 01-02: none on or before 01-01
        "c,c1,2024-01-02,10,USD\n"
        "d,c1,2024-01-02,10,usd\n"  # lower case is read as USD
        "e,c1,2024-01-02,10,US$\n"  # not a code
        "f,c1,2024-01-02,10,\n"  # the currency column is mapped but empty
    )
    (tmp_path / "fx.csv").write_text("day,currency,rate\n2024-01-02,USD,0.5\n2024-01-02,EUR,1\n")
    (tmp_path / "sources.yaml").write_text(
        "shop: {currency: EUR}\nsources:\n  - {kind: fx_rates, path: fx.csv}\n  - {kind: orders, path: o.csv}\n"
    )
    db = tmp_path / "c.duckdb"
    with Store.open(db) as store:
        result = ingest_sources(load_config(tmp_path / "sources.yaml"), store)
    assert result.sources[1].counts.quarantined == {"bad_currency": 1, "missing_currency": 1, "unknown_currency": 1}
    assert sql(db, "SELECT order_id, gross_amount FROM orders ORDER BY 1") == [
        ("a", Decimal("10.0000")), ("c", Decimal("5.0000")), ("d", Decimal("5.0000"))
    ]


def test_errors_name_the_source_and_write_nothing(shop_dir, tmp_path):
    db = tmp_path / "e.duckdb"
    (shop_dir / "orders.csv").write_text("OrderID,Customer\n1,c1\n")
    with Store.open(db) as store:
        with pytest.raises(DataError, match=r"orders.csv: column 'Created' \(mapped to timestamp\) not found; columns found: OrderID, Customer"):
            ingest_sources(load_config(shop_dir / "sources.yaml"), store)
    assert table_counts(db)["ingest_log"] == 0
    (shop_dir / "orders.csv").write_text("OrderID,Customer,Created\n1,c1,not a date\n")
    (shop_dir / "sources.yaml").write_text(
        "shop: {currency: EUR}\nsources:\n  - {kind: orders, path: orders.csv,"
        " mapping: {order_id: OrderID, customer_id: Customer, timestamp: Created}}\n"
        "  - {kind: events, path: 'nothing/*.jsonl'}\n"
    )
    with Store.open(db) as store:
        with pytest.raises(DataError, match=r"sources\[1\] \(events\): no file matches .*nothing/\*\.jsonl"):
            ingest_sources(load_config(shop_dir / "sources.yaml"), store)


def test_store_with_another_currency_is_refused(shop_dir, tmp_path):
    db = tmp_path / "m.duckdb"
    with Store.open(db) as store:
        ingest_sources(load_config(shop_dir / "sources.yaml"), store)
    text = (shop_dir / "sources.yaml").read_text().replace("currency: EUR", "currency: USD")
    (shop_dir / "sources.yaml").write_text(text)
    with Store.open(db) as store:
        with pytest.raises(DataError, match="holds amounts in EUR; sources.yaml says shop currency USD"):
            ingest_sources(load_config(shop_dir / "sources.yaml"), store)


def test_inverted_rates_generated_ids_and_line_checks(tmp_path):
    (tmp_path / "fx.csv").write_text("date,code,usd_per_eur\n2024-01-01,USD,1.25\n")  # ECB style: 1 EUR = 1.25 USD
    (tmp_path / "orders.csv").write_text("order_id,customer_id,timestamp,currency\no1,c1,2024-01-02 10:00,USD\n")
    (tmp_path / "items.csv").write_text(
        "order_id,product_id,quantity,unit_price,customer_id\n"
        "o1,P1,2,10.00,c1\n"
        "o1,P1,2,10.00,c1\n"  # the same line again without a line number: an export duplicate
        "o1,P2,1,5,\n"
        "o1,P3,1,1,c2\n"  # names another customer than its order
    )
    (tmp_path / "returns.csv").write_text("order_id,timestamp,amount\no1,2024-01-09 10:00,5\no1,2024-01-09 10:00,5\n")
    (tmp_path / "events.csv").write_text(
        "customer_id,timestamp,event_type\nc1,2024-01-02 09:00,view\nc1,2024-01-02 09:00,view\nc1,2024-01-02 09:01,view\n"
    )
    (tmp_path / "sources.yaml").write_text(
        "shop: {currency: EUR}\n"
        "sources:\n"
        "  - {kind: fx_rates, path: fx.csv, invert: true, mapping: {day: date, currency: code, rate: usd_per_eur}}\n"
        "  - {kind: orders, path: orders.csv}\n"
        "  - {kind: order_items, path: items.csv}\n"
        "  - {kind: returns, path: returns.csv}\n"
        "  - {kind: events, path: events.csv}\n"
    )
    db = tmp_path / "i.duckdb"
    with Store.open(db) as store:
        result = ingest_sources(load_config(tmp_path / "sources.yaml"), store)
    counts = {r.kind: (r.counts.rows_kept, r.counts.duplicates_dropped, r.counts.quarantined) for r in result.sources}
    assert counts["order_items"] == (2, 1, {"order_customer_mismatch": 1})
    assert counts["returns"] == (1, 1, {}) and counts["events"] == (2, 1, {})
    D = Decimal
    assert sql(db, "SELECT rate FROM fx_rates") == [(D("0.80000000"),)]
    assert sql(db, "SELECT line, amount FROM order_items ORDER BY line") == [(1, D("16.0000")), (2, D("4.0000"))]
    # the return has no currency: it is in its order's (USD), at the order's day rate
    assert sql(db, "SELECT gross_amount, returned_amount, net_amount FROM orders") == [(D("20.0000"), D("4.0000"), D("16.0000"))]
    assert [r[0][:2] for r in sql(db, "SELECT return_id FROM returns")] == ["h:"]
    assert sorted(r[0][:2] for r in sql(db, "SELECT event_id FROM events")) == ["h:", "h:"]


def test_an_export_with_a_header_and_no_rows_is_logged_with_zero_rows(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "day1.csv").write_text("order_id,customer_id,timestamp,amount\nA1,c1,2024-01-05,10\n")
    (tmp_path / "d" / "day2.csv").write_text("order_id,customer_id,timestamp,amount\n")
    (tmp_path / "sources.yaml").write_text("shop: {currency: EUR}\nsources:\n  - {kind: orders, path: 'd/*.csv'}\n")
    with Store.open(tmp_path / "e.duckdb") as store:
        result = ingest_sources(load_config(tmp_path / "sources.yaml"), store)
        assert [(r.counts.rows_read, r.counts.rows_kept) for r in result.sources] == [(1, 1), (0, 0)]
        log = store.ingest_log()
        assert log["rows_read"].tolist() == [1, 0] and log["first_day"].isna().tolist() == [False, True]
