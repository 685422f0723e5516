"""Parsing, validation + quarantine, duplicates, observation end and the cutoff check."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ltvcast.errors import CutoffError, DataError
from ltvcast.ingest.mapping import load_mapping_file
from ltvcast.ingest.parse import normalise_ids, parse_numbers, parse_timestamps
from ltvcast.ingest.single import ingest
from ltvcast.schema import QUARANTINE_COLUMNS, TRANSACTION_COLUMNS
from ltvcast.timeutil import check_cutoff, observation_end

DATA = Path(__file__).parent / "data" / "ingest"
ROOT = Path(__file__).resolve().parents[1]
CDNOW_PACKAGED = ROOT / "src" / "ltvcast" / "data" / "files" / "CDNOW_master.txt.gz"
CDNOW_SHARED = Path("/work/shared/data/cdnow/CDNOW_master.txt")

RENAMED = {"customer_id": "CustomerID", "timestamp": "InvoiceDate", "amount": "Sales", "order_id": "InvoiceNo"}


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def check_invariant(result) -> None:
    s = result.stats
    assert s.rows_read == s.rows_kept + s.rows_quarantined + s.duplicates_dropped + s.rows_excluded
    assert len(result.transactions) == s.rows_kept
    # every sub-count is a subset of what it names (issue 11)
    assert all(n <= s.rows_kept for n in s.ids_normalised_by_column.values())
    assert s.zero_value_sales <= s.rows_kept
    assert len(result.quarantine) == s.rows_quarantined


def check_canonical_dtypes(frame: pd.DataFrame) -> None:
    assert tuple(frame.columns) == TRANSACTION_COLUMNS
    for name in ("customer_id", "order_id", "product_id", "category", "brand", "channel", "currency"):
        assert pd.api.types.is_string_dtype(frame[name].dtype), name
    assert frame["timestamp"].dtype == "datetime64[us, UTC]"
    assert frame["amount"].dtype == np.float64
    assert frame["quantity"].dtype == np.float64
    assert frame["line"].dtype == "Int64"


# -- value parsers ------------------------------------------------------------
def test_normalise_ids():
    raw = pd.Series(["00012", "17850.0", "17850.5", " 42 ", "12.00", "C536365", "", "NA", "-3.0", "1.0e5"])
    ids, count = normalise_ids(raw)
    assert ids.tolist()[:6] == ["00012", "17850", "17850.5", "42", "12", "C536365"]
    assert pd.isna(ids.iloc[6]) and pd.isna(ids.iloc[7])
    assert ids.iloc[8] == "-3"
    assert ids.iloc[9] == "1.0e5"  # not an integer spelling: untouched
    assert count == 3


def test_parse_numbers():
    values = parse_numbers(pd.Series(["12", " -3.5 ", "1e3", "abc", "", "1,000.00", "inf", "NaN"]))
    assert values.iloc[:3].tolist() == [12.0, -3.5, 1000.0]
    assert values.iloc[3:].isna().all()
    assert values.dtype == np.float64


def test_parse_timestamps_iso_offsets_and_compact():
    values = pd.Series(
        ["2020-01-05 10:00:00", "2020-01-06T09:30:00+02:00", "2020-01-07", "19970101", "2020-01-01T10:00Z", "junk", ""]
    )
    out = parse_timestamps(values)
    assert out.dtype == "datetime64[us, UTC]"
    assert out.iloc[0] == utc("2020-01-05 10:00")
    assert out.iloc[1] == utc("2020-01-06 07:30")  # offset converted to UTC
    assert out.iloc[2] == utc("2020-01-07")
    assert out.iloc[3] == utc("1997-01-01")
    assert out.iloc[4] == utc("2020-01-01 10:00")
    assert out.iloc[5:].isna().all()


def test_parse_timestamps_compact_invalid_day_is_nat():
    out = parse_timestamps(pd.Series(["19970101", "19971301"]))
    assert out.iloc[0] == utc("1997-01-01") and pd.isna(out.iloc[1])


def test_parse_timestamps_microseconds_kept():
    out = parse_timestamps(pd.Series(["2020-01-01 10:00:00.123456"]))
    assert out.iloc[0] == utc("2020-01-01 10:00:00.123456")


def test_parse_timestamps_month_first_default_dayfirst_and_format():
    us = parse_timestamps(pd.Series(["12/1/2010 8:26", "1/13/2011 9:00"]))
    assert us.tolist() == [utc("2010-12-01 08:26"), utc("2011-01-13 09:00")]
    eu = parse_timestamps(pd.Series(["01/02/2020 10:15", "13/02/2020 08:00"]), dayfirst=True)
    assert eu.tolist() == [utc("2020-02-01 10:15"), utc("2020-02-13 08:00")]
    fmt = parse_timestamps(pd.Series(["01/02/2020 10:15", "2020-02-13"]), date_format="%d/%m/%Y %H:%M")
    assert fmt.iloc[0] == utc("2020-02-01 10:15") and pd.isna(fmt.iloc[1])


def test_parse_timestamps_refuses_mixed_day_and_month_first():
    with pytest.raises(DataError, match=r"month-first \('01/02/2020'\) and day-first \('13/02/2020'\).*--dayfirst"):
        parse_timestamps(pd.Series(["01/02/2020", "13/02/2020"]))


def test_parse_timestamps_from_parquet_datetimes():
    naive = pd.Series(pd.to_datetime(["2020-01-01 10:00", None]))
    out = parse_timestamps(naive)
    assert out.dtype == "datetime64[us, UTC]"
    assert out.iloc[0] == utc("2020-01-01 10:00") and pd.isna(out.iloc[1])
    aware = pd.Series(pd.to_datetime(["2020-01-01 10:00"]).tz_localize("Europe/Berlin"))
    assert parse_timestamps(aware).iloc[0] == utc("2020-01-01 09:00")


# -- ingest: mapping, quarantine, ids -------------------------------------
def test_renamed_csv_quarantine_reasons_rows_and_ids():
    result = ingest(DATA / "orders_renamed.csv", RENAMED)
    check_invariant(result)
    s = result.stats
    assert s.rows_read == 12
    assert s.rows_kept == 4
    assert s.quarantined == {
        "missing_customer_id": 2,
        "missing_timestamp": 1,
        "bad_timestamp": 2,
        "missing_amount": 1,
        "bad_amount": 2,
    }
    assert s.duplicates_dropped == 0
    assert s.ids_normalised == 1
    assert s.ids_normalised_by_column == {"customer_id": 1, "order_id": 0}
    assert s.format == "csv"
    assert s.source == str((DATA / "orders_renamed.csv").resolve())

    q = result.quarantine
    assert tuple(q.columns) == QUARANTINE_COLUMNS
    assert q["source_row"].tolist() == [5, 6, 7, 8, 9, 10, 11, 12]
    assert q["reason"].tolist() == [
        "missing_customer_id",
        "bad_timestamp",
        "bad_amount",
        "missing_amount",
        "bad_timestamp",
        "missing_timestamp",
        "missing_customer_id",
        "bad_amount",
    ]
    assert q["source_column"].tolist() == [
        "CustomerID", "InvoiceDate", "Sales", "Sales", "InvoiceDate", "InvoiceDate", "CustomerID", "Sales",
    ]
    assert q["raw_value"].tolist() == ["", "not a date", "abc", "", "2020-02-30", "", "NA", "1,000.00"]
    assert q["source"].unique().tolist() == [s.source]
    assert json.loads(q["raw_row"].iloc[1]) == {
        "CustomerID": "00013",
        "InvoiceDate": "not a date",
        "Sales": "8.00",
        "InvoiceNo": "A6",
        "Country": "UK",
    }

    tx = result.transactions
    check_canonical_dtypes(tx)
    # sorted by customer_id then timestamp
    assert tx["customer_id"].tolist() == ["00012", "00012", "17850", "17850.5"]
    assert tx["timestamp"].tolist() == [
        utc("2020-01-05 10:00"),
        utc("2020-01-08"),
        utc("2020-01-06 07:30"),
        utc("2020-01-07"),
    ]
    assert tx["amount"].tolist() == [10.5, -3.0, 20.0, 5.25]
    assert tx["order_id"].tolist() == ["A1", "A4", "A2", "A3"]
    assert tx["quantity"].isna().all() and tx["line"].isna().all()
    assert result.observation_end == utc("2020-01-08")


def test_missing_required_column_lists_columns_found():
    with pytest.raises(DataError) as info:
        ingest(DATA / "orders_renamed.csv")
    message = str(info.value)
    assert "orders_renamed.csv" in message
    assert "required column customer_id not found" in message
    assert "columns found: CustomerID, InvoiceDate, Sales, InvoiceNo, Country" in message


def test_mapped_column_absent_from_file():
    with pytest.raises(DataError, match=r"column 'customerid' \(mapped to customer_id\) not found \(did you mean 'CustomerID'"):
        ingest(DATA / "orders_renamed.csv", {**RENAMED, "customer_id": "customerid"})


def test_missing_amount_mentions_unit_price():
    with pytest.raises(DataError, match=r"required column amount \(or unit_price and quantity\) not found"):
        ingest(DATA / "orders_renamed.csv", {"customer_id": "CustomerID", "timestamp": "InvoiceDate"})


def test_online_retail_unit_price_derivation_duplicates_and_float_ids():
    result = ingest(DATA / "online_retail.csv", load_mapping_file(DATA / "online_retail.yaml"))
    check_invariant(result)
    s = result.stats
    assert s.rows_read == 10
    assert s.duplicates_dropped == 2
    assert s.quarantined == {"missing_customer_id": 1, "missing_amount": 1, "bad_amount": 1}
    assert s.rows_kept == 5
    assert s.identical_rows_kept == 0
    # the 5 kept rows all spell their customer id as a float; the 2 dropped duplicates and the
    # 2 quarantined rows with a float id are not counted (issue 11: it was 9 > rows kept)
    assert s.ids_normalised_by_column == {"customer_id": 5, "order_id": 0, "product_id": 0}
    q = result.quarantine
    assert q["source_row"].tolist() == [8, 9, 10]
    assert q["source_column"].tolist() == ["CustomerID", "UnitPrice", "Quantity"]
    tx = result.transactions
    check_canonical_dtypes(tx)
    assert tx["customer_id"].tolist() == ["13047", "14527", "17850", "17850", "17850"]
    assert tx["order_id"].tolist() == ["536367", "C536379", "536365", "536365", "536366"]
    assert tx["product_id"].tolist() == ["84879", "D", "85123A", "71053", "22633"]
    np.testing.assert_allclose(tx["amount"], [32 * 1.69, -27.5, 6 * 2.55, 6 * 3.39, 6 * 1.85])
    assert tx["quantity"].tolist() == [32.0, -1.0, 6.0, 6.0, 6.0]
    assert tx["timestamp"].iloc[0] == utc("2010-12-01 08:34")  # 12/1/2010 is 1 December


def test_order_lines_duplicates_by_line_number():
    mapping = {"order_id": "order", "line": "line", "customer_id": "customer", "timestamp": "ts", "amount": "value"}
    result = ingest(DATA / "order_lines.csv", mapping)
    check_invariant(result)
    s = result.stats
    assert s.duplicates_dropped == 1  # row 3 repeats line 1 of O1 exactly (first kept)
    # row 4 is line 2 of O1 again with another value (6 vs 5): not an export duplicate
    assert s.quarantined == {"bad_line": 1, "duplicate_id": 1}
    assert sorted(result.quarantine["source_row"].tolist()) == [4, 6]
    tx = result.transactions
    assert tx["order_id"].tolist() == ["O1", "O1", "O2"]
    assert tx["line"].tolist() == [1, 2, 1]
    assert tx["amount"].tolist() == [10.0, 5.0, 7.0]


def test_identical_rows_without_order_ids_are_kept_and_counted():
    result = ingest(DATA / "no_orders.csv")
    check_invariant(result)
    assert result.stats.rows_kept == 4
    assert result.stats.identical_rows_kept == 2
    assert result.stats.duplicates_dropped == 0
    assert result.transactions["amount"].sum() == 14.0


def test_dayfirst_file():
    result = ingest(DATA / "dayfirst.csv", dayfirst=True)
    tx = result.transactions
    assert tx["timestamp"].tolist() == [utc("2019-12-31 23:59"), utc("2020-02-01 10:15"), utc("2020-02-13 08:00")]
    same = ingest(DATA / "dayfirst.csv", date_format="%d/%m/%Y %H:%M")
    pd.testing.assert_frame_equal(same.transactions, tx)
    with pytest.raises(DataError, match="--dayfirst"):
        ingest(DATA / "dayfirst.csv")


def test_headerless_whitespace_with_mapping_file():
    result = ingest(DATA / "cdnow_headerless.txt", load_mapping_file(DATA / "cdnow_headerless.yaml"))
    check_invariant(result)
    tx = result.transactions
    assert result.stats.rows_read == 5 and result.stats.rows_kept == 5
    assert tx["customer_id"].tolist() == ["00004", "00004", "00004", "00018", "00021"]
    assert tx["quantity"].tolist() == [2.0, 2.0, 1.0, 2.0, 3.0]
    assert tx["amount"].sum() == pytest.approx(29.33 + 29.73 + 14.96 + 26.48 + 63.34)
    assert result.observation_end == utc("1997-08-02")


def test_parquet_ingest(tmp_path):
    table = pa.table(
        {
            "customer_id": pa.array([12, 17850, None], pa.int64()),
            "timestamp": pa.array(
                [pd.Timestamp("2020-01-01 10:00"), pd.Timestamp("2020-01-02"), pd.Timestamp("2020-01-03")],
                pa.timestamp("us"),
            ),
            "amount": pa.array([1.5, 2.0, 3.0]),
        }
    )
    target = tmp_path / "tx.parquet"
    pq.write_table(table, target)
    result = ingest(target)
    check_invariant(result)
    assert result.transactions["customer_id"].tolist() == ["12", "17850"]
    assert result.stats.quarantined == {"missing_customer_id": 1}
    assert result.transactions["timestamp"].iloc[0] == utc("2020-01-01 10:00")


def test_all_rows_bad_is_an_error(tmp_path):
    target = tmp_path / "bad.csv"
    target.write_text("customer_id,timestamp,amount\n1,yesterday,2\n2,today,3\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no usable rows, all 2 were rejected \(bad_timestamp: 2\); e.g. row 1"):
        ingest(target)


def test_header_only_file_is_an_error(tmp_path):
    target = tmp_path / "header.csv"
    target.write_text("customer_id,timestamp,amount\n", encoding="utf-8")
    with pytest.raises(DataError, match="has no data rows"):
        ingest(target)


def test_data_end_declared_and_refused():
    result = ingest(DATA / "no_orders.csv", data_end="2021-06-30")
    assert result.data_end == utc("2021-06-30")
    assert result.observation_end == utc("2021-06-30")
    with pytest.raises(DataError, match="data_end 2021-04-30 is before the last transaction day 2021-05-01"):
        ingest(DATA / "no_orders.csv", data_end="2021-04-30")
    with pytest.raises(DataError, match="data_end 'soon' is not a date"):
        ingest(DATA / "no_orders.csv", data_end="soon")


# -- observation end and cutoff ---------------------------------------------
def test_observation_end_function():
    tx = pd.DataFrame({"timestamp": pd.to_datetime(["2020-01-01 00:00", "2020-03-05 23:59"], utc=True)})
    assert observation_end(tx) == utc("2020-03-05")
    assert observation_end(tx, "2020-03-31") == utc("2020-03-31")
    assert observation_end(tx, "2020-03-05") == utc("2020-03-05")
    with pytest.raises(DataError, match="2020-03-04 is before the last transaction day 2020-03-05"):
        observation_end(tx, "2020-03-04")
    with pytest.raises(DataError, match="no transactions"):
        observation_end(tx.iloc[:0])
    assert observation_end(tx.iloc[:0], "2020-01-01") == utc("2020-01-01")


def test_check_cutoff_both_ways():
    end = utc("1998-06-30")
    assert check_cutoff("1998-07-01", end) == utc("1998-07-01")  # day after the end: ok
    assert check_cutoff("1997-10-01", end) == utc("1997-10-01")
    with pytest.raises(CutoffError, match="cutoff 1998-07-02 is after the end of the data \\(observation end 1998-06-30"):
        check_cutoff("1998-07-02", end)
    assert check_cutoff("1999-01-01", end, allow_future=True) == utc("1999-01-01")
    with pytest.raises(CutoffError, match="not a date"):
        check_cutoff("tomorrow", end)


# -- the real CDNOW master -------------------------------------------------
def _cdnow_path() -> Path | None:
    for path in (CDNOW_PACKAGED, CDNOW_SHARED):
        if path.exists():
            return path
    return None


@pytest.mark.skipif(
    _cdnow_path() is None,
    reason=f"CDNOW master not available (looked for {CDNOW_PACKAGED} and {CDNOW_SHARED})",
)
def test_cdnow_master_ingests_cleanly_and_fast():
    path = _cdnow_path()
    t0 = time.perf_counter()
    result = ingest(
        path,
        {"timestamp": "date", "amount": "dollar_value", "quantity": "number_of_cds"},
        format="whitespace",
    )
    seconds = time.perf_counter() - t0
    check_invariant(result)
    tx = result.transactions
    assert result.stats.rows_read == 69_659
    assert result.stats.rows_kept == 69_659
    assert result.stats.rows_quarantined == 0
    assert tx["customer_id"].nunique() == 23_570
    assert tx["customer_id"].iloc[0] == "00001"
    assert tx["timestamp"].min() == utc("1997-01-01")
    assert result.observation_end == utc("1998-06-30")
    assert (tx["amount"] == 0).sum() == 80  # README: 80 zero-value rows, kept
    assert seconds < 5.0, f"CDNOW ingest took {seconds:.2f}s (target about 1s)"


def test_unit_price_needs_quantity():
    mapping = {"customer_id": "CustomerID", "timestamp": "InvoiceDate", "unit_price": "UnitPrice"}
    with pytest.raises(DataError, match=r"required column quantity \(amount = quantity x unit_price\) not found.*columns found: InvoiceNo, StockCode, Quantity"):
        ingest(DATA / "online_retail.csv", mapping)


def test_order_lines_differing_only_in_an_unmapped_column_are_not_duplicates(tmp_path):
    path = tmp_path / "inv.csv"
    path.write_text(
        "InvoiceNo,StockCode,InvoiceDate,CustomerID,Sales\n"
        "536365,85123A,2010-12-01 08:26,17850,5.00\n"
        "536365,71053,2010-12-01 08:26,17850,5.00\n"
        "536365,71053,2010-12-01 08:26,17850,5.00\n"
    )
    from ltvcast.ingest.single import ingest

    result = ingest(path, {"customer_id": "CustomerID", "timestamp": "InvoiceDate", "amount": "Sales", "order_id": "InvoiceNo"})
    assert result.stats.rows_kept == 2
    assert result.stats.duplicates_dropped == 1
    assert result.transactions["amount"].sum() == 10.0


def test_placeholder_dates_are_quarantined_not_purchases(tmp_path):
    from ltvcast.ingest.single import ingest

    path = tmp_path / "ph.csv"
    path.write_text("customer_id,timestamp,amount\n1,0001-01-01,5\n1,9999-12-31,5\n1,2024-01-02,5\n")
    result = ingest(path)
    assert result.stats.quarantined == {"bad_timestamp": 2}
    assert result.quarantine["source_row"].tolist() == [1, 2]
    assert result.observation_end == pd.Timestamp("2024-01-02", tz="UTC")


# --- issue 11: counts that add up, an exclusion rule ---------------------------------------------


def test_exclusion_rule_in_the_mapping_validates_and_round_trips(tmp_path):
    from ltvcast.ingest.mapping import ColumnMapping, mapping_from_dict, parse_exclude_option

    assert parse_exclude_option("product_id=POST, M,DOT,M") == {"product_id": ("POST", "M", "DOT")}
    m = mapping_from_dict({"customer_id": "C", "exclude": {"product_id": ["POST", 101], "channel": "test"}})
    assert m.exclude == {"product_id": ("POST", "101"), "channel": ("test",)}
    assert m.to_dict()["exclude"] == {"product_id": ["POST", "101"], "channel": ["test"]}
    assert "exclude" not in ColumnMapping().to_dict()
    merged = m.updated(exclude={"channel": ["a"]})
    assert merged.exclude == {"product_id": ("POST", "101"), "channel": ("a",)}
    for bad in ({"exclude": ["POST"]}, {"exclude": {"product_id": []}}, {"exclude": {"product_id": [None]}}):
        with pytest.raises(DataError, match="exclude"):
            mapping_from_dict(bad, origin="m.yaml")
    for text in ("product_id", "=POST", "product_id="):
        with pytest.raises(DataError, match="column=value"):
            parse_exclude_option(text)


def test_ingest_counts_add_up_with_exclusions_duplicates_and_normalised_ids(tmp_path):
    src = tmp_path / "r.csv"
    src.write_text(
        "order,sku,cust,date,amount\n"
        "1,A,17850.0,2020-01-01,10\n"   # kept, id normalised
        "1,A,17850.0,2020-01-01,10\n"   # duplicate of row 1 (same order line content): dropped
        "2,POST,17850.0,2020-01-02,5\n"  # excluded
        "3,B,12.0,nope,5\n"              # quarantined (bad timestamp), id float-spelled
        "4,B,13047,2020-01-03,0\n"       # kept, zero-value sale
        "5,B,13047,2020-01-04,-2\n"      # kept, a return (not a zero-value sale)
    )
    mapping = {"customer_id": "cust", "timestamp": "date", "amount": "amount", "order_id": "order", "product_id": "sku"}
    from ltvcast.ingest.mapping import ColumnMapping

    result = ingest(src, ColumnMapping(fields=mapping, exclude={"product_id": ("POST",)}))
    s = result.stats
    assert (s.rows_read, s.rows_kept, s.rows_quarantined, s.duplicates_dropped, s.rows_excluded) == (6, 3, 1, 1, 1)
    assert s.rows_read == s.rows_kept + s.rows_quarantined + s.duplicates_dropped + s.rows_excluded
    assert s.excluded == {"product_id=POST": 1}
    # only the kept row 1 counts: not its dropped duplicate, the excluded row 3 nor the quarantined row 4
    assert s.ids_normalised == 1 and s.ids_normalised_by_column["customer_id"] == 1
    assert s.ids_normalised <= s.rows_kept
    assert s.zero_value_sales == 1
    assert list(result.quarantine["source_row"]) == [4]  # data row numbers survive the exclusion
    with pytest.raises(DataError, match="every readable row"):
        ingest(src, ColumnMapping(fields=mapping, exclude={"product_id": ("A", "POST", "B")}))
