"""Refunds netted by order (features/sql/README.md, "Refunds"), hand-computed.

UTC shop, net basis, cutoff C = 2024-03-01 unless stated. Day counts:
2024-01-10 .. C = 51 days (T_days 50), 2024-01-20 .. C = 41 days (T_days 40).
The SQL steps run over a frame with order ids, as rfm_summary runs them.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from ltvcast.features import rfm_summary
from ltvcast.features._sql import Context, cutoff_day, render, source_views, store_columns
from ltvcast.features.labels import horizon_labels, next_purchase_labels


def frame(rows):
    """rows: (customer, 'YYYY-MM-DD', amount, order_id or None)."""
    return pd.DataFrame({
        "customer_id": [r[0] for r in rows],
        "timestamp": pd.to_datetime([r[1] + " 12:00:00" for r in rows]),
        "amount": [float(r[2]) for r in rows],
        "kind": ["sale" if r[2] >= 0 else "return" for r in rows],
        "order_id": pd.array([r[3] for r in rows], dtype="string"),
    })


def rfm_at(tx: pd.DataFrame, cutoff: str, basis: str = "net") -> tuple[dict, dict]:
    """The rfm family's row and the h_daily unmatched sums of customer 'a' at ``cutoff``."""
    day = cutoff_day(cutoff)
    ctx = Context(day, "UTC", (), basis, "buyers", (), day)
    con = duckdb.connect(":memory:")
    try:
        con.register("tx_frame", tx)
        con.execute("CREATE VIEW transactions AS SELECT * FROM tx_frame")
        con.execute(source_views(store_columns(con))["transactions"])
        for step in ("history_lines", "history_orders", "history_daily"):
            con.execute(render(step, ctx))
        rfm = con.execute(f"SELECT * FROM ({render('rfm', ctx)}) WHERE customer_id = 'a'").df()
        unmatched = con.execute(
            "SELECT CAST(SUM(unmatched_lines) AS BIGINT) AS n, CAST(SUM(unmatched_returned) AS DOUBLE) AS amount "
            "FROM h_daily WHERE customer_id = 'a'"
        ).df()
    finally:
        con.close()
    return rfm.iloc[0].to_dict(), unmatched.iloc[0].to_dict()


def check(row: dict, **want):
    for name, value in want.items():
        assert row[name] == pytest.approx(value, abs=1e-12), (name, row[name], value)


def test_full_refund_on_the_same_day_is_no_occasion():
    tx = frame([("a", "2024-01-10", 100, "o1"), ("a", "2024-01-10", -100, "o1"), ("a", "2024-01-20", 50, "o2")])
    row, _ = rfm_at(tx, "2024-03-01")
    check(row, occasions=1, frequency=0.0, recency_days=0.0, T_days=40.0, monetary_value=0.0, spend_total=50.0)


def test_full_refund_of_an_earlier_order_later_removes_that_occasion():
    tx = frame([("a", "2024-01-10", 100, "o1"), ("a", "2024-01-20", 50, "o2"), ("a", "2024-02-05", -100, "o1")])
    row, _ = rfm_at(tx, "2024-03-01")
    check(row, occasions=1, frequency=0.0, recency_days=0.0, T_days=40.0, monetary_value=0.0, spend_total=50.0)


def test_partial_refund_later_lowers_the_earlier_occasion():
    tx = frame([("a", "2024-01-10", 100, "o1"), ("a", "2024-01-20", 50, "o2"), ("a", "2024-02-05", -30, "o2")])
    row, _ = rfm_at(tx, "2024-03-01")
    # occasions 01-10 (100) and 01-20 (50 - 30 = 20): the repeat occasion is worth 20.
    check(row, frequency=1.0, recency_days=10.0, T_days=50.0, monetary_value=20.0, spend_total=120.0)


def test_refund_without_matching_order_is_counted_and_lowers_total_spend_only():
    tx = frame([
        ("a", "2024-01-10", 100, "o1"),
        ("a", "2024-01-20", 50, "o2"),
        ("a", "2024-01-20", -10, "zz"),   # names no order of 'a': not netted into 01-20
        ("a", "2024-02-05", -5, None),    # no order id on a frame with order ids
        ("b", "2024-01-05", 70, "zz"),    # another customer's order 'zz' does not match
    ])
    row, unmatched = rfm_at(tx, "2024-03-01")
    check(row, frequency=1.0, recency_days=10.0, T_days=50.0, monetary_value=50.0, spend_total=135.0)
    assert unmatched == {"n": 2, "amount": 15.0}


