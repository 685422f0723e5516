"""No leak: changing, deleting or adding any row at or after the cutoff leaves the FeatureSet unchanged.

The cutoff is local midnight in the shop's zone (Europe/Berlin here, from
store_meta), so "at or after" is measured against that UTC instant; rows
between UTC midnight and Berlin midnight are history in a UTC shop but not
here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_features_store import random_shop, tiny_shop, write_store

from ltvcast.features import build

# (table, time column, UPDATE assignments that scramble a row)
SCRAMBLE = {
    "transactions": (
        "timestamp",
        (
            "amount = -3 * amount + 1, kind = CASE WHEN kind = 'sale' THEN 'return' ELSE 'sale' END, "
            "customer_id = '{victim}', order_id = '{victim_order}', category = 'zzz', brand = 'zzz', "
            "product_id = 'zzz', channel = 'zzz', quantity = 99"
        ),
    ),
    "orders": ("timestamp", "customer_id = '{victim}', channel = 'zzz', gross_amount = 1"),
    "returns": ("timestamp", "customer_id = '{victim}', order_id = '{victim_order}', amount = 999"),
    "events": (
        "timestamp",
        (
            "customer_id = '{victim}', session_id = '{victim_session}', "
            "event_type = CASE event_type WHEN 'view' THEN 'add_to_cart' WHEN 'add_to_cart' THEN 'purchase' "
            "ELSE 'view' END"
        ),
    ),
    "customers": ("signup_at", "acquisition_channel = 'zzz', region = 'zzz', country = 'ZZ'"),
}


def scramble_future(con, cutoff_utc: str) -> dict[str, int]:
    """Add, change and delete rows at or after ``cutoff_utc`` in every timed table.

    Returns the number of rows at or after the cutoff per table afterwards
    (so the test can check the mutation did something).
    """
    x = f"TIMESTAMP '{cutoff_utc}'"
    victim, victim_order = con.execute(
        f"SELECT customer_id, order_id FROM transactions WHERE timestamp < {x} ORDER BY timestamp LIMIT 1"
    ).fetchone()
    session = con.execute(f"SELECT session_id FROM events WHERE timestamp < {x} AND session_id IS NOT NULL "
                          "ORDER BY timestamp LIMIT 1").fetchone()
    fmt = {"victim": victim, "victim_order": victim_order, "victim_session": session[0] if session else "s?"}
    # Future copies of every order (new ids) with their items, so order_items change too.
    con.execute(
        f"INSERT INTO orders SELECT * REPLACE (order_id || '_f' AS order_id, "
        f"{x} + (timestamp - (SELECT MIN(timestamp) FROM orders)) AS timestamp) FROM orders"
    )
    con.execute("INSERT INTO order_items SELECT * REPLACE (order_id || '_f' AS order_id) FROM order_items")
    # Future-informed columns of every order (returned/net amounts include later returns).
    con.execute("UPDATE orders SET returned_amount = 12345, net_amount = -12345")
    con.execute(
        f"UPDATE order_items SET discount = 999, amount = 1, quantity = 50 "
        f"WHERE order_id IN (SELECT order_id FROM orders WHERE timestamp >= {x})"
    )
    con.execute(
        "INSERT INTO customers SELECT * REPLACE ('new_' || customer_id AS customer_id, "
        f"{x} + (COALESCE(signup_at, {x}) - (SELECT MIN(signup_at) FROM customers)) AS signup_at) FROM customers"
    )
    for table, (col, assignments) in SCRAMBLE.items():
        if table not in ("orders", "customers"):
            # copies shifted to after the cutoff, and copies exactly at the cutoff
            con.execute(
                f"INSERT INTO {table} SELECT * REPLACE ({x} + ({col} - (SELECT MIN({col}) FROM {table})) AS {col}) "
                f"FROM {table}"
            )
            con.execute(f"INSERT INTO {table} SELECT * REPLACE ({x} AS {col}) FROM {table} LIMIT 5")
        con.execute(f"UPDATE {table} SET {assignments.format(**fmt)} WHERE {col} >= {x}")
        con.execute(f"DELETE FROM {table} WHERE {col} >= {x} AND hash(rowid) % 3 = 0")
    return {
        table: con.execute(f"SELECT COUNT(*) FROM {table} WHERE {col} >= {x}").fetchone()[0]
        for table, (col, _) in SCRAMBLE.items()
    }


def _builds(con, cutoff):
    return {
        (population, period): build(con, cutoff, period=period, lookback=lookback, population=population)
        for population in ("buyers", "all")
        for period, lookback in (("W", 60), ("M", 14))
    }


def assert_same(before, after):
    for key in before:
        a, b = before[key], after[key]
        pd.testing.assert_frame_equal(a.customers, b.customers, check_exact=True)
        np.testing.assert_array_equal(a.sequences, b.sequences)
        assert a.equals(b), key


def test_tiny_shop_berlin_is_unchanged_by_any_future_row(tmp_path):
    shop = tiny_shop()
    shop.meta["shop_timezone"] = "Europe/Berlin"
    # Berlin cutoff 2024-03-01 00:00 = 2024-02-29 23:00 UTC. Rows around that instant:
    shop.orders.append(("o20", "A", "2024-02-29 22:59:59", "web", [("P2", 1, "3.00", "0")]))  # history
    shop.orders.append(("o21", "C", "2024-02-29 23:30:00", "web", [("P2", 1, "3.00", "0")]))  # future
    shop.returns.append(("r20", "o9", 1, "2024-02-29 23:00:00", 1))  # exactly at the cutoff: future
    shop.events.append(("e20", "C", "s20", "2024-02-29 23:00:00", "view", "P1"))  # future
    con = write_store(tmp_path / "tiny.duckdb", shop)
    before = _builds(con, "2024-03-01")
    fs = before[("buyers", "W")]
    assert fs.timezone == "Europe/Berlin"
    c = fs.customers.set_index("customer_id").loc["C"]
    assert (c["occasions"], c["returns_count"], c["views"]) == (3, 0, 0)
    counts = scramble_future(con, "2024-02-29 23:00:00")
    assert all(n > 0 for n in counts.values()), counts
    assert_same(before, _builds(con, "2024-03-01"))
    con.close()


@pytest.mark.parametrize("seed, cutoff", [(3, "2023-04-01"), (4, "2023-10-30")])
def test_random_shop_is_unchanged_by_any_future_row(tmp_path, seed, cutoff):
    # 2023-10-30 is the day after the end of summer time in Berlin.
    shop = random_shop(seed, n_customers=120)
    shop.meta["shop_timezone"] = "Europe/Berlin"
    con = write_store(tmp_path / "r.duckdb", shop)
    before = _builds(con, cutoff)
    assert len(before[("buyers", "W")].customers) > 30
    assert before[("buyers", "W")].sequences.any()
    cutoff_utc = (
        pd.Timestamp(cutoff).tz_localize("Europe/Berlin").tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S")
    )
    counts = scramble_future(con, cutoff_utc)
    assert all(n > 0 for n in counts.values()), counts
    assert_same(before, _builds(con, cutoff))
    con.close()


def test_history_changes_do_change_the_features(tmp_path):
    # The converse, so the leak test cannot pass vacuously: a row just before
    # the cutoff does move the features.
    shop = tiny_shop()
    shop.meta["shop_timezone"] = "Europe/Berlin"
    con = write_store(tmp_path / "tiny.duckdb", shop)
    before = build(con, "2024-03-01")
    con.execute("UPDATE transactions SET amount = amount + 1 WHERE order_id = 'o6' AND kind = 'sale'")
    after = build(con, "2024-03-01")
    assert not before.equals(after)
    con.execute("UPDATE events SET timestamp = TIMESTAMP '2024-02-29 22:59:59' WHERE event_id = 'e9'")
    assert build(con, "2024-03-01").customers.set_index("customer_id").loc["A", "sessions"] == 3
    con.close()
