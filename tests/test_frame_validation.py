"""Frames handed to the library go through ingest's checks (issue 10, "One validation path").

Every frame is small and hand-written; expected values are computed by hand
in the comments. Cutoff 2020-01-10 throughout unless said: history is
2020-01-01 .. 2020-01-09, so a customer first seen 2020-01-01 has T = 8 days.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ltvcast.errors import CutoffError, DataError
from ltvcast.features import build, rfm_summary
from ltvcast.ingest.validate import validate_frame
from ltvcast.timeutil import unit_days

# The frames below end before the cutoff; the shop is observed through the day before it
# (rfm_summary refuses, as the CLI does, a cutoff after the data's end).
END = "2020-01-09"


def _tx(rows, index=None):
    """rows: (customer_id, timestamp, amount[, order_id, line])."""
    out = pd.DataFrame(
        {
            "customer_id": pd.Series([r[0] for r in rows], dtype="string"),
            "timestamp": pd.to_datetime([r[1] for r in rows], utc=True, format="ISO8601"),
            "amount": [np.nan if r[2] is None else float(r[2]) for r in rows],
        }
    )
    if any(len(r) > 3 for r in rows):
        out["order_id"] = pd.Series([r[3] if len(r) > 3 else None for r in rows], dtype="string")
        out["line"] = pd.array([r[4] if len(r) > 4 else None for r in rows], dtype="Int64")
    if index is not None:
        out.index = index
    return out


def _row(summary: pd.DataFrame, customer: str) -> tuple:
    r = summary.set_index("customer_id").loc[customer]
    return (r["frequency"], r["recency"], r["T"], r["monetary_value"], r["total_spend"], r["n_transactions"])


# -- missing customer id -----------------------------------------------------------


def test_missing_customer_id_is_an_error_naming_row_and_column():
    tx = _tx([("a", "2020-01-01", 10), (None, "2020-01-02", 5), ("a", "2020-01-08", 20), ("  ", "2020-01-03", 1)])
    with pytest.raises(DataError, match=r"missing_customer_id \(column customer_id\) at row\(s\) 1, 3"):
        rfm_summary(tx, "2020-01-10", data_end=END, unit="D")


def test_missing_customer_id_dropped_and_counted_with_on_invalid_drop():
    tx = _tx([("a", "2020-01-01", 10), (None, "2020-01-02", 5), ("a", "2020-01-08", 20), ("NA", "2020-01-03", 1)])
    s = rfm_summary(tx, "2020-01-10", data_end=END, unit="D", on_invalid="drop")
    assert list(s["customer_id"]) == ["a"]  # no <NA> customer
    # a: occasions 01-01 and 01-08 -> x = 1, t_x = 7 d, T = 8 d, repeat value 20, spend 30
    assert _row(s, "a") == (1, 7, 8, 20, 30, 2)
    report = s.attrs["validation"]
    assert report["rows_in"] == 4 and report["rows_kept"] == 2
    assert report["dropped"] == {"missing_customer_id": 2}
    assert [(r["row"], r["column"]) for r in report["invalid_rows"]] == [(1, "customer_id"), (3, "customer_id")]
    assert report["invalid_rows"][1]["value"] == "NA"


# -- missing timestamp / amount ----------------------------------------------------


def test_missing_timestamp_and_amount_are_errors_listing_rows():
    tx = _tx([("a", "2020-01-01", 10), ("a", None, 5), ("b", "2020-01-02", None), ("b", "2020-01-05", 4)])
    with pytest.raises(DataError) as err:
        rfm_summary(tx, "2020-01-10", data_end=END, unit="D")
    msg = str(err.value)
    assert "missing_timestamp (column timestamp) at row(s) 1" in msg
    assert "missing_amount (column amount) at row(s) 2" in msg


def test_missing_timestamp_and_amount_dropped_with_on_invalid_drop():
    tx = _tx([("a", "2020-01-01", 10), ("a", None, 5), ("b", "2020-01-02", None), ("b", "2020-01-05", 4)])
    s = rfm_summary(tx, "2020-01-10", data_end=END, unit="D", on_invalid="drop")
    # a: one occasion (01-01) -> (0, 0, T = 8, 0, spend 10, 1 row)
    assert _row(s, "a") == (0, 0, 8, 0, 10, 1)
    # b: only 01-05 counts (the row without amount is dropped, it makes no occasion) -> T = 4
    assert _row(s, "b") == (0, 0, 4, 0, 4, 1)
    assert s.attrs["validation"]["dropped"] == {"missing_timestamp": 1, "missing_amount": 1}


def test_text_columns_are_parsed_and_unreadable_values_reported():
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a"],
            "timestamp": ["2020-01-01", "2020-01-04T10:00:00Z", "yesterday", "2020-01-05"],
            "amount": ["10", "2.5", "3", "abc"],
        }
    )
    with pytest.raises(DataError, match=r"bad_timestamp \(column timestamp\) at row\(s\) 2.*bad_amount"):
        rfm_summary(tx, "2020-01-10", data_end=END, unit="D")
    s = rfm_summary(tx, "2020-01-10", data_end=END, unit="D", on_invalid="drop")
    # kept: 01-01 (10) and 01-04 (2.5): x = 1, t_x = 3, T = 8, repeat value 2.5
    assert _row(s, "a") == (1, 3, 8, 2.5, 12.5, 2)
    assert s.attrs["validation"]["invalid_rows"][0]["value"] == "yesterday"


def test_unknown_on_invalid_is_refused():
    with pytest.raises(DataError, match="on_invalid"):
        rfm_summary(_tx([("a", "2020-01-01", 1)]), "2020-01-10", on_invalid="ignore")


# -- repeated order lines ----------------------------------------------------------


def test_repeated_order_lines_are_summed_once_and_counted():
    tx = _tx(
        [
            ("a", "2020-01-01", 10, "o1", 1),
            ("a", "2020-01-01", 10, "o1", 1),  # same order and line, same content: export duplicate
            ("a", "2020-01-05", 20, "o2", None),
            ("a", "2020-01-05", 20, "o2", None),  # same order, no line, identical: duplicate
            ("b", "2020-01-03", 3, None, None),
            ("b", "2020-01-03", 3, None, None),  # no order id: two coffees, both kept
        ]
    )
    s = rfm_summary(tx, "2020-01-10", data_end=END, unit="D")
    # a: 01-01 (10) and 01-05 (20) -> x = 1, t_x = 4, T = 8, value 20, spend 30, 2 rows (not 60 / 4)
    assert _row(s, "a") == (1, 4, 8, 20, 30, 2)
    # b: one occasion of 6 from two rows, one order (without order ids, the rows of one timestamp are one)
    assert _row(s, "b") == (0, 0, 6, 0, 6, 1)
    assert s.attrs["validation"]["duplicates_dropped"] == 2
    assert s.attrs["validation"]["rows_kept"] == 4


def test_same_order_line_with_other_content_is_a_conflict():
    tx = _tx([("a", "2020-01-01", 10, "o1", 1), ("a", "2020-01-01", 12, "o1", 1), ("a", "2020-01-05", 5, "o2", 1)])
    with pytest.raises(DataError, match=r"duplicate_id \(column line\) at row\(s\) 1"):
        rfm_summary(tx, "2020-01-10", data_end=END, unit="D")
    s = rfm_summary(tx, "2020-01-10", data_end=END, unit="D", on_invalid="drop")
    assert _row(s, "a") == (1, 4, 8, 5, 15, 2)  # the first o1/1 is kept
    assert s.attrs["validation"]["dropped"] == {"duplicate_id": 1}


# -- cutoff after the data's end ---------------------------------------------------


def test_cutoff_after_the_declared_data_end_is_refused_as_in_the_cli():
    tx = _tx([("a", "2020-01-01", 10), ("a", "2020-01-08", 20)])
    with pytest.raises(CutoffError, match=r"cutoff 2020-01-20 is after the end of the data.*2020-01-10"):
        rfm_summary(tx, "2020-01-20", unit="D", data_end="2020-01-10")
    # the day after the data end is the latest cutoff: T = 01-01 .. 01-10 = 9 days
    assert _row(rfm_summary(tx, "2020-01-11", unit="D", data_end="2020-01-10"), "a")[2] == 9
    # declared later data end, or the explicit override
    assert _row(rfm_summary(tx, "2020-01-20", unit="D", data_end="2020-01-19"), "a")[2] == 18
    assert _row(rfm_summary(tx, "2020-01-20", unit="D", data_end="2020-01-10", allow_future_cutoff=True), "a")[2] == 18


def test_data_end_before_the_last_transaction_is_refused():
    tx = _tx([("a", "2020-01-01", 10), ("a", "2020-01-08", 20)])
    with pytest.raises(DataError, match="data_end 2020-01-05 is before the last transaction day 2020-01-08"):
        rfm_summary(tx, "2020-01-06", unit="D", data_end="2020-01-05")


# -- keyed by customer id ----------------------------------------------------------


def test_output_is_keyed_by_customer_id_whatever_the_index_and_row_order():
    rows = [("b", "2020-01-02", 5), ("a", "2020-01-01", 10), (None, "2020-01-03", 99), ("a", "2020-01-08", 20)]
    tx = _tx(rows, index=pd.Index([7, 7, 3, 0]))  # shuffled, repeated labels
    s = rfm_summary(tx, "2020-01-10", data_end=END, unit="D", on_invalid="drop")
    assert list(s["customer_id"]) == ["a", "b"]
    assert list(s.index) == [0, 1]
    assert _row(s, "a") == (1, 7, 8, 20, 30, 2)
    assert _row(s, "b") == (0, 0, 7, 0, 5, 1)
    # the dropped row is reported by position (2), not by its label (3)
    assert s.attrs["validation"]["invalid_rows"][0]["row"] == 2
    reversed_ = rfm_summary(tx.iloc[::-1], "2020-01-10", data_end=END, unit="D", on_invalid="drop")
    reversed_.attrs = {}
    s.attrs = {}
    pd.testing.assert_frame_equal(reversed_, s)


# -- hours ---------------------------------------------------------------------------


def test_unit_hours():
    tx = _tx([("a", "2020-01-01 09:00", 10), ("a", "2020-01-08 18:00", 20)])
    for unit in ("h", "H"):
        s = rfm_summary(tx, "2020-01-10", data_end=END, unit=unit)
        # occasions are days: t_x = 7 d = 168 h, T = 8 d = 192 h
        assert _row(s, "a")[:3] == (1, 168, 192)
    assert unit_days("h") == pytest.approx(1 / 24)
    with pytest.raises(DataError, match="hours"):
        rfm_summary(tx, "2020-01-10", unit="s")


# -- the validator itself, the report, build -----------------------------------------


def test_clean_frame_is_passed_through_without_copy():
    tx = _tx([("a", "2020-01-01", 10, "o1", 1), ("a", "2020-01-02", 5, "o2", 1)])
    clean, report = validate_frame(tx)
    assert clean is tx
    assert (report.rows_in, report.rows_kept, report.rows_dropped, report.dropped) == (2, 2, 0, {})


def test_report_survives_parquet(tmp_path):
    tx = _tx([("a", "2020-01-01", 10), (None, "2020-01-02", 5)])
    s = rfm_summary(tx, "2020-01-10", data_end=END, on_invalid="drop")
    s.to_parquet(tmp_path / "s.parquet")  # attrs are written as JSON: they must be plain values
    assert pd.read_parquet(tmp_path / "s.parquet")["customer_id"].tolist() == ["a"]


def test_build_refuses_a_frame_with_a_pointer():
    with pytest.raises(DataError, match="rfm_summary"):
        build(_tx([("a", "2020-01-01", 10)]), "2020-01-10")


@pytest.mark.parametrize("kinds, amounts, match", [
    (["sale", "sale", "foo"], [100, 50, -100], r"kind is not 'sale' or 'return' at row\(s\) 2"),
    (["SALE", "Sale", "RETURN"], [100, 50, -100], r"at row\(s\) 0, 1, 2"),  # was: the customer vanished
    (["sale", "sale", None], [100, 50, -100], r"at row\(s\) 2"),  # was: the row silently ignored
    (["sale", "sale", "return"], [100, 50, 100], "positive amount"),  # was: total_spend 250 instead of 50
])
def test_kind_outside_the_store_contract_is_an_error(kinds, amounts, match):
    tx = _tx([("a", "2020-01-01", amounts[0], "o1"), ("a", "2020-01-03", amounts[1], "o2"),
              ("a", "2020-01-05", amounts[2], "o1")])
    tx["kind"] = pd.Series(kinds, dtype="object")
    for on_invalid in ("raise", "drop"):
        with pytest.raises(DataError, match=match):
            rfm_summary(tx, "2020-01-10", unit="D", data_end=END, on_invalid=on_invalid)
    # the contract's spelling: o1 refunded in full -> one occasion (o2 on 01-03), spend 50
    tx["kind"] = ["sale", "sale", "return"]
    tx["amount"] = [100.0, 50.0, -100.0]
    assert _row(rfm_summary(tx, "2020-01-10", unit="D", data_end=END), "a") == (0, 0, 6, 0, 50, 1)
