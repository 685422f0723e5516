"""Drift statistics: PSI, Kolmogorov–Smirnov and normalised Wasserstein distance, on samples or a reference sketch.

The reference of a registered model is a sketch per column
(:func:`ltvcast.registry.feature_sketch`: 101 quantiles and a decile
histogram), never raw rows; the current data are a sample. Every function
below compares a reference with a current sample.

Written here rather than taken from Evidently or NannyML: Evidently 0.7.23
would add 37 packages (litestar, plotly, nltk, cryptography, ...) to the
environment and NannyML 0.13.1 cannot be installed with our pins
(``pip install --dry-run -c constraints.txt``: ResolutionImpossible); the
statistics are a few lines each.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _sp

__all__ = ["EPS", "ks_distance", "ks_sketch", "psi", "psi_samples", "psi_sketch", "wasserstein_samples",
           "wasserstein_sketch"]

#: Floor of a bin share in PSI (an empty bin would make the log infinite); the convention of
#: Siddiqi (2006), "Credit Risk Scorecards", ch. 8, and of Evidently's ``psi`` stattest (0.0001).
EPS = 1e-4


def _finite(values) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


def psi(expected_shares, actual_shares) -> float:
    """Population stability index of two binned distributions.

    ``PSI = Σ_i (a_i − e_i) · ln(a_i / e_i)`` with shares floored at
    :data:`EPS` (Siddiqi 2006, "Credit Risk Scorecards", eq. in ch. 8;
    Yurdakul 2018, "Statistical properties of the population stability
    index"). It is the symmetrised Kullback–Leibler divergence of the bins.

    Args:
        expected_shares: reference share per bin, shape (k,), summing to 1.
        actual_shares: current share per bin, shape (k,).

    Returns:
        PSI ≥ 0 (dimensionless); 0 for identical shares.

    Raises:
        ValueError: the shapes differ or a share is negative.
    """
    e = np.asarray(expected_shares, dtype=np.float64)
    a = np.asarray(actual_shares, dtype=np.float64)
    if e.shape != a.shape:
        raise ValueError(f"PSI needs shares of the same bins, got {e.shape} and {a.shape}")
    if (e < 0).any() or (a < 0).any():
        raise ValueError("PSI shares must be >= 0")
    e, a = np.maximum(e, EPS), np.maximum(a, EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def _shares(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Share of ``x`` per bin ``(-inf, e0], (e0, e1], ..., (e_k, inf)``."""
    counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=edges.size + 1)
    return counts / max(x.size, 1)


def psi_sketch(sketch: dict, values) -> float:
    """PSI of ``values`` (shape (n,), NaN ignored) against a reference sketch's bins (``edges``, ``shares``).

    Returns NaN when the current sample or the reference has no finite value.
    """
    x = _finite(values)
    if x.size == 0 or sketch.get("quantiles") is None:
        return float("nan")
    edges = np.asarray(sketch["edges"], dtype=np.float64)
    return psi(sketch["shares"], _shares(edges, x))


def psi_samples(reference, current, bins: int = 10) -> float:
    """PSI of two samples, with bins at the distinct ``bins``-quantiles of ``reference`` (as the registry's sketch).

    Returns NaN when either sample has no finite value.
    """
    r, c = _finite(reference), _finite(current)
    if r.size == 0 or c.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(r, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    return psi(_shares(edges, r), _shares(edges, c))


def ks_distance(reference, current) -> float:
    """Two-sample Kolmogorov–Smirnov statistic ``sup_x |F_ref(x) − F_cur(x)|`` (SciPy ``ks_2samp``; in [0, 1]).

    Returns NaN when either sample has no finite value.
    """
    r, c = _finite(reference), _finite(current)
    if r.size == 0 or c.size == 0:
        return float("nan")
    return float(_sp.ks_2samp(r, c).statistic)


def ks_sketch(sketch: dict, values) -> float:
    """KS statistic of ``values`` against a sketch's quantiles (resolution 0.01 of the reference CDF).

    ``F_ref(x)`` is read off the 101 reference quantiles q_0..q_100 as
    ``max{j/100 : q_j ≤ x}`` (0 below q_0), and the supremum is taken over the
    current values and the quantiles, each side of every jump. Exact up to
    the grid's 0.01.
    """
    x = np.sort(_finite(values))
    q = sketch.get("quantiles")
    if x.size == 0 or q is None:
        return float("nan")
    q = np.asarray(q, dtype=np.float64)
    grid = np.linspace(0.0, 1.0, q.size)
    points = np.unique(np.concatenate([x, q]))

    def f_ref(t: np.ndarray, side: str) -> np.ndarray:
        k = np.searchsorted(q, t, side=side)
        return np.where(k > 0, grid[np.maximum(k - 1, 0)], 0.0)

    f_cur_right = np.searchsorted(x, points, side="right") / x.size
    f_cur_left = np.searchsorted(x, points, side="left") / x.size
    return float(max(np.abs(f_ref(points, "right") - f_cur_right).max(),
                     np.abs(f_ref(points, "left") - f_cur_left).max()))


def _normaliser(std: float, quantiles: np.ndarray) -> float:
    scale = float(std) if std and std > 0 else float(quantiles[-1] - quantiles[0])
    return scale if scale > 0 else 1.0


def wasserstein_sketch(sketch: dict, values) -> float:
    """Normalised Wasserstein-1 distance of ``values`` from a reference sketch.

    ``W1 = ∫_0^1 |Q_ref(u) − Q_cur(u)| du`` (the quantile form of the
    1-D earth mover's distance, Villani 2009, "Optimal Transport", remark
    2.19), on the 101-point probability grid (trapezoid rule), divided by the
    reference standard deviation (Evidently's ``wasserstein`` stattest
    normalises the same way; a constant reference uses its range, else 1).
    Dimensionless: 0.1 = the distributions are a tenth of a standard
    deviation apart on average.
    """
    x = _finite(values)
    q = sketch.get("quantiles")
    if x.size == 0 or q is None:
        return float("nan")
    q = np.asarray(q, dtype=np.float64)
    grid = np.linspace(0.0, 1.0, q.size)
    diff = np.abs(q - np.quantile(x, grid))
    w1 = float(np.sum((diff[1:] + diff[:-1]) / 2.0 * np.diff(grid)))
    return w1 / _normaliser(sketch.get("std") or 0.0, q)


def wasserstein_samples(reference, current) -> float:
    """Wasserstein-1 distance of two samples (SciPy ``wasserstein_distance``) over the reference's standard deviation."""
    r, c = _finite(reference), _finite(current)
    if r.size == 0 or c.size == 0:
        return float("nan")
    return float(_sp.wasserstein_distance(r, c)) / _normaliser(float(r.std()), np.array([r.min(), r.max()]))
