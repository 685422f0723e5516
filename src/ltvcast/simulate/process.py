"""The generative process of the simulated shop (vectorised numpy, one chunk of customers at a time).

The shop is an online retailer in the euro zone (shop currency EUR, calendar in
UTC) observed from ``start`` for ``months`` months; ``T`` is that period in days
and every time below is a float number of days since ``start``.

World (drawn once per seed, shared by all chunks)
-------------------------------------------------
* **Calendar.** A daily intensity multiplier ``m(d)`` = month factor (Jan 0.85 ...
  Sep 1.0, Oct 1.05, Nov 1.45, Dec 1–22 1.95, Dec 23–26 0.6, Dec 27–31 1.0: the
  **Q4 peak**) × weekday factor (Sunday 1.15, midweek 0.95) × promotion factor.
  **Promotions**: each day is a promo day with probability 3.5 % (10/15/20 % off,
  intensity × 1.7) and Black Friday to Cyber Monday is a 25 % sale (× 2.4).
  Within a day, an hour-of-day profile (evening peak, night trough, UTC) shapes
  times. Browsing uses the same ``m(d)``. The calendar's settings (strength of
  the yearly cycle, promotion days, lull) are :class:`ltvcast.simulate.seasons.Seasons`.
* **Catalogue.** 40 brands in three tiers (12 budget: price × 0.55, 20
  standard: × 1, 8 premium: × 2.3), each selling 1–3 of 8 categories (apparel,
  shoes, accessories, beauty, home, electronics, sports, kids; each with a base
  price, a return rate and a multi-unit propensity). 1,500 products, list price
  (EUR) = category base × brand tier factor × lognormal(0, 0.35), ending in .99.
  Product popularity: brand popularity × lognormal product popularity.
* **FX.** Daily EUR-per-unit rates for USD (around 0.92) and GBP (around 1.17),
  mean-reverting log random walks, for every day of the period.

Customers (one chunk at a time; all draws are per customer, then per order/line/session)
-----------------------------------------------------------------------------------------
* **Acquisition.** Signup day from a density growing linearly over the period
  (× 1 → × 1.6) and following ``m(d)^0.8`` (more signups in Q4), time of day from
  the hour profile. **Channel** (organic_search, paid_search, paid_social, email,
  referral, direct, affiliate) and **country** (12 countries in 7 regions).
  Customers from GB pay in GBP (92 %), from the US in USD (96 %), the rest in
  EUR: one currency per customer.
* **BTYD core (Pareto/NBD-style).** Purchase rate ``λ ~ Gamma(r=0.75,
  scale=0.0128)`` per day (mean ≈ 3.5 orders/year) and dropout rate ``μ ~
  Gamma(s=0.8, scale=0.003125)`` per day, both scaled by the channel
  (paid_social: λ × 0.8, μ × 2.2 — churns fast; referral: λ × 1.4, μ × 0.7;
  ...) and by the **cohort** (signed up in Oct–Dec — holiday shoppers: λ × 0.8,
  μ × 1.3; later cohorts slightly weaker: λ × (1 − 0.1·signup/T)). Lifetime
  ``τ ~ Exponential(μ)``, dropout at ``signup + τ``. While alive the customer
  orders as a Poisson process of intensity ``λ · m(d) · hour(t)`` (sampled by
  thinning), and nothing after dropout or after ``T``. With a channel-dependent
  probability (45–65 %) the first order is placed 5–40 minutes after signup;
  the others may never buy (visitors: they still browse).
* **Spend level** ``ν ~ Gamma(3, 1/3)`` × channel factor (referral 1.2,
  paid_social 0.85, ...): lines per order ``1 + Poisson(1.1·√ν)`` (at most 12),
  and the price tier a customer buys from (softmax of ``[0.3 − ln ν, 0.6,
  1.3 ln ν − 0.9]`` over budget/standard/premium).
* **Brand loyalty.** 60 % of customers have a favourite brand (tier from the
  same spend-dependent preference, brand by popularity) and a loyalty
  ``Beta(4, 2)``: each line (and each viewed product) is from the favourite
  brand with that probability, else a product drawn by popularity from the
  customer's preferred tier. Premium brands cost more, so loyalty shapes spend.
* **Lines.** Quantity ``1 + Poisson(category propensity)``; unit price =
  list price / FX rate of the order day (rounded to cents) in the customer's
  currency; on promo days 85 % of lines get the promo discount ``discount =
  round(quantity × unit_price × pct, 2)`` (line total, order currency).
  Channel web/app from a per-customer app share ``Beta(1.5, 2.5)``.
* **Returns.** Each line is returned with probability ``category return rate
  × return propensity (Gamma(2, 0.5), mean 1) × 1.25 if discounted``
  (capped at 0.9); with probability ``1.2 % × propensity`` the whole order is
  returned. The returned quantity is the full line (always for a full-order
  return, else 75 % of the time) or 1..q−1 units. All lines of an order come
  back in one parcel ``2 + Gamma(2, 3)`` days after the order; returns after
  ``T`` are not observed. Refund = returned share of the line's net amount.
* **Browsing.** A browse intensity ``b = 0.02 · (λ/λ̄)^0.6 · lognormal(σ=0.9)``
  sessions per day, so browsing is correlated with the purchase rate and is a
  second, independent noisy measurement of it. Three kinds of sessions:
  (1) background sessions, a Poisson process of intensity ``b · m(d) ·
  hour(t) · fade(t)`` with ``fade = min(1, (dropout − t) / 45 days)`` —
  browsing **fades out over the 45 days before dropout**; (2) research
  sessions before each order, ``Poisson(0.8 · b/b̄)`` of them, starting ``1 h +
  Exponential(6 days)`` before it — browsing **rises before purchases**; they
  view one of the products later bought with probability 0.5; (3) the
  purchase session itself (session_start, a view of each bought product with
  probability 0.7, extra views, add_to_cart then purchase per line, the
  purchase event at the order time). Sessions have ``1 + Poisson(1.5)`` views
  (research: ``1 + Poisson(1.6)``); background and research sessions end in an
  abandoned add_to_cart with probability 0.07 / 0.15. No event precedes signup
  or follows dropout or ``T``.

Category preferences (opt-in, ``ShopParams(category_affinity=CategoryAffinity())``): each customer's
own category mix, cross-selling after a category, an early "home" cohort that ages out:
:mod:`ltvcast.simulate.categories`. Off by default, leaving every stream and output unchanged.

Dirty rows (rate ``dirty_rate``): per chunk,
``Binomial(orders, rate)`` orders get an unparseable timestamp and as many
(disjoint) an unknown currency (``CHF``: no FX rate), and ``Binomial(clean
order lines, rate)`` lines of clean orders are written twice (export
duplicates). Dirty orders get no returns, so no return points at a quarantined
order. Exact counts and positions go to ``dirty_manifest.json`` and
``dirty_rows.parquet``.

Randomness: the world comes from ``SeedSequence(seed, spawn_key=(0,))``, chunk
``i`` from ``SeedSequence(seed, spawn_key=(1, i))`` and its dirty rows from
``SeedSequence(seed, spawn_key=(2, i))``, each consumed by its own
``numpy.random.Generator``: the output is a pure function of (seed, customers,
months, start, dirty_rate, chunk size), and the clean data do not depend on
``dirty_rate`` (only the returns of the orders made dirty are left out). A
different chunk size draws different (equally distributed) customers; a full
chunk ``i`` is the same whatever the total number of customers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ltvcast.simulate.seasons import Seasons

MS_PER_DAY = 86_400_000
SEC_PER_DAY = 86_400

# --- channels: name, share, purchase-rate factor, dropout-rate factor, spend factor, P(first order at signup)
CHANNELS: tuple[tuple[str, float, float, float, float, float], ...] = (
    ("organic_search", 0.26, 1.00, 1.00, 1.00, 0.55),
    ("paid_search", 0.20, 0.90, 1.20, 0.95, 0.60),
    ("paid_social", 0.18, 0.80, 2.20, 0.85, 0.50),
    ("email", 0.08, 1.20, 0.80, 1.00, 0.45),
    ("referral", 0.08, 1.40, 0.70, 1.20, 0.65),
    ("direct", 0.12, 1.10, 0.90, 1.05, 0.55),
    ("affiliate", 0.08, 0.85, 1.40, 0.90, 0.60),
)

# --- countries: code, region, share
COUNTRIES: tuple[tuple[str, str, float], ...] = (
    ("DE", "DACH", 0.30),
    ("AT", "DACH", 0.06),
    ("CH", "DACH", 0.04),
    ("NL", "Benelux", 0.06),
    ("BE", "Benelux", 0.04),
    ("FR", "France", 0.09),
    ("IT", "Southern Europe", 0.06),
    ("ES", "Southern Europe", 0.06),
    ("SE", "Nordics", 0.03),
    ("DK", "Nordics", 0.02),
    ("GB", "UK", 0.10),
    ("US", "North America", 0.08),
)
CURRENCIES: tuple[str, ...] = ("EUR", "USD", "GBP")
#: currency with no FX rate, used for the ``unknown_currency`` dirty rows
UNKNOWN_CURRENCY = "CHF"
FX_BASE = {"USD": 0.92, "GBP": 1.17}

# --- categories: name, base price EUR, return rate, extra-units Poisson mean
CATEGORIES: tuple[tuple[str, float, float, float], ...] = (
    ("apparel", 35.0, 0.20, 0.15),
    ("shoes", 75.0, 0.24, 0.02),
    ("accessories", 22.0, 0.07, 0.15),
    ("beauty", 16.0, 0.03, 0.45),
    ("home", 42.0, 0.05, 0.20),
    ("electronics", 110.0, 0.06, 0.03),
    ("sports", 48.0, 0.09, 0.10),
    ("kids", 24.0, 0.08, 0.30),
)
TIERS: tuple[str, ...] = ("budget", "standard", "premium")
TIER_PRICE = np.array([0.55, 1.0, 2.3])
BRANDS: dict[str, tuple[str, ...]] = {
    "budget": (
        "Basix", "ValuMax", "Everyday Goods", "Pricewise", "Simply", "QuickPick",
        "HomeBase", "Bargain Bay", "Thrift & Co", "Easy Living", "Smart Choice", "Budget Box",
    ),
    "standard": (
        "Brightwell", "Alder & Co", "Kestrel", "Mosswood", "Fjordline", "Urbanova", "Lindqvist",
        "Tidewater", "Coppervale", "Halden", "Marlowe", "Pinecrest", "Rowan Street", "Solstice",
        "Ashford", "Everly", "Northfield", "Juniper Lane", "Westbrook", "Calloway",
    ),
    "premium": (
        "Maison Lumiere", "Nordhavn", "Castellane", "Aurelio Conti", "Vellmar",
        "Hartwell & Sons", "Oriane", "Stellberg",
    ),
}
N_PRODUCTS = 1500

MONTH_FACTOR = np.array([0.85, 0.85, 0.95, 0.95, 0.95, 0.90, 0.88, 0.88, 1.00, 1.05, 1.45, 1.95])
WEEKDAY_FACTOR = np.array([1.05, 1.00, 0.95, 0.95, 0.95, 0.95, 1.15])  # Monday .. Sunday
HOUR_PROFILE = np.array(
    [0.3, 0.2, 0.15, 0.1, 0.1, 0.15, 0.3, 0.6, 0.9, 1.0, 1.1, 1.2,
     1.3, 1.2, 1.1, 1.1, 1.2, 1.4, 1.7, 1.9, 1.8, 1.4, 0.9, 0.5]
)
PROMO_DAY_P = 0.035
PROMO_PCTS = np.array([0.10, 0.15, 0.20])
PROMO_LIFT = 1.7
BLACK_FRIDAY_PCT = 0.25
BLACK_FRIDAY_LIFT = 2.4


@dataclass(frozen=True)
class ShopParams:
    """Parameters of the generative process (module docstring); rates are per day."""

    r: float = 0.75
    lambda_scale: float = 0.0128
    s: float = 0.8
    mu_scale: float = 0.003125
    q4_cohort_lambda: float = 0.8
    q4_cohort_mu: float = 1.3
    cohort_trend: float = 0.1
    spend_shape: float = 3.0
    lines_base: float = 1.1
    max_lines: int = 12
    p_favourite: float = 0.6
    promo_line_share: float = 0.85
    full_return_p: float = 0.012
    promo_return_lift: float = 1.25
    browse_base: float = 0.02
    browse_exponent: float = 0.6
    browse_sigma: float = 0.9
    fade_days: float = 45.0
    research_per_order: float = 0.8
    research_lead_days: float = 6.0
    views_per_session: float = 1.5
    research_views: float = 1.6
    purchase_view_p: float = 0.7
    purchase_extra_views: float = 0.8
    browse_atc_p: float = 0.07
    research_atc_p: float = 0.15
    research_sees_bought_p: float = 0.5
    #: regime changes on a date (:class:`ltvcast.simulate.regimes.Regime`); () = none, unchanged output
    regimes: tuple = ()
    #: opt-in category preferences, cross-selling and an ageing cohort
    #: (:class:`ltvcast.simulate.categories.CategoryAffinity`); None = off, unchanged output
    category_affinity: object | None = None


EVENT_TYPES: tuple[str, ...] = ("session_start", "view", "add_to_cart", "purchase")
SESSION_START, VIEW, ADD_TO_CART, PURCHASE = range(4)


@dataclass(frozen=True)
class World:
    """What every chunk shares: calendar, catalogue, FX (drawn once per seed)."""

    start: pd.Timestamp  # naive, UTC
    end: pd.Timestamp  # exclusive
    n_days: int
    days: pd.DatetimeIndex
    day_mult: np.ndarray  # purchase/browse intensity multiplier per day
    promo_pct: np.ndarray  # discount share per day (0 = no promotion)
    acq_cdf: np.ndarray  # signup-day distribution (CDF over days)
    hour_w: np.ndarray  # hour-of-day multiplier, mean 1
    hour_cdf: np.ndarray
    mult_max: float  # max over the period of day_mult × hour_w
    # catalogue: products sorted by (tier, brand)
    product_category: np.ndarray
    product_brand: np.ndarray
    product_tier: np.ndarray
    list_price: np.ndarray
    brand_names: tuple[str, ...]
    brand_tier: np.ndarray
    brand_start: np.ndarray
    brand_count: np.ndarray
    tier_start: np.ndarray
    tier_cum: tuple[np.ndarray, ...]  # per tier: CDF of product popularity inside the tier
    tier_brand_cum: tuple[np.ndarray, ...]  # per tier: CDF of brand popularity (favourite choice)
    tier_brands: tuple[np.ndarray, ...]
    fx: np.ndarray  # (n_days, 3): EUR per unit of EUR, USD, GBP (rounded as written)


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights, dtype=np.float64)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf


def _sample_cdf(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, u, side="right"), cdf.size - 1)


def make_world(seed: int, start: pd.Timestamp, months: int, seasons: Seasons | None = None) -> World:
    """Calendar, catalogue and FX rates for ``months`` months from ``start`` (deterministic by seed).

    ``seasons``: the calendar settings (:class:`~ltvcast.simulate.seasons.Seasons`; default: the
    default shop, whose output is unchanged).
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    end = start + pd.DateOffset(months=months)
    days = pd.date_range(start, end, freq="D", inclusive="left")
    n_days = len(days)
    # the yearly cycle, promotion days and holiday lulls: ltvcast.simulate.seasons
    cal = (seasons or Seasons()).draw(rng, days)
    season, weekday, promo_pct = cal.season, cal.weekday, cal.promo_pct
    day_mult = cal.day_mult

    growth = 1.0 + 0.6 * np.arange(n_days) / max(n_days - 1, 1)
    acq_cdf = _cdf(growth * (season * weekday) ** 0.8)
    hour_w = HOUR_PROFILE / HOUR_PROFILE.mean()
    hour_cdf = _cdf(hour_w)
    mult_max = float(day_mult.max() * hour_w.max())

    # --- catalogue
    brand_names: list[str] = []
    brand_tier: list[int] = []
    for t, tier in enumerate(TIERS):
        brand_names.extend(BRANDS[tier])
        brand_tier.extend([t] * len(BRANDS[tier]))
    n_brands = len(brand_names)
    brand_tier_a = np.array(brand_tier)
    brand_pop = rng.lognormal(0.0, 0.8, n_brands)
    n_cat = len(CATEGORIES)
    brand_cats = [rng.choice(n_cat, size=rng.integers(1, 4), replace=False) for _ in range(n_brands)]
    brand = _sample_cdf(_cdf(brand_pop), rng.random(N_PRODUCTS))
    # every brand sells at least one product
    brand[:n_brands] = np.arange(n_brands)
    cat = np.array([brand_cats[b][rng.integers(len(brand_cats[b]))] for b in brand])
    base = np.array([c[1] for c in CATEGORIES])
    raw = base[cat] * TIER_PRICE[brand_tier_a[brand]] * rng.lognormal(0.0, 0.35, N_PRODUCTS)
    list_price = np.maximum(np.floor(raw), 2.0) + 0.99
    pop = rng.lognormal(0.0, 1.0, N_PRODUCTS) * brand_pop[brand]
    order = np.lexsort((np.arange(N_PRODUCTS), brand, brand_tier_a[brand]))
    brand, cat, list_price, pop = brand[order], cat[order], list_price[order], pop[order]
    tier = brand_tier_a[brand]
    brand_start = np.searchsorted(brand, np.arange(n_brands), side="left")
    brand_count = np.bincount(brand, minlength=n_brands)
    tier_start = np.searchsorted(tier, np.arange(len(TIERS)), side="left")
    tier_cum = tuple(_cdf(pop[tier == t]) for t in range(len(TIERS)))
    tier_brands = tuple(np.flatnonzero(brand_tier_a == t) for t in range(len(TIERS)))
    tier_brand_cum = tuple(_cdf(brand_pop[b]) for b in tier_brands)

    # --- FX: mean-reverting log random walks, rounded to 6 decimals as written
    fx = np.ones((n_days, len(CURRENCIES)))
    for j, cur in enumerate(CURRENCIES[1:], start=1):
        shocks = rng.normal(0.0, 0.005, n_days)
        x = np.empty(n_days)
        level = 0.0
        for d in range(n_days):  # one step per day of the period (not per customer)
            level = 0.995 * level + shocks[d]
            x[d] = level
        fx[:, j] = np.round(FX_BASE[cur] * np.exp(x), 6)

    return World(
        start=start,
        end=end,
        n_days=n_days,
        days=days,
        day_mult=day_mult,
        promo_pct=promo_pct,
        acq_cdf=acq_cdf,
        hour_w=hour_w,
        hour_cdf=hour_cdf,
        mult_max=mult_max,
        product_category=cat,
        product_brand=brand,
        product_tier=tier,
        list_price=list_price,
        brand_names=tuple(brand_names),
        brand_tier=brand_tier_a,
        brand_start=brand_start,
        brand_count=brand_count,
        tier_start=tier_start,
        tier_cum=tier_cum,
        tier_brand_cum=tier_brand_cum,
        tier_brands=tier_brands,
        fx=fx,
    )


