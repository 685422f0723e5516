"""Issue 11, part 1: every row and signal a multi-source shop sends is kept or accounted for.

A small generated shop (CSV files + sources.yaml, written by :func:`write_shop`)
with repeated identical lines under distinct string line ids, unknown event
types (email_open, search), a fraction discount column and extra columns
(promo_name, return_reason, campaign_id). Expected values by hand.
"""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ltvcast.errors import DataError
from ltvcast.features import build
from ltvcast.ingest.config import load_config
from ltvcast.ingest.kinds import resolve_fields
from ltvcast.ingest.multisource import ingest_sources
from ltvcast.ingest.staging import TEXT_LINE_BASE, line_numbers
from ltvcast.store import Store


def write_shop(root: Path, n_customers: int = 3) -> Path:
    """Write a multi-source shop: customers, orders, order_items, returns, events (CSV) and sources.yaml.

    Customers c1..cN; c1's order O1 holds two identical lines (P1, 1 x 10.00, 10 % off) under
    distinct ids L0000000137 / L0000000138, plus an exact re-export of L0000000137; O2 one line of
    2 x 25.00 at 40 % off. Events: view, email_open (twice), search, purchase.
    """
    root.mkdir(parents=True, exist_ok=True)
    ids = [f"c{i}" for i in range(1, n_customers + 1)]
    pd.DataFrame({"customer_id": ids, "region": ["north"] * n_customers, "age_band": ["25-34"] * n_customers}).to_csv(
        root / "customers.csv", index=False)
    pd.DataFrame({
        "order_id": ["O1", "O2"], "customer_id": ["c1", "c2"],
        "created": ["2024-03-01 10:00", "2024-03-02 10:00"], "total": ["18.00", "30.00"],
        "promo_name": ["spring", ""], "session_id": ["s1", "s2"],
    }).to_csv(root / "orders.csv", index=False)
    pd.DataFrame({
        "order_item_id": ["L0000000137", "L0000000138", "L0000000137", "L0000000200"],
        "order_id": ["O1", "O1", "O1", "O2"], "product_id": ["P1", "P1", "P1", "P2"],
        "quantity": ["1", "1", "1", "2"], "unit_price": ["10.00", "10.00", "10.00", "25.00"],
        "discount": ["0.1", "0.1", "0.1", "0.4"], "campaign_id": ["k1", "k1", "k1", ""],
    }).to_csv(root / "order_items.csv", index=False)
    pd.DataFrame({
        "return_id": ["R1"], "order_id": ["O2"], "customer_id": ["c2"], "timestamp": ["2024-03-05 12:00"],
        "amount": ["15.00"], "return_reason": ["too small"],
    }).to_csv(root / "returns.csv", index=False)
    pd.DataFrame({
        "event_id": ["e1", "e2", "e3", "e4", "e5", "e6"],
        "customer_id": ["c1", "c1", "c1", "c2", "c1", "c1"],
        "timestamp": ["2024-02-20 09:00", "2024-02-25 09:00", "2024-02-26 09:00", "2024-02-27 09:00",
                      "2024-03-01 09:55", "2024-02-10 08:00"],
        "event_type": ["view", "email_open", "Search", "email-open", "purchase", "email_open"],
        "campaign_id": ["", "k1", "", "k2", "", "k0"],
    }).to_csv(root / "events.csv", index=False)
    (root / "sources.yaml").write_text(
        "shop: {currency: EUR, timezone: UTC}\n"
        "sources:\n"
        "  - {kind: customers, path: customers.csv}\n"
        "  - {kind: orders, path: orders.csv, mapping: {timestamp: created, amount: total}}\n"
        "  - kind: order_items\n"
        "    path: order_items.csv\n"
        "    mapping: {line: order_item_id, discount_rate: discount}\n"
        "  - {kind: returns, path: returns.csv}\n"
        "  - {kind: events, path: events.csv}\n",
        encoding="utf-8",
    )
    return root / "sources.yaml"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("open")
    config = write_shop(root / "shop")
    db = root / "shop.duckdb"
    with Store.open(db) as store:
        result = ingest_sources(load_config(config), store)
    return result, db


