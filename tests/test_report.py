"""The HTML backtest report: content, self-containment, escaping, robustness."""

from __future__ import annotations

import re
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from ltvcast.errors import DataError
from ltvcast.evaluate import evaluate, write_report

CUTOFF = pd.Timestamp("2024-01-01", tz="UTC")
MODELS = ["naive", "bgnbd", "gbm <tweedie>", "seq$1"]


def _frames(n=2_000, models=MODELS, cutoffs=(CUTOFF,), seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"c{i:05d}" for i in range(n)]
    preds, acts = [], []
    for cutoff in cutoffs:
        tx = rng.poisson(rng.gamma(0.5, 2.0, size=n))
        spend = tx * rng.gamma(2.0, 30.0, size=n)
        acts.append(pd.DataFrame({"customer_id": ids, "cutoff": cutoff, "actual_transactions": tx, "actual_spend": spend}))
        for k, model in enumerate(models):
            ps = np.maximum(spend * rng.lognormal(0, 0.4 + 0.3 * k, size=n), 0)
            preds.append(
                pd.DataFrame(
                    {
                        "customer_id": ids,
                        "model": model,
                        "cutoff": cutoff,
                        "horizon_days": 182.0,
                        "pred_transactions": ps / 60,
                        "pred_spend": ps,
                        "p_churn": np.nan if k == 0 else np.exp(-ps / 50),
                        "p_alive": np.nan,
                        "pred_spend_p10": np.nan,
                        "pred_spend_p50": np.nan,
                        "pred_spend_p90": np.nan,
                        "pred_next_purchase_days": np.nan,
                    }
                )
            )
    return pd.concat(preds, ignore_index=True), pd.concat(acts, ignore_index=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    pred, act = _frames()
    act = act.drop(columns="cutoff")
    metrics = evaluate(pred, act)
    path = tmp_path_factory.mktemp("report") / "sub" / "report.html"
    context = {
        "Dataset": "synthetic <script>alert('x')</script>",
        "Warning": "only 2,000 customers & one cutoff",
        "Note": "made in a test",
    }
    out = write_report(pred, act, metrics, path, title="Backtest <demo> & co", context=context)
    return out, out.read_text(encoding="utf-8")


def test_report_written_where_asked(report):
    path, html = report
    assert path.name == "report.html" and path.exists()
    assert html.startswith("<!DOCTYPE html>")
    assert path.stat().st_size < 1_000_000


def test_report_has_models_metrics_and_charts(report):
    _, html = report
    for name in ("naive", "bgnbd", "gbm &lt;tweedie&gt;", "seq$1"):
        assert name in html
    assert '<table class="metrics">' in html
    for label in ("Gini (norm.)", "Top-10% capture", "Decile MAPE", "Churn ROC AUC", "Spend MAE"):
        assert label in html
    # one gain chart with all models + one decile chart per model
    assert html.count("<svg") == len(MODELS) + 1
    assert html.count("How to read") == 2
    assert "2024-01-01" in html
    assert "2,000" in html  # customer count in the context


def test_report_escapes_user_strings(report):
    _, html = report
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert "Backtest &lt;demo&gt; &amp; co" in html
    assert "<tweedie>" not in html
    assert 'class="warning"' in html


def test_report_is_self_contained(report):
    _, html = report
    lowered = html.lower()
    for needle in ("<script", "<link", "<iframe", "<img", "@import", "src=", "url(http", "//cdn"):
        assert needle not in lowered, needle
    # the only URLs are XML namespace names of the inline SVGs (never fetched)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls
    for attr in re.findall(r'(\S+)="https?://', html):
        assert attr.startswith("xmlns"), attr
    # internal SVG references are unique per chart
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))


