"""Every feature family, hand-computed on the tiny shop of test_features_store.

Cutoff C = 2024-03-01 (UTC shop, net revenue basis). 2024 is a leap year.
Window starts: C-30 = 2024-01-31, C-90 = 2023-12-02, C-180 = 2023-09-03,
C-365 = 2023-03-02; trend window from C-360 = 2023-03-07.

Daily history (local day: sale rows / orders / items / sales / returned -> value).
Refunds are netted by order (features/sql/README.md, "Refunds"): the rows carry
order ids, so a refund of an earlier order counts on that order's day, and a day
whose sales those refunds bring to <= 0 is no purchase occasion (sale rows and
orders read 0 in h_daily; items and sales stay):
  A 2023-06-10  o1: P1 2x10.00 + P2 1x5.50-0.50  -> 2 rows, 1 order, 3 items, 25.00
    2023-12-20  o2: P3 1x40.00-4.00              -> 1, 1, 1, 36.00
                r1 (2024-02-20) returns o2 (36.00): counted here -> given back:
                                                 -> 0 rows, 0 orders, 1 item, 36 - 36 = 0.00
    2024-02-15  o3: P1 10.00 ; o4: P4 3x2.00     -> 2, 2, 4, 16.00
    (o5 2024-03-05, r2 2024-03-02: after the cutoff)
  B 2024-02-28 23:30 o6: P2 0.10 + P4 0.20       -> 2, 1, 2, 0.30
                r3 + r4 (2024-02-29) return all of o6: counted here -> given back:
                                                 -> 0 rows, 0 orders, 2 items, 0.30 - 0.30 = 0.00
                B has no purchase occasion: not a buyer (present in population 'all')
  C 2023-01-15  o7: P3 50.00 ; 2023-03-15 o8: P1 12.00 ;
    2023-09-10  o9: P1 2x12.00 + P3 50.00-5.00 (= 69.00)
  F 2024-01-05  o10: P4 8.00 (signs up 2024-03-20, after the cutoff)
  D no orders; signup 2024-01-10, session s4 on 2024-02-01 (view)
  E signs up, visits and buys after the cutoff: never present
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from test_features_store import tiny_shop, write_store

from ltvcast.features import build, feature_specs, feature_sql
from ltvcast.features.catalog import FAMILIES


@pytest.fixture(scope="module")
def fs_all(tmp_path_factory):
    con = write_store(tmp_path_factory.mktemp("fam") / "tiny.duckdb", tiny_shop())
    fs = build(con, "2024-03-01", population="all", period="W", lookback=4)
    con.close()
    return fs


@pytest.fixture(scope="module")
def rows(fs_all):
    return fs_all.customers.set_index("customer_id")


def check(rows, expected: dict[str, dict[str, object]]):
    for customer, values in expected.items():
        for name, want in values.items():
            got = rows.loc[customer, name]
            if want is None:
                assert pd.isna(got), (customer, name, got)
            elif isinstance(want, str):
                assert got == want, (customer, name, got)
            else:
                assert got == pytest.approx(want, rel=1e-12, abs=1e-12), (customer, name, got, want)


def test_population_and_order(tmp_path, fs_all):
    # buyers: a purchase occasion before the cutoff -> A, C, F (B's only order was refunded in full
    # before the cutoff, E buys after it, D never).
    con = write_store(tmp_path / "t.duckdb", tiny_shop())
    buyers = build(con, "2024-03-01")
    con.close()
    assert buyers.customers["customer_id"].tolist() == ["A", "C", "F"]
    # all: + B (a sale and its returns) and D (signup and events before the cutoff); E only after it.
    assert fs_all.customers["customer_id"].tolist() == ["A", "B", "C", "D", "F"]
    # Same features for the buyers either way.
    pd.testing.assert_frame_equal(
        buyers.customers, fs_all.customers[~fs_all.customers.customer_id.isin(["B", "D"])].reset_index(drop=True)
    )


def test_rfm(rows):
    check(rows, {
        # A: occasions 06-10, 02-15 (12-20 was given back by r1; before netting by order: 3 occasions,
        # monetary (36 + 16) / 2 = 26). recency 06-10 -> 02-15 = 250 d; C - 06-10 = 265 d, T = 264 d.
        # monetary: the one repeat occasion, 16. spend net 25 + (36 - 36) + 16 = 41, gross 77.
        "A": {"occasions": 2, "frequency": 1.0, "recency_days": 250.0, "recency": 250 / 7,
              "T_days": 264.0, "T": 264 / 7, "days_since_last_purchase": 15.0,
              "monetary_value": 16.0, "spend_total": 41.0, "gross_spend": 77.0,
              "unmatched_refunds": 0, "unmatched_refund_amount": 0.0},
        # B: 02-28 given back by r3 + r4 (before: one occasion, T 1 d): no occasion, BTYD NULL; net 0.
        "B": {"occasions": 0, "frequency": None, "recency": None, "T_days": None, "T": None,
              "days_since_last_purchase": None, "monetary_value": None, "spend_total": 0.0, "gross_spend": 0.3,
              "unmatched_refunds": 0},
        # C: 01-15 -> 03-15 = 59 d, -> 09-10 = 179 d: recency 238; C - 01-15 = 411, T 410;
        # C - 09-10 = 173. monetary (12 + 69) / 2 = 40.5.
        "C": {"occasions": 3, "frequency": 2.0, "recency_days": 238.0, "T_days": 410.0,
              "days_since_last_purchase": 173.0, "monetary_value": 40.5, "spend_total": 131.0},
        # F: 01-05, C - 01-05 = 56.
        "F": {"occasions": 1, "T_days": 55.0, "days_since_last_purchase": 56.0, "spend_total": 8.0},
        # D: no sale -> counts 0, BTYD NULL.
        "D": {"occasions": 0, "frequency": None, "recency": None, "T": None, "monetary_value": None,
              "days_since_last_purchase": None, "spend_total": 0.0},
    })


def test_inter_purchase_time(rows):
    check(rows, {
        # A: occasions 06-10 and 02-15 (12-20 given back): one gap of 250 d; std and cv need 2 gaps
        # (before netting by order: gaps 193 and 57, mean 125).
        "A": {"ipt_mean_days": 250.0, "ipt_std_days": None, "ipt_cv": None},
        # C gaps 59 and 179: mean 119, std 120 / sqrt(2).
        "C": {"ipt_mean_days": 119.0, "ipt_std_days": 120 / math.sqrt(2), "ipt_cv": 120 / math.sqrt(2) / 119},
        # one occasion: all NULL
        "B": {"ipt_mean_days": None, "ipt_std_days": None, "ipt_cv": None},
        "D": {"ipt_mean_days": None},
    })


def test_windows(rows):
    check(rows, {
        # A: 30d (>= 01-31): 02-15 (+16) -> 1 occasion, 16 (r1 on 02-20 counts on o2's day 12-20;
        #    before netting by order: 16 - 36 = -20). 90d (>= 12-02): + 12-20 (36 - 36 = 0, no
        #    occasion) -> 1, 16. 180d: same. 365d: + 06-10 -> 2, 41.
        "A": {"occasions_30d": 1, "spend_30d": 16.0, "occasions_90d": 1, "spend_90d": 16.0,
              "occasions_180d": 1, "spend_180d": 16.0, "occasions_365d": 2, "spend_365d": 41.0},
        # B: 02-28 given back (0.30 - 0.30): no occasion, spend 0.
        "B": {"occasions_30d": 0, "spend_30d": 0.0, "occasions_365d": 0, "spend_365d": 0.0},
        # C: 09-10 (69) is in 180d; 03-15 (12) also in 365d (>= 2023-03-02); 01-15 in none.
        "C": {"occasions_30d": 0, "spend_30d": 0.0, "occasions_90d": 0, "occasions_180d": 1,
              "spend_180d": 69.0, "occasions_365d": 2, "spend_365d": 81.0},
        # F: 01-05 is before 01-31, after 12-02.
        "F": {"occasions_30d": 0, "occasions_90d": 1, "spend_90d": 8.0},
        "D": {"occasions_365d": 0, "spend_365d": 0.0},
    })


def test_trend(rows):
    # block r = floor((C - day - 1) / 30), weight 11 - 2r, slope = sum(weight * spend) / 286.
    check(rows, {
        # A: 06-10 C-day 265 r 8 w -5 (25); 12-20 C-day 72 r 2 w 7 (36 - 36 = 0, r1 netted onto o2's day);
        #    02-15 r 0 w 11 (16): -125 + 0 + 176 = 51 (before netting by order: -93).
        #    last 180 d: 0 + 16 = 16; days C-360 .. C-181: 25 -> ratio 0.64.
        "A": {"spend_trend_slope": 51 / 286, "spend_recent_ratio": 0.64},
        # B: +0.30 and -0.30 on 02-28 in block 0 -> 0; no earlier spend -> NULL ratio.
        "B": {"spend_trend_slope": 0.0, "spend_recent_ratio": None},
        # C: 03-15 C-day 352 r 11 w -11 (12); 09-10 C-day 173 r 5 w 1 (69); 01-15 outside.
        #    -132 + 69 = -63; ratio 69 / 12.
        "C": {"spend_trend_slope": -63 / 286, "spend_recent_ratio": 69 / 12},
        # F: 01-05 C-day 56 r 1 w 9 -> 72.
        "F": {"spend_trend_slope": 72 / 286, "spend_recent_ratio": None},
        "D": {"spend_trend_slope": 0.0, "spend_recent_ratio": None},
    })


def test_tenure(rows):
    check(rows, {
        # A: first sale 06-10 -> 265; earliest activity = signup 2023-05-01 -> 305.
        "A": {"tenure_days": 265.0, "days_since_first_activity": 305.0},
        # B: no signup time; its only sale day 02-28 was given back (no occasion): tenure NULL;
        #    first activity 02-28 (the returns count on o6's day).
        "B": {"tenure_days": None, "days_since_first_activity": 2.0},
        # C: first sale 2023-01-15 -> 411; signup 2022-12-01 -> 456.
        "C": {"tenure_days": 411.0, "days_since_first_activity": 456.0},
        # F: signup after the cutoff is not known: first sale 01-05 -> 56.
        "F": {"tenure_days": 56.0, "days_since_first_activity": 56.0},
        # D: signup 2024-01-10 -> 51 (event 02-01 is later); no sale.
        "D": {"tenure_days": None, "days_since_first_activity": 51.0},
    })


def test_basket(rows):
    check(rows, {
        # A: occasion days only (12-20, o2, was given back): o1, o3, o4 -> 3 orders, 2 + 2 = 4 rows,
        #    items 2+1 + 1+3 = 7, gross 25 + 16 = 41 (before netting by order: 4 orders, 8 items, 77).
        #    discount (h_items, every order before the cutoff) 0.50 + 4.00 = 4.50 of 77 + 4.50 = 81.50.
        #    products P1..P4; categories shoes, socks, hats; brands acme, bolt (P4 none).
        "A": {"orders": 3, "items_total": 7.0, "items_per_order": 7 / 3, "lines_per_order": 4 / 3,
              "order_value_mean": 41 / 3, "mean_unit_price": 41 / 7, "discount_share": 4.5 / 81.5,
              "distinct_products": 4, "distinct_categories": 3, "distinct_brands": 2},
        # B: no occasion -> no basket row: counts filled with 0, means NULL.
        "B": {"orders": 0, "items_total": 0.0, "order_value_mean": None, "mean_unit_price": None,
              "discount_share": None, "distinct_products": 0, "distinct_categories": 0, "distinct_brands": 0},
        # C: 3 orders, 4 rows, items 1+1+2+1 = 5, gross 131, discount 5 of 136.
        "C": {"orders": 3, "items_total": 5.0, "items_per_order": 5 / 3, "lines_per_order": 4 / 3,
              "order_value_mean": 131 / 3, "mean_unit_price": 131 / 5, "discount_share": 5 / 136,
              "distinct_products": 2, "distinct_categories": 1, "distinct_brands": 2},
        "F": {"orders": 1, "distinct_brands": 0},
        "D": {"orders": 0, "items_total": 0.0, "items_per_order": None, "discount_share": None,
              "distinct_products": 0},
    })


def test_brand_loyalty(rows):
    check(rows, {
        # A: acme 20 + 5 + 10 = 35, bolt 36 (P4 6.00 has no brand): top 36/71,
        #    HHI (35^2 + 36^2) / 71^2.
        "A": {"top_brand_share": 36 / 71, "brand_hhi": (35**2 + 36**2) / 71**2},
        "B": {"top_brand_share": 1.0, "brand_hhi": 1.0},
        # C: bolt 50 + 45 = 95, acme 12 + 24 = 36.
        "C": {"top_brand_share": 95 / 131, "brand_hhi": (95**2 + 36**2) / 131**2},
        # F: only unbranded sales -> NULL.
        "F": {"top_brand_share": None, "brand_hhi": None},
    })


def test_category_diversity(rows):
    def entropy(*v):
        total = sum(v)
        return -sum(x / total * math.log(x / total) for x in v)

    check(rows, {
        # A: shoes 20 + 36 + 10 = 66, socks 5, hats 6.
        "A": {"category_entropy": entropy(66, 5, 6), "top_category": "shoes"},
        # B: socks 0.10, hats 0.20 -> ln 3 - 2/3 ln 2.
        "B": {"category_entropy": math.log(3) - 2 / 3 * math.log(2), "top_category": "hats"},
        "C": {"category_entropy": 0.0, "top_category": "shoes"},
        "D": {"category_entropy": None, "top_category": None},
    })


def test_returns(rows):
    check(rows, {
        # A: r1 (36.00) counts; r2 is after the cutoff. Sale rows of occasions: 4 (o2's row is on a
        # given-back day; before netting by order 5, rate 0.2) -> 1 / 4; 36 of gross 77.
        "A": {"returns_count": 1, "returned_value": 36.0, "return_rate_lines": 0.25, "return_rate_value": 36 / 77},
        # B: no sale row of an occasion -> line rate NULL; 0.30 of 0.30.
        "B": {"returns_count": 2, "returned_value": 0.3, "return_rate_lines": None, "return_rate_value": 1.0},
        "C": {"returns_count": 0, "returned_value": 0.0, "return_rate_lines": 0.0, "return_rate_value": 0.0},
        "D": {"returns_count": 0, "return_rate_lines": None, "return_rate_value": None},
    })


def test_events(rows):
    check(rows, {
        # A: sessions s1 (02-10), s2 (02-15); s3 is after the cutoff. Views: e0 (2023-11-01,
        #    no session), 2 in s1, 1 in s2 = 4; carts 2; purchase 1.
        #    30d and 90d: the 3 views of s1/s2; 180d and 365d also e0.
        "A": {"sessions": 2, "views": 4, "add_to_carts": 2, "purchase_events": 1,
              "sessions_30d": 2, "views_30d": 3, "add_to_carts_30d": 2, "views_90d": 3,
              "views_180d": 4, "sessions_365d": 2, "view_to_cart_rate": 0.5,
              "cart_to_purchase_rate": 0.5, "days_since_last_visit": 15.0},
        # D: s4 on 02-01 (C - 29): 1 session, 1 view, no cart.
        "D": {"sessions": 1, "views": 1, "add_to_carts": 0, "sessions_30d": 1, "views_30d": 1,
              "view_to_cart_rate": 0.0, "cart_to_purchase_rate": None, "days_since_last_visit": 29.0},
        # no events: counts 0, rates and days NULL
        "C": {"sessions": 0, "views_365d": 0, "view_to_cart_rate": None, "cart_to_purchase_rate": None,
              "days_since_last_visit": None},
    })


def test_attributes(rows):
    check(rows, {
        # A: signup 2023-05-01 -> 305 days; first order o1 25.00 (shoes 20 > socks 5), web.
        "A": {"acquisition_channel": "search", "region": "north", "country": "DE", "signup_age_days": 305.0,
              "first_order_value": 25.0, "first_order_category": "shoes", "first_order_channel": "web"},
        # B: no signup time but a sale before the cutoff -> attributes known; o6: hats 0.20 > socks 0.10.
        "B": {"acquisition_channel": "social", "region": "south", "signup_age_days": None,
              "first_order_value": 0.3, "first_order_category": "hats", "first_order_channel": "app"},
        "C": {"signup_age_days": 456.0, "first_order_value": 50.0, "first_order_category": "shoes",
              "first_order_channel": "store"},
        # D: attributes, no order.
        "D": {"acquisition_channel": "ads", "region": "east", "signup_age_days": 51.0,
              "first_order_value": None, "first_order_category": None},
        # F signs up after the cutoff: the customers row is not history.
        "F": {"acquisition_channel": None, "region": None, "country": None, "signup_age_days": None,
              "first_order_value": 8.0, "first_order_category": "hats", "first_order_channel": "web"},
    })


def test_columns_dtypes_and_docs(fs_all):
    specs = feature_specs(fs_all.windows)
    assert list(fs_all.customers.columns) == ["customer_id"] + [s.name for s in specs]
    assert set(fs_all.feature_docs) == {s.name for s in specs}
    assert all("[" in doc and doc.endswith("]") for doc in fs_all.feature_docs.values())
    for s in specs:
        dtype = fs_all.customers[s.name].dtype
        if s.kind == "int":
            assert dtype == np.int64, s.name
        elif s.kind == "float":
            assert dtype == np.float64, s.name
        else:
            assert pd.api.types.is_string_dtype(dtype), s.name
    assert pd.api.types.is_string_dtype(fs_all.customers["customer_id"].dtype)


def test_each_family_returns_its_catalog_columns_once_per_customer(tmp_path):
    con = write_store(tmp_path / "t.duckdb", tiny_shop())
    from ltvcast.features._sql import source_views, store_columns
    from ltvcast.features.build import HISTORY_STEPS

    sql = feature_sql("2024-03-01", population="all")
    cur = con.cursor()
    for view in source_views(store_columns(cur)).values():
        cur.execute(view)
    for step in HISTORY_STEPS:
        cur.execute(sql[step])
    specs = feature_specs()
    for family in FAMILIES:
        frame = cur.execute(sql[family]).df()
        assert list(frame.columns) == ["customer_id"] + [s.name for s in specs if s.family == family], family
        assert frame["customer_id"].is_unique, family
    cur.close()
    con.close()


def test_gross_revenue_basis_from_store_meta(tmp_path):
    shop = tiny_shop()
    shop.meta["revenue_basis"] = "gross"
    con = write_store(tmp_path / "g.duckdb", shop)
    fs = build(con, "2024-03-01")
    con.close()
    rows = fs.customers.set_index("customer_id")
    assert fs.revenue_basis == "gross"
    # Returns leave spend alone; they still count as returns.
    check(rows, {
        "A": {"spend_total": 77.0, "spend_30d": 16.0, "monetary_value": 26.0, "returns_count": 1,
              "spend_trend_slope": (-5 * 25 + 7 * 36 + 11 * 16) / 286},
        "B": {"spend_total": 0.3, "spend_30d": 0.3},
    })


def test_one_statement_customer_table_equals_build(tmp_path, fs_all):
    # feature_sql()["customers"] (all families joined in one statement, for reading
    # and transpiling) gives what build() assembles family by family.
    con = write_store(tmp_path / "t.duckdb", tiny_shop())
    from ltvcast.features._sql import source_views, store_columns
    from ltvcast.features.build import HISTORY_STEPS

    sql = feature_sql("2024-03-01", population="all")
    cur = con.cursor()
    for view in source_views(store_columns(cur)).values():
        cur.execute(view)
    for step in HISTORY_STEPS:
        cur.execute(sql[step])
    frame = cur.execute(sql["customers"]).df()
    cur.close()
    con.close()
    ours = fs_all.customers
    assert list(frame.columns) == list(ours.columns)
    for name in ours.columns:
        pd.testing.assert_series_equal(frame[name], ours[name], check_dtype=False, check_exact=True)
