"""Campaign experiments: deterministic stratified assignment, power, and the analysis of a randomised test.

* :func:`assign` — arms from a hash of a salt and the customer id, stratified
  by CLV tier (a permuted block per tier: exact shares in every tier).
* :func:`power` — the minimum detectable effect on spend per customer, with
  and without CUPED.
* :func:`analyze` — per arm spend per customer, conversion and orders;
  differences with Welch intervals and p-values; CUPED with each covariate
  and the variance reduction it achieved; a sample-ratio-mismatch check;
  :func:`report_section` puts it in the report.
* :func:`campaign_outcomes` reads the window's outcomes and the pre-period
  covariates from a store's history.

Formulas
--------
* Welch (1947): ``Δ = ȳ_T − ȳ_C``, ``se = √(s²_T/n_T + s²_C/n_C)``, degrees of
  freedom by Welch–Satterthwaite, ``Δ ± t_{0.975, df} · se``, two-sided p.
* CUPED (Deng, Xu, Kohavi & Walker 2013, eq. 3–4): ``Y_cv = Y − θ (X − X̄)``
  with ``θ = cov(Y, X) / var(X)`` pooled over both arms; the variance of the
  estimate shrinks by the factor ``1 − ρ²``; "variance reduction" is
  ``1 − var(Δ_cv) / var(Δ)`` as measured (``1 − (se_cv/se)²``).
* Power (two-sided z approximation): ``MDE = (z_{1−α/2} + z_{power}) · σ ·
  √(1/n_T + 1/n_C)``; with CUPED σ becomes ``σ √(1 − ρ²)``.
* Sample ratio mismatch: Pearson χ² of the arm counts against the designed
  shares; flagged when p < ``SRM_ALPHA`` (0.001, the usual threshold:
  Fabijan et al. 2019).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ltvcast.errors import DataError
from ltvcast.evaluate.report import ReportSection

TREATMENT, CONTROL = "treatment", "control"
SRM_ALPHA = 0.001


# ---------------------------------------------------------------------------- assignment
def hash_unit(salt: str, customer_ids) -> np.ndarray:
    """A uniform number in [0, 1) per id: the first 8 bytes of SHA-256(``salt:id``) / 2^64, shape (n,)."""
    out = np.empty(len(customer_ids))
    for i, cid in enumerate(customer_ids):
        digest = hashlib.sha256(f"{salt}:{cid}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2.0**64
    return out


def clv_tiers(values: pd.Series, n_tiers: int = 4) -> pd.Series:
    """CLV tier per customer: ``T1`` (lowest) .. ``Tn`` by quantiles of ``values`` (ties share a tier).

    Raises:
        DataError: ``n_tiers`` < 1 or missing values.
    """
    if n_tiers < 1:
        raise DataError(f"tiers must be at least 1, got {n_tiers}")
    if values.isna().any():
        raise DataError("the CLV values hold missing values; fill or drop them before tiering")
    ranks = values.rank(method="average", pct=True).to_numpy()
    tier = np.minimum(np.ceil(ranks * n_tiers).astype(int), n_tiers)
    return pd.Series([f"T{t}" for t in np.maximum(tier, 1)], index=values.index)


def assign(customer_ids, salt: str, holdout: float = 0.5, strata=None) -> pd.DataFrame:
    """Deterministic randomised assignment, stratified.

    Within each stratum the customers are ordered by :func:`hash_unit` (salt,
    id) — a random permutation that anyone with the salt can reproduce — and
    the first ``round(holdout · n_stratum)`` (largest remainders across strata,
    so the total is ``round(holdout · n)``) go to ``control`` (the holdout,
    not contacted), the rest to ``treatment``.

    Args:
        customer_ids: ids, shape (n,), unique.
        salt: the experiment's salt (a new salt, a new randomisation).
        holdout: share of customers in the control arm, 0 < holdout < 1.
        strata: stratum per customer, shape (n,) (e.g. :func:`clv_tiers`); None: one stratum.

    Returns:
        Frame (n rows, in input order): ``customer_id``, ``stratum``, ``arm``,
        ``hash`` (the uniform number), ``holdout_share`` (the designed control share).

    Raises:
        DataError: empty or duplicated ids, a holdout outside (0, 1), strata of another length.
    """
    ids = pd.Series(list(customer_ids), dtype="string")
    if ids.empty:
        raise DataError("no customers to assign")
    if ids.isna().any() or ids.duplicated().any():
        raise DataError("customer ids must be unique and non-missing")
    if not 0.0 < float(holdout) < 1.0:
        raise DataError(f"holdout must be between 0 and 1 (exclusive), got {holdout!r}")
    strata = pd.Series(["all"] * len(ids) if strata is None else list(strata), dtype="string")
    if len(strata) != len(ids):
        raise DataError(f"strata has {len(strata)} values for {len(ids)} customers")
    u = hash_unit(salt, ids.tolist())
    frame = pd.DataFrame({"customer_id": ids, "stratum": strata, "hash": u})
    sizes = frame.groupby("stratum", sort=True).size()
    quota = sizes * float(holdout)
    n_control = np.floor(quota).astype(int)
    short = int(round(float(holdout) * len(ids))) - int(n_control.sum())
    if short > 0:  # largest remainders
        order = (quota - n_control).sort_values(ascending=False, kind="stable").index[:short]
        n_control[order] += 1
    rank = frame.groupby("stratum")["hash"].rank(method="first").astype(int) - 1
    frame["arm"] = np.where(rank.to_numpy() < frame["stratum"].map(n_control).to_numpy(), CONTROL, TREATMENT)
    frame["holdout_share"] = float(holdout)
    return frame[["customer_id", "stratum", "arm", "hash", "holdout_share"]]


# ---------------------------------------------------------------------------- power
@dataclass(frozen=True)
class Power:
    """Minimum detectable effect on spend per customer (same unit as the spend).

    ``mde`` without, ``mde_cuped`` with CUPED (σ·√(1 − ρ²)); ``sd`` the
    per-customer standard deviation and ``rho`` the covariate's correlation
    they were computed from.
    """

    n_treatment: int
    n_control: int
    sd: float
    rho: float
    alpha: float
    power: float
    mde: float
    mde_cuped: float
    mean: float = float("nan")

    def as_dict(self) -> dict:
        """Plain values for JSON."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


