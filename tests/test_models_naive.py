"""Naive historical-rate baseline: hand-computed values and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from published import cdnow_summary

from ltvcast.errors import DataError, NotFittedError
from ltvcast.models import Naive


@pytest.fixture()
def small() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "frequency": [2.0, 0.0, 4.0, 0.0],
            "recency": [6.0, 0.0, 9.0, 0.0],
            "T": [10.0, 5.0, 10.0, 0.0],
            "monetary_value": [30.0, 0.0, 10.0, np.nan],
        }
    )


def test_fit_params(small: pd.DataFrame) -> None:
    model = Naive().fit(small)
    # rates 0.2, 0, 0.4, 0 (T = 0 -> 0); repeat buyers' mean value (30 + 10) / 2
    assert model.params_ == {"mean_rate": pytest.approx(0.15), "mean_monetary_value": pytest.approx(20.0)}
    assert model.n_customers_ == 4 and model.converged_
    assert model.optimizer_result_.success


def test_predictions_hand_computed(small: pd.DataFrame) -> None:
    model = Naive().fit(small)
    assert model.rate(small) == pytest.approx([0.2, 0.0, 0.4, 0.0])
    assert model.expected_transactions(small, 5.0) == pytest.approx([1.0, 0.0, 2.0, 0.0])
    assert model.p_no_purchase(small, 5.0) == pytest.approx([np.exp(-1.0), 1.0, np.exp(-2.0), 1.0])
    assert model.p_no_purchase(small, 0.0) == pytest.approx([1.0, 1.0, 1.0, 1.0])
    assert model.expected_value(small) == pytest.approx([30.0, 20.0, 10.0, 20.0])
    assert model.expected_spend(small, 5.0) == pytest.approx([30.0, 0.0, 20.0, 0.0])
    assert np.isnan(model.p_alive(small)).all()
    per_row = model.expected_transactions(small, np.array([1.0, 2.0, 3.0, 4.0]))
    assert per_row == pytest.approx([0.2, 0.0, 1.2, 0.0])


def test_log_likelihood_hand_computed(small: pd.DataFrame) -> None:
    model = Naive().fit(small)
    # Poisson at the own rate, mean x: x ln x - x - ln x!
    expected = [2 * np.log(2) - 2 - np.log(2), 0.0, 4 * np.log(4) - 4 - np.log(24), 0.0]
    assert model.log_likelihood(small) == pytest.approx(expected)
    assert model.log_likelihood_ == pytest.approx(sum(expected))


def test_cdnow_mean_rate() -> None:
    data = cdnow_summary()
    model = Naive().fit(data)
    assert model.params_["mean_rate"] == pytest.approx(float(np.mean(data["frequency"] / data["T"])))
    assert model.params_["mean_monetary_value"] == pytest.approx(
        float(data.loc[data["frequency"] > 0, "monetary_value"].mean())
    )


def test_without_monetary_value() -> None:
    data = pd.DataFrame({"frequency": [1.0, 0.0], "recency": [1.0, 0.0], "T": [2.0, 2.0]})
    model = Naive().fit(data)
    assert np.isnan(model.params_["mean_monetary_value"])
    assert model.expected_transactions(data, 2.0) == pytest.approx([1.0, 0.0])
    with pytest.raises(DataError, match="monetary_value"):
        model.expected_value(data)


def test_errors(small: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"lacks column\(s\) \['T'\]"):
        Naive().fit(small.drop(columns="T"))
    bad = small.assign(monetary_value=[30.0, 0.0, -1.0, np.nan])
    with pytest.raises(DataError, match=r"1 row\(s\) \(customer_id: 'c'\)"):
        Naive().fit(bad)
    model = Naive()
    for call in (
        lambda: model.expected_transactions(small, 1.0),
        lambda: model.p_no_purchase(small, 1.0),
        lambda: model.p_alive(small),
        lambda: model.log_likelihood(small),
        lambda: model.expected_value(small),
    ):
        with pytest.raises(NotFittedError):
            call()
