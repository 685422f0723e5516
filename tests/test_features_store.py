"""Hand-made multi-source stores for the feature tests, and the store-reading layer.

The helpers write the canonical tables of docs/multisource.md directly with
DuckDB SQL (no ingest): a shop is given as customers, products, orders with
their lines, returns and events, and ``write_store`` derives ``order_items``,
``orders`` amounts and ``transactions`` (sale and return rows) the way the
contract describes. Other feature test modules import from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from ltvcast.errors import CutoffError, DataError
from ltvcast.features import build, feature_sql

DDL = {
    "store_meta": "key VARCHAR, value VARCHAR",
    "customers": "customer_id VARCHAR, signup_at TIMESTAMP, acquisition_channel VARCHAR, region VARCHAR, "
    "country VARCHAR",
    "products": "product_id VARCHAR, category VARCHAR, brand VARCHAR, list_price DECIMAL(18,4)",
    "orders": "order_id VARCHAR, customer_id VARCHAR, timestamp TIMESTAMP, channel VARCHAR, currency VARCHAR, "
    "gross_amount DECIMAL(18,4), returned_amount DECIMAL(18,4), net_amount DECIMAL(18,4)",
    "order_items": "order_id VARCHAR, line BIGINT, product_id VARCHAR, quantity DOUBLE, unit_price DECIMAL(18,4), "
    "discount DECIMAL(18,4), amount DECIMAL(18,4)",
    "returns": "return_id VARCHAR, order_id VARCHAR, line BIGINT, customer_id VARCHAR, timestamp TIMESTAMP, "
    "quantity DOUBLE, amount DECIMAL(18,4), linked BOOLEAN",
    "events": "event_id VARCHAR, customer_id VARCHAR, session_id VARCHAR, timestamp TIMESTAMP, event_type VARCHAR, "
    "product_id VARCHAR",
    "fx_rates": "day DATE, currency VARCHAR, rate DECIMAL(18,8)",
    "transactions": "ingest_id INTEGER, customer_id VARCHAR NOT NULL, timestamp TIMESTAMP NOT NULL, "
    "amount DECIMAL(18,4) NOT NULL, order_id VARCHAR, line BIGINT, quantity DOUBLE, product_id VARCHAR, "
    "category VARCHAR, brand VARCHAR, channel VARCHAR, currency VARCHAR, kind VARCHAR",
}


def D(x) -> Decimal:
    return Decimal(str(x))


@dataclass
class Shop:
    """A shop in the contract's terms (timestamps are UTC text)."""

    meta: dict[str, str] = field(default_factory=lambda: {"schema_version": "1", "shop_currency": "EUR"})
    # (customer_id, signup_at, acquisition_channel, region, country)
    customers: list[tuple] = field(default_factory=list)
    # (product_id, category, brand)
    products: list[tuple] = field(default_factory=list)
    # (order_id, customer_id, timestamp, channel, [(product_id, quantity, unit_price, discount), ...])
    orders: list[tuple] = field(default_factory=list)
    # (return_id, order_id, line (1-based), timestamp, quantity)
    returns: list[tuple] = field(default_factory=list)
    # (event_id, customer_id, session_id, timestamp, event_type, product_id)
    events: list[tuple] = field(default_factory=list)


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list) -> None:
    """Insert rows (money as Decimal or text, times as text) through a registered frame."""
    if not rows:
        return
    names = [d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description]
    frame = pd.DataFrame([[None if v is None else (str(v) if isinstance(v, Decimal) else v) for v in r]
                          for r in rows], columns=names, dtype=object)
    con.register("_rows", frame)
    con.execute(f"INSERT INTO {table} SELECT * FROM _rows")
    con.unregister("_rows")