def power(n_treatment: int, n_control: int, sd: float, rho: float = 0.0, alpha: float = 0.05,
          power: float = 0.8, mean: float = float("nan")) -> Power:
    """MDE of a two-arm test on a mean (module docstring, Power), two-sided.

    Raises:
        DataError: arm sizes < 2, sd < 0, |rho| > 1, alpha or power outside (0, 1).
    """
    if n_treatment < 2 or n_control < 2:
        raise DataError(f"each arm needs at least 2 customers, got {n_treatment} and {n_control}")
    if not sd >= 0 or not -1.0 <= rho <= 1.0 or not 0 < alpha < 1 or not 0 < power < 1:
        raise DataError(f"bad power inputs: sd={sd}, rho={rho}, alpha={alpha}, power={power}")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    mde = float(z * sd * math.sqrt(1 / n_treatment + 1 / n_control))
    return Power(int(n_treatment), int(n_control), float(sd), float(rho), alpha, power, mde,
                 mde * math.sqrt(max(1.0 - rho**2, 0.0)), float(mean))


# ---------------------------------------------------------------------------- analysis
def welch(y_t: np.ndarray, y_c: np.ndarray, level: float = 0.95) -> dict:
    """Welch difference of means ``mean(y_t) − mean(y_c)`` with a two-sided interval and p-value.

    Returns a dict: diff, se, df, ci_low, ci_high, p_value (module docstring).

    Raises:
        DataError: an arm with fewer than 2 values.
    """
    y_t, y_c = np.asarray(y_t, float), np.asarray(y_c, float)
    if y_t.size < 2 or y_c.size < 2:
        raise DataError(f"each arm needs at least 2 customers, got {y_t.size} and {y_c.size}")
    vt, vc = y_t.var(ddof=1) / y_t.size, y_c.var(ddof=1) / y_c.size
    se = math.sqrt(vt + vc)
    diff = float(y_t.mean() - y_c.mean())
    if se == 0:
        return {"diff": diff, "se": 0.0, "df": float("nan"), "ci_low": diff, "ci_high": diff,
                "p_value": 1.0 if diff == 0 else 0.0}
    df = (vt + vc) ** 2 / (vt**2 / (y_t.size - 1) + vc**2 / (y_c.size - 1))
    q = stats.t.ppf(0.5 + level / 2, df)
    p = 2 * stats.t.sf(abs(diff / se), df)
    return {"diff": diff, "se": se, "df": float(df), "ci_low": diff - q * se, "ci_high": diff + q * se, "p_value": float(p)}


