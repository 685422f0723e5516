"""A synthetic online shop with known ground truth, written as multi-source Parquet files.

``simulate_shop(out_dir, customers, months, seed)`` writes customers, products,
orders, order items, returns, browsing events and FX rates as chunked Parquet
part files with realistic source column names, a ready ``sources.yaml`` (the
contract of ``docs/multisource.md``), the latent truth per customer
(``truth.parquet``) and a manifest of the injected dirty rows.

The generative process is documented in :mod:`ltvcast.simulate.process`, the
output layout in :mod:`ltvcast.simulate.writer`, and :mod:`ltvcast.simulate.truth`
reads the outputs back.
"""

from ltvcast.simulate.process import ShopParams
from ltvcast.simulate.truth import read_dirty_manifest, read_kind, read_truth
from ltvcast.simulate.writer import SimulationSummary, simulate_shop

__all__ = ["ShopParams", "SimulationSummary", "read_dirty_manifest", "read_kind", "read_truth", "simulate_shop"]
