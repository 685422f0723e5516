"""Age-robust weekly trend features (trend.sql, events.sql), hand-computed on the tiny shop.

Cutoff C = 2024-03-01. Week k = floor((C - day - 1) / 7); n13 = min(13, weeks of
tenure), n52 = min(52, weeks); slope over the n13 newest weeks = sum(((n13-1)/2 - k) v)
/ (n13 (n13^2 - 1) / 12), divided by the mean weekly value of the last n52 weeks.

Spend (h_daily days, first day -> weeks of tenure = floor((C - first - 1) / 7) + 1):
  A first 2023-06-10 (265 days -> 38 weeks): 2023-06-10 25.00 (k 37), 2023-12-20 0.00
    (refunded, k 10), 2024-02-15 16.00 (k 2). n13 13, n52 38: tilt (6 - 2) 16 = 64,
    S 182, mean52 41/38 -> slope 64 * 38 / (182 * 41); ratio (16/13) / (41/38).
  C first 2023-01-15 (59 weeks): in the last 364 days 2023-03-15 12.00 (k 50) and
    2023-09-10 69.00 (k 24): nothing in the last 13 weeks -> slope 0, ratio 0.
  F one day 2024-01-05 8.00 (56 days -> 8 weeks, k 7): n13 = n52 = 8, tilt (3.5 - 7) 8
    = -28, S 42, mean 1 -> slope -2/3; ratio 1 (tenure shorter than a quarter).
Visit days (local days with any event):
  A 2023-11-01 (k 17, first: 121 days -> 18 weeks), 2024-02-10 and 2024-02-15 (k 2):
    tilt 2 (6 - 2) = 8 -> (8/182) / (3/18) = 24/91; ratio (2/13) / (3/18) = 12/13.
  D 2024-02-01 only (29 days -> 5 weeks, k 4): tilt -2, S 10, mean 1/5 -> -1; ratio 1.
  C, F no events -> missing.
"""

from __future__ import annotations

import pandas as pd
import pytest
from test_features_store import tiny_shop, write_store

from ltvcast.features import build


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    con = write_store(tmp_path_factory.mktemp("trend") / "tiny.duckdb", tiny_shop())
    fs = build(con, "2024-03-01", population="all", period="W", lookback=4)
    con.close()
    return fs.customers.set_index("customer_id")


@pytest.mark.parametrize(
    ("customer", "column", "want"),
    [
        ("A", "spend_slope_13w", 64 * 38 / (182 * 41)),
        ("A", "spend_13w_vs_52w", (16 / 13) / (41 / 38)),
        ("C", "spend_slope_13w", 0.0),
        ("C", "spend_13w_vs_52w", 0.0),
        ("F", "spend_slope_13w", -2 / 3),
        ("F", "spend_13w_vs_52w", 1.0),
        ("A", "visit_slope_13w", 24 / 91),
        ("A", "visits_13w_vs_52w", 12 / 13),
        ("D", "visit_slope_13w", -1.0),
        ("D", "visits_13w_vs_52w", 1.0),
        ("C", "visit_slope_13w", None),
        ("F", "visits_13w_vs_52w", None),
    ],
)
def test_weekly_trend(rows, customer, column, want):
    got = rows.loc[customer, column]
    if want is None:
        assert pd.isna(got)
    else:
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_learned_models_use_the_weekly_trend():
    from ltvcast.models.learned.features import AGE_COLUMNS

    for name in ("spend_slope_13w", "spend_13w_vs_52w", "visit_slope_13w", "visits_13w_vs_52w"):
        assert name not in AGE_COLUMNS
