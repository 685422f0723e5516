"""Training the deep network: the ZILN loss in torch, the losses of every head, tensors, torch settings."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ltvcast.models.learned.ziln import SIGMA_MAX, SIGMA_MIN

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def ziln_loss_torch(y: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """Per-row ZILN loss (nats), the torch twin of :func:`ltvcast.models.learned.ziln.ziln_loss`.

    ``L = −[z ln p + (1 − z) ln(1 − p)] + z · [ln y + ln σ + ½ ln 2π + (ln y − μ)² / (2σ²)]``
    with ``z = 1{y > 0}``, ``p = sigmoid(f_p)``, ``σ = exp(clip(f_s, ln SIGMA_MIN, ln SIGMA_MAX))``
    (Wang, Liu & Miao 2019, section 3; ``y <= 0`` counts as zero).

    Args:
        y: (n,) horizon values (currency).
        raw: (n, 3) raw scores ``(f_p, μ, f_s)``.

    Returns:
        (n,) losses, same dtype as ``raw``.
    """
    z = (y > 0).to(raw.dtype)
    f_p, mu, f_s = raw[:, 0], raw[:, 1], raw[:, 2]
    log_sigma = torch.clamp(f_s, math.log(SIGMA_MIN), math.log(SIGMA_MAX))
    bce = F.binary_cross_entropy_with_logits(f_p, z, reduction="none")
    ly = torch.log(torch.where(y > 0, y, torch.ones_like(y))).to(raw.dtype)
    nll = ly + log_sigma + _HALF_LOG_2PI + (ly - mu) ** 2 / (2.0 * torch.exp(2.0 * log_sigma))
    return bce + z * nll



@contextlib.contextmanager
def torch_state(n_threads: int, seed: int):
    """Threads, deterministic algorithms and a seeded RNG for the block; the previous state afterwards."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(max(1, int(n_threads)))
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn)
        torch.set_num_threads(threads)


def leading_zeros(seq) -> np.ndarray:
    """(n,) int64: per row of a (n, periods, channels) array, the periods before the first nonzero value."""
    active = (np.asarray(seq) != 0).any(axis=2)
    return np.where(active.any(axis=1), active.argmax(axis=1), active.shape[1]).astype(np.int64)


@dataclass
class Tensors:
    """Inputs and targets of a set of example rows (torch, CPU)."""

    seq: torch.Tensor  # (n, T, C) float32
    num: torch.Tensor  # (n, F) float32
    cat: torch.Tensor  # (n, Q) int64
    label_days: torch.Tensor  # (n,) float32
    spend: torch.Tensor  # (n,) float32, >= 0
    transactions: torch.Tensor  # (n,) float32
    churn: torch.Tensor  # (n,) float32 in {0, 1}
    next_days: torch.Tensor  # (n,) float32, NaN for non-buyers
    shares: torch.Tensor  # (n, K) float32, rows sum to 1 for buyers with positive spend, else 0
    lead: torch.Tensor  # (n,) int64, leading periods of the sequence that are zero in every channel

    def __len__(self) -> int:
        return self.seq.shape[0]

    def take(self, idx: torch.Tensor) -> Tensors:
        return Tensors(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    def rows(self, lo: int, hi: int) -> Tensors:
        """Rows ``lo:hi`` as views (no copy)."""
        return Tensors(*(getattr(self, f)[lo:hi] for f in self.__dataclass_fields__))

    def common_lead(self) -> int:
        """Leading periods that are zero in every row and channel (at most ``periods − 1``)."""
        return min(int(self.lead.min()), self.seq.shape[1] - 1) if len(self) else 0

    def inputs(self) -> tuple[torch.Tensor, ...]:
        return self.seq, self.num, self.cat, self.label_days


def head_losses(out, t: Tensors) -> dict[str, torch.Tensor]:
    """The five head losses (means over the rows they apply to)."""
    ziln, log_shares, log_tx, churn_logit, next_days = out
    buyers = ~torch.isnan(t.next_days)
    has_shares = t.shares.sum(dim=1) > 0
    traj = -(t.shares * log_shares).sum(dim=1)
    nxt = ((next_days - torch.nan_to_num(t.next_days)) / t.label_days) ** 2
    return {
        "ziln": ziln_loss_torch(t.spend, ziln).mean(),
        "trajectory": (traj * has_shares).sum() / has_shares.sum().clamp(min=1),
        "transactions": F.poisson_nll_loss(log_tx, t.transactions, log_input=True, full=False),
        "churn": F.binary_cross_entropy_with_logits(churn_logit, t.churn),
        "next_purchase": (nxt * buyers).sum() / buyers.sum().clamp(min=1),
    }