def test_report_prints_nothing(tmp_path, capsys):
    pred, act = _frames(n=300, models=["a", "b"])
    write_report(pred, act.drop(columns="cutoff"), None, tmp_path / "r.html", title="quiet")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_report_several_cutoffs_has_summary(tmp_path):
    c2 = pd.Timestamp("2024-07-01", tz="UTC")
    pred, act = _frames(n=500, models=["a", "b"], cutoffs=(CUTOFF, c2))
    metrics = evaluate(pred, act)
    html = write_report(pred, act, metrics, tmp_path / "r.html", title="rolling").read_text()
    assert "Across 2 cutoffs" in html
    assert "±" in html
    assert "cutoff 2024-07-01" in html  # charts use the latest cutoff
    assert html.count("<svg") == 3


def test_report_size_is_small_for_many_customers(tmp_path):
    pred, act = _frames(n=40_000)
    path = write_report(pred, act.drop(columns="cutoff"), None, tmp_path / "r.html", title="big")
    assert path.stat().st_size < 1_000_000


def test_report_model_without_spend_and_non_positive_total(tmp_path):
    pred, act = _frames(n=200, models=["a", "b"])
    act = act.drop(columns="cutoff")
    pred.loc[pred["model"] == "b", "pred_spend"] = np.nan
    html = write_report(pred, act, None, tmp_path / "r.html", title="gaps").read_text()
    assert "pred_spend is missing for 200 customer(s)" in html
    assert html.count("<svg") == 2  # gain chart + decile chart of a

    act["actual_spend"] = -1.0
    html = write_report(pred, act, None, tmp_path / "r2.html", title="refunds").read_text()
    assert "shares of it are undefined" in html
    assert html.count("<svg") == 1  # the decile chart of a


def test_report_validates_inputs(tmp_path):
    pred, act = _frames(n=50, models=["a"])
    act = act.drop(columns="cutoff")
    with pytest.raises(DataError):
        write_report(pred, act.iloc[:40], None, tmp_path / "r.html", title="x")
    with pytest.raises(DataError):
        write_report(pred, act, pd.DataFrame({"x": [1]}), tmp_path / "r.html", title="x")


def test_template_is_inside_the_package():
    template = resources.files("ltvcast.evaluate").joinpath("templates/report.html.j2")
    assert template.is_file()


def test_report_notes_and_context_aliases(tmp_path):
    pred, act = _frames(n=100, models=["a"])
    act = act.drop(columns="cutoff")
    context = {"dataset": "toy", "cutoff": "2024-01-01", "horizon": "182 days", "customers": "100"}
    html = write_report(
        pred, act, None, tmp_path / "r.html", title="t", context=context, notes=["fit hit a <bound>", "second"]
    ).read_text()
    assert "<h3>Notes</h3>" in html
    assert "fit hit a &lt;bound&gt;" in html and "second" in html
    # the caller's cutoff/horizon/customers are not repeated by derived rows
    assert "<th>Cutoff</th>" not in html and "<th>cutoff</th>" in html
    assert "Horizon (days)" not in html
    assert "<th>Customers scored" not in html
    assert "Customers who bought in the horizon" in html
    with pytest.raises(DataError):
        write_report(pred, act, None, tmp_path / "r.html", title="t", notes="not a list")


def test_report_shows_added_sections_escaped(tmp_path):
    from ltvcast.evaluate.report import ReportSection

    pred, act = _frames()
    table = pd.DataFrame({"segment <b>": ["champions", "lost"], "customers": [12, 3]})
    section = ReportSection(
        "Decisions", intro="how to read", tables=[("Segments", table)], figures=["<svg id='x'></svg>"], notes=["a & b"]
    )
    html = write_report(pred, act.drop(columns="cutoff"), None, tmp_path / "r.html", title="t", sections=[section])
    text = html.read_text(encoding="utf-8")
    assert "<h2>Decisions</h2>" in text and "<h3>Segments</h3>" in text
    assert "<td>champions</td><td>12</td>" in text and "segment &lt;b&gt;" in text and "a &amp; b" in text
    assert "<svg id='x'></svg>" in text
    with pytest.raises(DataError, match="ReportSection"):
        write_report(pred, act.drop(columns="cutoff"), None, tmp_path / "r2.html", title="t", sections=["x"])


# --- issue 11: a report that reads --------------------------------------------------------------


