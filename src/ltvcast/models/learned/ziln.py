"""Zero-inflated lognormal (ZILN) loss, mean and quantiles, in NumPy.

Source: X. Wang, T. Liu, J. Miao (2019), "A Deep Probabilistic Model for
Customer Lifetime Value Prediction", arXiv:1912.07753, section 3 (the ZILN
loss) and the authors' ``lifetime_value`` package (``zero_inflated_lognormal.py``:
``zero_inflated_lognormal_loss``, ``zero_inflated_lognormal_pred``).

Model of a customer's horizon value ``y``: with probability ``1 − p`` it is
zero; otherwise ``y ~ LogNormal(μ, σ)``. A model outputs three raw scores
per customer, ``F = (f_p, f_μ, f_s)``:

* ``p = sigmoid(f_p)`` — P(y > 0);
* ``μ = f_μ`` — location of ln y given y > 0;
* ``σ = exp(f_s)`` clipped to ``[SIGMA_MIN, SIGMA_MAX]``. The paper uses
  ``softplus``; the log link is used here because it makes the Newton
  Hessian of the σ part well behaved for gradient boosting (see
  :func:`ziln_grad_hess`). The loss is the same function of ``(p, μ, σ)``.

Loss per customer (nats), with ``z = 1{y > 0}``::

    L = −[z ln p + (1 − z) ln(1 − p)]
        + z · [ln y + ln σ + ½ ln 2π + (ln y − μ)² / (2σ²)]

i.e. binary cross-entropy plus the lognormal negative log-density of the
positive values (the paper's ``classification_loss + regression_loss``).

**Non-positive values** (net revenue: returns larger than purchases) follow
one rule everywhere in ltvcast's learned models: ``y <= 0`` counts as a
zero, so it enters only the cross-entropy part, as "no positive value".
Predictions are therefore never negative, and they are bounded: σ is
clipped and μ is a finite sum of tree leaves.

Mean: ``E[y] = p · exp(μ + σ²/2)``. Quantile ``q``: ``0`` when
``q <= 1 − p``, else ``exp(μ + σ Φ⁻¹((q − (1 − p)) / p))``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_expit, ndtri

__all__ = [
    "SIGMA_MAX",
    "SIGMA_MIN",
    "ZILNObjective",
    "ziln_grad_hess",
    "ziln_init_score",
    "ziln_loss",
    "ziln_mean",
    "ziln_params",
    "ziln_quantile",
]

#: Bounds of σ (log scale), so a prediction ``exp(μ + σ²/2)`` stays finite.
SIGMA_MIN = 0.05
SIGMA_MAX = 4.0
_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


def _raw(raw) -> np.ndarray:
    arr = np.asarray(raw, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"ZILN raw scores must have shape (n, 3), got {arr.shape}")
    return arr


def ziln_params(raw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p, μ, σ)`` from raw scores.

    Args:
        raw: array of shape (n, 3): ``f_p`` (logit of P(y > 0)), ``μ``,
            ``f_s`` (ln σ).

    Returns:
        Three (n,) arrays: p in (0, 1), μ, σ in [SIGMA_MIN, SIGMA_MAX].

    Raises:
        ValueError: ``raw`` is not of shape (n, 3).
    """
    r = _raw(raw)
    sigma = np.exp(np.clip(r[:, 2], np.log(SIGMA_MIN), np.log(SIGMA_MAX)))
    return expit(r[:, 0]), r[:, 1], sigma


def ziln_loss(y, raw) -> np.ndarray:
    """Per-customer ZILN loss (nats); ``y <= 0`` counts as zero.

    Args:
        y: (n,) horizon values (currency).
        raw: (n, 3) raw scores (see :func:`ziln_params`).

    Returns:
        (n,) loss values; the mean is the paper's training loss.
    """
    r = _raw(raw)
    y = np.asarray(y, dtype=float)
    z = y > 0
    _, mu, sigma = ziln_params(r)
    bce = -np.where(z, log_expit(r[:, 0]), log_expit(-r[:, 0]))
    ly = np.log(np.where(z, y, 1.0))
    nll = ly + np.log(sigma) + _HALF_LOG_2PI + (ly - mu) ** 2 / (2.0 * sigma**2)
    return bce + np.where(z, nll, 0.0)


