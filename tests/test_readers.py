"""Readers (every column as text) and column mappings."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ltvcast.errors import DataError
from ltvcast.ingest.mapping import (
    ColumnMapping,
    load_mapping_file,
    mapping_from_dict,
    parse_map_option,
)
from ltvcast.ingest.readers import detect_format, read_table
from ltvcast.ingest.single import ingest

DATA = Path(__file__).parent / "data" / "ingest"


# -- formats ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.csv", "csv"),
        ("a.CSV", "csv"),
        ("a.csv.gz", "csv"),
        ("a.txt", "whitespace"),
        ("a.dat", "whitespace"),
        ("a.tsv", "csv"),
        ("a.txt.gz", "whitespace"),
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
        ("dir.v2/a.csv", "csv"),
    ],
)
def test_detect_format_from_extension(name, expected):
    assert detect_format(name) == expected


def test_detect_format_override_and_errors():
    assert detect_format("export.xyz", "csv") == "csv"
    assert detect_format("export.csv", "txt") == "whitespace"
    assert detect_format("export.csv", "PQ") == "parquet"
    with pytest.raises(DataError, match="cannot tell the format of export.xlsx"):
        detect_format("export.xlsx")
    with pytest.raises(DataError, match="unknown format 'json'"):
        detect_format("export.csv", "json")
    with pytest.raises(DataError, match="compressed Parquet"):
        detect_format("a.parquet.gz")
    with pytest.raises(DataError, match="cannot tell the format"):
        detect_format("noextension")


# -- text readers -----------------------------------------------------------
def test_csv_read_as_text_keeps_leading_zeros_and_float_spellings():
    raw = read_table(DATA / "orders_renamed.csv")
    frame = raw.frame
    assert raw.format == "csv" and raw.encoding == "utf-8"
    assert list(frame.columns) == ["CustomerID", "InvoiceDate", "Sales", "InvoiceNo", "Country"]
    assert len(frame) == 12
    assert frame["CustomerID"].tolist()[:5] == ["00012", "17850.0", "17850.5", " 00012 ", ""]
    assert frame["Sales"].iloc[11] == "1,000.00"  # quoted field with a comma
    assert frame["Sales"].iloc[7] == ""  # empty stays empty text, not NaN
    assert all(pd.api.types.is_string_dtype(frame[c]) for c in frame.columns)
    assert list(frame.index) == list(range(12))


def test_headerless_whitespace_file_with_names_and_blank_line():
    raw = read_table(
        DATA / "cdnow_headerless.txt",
        has_header=False,
        columns=["master_id", "sample_id", "date", "number_of_cds", "dollar_value"],
    )
    frame = raw.frame
    assert raw.format == "whitespace"
    assert len(frame) == 5  # the blank line is skipped
    assert frame["master_id"].tolist() == ["00004", "00004", "00004", "00018", "00021"]
    assert frame["sample_id"].tolist()[:1] == ["0001"]
    assert frame["dollar_value"].tolist() == ["29.33", "29.73", "14.96", "26.48", "63.34"]


def test_headerless_without_names_gets_numbered_columns():
    raw = read_table(DATA / "cdnow_headerless.txt", has_header=False)
    assert list(raw.frame.columns) == [f"column_{i}" for i in range(1, 6)]
    assert raw.frame.iloc[0, 0] == "00004"


def test_gzip_text_file(tmp_path):
    target = tmp_path / "cdnow.txt.gz"
    target.write_bytes(gzip.compress((DATA / "cdnow_headerless.txt").read_bytes()))
    raw = read_table(target, has_header=False)
    assert raw.format == "whitespace"
    assert len(raw.frame) == 5
    assert raw.frame.iloc[4, 4] == "63.34"


def test_semicolon_csv_is_detected_from_header(tmp_path):
    target = tmp_path / "eu.csv"
    target.write_text("kunde;datum;betrag\n007;2020-01-01;12.5\n", encoding="utf-8")
    frame = read_table(target).frame
    assert list(frame.columns) == ["kunde", "datum", "betrag"]
    assert frame.iloc[0].tolist() == ["007", "2020-01-01", "12.5"]


def test_latin1_file_falls_back_and_bom_is_ignored(tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("customer_id,country\n1,Côte d'Ivoire\n".encode("latin-1"))
    raw = read_table(latin)
    assert raw.encoding == "latin-1"
    assert raw.frame["country"].iloc[0] == "Côte d'Ivoire"
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffcustomer_id,amount\n1,2\n".encode("utf-8"))
    raw = read_table(bom)
    assert raw.encoding == "utf-8"
    assert list(raw.frame.columns) == ["customer_id", "amount"]


def test_header_names_are_stripped(tmp_path):
    target = tmp_path / "spaces.csv"
    target.write_text(" customer_id , amount \n1,2\n", encoding="utf-8")
    assert list(read_table(target).frame.columns) == ["customer_id", "amount"]


def test_parquet_typed_columns_become_text(tmp_path):
    table = pa.table(
        {
            "cust_int": pa.array([12, None], pa.int64()),
            "cust_float": pa.array([17850.0, 17850.5]),
            "cust_str": pa.array(["00012", None]),
            "ts": pa.array([pd.Timestamp("2020-01-01 10:00"), None], pa.timestamp("us", tz="UTC")),
        }
    )
    target = tmp_path / "t.parquet"
    pq.write_table(table, target)
    raw = read_table(target)
    frame = raw.frame
    assert raw.format == "parquet" and raw.encoding is None
    assert frame["cust_int"].tolist() == ["12", ""]
    assert frame["cust_float"].tolist() == ["17850.0", "17850.5"]
    assert frame["cust_str"].tolist() == ["00012", ""]
    assert pd.api.types.is_datetime64_any_dtype(frame["ts"])


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "missing.csv", "file not found: .*missing.csv"),
        ("", "empty.csv", "empty.csv is empty"),
        ("a b c\n1 2 3\n4 5 6 7\n", "ragged.txt", r"cannot parse .*ragged.txt as whitespace: .*line 3"),
        ("not parquet at all", "bad.parquet", "cannot read .*bad.parquet as parquet"),
        (b"\x1f\x8bnot really gzip", "bad.csv.gz", "cannot read .*bad.csv.gz as csv"),
    ],
)
def test_unreadable_files_are_data_errors_naming_the_file(tmp_path, content, name, message):
    target = tmp_path / name
    if isinstance(content, str):
        target.write_text(content, encoding="utf-8")
    elif isinstance(content, bytes):
        target.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_table(target)


def test_directory_is_refused(tmp_path):
    folder = tmp_path / "export.csv"
    folder.mkdir()
    with pytest.raises(DataError, match="is a directory"):
        read_table(folder)


# -- mapping ----------------------------------------------------------------
def test_parse_map_option():
    assert parse_map_option("customer_id=CustomerID, amount = Sales ,timestamp=Invoice Date") == {
        "customer_id": "CustomerID",
        "amount": "Sales",
        "timestamp": "Invoice Date",
    }
    assert parse_map_option("") == {}
    with pytest.raises(DataError, match="'customer_id' is not canonical=source"):
        parse_map_option("customer_id")
    with pytest.raises(DataError, match="unknown canonical column.*customer"):
        parse_map_option("customer=CustomerID")


def test_mapping_rules():
    with pytest.raises(DataError, match="not both"):
        ColumnMapping(fields={"amount": "Sales", "unit_price": "UnitPrice"})
    base = ColumnMapping(fields={"customer_id": "id"}, dayfirst=True)
    merged = base.updated({"amount": "Sales"}, date_format="%Y")
    assert merged.fields == {"customer_id": "id", "amount": "Sales"}
    assert merged.dayfirst is True and merged.date_format == "%Y"
    assert ColumnMapping().header is True
    assert ColumnMapping(columns=("a",)).header is False
    assert ColumnMapping(columns=("a",), has_header=True).header is True


def test_load_mapping_file_with_options():
    mapping = load_mapping_file(DATA / "cdnow_headerless.yaml")
    assert mapping.fields == {
        "customer_id": "master_id",
        "timestamp": "date",
        "amount": "dollar_value",
        "quantity": "number_of_cds",
    }
    assert mapping.columns == ("master_id", "sample_id", "date", "number_of_cds", "dollar_value")
    assert mapping.header is False
    assert mapping.to_dict()["columns"] == list(mapping.columns)


def test_mapping_file_errors(tmp_path):
    with pytest.raises(DataError, match="cannot read mapping file .*nope.yaml"):
        load_mapping_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("customer_id: [unclosed\n", encoding="utf-8")
    with pytest.raises(DataError, match="bad.yaml is not valid YAML"):
        load_mapping_file(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- customer_id\n", encoding="utf-8")
    with pytest.raises(DataError, match="must be a flat mapping"):
        load_mapping_file(listy)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("customer: CustomerID\n", encoding="utf-8")
    with pytest.raises(DataError, match="unknown.yaml: unknown key 'customer'"):
        load_mapping_file(unknown)
    with pytest.raises(DataError, match="dayfirst must be true or false"):
        mapping_from_dict({"dayfirst": "yes"})
    # numbers are accepted as column names (YAML reads `amount: 3` as an int)
    assert mapping_from_dict({"amount": 3}).fields == {"amount": "3"}


def test_tsv_fields_may_hold_spaces(tmp_path):
    path = tmp_path / "shop.tsv"
    path.write_text("customer_id\ttimestamp\tamount\tproduct_id\n1\t2024-01-02 10:30\t6\tGreen Tea\n")
    result = ingest(path)
    assert result.stats.rows_kept == 1
    assert result.transactions["product_id"].iloc[0] == "Green Tea"
    assert result.transactions["timestamp"].iloc[0] == pd.Timestamp("2024-01-02 10:30", tz="UTC")


def test_malformed_csv_rows_are_set_aside_with_their_row_numbers(tmp_path):
    from ltvcast.ingest.readers import BadRow

    path = tmp_path / "ragged.csv"
    path.write_text(
        "customer_id,timestamp,amount\n"
        "c1,2024-01-01,10.5\n"  # data row 1
        "c2,2024-01-02,3,extra\n"  # row 2: 4 fields under a 3-field header
        'c3,"2024-01-03,7\n'  # row 3: a quote that never closes
        "\n"  # blank: not a row
        'c4,2024-01-04,"1,5"x\n'  # row 4: text after a closing quote
        'c5,2024-01-05,"multi\nline"\n'  # row 5: a quoted field over two lines is fine
        "c6,2024-01-06\n",  # row 6: short: an empty trailing field, as pandas reads it
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=r"data row 2 \(line 3\): expected 3 fields, saw 4.*2 more"):
        read_table(path)  # the default refuses the file, naming the first bad row
    raw = read_table(path, bad_rows="keep")
    assert raw.frame["customer_id"].tolist() == ["c1", "c5", "c6"]
    assert raw.frame.index.tolist() == [0, 4, 5]  # data row = index + 1, bad rows skipped
    assert raw.frame.loc[4, "amount"] == "multi\nline" and raw.frame.loc[5, "amount"] == ""
    assert [(b.row, b.line) for b in raw.bad_rows] == [(2, 3), (3, 4), (4, 6)]
    assert raw.bad_rows[0] == BadRow(2, 3, "expected 3 fields, saw 4", ("c2", "2024-01-02", "3", "extra"))
    assert all(b.problem.startswith("broken quoting") for b in raw.bad_rows[1:])
    good = tmp_path / "good.csv"  # a well-formed file takes the fast path, with no bad rows
    good.write_text("a,b\n1,2\n", encoding="utf-8")
    assert read_table(good, bad_rows="keep").bad_rows == ()
