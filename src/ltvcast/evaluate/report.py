"""The backtest report: one self-contained HTML file.

:func:`write_report` renders the context of a run, the metrics of
:func:`ltvcast.metrics.evaluate` split into groups (value, ranking, churn,
uncertainty, timing; for rolling-origin backtests also mean ± standard
deviation across cutoffs), the notes de-duplicated (:func:`group_notes`), one
cumulative gain (Lorenz) chart with every model, and a decile calibration
chart per model. A model that failed keeps a row with its reason.

The file has no scripts and loads nothing: CSS is inline and the charts are
inline SVG drawn with matplotlib (``matplotlib.figure.Figure`` directly, so the
global pyplot backend is never touched). Every string from the caller (title,
context, model names) is HTML-escaped by the Jinja2 template (autoescape), and
matplotlib escapes text inside the SVG. The library prints nothing.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from ltvcast.errors import DataError
from ltvcast.metrics import (
    METRIC_COLUMNS,
    decile_calibration,
    evaluate,
    gain_curve,
    join_actuals,
    summarize_backtest,
)

__all__ = ["METRIC_GROUPS", "group_notes", "write_report"]

_WARNING_KEYS = ("warning", "warn", "caution")


# --------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _fmt_fixed(digits: int) -> Callable[[float], str]:
    return lambda v: f"{v:,.{digits}f}"


def _fmt_pct_signed(v: float) -> str:
    return f"{v:+.1f}%"


def _fmt_share(v: float) -> str:
    return f"{v:.1%}"


def _fmt_int(v: float) -> str:
    return f"{int(round(v)):,}"


def _fmt_general(v: Any) -> str:
    if isinstance(v, (int, np.integer)):
        return f"{v:,}"
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)


def _fmt_cutoff(v: Any) -> str:
    try:
        ts = pd.Timestamp(v)
    except (TypeError, ValueError):
        return str(v)
    if ts is pd.NaT:
        return "–"
    if ts.hour == 0 and ts.minute == 0 and ts.second == 0 and ts.microsecond == 0 and ts.nanosecond == 0:
        return ts.strftime("%Y-%m-%d")
    return ts.isoformat()


@dataclass(frozen=True)
class _Col:
    label: str
    description: str
    fmt: Callable[[Any], str]


_COLUMNS: dict[str, _Col] = {
    "model": _Col("Model", "Model name.", str),
    "cutoff": _Col("Cutoff", "Point in time of the prediction; features use only data before it.", _fmt_cutoff),
    "horizon_days": _Col("Horizon (d)", "Length of the predicted window after the cutoff, in days.", lambda v: f"{v:g}"),
    "n_customers": _Col("Customers", "Customers scored.", _fmt_int),
    "tx_mae": _Col("Tx MAE", "Mean absolute error of predicted purchase occasions in the horizon.", _fmt_fixed(3)),
    "tx_rmse": _Col("Tx RMSE", "Root mean squared error of predicted purchase occasions.", _fmt_fixed(3)),
    "spend_mae": _Col("Spend MAE", "Mean absolute error of predicted spend per customer.", _fmt_fixed(2)),
    "spend_rmse": _Col("Spend RMSE", "Root mean squared error of predicted spend per customer.", _fmt_fixed(2)),
    "total_spend_pred": _Col("Spend pred. total", "Sum of predicted spend over all customers.", _fmt_fixed(0)),
    "total_spend_actual": _Col("Spend actual total", "Sum of actual spend in the horizon.", _fmt_fixed(0)),
    "total_spend_error_pct": _Col(
        "Spend total err.", "(predicted total − actual total) / |actual total|; positive = over-prediction.", _fmt_pct_signed
    ),
    "total_tx_error_pct": _Col(
        "Tx total err.", "Same for the total number of purchase occasions.", _fmt_pct_signed
    ),
    "gini_norm": _Col(
        "Gini (norm.)",
        "Normalized Gini of spend: ranking quality relative to a perfect ranking (1 = perfect, ≈0 = random).",
        _fmt_fixed(3),
    ),
    "spearman": _Col("Spearman", "Rank correlation of predicted and actual spend.", _fmt_fixed(3)),
    "top_decile_capture": _Col(
        "Top-10% capture", "Share of actual spend held by the 10% of customers with the highest predictions.", _fmt_share
    ),
    "decile_mape": _Col(
        "Decile MAPE (%)",
        "Mean over prediction deciles of |mean predicted − mean actual| / |mean actual| (deciles with zero actual skipped).",
        _fmt_share,
    ),
    "churn_rate": _Col("Churn rate", "Share of customers with no purchase in the horizon.", _fmt_share),
    "churn_auc": _Col("Churn ROC AUC", "ROC AUC of p_churn for no purchase in the horizon (0.5 = random).", _fmt_fixed(3)),
    "churn_pr_auc": _Col(
        "Churn PR AUC", "Average precision of p_churn, churned = positive class (random ≈ churn rate).", _fmt_fixed(3)
    ),
    "churn_brier": _Col("Churn Brier", "Mean squared error of p_churn against churned (lower is better).", _fmt_fixed(4)),
    "spend_coverage_80": _Col(
        "p10–p90 coverage",
        "Share of customers whose actual spend lies in [pred_spend_p10, pred_spend_p90] (80% = calibrated).",
        _fmt_share,
    ),
    "spend_pinball": _Col(
        "Pinball loss", "Mean pinball loss of the predicted 10%, 50% and 90% spend quantiles (lower is better).",
        _fmt_fixed(2),
    ),
    "spend_mae_p50": _Col(
        "Spend MAE (p50)",
        "MAE of the median forecast pred_spend_p50 (MAE is minimised by the median; Spend MAE scores the mean).",
        _fmt_fixed(2),
    ),
    "next_purchase_mae": _Col(
        "Next purchase MAE (d)",
        "Mean absolute error in days of pred_next_purchase_days, over the customers who bought in the horizon.",
        _fmt_fixed(1),
    ),
    "next_purchase_cindex": _Col(
        "Next purchase C-index",
        "Harrell's concordance of pred_next_purchase_days with the days to the first purchase; customers who "
        "did not buy are censored at the end of the horizon (0.5 = random, 1 = perfect order).",
        _fmt_fixed(3),
    ),
}


def _column(name: str) -> _Col:
    return _COLUMNS.get(name, _Col(name, name, _fmt_general))


def _cell(value: Any, fmt: Callable[[Any], str], align: str = "") -> dict[str, Any]:
    if _is_missing(value):
        return {"text": "–", "na": True, "align": align}
    try:
        text = fmt(value)
    except (TypeError, ValueError):
        text = str(value)
    return {"text": text, "na": False, "align": align}


#: The metric groups of the report and the terminal: (key, title, metric columns).
METRIC_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "value",
        "Value — how much each customer spends and buys",
        (
            "n_customers",
            "horizon_days",
            "spend_mae",
            "spend_rmse",
            "total_spend_pred",
            "total_spend_actual",
            "total_spend_error_pct",
            "decile_mape",
            "tx_mae",
            "tx_rmse",
            "total_tx_error_pct",
        ),
    ),
    ("ranking", "Ranking — who spends most", ("gini_norm", "spearman", "top_decile_capture")),
    ("churn", "Churn — who buys nothing in the horizon", ("churn_rate", "churn_auc", "churn_pr_auc", "churn_brier")),
    ("uncertainty", "Uncertainty — spend quantiles", ("spend_coverage_80", "spend_pinball", "spend_mae_p50")),
    ("timing", "Timing — when the next purchase comes", ("next_purchase_mae", "next_purchase_cindex")),
)
_KEYS = ("model", "cutoff")


def _groups(columns: Sequence[str]) -> list[tuple[str, str, list[str]]]:
    """The metric groups restricted to ``columns``; unknown columns go to a last "other" group."""
    known = {c for _, _, cols in METRIC_GROUPS for c in cols} | set(_KEYS)
    out = [(key, title, [c for c in cols if c in columns]) for key, title, cols in METRIC_GROUPS]
    other = [c for c in columns if c not in known]
    if other:
        out.append(("other", "Other columns", other))
    return [g for g in out if g[2]]


def _failed_row(model: str, reason: str, width: int) -> dict[str, Any]:
    return {"cells": [_cell(model, str, "l")], "failure": f"failed, no predictions: {reason}", "span": width}


def _metrics_tables(metrics: pd.DataFrame, failures: Mapping[str, str]) -> list[dict[str, Any]]:
    """One table per metric group: rows = models (× cutoffs), columns = the group's metrics."""
    keys = ["model"] + (["cutoff"] if "cutoff" in metrics.columns and metrics["cutoff"].nunique() > 1 else [])
    present = set(map(str, metrics["model"]))
    tables = []
    for key, title, cols in _groups([c for c in metrics.columns if c not in _KEYS]):
        if not metrics[cols].notna().any().any() and key != "value":
            continue
        header = [{"label": _column(c).label, "description": _column(c).description, "align": "l"} for c in keys]
        header += [{"label": _column(c).label, "description": _column(c).description, "align": ""} for c in cols]
        rows = []
        for _, rec in metrics.iterrows():
            cells = [_cell(rec[c], _column(c).fmt, "l") for c in keys]
            cells += [_cell(rec[c], _column(c).fmt) for c in cols]
            rows.append({"cells": cells, "failure": None, "span": 0})
        for model, reason in failures.items():
            if str(model) not in present:
                rows.append(_failed_row(str(model), str(reason), len(header) - 1))
        tables.append({"key": key, "title": title, "columns": header, "rows": rows})
    return tables


