"""sources.yaml: parsing, defaults, environment variables, and clear errors."""

from __future__ import annotations

import pytest

from ltvcast.errors import DataError
from ltvcast.ingest.config import (
    DEFAULT_PERSONAL_COLUMNS,
    config_from_dict,
    expand_env,
    load_config,
)

BASE = {"shop": {"currency": "EUR"}, "sources": [{"kind": "orders", "path": "o.csv"}]}


def cfg(**changes):
    data = {"shop": dict(BASE["shop"]), "sources": [dict(s) for s in BASE["sources"]]}
    for key, value in changes.items():
        if key == "shop":
            data["shop"].update(value)
        else:
            data["sources"][0][key] = value
    return config_from_dict(data, base="/data/shop", environ={})


def test_defaults_and_relative_paths():
    config = cfg()
    shop = config.shop
    assert (shop.currency, shop.timezone, shop.revenue_basis, shop.pseudonymise_ids) == ("EUR", "UTC", "net", False)
    assert shop.personal_columns == DEFAULT_PERSONAL_COLUMNS and "email" in shop.personal_columns
    assert shop.allow_personal == () and shop.id_key_env == "LTVCAST_ID_KEY"
    source = config.sources[0]
    assert source.path == "/data/shop/o.csv" and source.format == "csv"
    assert source.cancellation_prefix is None and source.currency is None and source.timezone is None
    glob = cfg(path="exports/*.jsonl").sources[0]
    assert glob.path == "/data/shop/exports/*.jsonl" and glob.format is None  # decided per file
    assert cfg(path="/abs/orders.xlsx").sources[0].format == "excel"
    assert cfg(path="o.txt", format="ndjson").sources[0].format == "jsonl"


def test_load_config_from_file_with_env_url(tmp_path, monkeypatch):
    (tmp_path / "sources.yaml").write_text(
        "shop:\n  currency: usd\n  timezone: America/New_York\n  revenue_basis: gross\n  data_end: 2024-06-30\n"
        "sources:\n"
        "  - kind: customers\n    url: ${PGURL}\n    table: crm.customers\n"
        "  - kind: events\n    url: postgresql://shop@${PGHOST:-localhost}/shop\n    query: select * from ev\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("PGURL", "postgresql://u:secret@db:5432/shop")
    monkeypatch.delenv("PGHOST", raising=False)
    config = load_config(tmp_path / "sources.yaml")
    assert config.path == (tmp_path / "sources.yaml").resolve()
    assert config.shop.currency == "USD" and config.shop.revenue_basis == "gross"
    assert config.shop.data_end == "2024-06-30"
    first, second = config.sources
    assert (first.url, first.table, first.query, first.format) == ("postgresql://u:secret@db:5432/shop", "crm.customers", None, "sql")
    assert second.url == "postgresql://shop@localhost/shop" and second.query == "select * from ev"


def test_expand_env():
    env = {"A": "1", "EMPTY": ""}
    assert expand_env({"x": ["${A}-${A}", 3, {"y": "${EMPTY:-d}${MISSING:-z}"}]}, environ=env) == {"x": ["1-1", 3, {"y": "z"}]}
    with pytest.raises(DataError, match=r"s.yaml: environment variable PGURL is not set \(used as \$\{PGURL\}\)"):
        expand_env("url: ${PGURL}", "s.yaml", environ={})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"shop": {"currency": "euro"}}, "currency must be a 3-letter ISO code"),
        ({"shop": {"timezone": "Mars/Olympus"}}, "'Mars/Olympus' is not a known IANA time zone"),
        ({"shop": {"revenue_basis": "profit"}}, "revenue_basis must be net or gross"),
        ({"shop": {"colour": "red"}}, "unknown key\\(s\\) in shop: colour"),
        ({"shop": {"pseudonymise_ids": "yes"}}, "pseudonymise_ids must be true or false"),
        ({"kind": "invoices"}, "kind must be one of orders, order_items, returns, events, customers, products, fx_rates"),
        ({"url": "sqlite:///x.db"}, "give exactly one of path .* and url"),
        ({"table": "t"}, "table needs url"),
        ({"format": "xml"}, "unknown format 'xml'"),
        ({"mapping": {"client": "Kunde"}}, "unknown field 'client' in mapping for orders"),
        ({"event_types": {"pv": "view"}}, "event_types applies to events sources only"),
        ({"invert": True}, "invert applies to fx_rates sources only"),
        ({"timezone": "CET+1"}, "sources\\[0\\] \\(orders\\): timezone 'CET\\+1' is not a known"),
        ({"colour": "red"}, "sources\\[0\\]: unknown key\\(s\\) colour"),
    ],
)
def test_invalid_configs_are_clear_errors(changes, message):
    with pytest.raises(DataError, match=message):
        cfg(**changes)


def test_structure_errors():
    with pytest.raises(DataError, match="shop.currency is required"):
        config_from_dict({"shop": {}, "sources": BASE["sources"]}, environ={})
    with pytest.raises(DataError, match="'sources:' must be a non-empty list"):
        config_from_dict({"shop": {"currency": "EUR"}, "sources": []}, environ={})
    with pytest.raises(DataError, match="needs exactly one of table and query"):
        config_from_dict({"shop": {"currency": "EUR"}, "sources": [{"kind": "orders", "url": "sqlite://"}]}, environ={})
    with pytest.raises(DataError, match="unknown top-level key"):
        config_from_dict({**BASE, "extra": 1}, environ={})


def test_customers_may_map_extra_attributes():
    data = {"shop": {"currency": "EUR"}, "sources": [{"kind": "customers", "path": "c.csv",
                                                      "mapping": {"customer_id": "Id", "segment": "Seg"}}]}
    assert config_from_dict(data, environ={}).sources[0].mapping == {"customer_id": "Id", "segment": "Seg"}
    data["sources"][0]["mapping"] = {"Segment Name": "Seg"}
    with pytest.raises(DataError, match="extra attributes as lower-case names"):
        config_from_dict(data, environ={})


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(DataError, match="cannot read config .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("shop: [unclosed\n")
    with pytest.raises(DataError, match="bad.yaml is not valid YAML"):
        load_config(bad)
