"""The canonical predictions frame (DESIGN.md): build it, write it.

One row per customer and model with the columns of
:data:`ltvcast.schema.PREDICTION_COLUMNS`; columns a model cannot fill
are null. Times: ``cutoff`` is a UTC timestamp at 00:00, ``horizon_days``
and ``pred_next_purchase_days`` are days; spend columns are in the shop
currency.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ltvcast.errors import DataError, LtvcastError
from ltvcast.schema import PREDICTION_COLUMNS
from ltvcast.timeutil import to_day


def predictions_frame(
    customer_id: pd.Series,
    model: str,
    cutoff,
    horizon_days: float,
    **columns: np.ndarray,
) -> pd.DataFrame:
    """Build the canonical predictions frame; columns not given are null.

    Args:
        customer_id: ids, shape (n,).
        model: model name, repeated on every row.
        cutoff: prediction date (stored as a UTC timestamp at 00:00).
        horizon_days: horizon length in days.
        **columns: arrays of shape (n,) named after canonical columns
            (``pred_transactions``, ``pred_spend``, ``p_churn``, ...).

    Raises:
        ValueError: a column name is not canonical (a programming error).
    """
    unknown = set(columns) - set(PREDICTION_COLUMNS)
    if unknown:
        raise ValueError(f"not canonical prediction columns: {sorted(unknown)}")
    n = len(customer_id)
    frame = pd.DataFrame(
        {
            "customer_id": pd.Series(customer_id, dtype="string").to_numpy(),
            "model": np.repeat(model, n),
            "cutoff": np.repeat(to_day(cutoff), n),
            "horizon_days": np.full(n, float(horizon_days)),
        }
    )
    for col in PREDICTION_COLUMNS[4:]:
        values = columns.get(col)
        frame[col] = np.full(n, np.nan) if values is None else np.asarray(values, dtype=float)
    frame["customer_id"] = frame["customer_id"].astype("string")
    frame["model"] = frame["model"].astype("string")
    return frame


def write_frame(frame: pd.DataFrame, path: str | Path, what: str = "predictions") -> Path:
    """Write a frame as Parquet (``.parquet``) or CSV (``.csv``), creating the parent folders.

    Args:
        frame: the frame (its index is not written).
        path: the file; its suffix picks the format.
        what: what the frame holds, for the error message.

    Raises:
        DataError: another file suffix.
        OSError: the file cannot be written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise DataError(f"cannot write {what} to {path}: use a .parquet or .csv file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def write_predictions(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a predictions frame as Parquet (``.parquet``) or CSV (``.csv``) (:func:`write_frame`)."""
    return write_frame(frame, path, "predictions")


#: The columns a forecast summary (totals and means per model) reads.
FORECAST_COLUMNS: tuple[str, ...] = ("model", "pred_transactions", "pred_spend", "p_churn", "p_alive")


def read_predictions(path: str | Path, columns=None) -> pd.DataFrame:
    """Read a predictions file written by :func:`write_predictions` (or batch scoring).

    Args:
        path: ``.parquet`` or ``.csv`` file.
        columns: canonical columns to read (default: all); reading a few
            keeps memory small for millions of rows.

    Raises:
        LtvcastError: another file extension, or the file is missing.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise LtvcastError(f"cannot read predictions from {path}: use a .parquet or .csv file")
    if not path.is_file():
        raise LtvcastError(f"predictions file not found: {path}")
    cols = None if columns is None else list(columns)
    if suffix == ".parquet":
        return pd.read_parquet(path, columns=cols)
    return pd.read_csv(path, usecols=cols, dtype={"customer_id": "string", "model": "string"})
