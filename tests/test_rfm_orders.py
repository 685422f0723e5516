"""``n_transactions`` of the RFM summary counts orders, not sale lines (issue 11's newcomer run).

It counted sale rows, so on an order-line export (UCI Online Retail: one row per invoice line) one
invoice of 30 lines read as 30 transactions in `ltvcast features`, the service's summary and the
drift report. Hand-made shop, cutoff 2024-02-01, UTC:

  a  o1 2024-01-02 three lines (10, 5, 5); o2 2024-01-02 one line (7); o3 2024-01-09 two lines (4, 6),
     refunded in full (-10, naming o3) on 2024-01-12
  b  no order ids: two rows at 2024-01-03 10:00, one at 15:00, one on 2024-01-05

a: net, the 01-09 day is given back (no occasion): orders o1, o2 -> 2 (4 lines); gross: o1, o2, o3 -> 3.
b: rows of one timestamp are one order (history_orders.sql): 3 orders from 4 rows.
The service's fold (serve.state.summarize) over the same orders gives the same counts.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from ltvcast.features import rfm_summary
from ltvcast.serve.events import day_index
from ltvcast.serve.state import DayRow, summarize

ROWS = [  # customer, timestamp, amount, kind, order_id, line
    ("a", "2024-01-02 09:00", 10.0, "sale", "o1", 1),
    ("a", "2024-01-02 09:00", 5.0, "sale", "o1", 2),
    ("a", "2024-01-02 09:00", 5.0, "sale", "o1", 3),
    ("a", "2024-01-02 18:00", 7.0, "sale", "o2", 1),
    ("a", "2024-01-09 12:00", 4.0, "sale", "o3", 1),
    ("a", "2024-01-09 12:00", 6.0, "sale", "o3", 2),
    ("a", "2024-01-12 08:00", -10.0, "return", "o3", None),
    ("b", "2024-01-03 10:00", 3.0, "sale", None, None),
    ("b", "2024-01-03 10:00", 2.0, "sale", None, None),
    ("b", "2024-01-03 15:00", 4.0, "sale", None, None),
    ("b", "2024-01-05 11:00", 8.0, "sale", None, None),
]


def _frame() -> pd.DataFrame:
    tx = pd.DataFrame(ROWS, columns=["customer_id", "timestamp", "amount", "kind", "order_id", "line"])
    return tx.assign(timestamp=pd.to_datetime(tx["timestamp"], utc=True)).astype(
        {"customer_id": "string", "kind": "string", "order_id": "string", "line": "Int64"})


@pytest.mark.parametrize(("basis", "want"), [("net", {"a": 2, "b": 3}), ("gross", {"a": 3, "b": 3})])
def test_n_transactions_counts_orders(basis, want):
    s = rfm_summary(_frame(), "2024-02-01", unit="D", revenue_basis=basis, data_end="2024-01-31")
    assert s.set_index("customer_id")["n_transactions"].to_dict() == want


@pytest.mark.parametrize(("basis", "want"), [("net", 2), ("gross", 3)])
def test_the_service_counts_the_same_orders(basis, want):
    d = day_index
    rows = [  # (day, order id, sales, returned, sale rows, orders, return rows), money in 1/10,000
        DayRow(d(date(2024, 1, 2)), "o1", 20_0000, 0, 3, 1, 0),
        DayRow(d(date(2024, 1, 2)), "o2", 7_0000, 0, 1, 1, 0),
        DayRow(d(date(2024, 1, 9)), "o3", 10_0000, 0, 2, 1, 0),
        DayRow(d(date(2024, 1, 12)), "o3", 0, 10_0000, 0, 0, 1),
    ]
    assert summarize(rows, date(2024, 2, 1), "D", basis).n_transactions == want