def write_store(path: Path, shop: Shop) -> duckdb.DuckDBPyConnection:
    """Create the contract tables in a new DuckDB file and fill them from ``shop``."""
    con = duckdb.connect(str(path))
    for table, cols in DDL.items():
        con.execute(f"CREATE TABLE {table} ({cols})")
    _insert(con, "store_meta", list(shop.meta.items()))
    _insert(con, "customers", shop.customers)
    products = {p[0]: p for p in shop.products}
    _insert(con, "products", [(*p[:3], Decimal(0)) for p in shop.products])
    items, tx, order_rows = [], [], []
    line_info: dict[tuple[str, int], tuple[Decimal, float, str]] = {}
    order_of: dict[str, tuple] = {}
    for order_id, customer_id, ts, channel, lines in shop.orders:
        order_of[order_id] = (customer_id, ts, channel)
        gross = Decimal(0)
        for k, (product_id, qty, unit_price, discount) in enumerate(lines, start=1):
            amount = D(qty) * D(unit_price) - D(discount)
            gross += amount
            line_info[(order_id, k)] = (amount, qty, product_id)
            _, category, brand = products.get(product_id, (product_id, None, None))
            items.append((order_id, k, product_id, float(qty), D(unit_price), D(discount), amount))
            tx.append((1, customer_id, ts, amount, order_id, k, float(qty), product_id, category, brand,
                       channel, "EUR", "sale"))
        order_rows.append([order_id, customer_id, ts, channel, "EUR", gross, Decimal(0)])
    returned: dict[str, Decimal] = {}
    ret_rows = []
    for return_id, order_id, line, ts, qty in shop.returns:
        customer_id, _, channel = order_of[order_id]
        amount, sold, product_id = line_info[(order_id, line)]
        value = (amount * D(qty) / D(sold)).quantize(Decimal("0.0001"))
        returned[order_id] = returned.get(order_id, Decimal(0)) + value
        ret_rows.append((return_id, order_id, line, customer_id, ts, float(qty), value, True))
        _, category, brand = products.get(product_id, (product_id, None, None))
        tx.append((1, customer_id, ts, -value, order_id, line, float(qty), product_id, category, brand,
                   channel, "EUR", "return"))
    for row in order_rows:
        # Like a real export: returned_amount includes every return, also later ones.
        row[6] = returned.get(row[0], Decimal(0))
        row.append(row[5] - row[6])
    _insert(con, "orders", order_rows)
    _insert(con, "order_items", items)
    _insert(con, "returns", ret_rows)
    _insert(con, "events", shop.events)
    _insert(con, "transactions", tx)
    return con


