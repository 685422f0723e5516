"""Segments: a CLV tier × churn-risk grid, the RFM groups shops know, and value at risk.

Every customer of one model's predictions (the canonical frame, DESIGN.md)
gets

* a **value tier** from quantiles of the predicted value (``pred_spend`` by
  default): with cut points ``q = (0.5, 0.8, 0.95)`` the tiers are
  ``bottom 50%``, ``50–80%``, ``80–95%``, ``top 5%``; tier k holds the values
  in ``(Q(q_{k-1}), Q(q_k)]`` (``numpy.quantile``, linear interpolation), so a
  value equal to a cut point stays in the lower tier and customers with the
  same value always share a tier;
* a **churn-risk band** from fixed ``p_churn`` edges: with ``(0.3, 0.7)`` the
  bands are ``low`` ``[0, 0.3)``, ``medium`` ``[0.3, 0.7)``, ``high``
  ``[0.7, 1]``;
* **R, F, M quintile scores** (1–5, 5 best) from the RFM summary at the
  cutoff (:func:`ltvcast.features.rfm_summary`, unit days): R from the days
  since the last purchase occasion (``T − recency``; fewer days = higher
  score), F from the purchase occasions (``frequency + 1``), M from the total
  spend before the cutoff (``total_spend``). A score is
  ``floor(5 · (rank − 1) / n) + 1`` with ``rank`` the lowest rank of the
  value's ties (``rank(method="min")``), so n distinct values fill the five
  scores equally and tied customers share the score of the first position
  of their block (a shop where 60 % bought once scores them all F = 1);
* an **RFM group** from R and ``FM = ceil((F + M) / 2)`` by the grid of
  :data:`RFM_GROUP_RULES` (complete: every (R, FM) pair is in exactly one of
  the eight groups). The names and the R-versus-FM layout are those of the
  common RFM segmentation tables (the ``rfm`` R package's ``rfm_segment``
  example table, rsquaredacademy/rfm; Putler's "RFM analysis" guide; the
  groups Klaviyo and Shopify show), folded into eight groups without
  overlaps: docs/decisions.md shows the grid.

**Value at risk** (DESIGN.md): the predicted value a customer takes away if
they churn. Two definitions, :data:`VAR_METHODS`:

* ``"expected_loss"`` (default): ``pred_spend × p_churn`` — value weighted
  by the chance of losing it; needs only the predictions;
* ``"rate_drop"``: ``max(0, own_rate × horizon_days − pred_spend)`` with
  ``own_rate = total_spend / (T + 1)`` (currency per day since the first
  purchase occasion, T in days; + 1 counts the first day) — the drop from the
  customer's own historical pace; needs the RFM summary.

The library prints nothing; money is in the shop currency.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ltvcast.errors import DataError

__all__ = [
    "DEFAULT_RISK_EDGES",
    "DEFAULT_TIER_QUANTILES",
    "RFM_GROUPS",
    "RFM_GROUP_RULES",
    "VAR_METHODS",
    "assign_segments",
    "quintile_scores",
    "retention_list",
    "rfm_group",
    "risk_labels",
    "segment_summary",
    "tier_labels",
    "value_at_risk",
]

#: Default value-tier cut points (quantiles of the predicted value).
DEFAULT_TIER_QUANTILES: tuple[float, ...] = (0.5, 0.8, 0.95)
#: Default churn-risk band edges on ``p_churn``.
DEFAULT_RISK_EDGES: tuple[float, ...] = (0.3, 0.7)
#: Value-at-risk definitions (module doc).
VAR_METHODS: tuple[str, ...] = ("expected_loss", "rate_drop")
#: The RFM groups, best first.
RFM_GROUPS: tuple[str, ...] = (
    "champions",
    "loyal",
    "potential loyalist",
    "new",
    "at risk",
    "can't lose",
    "hibernating",
    "lost",
)
#: group -> (R scores, FM scores): the cells of the 5 × 5 R × FM grid it holds.
RFM_GROUP_RULES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "champions": ((4, 5), (4, 5)),
    "loyal": ((3,), (3, 4, 5)),
    "potential loyalist": ((4, 5), (2, 3)),
    "new": ((4, 5), (1,)),
    "at risk": ((1, 2), (3, 4)),
    "can't lose": ((1, 2), (5,)),
    "hibernating": ((2, 3), (1, 2)),
    "lost": ((1,), (1, 2)),
}

_REQUIRED = ("customer_id", "model", "pred_spend", "p_churn")


# --------------------------------------------------------------------------- labels
def _check_cuts(cuts: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(list(cuts), dtype=float)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)) or np.any((arr <= 0) | (arr >= 1)):
        raise DataError(f"{what} must be numbers strictly between 0 and 1, got {list(cuts)}")
    if np.any(np.diff(arr) <= 0):
        raise DataError(f"{what} must increase, got {list(cuts)}")
    return arr


def _pct(v: float) -> str:
    return f"{100 * v:.10g}%"


def tier_labels(quantiles: Sequence[float] = DEFAULT_TIER_QUANTILES) -> list[str]:
    """Names of the value tiers for the cut points ``quantiles``, lowest tier first.

    ``(0.5, 0.8, 0.95)`` → ``["bottom 50%", "50–80%", "80–95%", "top 5%"]``; no
    cut point → ``["all"]``.

    Raises:
        DataError: a cut point outside (0, 1), or not increasing.
    """
    q = _check_cuts(quantiles, "tier quantiles")
    if q.size == 0:
        return ["all"]
    edges = [0.0, *q.tolist(), 1.0]
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo == 0.0:
            out.append(f"bottom {_pct(hi)}")
        elif hi == 1.0:
            out.append(f"top {_pct(round(1.0 - lo, 12))}")
        else:
            out.append(f"{_pct(lo)}–{_pct(hi)}")
    return out


def risk_labels(edges: Sequence[float] = DEFAULT_RISK_EDGES) -> list[str]:
    """Names of the churn-risk bands for ``p_churn`` edges, lowest risk first.

    Two edges give ``low``, ``medium``, ``high``; one gives ``low``, ``high``;
    otherwise ``p_churn a–b`` per band.

    Raises:
        DataError: an edge outside (0, 1), or not increasing.
    """
    e = _check_cuts(edges, "risk edges")
    if e.size == 1:
        return ["low", "high"]
    if e.size == 2:
        return ["low", "medium", "high"]
    bounds = [0.0, *e.tolist(), 1.0]
    return [f"p_churn {lo:g}–{hi:g}" for lo, hi in zip(bounds[:-1], bounds[1:])]


# --------------------------------------------------------------------------- RFM
def quintile_scores(values: np.ndarray | pd.Series, *, higher_is_better: bool = True) -> np.ndarray:
    """Quintile scores 1–5: ``floor(5 (rank − 1) / n) + 1``, ``rank`` the lowest rank among ties.

    Args:
        values: (n,) numbers, no NaN.
        higher_is_better: False scores the smallest values 5 (recency in days).

    Returns:
        (n,) int64 scores; ten distinct values score 1,1,2,2,3,3,4,4,5,5 in
        order; tied values share the score of the lowest rank of their block.

    Raises:
        DataError: a NaN value.
    """
    v = np.asarray(values, dtype=float)
    if np.isnan(v).any():
        raise DataError("RFM scores need complete values; found NaN")
    n = v.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    ranks = pd.Series(v if higher_is_better else -v).rank(method="min").to_numpy()
    return np.floor(5.0 * (ranks - 1.0) / n).astype(np.int64) + 1


def rfm_group(r: np.ndarray, fm: np.ndarray) -> np.ndarray:
    """The RFM group of each (R, FM) score pair by :data:`RFM_GROUP_RULES`.

    Args:
        r, fm: (n,) integer scores in 1..5.

    Returns:
        (n,) object array of group names.

    Raises:
        DataError: a score outside 1..5.
    """
    r, fm = np.asarray(r, dtype=np.int64), np.asarray(fm, dtype=np.int64)
    if r.size and (r.min() < 1 or r.max() > 5 or fm.min() < 1 or fm.max() > 5):
        raise DataError("RFM scores must lie in 1..5")
    grid = np.empty((6, 6), dtype=object)
    for name, (rs, fms) in RFM_GROUP_RULES.items():
        for a in rs:
            for b in fms:
                grid[a, b] = name
    return grid[r, fm]


def _rfm_columns(summary: pd.DataFrame, unit_days: float) -> pd.DataFrame:
    need = ("customer_id", "frequency", "recency", "T", "total_spend")
    missing = [c for c in need if c not in summary.columns]
    if missing:
        raise DataError(f"the RFM summary lacks column(s) {missing} (use ltvcast.features.rfm_summary)")
    days_since = (summary["T"].to_numpy(float) - summary["recency"].to_numpy(float)) * unit_days
    occasions = summary["frequency"].to_numpy(float) + 1.0
    total = summary["total_spend"].to_numpy(float)
    r = quintile_scores(days_since, higher_is_better=False)
    f = quintile_scores(occasions)
    m = quintile_scores(total)
    fm = (f + m + 1) // 2
    return pd.DataFrame(
        {
            "customer_id": summary["customer_id"].astype("string").to_numpy(),
            "days_since_last": days_since,
            "occasions": occasions,
            "total_spend": total,
            "tenure_days": summary["T"].to_numpy(float) * unit_days,
            "r_score": r,
            "f_score": f,
            "m_score": m,
            "fm_score": fm,
            "rfm_group": rfm_group(r, fm),
        }
    )


# --------------------------------------------------------------------------- value at risk
def value_at_risk(frame: pd.DataFrame, method: str = "expected_loss") -> np.ndarray:
    """Value at risk per customer (module doc), currency.

    Args:
        frame: n rows with ``pred_spend`` and ``p_churn`` (``expected_loss``)
            or ``pred_spend``, ``horizon_days``, ``total_spend`` and
            ``tenure_days`` (``rate_drop``), as :func:`assign_segments` makes.
        method: one of :data:`VAR_METHODS`.

    Returns:
        (n,) value at risk, >= 0 where the inputs are.

    Raises:
        DataError: unknown method or missing columns.
    """
    if method not in VAR_METHODS:
        raise DataError(f"value-at-risk method {method!r} is not one of {', '.join(VAR_METHODS)}")
    if method == "expected_loss":
        return frame["pred_spend"].to_numpy(float) * frame["p_churn"].to_numpy(float)
    need = [c for c in ("pred_spend", "horizon_days", "total_spend", "tenure_days") if c not in frame.columns]
    if need:
        raise DataError(f"value at risk by rate_drop needs column(s) {need} (RFM summary)")
    rate = frame["total_spend"].to_numpy(float) / (frame["tenure_days"].to_numpy(float) + 1.0)
    return np.maximum(0.0, rate * frame["horizon_days"].to_numpy(float) - frame["pred_spend"].to_numpy(float))


# --------------------------------------------------------------------------- segments
def _one_model(predictions: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(predictions, pd.DataFrame):
        raise DataError(f"predictions must be a DataFrame, got {type(predictions).__name__}")
    missing = [c for c in _REQUIRED if c not in predictions.columns]
    if missing:
        raise DataError(f"the predictions lack column(s) {missing} (canonical predictions frame, DESIGN.md)")
    if predictions.empty:
        raise DataError("the predictions frame is empty")
    models = pd.unique(predictions["model"])
    if len(models) > 1:
        raise DataError(f"segments use one model's predictions; the frame holds {len(models)}: "
                        f"{', '.join(map(str, models))} (choose one)")
    if "cutoff" in predictions.columns and predictions["cutoff"].nunique() > 1:
        raise DataError("segments use one cutoff; the frame holds several")
    if predictions["customer_id"].duplicated().any():
        raise DataError("the predictions hold a customer twice")
    for col in ("pred_spend", "p_churn"):
        if predictions[col].isna().any():
            raise DataError(f"{col} is missing for {int(predictions[col].isna().sum()):,} customer(s)")
    p = predictions["p_churn"].to_numpy(float)
    if np.any((p < 0) | (p > 1)):
        raise DataError("p_churn must lie in [0, 1]")
    return predictions


def assign_segments(
    predictions: pd.DataFrame,
    summary: pd.DataFrame | None = None,
    *,
    tier_quantiles: Sequence[float] = DEFAULT_TIER_QUANTILES,
    risk_edges: Sequence[float] = DEFAULT_RISK_EDGES,
    var_method: str = "expected_loss",
    summary_unit_days: float = 1.0,
) -> pd.DataFrame:
    """Every customer in a value tier × churn-risk cell and an RFM group, with value at risk.

    Args:
        predictions: canonical predictions frame of one model at one cutoff
            (n rows; ``customer_id``, ``model``, ``pred_spend``, ``p_churn``
            complete; ``horizon_days`` for ``rate_drop``).
        summary: the RFM summary at the same cutoff
            (:func:`ltvcast.features.rfm_summary`: ``customer_id``,
            ``frequency``, ``recency``, ``T``, ``total_spend``), or None: no
            RFM columns (and ``rate_drop`` is refused).
        tier_quantiles: value-tier cut points, increasing, in (0, 1).
        risk_edges: churn-risk band edges on ``p_churn``, increasing, in (0, 1).
        var_method: value-at-risk definition (:data:`VAR_METHODS`).
        summary_unit_days: days per unit of the summary's recency and T
            (1 for ``unit="D"``, 7 for weeks).

    Returns:
        One row per customer, in the predictions' order: ``customer_id``,
        ``model``, ``pred_spend``, ``p_churn``, ``value_tier`` and
        ``churn_risk`` (ordered categoricals, lowest first), ``tier_rank``
        (0 = lowest tier), ``value_at_risk``; with a summary also
        ``days_since_last``, ``occasions``, ``total_spend``, ``tenure_days``,
        ``r_score``, ``f_score``, ``m_score``, ``fm_score``, ``rfm_group``
        (ordered categorical of :data:`RFM_GROUPS`; missing for a predicted
        customer the summary lacks).

    Raises:
        DataError: a missing column or value, several models or cutoffs, a
            p_churn outside [0, 1], bad cut points, or an unknown method.
    """
    pred = _one_model(predictions)
    tiers = tier_labels(tier_quantiles)
    risks = risk_labels(risk_edges)
    value = pred["pred_spend"].to_numpy(float)
    p = pred["p_churn"].to_numpy(float)
    cuts = np.quantile(value, np.asarray(list(tier_quantiles), float)) if len(tiers) > 1 else np.zeros(0)
    tier_idx = np.searchsorted(cuts, value, side="left")
    risk_idx = np.searchsorted(np.asarray(list(risk_edges), float), p, side="right")
    out = pd.DataFrame(
        {
            "customer_id": pred["customer_id"].astype("string").to_numpy(),
            "model": pred["model"].astype("string").to_numpy(),
            "pred_spend": value,
            "p_churn": p,
            "value_tier": pd.Categorical.from_codes(tier_idx, categories=tiers, ordered=True),
            "churn_risk": pd.Categorical.from_codes(risk_idx, categories=risks, ordered=True),
            "tier_rank": tier_idx.astype(np.int64),
        }
    )
    if "horizon_days" in pred.columns:
        out["horizon_days"] = pred["horizon_days"].to_numpy(float)
    if summary is not None:
        rfm = _rfm_columns(summary, summary_unit_days)
        out = out.merge(rfm, on="customer_id", how="left", validate="one_to_one")
        out["rfm_group"] = pd.Categorical(out["rfm_group"], categories=list(RFM_GROUPS), ordered=True)
    out["value_at_risk"] = value_at_risk(out, var_method)
    return out


def segment_summary(segments: pd.DataFrame) -> pd.DataFrame:
    """A summary per grid cell and per RFM group.

    Args:
        segments: the frame of :func:`assign_segments`.

    Returns:
        One row per cell of the value tier × churn-risk grid (every cell,
        empty ones with 0 customers) then one per RFM group (when present):
        ``grid`` (``"value x risk"`` or ``"rfm"``), ``value_tier``,
        ``churn_risk``, ``rfm_group`` (the ones that apply), ``customers``,
        ``share_of_customers``, ``predicted_value`` (sum of ``pred_spend``),
        ``share_of_value`` (of the total predicted value; NaN when it is 0),
        ``mean_p_churn`` (NaN for an empty cell), ``value_at_risk`` (sum).
        Each grid's shares sum to 1.

    Raises:
        DataError: the frame lacks the segment columns.
    """
    need = [c for c in ("value_tier", "churn_risk", "pred_spend", "p_churn", "value_at_risk") if c not in segments]
    if need:
        raise DataError(f"segment_summary needs the frame of assign_segments; missing {need}")
    n = len(segments)
    total = float(segments["pred_spend"].sum())

    def agg(keys: list[str]) -> pd.DataFrame:
        g = segments.groupby(keys, observed=False)
        t = pd.DataFrame(
            {
                "customers": g.size(),
                "predicted_value": g["pred_spend"].sum(),
                "mean_p_churn": g["p_churn"].mean(),
                "value_at_risk": g["value_at_risk"].sum(),
            }
        ).reset_index()
        t["share_of_customers"] = t["customers"] / n if n else np.nan
        t["share_of_value"] = t["predicted_value"] / total if total > 0 else np.nan
        return t

    grid = agg(["value_tier", "churn_risk"]).assign(grid="value x risk", rfm_group=pd.NA)
    parts = [grid]
    if "rfm_group" in segments.columns:
        parts.append(agg(["rfm_group"]).assign(grid="rfm", value_tier=pd.NA, churn_risk=pd.NA))
    cols = ["grid", "value_tier", "churn_risk", "rfm_group", "customers", "share_of_customers",
            "predicted_value", "share_of_value", "mean_p_churn", "value_at_risk"]
    frames = []
    for part in parts:
        part = part.copy()
        for c in ("value_tier", "churn_risk", "rfm_group"):
            part[c] = part[c].astype("object").astype("string")
        frames.append(part[cols])
    out = pd.concat(frames, ignore_index=True)
    out["customers"] = out["customers"].astype(np.int64)
    return out


def retention_list(segments: pd.DataFrame, top: int = 20, reasons: pd.DataFrame | None = None) -> pd.DataFrame:
    """The customers with the most value at risk, highest first.

    Args:
        segments: the frame of :func:`assign_segments`.
        top: how many rows (>= 1).
        reasons: optional frame with ``customer_id`` and ``reasons`` (one text
            per customer, e.g. the top drivers joined), merged on.

    Returns:
        ``top`` rows (fewer if fewer customers) sorted by ``value_at_risk``
        descending, ties by ``customer_id``: ``rank`` (1 = first), then the
        segment columns.

    Raises:
        DataError: ``top`` < 1 or no ``value_at_risk`` column.
    """
    if top < 1:
        raise DataError(f"--top must be at least 1, got {top}")
    if "value_at_risk" not in segments.columns:
        raise DataError("retention_list needs the frame of assign_segments (value_at_risk)")
    ranked = segments.sort_values(["value_at_risk", "customer_id"], ascending=[False, True], kind="stable").head(top)
    ranked = ranked.reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    if reasons is not None:
        ranked = ranked.merge(reasons[["customer_id", "reasons"]], on="customer_id", how="left")
    return ranked


# --------------------------------------------------------------------------- inputs
def rfm_at(history, cutoff) -> pd.DataFrame:
    """The RFM summary of every customer at ``cutoff`` in days (:func:`ltvcast.features.rfm_summary`).

    Args:
        history: a :class:`~ltvcast.data.datasets.History`.
        cutoff: the prediction date.

    Returns:
        The summary (``customer_id``, ``frequency``, ``recency``, ``T`` in
        days, ``monetary_value``, ``total_spend``, ...), one row per customer
        with a purchase before the cutoff.

    Raises:
        DataError, CutoffError: as :func:`~ltvcast.features.rfm_summary`.
    """
    from ltvcast.features import rfm_summary

    return rfm_summary(
        history.transactions, cutoff, unit="D", timezone=history.timezone, revenue_basis=history.revenue_basis,
        data_end=history.observation_end, allow_future_cutoff=True,  # the caller checks the cutoff (as before)
    )


def one_model(predictions: pd.DataFrame, model: str | None = None) -> pd.DataFrame:
    """The rows of one model: ``model`` when given, else the only model in the frame.

    Raises:
        DataError: the model is not in the frame, or the frame holds several
            and none is named.
    """
    if "model" not in predictions.columns:
        raise DataError("the predictions lack the model column (canonical predictions frame, DESIGN.md)")
    names = [str(m) for m in pd.unique(predictions["model"])]
    if model is None:
        if len(names) != 1:
            raise DataError(f"the predictions hold {len(names)} models ({', '.join(names)}); choose one with --use")
        return predictions
    if model not in names:
        raise DataError(f"model {model!r} is not in the predictions; they hold {', '.join(names)}")
    return predictions[predictions["model"].astype(str) == model].reset_index(drop=True)


def load_predictions(
    history,
    *,
    model: str | None = None,
    predictions: str | None = None,
    cutoff=None,
    horizon_days: float | None = None,
    registry_root=None,
    use: str | None = None,
    allow_future_cutoff: bool = False,
) -> pd.DataFrame:
    """One model's predictions at one cutoff: from a registered model or a predictions file.

    Args:
        history: the shop's data (scored by the model; its RFM summary is
            read by the caller).
        model: ``NAME[:VERSION]`` in the registry (exclusive with ``predictions``).
        predictions: a ``.parquet``/``.csv`` predictions file (canonical frame).
        cutoff: the prediction date; required with ``model``; with a file,
            the file's rows at this cutoff (default: its only cutoff).
        horizon_days: the horizon to predict with ``model`` (default: the
            one it was trained for).
        registry_root: the registry folder (default: ``ltvcast.registry.DEFAULT_ROOT``).
        use: the model's rows to keep from a file holding several.
        allow_future_cutoff: accept a cutoff after the day following the data end.

    Returns:
        The canonical predictions frame of one model at one cutoff; from a
        registered model, ``frame.attrs["registered"]`` holds it (for reasons).

    Raises:
        DataError: neither or both sources; no cutoff with a model; a file
            with several models and no ``use``, or several cutoffs.
        RegistryError, SchemaMismatchError, CutoffError: as
            :func:`ltvcast.registry.load_model` and
            :func:`~ltvcast.registry.predict_registered`.
    """
    from ltvcast import registry
    from ltvcast.schema.predictions import read_predictions
    from ltvcast.timeutil import check_cutoff, to_day

    if (model is None) == (predictions is None):
        raise DataError("give exactly one of --model NAME[:VERSION] and --predictions FILE")
    if model is not None:
        if cutoff is None:
            raise DataError("--model needs --cutoff (the date to predict from)")
        check_cutoff(cutoff, history.observation_end, allow_future=allow_future_cutoff)
        reg = registry.load_model(model, registry_root if registry_root is not None else registry.DEFAULT_ROOT)
        days = float(horizon_days) if horizon_days is not None else float(reg.manifest["horizon_days"])
        frame = registry.predict_registered(reg, history, cutoff, days)
        frame.attrs["registered"] = reg
        return frame
    frame = one_model(read_predictions(predictions), use)
    if "cutoff" in frame.columns:
        cutoffs = pd.to_datetime(frame["cutoff"], utc=True)
        if cutoff is not None:
            frame = frame[cutoffs == to_day(cutoff)].reset_index(drop=True)
            if frame.empty:
                raise DataError(f"the predictions hold no rows at the cutoff {to_day(cutoff).date()}")
        elif cutoffs.nunique() > 1:
            raise DataError("the predictions hold several cutoffs; choose one with --cutoff")
    return frame


def frame_cutoff(predictions: pd.DataFrame):
    """The cutoff of a one-cutoff predictions frame (UTC midnight).

    Raises:
        DataError: no ``cutoff`` column.
    """
    if "cutoff" not in predictions.columns or predictions["cutoff"].isna().all():
        raise DataError("the predictions have no cutoff; give --cutoff")
    return pd.to_datetime(predictions["cutoff"], utc=True).iloc[0]


def write_segments(segments: pd.DataFrame, summary: pd.DataFrame, out, summary_path=None):
    """Write the per-customer frame (``.parquet`` or ``.csv``) and the summary CSV.

    Args:
        segments: the frame of :func:`assign_segments`.
        summary: the frame of :func:`segment_summary`.
        out: per-customer file.
        summary_path: summary CSV (default: ``<out stem>_summary.csv`` beside ``out``).

    Returns:
        ``(out, summary_path)`` as paths.

    Raises:
        DataError: ``out`` is neither ``.parquet`` nor ``.csv``.
    """
    from pathlib import Path

    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise DataError(f"--out must be a .parquet or .csv file, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        segments.to_parquet(out, index=False)
    else:
        segments.to_csv(out, index=False)
    path = Path(summary_path) if summary_path is not None else out.with_name(f"{out.stem}_summary.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(path, index=False)
    return out, path


def retention_reasons(forecaster, history, cutoff, customer_ids, horizon_days: float, k: int = 3):
    """The churn reasons of a few customers as one text each, from the explain room.

    Uses :func:`ltvcast.explain.core.explain` for the ``p_churn`` target: the
    top ``k`` sentences joined by ``"; "``.

    Args:
        forecaster: a fitted forecaster (a registered model's ``forecaster``,
            or a backtest's fitted one).
        history: the shop's data.
        cutoff: the prediction date.
        customer_ids: the customers (e.g. the retention list's).
        horizon_days: the horizon in days.
        k: reasons per customer.

    Returns:
        ``(frame, note)``: ``frame`` has ``customer_id``, ``reasons`` (None
        when no reasons could be made), ``note`` says why not (else None).
    """
    from ltvcast.errors import LtvcastError
    from ltvcast.explain.core import explain

    try:
        exp = explain(forecaster, history, cutoff, horizon_days, customer_ids=list(customer_ids), k=k)
    except LtvcastError as exc:
        return None, f"reasons: not available for this model ({exc})"
    r = exp.reasons
    r = r[r["target"] == "p_churn"].sort_values(["customer_id", "rank"])
    if r.empty:
        return None, "reasons: the model gave no churn drivers"
    text = r.groupby("customer_id")["sentence"].agg(lambda s: "; ".join(map(str, s)))
    frame = pd.DataFrame({"customer_id": pd.array(text.index.astype(str), dtype="string"), "reasons": text.to_numpy()})
    return frame, None
