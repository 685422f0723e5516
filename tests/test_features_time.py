"""Shop time zone, exact money, and agreement with rfm_summary on the papers' CDNOW sample."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from test_features_store import Shop, write_store

from ltvcast.features import build, rfm_summary

SAMPLE = Path(__file__).resolve().parents[1] / "src/ltvcast/data/files/CDNOW_sample.txt.gz"


def _shop(tz: str | None) -> Shop:
    shop = Shop(products=[("P1", "shoes", "acme")])
    if tz:
        shop.meta["shop_timezone"] = tz
    shop.orders = [
        # 23:30 UTC on 02-10 is 00:30 on 02-11 in Berlin (UTC+1 in winter) ...
        ("o1", "x", "2024-02-10 23:30:00", "web", [("P1", 1, "10.00", "0")]),
        # ... the same Berlin day as 10:00 UTC on 02-11: one occasion there, two in UTC.
        ("o2", "x", "2024-02-11 10:00:00", "web", [("P1", 1, "5.00", "0")]),
        # 23:30 UTC on 02-29 is 00:30 on 03-01 in Berlin: at or after a 2024-03-01 cutoff there.
        ("o3", "x", "2024-02-29 23:30:00", "web", [("P1", 1, "7.00", "0")]),
        # Summer time (UTC+2): 22:30 UTC on 2023-07-01 is 00:30 on 07-02 in Berlin.
        ("o4", "y", "2023-07-01 22:30:00", "web", [("P1", 1, "3.00", "0")]),
    ]
    shop.events = [("e1", "x", "s1", "2024-02-29 22:59:00", "view", "P1")]  # 23:59 on 02-29 in Berlin
    return shop


def test_purchase_at_2330_utc_belongs_to_the_next_day_in_berlin(tmp_path):
    berlin = build(write_store(tmp_path / "b.duckdb", _shop("Europe/Berlin")), "2024-03-01")
    utc = build(write_store(tmp_path / "u.duckdb", _shop(None)), "2024-03-01")
    assert (berlin.timezone, utc.timezone) == ("Europe/Berlin", "UTC")
    b = berlin.customers.set_index("customer_id").loc["x"]
    u = utc.customers.set_index("customer_id").loc["x"]
    # Berlin: one occasion on 02-11 (o1 + o2); o3 is after the cutoff (local midnight).
    assert (b["occasions"], b["spend_total"], b["days_since_last_purchase"], b["tenure_days"]) == (1, 15.0, 19.0, 19.0)
    # UTC: occasions 02-10, 02-11 and 02-29.
    assert (u["occasions"], u["spend_total"], u["days_since_last_purchase"], u["tenure_days"]) == (3, 22.0, 1.0, 20.0)
    # The view at 22:59 UTC is 23:59 on 02-29 in Berlin: the day before the cutoff.
    assert b["days_since_last_visit"] == 1.0 and b["views_30d"] == 1
    # y bought on 2023-07-02 Berlin time (summer): 2024-03-01 - 2023-07-02 = 243 days.
    assert berlin.customers.set_index("customer_id").loc["y", "tenure_days"] == 243.0
    assert utc.customers.set_index("customer_id").loc["y", "tenure_days"] == 244.0


def test_cutoff_is_local_midnight_in_summer_time(tmp_path):
    con = write_store(tmp_path / "b.duckdb", _shop("Europe/Berlin"))
    # Cutoff 2023-07-02 in Berlin = 2023-07-01 22:00 UTC: y's 22:30 UTC purchase is after it.
    assert "y" not in build(con, "2023-07-02").customers["customer_id"].tolist()
    assert "y" in build(con, "2023-07-03").customers["customer_id"].tolist()
    # An explicit timezone overrides store_meta.
    assert "y" in build(con, "2023-07-02", timezone="UTC").customers["customer_id"].tolist()


def test_a_fully_returned_order_nets_to_exactly_zero(tmp_path):
    # 0.1 + 0.2 + 0.7 sold in 20 orders, every line returned later: in floats
    # these sums leave residues like 1e-16; DECIMAL sums give exactly 0.
    shop = Shop(products=[("P1", "a", "b")])
    for k in range(20):
        lines = [("P1", 1, "0.10", "0"), ("P1", 1, "0.20", "0"), ("P1", 1, "0.70", "0")]
        shop.orders.append((f"o{k}", "z", f"2024-01-{k + 1:02d} 10:00:00", "web", lines))
        for line in (1, 2, 3):
            shop.returns.append((f"r{k}_{line}", f"o{k}", line, f"2024-01-{k + 2:02d} 18:00:00", 1))
    con = write_store(tmp_path / "m.duckdb", shop)
    # Every order is given back (refunds netted by order, features/sql/README.md): z has no purchase
    # occasion, so it is in population 'all' only.
    fs = build(con, "2024-02-01", channels=("spend",), population="all")
    z = fs.customers.iloc[0]
    assert z["occasions"] == 0
    assert z["spend_total"] == 0.0 and z["spend_365d"] == 0.0
    # Each return counts on its order's day: every day of the last 30 (from 01-02) nets to exactly 0
    # (before netting by order, the window held o0's return but not its sale: -1.0).
    assert z["spend_30d"] == 0.0
    assert z["gross_spend"] == 20.0 and z["returned_value"] == 20.0 and z["return_rate_value"] == 1.0
    # Trend: every day nets to 0, so every block does (before: o0 straddled two blocks, -2 / 286).
    assert z["spend_trend_slope"] == 0.0
    assert fs.sequences[0, :, 0].sum() == 0.0
    # As floats, one such order would not cancel exactly.
    assert 0.1 + 0.2 - 0.3 != 0.0


def test_btyd_columns_match_rfm_summary_on_cdnow_sample(tmp_path):
    raw = pd.read_csv(SAMPLE, sep=r"\s+", header=None, dtype=str, names=["master", "sid", "date", "cds", "usd"])
    tx = pd.DataFrame(
        {
            "customer_id": raw["sid"].astype("string"),
            "timestamp": pd.to_datetime(raw["date"], format="%Y%m%d", utc=True),
            "amount": raw["usd"].astype(float),
        }
    )
    con = duckdb.connect(str(tmp_path / "cdnow.duckdb"))
    frame = tx.assign(timestamp=tx["timestamp"].dt.tz_localize(None))
    # A foundation-style store: DOUBLE amounts, no kind column.
    con.register("frame", frame)
    con.execute("CREATE TABLE transactions AS SELECT * FROM frame")
    fs = build(con, "1997-10-01", windows=(30,))
    con.close()
    ours = fs.customers.set_index("customer_id")
    ref = rfm_summary(tx, "1997-10-01", unit="W").set_index("customer_id")
    assert len(ours) == len(ref) == 2357
    ours = ours.loc[ref.index]
    for col in ("frequency", "recency", "T"):
        np.testing.assert_allclose(ours[col], ref[col], rtol=0, atol=1e-12, err_msg=col)
    np.testing.assert_allclose(ours["monetary_value"], ref["monetary_value"], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(ours["spend_total"], ref["total_spend"], rtol=1e-12, atol=1e-9)
    assert (ours["occasions"] == ref["frequency"] + 1).all()