def sql(db: Path, query: str):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_unknown_event_types_are_stored_not_quarantined(shop):
    result, db = shop
    events = next(r for r in result.sources if r.kind == "events")
    assert (events.counts.rows_read, events.counts.rows_kept, events.counts.quarantined) == (6, 6, {})
    assert sql(db, "SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 1") == [
        ("email_open", 3), ("purchase", 1), ("search", 1), ("view", 1),
    ]


def test_unknown_event_types_get_generic_counts_and_recency(shop):
    _, db = shop
    con = duckdb.connect(str(db), read_only=True)
    try:
        fs = build(con, "2024-03-01", population="all", windows=(7, 30))
    finally:
        con.close()
    rows = fs.customers.set_index("customer_id")
    # before 2024-03-01: c1 has email_open 02-10 and 02-25, search 02-26 (others), view 02-20; c2 email-open 02-27
    assert rows.loc["c1", "other_events"] == 3 and rows.loc["c1", "views"] == 1
    assert rows.loc["c1", "other_events_7d"] == 2 and rows.loc["c1", "other_events_30d"] == 3
    assert rows.loc["c1", "days_since_last_other_event"] == 4.0  # 03-01 - 02-26
    assert rows.loc["c2", "other_events"] == 1 and rows.loc["c2", "days_since_last_other_event"] == 3.0
    assert rows.loc["c1", "purchase_events"] == 0  # 03-01 09:55 is not before the cutoff


def test_distinct_line_ids_are_distinct_lines_and_a_repeated_id_a_duplicate(shop):
    result, db = shop
    items = next(r for r in result.sources if r.kind == "order_items")
    c = items.counts
    assert (c.rows_read, c.rows_kept, c.quarantined, c.duplicates_dropped) == (4, 3, {}, 1)
    lines = sql(db, "SELECT order_id, line, amount, discount FROM order_items ORDER BY order_id, line")
    assert [(o, a, d) for o, _, a, d in lines] == [
        ("O1", D("9.0000"), D("1.0000")), ("O1", D("9.0000"), D("1.0000")), ("O2", D("30.0000"), D("20.0000")),
    ]
    assert len({line for _, line, _, _ in lines[:2]}) == 2 and all(line >= TEXT_LINE_BASE for _, line, _, _ in lines)
    # the stated totals equal the sum of the kept lines: nothing was lost
    assert sql(db, "SELECT order_id, stated_amount, gross_amount FROM orders ORDER BY 1") == [
        ("O1", D("18.0000"), D("18.0000")), ("O2", D("30.0000"), D("30.0000")),
    ]


def test_line_numbers_stable_and_whole_numbers_kept():
    got = line_numbers(pd.Series(["3", "L0000000137", " L0000000137 ", "L0000000138", None, "4.0"], dtype=object))
    assert got.iloc[0] == 3 and got.iloc[5] == 4 and pd.isna(got.iloc[4])
    assert got.iloc[1] == got.iloc[2] != got.iloc[3]
    assert got.iloc[1] >= TEXT_LINE_BASE and got.iloc[3] >= TEXT_LINE_BASE


def test_discount_is_never_matched_by_name_and_rate_must_be_a_fraction(tmp_path):
    # a column named "discount" is not read unless mapped: the fraction is not taken as money
    cols = resolve_fields("order_items", ["order_id", "quantity", "unit_price", "discount"], {}, "x.csv")
    assert "discount" not in cols
    assert resolve_fields("order_items", ["order_id", "amount", "discount"], {"discount": "discount"}, "x")[
        "discount"] == "discount"
    with pytest.raises(DataError, match="not both"):
        resolve_fields("order_items", ["order_id", "amount", "d", "r"], {"discount": "d", "discount_rate": "r"}, "x")
    root = tmp_path / "shop"
    config = write_shop(root)
    frame = pd.read_csv(root / "order_items.csv", dtype=str, keep_default_na=False)
    frame.loc[3, "discount"] = "1.5"
    frame.to_csv(root / "order_items.csv", index=False)
    with Store.open(tmp_path / "s.duckdb") as store:
        result = ingest_sources(load_config(config), store)
    items = next(r for r in result.sources if r.kind == "order_items")
    assert items.counts.quarantined == {"bad_discount": 1}
    # O2 lost its only line, so its stated total counts
    assert sql(tmp_path / "s.duckdb", "SELECT gross_amount FROM orders WHERE order_id = 'O2'") == [(D("30.0000"),)]


