"""The top ``k`` reasons per customer and output, as the long frame of :data:`~ltvcast.explain.attribution.REASON_COLUMNS`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ltvcast.errors import DataError
from ltvcast.explain.attribution import REASON_COLUMNS, Attribution
from ltvcast.explain.sentences import sentence

__all__ = ["top_reasons"]


def top_reasons(attributions: list[Attribution], k: int = 3, describe=None) -> pd.DataFrame:
    """The top ``k`` drivers per customer and target, as a long frame of :data:`REASON_COLUMNS`.

    Drivers are ranked by ``|contribution|`` (largest first; ties by driver
    order); a driver whose contribution is 0 or NaN is never shown (a
    customer can have fewer than ``k`` reasons, e.g. a one-time buyer under
    a BTYD model, whose recency and repeat value are 0). ``effect`` is ``e^contribution`` on
    the log scales, the elasticity otherwise.

    Args:
        attributions: one :class:`Attribution` per target.
        k: reasons per customer and target (>= 1).
        describe: ``describe(attribution, row, j) -> str`` making the
            sentence (default :func:`ltvcast.explain.sentences.sentence`).

    Returns:
        Frame sorted by ``customer_id``, ``target``, ``rank`` (1 = strongest).

    Raises:
        DataError: ``k < 1``.
    """
    if k < 1:
        raise DataError(f"k must be at least 1, got {k}")
    if describe is None:
        describe = sentence
    parts = []
    for att in attributions:
        n, p = att.contributions.shape
        if n == 0 or p == 0:
            continue
        mag = np.abs(att.contributions)
        mag = np.where(np.isnan(mag) | (mag == 0), -1.0, mag)
        order = np.argsort(-mag, axis=1, kind="stable")[:, : min(k, p)]
        rows, ranks, cols = [], [], []
        for i in range(n):
            for r, j in enumerate(order[i]):
                if mag[i, j] < 0:
                    break
                rows.append(i)
                ranks.append(r + 1)
                cols.append(j)
        rows_a, cols_a = np.asarray(rows, dtype=int), np.asarray(cols, dtype=int)
        contrib = att.contributions[rows_a, cols_a]
        parts.append(pd.DataFrame({
            "customer_id": pd.array(att.customer_ids[rows_a].astype(str), dtype="string"),
            "target": att.target,
            "rank": np.asarray(ranks, dtype=np.int64),
            "feature": [att.features[j] for j in cols_a],
            "value": att.values[rows_a, cols_a].astype(float),
            "contribution": contrib.astype(float),
            "effect": att.effect(contrib),
            "scale": att.scale,
            "method": [att.methods[j] for j in cols_a],
            "source": att.source,
            "sentence": [describe(att, i, j) for i, j in zip(rows_a, cols_a)],
        }))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in REASON_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["customer_id", "target", "rank"], kind="stable").reset_index(drop=True)[
        list(REASON_COLUMNS)
    ]