def _summary_tables(summary: pd.DataFrame, failures: Mapping[str, str]) -> list[dict[str, Any]]:
    """Mean ± standard deviation across cutoffs, one table per metric group."""
    metrics = [c for c in summary.columns if c.endswith("_mean")]
    metrics = [c[: -len("_mean")] for c in metrics]
    present = set(map(str, summary["model"]))
    tables = []
    for key, title, cols in _groups(metrics):
        cols = [c for c in cols if c != "horizon_days" and summary[f"{c}_mean"].notna().any()]
        if not cols:
            continue
        header = [
            {"label": "Model", "description": "Model name.", "align": "l"},
            {"label": "Cutoffs", "description": "Number of cutoffs averaged.", "align": ""},
        ] + [{"label": _column(c).label, "description": _column(c).description, "align": ""} for c in cols]
        rows = []
        for _, rec in summary.iterrows():
            cells = [_cell(rec["model"], str, "l"), _cell(rec["n_cutoffs"], _fmt_int)]
            for c in cols:
                fmt = _column(c).fmt
                mean, std = rec[f"{c}_mean"], rec[f"{c}_std"]
                if _is_missing(mean):
                    cells.append(_cell(None, fmt))
                    continue
                text = fmt(mean)
                if not _is_missing(std):
                    # std of a percent/share column is shown in the same unit, unsigned
                    std_text = fmt(std).lstrip("+") if fmt is not _fmt_int else f"{std:,.1f}"
                    text = f"{text} ± {std_text}"
                cells.append({"text": text, "na": False, "align": ""})
            rows.append({"cells": cells, "failure": None, "span": 0})
        for model, reason in failures.items():
            if str(model) not in present:
                rows.append(_failed_row(str(model), str(reason), len(header) - 1))
        tables.append({"key": key, "title": title, "columns": header, "rows": rows})
    return tables


