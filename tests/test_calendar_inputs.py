"""Calendar inputs and text features of the learned models (issue 13, points 2 and 5).

* calendar inputs of a small window computed by hand (month shares, declared
  events, the seasonal index from the history before the cutoff);
* they never read the label window (its transactions changed -> identical inputs);
* the ``auto`` gate (364 + 2H days of history);
* a categorical customer attribute that drives spend reaches gbm (nonzero gain).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ltvcast.data.datasets import open_history
from ltvcast.errors import DataError
from ltvcast.models.learned.calendar import (
    calendar_columns,
    calendar_inputs,
    calendar_wanted,
    load_calendar,
    parse_calendar,
)
from ltvcast.models.learned.examples import history_before
from ltvcast.models.learned.features import FeatureMaker
from ltvcast.models.learned.gbm import GBMForecaster


def _tx(rows: list[tuple[str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(len(rows))],
            "timestamp": pd.to_datetime([d for d, _ in rows]).tz_localize("UTC"),
            "amount": [a for _, a in rows],
            "kind": "sale",
        }
    )


EVENTS = parse_calendar(
    [
        {"name": "new year", "start": "2024-01-01", "end": "2024-01-19"},  # ends the day before the window
        {"name": "sale", "start": "2024-01-31", "end": "2024-02-02"},  # 3 days inside
        {"name": "one day", "start": "2024-02-08"},  # the window's last day
        {"name": "later", "start": "2024-02-09", "end": "2024-02-20"},  # the day after the window
    ]
)

# Window [2024-01-20, 2024-02-09): 20 days, 12 in January and 8 in February.
# Year before: c - 364 = 2023-01-21, the window [2023-01-21, 2023-02-10); trailing [2023-12-31, 2024-01-20).
HISTORY = [
    ("2023-01-01", 100.0),  # before the year-ago window: history reaches a year back
    ("2023-01-25", 30.0),  # year-ago window
    ("2023-02-09", 10.0),  # year-ago window (its last day)
    ("2023-02-10", 1000.0),  # the day after it
    ("2023-12-30", 500.0),  # the day before the trailing window
    ("2024-01-05", 20.0),  # trailing window
]


def test_calendar_inputs_by_hand():
    got = calendar_inputs(_tx(HISTORY), "2024-01-20", 20, events=EVENTS)
    assert list(got) == calendar_columns(EVENTS)
    assert got["cal_month_01"] == pytest.approx(12 / 20) and got["cal_month_02"] == pytest.approx(8 / 20)
    assert sum(got[f"cal_month_{m:02d}"] for m in range(3, 13)) == 0.0
    assert got["cal_events"] == 2.0  # "sale" and "one day"
    assert got["cal_event_day_share"] == pytest.approx(4 / 20)  # Jan 31, Feb 1, Feb 2, Feb 8
    assert got["cal_season_index"] == pytest.approx((30 + 10) / 20)
    # no calendar: no event columns; less than a year of history: no index
    short = calendar_inputs(_tx(HISTORY[1:]), "2024-01-20", 20)
    assert "cal_events" not in short and np.isnan(short["cal_season_index"])
    # a window longer than the 364-day year has no index
    assert np.isnan(calendar_inputs(_tx(HISTORY), "2024-01-20", 365)["cal_season_index"])


def test_calendar_inputs_never_read_the_label_window():
    base = calendar_inputs(_tx(HISTORY), "2024-01-20", 20, events=EVENTS)
    future = HISTORY + [("2024-01-20", 1e6), ("2024-02-01", 5e5), ("2024-02-08", -3e4)]
    assert calendar_inputs(_tx(future), "2024-01-20", 20, events=EVENTS) == base


def test_calendar_file_and_errors(tmp_path):
    path = tmp_path / "calendar.yaml"
    path.write_text("- {name: Black Friday, start: 2023-11-24, end: 2023-11-27}\n- {name: Sale, start: 2024-07-01}\n")
    events = load_calendar(path)
    assert [(e.name, e.start, e.end) for e in events] == [
        ("Black Friday", pd.Timestamp("2023-11-24"), pd.Timestamp("2023-11-27")),
        ("Sale", pd.Timestamp("2024-07-01"), pd.Timestamp("2024-07-01")),
    ]
    with pytest.raises(DataError, match="before it starts"):
        parse_calendar([{"name": "x", "start": "2024-02-02", "end": "2024-02-01"}])
    with pytest.raises(DataError, match="needs 'name'"):
        parse_calendar([{"start": "2024-02-02"}])
    with pytest.raises(DataError, match="no file"):
        load_calendar(tmp_path / "missing.yaml")


def test_auto_gate_needs_a_year_plus_two_horizons():
    assert calendar_wanted("auto", "2022-01-01", "2024-07-01", 184)[0]  # 912 days >= 364 + 368
    on, note = calendar_wanted("auto", "1997-01-01", "1998-01-01", 181)  # CDNOW: 365 < 726
    assert not on and "left out" in note
    assert calendar_wanted("on", "1997-01-01", "1998-01-01", 181)[0]
    assert not calendar_wanted("off", "2022-01-01", "2024-07-01", 184)[0]


# ---------------------------------------------------------------- through the feature maker and gbm

CUTOFF = "1998-01-01"
SMALL = dict(n_windows=3, stride_days=56, max_rounds=15, early_stopping_rounds=5, min_data_in_leaf=20, n_jobs=1)


def _sample(sql: str = ""):
    h = open_history(dataset="cdnow-sample")
    for stmt in sql.strip().split(";"):
        if stmt.strip():
            h.store.connection.execute(stmt)
    return replace(h, transactions=h.store.transactions())


def test_feature_maker_calendar_columns_ignore_the_label_window():
    c, days = pd.Timestamp("1997-10-01", tz="UTC"), 91.0
    scramble = (
        "UPDATE transactions SET amount = amount * 7 + 3 "
        "WHERE timestamp >= TIMESTAMP '1997-10-01' AND timestamp < TIMESTAMP '1997-12-31'"
    )
    frames = []
    for h in (_sample(), _sample(scramble)):
        maker = FeatureMaker(h.store, h.timezone, h.revenue_basis, calendar=True, events=EVENTS, categoricals=True)
        frames.append(maker(history_before(h.transactions, c), c, days))
    pd.testing.assert_frame_equal(frames[0], frames[1])
    f = frames[0]
    # October 1 .. December 30: 31 + 30 + 30 days of 91
    assert f["cal_month_10"].iloc[0] == pytest.approx(31 / 91) and f["cal_month_12"].iloc[0] == pytest.approx(30 / 91)
    assert (f["cal_events"] == 0).all() and f["cal_season_index"].isna().all()  # CDNOW starts 1997-01-01


def test_a_categorical_attribute_that_drives_spend_reaches_gbm():
    # One customer in three is "vip"; from June 1997 on their amounts are eight times as large, so the
    # label windows (from 1997-05) are larger for them than their history before the cutoff shows.
    sql = """
    INSERT INTO customers (ingest_id, customer_id, signup_at, acquisition_channel, region, country)
        SELECT 0, customer_id, NULL, NULL,
               CASE WHEN hash(customer_id) % 3 = 0 THEN 'vip' ELSE 'plain' END, NULL
        FROM (SELECT DISTINCT customer_id FROM transactions);
    UPDATE transactions SET amount = amount * 8
        WHERE timestamp >= TIMESTAMP '1997-06-01'
          AND customer_id IN (SELECT customer_id FROM customers WHERE region = 'vip')
    """
    h = _sample(sql)
    model = GBMForecaster(**SMALL).fit(h, CUTOFF, 181.0)
    assert model.vocabularies_["region"] == ["plain", "vip"] or model.vocabularies_["region"] == ["vip", "plain"]
    assert "acquisition_channel" not in model.feature_names_  # no value in training: left out
    gain = model.feature_importance_.set_index("feature")["gain"]
    assert gain["region"] > 0
    pred = model.predict(h, CUTOFF, 181.0).set_index("customer_id")["pred_spend"]
    vip = set(h.store.connection.execute("SELECT customer_id FROM customers WHERE region = 'vip'").df()["customer_id"])
    is_vip = pred.index.isin(vip)
    assert pred[is_vip].mean() > 2 * pred[~is_vip].mean()
    # the same inputs with the attribute switched off lose it
    off = GBMForecaster(**SMALL, categoricals=False).fit(h, CUTOFF, 181.0)
    assert "region" not in off.feature_names_


def test_deep_with_calendar_inputs_on_does_not_leak():
    from ltvcast.models.learned.deep import DeepForecaster

    tiny = dict(n_windows=2, stride_days=56, lookback=8, max_epochs=1, patience=1, hidden_size=4, n_threads=1,
                calendar_inputs="on", calendar=[{"name": "sale", "start": "1998-02-01", "end": "1998-02-07"}])
    future = "UPDATE transactions SET amount = amount * 7 + 3 WHERE timestamp >= TIMESTAMP '1998-01-01'"
    runs = [(h, DeepForecaster(**tiny).fit(h, CUTOFF, 181.0)) for h in (_sample(), _sample(future))]
    assert {"cal_month_01", "cal_events", "cal_season_index"} <= set(runs[0][1].numeric_names_)
    preds = [m.predict(h, CUTOFF, 181.0) for h, m in runs]
    pd.testing.assert_frame_equal(preds[0], preds[1])


def test_calendar_option_reaches_the_learned_models(tmp_path, monkeypatch):
    """--calendar on backtest (single and rolling), forecast and train hands the parsed events to every model."""
    from typer.testing import CliRunner

    import ltvcast.cli.registry as cli_registry
    import ltvcast.models.forecast as forecast_module
    from ltvcast.cli import app
    from ltvcast.models.catalog import make_forecaster

    path = tmp_path / "calendar.yaml"
    path.write_text("- {name: Black Friday, start: 1997-11-28, end: 1997-12-01}\n")
    events = load_calendar(path)
    seen: list[tuple[str, object]] = []

    def spy(name, calendar=None):
        seen.append((name, calendar))
        return make_forecaster(name, calendar)

    monkeypatch.setattr(forecast_module, "make_forecaster", spy)
    monkeypatch.setattr(cli_registry, "make_forecaster", spy)
    runs = [
        ["backtest", "--cutoff", "1998-01-01", "--out", tmp_path / "b"],
        ["backtest", "--cutoffs", "1997-10-01,1998-01-01", "--out", tmp_path / "r"],
        ["forecast", "--cutoff", "1998-01-01", "--out", tmp_path / "f.parquet"],
        ["train", "--cutoff", "1998-01-01", "--name", "shop", "--registry", tmp_path / "reg"],
    ]
    runner = CliRunner()
    for args in runs:
        args = args + ["--dataset", "cdnow-sample", "--horizon", "13w", "--models", "naive", "--calendar", path]
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    assert seen == [("naive", events)] * 5  # the rolling backtest makes one per cutoff
    result = runner.invoke(app, ["forecast", "--dataset", "cdnow-sample", "--cutoff", "1998-01-01",
                                 "--calendar", str(tmp_path / "missing.yaml")])
    assert result.exit_code != 0 and "calendar: no file" in result.output
    assert len(seen) == 5  # refused before any model was made


def test_make_forecaster_gives_the_calendar_to_learned_models_only():
    from ltvcast.models.catalog import make_forecaster

    events = parse_calendar([{"name": "Sale", "start": "2024-07-01", "end": "2024-07-14"}])
    assert make_forecaster("gbm", events).events() == events
    assert make_forecaster("auto", events).kwargs["calendar"] == events
    assert make_forecaster("deep", events).calendar == events
    assert not hasattr(make_forecaster("paretonbd", events), "calendar")
    assert parse_calendar(list(events)) == events  # parsed events pass through (pickled models keep them)
