"""The papers' CDNOW calibration summary (1/10 sample, 39 weeks) and comparison helpers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

SUMMARY_CSV = Path(__file__).parent / "data" / "cdnow_sample_summary_39w.csv"


def cdnow_summary() -> pd.DataFrame:
    """The 2,357 sample customers: customer_id, frequency, recency, T (weeks), monetary_value ($)."""
    return pd.read_csv(SUMMARY_CSV).rename(
        columns={"ID": "customer_id", "x": "frequency", "t_x": "recency", "zbar": "monetary_value"}
    )


def sig3(v: float) -> str:
    """``v`` to 3 significant digits, as the papers print parameters."""
    return f"{v:.3g}"