_PREFIX_RE = re.compile(r"^cutoff (\d{4}-\d{2}-\d{2}): ")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T][\d:]+)?")
_NUM_RE = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?", re.IGNORECASE)


def _abbreviate(items: Sequence[str], keep: int = 6) -> str:
    if len(items) <= keep:
        return ", ".join(items)
    return ", ".join(items[:3]) + f", … ({len(items) - 5} more), " + ", ".join(items[-2:])


def group_notes(notes: Sequence[str]) -> list[str]:
    """Notes de-duplicated: one line per kind, with its count and the cutoffs and dates it concerns.

    Two notes are of one kind when they read the same once a leading
    ``cutoff YYYY-MM-DD:`` prefix is removed, dates are masked and numbers are
    masked (the same "not identified" message from every training window is
    one kind). A kind seen once is shown as it is; a kind seen ``n > 1``
    times is shown as its first note, then ``[×n; cutoffs …; dates …]`` (the
    distinct cutoffs of the prefixes and dates named in the notes, in order of
    appearance; numbers are those of the first note when they differ).

    Args:
        notes: text lines, in order.

    Returns:
        One line per kind, in order of first appearance.
    """
    groups: dict[str, dict[str, Any]] = {}
    for note in notes:
        text = str(note)
        match = _PREFIX_RE.match(text)
        body = text[match.end() :] if match else text
        key = _NUM_RE.sub("#", _DATE_RE.sub("D", body))
        g = groups.setdefault(key, {"first": text, "body": body, "n": 0, "cutoffs": [], "dates": [], "texts": set()})
        g["n"] += 1
        g["texts"].add(body)
        if match and match.group(1) not in g["cutoffs"]:
            g["cutoffs"].append(match.group(1))
        for d in _DATE_RE.findall(body):
            if d not in g["dates"]:
                g["dates"].append(d)
    lines = []
    for g in groups.values():
        if g["n"] == 1:
            lines.append(g["first"])
            continue
        where = [f"×{g['n']}"]
        if g["cutoffs"]:
            where.append(f"cutoffs {_abbreviate(g['cutoffs'])}")
        if len(g["dates"]) > 1:
            where.append(f"dates {_abbreviate(g['dates'])}")
        if len(g["texts"]) > 1:
            where.append("values of the first shown")
        lines.append(f"{g['body']} [{'; '.join(where)}]")
    return lines