def test_extra_columns_are_kept_as_attributes_or_named_as_ignored(shop):
    result, db = shop
    kept = {r.kind: list(r.attributes) for r in result.sources if r.attributes}
    ignored = {r.kind: list(r.ignored) for r in result.sources if r.ignored}
    assert kept == {"customers": ["age_band"], "orders": ["promo_name", "session_id"], "order_items": ["campaign_id"],
                    "returns": ["return_reason"], "events": ["campaign_id"]}
    assert ignored == {}
    mapping = {kind: json.loads(m) for kind, m in sql(db, "SELECT kind, mapping FROM ingest_log")}
    assert {k: m["_attributes"] for k, m in mapping.items() if "_attributes" in m} == kept
    assert {k: m["_ignored"] for k, m in mapping.items() if m["_ignored"]} == ignored
    assert mapping["order_items"]["line"] == "order_item_id"


def test_attributes_round_trip(shop):
    _, db = shop
    # every value comes back as written; an empty value is left out, a row without any is NULL
    assert sql(db, "SELECT order_id, attributes FROM orders ORDER BY 1") == [
        ("O1", '{"promo_name": "spring", "session_id": "s1"}'), ("O2", '{"session_id": "s2"}'),
    ]
    assert [json.loads(a) if a else a for (a,) in sql(db, "SELECT attributes FROM order_items ORDER BY order_id, line")] == [
        {"campaign_id": "k1"}, {"campaign_id": "k1"}, None,
    ]
    assert sql(db, "SELECT customer_id, attributes->>'age_band' FROM customers ORDER BY 1") == [
        ("c1", "25-34"), ("c2", "25-34"), ("c3", "25-34"),
    ]
    raw = pd.read_csv(Path(db).parent / "shop" / "orders.csv", dtype=str, keep_default_na=False)
    back = {o: json.loads(a) for o, a in sql(db, "SELECT order_id, attributes FROM orders")}
    for _, row in raw.iterrows():
        assert back[row["order_id"]] == {c: row[c] for c in ("promo_name", "session_id") if row[c]}


def test_cli_names_ignored_columns(tmp_path):
    from typer.testing import CliRunner

    from ltvcast.cli import app

    config = write_shop(tmp_path / "shop")
    out = CliRunner().invoke(app, ["ingest", "--config", str(config), "--db", str(tmp_path / "s.duckdb")])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "columns kept as JSON in attributes (no canonical field) in returns.csv: return_reason" in text
    assert "columns kept as JSON in attributes (no canonical field) in orders.csv: promo_name, session_id" in text


def test_cli_reports_progress_as_log_lines_when_not_a_terminal(tmp_path):
    import re

    from typer.testing import CliRunner

    from ltvcast.cli import app

    config = write_shop(tmp_path / "shop")
    out = CliRunner().invoke(app, ["ingest", "--config", str(config), "--db", str(tmp_path / "s.duckdb")])
    assert out.exit_code == 0, out.output
    lines = [line for line in out.output.splitlines() if re.match(r"\d\d:\d\d:\d\d \[\d+/8\] ", line)]
    assert len(lines) == 8  # 5 sources read, resolving, writing, rebuilding
    assert "reading events:" in lines[4] and lines[-1].endswith("rebuilding transactions and order totals")


def test_online_api_accepts_any_event_type_spelled_as_the_ingest_stores_it():
    from pydantic import ValidationError

    from ltvcast.ingest.staging import normalise_event_type
    from ltvcast.serve.events import EVENT_ADAPTER, event_json

    def browse(event_type):
        return EVENT_ADAPTER.validate_python({"type": "browse", "id": "e1", "customer_id": "c1",
                                              "timestamp": "2024-03-01T10:00:00Z", "event_type": event_type})

    sent = [" Email-Open ", "search", "add to  cart", "view"]
    got = [browse(t).event_type for t in sent]
    assert got == ["email_open", "search", "add_to_cart", "view"]
    assert got == normalise_event_type(pd.Series(sent), {}).tolist()
    # the canonical JSON holds the stored spelling: a resend spelled otherwise is the same event
    assert event_json(browse("Email-Open")) == event_json(browse("email_open"))
    for bad in ("", "   ", "x" * 257):
        with pytest.raises(ValidationError):
            browse(bad)
