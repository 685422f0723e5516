"""Segments, RFM groups, value at risk and the report's decisions section (ltvcast.actions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ltvcast.actions.report import decisions_section
from ltvcast.actions.segments import (
    RFM_GROUP_RULES,
    RFM_GROUPS,
    assign_segments,
    quintile_scores,
    retention_list,
    rfm_group,
    risk_labels,
    segment_summary,
    tier_labels,
    value_at_risk,
)
from ltvcast.cli import app
from ltvcast.errors import DataError


def preds(spend, p_churn, model="m", horizon=100.0, ids=None):
    n = len(spend)
    return pd.DataFrame(
        {
            "customer_id": pd.array(ids or [f"c{i:02d}" for i in range(n)], dtype="string"),
            "model": model,
            "cutoff": pd.Timestamp("2024-01-01", tz="UTC"),
            "horizon_days": horizon,
            "pred_spend": np.asarray(spend, float),
            "p_churn": np.asarray(p_churn, float),
        }
    )


# ------------------------------------------------------------------ labels, tiers, bands
def test_labels():
    assert tier_labels((0.5, 0.8, 0.95)) == ["bottom 50%", "50%–80%", "80%–95%", "top 5%"]
    assert tier_labels(()) == ["all"]
    assert risk_labels((0.3, 0.7)) == ["low", "medium", "high"]
    assert risk_labels((0.5,)) == ["low", "high"]
    with pytest.raises(DataError, match="increase"):
        tier_labels((0.8, 0.5))
    with pytest.raises(DataError, match="between 0 and 1"):
        risk_labels((0.3, 1.2))


def test_tiers_and_bands_by_hand():
    # spend 1..10: Q(0.5) = 5.5, Q(0.8) = 8.2 -> 1-5 bottom, 6-8 middle, 9-10 top.
    p = [0.0, 0.1, 0.29, 0.3, 0.5, 0.69, 0.7, 0.9, 1.0, 0.3]
    seg = assign_segments(preds(range(1, 11), p), tier_quantiles=(0.5, 0.8), risk_edges=(0.3, 0.7))
    assert list(seg["value_tier"].astype(str)) == ["bottom 50%"] * 5 + ["50%–80%"] * 3 + ["top 20%"] * 2
    # [0, 0.3) low, [0.3, 0.7) medium, [0.7, 1] high
    assert list(seg["churn_risk"].astype(str)) == (
        ["low"] * 3 + ["medium"] * 3 + ["high"] * 3 + ["medium"]
    )
    assert list(seg["tier_rank"]) == [0] * 5 + [1] * 3 + [2] * 2


def test_a_value_on_a_cut_point_stays_in_the_lower_tier():
    # Q(0.5) of [0, 0, 0, 0, 5, 10] is 0: the zeros share the bottom tier
    seg = assign_segments(preds([0, 0, 0, 0, 5, 10], [0.5] * 6), tier_quantiles=(0.5,), risk_edges=(0.5,))
    assert list(seg["tier_rank"]) == [0, 0, 0, 0, 1, 1]


# ------------------------------------------------------------------ RFM
def test_quintile_scores_by_hand():
    assert list(quintile_scores(np.arange(10.0))) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert list(quintile_scores(np.arange(10.0), higher_is_better=False)) == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    # six tied ones take the score of rank 1; rank 7 -> floor(5*6/10)+1 = 4; 8 -> 4; 9 -> 5; 10 -> 5
    assert list(quintile_scores([1, 1, 1, 1, 1, 1, 2, 3, 4, 5])) == [1] * 6 + [4, 4, 5, 5]


def test_rfm_grid_is_complete_without_overlap():
    seen = {}
    for name, (rs, fms) in RFM_GROUP_RULES.items():
        for r in rs:
            for fm in fms:
                assert (r, fm) not in seen, f"({r}, {fm}) in {seen.get((r, fm))} and {name}"
                seen[(r, fm)] = name
    assert set(seen) == {(r, fm) for r in range(1, 6) for fm in range(1, 6)}
    assert set(seen.values()) == set(RFM_GROUPS)
    assert list(rfm_group([1, 2, 2, 3, 5, 4], [5, 5, 1, 2, 2, 1])) == [
        "can't lose", "can't lose", "hibernating", "hibernating", "potential loyalist", "new"
    ]
    with pytest.raises(DataError):
        rfm_group([0], [3])


def test_rfm_groups_from_a_summary_by_hand():
    # 5 customers with distinct values: each score equals the rank (floor(5 (rank-1)/5) + 1).
    summary = pd.DataFrame(
        {
            "customer_id": pd.array(list("ABCDE"), dtype="string"),
            "frequency": [4.0, 0.0, 3.0, 2.0, 1.0],  # occasions 5,1,4,3,2 -> F 5,1,4,3,2
            "recency": [9.0, 8.0, 7.0, 6.0, 5.0],  # T - recency = 1..5 days -> R 5,4,3,2,1
            "T": [10.0] * 5,
            "total_spend": [500.0, 100.0, 300.0, 400.0, 200.0],  # M 5,1,3,4,2
        }
    )
    seg = assign_segments(preds([1, 2, 3, 4, 5], [0.1] * 5, ids=list("ABCDE")), summary)
    assert list(seg["r_score"]) == [5, 4, 3, 2, 1]
    assert list(seg["f_score"]) == [5, 1, 4, 3, 2]
    assert list(seg["m_score"]) == [5, 1, 3, 4, 2]
    assert list(seg["fm_score"]) == [5, 1, 4, 4, 2]  # ceil((F + M) / 2)
    assert list(seg["rfm_group"].astype(str)) == ["champions", "new", "loyal", "at risk", "lost"]
    assert list(seg["days_since_last"]) == [1.0, 2.0, 3.0, 4.0, 5.0]


# ------------------------------------------------------------------ value at risk, summary, list
def test_value_at_risk_both_ways_by_hand():
    frame = preds([100.0, 50.0, 10.0], [0.2, 0.9, 0.5], horizon=100.0).assign(
        total_spend=[1000.0, 99.0, 0.0], tenure_days=[99.0, 98.0, 9.0]
    )
    np.testing.assert_allclose(value_at_risk(frame), [20.0, 45.0, 5.0])
    # own rate = total / (T + 1) per day: 10, 1, 0 -> x 100 days = 1000, 100, 0; minus pred_spend, >= 0
    np.testing.assert_allclose(value_at_risk(frame, "rate_drop"), [900.0, 50.0, 0.0])
    with pytest.raises(DataError, match="not one of"):
        value_at_risk(frame, "other")
    with pytest.raises(DataError, match="rate_drop"):
        assign_segments(preds([1.0], [0.5]), None, var_method="rate_drop")


def test_summary_shares_sum_to_one_and_cells_by_hand():
    spend = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    p = [0.9, 0.9, 0.1, 0.1, 0.5, 0.9, 0.1, 0.5, 0.9, 0.1]
    seg = assign_segments(preds(spend, p), tier_quantiles=(0.5,), risk_edges=(0.3, 0.7))
    s = segment_summary(seg)
    grid = s[s["grid"] == "value x risk"]
    assert len(grid) == 6  # every cell, empty ones too
    assert grid["share_of_value"].sum() == pytest.approx(1.0)
    assert grid["share_of_customers"].sum() == pytest.approx(1.0)
    top_high = grid[(grid["value_tier"] == "top 50%") & (grid["churn_risk"] == "high")].iloc[0]
    # top half: spend 6..10 with p 0.9, 0.1, 0.5, 0.9, 0.1 -> high = {6, 9}
    assert top_high["customers"] == 2
    assert top_high["share_of_value"] == pytest.approx(15 / 55)
    assert top_high["mean_p_churn"] == pytest.approx(0.9)
    assert top_high["value_at_risk"] == pytest.approx(0.9 * 15)
    bottom_mid = grid[(grid["value_tier"] == "bottom 50%") & (grid["churn_risk"] == "medium")].iloc[0]
    assert bottom_mid["customers"] == 1 and bottom_mid["mean_p_churn"] == pytest.approx(0.5)


def test_retention_list_ranks_by_value_at_risk():
    seg = assign_segments(preds([100.0, 50.0, 10.0, 40.0], [0.2, 0.9, 0.5, 0.5], ids=["a", "b", "c", "d"]))
    lst = retention_list(seg, top=3)
    # value at risk: a 20, b 45, c 5, d 20 -> b, then a and d tied (by id), c left out
    assert list(lst["customer_id"]) == ["b", "a", "d"]
    assert list(lst["rank"]) == [1, 2, 3]
    assert list(lst["value_at_risk"]) == pytest.approx([45.0, 20.0, 20.0])
    reasons = pd.DataFrame({"customer_id": ["b"], "reasons": ["no purchase for 143 days"]})
    assert retention_list(seg, top=1, reasons=reasons)["reasons"].iloc[0] == "no purchase for 143 days"
    with pytest.raises(DataError, match="at least 1"):
        retention_list(seg, top=0)


def test_bad_predictions_are_refused():
    two = pd.concat([preds([1.0], [0.5], model="a"), preds([1.0], [0.5], model="b")])
    with pytest.raises(DataError, match="one model"):
        assign_segments(two)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        assign_segments(preds([1.0], [1.5]))
    with pytest.raises(DataError, match="missing"):
        assign_segments(preds([np.nan], [0.5]))
    with pytest.raises(DataError, match="lack"):
        assign_segments(preds([1.0], [0.5]).drop(columns="p_churn"))


# ------------------------------------------------------------------ the decisions section, the CLI
def test_decisions_section_by_hand():
    section = decisions_section(preds(range(1, 11), [0.5] * 10), top=3)
    captions = [c for c, _ in section.tables]
    assert captions[0].startswith("Value tier × churn risk (m)")
    top = section.tables[-1][1]
    assert list(top["customer"]) == ["c09", "c08", "c07"]
    assert section.figures and section.figures[0].lstrip().startswith("<svg")


@pytest.fixture(scope="module")
def backtest_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bt")
    result = CliRunner().invoke(
        app,
        ["backtest", "--dataset", "cdnow-sample", "--cutoff", "1997-10-01", "--horizon", "26w",
         "--models", "naive,bgnbd", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    return out


def test_backtest_report_has_the_decisions_section(backtest_dir):
    html = (backtest_dir / "report.html").read_text(encoding="utf-8")
    assert "Decisions: segments and value at risk" in html
    assert "Value tier × churn risk (bgnbd)" in html  # bgnbd has the lower spend MAE on cdnow-sample
    assert "champions" in html and "by value at risk" in html
    # the chosen model's global importance and the listed customers' churn reasons (its fitted forecaster)
    assert "Global importance — bgnbd" in html
    listed = html.split("by value at risk")[1].split("</table>")[0]
    assert "<th>reasons</th>" in listed and "the chance of no purchase" in listed


def test_segments_command_on_a_predictions_file(backtest_dir, tmp_path):
    out = tmp_path / "seg.parquet"
    result = CliRunner().invoke(
        app,
        ["segments", "--predictions", str(backtest_dir / "predictions.parquet"), "--use", "bgnbd",
         "--dataset", "cdnow-sample", "--top", "5", "--out", str(out), "--retention", str(tmp_path / "r.csv")],
    )
    assert result.exit_code == 0, result.output
    seg = pd.read_parquet(out)
    assert len(seg) == 2357 and seg["customer_id"].is_unique
    assert seg["rfm_group"].notna().all()
    summary = pd.read_csv(tmp_path / "seg_summary.csv")
    for grid in ("value x risk", "rfm"):
        assert summary.loc[summary["grid"] == grid, "share_of_value"].sum() == pytest.approx(1.0)
        assert summary.loc[summary["grid"] == grid, "customers"].sum() == 2357
    ranked = pd.read_csv(tmp_path / "r.csv")
    assert len(ranked) == 5 and ranked["value_at_risk"].is_monotonic_decreasing
    assert ranked["value_at_risk"].iloc[0] == pytest.approx(seg["value_at_risk"].max())


def test_segments_command_errors_are_clear(backtest_dir):
    result = CliRunner().invoke(
        app, ["segments", "--predictions", str(backtest_dir / "predictions.parquet"), "--dataset", "cdnow-sample"]
    )
    assert result.exit_code == 2 and "choose one with --use" in result.output
    result = CliRunner().invoke(app, ["segments", "--dataset", "cdnow-sample"])
    assert result.exit_code == 2 and "exactly one of --model" in result.output


def test_segments_command_with_a_model_lists_churn_reasons(tmp_path):
    pytest.importorskip("ltvcast.explain")
    runner = CliRunner()
    reg = tmp_path / "models"
    result = runner.invoke(app, ["train", "--dataset", "cdnow-sample", "--models", "bgnbd", "--cutoff", "1997-10-01",
                                 "--name", "cd", "--registry", str(reg)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["segments", "--model", "cd", "--dataset", "cdnow-sample", "--cutoff", "1997-10-01",
                                 "--registry", str(reg), "--top", "3", "--out", str(tmp_path / "s.parquet"),
                                 "--retention", str(tmp_path / "r.csv")])
    assert result.exit_code == 0, result.output
    ranked = pd.read_csv(tmp_path / "r.csv")
    assert list(ranked["rank"]) == [1, 2, 3] and (ranked["model"] == "cd:1").all()
    assert ranked["reasons"].str.len().gt(0).all()  # three churn drivers per listed customer
    assert ranked["reasons"].str.count("; ").eq(2).all()