def random_shop(seed: int, n_customers: int = 150, start: str = "2022-01-01", days: int = 900) -> Shop:
    """A random shop with every kind of row, spread over ``days`` days from ``start``."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start)
    cats, brands = ["shoes", "socks", "hats", None], ["acme", "bolt", "cobra", None]
    shop = Shop(products=[(f"P{i}", cats[i % 4], brands[(i // 2) % 4]) for i in range(12)])

    def when(day: float) -> str:
        return (t0 + pd.Timedelta(seconds=int(day * 86400))).strftime("%Y-%m-%d %H:%M:%S")

    n_order = n_ret = n_ev = 0
    for c in range(n_customers):
        cid = f"c{c:04d}"
        first = rng.uniform(0, days)
        signup = None if rng.random() < 0.2 else when(max(first - rng.exponential(30), 0))
        shop.customers.append((cid, signup, rng.choice(["ads", "search", "social"]),
                               rng.choice(["north", "south", None]), "DE"))
        for day in np.sort(first + np.cumsum(rng.exponential(60, size=rng.integers(0, 6)))):
            if day > days:
                break
            n_order += 1
            oid = f"o{n_order}"
            lines = [(f"P{rng.integers(12)}", int(rng.integers(1, 4)), f"{rng.uniform(1.5, 60):.2f}",
                      f"{rng.choice([0, 0, 0.5, 1.25]):.2f}") for _ in range(rng.integers(1, 4))]
            shop.orders.append((oid, cid, when(day), rng.choice(["web", "app"]), lines))
            for k in range(1, len(lines) + 1):
                if rng.random() < 0.15:
                    n_ret += 1
                    shop.returns.append((f"r{n_ret}", oid, k, when(day + rng.uniform(0.01, 40)), lines[k - 1][1]))
        for s in range(rng.integers(0, 5)):
            day = rng.uniform(0, days)
            sid = f"s{c}_{s}"
            for j, kind in enumerate(["session_start", "view", "view", "add_to_cart", "purchase"][: rng.integers(1, 6)]):
                n_ev += 1
                shop.events.append((f"e{n_ev}", cid, sid, when(day + j * 0.01), kind, None))
    return shop


def tiny_shop() -> Shop:
    """The hand-computed shop of test_features_families (cutoff 2024-03-01).

    Buyers A, B, C, F; D has only a signup and events; E signs up and buys
    after the cutoff. Products: P1 shoes/acme, P2 socks/acme, P3 shoes/bolt,
    P4 hats/(no brand).
    """
    return Shop(
        customers=[
            ("A", "2023-05-01 10:00:00", "search", "north", "DE"),
            ("B", None, "social", "south", "AT"),
            ("C", "2022-12-01 08:00:00", "search", "north", "DE"),
            ("D", "2024-01-10 09:00:00", "ads", "east", "PL"),
            ("E", "2024-03-10 09:00:00", "ads", "east", "PL"),
            ("F", "2024-03-20 09:00:00", "ads", "west", "FR"),  # guest buyer, signs up later
        ],
        products=[
            ("P1", "shoes", "acme"),
            ("P2", "socks", "acme"),
            ("P3", "shoes", "bolt"),
            ("P4", "hats", None),
        ],
        orders=[
            ("o1", "A", "2023-06-10 12:00:00", "web", [("P1", 2, "10.00", "0"), ("P2", 1, "5.50", "0.50")]),
            ("o2", "A", "2023-12-20 09:00:00", "app", [("P3", 1, "40.00", "4.00")]),
            ("o3", "A", "2024-02-15 08:00:00", "web", [("P1", 1, "10.00", "0")]),
            ("o4", "A", "2024-02-15 18:00:00", "web", [("P4", 3, "2.00", "0")]),
            ("o5", "A", "2024-03-05 10:00:00", "web", [("P3", 1, "40.00", "0")]),  # after the cutoff
            ("o6", "B", "2024-02-28 23:30:00", "app", [("P2", 1, "0.10", "0"), ("P4", 1, "0.20", "0")]),
            ("o7", "C", "2023-01-15 10:00:00", "store", [("P3", 1, "50.00", "0")]),
            ("o8", "C", "2023-03-15 10:00:00", "web", [("P1", 1, "12.00", "0")]),
            ("o9", "C", "2023-09-10 10:00:00", "web", [("P1", 2, "12.00", "0"), ("P3", 1, "50.00", "5.00")]),
            ("o10", "F", "2024-01-05 14:00:00", "web", [("P4", 1, "8.00", "0")]),
            ("o11", "E", "2024-03-12 10:00:00", "web", [("P1", 1, "10.00", "0")]),  # after the cutoff
        ],
        returns=[
            ("r1", "o2", 1, "2024-02-20 11:00:00", 1),
            ("r2", "o3", 1, "2024-03-02 09:00:00", 1),  # after the cutoff
            ("r3", "o6", 1, "2024-02-29 10:00:00", 1),
            ("r4", "o6", 2, "2024-02-29 10:00:00", 1),
        ],
        events=[
            ("e0", "A", None, "2023-11-01 12:00:00", "view", "P2"),
            ("e1", "A", "s1", "2024-02-10 10:00:00", "session_start", None),
            ("e2", "A", "s1", "2024-02-10 10:01:00", "view", "P1"),
            ("e3", "A", "s1", "2024-02-10 10:05:00", "view", "P3"),
            ("e4", "A", "s1", "2024-02-10 10:06:00", "add_to_cart", "P1"),
            ("e5", "A", "s2", "2024-02-15 07:50:00", "session_start", None),
            ("e6", "A", "s2", "2024-02-15 07:51:00", "view", "P1"),
            ("e7", "A", "s2", "2024-02-15 07:55:00", "add_to_cart", "P1"),
            ("e8", "A", "s2", "2024-02-15 08:00:00", "purchase", None),
            ("e9", "A", "s3", "2024-03-03 10:00:00", "session_start", None),  # after the cutoff
            ("e10", "A", "s3", "2024-03-03 10:01:00", "view", "P3"),
            ("e11", "D", "s4", "2024-02-01 10:00:00", "session_start", None),
            ("e12", "D", "s4", "2024-02-01 10:02:00", "view", "P2"),
            ("e13", "E", "s5", "2024-03-11 10:00:00", "view", "P1"),  # after the cutoff
        ],
    )


@pytest.fixture
def tiny(tmp_path):
    con = write_store(tmp_path / "tiny.duckdb", tiny_shop())
    yield con
    con.close()


# -- tests of the store-reading layer ---------------------------------------------


def test_helper_derives_contract_tables(tiny):
    # o6: 0.10 + 0.20 sold, both returned -> transactions net exactly 0.
    net = tiny.execute("SELECT SUM(amount) FROM transactions WHERE order_id = 'o6'").fetchone()[0]
    assert net == Decimal("0.0000")
    kinds = dict(tiny.execute("SELECT kind, COUNT(*) FROM transactions GROUP BY kind").fetchall())
    assert kinds == {"sale": 14, "return": 4}


def test_build_reads_a_store_object_opened_with_store_open(tmp_path):
    from ltvcast.store import Store

    with Store.open(tmp_path / "s.duckdb") as store:
        con = store.connection
        cols = {r[0] for r in con.execute("DESCRIBE transactions").fetchall()}
        kind = ("", "") if "kind" not in cols else (", kind", ", CASE WHEN amount < 0 THEN 'return' ELSE 'sale' END")
        con.execute(
            f"INSERT INTO transactions (ingest_id, customer_id, timestamp, amount{kind[0]}) "
            f"SELECT ingest_id, customer_id, timestamp, amount{kind[1]} FROM (VALUES "
            "(1, 'x', TIMESTAMP '2024-01-01 10:00:00', 5), (1, 'x', TIMESTAMP '2024-01-03 10:00:00', 7), "
            "(1, 'y', TIMESTAMP '2024-01-02 10:00:00', -2)) v(ingest_id, customer_id, timestamp, amount)"
        )
        fs = build(store, "2024-01-10")
        # The store's own connection keeps no temporary objects of build.
        assert con.execute("SELECT COUNT(*) FROM duckdb_tables() WHERE temporary").fetchone()[0] == 0
    # y has only a return (negative amount): not a buyer.
    assert list(fs.customers["customer_id"]) == ["x"]
    x = fs.customers.iloc[0]
    assert (x["occasions"], x["frequency"], x["spend_total"], x["days_since_last_purchase"]) == (2, 1.0, 12.0, 7.0)


def test_foundation_store_without_kind_and_missing_tables(tmp_path):
    # A single-source store: transactions with DOUBLE amounts, no kind column,
    # no events/customers/orders tables. Negative amounts are returns.
    con = duckdb.connect(str(tmp_path / "f.duckdb"))
    con.execute("CREATE TABLE transactions (customer_id VARCHAR, timestamp TIMESTAMP, amount DOUBLE)")
    con.execute(
        "INSERT INTO transactions VALUES ('a', '2024-01-01 10:00', 0.1), ('a', '2024-01-01 11:00', 0.2), "
        "('a', '2024-01-05 10:00', -0.3), ('b', '2024-01-02 10:00', 4)"
    )
    fs = build(con, "2024-01-10", population="all")
    a = fs.customers.set_index("customer_id").loc["a"]
    assert a["occasions"] == 1 and a["returns_count"] == 1
    assert a["spend_total"] == 0.0  # 0.1 + 0.2 - 0.3 summed as DECIMAL
    assert a["sessions"] == 0 and np.isnan(a["view_to_cart_rate"]) and pd.isna(a["region"])
    assert a["orders"] == 2  # no order ids: one order per timestamp
    con.close()


def test_timestamptz_columns_are_read_as_utc(tmp_path):
    con = duckdb.connect(str(tmp_path / "tz.duckdb"))
    con.execute("SET TimeZone = 'America/New_York'")
    con.execute("CREATE TABLE transactions (customer_id VARCHAR, timestamp TIMESTAMPTZ, amount DECIMAL(18,4))")
    # 2024-01-09 23:30 UTC: before a UTC cutoff of 2024-01-10 whatever the session zone.
    con.execute("INSERT INTO transactions VALUES ('a', TIMESTAMPTZ '2024-01-09 23:30:00+00', 1)")
    fs = build(con, "2024-01-10")
    assert fs.customers["days_since_last_purchase"].tolist() == [1.0]
    con.close()


def test_store_without_transactions_table_is_refused(tmp_path):
    con = duckdb.connect(str(tmp_path / "e.duckdb"))
    with pytest.raises(DataError, match="no transactions table"):
        build(con, "2024-01-10")
    con.execute("CREATE TABLE transactions (customer_id VARCHAR, amount DOUBLE)")
    with pytest.raises(DataError, match="timestamp"):
        build(con, "2024-01-10")
    con.close()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"cutoff": "2024-03-01 12:00"}, CutoffError, "time of day"),
        ({"cutoff": "not a date"}, CutoffError, "not a date"),
        ({"timezone": "Mars/Olympus"}, DataError, "time zone"),
        ({"timezone": "UTC'; DROP TABLE x; --"}, DataError, "time zone"),
        ({"period": "D"}, DataError, "period"),
        ({"lookback": 0}, DataError, "lookback"),
        ({"windows": (30, 30)}, DataError, "windows"),
        ({"population": "everyone"}, DataError, "population"),
        ({"revenue_basis": "margin"}, DataError, "revenue_basis"),
        ({"channels": ("orders", "clicks")}, DataError, "channels"),
    ],
)
def test_bad_arguments_raise_clear_errors(tiny, kwargs, error, match):
    args = {"cutoff": "2024-03-01"} | kwargs
    with pytest.raises(error, match=match):
        build(tiny, **args)


def test_cutoff_forms_are_the_same_day(tiny):
    from datetime import date

    a = build(tiny, "2024-03-01")
    for other in (date(2024, 3, 1), pd.Timestamp("2024-03-01", tz="UTC"), pd.Timestamp("2024-03-01 00:00")):
        assert build(tiny, other).equals(a)


def test_feature_sql_is_plain_text_with_literals():
    sql = feature_sql("2024-03-01", timezone="Europe/Berlin", windows=(7, 28))
    # Berlin is UTC+1 in winter: the cutoff instant is 23:00 UTC the day before.
    assert "TIMESTAMP '2024-02-29 23:00:00'" in sql["history_lines"]
    assert "occasions_7d" in sql["windows"] and "occasions_28d" in sql["windows"]
    assert "{{" not in "".join(sql.values()) and "$" not in "".join(sql.values())
