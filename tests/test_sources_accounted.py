"""Issue 11 in multi-source ingest: malformed CSV rows quarantined (bad_row) while the rest of
the file is read, and ``exclude:`` rules in sources.yaml counted. Hand-written files, values by hand."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import duckdb
import pytest

from ltvcast.errors import DataError
from ltvcast.ingest.config import config_from_dict, load_config
from ltvcast.ingest.multisource import ingest_sources
from ltvcast.store import Store

ORDERS = (
    "order_id,customer_id,timestamp,amount\n"
    "A1,c1,2024-01-05,10\n"
    "A2,c2,2024-01-06,20,oops\n"  # data row 2: one field too many
    'A3,c1,"2024-01-07,5\n'  # data row 3: a quote that never closes
    "A4,c2,2024-01-08,7.5\n"
)
ITEMS = (
    "order_id,line,product_id,amount,email\n"
    "A1,1,P1,8,a@x.org\n"
    "A1,2,POST,2,a@x.org\n"
    "A4,1,P2,7.5,b@x.org\n"
    "A4,2,M,0,b@x.org\n"
    "A4,3,POST,1,b@x.org,extra\n"  # malformed (and POST): malformed wins, it is quarantined
)


def write(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "orders.csv").write_text(ORDERS)
    (root / "items.csv").write_text(ITEMS)
    (root / "sources.yaml").write_text(
        "shop: {currency: EUR}\n"
        "sources:\n"
        "  - {kind: orders, path: orders.csv}\n"
        "  - kind: order_items\n"
        "    path: items.csv\n"
        "    exclude: {product_id: [POST, M, DOT]}\n"
    )
    return root / "sources.yaml"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("accounted")
    config = write(root / "shop")
    db = root / "s.duckdb"
    with Store.open(db) as store:
        result = ingest_sources(load_config(config), store)
    return result, db


def sql(db: Path, query: str):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_malformed_rows_are_quarantined_and_the_rest_is_read(run):
    result, db = run
    orders, items = result.sources
    c = orders.counts
    assert (c.rows_read, c.rows_kept, c.quarantined, c.duplicates_dropped, c.rows_excluded) == (4, 2, {"bad_row": 2}, 0, 0)
    assert sql(db, "SELECT order_id FROM orders ORDER BY 1") == [("A1",), ("A4",)]
    rows = sql(db, "SELECT source_row, reason, raw_value, raw_row FROM quarantine WHERE kind = 'orders' ORDER BY 1")
    assert [(r, why) for r, why, _, _ in rows] == [(2, "bad_row"), (3, "bad_row")]
    assert rows[0][2] == "line 3: expected 4 fields, saw 5"
    assert json.loads(rows[0][3]) == {"order_id": "A2", "customer_id": "c2", "timestamp": "2024-01-06",
                                      "amount": "20", "_extra_1": "oops"}
    assert rows[1][2].startswith("line 4: broken quoting")
    # the personal column (email) is dropped: not even the malformed row's raw record holds it
    raw_item = json.loads(sql(db, "SELECT raw_row FROM quarantine WHERE kind = 'order_items'")[0][0])
    assert "email" not in raw_item and raw_item["order_id"] == "A4" and raw_item["_extra_1"] == "extra"
    assert result.quarantined == {"bad_row": 3}


def test_exclude_rule_rows_are_counted_not_lost(run):
    result, db = run
    c = result.sources[1].counts
    assert (c.rows_read, c.rows_kept, c.quarantined, c.rows_excluded) == (5, 2, {"bad_row": 1}, 2)
    assert c.excluded == {"product_id=POST": 1, "product_id=M": 1}
    assert c.rows_read == c.rows_kept + c.rows_quarantined + c.duplicates_dropped + c.rows_excluded
    assert sql(db, "SELECT order_id, line, amount FROM order_items ORDER BY 1, 2") == [
        ("A1", 1, D("8.0000")), ("A4", 1, D("7.5000")),
    ]
    assert sql(db, "SELECT count(*) FROM quarantine WHERE reason = 'excluded'") == [(0,)]
    logged = json.loads(sql(db, "SELECT mapping FROM ingest_log WHERE kind = 'order_items'")[0][0])
    assert logged["_excluded"] == {"product_id=POST": 1, "product_id=M": 1}


def test_exclude_is_validated_like_the_rest_of_the_config(tmp_path):
    def config(exclude):
        return config_from_dict({"shop": {"currency": "EUR"},
                                 "sources": [{"kind": "orders", "path": "o.csv", "exclude": exclude}]}, tmp_path)

    assert config({"channel": "test"}).sources[0].exclude == {"channel": ("test",)}
    with pytest.raises(DataError, match=r"sources\[0\] \(orders\): exclude must map a column"):
        config(["POST"])
    with pytest.raises(DataError, match="exclude product_id must list the values"):
        config({"product_id": []})
    root = tmp_path / "shop"
    path = write(root)
    path.write_text(path.read_text().replace("{product_id: [POST, M, DOT]}", "{sku: [POST]}"))
    with Store.open(tmp_path / "x.duckdb") as store, pytest.raises(DataError, match="exclude names column 'sku'"):
        ingest_sources(load_config(path), store)


def test_cli_shows_excluded_column_and_rules(tmp_path):
    from typer.testing import CliRunner

    from ltvcast.cli import app

    config = write(tmp_path / "shop")
    out = CliRunner().invoke(app, ["ingest", "--config", str(config), "--db", str(tmp_path / "s.duckdb")])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "excluded" in text and "bad_row" in text
    assert "rows excluded by the exclude rule in items.csv: product_id=POST: 1, product_id=M: 1" in text
