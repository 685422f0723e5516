"""The shop simulator: determinism, files and contract, integrity, dirty rows, and the planted signals."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from ltvcast.cli import app
from ltvcast.errors import LtvcastError
from ltvcast.ingest.parse import parse_timestamps
from ltvcast.simulate import read_dirty_manifest, read_kind, read_truth, simulate_shop
from ltvcast.simulate.process import BRANDS, CHANNELS, TIERS
from ltvcast.simulate.writer import CHUNKED_KINDS, KINDS, SCHEMAS

SMALL = {"customers": 1500, "months": 24, "seed": 11, "dirty_rate": 0.02, "chunk_customers": 500}
MEDIUM = {"customers": 20_000, "months": 24, "seed": 5, "chunk_customers": 10_000}
END = pd.Timestamp("2024-01-01", tz="UTC")
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    return simulate_shop(out, **SMALL)


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    out = tmp_path_factory.mktemp("medium")
    summary = simulate_shop(out, **MEDIUM)
    orders = read_kind(out, "orders")
    orders["ts"] = pd.to_datetime(orders["CreatedAt"], format="%Y-%m-%d %H:%M:%S", errors="coerce", utc=True)
    events = read_kind(out, "events")
    return summary, orders, events, read_truth(out)


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _clean_orders(out: Path) -> pd.DataFrame:
    orders = read_kind(out, "orders")
    orders["ts"] = pd.to_datetime(orders["CreatedAt"], format="%Y-%m-%d %H:%M:%S", errors="coerce", utc=True)
    return orders[orders["ts"].notna() & orders["Currency"].isin(["EUR", "USD", "GBP"])]


# ---------------------------------------------------------------- determinism, files, contract


def test_same_seed_gives_byte_identical_files(small, tmp_path):
    again = simulate_shop(tmp_path / "again", **SMALL)
    first = _digests(small.out_dir)
    assert _digests(again.out_dir) == first
    assert len(first) == 5 * 3 + 2 + 5  # chunked kinds x parts, products, fx, yaml/truth/calendar/manifest/rows
    other = simulate_shop(tmp_path / "other", **{**SMALL, "seed": 12})
    assert not read_kind(other.out_dir, "orders").equals(read_kind(small.out_dir, "orders"))
    assert not read_truth(other.out_dir).equals(read_truth(small.out_dir))
    # the catalogue and calendar come from the seed too
    assert not read_kind(other.out_dir, "products").equals(read_kind(small.out_dir, "products"))


def test_clean_data_do_not_depend_on_the_dirty_rate_and_full_chunks_are_stable(small, tmp_path):
    clean = simulate_shop(tmp_path / "clean", **{**SMALL, "dirty_rate": 0.0})
    for kind in ("customers", "events", "products", "fx_rates"):
        for a, b in zip(small.parts[kind], clean.parts[kind]):
            assert a.read_bytes() == b.read_bytes(), kind
    assert read_truth(small.out_dir).equals(read_truth(clean.out_dir))
    dirty_orders = read_kind(small.out_dir, "orders")
    clean_orders = read_kind(clean.out_dir, "orders")
    differs = (dirty_orders != clean_orders).any(axis=1)
    assert int(differs.sum()) == small.dirty["orders"]["bad_timestamp"] + small.dirty["orders"]["unknown_currency"]
    items = read_kind(small.out_dir, "order_items").drop_duplicates().reset_index(drop=True)
    assert items.equals(read_kind(clean.out_dir, "order_items"))
    dirty_ids = set(dirty_orders.loc[differs, "OrderID"])
    keys = ["OrderID", "LineNo", "ReturnedAt", "Qty", "RefundAmount"]
    kept = read_kind(clean.out_dir, "returns")
    kept = kept.loc[~kept["OrderID"].isin(dirty_ids), keys].reset_index(drop=True)
    assert read_kind(small.out_dir, "returns")[keys].equals(kept)
    # fewer customers, same chunk size: the full chunks are the same files
    fewer = simulate_shop(tmp_path / "fewer", **{**SMALL, "customers": 1000})
    for kind in CHUNKED_KINDS:
        assert len(fewer.parts[kind]) == 2
        for a, b in zip(small.parts[kind], fewer.parts[kind]):
            assert a.read_bytes() == b.read_bytes(), kind


def test_summary_counts_match_the_files(small):
    for kind in KINDS:
        files = sorted((small.out_dir / kind).glob("*.parquet"))
        assert tuple(files) == small.parts[kind]
        assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == small.rows[kind], kind
    assert small.rows["customers"] == SMALL["customers"]
    assert small.order_lines == small.rows["order_items"]
    assert len(read_truth(small.out_dir)) == SMALL["customers"]
    events = read_kind(small.out_dir, "events")
    assert events["SessionID"].nunique() <= small.sessions


def test_chunk_size_is_honoured_one_part_per_chunk(small):
    chunks = math.ceil(SMALL["customers"] / SMALL["chunk_customers"])
    assert small.chunks == chunks == 3
    for kind in CHUNKED_KINDS:
        names = [p.name for p in small.parts[kind]]
        assert names == [f"part-{i:04d}.parquet" for i in range(chunks)], kind
    for kind in ("products", "fx_rates"):
        assert [p.name for p in small.parts[kind]] == ["part-0000.parquet"]
    # part i holds chunk i's customers and only their orders and events
    for i in range(chunks):
        cust = pq.read_table(small.parts["customers"][i]).to_pandas()
        assert len(cust) == SMALL["chunk_customers"]
        ids = set(cust["CustomerRef"])
        assert set(pq.read_table(small.parts["orders"][i]).to_pandas()["CustomerRef"]) <= ids
        assert set(pq.read_table(small.parts["events"][i]).to_pandas()["CustomerRef"]) <= ids


def test_every_kind_has_its_source_schema_and_sources_yaml_maps_it(small):
    for kind in KINDS:
        for part in small.parts[kind]:
            assert pq.read_schema(part).remove_metadata() == SCHEMAS[kind], (kind, part)
    config = yaml.safe_load(small.sources_yaml.read_text())
    assert config["shop"]["currency"] == "EUR"
    assert config["shop"]["timezone"] == "UTC"  # the simulated calendar (promo days, seasons) is UTC
    assert [s["kind"] for s in config["sources"]] == list(KINDS)
    canonical = {  # docs/multisource.md, canonical tables
        "customers": {"customer_id", "signup_at", "acquisition_channel", "region", "country"},
        "products": {"product_id", "category", "brand", "list_price"},
        "orders": {"order_id", "customer_id", "timestamp", "channel", "currency"},
        "order_items": {"order_id", "line", "product_id", "quantity", "unit_price", "discount"},
        "returns": {"return_id", "order_id", "line", "customer_id", "timestamp", "quantity", "amount"},
        "events": {"event_id", "customer_id", "session_id", "timestamp", "event_type", "product_id"},
        "fx_rates": {"day", "currency", "rate"},
    }
    for source in config["sources"]:
        kind = source["kind"]
        assert source["format"] == "parquet"
        matched = sorted(small.sources_yaml.parent.glob(source["path"]))  # relative to the YAML
        assert tuple(matched) == small.parts[kind]
        mapping = source["mapping"]
        assert canonical[kind] <= set(mapping), kind
        assert set(mapping.values()) <= set(SCHEMAS[kind].names), kind
        # source names are not the canonical names: the mapping is exercised
        assert all(src != can for can, src in mapping.items()), kind
    orders = next(s for s in config["sources"] if s["kind"] == "orders")
    assert orders["timezone"] == "UTC"
    listed = " ".join(s["path"] for s in config["sources"])
    assert "truth" not in listed and "dirty" not in listed


def test_customers_carry_personal_columns_for_the_ingest_to_drop(small):
    customers = read_kind(small.out_dir, "customers", canonical=True)
    assert customers["Email"].str.fullmatch(r"[a-z]+\.[a-z]+\d+@[a-z.]+").all()
    assert customers["Name"].str.contains(" ").all()
    assert customers["customer_id"].is_unique
    assert set(customers["acquisition_channel"]) == {c[0] for c in CHANNELS}
    # named like the contract's default shop.personal_columns (email, name, ...) and not
    # mapped, so the ingest drops them by default (mapping them would ask to store them)
    config = yaml.safe_load(small.sources_yaml.read_text())
    mapping = next(s for s in config["sources"] if s["kind"] == "customers")["mapping"]
    assert not {"Email", "Name"} & set(mapping.values())
    assert "personal_columns" not in config["shop"] and "allow_personal" not in config["shop"]


def test_tiny_chunks_write_no_empty_parts(tmp_path):
    summary = simulate_shop(tmp_path / "tiny", customers=40, months=2, seed=3, chunk_customers=5)
    assert len(summary.parts["customers"]) == 8
    for kind in KINDS:
        for part in summary.parts[kind]:
            assert pq.ParquetFile(part).metadata.num_rows > 0, part
        assert tuple(sorted((summary.out_dir / kind).glob("*.parquet"))) == summary.parts[kind]
    assert len(summary.parts["returns"]) < 8  # some chunks had no returns and wrote no part


# ---------------------------------------------------------------- integrity of the clean rows


def test_referential_integrity_of_clean_rows(small):
    out = small.out_dir
    customers = read_kind(out, "customers")
    products = read_kind(out, "products")
    orders = _clean_orders(out)
    all_orders = read_kind(out, "orders")
    items = read_kind(out, "order_items").drop_duplicates()
    returns = read_kind(out, "returns")
    events = read_kind(out, "events")
    fx = read_kind(out, "fx_rates")

    signup = customers.set_index("CustomerRef")["RegisteredAt"]
    assert set(all_orders["CustomerRef"]) <= set(customers["CustomerRef"])
    assert all_orders["OrderID"].is_unique
    assert (orders["ts"] >= signup.reindex(orders["CustomerRef"]).to_numpy()).all()
    assert (orders["ts"] < END).all()
    # items: every item's order exists, every order has items, lines are 1..n
    assert set(items["OrderID"]) == set(all_orders["OrderID"])
    assert not items.duplicated(["OrderID", "LineNo"]).any()
    n_lines = items.groupby("OrderID")["LineNo"].agg(["max", "size"])
    assert (n_lines["max"] == n_lines["size"]).all()
    assert set(items["SKU"]) <= set(products["SKU"])
    assert (items["Qty"] >= 1).all() and (items["UnitPrice"] > 0).all()
    assert ((items["Discount"] >= 0) & (items["Discount"] < items["Qty"] * items["UnitPrice"])).all()
    # returns reference existing clean order lines, come after the order, never exceed the line
    assert returns["ReturnID"].is_unique
    assert not returns.duplicated(["OrderID", "LineNo"]).any()
    ret = returns.merge(items, on=["OrderID", "LineNo"], how="left", suffixes=("", "_line"), validate="1:1")
    assert ret["Qty_line"].notna().all()
    ret = ret.merge(orders[["OrderID", "CustomerRef", "ts"]], on="OrderID", how="left", suffixes=("", "_order"))
    assert ret["ts"].notna().all(), "a return points at a dirty or missing order"
    assert (ret["CustomerRef"] == ret["CustomerRef_order"]).all()
    assert (ret["ReturnedAt"] > ret["ts"] + DAY).all() and (ret["ReturnedAt"] < END).all()
    assert (ret["Qty"] >= 1).all() and (ret["Qty"] <= ret["Qty_line"]).all()
    net = (ret["Qty_line"] * ret["UnitPrice"] - ret["Discount"]).round(2)
    assert (ret["RefundAmount"] > 0).all() and (ret["RefundAmount"] <= net + 1e-9).all()
    full = ret["Qty"] == ret["Qty_line"]
    assert np.allclose(ret.loc[full, "RefundAmount"], net[full])
    # events: known customers and products, valid types, product null only at session start
    assert set(events["CustomerRef"]) <= set(customers["CustomerRef"])
    assert events["EventID"].is_unique
    assert set(events["EventType"]) == {"session_start", "view", "add_to_cart", "purchase"}
    assert (events["SKU"].isna() == (events["EventType"] == "session_start")).all()
    assert set(events["SKU"].dropna()) <= set(products["SKU"])
    assert (events["EventTime"] >= signup.reindex(events["CustomerRef"]).to_numpy()).all()
    assert (events["EventTime"] < END).all()
    starts = events[events["EventType"] == "session_start"]
    assert starts["SessionID"].is_unique
    assert set(events["SessionID"]) == set(starts["SessionID"])
    first = events.groupby("SessionID")["EventTime"].min()
    assert (starts.set_index("SessionID")["EventTime"].reindex(first.index) == first).all()
    # one purchase event per order line, at the order's time
    purchases = events[events["EventType"] == "purchase"]
    assert len(purchases) == len(items)
    # visitors: customers who browse but never bought exist
    assert len(set(events["CustomerRef"]) - set(all_orders["CustomerRef"])) > 0
    # fx: a rate every day of the period for USD and GBP, none for the unknown currency
    assert len(fx) == 2 * (END - pd.Timestamp("2022-01-01", tz="UTC")).days
    assert set(fx["CurrencyCode"]) == {"USD", "GBP"}
    assert fx.groupby("CurrencyCode")["RateDate"].nunique().eq(730).all()


def test_prices_follow_list_price_fx_and_promotions(small):
    out = small.out_dir
    orders = _clean_orders(out)
    items = read_kind(out, "order_items").drop_duplicates().merge(orders, on="OrderID")
    items = items.merge(read_kind(out, "products"), on="SKU")
    items["day"] = items["ts"].dt.tz_convert(None).dt.normalize()
    fx = read_kind(out, "fx_rates")
    fx["day"] = pd.to_datetime(fx["RateDate"])
    items = items.merge(fx, left_on=["day", "Currency"], right_on=["day", "CurrencyCode"], how="left")
    items["rate"] = items["EURPerUnit"].fillna(1.0)
    assert set(items["Currency"]) == {"EUR", "USD", "GBP"}
    assert np.allclose(items["UnitPrice"], (items["ListPriceEUR"] / items["rate"]).round(2))
    calendar = pq.read_table(small.truth_calendar).to_pandas()
    calendar["day"] = pd.to_datetime(calendar["day"])
    items = items.merge(calendar, on="day")
    discounted = items["Discount"] > 0
    assert discounted.any()
    assert (items.loc[discounted, "promo_discount"] > 0).all()
    d = items[discounted]
    assert np.allclose(d["Discount"], (d["Qty"] * d["UnitPrice"] * d["promo_discount"]).round(2))


def test_some_orders_are_returned_in_full_and_net_to_zero(medium):
    summary = medium[0]
    items = read_kind(summary.out_dir, "order_items").drop_duplicates()
    returns = read_kind(summary.out_dir, "returns")
    line_net = (items["Qty"] * items["UnitPrice"] - items["Discount"]).round(2)
    gross = line_net.groupby(items["OrderID"]).sum().round(2)
    refunded = returns.groupby("OrderID")["RefundAmount"].sum().round(2)
    n_lines = items.groupby("OrderID").size()
    full = refunded[(refunded == gross.reindex(refunded.index)) & (n_lines.reindex(refunded.index) > 1)]
    assert len(full) > 20  # multi-line orders returned entirely
    share = len(returns) / len(items)
    assert 0.05 < share < 0.2  # ~10 % of lines come back


# ---------------------------------------------------------------- dirty rows


def test_dirty_manifest_counts_equal_what_is_in_the_files(small):
    out = small.out_dir
    manifest = read_dirty_manifest(out)
    listed = pq.read_table(small.dirty_rows).to_pandas()
    counts = manifest["counts"]
    assert counts == small.dirty
    assert manifest["total"] == len(listed) > 0
    assert all(n > 0 for reasons in counts.values() for n in reasons.values())

    # bad timestamps: exactly the rows the foundation's parser cannot read
    orders = read_kind(out, "orders")
    parsed = parse_timestamps(orders["CreatedAt"])
    assert int(parsed.isna().sum()) == counts["orders"]["bad_timestamp"]
    # unknown currency: a code without fx rate
    fx_codes = set(read_kind(out, "fx_rates")["CurrencyCode"]) | {"EUR"}
    unknown = ~orders["Currency"].isin(fx_codes)
    assert int(unknown.sum()) == counts["orders"]["unknown_currency"]
    assert set(orders.loc[unknown, "Currency"]) == {manifest["unknown_currency_code"]}
    assert not (unknown & parsed.isna()).any()  # disjoint
    # export duplicates: exact copies of an order line
    items = read_kind(out, "order_items")
    assert int(items.duplicated().sum()) == counts["order_items"]["duplicate_line"]
    assert int(items.duplicated(["OrderID", "LineNo"]).sum()) == counts["order_items"]["duplicate_line"]

    # dirty_rows.parquet names each row by file and 1-based data row
    for (kind, file), rows in listed.groupby(["kind", "file"]):
        frame = pq.read_table(out / file).to_pandas()
        for _, row in rows.iterrows():
            record = frame.iloc[row["row"] - 1]
            assert record["OrderID"] == row["order_id"]
            if row["reason"] == "bad_timestamp":
                assert record["CreatedAt"] == row["raw_value"]
            elif row["reason"] == "unknown_currency":
                assert record["Currency"] == row["raw_value"] == "CHF"
            else:
                assert record["LineNo"] == row["line"]
                assert frame.iloc[row["row"] - 2].equals(record)  # right after its original
    # dirty orders get no returns; their items are counted
    dirty_ids = set(listed.loc[listed["kind"] == "orders", "order_id"])
    assert not set(read_kind(out, "returns")["OrderID"]) & dirty_ids
    assert manifest["order_items_of_dirty_orders"] == int(items.drop_duplicates()["OrderID"].isin(dirty_ids).sum())


def test_dirty_rate_zero_writes_no_dirty_rows(tmp_path):
    summary = simulate_shop(tmp_path / "clean", customers=400, months=6, seed=2, dirty_rate=0.0)
    assert summary.dirty_total == 0
    assert read_dirty_manifest(summary.out_dir)["total"] == 0
    assert pq.read_table(summary.dirty_rows).num_rows == 0
    assert parse_timestamps(read_kind(summary.out_dir, "orders")["CreatedAt"]).notna().all()


# ---------------------------------------------------------------- planted signals and truth


def test_truth_matches_generation(medium):
    _, orders, events, truth = medium
    t = truth.set_index("customer_id")
    clean = orders[orders["ts"].notna()]
    # nothing after dropout: every order (and event) precedes the customer's dropout time
    assert (clean["ts"] <= t["dropout_at"].reindex(clean["CustomerRef"]).to_numpy()).all()
    assert (events["EventTime"] <= t["dropout_at"].reindex(events["CustomerRef"]).to_numpy()).all()
    dropped = t[~t["alive_at_end"]]
    assert len(dropped) > 1000 and (dropped["dropout_at"] < END).all()
    assert (t.loc[t["alive_at_end"], "dropout_at"] >= END).all()
    # orders written per customer
    written = orders.groupby("CustomerRef").size().reindex(t.index, fill_value=0)
    assert (written == t["n_orders"]).all()
    # first orders at signup are placed 5-40 minutes after it
    first = clean.groupby("CustomerRef")["ts"].min()
    at_signup = t.index[t["bought_at_signup"]].intersection(first.index)
    lag = first[at_signup] - t.loc[at_signup, "signup_at"]
    assert ((lag >= pd.Timedelta(minutes=5)) & (lag <= pd.Timedelta(minutes=40))).mean() > 0.99
    # channels differ in value: paid_social churns faster, referral buys more (latent and observed)
    by = t.groupby("acquisition_channel")
    assert by["dropout_rate"].mean()["paid_social"] > 1.8 * by["dropout_rate"].mean()["organic_search"]
    assert by["purchase_rate"].mean()["referral"] > 1.2 * by["purchase_rate"].mean()["organic_search"]
    per_customer = written.groupby(t["acquisition_channel"]).mean()
    assert per_customer["referral"] > 1.5 * per_customer["paid_social"]


def test_brand_loyalty_shapes_spend(medium):
    summary, orders, _, truth = medium
    items = read_kind(summary.out_dir, "order_items").drop_duplicates()
    items = items.merge(orders[["OrderID", "CustomerRef"]], on="OrderID")
    items = items.merge(read_kind(summary.out_dir, "products"), on="SKU")
    items = items.merge(truth[["customer_id", "favourite_brand", "brand_loyalty"]], left_on="CustomerRef",
                        right_on="customer_id")
    loyal = items[items["favourite_brand"].notna()]
    share_fav = (loyal["Brand"] == loyal["favourite_brand"]).mean()
    assert share_fav > 0.5  # loyalty ~ Beta(4, 2), mean 0.67
    premium = loyal["favourite_brand"].isin(BRANDS["premium"])
    budget = loyal["favourite_brand"].isin(BRANDS["budget"])
    assert loyal.loc[premium, "ListPriceEUR"].mean() > 2.0 * loyal.loc[budget, "ListPriceEUR"].mean()
    assert TIERS == ("budget", "standard", "premium")


def test_q4_peak(medium):
    """Orders per day in Q4 2022 against the mean of Q3 2022 and Q1 2023.

    The customer base grows over the period (signups, then dropout), so a raw
    Q4 share would be inflated by the trend; the two neighbouring quarters
    average a linear trend away. Without seasonality the ratio is ~1; the
    process's month factors give (1.05 + 1.45 + ~1.6) / ((0.88+0.88+1.0 +
    0.85+0.85+0.95) / 2) ~ 1.5 plus Black Friday: 1.3 leaves a wide margin for
    noise (~8,000 orders in the quarter: ~1 %).
    """
    _, orders, _, _ = medium
    ts = orders["ts"].dropna()

    def per_day(a: str, b: str) -> float:
        lo, hi = pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC")
        return ((ts >= lo) & (ts < hi)).sum() / (hi - lo).days

    q4 = per_day("2022-10-01", "2023-01-01")
    neighbours = (per_day("2022-07-01", "2022-10-01") + per_day("2023-01-01", "2023-04-01")) / 2
    assert q4 / neighbours > 1.3
    # and the plain Q4 share over both years exceeds the flat 92/365
    q4_share = ts.dt.month.isin([10, 11, 12]).mean()
    assert q4_share > 92 / 365 + 0.1


def _window_counts(cust: np.ndarray, t_ms: np.ndarray, q_cust: np.ndarray, q_ms: np.ndarray, days: int):
    """Events of the same customer in [q − days, q) for each query (customer codes < 2**20)."""
    scale = np.int64(2**42)  # ms in the period < 2**42 relative to the start
    key = np.sort(cust.astype(np.int64) * scale + t_ms)
    hi = q_cust.astype(np.int64) * scale + q_ms
    return np.searchsorted(key, hi) - np.searchsorted(key, hi - days * 86_400_000)


def test_browsing_rises_before_purchases_and_carries_information(medium):
    """Browsing (outside purchase sessions) is denser in the 30 days before a purchase.

    Research sessions (Poisson(0.8 b/b̄) per order, ~6 days ahead) sit on top of
    the background browsing; the ratio to the customer's average 30-day rate
    is ~1.5 on this sample (the average includes the pre-purchase windows
    themselves). 1.25 is a margin of several standard errors on ~40,000 orders.
    """
    _, orders, events, truth = medium
    start_ms = pd.Timestamp("2022-01-01", tz="UTC").value // 1_000_000
    codes = pd.Index(truth["customer_id"])
    purchase_sessions = events.loc[events["EventType"] == "purchase", "SessionID"].unique()
    browse = events[~events["SessionID"].isin(purchase_sessions)]
    b_cust = codes.get_indexer(browse["CustomerRef"])
    b_ms = browse["EventTime"].dt.as_unit("ms").astype("int64").to_numpy() - start_ms
    signup = truth["signup_at"]
    end = np.minimum(truth["dropout_at"], END)
    span_days = ((end - signup).dt.total_seconds() / 86400).to_numpy()
    per_30 = np.bincount(b_cust, minlength=len(codes)) / np.maximum(span_days, 1.0) * 30

    clean = orders[orders["ts"].notna()]
    o_cust = codes.get_indexer(clean["CustomerRef"])
    o_ms = clean["ts"].dt.as_unit("ms").astype("int64").to_numpy() - start_ms
    # orders at least 30 days after signup, so the window is fully observed
    full_window = o_ms - (signup.dt.as_unit("ms").astype("int64").to_numpy()[o_cust] - start_ms) > 30 * 86_400_000
    before = _window_counts(b_cust, b_ms, o_cust[full_window], o_ms[full_window], 30)
    ratio = before.mean() / per_30[o_cust[full_window]].mean()
    assert ratio > 1.25

    # browse intensity is correlated with the purchase rate (a second measurement of it)
    rho = pd.Series(truth["browse_intensity"]).rank().corr(pd.Series(truth["purchase_rate"]).rank())
    assert rho > 0.5

    # beyond RFM: customers with the same history (one order before the cutoff, signed up in
    # 2022) buy far more often in the next 90 days if they browsed in the last 30 days
    cutoff = pd.Timestamp("2023-07-01", tz="UTC")
    before_cut = clean[clean["ts"] < cutoff].groupby("CustomerRef").size()
    one = before_cut.index[before_cut == 1]
    one = one[truth.set_index("customer_id").loc[one, "signup_at"] < pd.Timestamp("2023-01-01", tz="UTC")]
    recent = browse[(browse["EventTime"] < cutoff) & (browse["EventTime"] >= cutoff - 30 * DAY)]
    browsed = one.isin(recent["CustomerRef"])
    next_90 = clean[(clean["ts"] >= cutoff) & (clean["ts"] < cutoff + 90 * DAY)]["CustomerRef"]
    bought = one.isin(next_90)
    assert browsed.sum() > 100 and (~browsed).sum() > 1000
    assert bought[browsed].mean() > 2.0 * bought[~browsed].mean()


# ---------------------------------------------------------------- API and CLI


def test_arguments_are_checked(tmp_path):
    with pytest.raises(LtvcastError, match="customers"):
        simulate_shop(tmp_path / "a", customers=0, months=12)
    with pytest.raises(LtvcastError, match="dirty_rate"):
        simulate_shop(tmp_path / "a", customers=10, months=12, dirty_rate=0.9)
    with pytest.raises(LtvcastError, match="start"):
        simulate_shop(tmp_path / "a", customers=10, months=12, start="not a date")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(LtvcastError, match="not empty"):
        simulate_shop(foreign, customers=10, months=12)
    with pytest.raises(LtvcastError, match="refusing"):
        simulate_shop(foreign, customers=10, months=12, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_cli_simulate_writes_a_shop_and_refuses_to_clobber(tmp_path):
    runner = CliRunner()
    out = tmp_path / "shop"
    args = ["simulate", "--customers", "300", "--months", "6", "--seed", "4", "--out", str(out),
            "--chunk-customers", "100", "--dirty-rate", "0.01", "--start", "2023-03-01"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "order lines" in result.output and "events" in result.output
    assert (out / "sources.yaml").exists() and (out / "truth.parquet").exists()
    assert len(list((out / "orders").glob("part-*.parquet"))) == 3
    ts = pd.to_datetime(read_kind(out, "orders")["CreatedAt"], errors="coerce")
    assert ts.min() >= pd.Timestamp("2023-03-01") and ts.max() < pd.Timestamp("2023-09-01")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "not empty" in result.output
    result = runner.invoke(app, [*args, "--overwrite", "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert read_dirty_manifest(out)["seed"] == 5


def test_browsing_fades_before_dropout(medium):
    """Over the 30 days before dropout the fade averages (15/45) = 1/3 of the earlier level.

    Counted for customers who dropped out at least 120 days after signup and
    before the end, browse events (outside purchase sessions) in the 30 days
    before dropout against the 30 days from 90 to 60 days before it.
    Background browsing alone would give ~1/3; research sessions (tied to
    orders, which do not fade) lift the late window: 0.55-0.63 over seeds 5-9,
    and 0.7 leaves room for noise.
    """
    _, _, events, truth = medium
    t = truth.set_index("customer_id")
    gone = t[(~t["alive_at_end"]) & (t["dropout_at"] - t["signup_at"] > 120 * DAY)]
    assert len(gone) > 500
    purchase_sessions = events.loc[events["EventType"] == "purchase", "SessionID"].unique()
    browse = events[~events["SessionID"].isin(purchase_sessions) & events["CustomerRef"].isin(gone.index)]
    before = gone["dropout_at"].reindex(browse["CustomerRef"]).to_numpy() - browse["EventTime"].to_numpy()
    late = ((before > pd.Timedelta(0)) & (before <= 30 * DAY)).sum()
    early = ((before > 60 * DAY) & (before <= 90 * DAY)).sum()
    assert early > 1000
    assert late / early < 0.7