@dataclass
class Chunk:
    """One chunk of customers and everything they did, as numpy arrays (local indices).

    Times are integer milliseconds since the epoch (UTC); ``order_sec`` is in whole seconds since the epoch.
    Orders are sorted by time, lines by (order, line), returns by time, events by
    time, sessions by start; ``*_rank`` arrays are 0-based positions in the chunk.
    """

    n_customers: int
    # customers (+ truth)
    channel: np.ndarray
    country: np.ndarray
    currency: np.ndarray
    signup_ms: np.ndarray
    purchase_rate: np.ndarray
    dropout_rate: np.ndarray
    lifetime_days: np.ndarray
    dropout_ms: np.ndarray
    spend_level: np.ndarray
    browse_intensity: np.ndarray
    favourite_brand: np.ndarray  # -1: none
    brand_loyalty: np.ndarray
    return_propensity: np.ndarray
    app_share: np.ndarray
    bought_at_signup: np.ndarray
    first_name: np.ndarray
    last_name: np.ndarray
    email_number: np.ndarray
    email_domain: np.ndarray
    orders_per_customer: np.ndarray
    # orders
    order_customer: np.ndarray
    order_sec: np.ndarray
    order_app: np.ndarray
    order_currency: np.ndarray
    # order lines
    line_order: np.ndarray
    line_number: np.ndarray
    line_product: np.ndarray
    line_quantity: np.ndarray
    line_unit_price: np.ndarray
    line_discount: np.ndarray
    # returns
    return_order: np.ndarray
    return_line: np.ndarray  # index into the line arrays
    return_ms: np.ndarray
    return_quantity: np.ndarray
    return_amount: np.ndarray
    # events
    event_customer: np.ndarray
    event_session: np.ndarray  # rank of the session (sessions sorted by start)
    event_ms: np.ndarray
    event_type: np.ndarray
    event_product: np.ndarray  # -1: none
    n_sessions: int
    # dirty
    bad_timestamp_orders: np.ndarray  # order ranks
    bad_timestamp_values: list[str]
    unknown_currency_orders: np.ndarray
    duplicate_lines: np.ndarray  # line ranks, sorted
    # campaign (ltvcast.simulate.campaigns.CampaignDraw), None without one
    campaign: object | None = None