def cuped(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float]:
    """CUPED-adjusted outcome ``y − θ (x − x̄)``, θ = cov(y, x)/var(x) (Deng et al. 2013), and θ.

    θ is 0 when x is constant. Shapes (n,).
    """
    y, x = np.asarray(y, float), np.asarray(x, float)
    vx = x.var(ddof=1)
    theta = float(np.cov(y, x, ddof=1)[0, 1] / vx) if vx > 0 else 0.0
    return y - theta * (x - x.mean()), theta


def srm_check(counts: dict[str, int], shares: dict[str, float]) -> dict:
    """Pearson χ² test of the arm counts against the designed shares.

    Returns a dict: counts, expected, chi2, p_value, flagged (p < SRM_ALPHA).

    Raises:
        DataError: arms without a share, or shares that do not sum to 1.
    """
    arms = sorted(counts)
    if set(arms) != set(shares) or abs(sum(shares.values()) - 1.0) > 1e-9:
        raise DataError(f"designed shares {shares} do not match the arms {arms} or do not sum to 1")
    if not all(0.0 < float(v) < 1.0 for v in shares.values()):
        raise DataError(f"designed shares must be strictly between 0 and 1, got {shares}")
    n = sum(counts.values())
    obs = np.array([counts[a] for a in arms], float)
    exp = np.array([shares[a] * n for a in arms])
    chi2, p = stats.chisquare(obs, exp)
    return {"counts": {a: int(counts[a]) for a in arms}, "expected": dict(zip(arms, exp.round(1).tolist())),
            "chi2": float(chi2), "p_value": float(p), "flagged": bool(p < SRM_ALPHA)}


