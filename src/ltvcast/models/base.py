"""The shared forecaster interface and the canonical predictions frame.

Every model family sits behind :class:`Forecaster`: ``fit(data, cutoff,
horizon_days)`` learns from the shop's data strictly before ``cutoff``;
``predict(data, cutoff, horizon_days)`` returns the canonical predictions
frame (DESIGN.md) for every customer first seen before ``cutoff``. ``data``
is a :class:`ltvcast.data.datasets.History` (transactions plus the store for
point-in-time features).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import pandas as pd

from ltvcast.data.datasets import History


class Forecaster(ABC):
    """A model that predicts every customer's horizon behaviour at a cutoff.

    Attributes:
        name: the model's name in the predictions frame and the CLI.
        notes_: human-readable remarks from the last ``fit`` (e.g. customers
            left out of a sub-model and why); shown in reports.
    """

    name: str

    def __init__(self) -> None:
        self.notes_: list[str] = []

    @abstractmethod
    def fit(self, data: History, cutoff, horizon_days: float) -> Forecaster:
        """Learn from the data strictly before ``cutoff``; return self."""

    @abstractmethod
    def predict(self, data: History, cutoff, horizon_days: float) -> pd.DataFrame:
        """Predictions for ``[cutoff, cutoff + horizon_days)`` as the canonical frame."""