def _time_of_day(rng: np.random.Generator, world: World, n: int) -> np.ndarray:
    hour = _sample_cdf(world.hour_cdf, rng.random(n))
    return (hour + rng.random(n)) / 24.0


def _intensity(world: World, t: np.ndarray) -> np.ndarray:
    day = np.minimum(t.astype(np.int64), world.n_days - 1)
    hour = np.minimum(((t - np.floor(t)) * 24.0).astype(np.int64), 23)
    return world.day_mult[day] * world.hour_w[hour]


def _poisson_process(
    rng: np.random.Generator,
    world: World,
    rate: np.ndarray,
    t0: np.ndarray,
    t1: np.ndarray,
    fade_end: np.ndarray | None = None,
    fade_days: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Event times of independent Poisson processes on ``[t0, t1)`` (thinning).

    Intensity of process ``i`` at ``t``: ``rate[i] · day_mult · hour_w`` (×
    ``min(1, (fade_end[i] − t) / fade_days)`` when ``fade_end`` is given).
    Returns (process index, time), grouped by process, unsorted within it.
    """
    dur = np.maximum(t1 - t0, 0.0)
    k = rng.poisson(rate * world.mult_max * dur)
    idx = np.repeat(np.arange(rate.size), k)
    t = t0[idx] + rng.random(idx.size) * dur[idx]
    accept_p = _intensity(world, t) / world.mult_max
    if fade_end is not None:
        accept_p *= np.clip((fade_end[idx] - t) / fade_days, 0.0, 1.0)
    keep = (rng.random(idx.size) < accept_p) & (t < t1[idx])
    return idx[keep], t[keep]


def _rank_in_group(group_sizes: np.ndarray) -> np.ndarray:
    """0, 1, ..., size−1 for each group, concatenated."""
    total = int(group_sizes.sum())
    starts = np.cumsum(group_sizes) - group_sizes
    return np.arange(total) - np.repeat(starts, group_sizes)


def _choose_products(
    rng: np.random.Generator,
    world: World,
    cust: np.ndarray,
    favourite: np.ndarray,
    loyalty: np.ndarray,
    tier_cdf: np.ndarray,
) -> np.ndarray:
    """One product per entry of ``cust``: the favourite brand with prob. loyalty, else by tier and popularity."""
    m = cust.size
    u = rng.random(m)
    fav = favourite[cust]
    loyal = (fav >= 0) & (rng.random(m) < loyalty[cust])
    out = np.empty(m, dtype=np.int64)
    b = fav[loyal]
    out[loyal] = world.brand_start[b] + np.minimum(
        (u[loyal] * world.brand_count[b]).astype(np.int64), world.brand_count[b] - 1
    )
    rest = ~loyal
    tier = (rng.random(m)[:, None] >= tier_cdf[cust]).sum(axis=1)
    tier = np.minimum(tier, len(TIERS) - 1)
    for k in range(len(TIERS)):
        sel = rest & (tier == k)
        out[sel] = world.tier_start[k] + _sample_cdf(world.tier_cum[k], u[sel])
    return out


def simulate_chunk(
    world: World,
    seed: int,
    chunk_index: int,
    n: int,
    dirty_rate: float = 0.0,
    params: ShopParams | None = None,
    campaign=None,
) -> Chunk:
    """Simulate ``n`` customers (chunk ``chunk_index``) and all their orders, returns and events.

    ``campaign``: a :class:`ltvcast.simulate.campaigns.Campaign` (None: no campaign, unchanged output).
    """
    p = params or ShopParams()
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, chunk_index)))
    T = float(world.n_days)
    start_ms = int(world.start.value // 1_000_000)

    # ------------------------------------------------------------------ customers
    ch_share = np.array([c[1] for c in CHANNELS])
    ch_lam = np.array([c[2] for c in CHANNELS])
    ch_mu = np.array([c[3] for c in CHANNELS])
    ch_spend = np.array([c[4] for c in CHANNELS])
    ch_first = np.array([c[5] for c in CHANNELS])
    channel = rng.choice(len(CHANNELS), size=n, p=ch_share / ch_share.sum())
    co_share = np.array([c[2] for c in COUNTRIES])
    country = rng.choice(len(COUNTRIES), size=n, p=co_share / co_share.sum())
    code = np.array([c[0] for c in COUNTRIES])[country]
    u_cur = rng.random(n)
    currency = np.zeros(n, dtype=np.int64)
    currency[(code == "US") & (u_cur < 0.96)] = 1
    currency[(code == "GB") & (u_cur < 0.92)] = 2

    signup_day = _sample_cdf(world.acq_cdf, rng.random(n))
    signup_sec = np.floor((signup_day + _time_of_day(rng, world, n)) * SEC_PER_DAY).astype(np.int64)
    t_sign = signup_sec / SEC_PER_DAY
    signup_month = world.days.month.to_numpy()[signup_day]
    q4 = signup_month >= 10

    lam = (
        rng.gamma(p.r, p.lambda_scale, n)
        * ch_lam[channel]
        * np.where(q4, p.q4_cohort_lambda, 1.0)
        * (1.0 - p.cohort_trend * t_sign / T)
    )
    mu = np.maximum(rng.gamma(p.s, p.mu_scale, n) * ch_mu[channel] * np.where(q4, p.q4_cohort_mu, 1.0), 1e-12)
    tau = rng.exponential(1.0, n) / mu
    dropout = t_sign + tau
    alive_end = np.minimum(dropout, T)

    spend = rng.gamma(p.spend_shape, 1.0 / p.spend_shape, n) * ch_spend[channel]
    if p.regimes:  # a new acquisition channel from a date (simulate.regimes, own random stream)
        from ltvcast.simulate import regimes as _regimes

        channel, lam, mu, tau, spend = _regimes.acquisition(p.regimes, world.start, seed, chunk_index, t_sign, channel,
                                                            lam, mu, tau, spend, [c[0] for c in CHANNELS])
        dropout = t_sign + tau
        alive_end = np.minimum(dropout, T)
    if p.category_affinity is not None:  # the early cohort ages out faster (simulate.categories)
        tau = p.category_affinity.cohort_lifetimes(world, t_sign, tau)
        dropout = t_sign + tau
        alive_end = np.minimum(dropout, T)
    log_nu = np.log(spend)
    logits = np.stack([0.3 - log_nu, np.full(n, 0.6), 1.3 * log_nu - 0.9], axis=1)
    tier_p = np.exp(logits - logits.max(axis=1, keepdims=True))
    tier_p /= tier_p.sum(axis=1, keepdims=True)
    tier_cdf = np.cumsum(tier_p, axis=1)
    tier_cdf[:, -1] = 1.0

    has_fav = rng.random(n) < p.p_favourite
    fav_tier = np.minimum((rng.random(n)[:, None] >= tier_cdf).sum(axis=1), len(TIERS) - 1)
    favourite = np.full(n, -1, dtype=np.int64)
    u_fav = rng.random(n)
    for k in range(len(TIERS)):
        sel = has_fav & (fav_tier == k)
        favourite[sel] = world.tier_brands[k][_sample_cdf(world.tier_brand_cum[k], u_fav[sel])]
    loyalty = np.where(has_fav, rng.beta(4.0, 2.0, n), 0.0)
    ret_prop = rng.gamma(2.0, 0.5, n)
    app_share = rng.beta(1.5, 2.5, n)
    lam_mean = p.r * p.lambda_scale
    browse = (
        p.browse_base
        * (lam / lam_mean) ** p.browse_exponent
        * rng.lognormal(-0.5 * p.browse_sigma**2, p.browse_sigma, n)
    )

    # ------------------------------------------------------------------ orders
    first = rng.random(n) < ch_first[channel]
    delta_sec = rng.integers(5 * 60, 40 * 60, n)
    first &= (signup_sec + delta_sec) / SEC_PER_DAY < alive_end
    rep_c, rep_t = _poisson_process(rng, world, lam, t_sign, alive_end)
    camp = None
    if campaign is not None:  # the treated's extra orders, from the campaign's own stream (simulate.campaigns)
        camp = campaign.draw(world, seed, chunk_index, p, lam=lam, t_sign=t_sign, alive_end=alive_end,
                             spend=spend, app_share=app_share, browse=browse, favourite=favourite,
                             loyalty=loyalty, tier_cdf=tier_cdf, channel=channel)
        rep_c, rep_t = np.concatenate([rep_c, camp.extra_customer]), np.concatenate([rep_t, camp.extra_t])
    if p.regimes:  # purchase rates drop from a date (simulate.regimes)
        from ltvcast.simulate import regimes as _regimes

        kept = _regimes.orders_kept(p.regimes, world.start, seed, chunk_index, rep_t)
        rep_c, rep_t = rep_c[kept], rep_t[kept]
    first_idx = np.flatnonzero(first)
    o_cust = np.concatenate([first_idx, rep_c])
    o_sec = np.concatenate(
        [signup_sec[first_idx] + delta_sec[first_idx], np.floor(rep_t * SEC_PER_DAY).astype(np.int64)]
    )
    o_sec = np.maximum(o_sec, signup_sec[o_cust])
    order = np.lexsort((np.arange(o_cust.size), o_sec))  # by time; ties by creation
    o_cust, o_sec = o_cust[order], o_sec[order]
    n_orders = o_cust.size
    o_t = o_sec / SEC_PER_DAY
    o_day = np.minimum(o_sec // SEC_PER_DAY, world.n_days - 1)
    o_app = rng.random(n_orders) < app_share[o_cust]
    o_cur = currency[o_cust]

    # ------------------------------------------------------------------ order lines
    n_lines = np.minimum(1 + rng.poisson(p.lines_base * np.sqrt(spend[o_cust])), p.max_lines)
    l_order = np.repeat(np.arange(n_orders), n_lines)
    l_number = _rank_in_group(n_lines) + 1
    l_cust = o_cust[l_order]
    l_prod = _choose_products(rng, world, l_cust, favourite, loyalty, tier_cdf)
    if p.category_affinity is not None:  # category first: preferences, cross-sell (own stream, simulate.categories)
        l_prod = p.category_affinity.line_products(world, seed, chunk_index, t_sign, o_cust, l_order,
                                                   favourite, loyalty, tier_cdf)
    cat = world.product_category[l_prod]
    cat_qty = np.array([c[3] for c in CATEGORIES])
    l_qty = 1 + rng.poisson(cat_qty[cat])
    l_day = o_day[l_order]
    rate = world.fx[l_day, o_cur[l_order]]
    list_price = world.list_price[l_prod]
    if p.regimes:  # prices rise from a date (simulate.regimes)
        from ltvcast.simulate import regimes as _regimes

        list_price = _regimes.prices(p.regimes, world.start, l_day, list_price)
    l_price = np.round(list_price / rate, 2)
    pct = world.promo_pct[l_day] * (rng.random(l_order.size) < p.promo_line_share)
    l_disc = np.round(l_qty * l_price * pct, 2)

    # ------------------------------------------------------------------ dirty rows
    # their own stream: the clean data do not depend on dirty_rate (except that dirty orders get no returns)
    drng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, chunk_index)))
    k_bad = int(drng.binomial(n_orders, dirty_rate))
    k_cur = min(int(drng.binomial(n_orders, dirty_rate)), n_orders - k_bad)
    picked = drng.choice(n_orders, size=k_bad + k_cur, replace=False) if k_bad + k_cur else np.empty(0, np.int64)
    bad_orders = np.sort(picked[:k_bad])
    cur_orders = np.sort(picked[k_bad:])
    dirty_order = np.zeros(n_orders, dtype=bool)
    dirty_order[picked] = True
    clean_lines = np.flatnonzero(~dirty_order[l_order])
    k_dup = int(drng.binomial(clean_lines.size, dirty_rate))
    dup_lines = np.sort(drng.choice(clean_lines, size=k_dup, replace=False)) if k_dup else np.empty(0, np.int64)
    bad_values = _bad_timestamps(drng, o_sec[bad_orders], start_ms)

    # ------------------------------------------------------------------ returns
    ret_rate = np.array([c[2] for c in CATEGORIES])
    p_line = np.minimum(ret_rate[cat] * ret_prop[l_cust] * np.where(l_disc > 0, p.promo_return_lift, 1.0), 0.9)
    full = rng.random(n_orders) < p.full_return_p * ret_prop[o_cust]
    u_ret = rng.random(l_order.size)
    u_part = rng.random(l_order.size)
    u_qty = rng.random(l_order.size)
    parcel_t = o_t + 2.0 + rng.gamma(2.0, 3.0, n_orders)
    returned = (u_ret < p_line) | full[l_order]
    returned &= ~dirty_order[l_order]
    returned &= parcel_t[l_order] < T
    r_line = np.flatnonzero(returned)
    r_full = full[l_order[r_line]] | (l_qty[r_line] == 1) | (u_part[r_line] < 0.75)
    r_qty = np.where(
        r_full, l_qty[r_line], 1 + np.minimum((u_qty[r_line] * (l_qty[r_line] - 1)).astype(np.int64), l_qty[r_line] - 2)
    )
    net = np.round(l_qty[r_line] * l_price[r_line] - l_disc[r_line], 2)
    r_amount = np.where(r_qty == l_qty[r_line], net, np.round(net * r_qty / l_qty[r_line], 2))
    r_order = l_order[r_line]
    r_ms = start_ms + np.floor(parcel_t[r_order] * MS_PER_DAY).astype(np.int64)
    r_sort = np.lexsort((r_line, r_ms))
    r_line, r_qty, r_amount, r_order, r_ms = r_line[r_sort], r_qty[r_sort], r_amount[r_sort], r_order[r_sort], r_ms[r_sort]

    # ------------------------------------------------------------------ sessions and events
    browse_rel = browse / p.browse_base
    # (1) background browsing, fading before dropout
    bg_c, bg_t = _poisson_process(rng, world, browse, t_sign, alive_end, dropout, p.fade_days)
    # (2) research sessions before each order
    k_res = rng.poisson(p.research_per_order * browse_rel[o_cust])
    rs_order = np.repeat(np.arange(n_orders), k_res)
    rs_t = o_t[rs_order] - 1.0 / 24.0 - rng.exponential(p.research_lead_days, rs_order.size)
    ok = rs_t >= t_sign[o_cust[rs_order]]
    rs_order, rs_t = rs_order[ok], rs_t[ok]
    rs_c = o_cust[rs_order]
    # (3) purchase sessions
    ps_t = np.maximum(o_t - rng.uniform(5.0, 40.0, n_orders) / 1440.0, t_sign[o_cust])

    n_bg, n_rs = bg_c.size, rs_c.size
    s_cust = np.concatenate([bg_c, rs_c, o_cust])
    s_t = np.concatenate([bg_t, rs_t, ps_t])
    n_sess = s_cust.size
    s_kind = np.concatenate([np.zeros(n_bg, np.int8), np.ones(n_rs, np.int8), np.full(n_orders, 2, np.int8)])

    ev_sess: list[np.ndarray] = []
    ev_t: list[np.ndarray] = []
    ev_type: list[np.ndarray] = []
    ev_prod: list[np.ndarray] = []

    def add(sess: np.ndarray, t: np.ndarray, etype: int, prod: np.ndarray | None) -> None:
        ev_sess.append(sess)
        ev_t.append(t)
        ev_type.append(np.full(sess.size, etype, np.int8))
        ev_prod.append(np.full(sess.size, -1, np.int64) if prod is None else prod)

    sess_ids = np.arange(n_sess)
    add(sess_ids, s_t, SESSION_START, None)
    # browse (background + research) sessions: views, maybe an abandoned cart
    browse_sess = sess_ids[: n_bg + n_rs]
    dur = (1.0 + rng.exponential(7.0, browse_sess.size)) / 1440.0
    views_mean = np.where(s_kind[browse_sess] == 0, p.views_per_session, p.research_views)
    n_views = 1 + rng.poisson(views_mean)
    v_sess = np.repeat(browse_sess, n_views)
    v_prod = _choose_products(rng, world, s_cust[v_sess], favourite, loyalty, tier_cdf)
    # research sessions: the first view is one of the products later bought, with probability p
    first_view = np.cumsum(n_views) - n_views  # position of each session's first view
    sees = rng.random(n_rs) < p.research_sees_bought_p
    line_start = np.cumsum(n_lines) - n_lines
    bought_line = line_start[rs_order] + np.minimum(
        (rng.random(n_rs) * n_lines[rs_order]).astype(np.int64), n_lines[rs_order] - 1
    )
    pos = first_view[n_bg:][sees]
    v_prod[pos] = l_prod[bought_line[sees]]
    v_t = s_t[v_sess] + rng.random(v_sess.size) * dur[v_sess]
    add(v_sess, v_t, VIEW, v_prod)
    atc_p = np.where(s_kind[browse_sess] == 0, p.browse_atc_p, p.research_atc_p)
    atc = rng.random(browse_sess.size) < atc_p
    a_sess = browse_sess[atc]
    a_prod = v_prod[first_view[atc]]
    a_t = s_t[a_sess] + (0.5 + 0.5 * rng.random(a_sess.size)) * dur[a_sess]
    add(a_sess, a_t, ADD_TO_CART, a_prod)
    # purchase sessions
    ps_sess = n_bg + n_rs + l_order  # one entry per line
    span = (o_t - ps_t)[l_order]
    seen = rng.random(l_order.size) < p.purchase_view_p
    add(ps_sess[seen], ps_t[l_order[seen]] + 0.6 * rng.random(int(seen.sum())) * span[seen], VIEW, l_prod[seen])
    n_extra = rng.poisson(p.purchase_extra_views, n_orders)
    x_order = np.repeat(np.arange(n_orders), n_extra)
    x_prod = _choose_products(rng, world, o_cust[x_order], favourite, loyalty, tier_cdf)
    add(n_bg + n_rs + x_order, ps_t[x_order] + 0.8 * rng.random(x_order.size) * (o_t - ps_t)[x_order], VIEW, x_prod)
    add(ps_sess, ps_t[l_order] + (0.6 + 0.4 * rng.random(l_order.size)) * span, ADD_TO_CART, l_prod)

    e_sess = np.concatenate(ev_sess)
    e_t = np.concatenate(ev_t)
    e_type = np.concatenate(ev_type)
    e_prod = np.concatenate(ev_prod)
    e_cust = s_cust[e_sess]
    keep = e_t < alive_end[e_cust]
    e_sess, e_t, e_type, e_prod, e_cust = e_sess[keep], e_t[keep], e_type[keep], e_prod[keep], e_cust[keep]
    e_ms = np.maximum(start_ms + np.floor(e_t * MS_PER_DAY).astype(np.int64), start_ms + signup_sec[e_cust] * 1000)
    # purchase events: exactly at the order time (whole seconds)
    e_sess = np.concatenate([e_sess, ps_sess])
    e_ms = np.concatenate([e_ms, start_ms + o_sec[l_order] * 1000])
    e_type = np.concatenate([e_type, np.full(l_order.size, PURCHASE, np.int8)])
    e_prod = np.concatenate([e_prod, l_prod])
    e_cust = np.concatenate([e_cust, l_cust])
    ev_order = np.lexsort((np.arange(e_ms.size), e_ms))
    e_sess, e_ms, e_type, e_prod, e_cust = e_sess[ev_order], e_ms[ev_order], e_type[ev_order], e_prod[ev_order], e_cust[ev_order]
    # session ranks by start time
    s_start_ms = np.maximum(start_ms + np.floor(s_t * MS_PER_DAY).astype(np.int64), start_ms + signup_sec[s_cust] * 1000)
    s_order = np.lexsort((np.arange(n_sess), s_start_ms))
    s_rank = np.empty(n_sess, dtype=np.int64)
    s_rank[s_order] = np.arange(n_sess)

    dropout_ms = start_ms + np.floor(np.minimum(dropout, _MAX_DAYS) * MS_PER_DAY).astype(np.int64)
    first_names, last_names, domains = _NAME_SIZES
    return Chunk(
        n_customers=n,
        channel=channel,
        country=country,
        currency=currency,
        signup_ms=start_ms + signup_sec * 1000,
        purchase_rate=lam,
        dropout_rate=mu,
        lifetime_days=tau,
        dropout_ms=dropout_ms,
        spend_level=spend,
        browse_intensity=browse,
        favourite_brand=favourite,
        brand_loyalty=loyalty,
        return_propensity=ret_prop,
        app_share=app_share,
        bought_at_signup=first,
        first_name=rng.integers(0, first_names, n),
        last_name=rng.integers(0, last_names, n),
        email_number=rng.integers(1, 1000, n),
        email_domain=rng.integers(0, domains, n),
        orders_per_customer=np.bincount(o_cust, minlength=n),
        order_customer=o_cust,
        order_sec=start_ms // 1000 + o_sec,
        order_app=o_app,
        order_currency=o_cur,
        line_order=l_order,
        line_number=l_number,
        line_product=l_prod,
        line_quantity=l_qty,
        line_unit_price=l_price,
        line_discount=l_disc,
        return_order=r_order,
        return_line=r_line,
        return_ms=r_ms,
        return_quantity=r_qty,
        return_amount=r_amount,
        event_customer=e_cust,
        event_session=s_rank[e_sess],
        event_ms=e_ms,
        event_type=e_type,
        event_product=e_prod,
        n_sessions=n_sess,
        bad_timestamp_orders=bad_orders,
        bad_timestamp_values=bad_values,
        unknown_currency_orders=cur_orders,
        duplicate_lines=dup_lines,
        campaign=camp,
    )


#: dropout times beyond this many days after the start are written as this (timestamps stay in range)
_MAX_DAYS = 60_000.0

FIRST_NAMES: tuple[str, ...] = (
    "Anna", "Lukas", "Marie", "Jonas", "Sophie", "Leon", "Emma", "Felix", "Mia", "Paul",
    "Hannah", "Elias", "Lea", "Noah", "Clara", "Julian", "Lena", "David", "Laura", "Ben",
    "Chloe", "Louis", "Camille", "Hugo", "Giulia", "Marco", "Lucia", "Pablo", "Sara", "Daan",
    "Sanne", "Erik", "Freja", "Oliver", "Amelia", "Jack", "Olivia", "James", "Emily", "Liam",
)
LAST_NAMES: tuple[str, ...] = (
    "Mueller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Hoffmann",
    "Schulz", "Koch", "Richter", "Klein", "Wolf", "Martin", "Bernard", "Dubois", "Laurent", "Rossi",
    "Russo", "Bianchi", "Garcia", "Martinez", "Lopez", "de Jong", "Jansen", "Visser", "Andersson",
    "Nielsen", "Hansen", "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson",
    "Miller", "Davis", "Huber",
)
EMAIL_DOMAINS: tuple[str, ...] = ("example.com", "example.org", "example.net", "mail.example", "post.example")
_NAME_SIZES = (len(FIRST_NAMES), len(LAST_NAMES), len(EMAIL_DOMAINS))


def _bad_timestamps(rng: np.random.Generator, order_sec: np.ndarray, start_ms: int) -> list[str]:
    """Unparseable timestamp strings for the dirty orders (a few per chunk; impossible calendar dates)."""
    out: list[str] = []
    kinds = rng.integers(0, 4, order_sec.size)
    for sec, kind in zip(order_sec.tolist(), kinds.tolist()):  # only the few dirty rows
        ts = pd.Timestamp(start_ms + sec * 1000, unit="ms")
        clock = ts.strftime("%H:%M:%S")
        if kind == 0:
            out.append(f"{ts.year}-02-30 {clock}")
        elif kind == 1:
            out.append(f"{ts.year}-13-{ts.day:02d} {clock}")
        elif kind == 2:
            out.append("0000-00-00 00:00:00")
        else:
            out.append("#VALUE!")
    return out
