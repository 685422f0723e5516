"""Shared machinery of the BTYD models: input checks, row compression, MLE.

Nothing here is public API; the model modules (:mod:`~ltvcast.models.bgnbd`,
:mod:`~ltvcast.models.paretonbd`, :mod:`~ltvcast.models.gammagamma`,
:mod:`~ltvcast.models.naive`) build on it.

Fitting strategy (:func:`fit_mle`): all parameters are positive, so the
optimiser works on their logarithms; the objective is the *mean* negative
log-likelihood over customers (an O(1) number, so tolerances do not depend
on the number of customers), computed on the distinct data rows weighted by
how often each occurs. L-BFGS-B runs first (analytic gradient where the
model has one, else forward differences); if it fails or stops where the
gradient is not small, it is restarted once from its end point, and if that
fails too, a capped Nelder-Mead run restarts from there and L-BFGS-B
polishes. The result is accepted only if the gradient (recomputed at the end) is small, no
parameter sits at the box that keeps ``exp`` finite, and the Hessian is
positive definite: no clearly negative eigenvalue (a saddle) and none
numerically zero (a flat direction: the data do not identify all
parameters, e.g. the BG/NBD dropout parameters when a handful of customers
show no dropout). "Small gradient" is judged on the scale of the
log-likelihood: max |gradient| <= GRAD_TOL, or one Newton step would gain at
most LL_TOL in *total* log-likelihood (:func:`newton_gain`). An optimiser
"failure" message with a verified small gradient (L-BFGS-B's line search
giving up at machine precision) is accepted. :func:`fit_mle` raises
:class:`~ltvcast.errors.ConvergenceError` otherwise, saying which case it is.

:func:`fit_robust` (used by the models) answers instead where it honestly
can: a maximum on the boundary is fitted as the limiting model (BG/NBD and
Pareto/NBD without dropout: the NBD, :func:`nbd_log_likelihood`), a flat
likelihood or too little data (:func:`adequacy`) gives the maximum
a-posteriori estimate under weak log-normal priors (:class:`Prior`), and
either way a note says so. The maximum-likelihood answer itself never has a
penalty term. Rules and messages: docs/fitting.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeResult, minimize
from scipy.special import digamma, gammaln

from ltvcast.errors import ConvergenceError, DataError, LtvcastError, NotFittedError

#: Box on the log-parameters (in the optimiser's internal units): e^±25.
LOG_BOUND = 25.0
#: Largest accepted max-norm of the gradient of the mean negative
#: log-likelihood with respect to the log-parameters at the optimum.
GRAD_TOL = 1e-5
#: Smallest accepted eigenvalue of the Hessian of the mean negative
#: log-likelihood (log-parameters) at the optimum; below it the likelihood is
#: flat in some direction and the parameters are not identified.
HESS_TOL = 1e-7
#: A Hessian eigenvalue below −SADDLE_TOL·max(1, largest) means the end point
#: is not a maximum (beyond numerical noise): ConvergenceError.
SADDLE_TOL = 1e-4
#: A fit that misses GRAD_TOL is still accepted when one Newton step would
#: raise the total log-likelihood by at most this much (log-likelihood units).
LL_TOL = 1e-3
#: A boundary (limiting-model) fit is accepted when its total log-likelihood
#: is at most this far below the full model's best point.
BOUNDARY_TOL = 0.01
#: Standard deviation of the weak normal priors on the log-parameters (MAP fallback).
PRIOR_SD = 2.0
#: Fewer customers, or fewer repeat buyers, than these get an adequacy note.
MIN_CUSTOMERS = 100
MIN_REPEAT_BUYERS = 30
#: How many offending rows an error message lists.
N_EXAMPLES = 5
#: Slack for ``recency <= T`` (summaries rounded to a few decimals).
TIME_SLACK = 1e-9


# --------------------------------------------------------------------------
# input checks


def row_labels(summary: pd.DataFrame, mask: np.ndarray, limit: int = N_EXAMPLES) -> str:
    """Describe the rows where ``mask`` is true: count plus the first few ids.

    Uses the ``customer_id`` column when the frame has one, else the index.
    """
    mask = np.asarray(mask, dtype=bool)
    idx = np.flatnonzero(mask)
    if "customer_id" in summary.columns:
        labels = summary["customer_id"].to_numpy()[idx[:limit]]
        kind = "customer_id"
    else:
        labels = summary.index.to_numpy()[idx[:limit]]
        kind = "row index"
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in labels)
    more = f", ... ({len(idx) - limit} more)" if len(idx) > limit else ""
    return f"{len(idx)} row(s) ({kind}: {shown}{more})"


def require_columns(summary: object, columns: Sequence[str], model: str) -> pd.DataFrame:
    """Check that ``summary`` is a non-empty DataFrame with ``columns``.

    Raises:
        DataError: not a DataFrame, empty, or columns missing (the message
            names the missing columns and lists the ones found).
    """
    if not isinstance(summary, pd.DataFrame):
        raise DataError(f"{model}: expected a pandas DataFrame summary, got {type(summary).__name__}")
    missing = [c for c in columns if c not in summary.columns]
    if missing:
        raise DataError(
            f"{model}: summary lacks column(s) {missing}; "
            f"columns found: {[str(c) for c in summary.columns]}"
        )
    if len(summary) == 0:
        raise DataError(f"{model}: the summary has no rows")
    return summary


def numeric_column(summary: pd.DataFrame, column: str, model: str) -> np.ndarray:
    """Return ``summary[column]`` as a float64 array.

    Raises:
        DataError: the column cannot be converted to numbers.
    """
    values = summary[column]
    if values.dtype == np.float64:  # already numbers: skip to_numeric (a hot path of online predictions)
        return values.to_numpy()
    try:
        values = pd.to_numeric(values, errors="raise")
        return np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{model}: column {column!r} is not numeric ({exc})") from None


def check_rft(summary: object, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and return ``frequency``, ``recency``, ``T`` as (n,) float arrays.

    Rules (all problems are reported together): values finite and >= 0;
    ``frequency`` a whole number; ``recency <= T``; ``frequency > 0`` needs
    ``recency > 0`` (a repeat occasion lies after the first one) and
    ``frequency == 0`` needs ``recency == 0``.

    Raises:
        DataError: missing columns, non-numeric or bad values; the message
            names the rule, the number of rows and the first few ids.
    """
    require_columns(summary, ("frequency", "recency", "T"), model)
    assert isinstance(summary, pd.DataFrame)
    x = numeric_column(summary, "frequency", model)
    tx = numeric_column(summary, "recency", model)
    T = numeric_column(summary, "T", model)
    problems: list[str] = []
    finite = np.isfinite(x) & np.isfinite(tx) & np.isfinite(T)
    checks = [
        (~finite, "NaN or infinite frequency/recency/T"),
        (finite & ((x < 0) | (tx < 0) | (T < 0)), "negative frequency/recency/T"),
        (finite & (x >= 0) & (x != np.round(x)), "frequency not a whole number"),
        (finite & (tx > T + TIME_SLACK * np.maximum(1.0, T)), "recency > T"),
        (finite & (x > 0) & (tx <= 0), "frequency > 0 with recency 0"),
        (finite & (x == 0) & (tx > 0), "frequency 0 with recency > 0"),
    ]
    for mask, what in checks:
        if mask.any():
            problems.append(f"{what}: {row_labels(summary, mask)}")
    if problems:
        raise DataError(f"{model}: invalid summary; " + "; ".join(problems))
    return x, np.minimum(tx, T), T