def ziln_grad_hess(y, raw, weight=None) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian of the ZILN loss w.r.t. the raw scores (LightGBM custom objective).

    Per customer, with ``s = sigmoid(f_p)``, ``e = ln y − μ``:

    * ``f_p``: gradient ``s − z``, Hessian ``s(1 − s)`` (exact);
    * ``μ``: gradient ``−z e / σ²``, Hessian ``z / σ²`` (exact);
    * ``f_s = ln σ``: gradient ``z (1 − e²/σ²)``, Hessian ``2z`` — the
      expected (Fisher) information, always positive; the observed one,
      ``2 z e²/σ²``, vanishes where the fit is good and destabilises Newton
      steps. Where σ is clipped the gradient of ``f_s`` is 0.

    Args:
        y: (n,) values; ``y <= 0`` counts as zero.
        raw: (n, 3) raw scores.
        weight: optional (n,) sample weights multiplying both.

    Returns:
        ``(grad, hess)``, each (n, 3).
    """
    return ZILNObjective(y, weight)(raw)


class ZILNObjective:
    """:func:`ziln_grad_hess` for fixed labels: the label terms (``z``, ``ln y``) are computed once.

    LightGBM calls a custom objective every boosting round with the same
    labels; this keeps the per-round work to the terms that depend on the
    raw scores. The results are those of :func:`ziln_grad_hess`, bit for bit.

    Args:
        y: (n,) values; ``y <= 0`` counts as zero.
        weight: optional (n,) sample weights multiplying gradient and Hessian.
    """

    def __init__(self, y, weight=None) -> None:
        y = np.asarray(y, dtype=float)
        self.z = (y > 0).astype(float)
        self.log_y = np.log(np.where(self.z > 0, y, 1.0))
        self.hess_sigma = np.maximum(2.0 * self.z, 1e-6)
        self.weight = None if weight is None else np.asarray(weight, dtype=float)[:, None]

    def __call__(self, raw) -> tuple[np.ndarray, np.ndarray]:
        """``(grad, hess)``, each (n, 3), at raw scores of shape (n, 3).

        Raises:
            ValueError: ``raw`` is not of shape (n, 3).
        """
        r = _raw(raw)
        z = self.z
        s = expit(r[:, 0])
        sigma2 = np.exp(np.clip(r[:, 2], np.log(SIGMA_MIN), np.log(SIGMA_MAX))) ** 2
        inside = (r[:, 2] > np.log(SIGMA_MIN)) & (r[:, 2] < np.log(SIGMA_MAX))
        e = self.log_y - r[:, 1]
        grad = np.empty_like(r)
        hess = np.empty_like(r)
        grad[:, 0] = s - z
        grad[:, 1] = -z * e / sigma2
        grad[:, 2] = np.where(inside, z * (1.0 - e**2 / sigma2), 0.0)
        hess[:, 0] = np.maximum(s * (1.0 - s), 1e-6)
        hess[:, 1] = np.maximum(z / sigma2, 1e-6)
        hess[:, 2] = self.hess_sigma
        if self.weight is not None:
            grad, hess = grad * self.weight, hess * self.weight
        return grad, hess


def ziln_mean(raw) -> np.ndarray:
    """Expected value ``p · exp(μ + σ²/2)`` (currency), shape (n,)."""
    p, mu, sigma = ziln_params(raw)
    return p * np.exp(mu + 0.5 * sigma**2)


def ziln_quantile(raw, q: float | np.ndarray) -> np.ndarray:
    """Quantile ``q`` of the zero-inflated lognormal, shape (n,).

    Args:
        raw: (n, 3) raw scores.
        q: probability in (0, 1), scalar or (n,).

    Returns:
        0 where ``q <= 1 − p``; else ``exp(μ + σ Φ⁻¹((q − (1 − p)) / p))``.

    Raises:
        ValueError: ``q`` outside (0, 1).
    """
    qa = np.asarray(q, dtype=float)
    if np.any((qa <= 0) | (qa >= 1)):
        raise ValueError(f"quantile level must lie in (0, 1), got {q!r}")
    p, mu, sigma = ziln_params(raw)
    cond = np.clip((qa - (1.0 - p)) / p, 1e-12, 1.0 - 1e-12)
    return np.where(qa <= 1.0 - p + 1e-12, 0.0, np.exp(mu + sigma * ndtri(cond)))


def ziln_init_score(y, weight=None) -> np.ndarray:
    """Constant raw scores that minimise the mean ZILN loss: the boosting start.

    ``f_p = logit(mean z)``, ``μ = mean ln y`` and ``ln σ = ln sd ln y`` over
    the positive values (weighted when ``weight`` is given).

    Args:
        y: (n,) values (``y <= 0`` counts as zero); at least one positive
            and one non-positive value make the start finite.

    Returns:
        (3,) raw scores.
    """
    y = np.asarray(y, dtype=float)
    w = np.ones_like(y) if weight is None else np.asarray(weight, dtype=float)
    z = y > 0
    share = np.clip(np.sum(w * z) / np.sum(w), 1e-4, 1 - 1e-4)
    if not z.any():
        return np.array([np.log(share / (1 - share)), 0.0, 0.0])
    ly = np.log(y[z])
    wz = w[z]
    mu = float(np.sum(wz * ly) / np.sum(wz))
    sd = float(np.sqrt(np.sum(wz * (ly - mu) ** 2) / np.sum(wz)))
    sd = float(np.clip(sd, SIGMA_MIN * 1.01, SIGMA_MAX * 0.99))
    return np.array([np.log(share / (1 - share)), mu, np.log(sd)])
