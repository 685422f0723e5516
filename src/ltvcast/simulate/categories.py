"""Opt-in category behaviour of the simulated shop: own preferences, cross-selling and a cohort that ages out.

Without it (the default, ``ShopParams(category_affinity=None)``) a line's
category follows only from the product drawn (favourite brand, price tier,
popularity: :mod:`ltvcast.simulate.process`), so customers have no category
taste of their own. With :class:`CategoryAffinity` each order line first
draws a category, then a product in it:

* **Preferences.** Customer ``i`` gets ``π_i ~ Dirichlet(α · b_i)``: ``b`` is
  the shop's category mix (the catalogue's popularity per category, averaged
  over the three price tiers), ``α`` = ``concentration`` (small: a few
  categories dominate). Customers of the **early cohort** (signed up in the
  first ``cohort_months`` months) have ``b`` of ``cohort_category`` ("home",
  the garden lovers) times ``cohort_boost`` (renormalised), and their
  dropout rate times ``cohort_mu``: the lifetime ``τ = E/μ`` is divided by it
  (no new draw), so the cohort ages out and the shop's category mix shifts.
* **Lines.** Line ``j`` of a customer's ``k``-th order (``k ≥ 1``) is a
  **cross-sell** with probability ``cross_sell``: its category is drawn from
  the row of :data:`CO_PURCHASE` of the category of line 1 of the previous
  order. Otherwise it is from ``π_i`` with probability ``stickiness``, else
  from ``b`` (exploration).
* **Product.** From the favourite brand with probability ``loyalty`` when the
  brand sells the category (uniform over its products there), else from the
  tier drawn by the spend level's softmax and by popularity inside (tier,
  category); a tier without the category is replaced by the nearest tier
  that has it.

Browsing views keep the default product draw. Randomness: everything here
comes from its own stream ``SeedSequence(seed, spawn_key=(8, chunk))``; the
lines' products replace those of the default draw after the fact (which is
still made), so the customers and their draws are the default shop's, and so
are the orders of every customer outside the early cohort (whose orders stop
at the earlier dropout); quantities, discounts, returns and events follow
from the new products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ltvcast.errors import LtvcastError
from ltvcast.simulate.process import CATEGORIES, TIERS, _cdf, _sample_cdf

CATEGORY_STREAM = 8

#: the fixed co-purchase pattern: after a line in the key category, a cross-sell line is in one of these (equal odds)
CO_PURCHASE: dict[str, tuple[str, ...]] = {
    "apparel": ("shoes", "accessories"),
    "shoes": ("apparel", "sports"),
    "accessories": ("apparel", "beauty"),
    "beauty": ("accessories", "apparel"),
    "home": ("kids", "electronics"),
    "electronics": ("home", "accessories"),
    "sports": ("shoes", "electronics"),
    "kids": ("home", "apparel"),
}

__all__ = ["CATEGORY_STREAM", "CO_PURCHASE", "CategoryAffinity", "cohort_lifetimes", "customer_preferences",
           "line_products"]


@dataclass(frozen=True)
class CategoryAffinity:
    """Settings of the opt-in category behaviour (module doc); the defaults are the documented shop.

    Raises:
        LtvcastError: a setting out of range or an unknown ``cohort_category``.
    """

    concentration: float = 0.8
    stickiness: float = 0.85
    cross_sell: float = 0.25
    cohort_category: str = "home"
    cohort_months: int = 12
    cohort_boost: float = 8.0
    cohort_mu: float = 2.0

    def __post_init__(self) -> None:
        if self.concentration <= 0.0 or self.cohort_boost <= 0.0 or self.cohort_mu <= 0.0:
            raise LtvcastError("category_affinity: concentration, cohort_boost and cohort_mu must be > 0")
        if not (0.0 <= self.stickiness <= 1.0 and 0.0 <= self.cross_sell <= 1.0):
            raise LtvcastError("category_affinity: stickiness and cross_sell must be in [0, 1]")
        if self.cohort_months < 0:
            raise LtvcastError(f"category_affinity: cohort_months must be >= 0, got {self.cohort_months}")
        names = [c[0] for c in CATEGORIES]
        if self.cohort_category not in names:
            raise LtvcastError(f"category_affinity: unknown cohort_category {self.cohort_category!r}; "
                               f"choose one of {', '.join(names)}")

    # called by ltvcast.simulate.process through ShopParams.category_affinity (this module imports process)
    def cohort_lifetimes(self, world, t_sign: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """:func:`cohort_lifetimes` with these settings."""
        return cohort_lifetimes(self, world, t_sign, tau)

    def line_products(self, world, seed: int, chunk_index: int, t_sign: np.ndarray, o_cust: np.ndarray,
                      l_order: np.ndarray, favourite: np.ndarray, loyalty: np.ndarray,
                      tier_cdf: np.ndarray) -> np.ndarray:
        """:func:`line_products` with these settings."""
        return line_products(self, world, seed, chunk_index, t_sign, o_cust, l_order, favourite, loyalty, tier_cdf)


def _early(aff: CategoryAffinity, world, t_sign: np.ndarray) -> np.ndarray:
    end = (world.start + pd.DateOffset(months=aff.cohort_months) - world.start) / pd.Timedelta(days=1)
    return t_sign < end


def cohort_lifetimes(aff: CategoryAffinity, world, t_sign: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Lifetimes (days) with the early cohort's dropout rate times ``cohort_mu``: ``τ / cohort_mu`` there."""
    return np.where(_early(aff, world, t_sign), tau / aff.cohort_mu, tau)