def test_report_metrics_come_first_in_groups(tmp_path):
    pred, act = _frames(n=300, models=["a", "b"])
    notes = [f"bgnbd: parameters not identified (eigenvalue {i}e-9); window 2023-0{i}-01" for i in range(1, 8)]
    html = write_report(
        pred, act.drop(columns="cutoff"), None, tmp_path / "r.html", title="t", notes=notes
    ).read_text(encoding="utf-8")
    # the metrics start right after the context; the notes come after them
    assert html.index("<h2>Metrics</h2>") < html.index("<h3>Notes</h3>") < html.index("Cumulative gain")
    assert html.index("<h2>Context</h2>") < html.index("<h2>Metrics</h2>")
    # one table per group, none with 26 columns
    titles = re.findall(r"<h3>(Value|Ranking|Churn|Uncertainty|Timing) —", html)
    assert titles == ["Value", "Ranking", "Churn"]  # no model fills quantiles or next purchase
    tables = re.findall(r'<table class="metrics">.*?</table>', html, flags=re.S)
    assert len(tables) == 3
    widths = [t.split("</tr>")[0].count("<th class") for t in tables]
    assert widths == [12, 4, 5] and max(widths) < 26  # model + 11, model + 3, model + 4
    # the seven notes of one kind are one line with the count and the dates they concern
    assert html.count("parameters not identified") == 1
    assert "×7" in html and "dates 2023-01-01, 2023-02-01, 2023-03-01, … (2 more), 2023-06-01, 2023-07-01" in html


def test_group_notes_counts_kinds_and_cutoffs():
    from ltvcast.evaluate.report import group_notes

    notes = [
        "cutoff 2011-01-01: bgnbd: not identified (eig 1.2e-09)",
        "cutoff 2011-04-01: bgnbd: not identified (eig 3.4e-10)",
        "cutoff 2011-04-01: gbm left out: no rows",
        "cutoff 2011-07-01: bgnbd: not identified (eig 1.2e-09)",
    ]
    assert group_notes(notes) == [
        "bgnbd: not identified (eig 1.2e-09) [×3; cutoffs 2011-01-01, 2011-04-01, 2011-07-01; values of the first shown]",
        "cutoff 2011-04-01: gbm left out: no rows",
    ]
    assert group_notes([]) == []


def test_report_failed_model_keeps_its_row_with_reason(tmp_path):
    pred, act = _frames(n=200, models=["a"])
    html = write_report(
        pred, act.drop(columns="cutoff"), None, tmp_path / "r.html", title="t",
        failures={"paretonbd": "maximum likelihood did not converge <x>"},
    ).read_text(encoding="utf-8")
    rows = re.findall(r'<tr class="failed">(.*?)</tr>', html)
    assert len(rows) == 3  # one per shown group: value, ranking, churn
    assert all("paretonbd" in r and "did not converge &lt;x&gt;" in r for r in rows)
    assert 'colspan="11"' in rows[0]
    assert "Warning: models that failed" in html


def test_report_decile_mape_is_percent_with_unit(report):
    _, html = report
    assert "Decile MAPE (%)" in html
    table = re.search(r'<h3>Value —.*?</table>', html, flags=re.S).group(0)
    cells = re.findall(r"<td class=\"[^\"]*\">([^<]*)</td>", table)
    assert any(c.endswith("%") for c in cells)


def test_report_rolling_failed_everywhere_keeps_rows_in_both_tables(tmp_path):
    c2 = pd.Timestamp("2024-07-01", tz="UTC")
    pred, act = _frames(n=200, models=["a"], cutoffs=(CUTOFF, c2))
    reason = "cutoff 2024-01-01: flat | cutoff 2024-07-01: flat"
    html = write_report(pred, act, None, tmp_path / "r.html", title="t", failures={"bgnbd": reason}).read_text()
    rows = re.findall(r'<tr class="failed">(.*?)</tr>', html)
    # value, ranking, churn: once across cutoffs (summary) and once per cutoff
    assert len(rows) == 6 and all("bgnbd" in r and reason in r for r in rows)
    assert html.index("Metrics across 2 cutoffs") < html.index("Metrics per cutoff")