@dataclass
class ExperimentResult:
    """What :func:`analyze` found.

    Attributes:
        arms: one row per arm: customers, spend_per_customer, conversion, orders_per_customer.
        effects: one row per (metric, method): metric, method (``welch``,
            ``cuped:<covariate>``), treatment, control, diff, ci_low, ci_high,
            relative (diff / control), p_value, se, theta, variance_reduction.
        srm: :func:`srm_check`'s dict.
        window: (start, end) days, end inclusive.
    """

    arms: pd.DataFrame
    effects: pd.DataFrame
    srm: dict
    window: tuple[str, str]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Plain values for JSON."""
        return {
            "window": {"start": self.window[0], "end": self.window[1]},
            "arms": self.arms.to_dict(orient="records"),
            "effects": self.effects.replace({np.nan: None}).to_dict(orient="records"),
            "srm": self.srm,
            "notes": self.notes,
        }


def analyze(data: pd.DataFrame, covariates: tuple[str, ...] = ("pre_spend", "clv"),
            shares: dict[str, float] | None = None, level: float = 0.95,
            window: tuple[str, str] = ("", "")) -> ExperimentResult:
    """Analyse a two-arm randomised experiment.

    Args:
        data: one row per customer: ``arm`` (``treatment``/``control``),
            ``spend`` (currency), ``orders`` (count) in the window, and the
            covariate columns (pre-period values; a missing value is read as 0).
        covariates: the columns to try as CUPED covariates (those absent are skipped).
        shares: designed share per arm for the SRM check (default 50/50).
        level: confidence level of the intervals.

    Raises:
        DataError: missing columns, arms other than treatment/control, an arm with < 2 customers.
    """
    missing = {"arm", "spend", "orders"} - set(data.columns)
    if missing:
        raise DataError(f"experiment data lacks columns {sorted(missing)}")
    arms = set(data["arm"].unique())
    if not arms <= {TREATMENT, CONTROL} or len(arms) != 2:
        raise DataError(f"arms must be exactly '{TREATMENT}' and '{CONTROL}', got {sorted(map(str, arms))}")
    t = data["arm"].to_numpy() == TREATMENT
    y = data["spend"].to_numpy(float)
    orders = data["orders"].to_numpy(float)
    conv = (orders > 0).astype(float)
    arm_rows = []
    for name, mask in ((TREATMENT, t), (CONTROL, ~t)):
        arm_rows.append({"arm": name, "customers": int(mask.sum()), "spend_per_customer": float(y[mask].mean()),
                         "conversion": float(conv[mask].mean()), "orders_per_customer": float(orders[mask].mean())})
    rows = []

    def row(metric: str, method: str, values: np.ndarray, base: np.ndarray, theta=float("nan"), vr=float("nan")):
        w = welch(values[t], values[~t], level)
        ctrl = float(base[~t].mean())
        rows.append({"metric": metric, "method": method, "treatment": float(base[t].mean()), "control": ctrl,
                     "diff": w["diff"], "ci_low": w["ci_low"], "ci_high": w["ci_high"],
                     "relative": w["diff"] / ctrl if ctrl else float("nan"), "p_value": w["p_value"],
                     "se": w["se"], "theta": theta, "variance_reduction": vr})
        return w

    base = row("spend_per_customer", "welch", y, y)
    row("conversion", "welch", conv, conv)
    row("orders_per_customer", "welch", orders, orders)
    for cov in covariates:
        if cov not in data.columns:
            continue
        x = data[cov].fillna(0.0).to_numpy(float)
        adjusted, theta = cuped(y, x)
        w = welch(adjusted[t], adjusted[~t], level)
        vr = 1.0 - (w["se"] / base["se"]) ** 2 if base["se"] > 0 else float("nan")
        row("spend_per_customer", f"cuped:{cov}", adjusted, y, theta, vr)
    shares = shares or {TREATMENT: 0.5, CONTROL: 0.5}
    srm = srm_check({TREATMENT: int(t.sum()), CONTROL: int((~t).sum())}, shares)
    notes = []
    if srm["flagged"]:
        notes.append(f"sample ratio mismatch: p = {srm['p_value']:.2g} < {SRM_ALPHA}; the arms are not the "
                     "designed split, so the assignment or the data is broken: do not trust the effects")
    return ExperimentResult(pd.DataFrame(arm_rows), pd.DataFrame(rows), srm, window, notes)


def campaign_outcomes(history, assignments: pd.DataFrame, start, end, predictions: pd.DataFrame | None = None,
                      pre_days: int | None = None) -> pd.DataFrame:
    """Window outcomes and pre-period covariates of the customers in ``assignments``.

    Args:
        history: a :class:`ltvcast.data.History` (the store).
        assignments: ``customer_id``, ``arm``.
        start, end: the window's first and last day (inclusive).
        predictions: a predictions frame made at ``start`` (``customer_id``,
            ``pred_spend``): the ``clv`` covariate; customers without one get 0.
        pre_days: length of the pre-period before ``start`` (default: the window's length).

    Returns:
        ``assignments`` with ``spend``, ``orders`` (purchase occasions) in the
        window, ``pre_spend`` in ``[start − pre_days, start)``, and ``clv``.

    Raises:
        DataError: end before start; the window past the data's end; assignments without the columns;
            predictions without ``pred_spend`` or made after ``start`` (their ``cutoff``);
            no customer of the assignments with a transaction in the store (ids that do not match).
    """
    from ltvcast.features.labels import horizon_labels
    from ltvcast.timeutil import to_day

    if not {"customer_id", "arm"} <= set(assignments.columns):
        raise DataError("the assignments file needs columns customer_id and arm")
    s, e = to_day(start), to_day(end)
    if e < s:
        raise DataError(f"end {e.date()} is before start {s.date()}")
    if e > history.observation_end:
        raise DataError(f"the window ends {e.date()}, after the data's last day {history.observation_end.date()}")
    if predictions is not None:
        if not {"customer_id", "pred_spend"} <= set(predictions.columns):
            raise DataError(f"the predictions need columns customer_id and pred_spend, have {list(predictions.columns)}")
        if "cutoff" in predictions.columns and len(predictions):
            made = to_day(predictions["cutoff"].max())
            if made > s:
                raise DataError(f"the predictions were made at {made.date()}, after the window's start {s.date()}: "
                                "a covariate measured after the treatment began biases CUPED; use predictions made "
                                "at or before the start")
    days = (e - s).days + 1
    pre = int(pre_days or days)
    ids = assignments["customer_id"].astype("string")
    if len(ids) and not ids.isin(history.transactions["customer_id"].astype("string")).any():
        raise DataError(f"none of the {len(ids):,} customers of the assignments has a transaction in the store "
                        f"(e.g. {ids.iloc[0]!r}): do its ids match the store's (leading zeros, prefixes)?")
    kw = {"timezone": history.timezone, "revenue_basis": history.revenue_basis}
    post = horizon_labels(history.transactions, ids, s, days, **kw).set_index("customer_id")
    before = horizon_labels(history.transactions, ids, s - pd.Timedelta(days=pre), pre, **kw).set_index("customer_id")
    out = assignments[["customer_id", "arm"]].copy()
    out["customer_id"] = ids
    out["spend"] = out["customer_id"].map(post["actual_spend"]).to_numpy(float)
    out["orders"] = out["customer_id"].map(post["actual_transactions"]).to_numpy(float)
    out["pre_spend"] = out["customer_id"].map(before["actual_spend"]).to_numpy(float)
    if predictions is not None:
        clv = predictions.drop_duplicates("customer_id").set_index(predictions["customer_id"].astype("string"))
        out["clv"] = out["customer_id"].map(clv["pred_spend"]).astype(float).fillna(0.0).to_numpy()
    return out


def report_section(result: ExperimentResult, title: str = "Experiment") -> ReportSection:
    """The experiment as a report section: arms, effects (with CUPED), the SRM check."""
    effects = result.effects[["metric", "method", "treatment", "control", "diff", "ci_low", "ci_high",
                              "p_value", "variance_reduction"]].copy()
    for col in ("treatment", "control", "diff", "ci_low", "ci_high"):
        effects[col] = effects[col].map(lambda v: f"{v:,.3f}")
    effects["p_value"] = effects["p_value"].map(lambda v: f"{v:.3g}")
    effects["variance_reduction"] = effects["variance_reduction"].map(lambda v: "" if pd.isna(v) else f"{v:.1%}")
    arms = result.arms.copy()
    for col in ("spend_per_customer", "conversion", "orders_per_customer"):
        arms[col] = arms[col].map(lambda v: f"{v:,.3f}")
    srm = result.srm
    notes = [f"window {result.window[0]} to {result.window[1]} (inclusive)",
             f"sample ratio check: χ² = {srm['chi2']:.2f}, p = {srm['p_value']:.3g} "
             f"({'MISMATCH' if srm['flagged'] else 'no mismatch'} at p < {SRM_ALPHA})"] + list(result.notes)
    return ReportSection(
        title=title,
        intro="Differences are treatment − control with 95 % Welch intervals. CUPED rows adjust spend with a "
              "pre-period covariate (Deng et al. 2013); variance reduction = 1 − (se_cuped / se)².",
        tables=[("Arms", arms), ("Effects", effects)],
        notes=notes,
    )


def power_from_history(history, customer_ids, as_of, days: int, n_treatment: int, n_control: int,
                       alpha: float = 0.05, power_level: float = 0.8) -> Power:
    """:func:`power` with σ and ρ measured on the customers' own recent history.

    σ = standard deviation of spend per customer in ``[as_of − days, as_of)``
    (the last window before the test, a stand-in for the test window); ρ =
    its correlation with the spend of the window before that (the CUPED
    covariate the analysis will use).

    Raises:
        DataError: days < 1; fewer than 2 per arm; no history before ``as_of − 2·days``.
    """
    from ltvcast.features.labels import horizon_labels
    from ltvcast.timeutil import to_day

    if days < 1:
        raise DataError(f"days must be at least 1, got {days}")
    day = to_day(as_of)
    ids = pd.Series(list(customer_ids), dtype="string")
    kw = {"timezone": history.timezone, "revenue_basis": history.revenue_basis}
    y = horizon_labels(history.transactions, ids, day - pd.Timedelta(days=days), days, **kw)["actual_spend"]
    x = horizon_labels(history.transactions, ids, day - pd.Timedelta(days=2 * days), days, **kw)["actual_spend"]
    y, x = y.to_numpy(float), x.to_numpy(float)
    rho = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else 0.0
    return power(n_treatment, n_control, float(y.std(ddof=1)), rho, alpha, power_level, float(y.mean()))


def one_model(predictions: pd.DataFrame, model: str | None = None) -> pd.DataFrame:
    """The rows of one model of a predictions frame (``model``, or the only one).

    Raises:
        DataError: several models and none chosen, or the chosen one absent;
            no ``customer_id`` or ``pred_spend`` column.
    """
    if not {"customer_id", "pred_spend"} <= set(predictions.columns):
        raise DataError(f"the predictions need columns customer_id and pred_spend, have {list(predictions.columns)}")
    if "model" not in predictions.columns:
        return predictions
    models = sorted(predictions["model"].astype(str).unique())
    if model is None:
        if len(models) > 1:
            raise DataError(f"the predictions hold several models ({', '.join(models)}); choose one with --pred-model")
        return predictions
    if model not in models:
        raise DataError(f"model {model!r} is not in the predictions ({', '.join(models)})")
    return predictions[predictions["model"].astype(str) == model].reset_index(drop=True)


def read_assignments(path) -> pd.DataFrame:
    """An assignments file (CSV or Parquet: customer_id, arm; optional holdout_share).

    Raises:
        DataError: missing file, other format, missing columns, unknown arms, duplicate customers.
    """
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise DataError(f"assignments file not found: {p}")
    if p.suffix.lower() == ".csv":
        frame = pd.read_csv(p, dtype={"customer_id": "string", "arm": "string"})
    elif p.suffix.lower() == ".parquet":
        frame = pd.read_parquet(p)
    else:
        raise DataError(f"cannot read assignments from {p}: use a .csv or .parquet file")
    if not {"customer_id", "arm"} <= set(frame.columns):
        raise DataError(f"{p} needs columns customer_id and arm, has {list(frame.columns)}")
    if frame["customer_id"].isna().any() or (frame["customer_id"].astype(str).str.strip() == "").any():
        raise DataError(f"{p}: {int(frame['customer_id'].isna().sum())} row(s) without a customer_id")
    bad = set(frame["arm"].astype(str)) - {TREATMENT, CONTROL}
    if bad:
        raise DataError(f"{p}: arms must be '{TREATMENT}' or '{CONTROL}', found {sorted(bad)}")
    if frame["customer_id"].duplicated().any():
        raise DataError(f"{p}: a customer appears more than once")
    frame["customer_id"] = frame["customer_id"].astype("string")
    return frame