def _shop_mix(world) -> tuple[np.ndarray, list[list[np.ndarray]], list[list[np.ndarray]]]:
    """The shop's category mix ``b``, and per (tier, category) the products and their popularity CDF."""
    n_cat = len(CATEGORIES)
    weights = np.concatenate([np.diff(np.concatenate([[0.0], c])) for c in world.tier_cum])  # products by tier
    mix = np.zeros(n_cat)
    prods: list[list[np.ndarray]] = []
    cdfs: list[list[np.ndarray]] = []
    for t in range(len(TIERS)):
        sel = world.product_tier == t
        mix += np.bincount(world.product_category[sel], weights=weights[sel], minlength=n_cat)
        prods.append([np.flatnonzero(sel & (world.product_category == c)) for c in range(n_cat)])
        cdfs.append([_cdf(weights[p]) if p.size else p.astype(float) for p in prods[t]])
    return mix / mix.sum(), prods, cdfs


def _preferences(aff: CategoryAffinity, world, rng: np.random.Generator, t_sign: np.ndarray,
                 mix: np.ndarray) -> np.ndarray:
    base = np.tile(mix, (t_sign.size, 1))
    base[_early(aff, world, t_sign), [c[0] for c in CATEGORIES].index(aff.cohort_category)] *= aff.cohort_boost
    base /= base.sum(axis=1, keepdims=True)
    pref = np.maximum(rng.gamma(aff.concentration * base), 1e-300)  # Dirichlet by normalised Gammas
    return pref / pref.sum(axis=1, keepdims=True)


