"""Read a simulated shop back: the ground truth, the source files of one kind, the dirty manifest.

These helpers are for tests and studies (e.g. comparing a model's P(alive)
with ``truth.alive_at_end``); the ingest reads the sources through
``sources.yaml`` like any shop's data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from ltvcast.errors import LtvcastError
from ltvcast.simulate.writer import KINDS, MAPPINGS


def read_truth(out_dir: str | Path) -> pd.DataFrame:
    """``truth.parquet``: one row per customer with the latent parameters.

    Columns: customer_id, signup_at, acquisition_channel, country, currency,
    purchase_rate (λ, orders per day before the calendar multiplier),
    dropout_rate (μ per day), lifetime_days, dropout_at (capped at about 164
    years after the start), alive_at_end, spend_level (ν, mean 1 before the
    channel factor), browse_intensity (background sessions per day before the
    calendar and the fade), favourite_brand (null: none), brand_loyalty,
    return_propensity, app_share, bought_at_signup, n_orders (orders written,
    dirty ones included); with a campaign also in_campaign, treated,
    campaign_lift, effect_orders, effect_spend (:mod:`ltvcast.simulate.campaigns`).
    """
    path = Path(out_dir) / "truth.parquet"
    if not path.exists():
        raise LtvcastError(f"{path} not found: is {out_dir} the output of `ltvcast simulate`?")
    return pq.read_table(path).to_pandas()


def read_kind(out_dir: str | Path, kind: str, canonical: bool = False) -> pd.DataFrame:
    """All part files of one kind, concatenated in part order (file rows as written, dirty ones included).

    With ``canonical=True`` the columns are renamed to the canonical names of
    ``sources.yaml`` (no parsing or cleaning: ``timestamp`` of orders stays text).
    """
    if kind not in KINDS:
        raise LtvcastError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    files = sorted((Path(out_dir) / kind).glob("part-*.parquet"))
    if not files:
        raise LtvcastError(f"no part files under {Path(out_dir) / kind}")
    frame = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    if canonical:
        frame = frame.rename(columns={src: can for can, src in MAPPINGS[kind].items()})
    return frame


def read_dirty_manifest(out_dir: str | Path) -> dict:
    """``dirty_manifest.json`` as a dict (``counts[kind][reason]``, ``total``, ...)."""
    return json.loads((Path(out_dir) / "dirty_manifest.json").read_text(encoding="utf-8"))