def check_horizon(t: object, n: int, model: str) -> np.ndarray | float:
    """Validate a prediction horizon ``t``: a scalar or an (n,) array, finite, >= 0.

    Raises:
        DataError: wrong shape, NaN/inf or negative values.
    """
    arr = np.asarray(t, dtype=np.float64)
    if arr.ndim not in (0, 1) or (arr.ndim == 1 and arr.shape[0] != n):
        raise DataError(f"{model}: horizon t must be a scalar or an array of shape ({n},), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise DataError(f"{model}: horizon t must be finite and >= 0")
    return float(arr) if arr.ndim == 0 else arr


def start_values(initial: dict[str, float] | None, default: dict[str, float], model: str) -> dict[str, float]:
    """The optimiser's starting parameters: ``initial`` if given, else ``default``.

    Raises:
        LtvcastError: ``initial`` lacks a parameter or has a non-positive or
            non-finite value.
    """
    if initial is None:
        return default
    missing = [k for k in default if k not in initial]
    bad = [k for k in default if k in initial and not (np.isfinite(initial[k]) and initial[k] > 0)]
    if missing or bad:
        raise LtvcastError(
            f"{model}: initial_params needs positive finite values for {list(default)}; "
            f"missing {missing}, invalid {bad}"
        )
    return {k: float(initial[k]) for k in default}


# --------------------------------------------------------------------------
# data compression


@dataclass
class Compressed:
    """Distinct rows of a set of (n,) arrays with their counts.

    Attributes:
        columns: the distinct rows, one (m,) array per input array.
        counts: (m,) how many input rows each distinct row stands for.
        inverse: (n,) index into the distinct rows for every input row.
    """

    columns: tuple[np.ndarray, ...]
    counts: np.ndarray
    inverse: np.ndarray


def compress(*arrays: np.ndarray) -> Compressed:
    """Collapse identical rows of the stacked ``arrays`` (all shape (n,))."""
    stacked = np.column_stack(arrays)
    uniq, inverse, counts = np.unique(stacked, axis=0, return_inverse=True, return_counts=True)
    return Compressed(tuple(uniq[:, j] for j in range(uniq.shape[1])), counts.astype(float), inverse.ravel())


# --------------------------------------------------------------------------
# maximum likelihood


def central_gradient(f: Callable[[np.ndarray], float], z: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central-difference gradient of ``f`` at ``z`` (step ``h`` per coordinate)."""
    g = np.empty_like(z)
    for i in range(z.size):
        e = np.zeros_like(z)
        e[i] = h
        g[i] = (f(z + e) - f(z - e)) / (2.0 * h)
    return g


def numerical_hessian(
    f: Callable[[np.ndarray], float], z: np.ndarray, jac: Callable[[np.ndarray], np.ndarray] | None = None
) -> np.ndarray:
    """Hessian of ``f`` at ``z`` by central differences (of ``jac`` when given)."""
    k = z.size
    hess = np.empty((k, k))
    if jac is not None:
        h = 1e-5
        for i in range(k):
            e = np.zeros(k)
            e[i] = h
            hess[:, i] = (np.asarray(jac(z + e)) - np.asarray(jac(z - e))) / (2 * h)
    else:
        h = 1e-3
        f0 = f(z)
        for i in range(k):
            ei = np.zeros(k)
            ei[i] = h
            hess[i, i] = (f(z + 2 * ei) - 2 * f0 + f(z - 2 * ei)) / (4 * h * h)
            for j in range(i):
                ej = np.zeros(k)
                ej[j] = h
                hess[i, j] = (f(z + ei + ej) - f(z + ei - ej) - f(z - ei + ej) + f(z - ei - ej)) / (4 * h * h)
                hess[j, i] = hess[i, j]
    return 0.5 * (hess + hess.T)


def fit_mle(
    mean_nll: Callable[[np.ndarray], float],
    z0: np.ndarray,
    *,
    model: str,
    names: Sequence[str],
    to_params: Callable[[np.ndarray], dict[str, float]],
    n: int,
    jac: Callable[[np.ndarray], np.ndarray] | None = None,
    maxiter: int = 2000,
    ll_shift: float = 0.0,
) -> OptimizeResult:
    """Minimise ``mean_nll`` over log-parameters ``z`` starting at ``z0``.

    Args:
        mean_nll: z (k,) -> mean negative log-likelihood (float; may return
            ``inf`` where the likelihood underflows).
        z0: (k,) starting log-parameters.
        model: model name for messages.
        names: parameter names for messages.
        to_params: z -> parameter dict in the caller's units (for messages).
        n: number of customers (the total log-likelihood is ``-n * mean_nll``).
        jac: analytic gradient of ``mean_nll``; forward differences if ``None``
            (the final gradient check uses central differences).
        maxiter: iteration limit per optimiser run.
        ll_shift: added to ``-n * mean_nll`` to express the log-likelihood in
            the caller's units in messages (the objective may use rescaled
            time or money).

    Returns:
        The scipy ``OptimizeResult`` of the last run; ``x`` holds the optimum.
        Added fields: ``grad_check`` (k,) gradient at the end and
        ``hess_check`` (k, k) Hessian, both of the mean negative
        log-likelihood w.r.t. the log-parameters.

    Raises:
        ConvergenceError: the gradient at the end is not small (the
            optimiser failed), a parameter ran to the box (the likelihood
            keeps improving as it goes to 0 or infinity), or the Hessian is
            not positive definite (a saddle, or a flat direction: parameters
            not identified).
    """
    res = optimise(mean_nll, z0, jac=jac, maxiter=maxiter)
    problem = diagnose(res, mean_nll, jac=jac, model=model, names=names, to_params=to_params, n=n,
                       ll_shift=ll_shift)
    if problem is not None:
        raise ConvergenceError(problem)
    return res


def _safe(mean_nll: Callable[[np.ndarray], float]) -> Callable[[np.ndarray], float]:
    """``mean_nll`` with errors silenced and non-finite values replaced by 1e10."""

    def safe(z: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            v = float(mean_nll(np.asarray(z, dtype=float)))
        return v if np.isfinite(v) else 1e10

    return safe


def optimise(
    mean_nll: Callable[[np.ndarray], float],
    z0: np.ndarray,
    *,
    jac: Callable[[np.ndarray], np.ndarray] | None = None,
    maxiter: int = 2000,
) -> OptimizeResult:
    """Minimise ``mean_nll`` over the box ``|z| <= LOG_BOUND`` (no acceptance checks).

    L-BFGS-B; a restart from its end point when it fails or the gradient is
    not small; then capped Nelder-Mead plus an L-BFGS-B polish if the restart
    fails too (module docstring). Returns the last run's ``OptimizeResult``
    with ``grad_check`` (k,) added.
    """
    safe = _safe(mean_nll)
    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(z0)
    jac_arg: Callable[[np.ndarray], np.ndarray] | str = jac if jac is not None else "2-point"
    opts = {"maxiter": maxiter, "ftol": 1e-13, "gtol": 1e-9, "maxls": 50}
    res = minimize(safe, np.asarray(z0, dtype=float), method="L-BFGS-B", jac=jac_arg, bounds=bounds, options=opts)
    grad = _grad(safe, res.x, jac)
    if not res.success or np.max(np.abs(grad)) > GRAD_TOL:
        # Restart L-BFGS-B from where it stopped (fresh curvature memory).
        res = minimize(safe, res.x, method="L-BFGS-B", jac=jac_arg, bounds=bounds, options=opts)
        if not res.success:
            # Nelder-Mead copes with a rough surface; then polish. Budget capped so
            # that a likelihood without a maximum fails in bounded time.
            nm = minimize(
                safe,
                res.x if np.isfinite(res.fun) and res.fun < safe(z0) else z0,
                method="Nelder-Mead",
                options={"maxiter": maxiter, "maxfev": 300 * len(z0), "xatol": 1e-10, "fatol": 1e-14,
                         "adaptive": True},
            )
            z_start = np.clip(nm.x, -LOG_BOUND, LOG_BOUND)
            res = minimize(safe, z_start, method="L-BFGS-B", jac=jac_arg, bounds=bounds, options=opts)
        grad = _grad(safe, res.x, jac)
    res.grad_check = grad
    return res


def newton_gain(grad: np.ndarray, hess: np.ndarray, n: float) -> float:
    """Total log-likelihood still to gain by one Newton step: ``n/2 · gᵀ H⁻¹ g``.

    ``grad`` (k,) and ``hess`` (k, k) are those of the *mean* negative
    log-likelihood, so the product times n is in total log-likelihood units
    (the Newton decrement; Boyd & Vandenberghe 2004, Section 9.5.1). ``inf``
    when ``hess`` is not positive definite.
    """
    try:
        chol = np.linalg.cholesky(hess)
    except np.linalg.LinAlgError:
        return float("inf")
    y = np.linalg.solve(chol, grad)
    return 0.5 * n * float(y @ y)


def diagnose(
    res: OptimizeResult,
    mean_nll: Callable[[np.ndarray], float],
    *,
    jac: Callable[[np.ndarray], np.ndarray] | None,
    model: str,
    names: Sequence[str],
    to_params: Callable[[np.ndarray], dict[str, float]],
    n: int,
    ll_shift: float = 0.0,
    check_flat: bool = True,
) -> str | None:
    """``None`` if ``res`` is an accepted optimum, else the reason (a sentence).

    Accepted: no parameter at the box, a finite objective, a Hessian without
    a clearly negative eigenvalue (else: a saddle), none numerically zero
    (``check_flat``; else: not identified), and converged on the scale of the
    log-likelihood: max |gradient| <= GRAD_TOL, or, failing that, one Newton
    step would raise the *total* log-likelihood by at most LL_TOL
    (:func:`newton_gain`) — so a fit on many customers that misses GRAD_TOL
    by a factor 2 but cannot gain a thousandth of a log-likelihood unit is
    accepted. Sets ``res.hess_check`` when it gets that far.
    """
    safe = _safe(mean_nll)
    grad = res.grad_check
    params = to_params(res.x)
    ll = -n * res.fun + ll_shift
    where = f"last parameters {_fmt(params)}, log-likelihood {ll:.4f}"
    gmax = float(np.max(np.abs(grad)))
    at_bound = [name for name, zi in zip(names, res.x) if abs(zi) >= LOG_BOUND - 1e-6]
    if at_bound:
        return (
            f"{model}: maximum-likelihood fit did not converge: parameter(s) {at_bound} ran to "
            f"0 or infinity (the likelihood has no interior maximum on these data); {where}"
        )
    if not np.isfinite(res.fun) or res.fun >= 1e10:
        return f"{model}: the likelihood is zero or not finite at the optimum; {where}"
    with np.errstate(all="ignore"):
        hess = numerical_hessian(safe, res.x, jac)
    res.hess_check = hess
    gain = newton_gain(grad, hess, n) if np.all(np.isfinite(hess)) else float("inf")
    if gmax > GRAD_TOL and gain > LL_TOL:
        if not res.success:
            return (
                f"{model}: maximum-likelihood fit did not converge: optimiser says {res.message!r}; "
                f"max |gradient| {gmax:.2e}; {where}"
            )
        return (
            f"{model}: maximum-likelihood fit stopped where the gradient is not small "
            f"(max |d mean-loglik / d log-param| = {gmax:.2e} > {GRAD_TOL:.0e}, and "
            + (f"a Newton step would still gain {gain:.2g} > {LL_TOL:g} in log-likelihood"
               if np.isfinite(gain) else "the Hessian is not positive definite there")
            + f"); {where}"
        )
    eig = np.linalg.eigvalsh(hess) if np.all(np.isfinite(hess)) else np.array([np.nan])
    if not np.all(np.isfinite(eig)) or eig.min() < -SADDLE_TOL * max(1.0, float(eig.max())):
        return (
            f"{model}: maximum-likelihood fit stopped at a point that is not a maximum "
            f"(Hessian eigenvalues {np.array2string(eig, precision=3)}); {where}"
        )
    if check_flat and eig.min() < HESS_TOL:
        return (
            f"{model}: parameters not identified by these data: the log-likelihood is flat in some "
            f"direction at the end point (smallest Hessian eigenvalue {eig.min():.2e}), e.g. too few "
            f"repeat purchases, or no dropout to see; {where}"
        )
    return None


# --------------------------------------------------------------------------
# robust fitting: maximum likelihood, else a boundary limit, else MAP


@dataclass
class Prior:
    """Independent normal priors on the optimiser's log-parameters (log-normal on the parameters).

    Attributes:
        mean: (k,) prior means of the log-parameters, in the optimiser's
            internal units (time scaled by mean T, money by mean z̄).
        sd: prior standard deviation on the log scale (PRIOR_SD = 2: a factor
            e² ≈ 7.4 either way is one standard deviation).
        text: how the note names the priors.
    """

    mean: np.ndarray
    text: str
    sd: float = PRIOR_SD

    def neg_log(self, z: np.ndarray) -> float:
        """−ln prior(z) up to a constant: ``Σ (z − mean)² / (2 sd²)``."""
        return float(0.5 * np.sum(((z - self.mean) / self.sd) ** 2))

    def grad(self, z: np.ndarray) -> np.ndarray:
        """Gradient of :meth:`neg_log`: ``(z − mean) / sd²``, shape (k,)."""
        return (z - self.mean) / self.sd**2


@dataclass
class Limit:
    """A simpler model that the full one reduces to on the boundary of its parameter space.

    Attributes:
        fit: () -> (params in the caller's units, total log-likelihood,
            OptimizeResult); raises ConvergenceError when the limit cannot
            be fitted either.
        what: what the data could not identify, for the note (e.g. "no
            dropout is visible in these data (a -> 0): ...").
    """

    fit: Callable[[], tuple[dict[str, float], float, OptimizeResult]]
    what: str


@dataclass
class FitOutcome:
    """What :func:`fit_robust` settled on.

    Attributes:
        method: ``"mle"`` (interior maximum likelihood), ``"boundary"`` (the
            limiting model's maximum likelihood) or ``"map"`` (maximum a
            posteriori with weak priors).
        params: parameters in the caller's units.
        result: the OptimizeResult of the accepted fit.
        notes: sentences for the model's ``notes_``.
    """

    method: str
    params: dict[str, float]
    result: OptimizeResult
    notes: list[str] = field(default_factory=list)


def fit_robust(
    mean_nll: Callable[[np.ndarray], float],
    z0: np.ndarray,
    *,
    model: str,
    names: Sequence[str],
    to_params: Callable[[np.ndarray], dict[str, float]],
    n: int,
    prior: Prior,
    limit: Limit | None = None,
    jac: Callable[[np.ndarray], np.ndarray] | None = None,
    maxiter: int = 2000,
    ll_shift: float = 0.0,
    too_few: str | None = None,
) -> FitOutcome:
    """Fit that always answers where it honestly can, saying how in the notes.

    1. Maximum likelihood (:func:`optimise`, accepted by :func:`diagnose`).
    2. If that fails and ``limit`` is given, the limiting model (e.g. the
       NBD when BG/NBD's dropout runs to 0): accepted when its
       log-likelihood is within BOUNDARY_TOL of the full model's best point
       (the data prefer the boundary).
    3. Else maximum a posteriori: ``mean_nll + prior.neg_log / n``
       (accepted by :func:`diagnose`; the priors make it proper).

    With ``too_few`` (a reason, e.g. "12 customers, 3 with repeat
    purchases: too few to estimate BG/NBD") steps 1-2 are skipped: MAP
    directly.

    Args: as :func:`fit_mle`, plus ``prior`` (:class:`Prior`), ``limit``
    (:class:`Limit` or ``None``) and ``too_few`` (str or ``None``).

    Raises:
        ConvergenceError: all three fail (e.g. the iteration limit is too
            small); the message starts with the maximum-likelihood reason.
    """
    common = dict(model=model, names=names, to_params=to_params, n=n, ll_shift=ll_shift)
    if too_few is None:
        res = optimise(mean_nll, z0, jac=jac, maxiter=maxiter)
        problem = diagnose(res, mean_nll, jac=jac, **common)
        if problem is None:
            return FitOutcome("mle", to_params(res.x), res)
        ll_full = -n * _safe(mean_nll)(res.x) + ll_shift
        if limit is not None:
            try:
                params, ll_limit, lres = limit.fit()
            except ConvergenceError:
                ll_limit = -np.inf
            if ll_limit >= ll_full - BOUNDARY_TOL:
                return FitOutcome("boundary", params, lres, [
                    f"{model}: maximum likelihood lies on the boundary: {limit.what}; "
                    f"fitted as that limit {_fmt(params)}, log-likelihood {ll_limit:.4f}"
                ])
        start = np.clip(res.x, -5.0, 5.0) if np.all(np.isfinite(res.x)) else np.asarray(z0, float)
        reason = problem.split(": ", 1)[1].split(";")[0]
    else:
        problem, start, reason = f"{model}: {too_few}", np.asarray(z0, float), too_few

    def post(z: np.ndarray) -> float:
        return mean_nll(z) + prior.neg_log(z) / n

    post_jac = None if jac is None else (lambda z: np.asarray(jac(z)) + prior.grad(z) / n)
    mres = optimise(post, start, jac=post_jac, maxiter=maxiter)
    mproblem = diagnose(mres, post, jac=post_jac, **common)
    if mproblem is not None:
        raise ConvergenceError(f"{problem}; the fallback maximum a-posteriori fit failed too: {mproblem}")
    params = to_params(mres.x)
    return FitOutcome("map", params, mres, [
        f"{model}: fitted with weak priors (maximum a posteriori; {prior.text}) because {reason}; "
        f"parameters {_fmt(params)}"
    ])


def adequacy(x: np.ndarray, T: np.ndarray, model: str, unit: str | None) -> tuple[list[str], str | None]:
    """Check, in plain words with counts, whether the data can support a BTYD count model.

    Args:
        x, T: (n,) frequency and T of the customers.
        model: model name for the notes.
        unit: the time unit's name (e.g. ``"weeks"``) or ``None`` ("time units").

    Returns:
        ``(notes, too_few)``: notes on a data span (max T) shorter than one
        time unit; ``too_few`` is the reason to fit with priors (fewer than
        MIN_CUSTOMERS customers or MIN_REPEAT_BUYERS repeat buyers, counts
        given) or ``None``.
    """
    n, rep = len(x), int(np.count_nonzero(x > 0))
    name = unit or "time units"
    too_few = None
    if rep == 0:
        too_few = f"{n:,} customers and none with a repeat purchase: too few to estimate {model}"
    elif n < MIN_CUSTOMERS or rep < MIN_REPEAT_BUYERS:
        too_few = (f"{n:,} customers, {rep:,} with repeat purchases: too few to estimate {model} "
                   f"(want at least {MIN_CUSTOMERS} customers and {MIN_REPEAT_BUYERS} repeat buyers)")
    notes = []
    span = float(np.max(T))
    if span < 1.0:
        singular = name[:-1] if name.endswith("s") else name
        notes.append(f"{model}: data span {span:.3g} {name} is shorter than one {singular}; "
                     "use a smaller time unit (days or weeks)")
    return notes, too_few


# --------------------------------------------------------------------------
# the NBD: the limit of BG/NBD and Pareto/NBD without dropout


def nbd_log_likelihood(r: float, alpha: float, x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Per-customer NBD log-likelihood of x purchases in (0, T] at their times.

    ``ln L = ln Γ(r+x) − ln Γ(r) + r ln α − (r+x) ln(α+T)``: Poisson
    purchases at rate λ ~ Gamma(r, α) (Ehrenberg 1959; the BG/NBD
    likelihood, FHL 2005 eq. 6, at a → 0, and the Pareto/NBD one, SMC 1987
    / FH 2005 note Section 3, at s → 0). Shapes (n,); α in the time unit.
    """
    return gammaln(r + x) - gammaln(r) + r * np.log(alpha) - (r + x) * np.log(alpha + T)


def nbd_expected(r: float, alpha: float, x: np.ndarray, T: np.ndarray, t) -> np.ndarray:
    """E[purchases in (T, T+t] | x, T] = (r+x)/(α+T) · t: the posterior mean rate
    (Gamma-Poisson conjugacy: λ | x, T ~ Gamma(r+x, α+T)) times t. Shapes (n,)."""
    return (r + x) / (alpha + T) * t


def nbd_p_none(r: float, alpha: float, x: np.ndarray, T: np.ndarray, t) -> np.ndarray:
    """P(no purchase in (T, T+t] | x, T) = ((α+T)/(α+T+t))^(r+x): the zero
    class of the posterior negative binomial (λ | x, T ~ Gamma(r+x, α+T)). Shapes (n,)."""
    return np.exp(-(r + x) * np.log1p(t / (alpha + T)))


def fit_nbd(x: np.ndarray, T: np.ndarray, w: np.ndarray, n: int, model: str, maxiter: int) -> OptimizeResult:
    """Maximum-likelihood NBD fit (:func:`nbd_log_likelihood`) on distinct rows.

    Args:
        x, T: (m,) distinct frequency / T rows (T in the optimiser's scaled time).
        w: (m,) how many customers each row stands for; n = w.sum().

    Returns:
        OptimizeResult with ``x`` = (ln r, ln α) (α in scaled time).

    Raises:
        ConvergenceError: no interior maximum (e.g. nobody repeat-buys).
    """

    def nll(z: np.ndarray) -> float:
        r, al = np.exp(z)
        return -float(np.dot(w, nbd_log_likelihood(r, al, x, T))) / n

    def jac(z: np.ndarray) -> np.ndarray:
        r, al = np.exp(z)
        d_r = digamma(r + x) - digamma(r) + np.log(al) - np.log(al + T)
        d_al = r / al - (r + x) / (al + T)
        return -np.array([np.dot(w, d_r) * r, np.dot(w, d_al) * al]) / n

    def to_params(z: np.ndarray) -> dict[str, float]:
        return {"r": float(np.exp(z[0])), "alpha": float(np.exp(z[1]))}

    return fit_mle(nll, np.zeros(2), model=f"{model} (NBD limit)", names=("r", "alpha"), to_params=to_params,
                   n=n, jac=jac, maxiter=maxiter)


def _grad(f: Callable[[np.ndarray], float], z: np.ndarray, jac: Callable | None) -> np.ndarray:
    if jac is not None:
        with np.errstate(all="ignore"):
            g = np.asarray(jac(z), dtype=float)
        if np.all(np.isfinite(g)):
            return g
    return central_gradient(f, z)


def _fmt(params: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}={v:.6g}" for k, v in params.items()) + "}"


# --------------------------------------------------------------------------
# shared base


class _FittedMixin:
    """``_check_fitted`` for estimators whose learned state is ``params_``."""

    _model_name = "model"

    def _record(self, out: FitOutcome, n: int, notes: Sequence[str] = ()) -> None:
        """Keep a :func:`fit_robust` outcome: parameters, method, ``notes`` then the fit's notes, the result."""
        self.params_ = out.params
        self.fit_method_ = out.method
        self.notes_ = [*notes, *out.notes]
        self.optimizer_result_ = out.result
        self.n_customers_ = int(n)
        self.converged_ = True

    def _check_fitted(self) -> dict[str, float]:
        params = getattr(self, "params_", None)
        if params is None:
            raise NotFittedError(f"{self._model_name}: call fit() before using the model")
        return params

    def __repr__(self) -> str:
        params = getattr(self, "params_", None)
        state = _fmt(params) if params else "not fitted"
        return f"{type(self).__name__}({state})"