def test_without_order_ids_the_old_rule_holds():
    rows = [("a", "2024-01-10", 100, None), ("a", "2024-01-10", -100, None), ("a", "2024-01-20", 50, None),
            ("a", "2024-01-20", -10, None), ("a", "2024-02-05", -30, None)]
    tx = frame(rows)
    row, unmatched = rfm_at(tx, "2024-03-01")
    # returns count on their own day: occasions 01-10 (value 0) and 01-20 (40); 02-05 lowers spend only.
    check(row, frequency=1.0, recency_days=10.0, T_days=50.0, monetary_value=40.0, spend_total=10.0)
    assert unmatched == {"n": 0, "amount": 0.0}
    old = rfm_summary(tx.drop(columns="order_id"), "2024-03-01", unit="D", data_end="2024-02-29")
    old = old.set_index("customer_id").loc["a"]
    for col, mine in (("frequency", "frequency"), ("recency", "recency_days"), ("T", "T_days"),
                      ("monetary_value", "monetary_value"), ("total_spend", "spend_total")):
        assert old[col] == pytest.approx(row[mine], abs=1e-12), col


def test_gross_basis_ignores_refunds():
    tx = frame([("a", "2024-01-10", 100, "o1"), ("a", "2024-01-20", 50, "o2"), ("a", "2024-02-05", -100, "o1"),
                ("a", "2024-02-06", -7, None)])
    row, unmatched = rfm_at(tx, "2024-03-01", basis="gross")
    check(row, frequency=1.0, recency_days=10.0, monetary_value=50.0, spend_total=150.0)
    assert unmatched == {"n": 1, "amount": 7.0}


def test_refund_after_the_cutoff_does_not_change_history():
    base = [("a", "2024-01-10", 100, "o1"), ("a", "2024-01-20", 50, "o2")]
    later = frame([*base, ("a", "2024-03-05", -100, "o1")])
    before, _ = rfm_at(frame(base), "2024-03-01")
    at, _ = rfm_at(later, "2024-03-01")
    assert at == before
    check(at, frequency=1.0, recency_days=10.0, T_days=50.0, monetary_value=50.0, spend_total=150.0)
    # once the refund is history, o1 is given back on its own day (2024-01-10).
    after, _ = rfm_at(later, "2024-03-10")
    check(after, occasions=1, frequency=0.0, recency_days=0.0, T_days=49.0, monetary_value=0.0, spend_total=50.0)


def test_labels_net_refunds_inside_the_window():
    tx = frame([
        ("a", "2024-02-20", 40, "o0"),    # before the window
        ("a", "2024-03-02", 100, "o1"),   # in the window, refunded in full in the window
        ("a", "2024-03-05", 30, "o2"),
        ("a", "2024-03-08", -100, "o1"),
        ("a", "2024-03-09", -15, "o0"),   # refund of an order before the window: spend only
        ("a", "2024-03-20", -30, "o2"),   # after the window: not seen
    ])
    out = horizon_labels(tx, pd.Series(["a"]), "2024-03-01", 14).set_index("customer_id")
    assert out.loc["a", "actual_transactions"] == 1.0
    assert out.loc["a", "actual_spend"] == pytest.approx(100 + 30 - 100 - 15)
    gross = horizon_labels(tx, pd.Series(["a"]), "2024-03-01", 14, revenue_basis="gross").set_index("customer_id")
    assert gross.loc["a", "actual_transactions"] == 2.0 and gross.loc["a", "actual_spend"] == pytest.approx(130.0)


def test_next_purchase_is_the_first_occasion_that_survives_its_refunds():
    tx = frame([
        ("a", "2024-03-02", 100, "o1"),   # day 1: refunded in full in the window -> no occasion
        ("a", "2024-03-05", 30, "o2"),    # day 4: the first occasion
        ("a", "2024-03-08", -100, "o1"),
        ("b", "2024-03-03", 50, "o3"),    # b's only order, refunded in full: no occasion, no next purchase
        ("b", "2024-03-04", -50, "o3"),
    ])
    ids = pd.Series(["a", "b"])
    nxt = next_purchase_labels(tx, ids, "2024-03-01", 14).set_index("customer_id")["next_purchase_days"]
    assert nxt["a"] == 4.0 and pd.isna(nxt["b"])
    labels = horizon_labels(tx, ids, "2024-03-01", 14).set_index("customer_id")["actual_transactions"]
    assert (labels > 0).to_dict() == nxt.notna().to_dict()  # a next purchase exactly when an occasion
    gross = next_purchase_labels(tx, ids, "2024-03-01", 14, revenue_basis="gross").set_index("customer_id")
    assert gross["next_purchase_days"].to_dict() == {"a": 1.0, "b": 2.0}


