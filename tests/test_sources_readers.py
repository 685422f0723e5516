"""JSON lines and Excel readers, local time zones with DST, personal columns and pseudonyms."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from ltvcast.errors import DataError
from ltvcast.ingest.parse import localize_naive, parse_timestamps
from ltvcast.ingest.privacy import (
    drop_personal_columns,
    id_key,
    personal_columns_in,
    pseudonymise,
)
from ltvcast.ingest.readers import (
    SOURCE_FORMATS,
    detect_format,
    read_table,
    values_to_text,
)


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# -- JSON lines ---------------------------------------------------------------
def test_jsonl_keeps_number_spelling_and_ids(tmp_path):
    path = tmp_path / "o.jsonl"
    path.write_text(
        '{"id": "00012", "n": 17850.0, "amount": 19.90, "big": 12345678901234567890, "ok": true, "x": null}\n'
        "\n"
        '{"id": 7, "amount": 1e3, "tags": ["a", "b"], "extra": {"k": 1}}\n',
        encoding="utf-8",
    )
    raw = read_table(path, formats=SOURCE_FORMATS)
    assert raw.format == "jsonl" and raw.encoding == "utf-8"
    frame = raw.frame
    assert list(frame.columns) == ["id", "n", "amount", "big", "ok", "x", "tags", "extra"]
    assert frame.iloc[0].tolist() == ["00012", "17850.0", "19.90", "12345678901234567890", "true", "", "", ""]
    assert frame.iloc[1].tolist() == ["7", "", "1e3", "", "", "", '["a", "b"]', '{"k": 1}']


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1}\n{"a": 2,\n', r"cannot parse .*bad.jsonl as jsonl: line 2"),
        ('{"a": 1}\n\n[1, 2]\n', r"line 3 is not a JSON object"),
        ("\n\n", r"bad.jsonl is empty"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_table(path, formats=SOURCE_FORMATS)


def test_single_file_path_still_refuses_new_formats():
    assert detect_format("a.jsonl", formats=SOURCE_FORMATS) == "jsonl"
    assert detect_format("a.xlsx", formats=SOURCE_FORMATS) == "excel"
    with pytest.raises(DataError, match="cannot tell the format of a.xlsx"):
        detect_format("a.xlsx")


# -- Excel --------------------------------------------------------------------
def test_excel_text_numbers_dates_and_sheets(tmp_path):
    path = tmp_path / "c.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        pd.DataFrame({"a": [1]}).to_excel(writer, sheet_name="notes", index=False)
        pd.DataFrame(
            {
                "Customer": ["00012", "17850", None],
                "Amount": [19.9, 3, None],
                "At": [pd.Timestamp("2024-03-01 10:00"), pd.Timestamp("2024-03-02"), None],
            }
        ).to_excel(writer, sheet_name="orders", index=False)
    raw = read_table(path, sheet="orders", formats=SOURCE_FORMATS)
    frame = raw.frame
    assert raw.format == "excel" and len(frame) == 2  # the empty row is skipped
    assert frame["Customer"].tolist() == ["00012", "17850"]
    assert frame["Amount"].tolist() == ["19.9", "3"]
    assert pd.api.types.is_datetime64_any_dtype(frame["At"])
    assert frame["At"].tolist() == [pd.Timestamp("2024-03-01 10:00"), pd.Timestamp("2024-03-02")]
    assert read_table(path, formats=SOURCE_FORMATS).frame.columns.tolist() == ["a"]  # first sheet
    with pytest.raises(DataError, match="sheet 'missing' not found"):
        read_table(path, sheet="missing", formats=SOURCE_FORMATS)
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="cannot read .*broken.xlsx as excel"):
        read_table(broken, formats=SOURCE_FORMATS)


def test_values_to_text():
    values = pd.Series([Decimal("19.90"), 17850.0, True, None, b"x", 3], dtype=object)
    assert values_to_text(values).tolist() == ["19.90", "17850.0", "true", "", "x", "3"]
    dates = values_to_text(pd.Series([dt.datetime(2024, 1, 1, 10), None], dtype=object))
    assert pd.api.types.is_datetime64_any_dtype(dates)


# -- time zones ---------------------------------------------------------------
def test_naive_times_take_the_source_zone_with_dst():
    text = pd.Series(
        [
            "2024-03-31 01:30",  # CET (+1)
            "2024-03-31 02:30",  # skipped hour: read with the offset before the change
            "2024-03-31 03:30",  # CEST (+2)
            "2024-10-27 02:30",  # repeated hour: the first occurrence (CEST)
            "2024-10-27 03:30",  # CET
            "2024-03-01",  # a date alone is local midnight
            "2024-03-01T10:00:00+05:30",  # an explicit offset wins
            "2024-03-01T10:00:00Z",
            "",
        ]
    )
    got = parse_timestamps(text, tz="Europe/Berlin")
    assert got.tolist()[:8] == [
        utc("2024-03-31 00:30"),
        utc("2024-03-31 01:30"),
        utc("2024-03-31 01:30"),
        utc("2024-10-27 00:30"),
        utc("2024-10-27 02:30"),
        utc("2024-02-29 23:00"),
        utc("2024-03-01 04:30"),
        utc("2024-03-01 10:00"),
    ]
    assert pd.isna(got.iloc[8])
    # the same texts without a zone argument are UTC (the foundation's rule)
    assert parse_timestamps(text.iloc[:1]).tolist() == [utc("2024-03-31 01:30")]


def test_localize_naive_matches_zoneinfo():
    from zoneinfo import ZoneInfo

    wall = pd.Series(pd.to_datetime(["2024-03-10 02:30", "2024-11-03 01:30", "2024-06-01 12:00", None]))
    got = localize_naive(wall, "America/New_York")
    zone = ZoneInfo("America/New_York")
    for value, ts in zip(got.iloc[:3], wall.iloc[:3]):
        assert value == pd.Timestamp(ts.to_pydatetime().replace(tzinfo=zone)).tz_convert("UTC")
    assert pd.isna(got.iloc[3])
    aware_parquet = pd.Series(pd.to_datetime(["2024-06-01 12:00"]).tz_localize("Asia/Tokyo"))
    assert parse_timestamps(aware_parquet, tz="Europe/Berlin").tolist() == [utc("2024-06-01 03:00")]
    naive_parquet = pd.Series(pd.to_datetime(["2024-06-01 12:00"]))
    assert parse_timestamps(naive_parquet, tz="Europe/Berlin").tolist() == [utc("2024-06-01 10:00")]


# -- privacy ------------------------------------------------------------------
def test_personal_columns_match_ignoring_case_and_punctuation():
    columns = ["E-Mail", "FirstName", "first_name ", "product_name", "Name", "IP", "Phone Number", "Street"]
    personal = ["email", "name", "first_name", "ip", "street"]
    assert personal_columns_in(columns, personal) == ["E-Mail", "FirstName", "first_name ", "Name", "IP", "Street"]
    assert personal_columns_in(columns, personal, allowed=["street", "IP"]) == ["E-Mail", "FirstName", "first_name ", "Name"]
    frame = pd.DataFrame({c: ["x"] for c in ["id", "Email", "Name"]})
    kept, dropped = drop_personal_columns(frame, personal, keep=["Email"])
    assert list(kept.columns) == ["id", "Email"] and dropped == ["Name"]


def test_pseudonyms_are_keyed_hmac_sha256():
    ids = pd.Series(["17850", None, "00012", "17850"], dtype=object)
    got = pseudonymise(ids, b"secret")
    expected = hmac.new(b"secret", b"17850", hashlib.sha256).hexdigest()[:32]
    assert got.iloc[0] == expected == got.iloc[3]
    assert pd.isna(got.iloc[1]) and got.iloc[2] != expected and len(got.iloc[2]) == 32
    assert pseudonymise(ids, b"other").iloc[0] != expected
    assert id_key("K", {"K": "abc"}) == b"abc"
    with pytest.raises(DataError, match="environment variable LTVCAST_ID_KEY is not set"):
        id_key("LTVCAST_ID_KEY", {})
    assert np.all(pseudonymise(pd.Series([], dtype=object), b"k").index == [])


def test_decimal_comma_numbers():
    from ltvcast.ingest.parse import number_format, parse_numbers

    text = pd.Series(["1.234,56", "1234,56", "-3,5", "12", "1 234 567,8", "1.234.567", "1.5", "12,5,6", "", "NA"])
    with number_format(","):
        got = parse_numbers(text).tolist()
    assert got[:6] == [1234.56, 1234.56, -3.5, 12.0, 1234567.8, 1234567.0]
    assert all(np.isnan(v) for v in got[6:])  # "1.5" is not a grouping: unparseable, not 1.5
    assert parse_numbers(pd.Series(["1.5", "1.234,56"])).tolist()[0] == 1.5  # the default is unchanged
    assert np.isnan(parse_numbers(pd.Series(["1.234,56"]))[0])
    with pytest.raises(DataError, match="not a decimal mark"):
        with number_format(";"):
            pass


def test_decimal_comma_source_in_sources_yaml(tmp_path):
    import duckdb

    from ltvcast.ingest.config import load_config
    from ltvcast.ingest.multisource import ingest_sources
    from ltvcast.store import Store

    (tmp_path / "orders.csv").write_text(
        "order_id;customer_id;created;total\n"
        "O1;c1;2024-03-01 10:00;1.234,56\n"
        "O2;c2;2024-03-02 10:00;7,5\n",
        encoding="utf-8",
    )
    (tmp_path / "sources.yaml").write_text(
        "shop: {currency: EUR, timezone: UTC}\n"
        "sources:\n"
        '  - {kind: orders, path: orders.csv, decimal: ",", mapping: {timestamp: created, amount: total}}\n',
        encoding="utf-8",
    )
    config = load_config(tmp_path / "sources.yaml")
    assert config.sources[0].decimal == ","
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        ingest_sources(config, store)
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT order_id, CAST(stated_amount AS DOUBLE) FROM orders ORDER BY order_id").fetchall()
    finally:
        con.close()
    assert rows == [("O1", 1234.56), ("O2", 7.5)]
    (tmp_path / "bad.yaml").write_text(
        "shop: {currency: EUR, timezone: UTC}\nsources:\n  - {kind: orders, path: orders.csv, decimal: x}\n",
        encoding="utf-8")
    with pytest.raises(DataError, match="decimal 'x' is not a decimal mark"):
        load_config(tmp_path / "bad.yaml")