# --------------------------------------------------------------------------
# charts
# --------------------------------------------------------------------------

_RC = {
    "svg.fonttype": "none",  # text as <text>, not glyph paths: much smaller files
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e3e7ec",
    "grid.linewidth": 0.6,
    "axes.edgecolor": "#8a96a3",
    "axes.titlesize": 10.0,
    "legend.frameon": False,
}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
_ID_RE = re.compile(r'\bid="([^"]+)"')


def _mpl_text(text: str) -> str:
    """A caller's string made literal for matplotlib (no mathtext, kept in legends)."""
    text = str(text).replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def _svg(fig: Any, key: str) -> str:
    """Render ``fig`` to an inline ``<svg>`` element with ids unique to ``key``."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({**_RC, "svg.hashsalt": f"ltvcast-{key}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]  # drop the XML declaration and DOCTYPE
    # several SVGs share one HTML document: give every id a per-chart prefix
    text = _ID_RE.sub(lambda m: f'id="{key}-{m.group(1)}"', text)
    text = text.replace('href="#', f'href="#{key}-').replace("url(#", f"url(#{key}-")
    # scale with the page: keep the viewBox, drop the fixed size
    text = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", text, count=1)
    return text


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _gain_chart(curves: list[tuple[str, str, np.ndarray, np.ndarray]], perfect: tuple[np.ndarray, np.ndarray]) -> str:
    import matplotlib

    # a fixed grid keeps the file small for any number of customers; finer near 0
    grid = np.unique(np.concatenate([np.linspace(0.0, 1.0, 201), np.geomspace(1e-4, 0.05, 40)]))
    with matplotlib.rc_context(_RC):
        fig = _figure(6.4, 4.4)
        ax = fig.add_subplot()
        ax.plot(grid, np.interp(grid, *perfect), color="#222222", linestyle="--", linewidth=1.2, label="perfect (by actual)")
        for model, color, x, y in curves:
            ax.plot(grid, np.interp(grid, x, y), color=color, linewidth=1.6, label=_mpl_text(model))
        ax.plot([0, 1], [0, 1], color="#9aa6b2", linestyle=":", linewidth=1.2, label="random")
        ax.set_xlim(0, 1)
        ax.set_ylim(min(0.0, float(min(np.min(y) for *_, y in curves)) if curves else 0.0), 1.02)
        ax.set_xlabel("share of customers targeted (highest predicted spend first)")
        ax.set_ylabel("share of actual spend captured")
        ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.legend(loc="lower right")
    return _svg(fig, "gain")


def _decile_chart(model: str, table: pd.DataFrame, key: str, color: str) -> str:
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = _figure(5.2, 3.4)
        ax = fig.add_subplot()
        x = table["decile"].to_numpy()
        ax.bar(x - 0.2, table["mean_pred"], width=0.4, color=color, label="mean predicted")
        ax.bar(x + 0.2, table["mean_actual"], width=0.4, color="#9aa6b2", label="mean actual")
        ax.axhline(0.0, color="#8a96a3", linewidth=0.6)
        ax.set_xticks(x)
        ax.set_xlabel("decile of predicted spend (1 = lowest, 10 = highest)")
        ax.set_ylabel("spend per customer")
        ax.set_title(_mpl_text(model))
        ax.legend(loc="upper left")
    return _svg(fig, key)


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------


def _calibration_line(g: pd.DataFrame) -> str:
    """One line of level calibration for a model: totals, churn level, interval coverage."""
    pred = float(g["pred_spend"].sum())
    actual = float(g["actual_spend"].sum())
    parts = [f"Total spend predicted {pred:,.0f} vs actual {actual:,.0f}"]
    if actual != 0:
        parts[0] += f" ({(pred - actual) / abs(actual) * 100:+.1f}%)"
    pc = g["p_churn"].to_numpy(np.float64)
    if not np.isnan(pc).any():
        parts.append(f"mean p_churn {pc.mean():.3f} vs churn rate {(g['actual_transactions'] == 0).mean():.3f}")
    lo = g["pred_spend_p10"].to_numpy(np.float64) if "pred_spend_p10" in g else np.array([np.nan])
    hi = g["pred_spend_p90"].to_numpy(np.float64) if "pred_spend_p90" in g else np.array([np.nan])
    if not (np.isnan(lo).any() or np.isnan(hi).any()):
        y = g["actual_spend"].to_numpy(np.float64)
        parts.append(f"actual spend inside [p10, p90] for {np.mean((y >= lo) & (y <= hi)):.1%} of customers")
    return "; ".join(parts) + "."


def _context_rows(joined: pd.DataFrame, context: Mapping[str, str] | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for key, value in (context or {}).items():
        warning = str(key).strip().lower().startswith(_WARNING_KEYS)
        rows.append({"key": str(key), "value": "" if value is None else str(value), "warning": warning})

    models = sorted(pd.unique(joined["model"]), key=str)
    cutoffs = sorted(pd.unique(joined["cutoff"]))
    horizons = sorted(h for h in pd.unique(joined["horizon_days"]) if not _is_missing(h))
    per_customer = joined.drop_duplicates(["cutoff", "customer_id"])
    # (label, aliases a caller's context key may already use, value)
    derived: list[tuple[str, set[str], str]] = [
        ("Models", {"models", "model"}, ", ".join(map(str, models))),
        (
            "Cutoffs" if len(cutoffs) > 1 else "Cutoff",
            {"cutoff", "cutoffs"},
            ", ".join(_fmt_cutoff(c) for c in cutoffs),
        ),
        (
            "Horizon (days)",
            {"horizon", "horizon (days)", "horizon_days", "horizon days"},
            ", ".join(f"{h:g}" for h in horizons) if horizons else "not given",
        ),
    ]
    for cutoff, g in per_customer.groupby("cutoff", sort=True):
        suffix = f" ({_fmt_cutoff(cutoff)})" if len(cutoffs) > 1 else ""
        n = len(g)
        buyers = int((g["actual_transactions"] > 0).sum())
        derived += [
            (f"Customers scored{suffix}", {"customers", "n_customers", "customers scored"}, f"{n:,}"),
            (f"Customers who bought in the horizon{suffix}", set(), f"{buyers:,} ({buyers / n:.1%})"),
            (f"Actual spend in the horizon{suffix}", set(), f"{g['actual_spend'].sum():,.2f}"),
        ]
    given = {r["key"].strip().lower() for r in rows}
    # a caller's value wins for a single cutoff; with several, the per-cutoff facts add detail
    rows += [
        {"key": label, "value": value, "warning": False}
        for label, aliases, value in derived
        if label.lower() not in given and not (len(cutoffs) == 1 and aliases & given)
    ]
    return rows


def _render(**values: Any) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ltvcast.evaluate", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(**values)


@dataclass(frozen=True)
class ReportSection:
    """A section a room above ``evaluate`` adds to the report (decisions, model health, ...).

    Everything is escaped except ``figures``, which must be SVG markup made
    by ltvcast itself (e.g. with :func:`svg_figure`).

    Attributes:
        title: the section heading.
        intro: one "how to read" paragraph (may be empty).
        tables: (caption, frame) pairs, shown as given (values formatted with
            ``str``; format numbers before, e.g. with ``DataFrame.round``).
        figures: inline SVG charts.
        notes: lines listed under the tables.
    """

    title: str
    intro: str = ""
    tables: Sequence[tuple[str, pd.DataFrame]] = ()
    figures: Sequence[str] = ()
    notes: Sequence[str] = ()


def svg_figure(fig: Any, key: str) -> str:
    """A matplotlib figure as self-contained inline SVG (ids prefixed by ``key``), the figure closed."""
    return _svg(fig, key)


def _section(section: ReportSection) -> dict[str, Any]:
    if not isinstance(section, ReportSection):
        raise DataError(f"sections must be ReportSection objects, got {type(section).__name__}")
    tables = [
        {
            "caption": str(caption),
            "columns": [str(c) for c in frame.columns],
            "rows": [["" if _is_missing(v) else str(v) for v in row] for row in frame.itertuples(index=False)],
        }
        for caption, frame in section.tables
    ]
    return {
        "title": str(section.title),
        "intro": str(section.intro),
        "tables": tables,
        "figures": [Markup(f) for f in section.figures],
        "notes": [str(n) for n in section.notes],
    }


def write_report(
    predictions: pd.DataFrame,
    actuals: pd.DataFrame,
    metrics: pd.DataFrame | None,
    path: str | Path,
    *,
    title: str,
    context: Mapping[str, str] | None = None,
    notes: Sequence[str] | None = None,
    sections: Sequence[ReportSection] = (),
    failures: Mapping[str, str] | None = None,
) -> Path:
    """Write the backtest report as one self-contained HTML file.

    Args:
        predictions: canonical predictions frame (DESIGN.md), one row per
            customer × model (× cutoff); see
            :func:`ltvcast.metrics.join_actuals` for what is read.
        actuals: ``customer_id``, ``actual_transactions``, ``actual_spend``
            (and ``cutoff`` when several cutoffs are present).
        metrics: the frame of :func:`ltvcast.metrics.evaluate` for
            these predictions, shown as given (extra columns are shown too);
            ``None`` computes it.
        path: file to write (parent folders are created); overwritten.
        title: report title.
        context: key → text shown at the top, e.g. ``{"Dataset": "CDNOW",
            "Note": "..."}``. Keys starting with "warning" are highlighted.
            Derived facts (models, cutoffs, horizon, customer counts, actual
            spend) are added unless a key of the same name is given.
        notes: optional lines (e.g. model warnings: a fit that hit a bound)
            listed after the metrics, de-duplicated by :func:`group_notes`
            (folded when there are more than five kinds); escaped like
            everything else.
        sections: extra sections after the charts (:class:`ReportSection`),
            built by the rooms above (decisions, model health).
        failures: models that failed (model name -> reason); each keeps a
            row in every metrics table with its reason, and the context
            names them in a highlighted row.

    Returns:
        The path written.

    Charts use the latest cutoff in ``predictions`` (with several cutoffs the
    metrics tables still cover all of them): one cumulative gain chart with
    every model plus the perfect and random curves, and per model a decile
    calibration chart of mean predicted vs mean actual spend with a line of
    level calibration under it (predicted vs actual total spend, mean
    ``p_churn`` vs the churn rate, share of actual spend inside
    ``[pred_spend_p10, pred_spend_p90]`` when the model fills them). A model whose
    ``pred_spend`` has missing values gets a note instead of charts; so does
    the gain chart when actual spend does not total above zero.

    Raises:
        DataError: as :func:`~ltvcast.metrics.join_actuals`, or a
            ``metrics`` frame without a ``model`` column.
    """
    from ltvcast import __version__

    joined = join_actuals(predictions, actuals)
    if metrics is None:
        metrics = evaluate(predictions, actuals)
    if not isinstance(metrics, pd.DataFrame) or "model" not in metrics.columns:
        raise DataError("metrics must be the frame of evaluate(), with a model column")
    if context is not None and not isinstance(context, Mapping):
        raise DataError(f"context must be a mapping of text to text, got {type(context).__name__}")

    if notes is not None and (isinstance(notes, str) or not isinstance(notes, Sequence)):
        raise DataError("notes must be a list of text lines")
    if failures is not None and not isinstance(failures, Mapping):
        raise DataError("failures must be a mapping of model name to reason")
    failed = {str(k): str(v) for k, v in (failures or {}).items()}
    note_lines = [str(n) for n in (notes or [])]
    chart_cutoff = joined["cutoff"].max()
    at_cutoff = joined[joined["cutoff"] == chart_cutoff]
    models = sorted(pd.unique(at_cutoff["model"]), key=str)
    skipped = sorted(set(pd.unique(joined["model"])) - set(models), key=str)
    if skipped:
        note_lines.append(
            f"No charts for {', '.join(map(str, skipped))}: no predictions at the latest cutoff {_fmt_cutoff(chart_cutoff)}."
        )

    decile_charts: list[dict[str, Any]] = []
    curves: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    first = at_cutoff[at_cutoff["model"] == models[0]]
    total_actual = float(first["actual_spend"].sum())
    for i, model in enumerate(models):
        g = at_cutoff[at_cutoff["model"] == model]
        y = g["actual_spend"].to_numpy(np.float64)
        p = g["pred_spend"].to_numpy(np.float64)
        n_missing = int(np.isnan(p).sum())
        if n_missing:
            decile_charts.append(
                {
                    "model": str(model),
                    "svg": None,
                    "missing": f"No chart: pred_spend is missing for {n_missing:,} customer(s).",
                    "summary": "",
                }
            )
            continue
        color = _PALETTE[i % len(_PALETTE)]
        svg = _decile_chart(str(model), decile_calibration(y, p), f"dec{i}", color)
        decile_charts.append({"model": str(model), "svg": svg, "missing": None, "summary": _calibration_line(g)})
        if total_actual > 0:
            x, share = gain_curve(y, p)
            curves.append((str(model), color, x, share))

    gain_chart = None
    gain_chart_missing = ""
    if not total_actual > 0:
        gain_chart_missing = f"No chart: the actual spend totals {total_actual:,.2f}, so shares of it are undefined."
    elif not curves:
        gain_chart_missing = "No chart: no model has complete spend predictions."
    else:
        y_all = first["actual_spend"].to_numpy(np.float64)
        gain_chart = _gain_chart(curves, gain_curve(y_all, y_all))

    summary_tables: list[dict[str, Any]] = []
    n_cutoffs = int(metrics["cutoff"].nunique()) if "cutoff" in metrics.columns else 1
    if n_cutoffs > 1:
        summary_tables = _summary_tables(summarize_backtest(metrics), failed)
    context_rows = _context_rows(joined, context)
    if failed:
        context_rows.insert(
            0,
            {
                "key": "Warning: models that failed",
                "value": "; ".join(f"{m}: {r}" for m, r in failed.items()),
                "warning": True,
            },
        )
    grouped = group_notes(note_lines)

    glossary = [
        {"label": _COLUMNS[c].label, "description": _COLUMNS[c].description}
        for c in METRIC_COLUMNS
        if c in metrics.columns
    ]

    html = _render(
        version=__version__,
        title=str(title),
        context_rows=context_rows,
        notes=grouped,
        n_notes=len(note_lines),
        fold_notes=len(grouped) > 5,
        metrics_tables=_metrics_tables(metrics, failed),
        summary_tables=summary_tables,
        n_cutoffs=n_cutoffs,
        glossary=glossary,
        chart_cutoff=_fmt_cutoff(chart_cutoff) if not _is_missing(chart_cutoff) else "",
        gain_chart=Markup(gain_chart) if gain_chart else None,
        gain_chart_missing=gain_chart_missing,
        decile_charts=[
            {**c, "svg": Markup(c["svg"]) if c["svg"] else None} for c in decile_charts
        ],
        sections=[_section(s) for s in sections],
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out