def test_rfm_summary_nets_by_order_id_and_reports_unmatched_refunds():
    """The Python API follows the rule when the frame has order ids (data_end: observed through 02-29)."""
    tx = frame([
        ("a", "2024-01-10", 100, "o1"),
        ("a", "2024-01-20", 50, "o2"),
        ("a", "2024-02-05", -100, "o1"),  # o1 given back: 01-10 is no occasion
        ("a", "2024-02-06", -7, "zz"),    # names no order of 'a'
        ("b", "2024-01-05", 70, "zz"),
        ("b", "2024-01-25", 30, "o9"),
        ("b", "2024-02-01", -10, "o9"),   # partial: o9 worth 20
    ])
    out = rfm_summary(tx, "2024-03-01", unit="D", data_end="2024-02-29").set_index("customer_id")
    a, b = out.loc["a"], out.loc["b"]
    # a: one occasion (01-20, 50); T = 01-20 .. 02-29 = 40 d; spend 100 + 50 - 100 - 7 = 43.
    assert (a["frequency"], a["T"], a["monetary_value"], a["total_spend"]) == (0.0, 40.0, 0.0, 43.0)
    assert (a["unmatched_refunds"], a["unmatched_refund_amount"], a["n_transactions"]) == (1, 7.0, 1)
    assert a["first_purchase"].isoformat() == "2024-01-20"
    # b: occasions 01-05 (70) and 01-25 (30 - 10 = 20): m = 20, recency 20 d, spend 90.
    assert (b["frequency"], b["recency"], b["monetary_value"], b["total_spend"]) == (1.0, 20.0, 20.0, 90.0)
    assert (b["unmatched_refunds"], b["unmatched_refund_amount"]) == (0, 0.0)
    # without the order ids: today's rule (refunds on their own day, no occasion removed)
    old = rfm_summary(tx.drop(columns="order_id"), "2024-03-01", unit="D", data_end="2024-02-29")
    old = old.set_index("customer_id").loc["a"]
    assert (old["frequency"], old["monetary_value"], old["unmatched_refunds"]) == (1.0, 50.0, 0)


def test_rfm_summary_refuses_a_cutoff_after_the_data_end_by_default():
    from ltvcast.errors import CutoffError

    tx = frame([("a", "2024-01-10", 100, "o1"), ("a", "2024-01-20", 50, "o2")])
    assert len(rfm_summary(tx, "2024-01-21")) == 1  # the day after the last row: allowed
    with pytest.raises(CutoffError, match="after the end of the data"):
        rfm_summary(tx, "2024-01-22")  # the data's end is the last row's day (the CLI's rule)
    late = rfm_summary(tx, "2024-03-01", unit="D", allow_future_cutoff=True).iloc[0]
    assert late["T"] == 50.0  # 01-10 .. 02-29
    assert late["T"] == rfm_summary(tx, "2024-03-01", unit="D", data_end="2024-02-29").iloc[0]["T"]


def test_backtest_notes_count_refunds_without_their_order():
    from types import SimpleNamespace

    from ltvcast.evaluate.backtest import unmatched_refund_notes

    tx = frame([
        ("a", "2024-02-01", 50, "o1"),
        ("a", "2024-02-10", -20, "o9"),   # names no order of a: unmatched
        ("b", "2024-02-03", 30, "o2"),
        ("b", "2024-02-04", -5, None),     # no order id, while b has order ids: unmatched
        ("b", "2024-02-05", -30, "o2"),    # matched
        ("c", "2024-02-06", 10, "o3"),
        ("c", "2024-03-20", -10, "x"),     # after the cutoff: not counted
    ])
    data = SimpleNamespace(transactions=tx, timezone="UTC", revenue_basis="net",
                           observation_end=pd.Timestamp("2024-03-31", tz="UTC"))
    (note,) = unmatched_refund_notes(data, "2024-03-01")
    assert note.startswith("2 refund(s) before the cutoff (25.00 in all, 2 customer(s))")
    assert unmatched_refund_notes(SimpleNamespace(transactions=tx.drop(columns="order_id")), "2024-03-01") == []