def customer_preferences(aff: CategoryAffinity, world, seed: int, chunk_index: int,
                         t_sign: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The true category preferences ``π`` (n, categories) of one chunk's customers, and the shop mix ``b``.

    Replays the first draws of the chunk's stream, as :func:`line_products` makes them: the truth
    behind a benchmark's ceiling. ``t_sign``: (n,) signup times in days since the start, in chunk order.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(CATEGORY_STREAM, chunk_index)))
    mix = _shop_mix(world)[0]
    return _preferences(aff, world, rng, t_sign, mix), mix


def line_products(
    aff: CategoryAffinity,
    world,
    seed: int,
    chunk_index: int,
    t_sign: np.ndarray,
    o_cust: np.ndarray,
    l_order: np.ndarray,
    favourite: np.ndarray,
    loyalty: np.ndarray,
    tier_cdf: np.ndarray,
) -> np.ndarray:
    """One product per order line, drawn category first (module doc).

    Args:
        aff: the settings.
        world: the :class:`ltvcast.simulate.process.World`.
        seed, chunk_index: select the stream ``(8, chunk_index)``.
        t_sign: (n,) signup time of each customer, days since the start.
        o_cust: (orders,) customer of each order, orders sorted by time.
        l_order: (lines,) order of each line, lines sorted by (order, line).
        favourite, loyalty, tier_cdf: the customers' favourite brand (-1:
            none), loyalty and price-tier CDF (n, 3) of the default process.

    Returns:
        (lines,) product index of each line.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(CATEGORY_STREAM, chunk_index)))
    names = [c[0] for c in CATEGORIES]
    n_cat = len(names)
    mix, prods, cdfs = _shop_mix(world)
    pref_cdf = np.cumsum(_preferences(aff, world, rng, t_sign, mix), axis=1)
    pref_cdf[:, -1] = 1.0
    co = np.zeros((n_cat, n_cat))
    for a, bs in CO_PURCHASE.items():
        co[names.index(a), [names.index(b) for b in bs]] = 1.0 / len(bs)
    co_cdf = np.cumsum(co, axis=1)
    co_cdf[:, -1] = 1.0

    n_lines = l_order.size
    l_cust = o_cust[l_order]
    u_kind, u_cat = rng.random(n_lines), rng.random(n_lines)
    sticky = u_kind < aff.stickiness
    cat = np.where(sticky, (u_cat[:, None] >= pref_cdf[l_cust]).sum(axis=1),
                   _sample_cdf(np.cumsum(mix), u_cat))
    cat = np.minimum(cat, n_cat - 1)
    # cross-sell: by the order's rank within its customer, so the previous order's first line is drawn
    n_orders = o_cust.size
    by_cust = np.lexsort((np.arange(n_orders), o_cust))
    prev = np.full(n_orders, -1, dtype=np.int64)
    same = o_cust[by_cust][1:] == o_cust[by_cust][:-1]
    prev[by_cust[1:][same]] = by_cust[:-1][same]
    sorted_c = o_cust[by_cust]
    starts = np.r_[True, sorted_c[1:] != sorted_c[:-1]]
    pos = np.arange(n_orders)
    rank = np.empty(n_orders, dtype=np.int64)
    rank[by_cust] = pos - np.maximum.accumulate(np.where(starts, pos, 0))
    first_line = np.searchsorted(l_order, np.arange(n_orders), side="left")
    cross = (rng.random(n_lines) < aff.cross_sell) & (prev[l_order] >= 0)
    u_cross = rng.random(n_lines)
    for k in range(1, int(rank.max(initial=0)) + 1):  # one step per order rank, vectorised over customers
        sel = cross & (rank[l_order] == k)
        if sel.any():
            anchor = cat[first_line[prev[l_order[sel]]]]
            cat[sel] = np.minimum((u_cross[sel][:, None] >= co_cdf[anchor]).sum(axis=1), n_cat - 1)

    # the product inside the category
    out = np.empty(n_lines, dtype=np.int64)
    u_prod = rng.random(n_lines)
    fav = favourite[l_cust]
    loyal = (fav >= 0) & (rng.random(n_lines) < loyalty[l_cust])
    tier = np.minimum((rng.random(n_lines)[:, None] >= tier_cdf[l_cust]).sum(axis=1), len(TIERS) - 1)
    done = np.zeros(n_lines, dtype=bool)
    for b in np.unique(fav[loyal]):
        s, m = world.brand_start[b], world.brand_count[b]
        bcat = world.product_category[s : s + m]
        for c in np.unique(bcat):
            sel = loyal & (fav == b) & (cat == c)
            if sel.any():
                p = s + np.flatnonzero(bcat == c)
                out[sel] = p[np.minimum((u_prod[sel] * p.size).astype(np.int64), p.size - 1)]
                done |= sel
    for c in range(n_cat):
        have = [t for t in range(len(TIERS)) if prods[t][c].size]
        for t in range(len(TIERS)):
            sel = ~done & (cat == c) & (tier == t)
            if not sel.any() or not have:
                continue
            tt = min(have, key=lambda h: (abs(h - t), h))
            out[sel] = prods[tt][c][_sample_cdf(cdfs[tt][c], u_prod[sel])]
            done |= sel
    if not done.all():  # a category no product sells: the line keeps a popular product of its tier
        sel = ~done
        for t in range(len(TIERS)):
            st = sel & (tier == t)
            out[st] = world.tier_start[t] + _sample_cdf(world.tier_cum[t], u_prod[st])
    return out
