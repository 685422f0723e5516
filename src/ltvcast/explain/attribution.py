"""The shared shape of an explanation: :class:`Attribution` (one model output, every customer and driver).

Scales of ``contributions`` (the column ``scale``):

=============  ==========================================================  =====================
scale          a driver's contribution ``c``                               shown as
=============  ==========================================================  =====================
``log``        change of ``ln pred_spend`` (base + Σ c = ln pred_spend      a factor ``×e^c`` on
               for tree SHAP and integrated gradients)                      expected spend
``log_odds``   change of ``logit p_churn``                                  a factor ``×e^c`` on
                                                                            the odds of churn
``elasticity`` ``∂ ln output / ∂ ln input`` (BTYD; frequency: the arc      "+10 % input → output
               elasticity of one more repeat purchase)                      changes by ..."
=============  ==========================================================  =====================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["Attribution", "TARGETS", "REASON_COLUMNS"]

#: The outputs explained.
TARGETS: tuple[str, ...] = ("pred_spend", "p_churn")
#: Columns of the long reasons frame (:func:`ltvcast.explain.reasons.top_reasons`), in order.
REASON_COLUMNS: tuple[str, ...] = (
    "customer_id", "target", "rank", "feature", "value", "contribution", "effect", "scale", "method", "source",
    "sentence",
)


@dataclass
class Attribution:
    """Every customer's drivers of one output of one model.

    Attributes:
        target: ``"pred_spend"`` or ``"p_churn"``.
        scale: ``"log"``, ``"log_odds"`` or ``"elasticity"`` (module table).
        customer_ids: (n,) customer ids (text).
        features: (p,) driver names.
        methods: (p,) how each driver's contribution was computed
            (``tree_shap``, ``integrated_gradients``, ``ablation``, ``elasticity``,
            ``arc_elasticity``).
        values: (n, p) float, each driver's value for each customer (NaN =
            missing; a sequence group: its total over the group's periods).
        contributions: (n, p) float, in ``scale`` (NaN = no contribution).
        base: (n,) the output at the reference (``log``/``log_odds``: the
            expected raw score of the training data or the baseline input;
            NaN for elasticities).
        output: (n,) the output on the same scale (``ln pred_spend``,
            ``logit p_churn``; for elasticities the output itself).
        source: the model whose drivers these are (``auto``: its component).
        notes: remarks (method, completeness, the component chosen).
        context: optional (n, q) frame of further input columns read by the
            sentences (e.g. ``ipt_mean_days``), same rows.
    """

    target: str
    scale: str
    customer_ids: np.ndarray
    features: list[str]
    methods: list[str]
    values: np.ndarray
    contributions: np.ndarray
    base: np.ndarray
    output: np.ndarray
    source: str
    notes: list[str] = field(default_factory=list)
    context: pd.DataFrame | None = None
    extra: dict = field(default_factory=dict)

    def effect(self, c: np.ndarray) -> np.ndarray:
        """The shown effect of contributions ``c`` (same shape): ``e^c`` for log scales, the elasticity itself."""
        c = np.asarray(c, dtype=float)
        return c if self.scale == "elasticity" else np.exp(c)

    def subset(self, rows: np.ndarray) -> "Attribution":
        """The same attribution for the rows ``rows`` (an index or boolean array)."""
        ctx = None if self.context is None else self.context.iloc[rows].reset_index(drop=True)
        return Attribution(
            self.target, self.scale, self.customer_ids[rows], list(self.features), list(self.methods),
            self.values[rows], self.contributions[rows], self.base[rows], self.output[rows], self.source,
            list(self.notes), ctx, dict(self.extra),
        )
