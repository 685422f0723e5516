"""`ltvcast features` on a store as a new user meets it (issue 11's newcomer run).

Found: a cutoff before any data wrote 0 rows without a word; runs at two cutoffs wrote into the same
folders (which cutoff a file held was not said anywhere); the added-event-type slots
(``other_type_i_*``) were written all 0 / all NULL for a shop without added event types.
The store is serve_kit's (orders, lines, returns from 2023-07; Europe/Berlin; no events).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from serve_kit import TZ, make_store
from typer.testing import CliRunner

from ltvcast.cli import app
from ltvcast.features import build, rfm_summary
from ltvcast.features.catalog import TYPE_SLOTS, unused_type_slots
from ltvcast.store import Store

SLOT_COLUMNS = [c for cols in TYPE_SLOTS.values() for c in cols]


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("features-cli") / "shop", customers=40)


def _run(*args: str):
    return CliRunner().invoke(app, ["features", *args])


def test_a_cutoff_before_the_data_names_the_first_day(db, tmp_path):
    with Store.open(db, read_only=True) as store:
        first = store.transactions()["timestamp"].min()
    first_day = (first.tz_localize("UTC") if first.tzinfo is None else first).tz_convert(TZ).date()
    for tables in ("customers,rfm_summary", "rfm_summary", "sequences"):
        result = _run("--db", str(db), "--cutoff", "2020-01-01", "--out", str(tmp_path / "f"), "--tables", tables)
        err = " ".join(result.stderr.split())
        assert result.exit_code == 2, (tables, result.output, result.exception)
        assert "no customer has a purchase before the cutoff 2020-01-01" in err
        assert f"the first transaction in {db} is on {first_day} ({TZ})" in err and "--cutoff" in err
    assert not (tmp_path / "f").exists()


def test_each_cutoff_has_its_own_folder_and_a_rerun_replaces_only_its_own(db, tmp_path):
    out = tmp_path / "features"
    with Store.open(db, read_only=True) as store:
        tx, want = store.transactions(), {}
        for day in ("2024-01-01", "2024-04-01"):
            fs = build(store, day)
            rfm = rfm_summary(tx, day, "W", timezone=TZ, revenue_basis="net", allow_future_cutoff=True)
            want[day] = (fs.customers.drop(columns=SLOT_COLUMNS), rfm)
    assert len(want["2024-01-01"][0]) < len(want["2024-04-01"][0])  # the two cutoffs differ
    for day in ("2024-01-01", "2024-04-01", "2024-01-01"):
        result = _run("--db", str(db), "--cutoff", day, "--out", str(out))
        assert result.exit_code == 0, (result.output, result.exception)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")) == [
        f"{day}/{table}/part-0.parquet" for day in ("2024-01-01", "2024-04-01") for table in ("customers", "rfm_summary")
    ]
    for day, (customers, rfm) in want.items():
        pd.testing.assert_frame_equal(pd.read_parquet(out / day / "customers"), customers, check_dtype=False)
        pd.testing.assert_frame_equal(pd.read_parquet(out / day / "rfm_summary"), rfm.reset_index(drop=True),
                                      check_dtype=False)


def test_unused_event_type_slots_are_left_out_of_the_written_table(db, tmp_path):
    result = _run("--db", str(db), "--cutoff", "2024-04-01", "--out", str(tmp_path), "--tables", "customers")
    assert result.exit_code == 0, (result.output, result.exception)
    written = pd.read_parquet(tmp_path / "2024-04-01" / "customers")
    assert set(SLOT_COLUMNS).isdisjoint(written.columns) and "other_events" in written.columns
    assert "left out of customers" in " ".join(result.output.split())
    with Store.open(db, read_only=True) as store:  # the models' FeatureSet keeps the whole catalog
        assert set(SLOT_COLUMNS) <= set(build(store, "2024-04-01").customers.columns)


def test_unused_slots_by_hand(tmp_path):
    # test_features_event_types' shop: email_open is type 1 (3 events), wishlist_add type 2 (1), no type 3
    from test_features_event_types import ADDED
    from test_features_store import tiny_shop, write_store

    assert unused_type_slots({}) == SLOT_COLUMNS
    assert unused_type_slots({"other_type_1_events": 3, "other_type_2_events": None}) == SLOT_COLUMNS[3:]
    shop = tiny_shop()
    for name, events, unused in (("plain", shop.events, SLOT_COLUMNS), ("added", shop.events + ADDED, SLOT_COLUMNS[6:])):
        con = write_store(tmp_path / f"{name}.duckdb", replace(shop, events=events))
        customers = build(con, "2024-03-01", population="all").customers
        con.close()
        assert unused_type_slots(customers[[cols[0] for cols in TYPE_SLOTS.values()]].sum()) == unused


def test_spark_writes_the_same_tables_in_the_same_layout(db, tmp_path):
    import os
    import shutil

    pytest.importorskip("pyspark", reason="the Spark engine needs the ltvcast[spark] extra")
    if shutil.which("java") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no Java on the PATH; CI must run the Spark tests")
        pytest.skip("no Java on the PATH")
    assert CliRunner().invoke(app, ["lake", "--db", str(db), "--out", str(tmp_path / "lake")]).exit_code == 0
    spark = ["--engine", "spark", "--source", str(tmp_path / "lake"), "--spark-master", "local[2]"]
    for args, out in (([], "duck"), (spark, "spark")):
        args = args or ["--db", str(db)]
        result = _run(*args, "--cutoff", "2024-04-01", "--out", str(tmp_path / out))
        assert result.exit_code == 0, (out, result.output, result.exception)
        assert "left out of customers" in " ".join(result.output.split())
    for table in ("customers", "rfm_summary"):
        duck = pd.read_parquet(tmp_path / "duck" / "2024-04-01" / table).sort_values("customer_id", ignore_index=True)
        other = pd.read_parquet(tmp_path / "spark" / "2024-04-01" / table).sort_values("customer_id", ignore_index=True)
        assert list(other.columns) == list(duck.columns) and len(other) == len(duck) > 0
        numeric = [c for c in duck.columns if pd.api.types.is_numeric_dtype(duck[c])]
        pd.testing.assert_frame_equal(other[numeric].astype(float), duck[numeric].astype(float), rtol=1e-9)
    result = _run(*spark, "--cutoff", "2020-01-01", "--out", str(tmp_path / "early"))
    err = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "no customer has a purchase before the cutoff 2020-01-01" in err, (
        result.output, result.exception)
