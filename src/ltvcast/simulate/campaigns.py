"""Randomised campaigns in the simulated shop: a treatment on a date with a heterogeneous effect, and its truth.

The campaign (:class:`Campaign`)
--------------------------------
* **Who.** Every customer who signed up before the campaign day ``start`` is
  in the experiment (``in_campaign``; a customer who has silently dropped out
  is in it too: the shop cannot tell). Each is treated independently with
  probability ``treated_share`` (Bernoulli, so the arms' sizes are random).
* **Effect.** While alive, a treated customer's purchase rate in the window
  ``[start, start + days)`` is ``λ + lift · λ̄`` instead of ``λ`` (``λ̄ = r ·
  lambda_scale``, the mean rate: the offer brings about the same number of
  extra orders to a frequent and an occasional buyer who responds), with a
  lift that depends on the customer's traits::

      lift = clip(base_lift · c[channel] · (0.5 + 4/3 · app_share) · w, 0, 5 · base_lift),
      w = (browse / browse_base) / (λ / λ̄)^0.6

  ``c`` by acquisition channel (``CHANNEL_RESPONSE``: email 2.0, referral 1.5,
  direct 1.2, organic_search 1.0, paid_search 0.6, affiliate 0.4,
  paid_social 0.2: customers who came through a channel they chose listen to
  the shop's messages). App users respond more (an app/push offer), and so do "window shoppers":
  ``w`` is the browsing the customer does beyond what their purchase rate
  explains (the process draws browse = browse_base · (λ/λ̄)^0.6 ·
  lognormal(mean 1, σ 0.9), so ``w`` is that lognormal factor).
  ``app_share`` ~ Beta(1.5, 2.5) (mean 0.375) and the browse intensity are the
  process's own traits. The
  effect does not grow with λ while CLV does, so ranking by CLV is not
  ranking by uplift; dead customers gain nothing.
* **How it is drawn.** The extra orders are a second Poisson process of
  intensity ``λ̄ · lift · m(d) · hour(t)`` on the window (superposition: the
  two processes together have intensity ``(λ + λ̄ · lift) m(d) hour(t)``), drawn
  from the campaign's own random stream ``SeedSequence(seed, spawn_key=(5,
  chunk))``; they get lines, returns and browsing like any order. Without a
  campaign nothing changes: the output is byte-identical to a simulation that
  never heard of campaigns.

The truth (columns added to ``truth.parquet`` when a campaign runs)
-------------------------------------------------------------------
``in_campaign``, ``treated``, ``campaign_lift`` (relative lift on the
purchase rate), ``effect_orders`` (expected incremental orders in the window
if treated, ``lift · λ̄ · ∫ m(d) dd`` over the window while alive — exact for
whole days; the hour profile has mean 1), ``effect_spend`` (EUR: expected
incremental spend in the window if treated = ``effect_orders`` × the
customer's expected order value: E[lines] × E[line value at list price ×
E[quantity]] × (1 − the window's expected promotion discount); before returns
and FX rounding, which the store's net spend also subtracts — returns take
≈ 10 % of sales). The individual effect is given for control customers too
(what the treatment would have done), so the true average effect and the true
incremental margin of any targeting policy are known.

``campaign_assignments.csv`` (``customer_id, arm`` with arm ``treatment`` or
``control``) is the file a shop would keep; ``campaign.json`` the settings.

:func:`simulate_outcomes` draws the same campaign's outcomes directly from
the customer-level core of the process (no catalogue, no files), vectorised,
for studies over many seeds (the coverage test).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats

from ltvcast.errors import LtvcastError
from ltvcast.simulate.process import CATEGORIES, CHANNELS, _poisson_process

#: relative lift is capped at this multiple of ``base_lift``
LIFT_CAP = 5.0
#: response factor of the campaign by acquisition channel (order of process.CHANNELS)
CHANNEL_RESPONSE: dict[str, float] = {
    "organic_search": 1.0, "paid_search": 0.6, "paid_social": 0.2, "email": 2.0,
    "referral": 1.5, "direct": 1.2, "affiliate": 0.4,
}
#: the campaign's random stream: SeedSequence(seed, spawn_key=(CAMPAIGN_STREAM, chunk))
CAMPAIGN_STREAM = 5
ASSIGNMENTS_FILE = "campaign_assignments.csv"
SETTINGS_FILE = "campaign.json"

TRUTH_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("in_campaign", pa.bool_()),
    ("treated", pa.bool_()),
    ("campaign_lift", pa.float64()),
    ("effect_orders", pa.float64()),
    ("effect_spend", pa.float64()),
)


@dataclass(frozen=True)
class Campaign:
    """A randomised campaign (module docstring).

    Attributes:
        start: the campaign day (``YYYY-MM-DD``, UTC), inside the simulated period.
        days: length of the effect window in days (≥ 1).
        treated_share: probability of treatment for each customer in it (0 < share < 1).
        base_lift: average relative lift on the purchase rate (0 .. 5).
    """

    start: str
    days: int = 90
    treated_share: float = 0.5
    base_lift: float = 0.5

    def checked(self) -> Campaign:
        """Validate; returns self. Raises LtvcastError for a value out of range."""
        try:
            pd.Timestamp(self.start)
        except (ValueError, TypeError) as exc:
            raise LtvcastError(f"campaign start must be a date (YYYY-MM-DD), got {self.start!r}") from exc
        if isinstance(self.days, bool) or int(self.days) != self.days or self.days < 1:
            raise LtvcastError(f"campaign days must be a positive integer, got {self.days!r}")
        if not 0.0 < float(self.treated_share) < 1.0:
            raise LtvcastError(f"campaign treated share must be between 0 and 1, got {self.treated_share!r}")
        if not 0.0 <= float(self.base_lift) <= 5.0:
            raise LtvcastError(f"campaign lift must be between 0 and 5, got {self.base_lift!r}")
        return self

    def draw(self, world, seed: int, chunk_index: int, params, **arrays) -> CampaignDraw:
        """One chunk's campaign (:func:`draw_campaign`); called by ``process.simulate_chunk``."""
        return draw_campaign(self, world, seed, chunk_index, params, **arrays)


@dataclass
class CampaignDraw:
    """One chunk's campaign: per customer arrays (n,) and the extra orders (customer index, time in days)."""

    in_campaign: np.ndarray
    treated: np.ndarray
    lift: np.ndarray
    effect_orders: np.ndarray
    effect_spend: np.ndarray
    extra_customer: np.ndarray
    extra_t: np.ndarray


def campaign_lift(base_lift: float, channel: np.ndarray, app_share: np.ndarray,
                  window_shopping: np.ndarray) -> np.ndarray:
    """Lift (extra purchase rate in units of the mean rate λ̄), shape of the inputs (module docstring).

    ``channel``: index into ``process.CHANNELS``; ``window_shopping``: ``w`` = (browse / browse_base) / (λ / λ̄)^0.6.
    """
    response = np.array([CHANNEL_RESPONSE[c[0]] for c in CHANNELS])[np.asarray(channel)]
    lift = base_lift * response * (0.5 + 4.0 / 3.0 * np.asarray(app_share)) * np.asarray(window_shopping)
    return np.clip(lift, 0.0, LIFT_CAP * base_lift)


def _cum_mult(world) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(world.day_mult)])


def exposure(world, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """∫ day_mult(t) dt over ``[t0, t1)`` (days since the start; 0 where t1 ≤ t0), shape (n,).

    Whole days add their multiplier; a partial day adds its fraction of it
    (the hour profile, mean 1, is not resolved inside a partial day).
    """
    cum = _cum_mult(world)
    n_days = world.n_days

    def integral(t: np.ndarray) -> np.ndarray:
        t = np.clip(t, 0.0, float(n_days))
        d = np.minimum(np.floor(t).astype(np.int64), n_days - 1)
        return cum[d] + (t - d) * world.day_mult[d]

    return np.where(t1 > t0, integral(t1) - integral(t0), 0.0)


def expected_order_value(world, spend_level, favourite, loyalty, tier_cdf, lines_base, max_lines, promo_share):
    """Expected EUR value of one order of each customer at list prices, before returns, shape (n,).

    E[lines] · E[line] · (1 − promo_share), with lines = min(1 + Poisson(lines_base·√ν), max_lines),
    a line = list price × (1 + category's extra-units mean) of a product chosen as in
    :func:`ltvcast.simulate.process._choose_products` (favourite brand with probability loyalty,
    uniform in the brand; else tier by ``tier_cdf``, product by popularity in the tier).
    """
    qty = 1.0 + np.array([c[3] for c in CATEGORIES])[world.product_category]
    value = world.list_price * qty
    csum = np.concatenate([[0.0], np.cumsum(value)])
    brand_mean = (csum[world.brand_start + world.brand_count] - csum[world.brand_start]) / world.brand_count
    tier_mean = np.empty(len(world.tier_cum))
    for k, cdf in enumerate(world.tier_cum):
        w = np.diff(np.concatenate([[0.0], cdf]))
        tier_mean[k] = float(w @ value[world.tier_start[k]: world.tier_start[k] + cdf.size])
    tier_p = np.diff(np.concatenate([np.zeros((tier_cdf.shape[0], 1)), tier_cdf], axis=1), axis=1)
    loyal = np.where(favourite >= 0, loyalty, 0.0)
    line = loyal * brand_mean[np.maximum(favourite, 0)] + (1.0 - loyal) * (tier_p @ tier_mean)
    a = lines_base * np.sqrt(spend_level)
    k = np.arange(max_lines - 1)  # Poisson values 0 .. max_lines-2 give 1 .. max_lines-1 lines
    pmf = stats.poisson.pmf(k[None, :], a[:, None])
    lines = pmf @ (1.0 + k) + max_lines * stats.poisson.sf(max_lines - 2, a)
    return lines * line * (1.0 - promo_share)


def draw_campaign(campaign: Campaign, world, seed: int, chunk_index: int, params, *, lam, t_sign, alive_end,
                  spend, app_share, browse, favourite, loyalty, tier_cdf, channel) -> CampaignDraw:
    """Assignment, individual effects and the extra orders of one chunk (arrays of shape (n,)).

    Raises:
        LtvcastError: the campaign day is not inside the simulated period.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(CAMPAIGN_STREAM, chunk_index)))
    c0 = (pd.Timestamp(campaign.start).normalize() - world.start).days
    if not 0 < c0 < world.n_days:
        raise LtvcastError(
            f"campaign start {campaign.start} is not inside the simulated period "
            f"{world.start.date()} .. {(world.end - pd.Timedelta(days=1)).date()}"
        )
    c1 = float(min(c0 + campaign.days, world.n_days))
    n = lam.size
    in_campaign = t_sign < c0
    treated = in_campaign & (rng.random(n) < campaign.treated_share)
    lam_mean = params.r * params.lambda_scale
    w = (browse / params.browse_base) / (lam / lam_mean) ** params.browse_exponent
    lift = np.where(in_campaign, campaign_lift(campaign.base_lift, channel, app_share, w), 0.0)
    t0 = np.full(n, float(c0))
    t1 = np.minimum(c1, alive_end)
    effect_orders = lift * lam_mean * exposure(world, t0, t1)
    days = np.arange(c0, int(np.ceil(c1)))
    promo = float(world.day_mult[days] @ world.promo_pct[days] / world.day_mult[days].sum()) * params.promo_line_share
    aov = expected_order_value(world, spend, favourite, loyalty, tier_cdf, params.lines_base, params.max_lines, promo)
    rate = np.where(treated, lift * lam_mean, 0.0)
    extra_c, extra_t = _poisson_process(rng, world, rate, t0, np.maximum(t1, t0))
    return CampaignDraw(in_campaign, treated, lift, effect_orders, effect_orders * aov, extra_c, extra_t)


def truth_schema(base: pa.Schema) -> pa.Schema:
    """The truth schema with the campaign columns appended."""
    for name, dtype in TRUTH_FIELDS:
        base = base.append(pa.field(name, dtype))
    return base


def with_truth(truth: pa.Table, draw: CampaignDraw) -> pa.Table:
    """``truth`` (one chunk) with the campaign columns appended."""
    arrays = (draw.in_campaign, draw.treated, draw.lift, draw.effect_orders, draw.effect_spend)
    for (name, dtype), values in zip(TRUTH_FIELDS, arrays):
        truth = truth.append_column(pa.field(name, dtype), pa.array(values, dtype))
    return truth


def write_campaign_files(out_dir: str | Path, campaign: Campaign, truth: pd.DataFrame) -> Path:
    """Write ``campaign_assignments.csv`` (customers in the campaign) and ``campaign.json``; returns the CSV path."""
    out = Path(out_dir)
    part = truth.loc[truth["in_campaign"], ["customer_id", "treated"]]
    frame = pd.DataFrame({"customer_id": part["customer_id"], "arm": np.where(part["treated"], "treatment", "control")})
    path = out / ASSIGNMENTS_FILE
    frame.to_csv(path, index=False)
    settings = asdict(campaign) | {
        "customers_in_campaign": int(len(part)),
        "treated": int(part["treated"].sum()),
        "true_ate_spend": float(truth.loc[truth["in_campaign"], "effect_spend"].mean()) if len(part) else None,
        "effect_window": f"[{campaign.start}, {campaign.start} + {campaign.days} days)",
        "effect_spend_basis": "EUR at list prices after expected promotion discounts, before returns",
    }
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    return path


def read_campaign_truth(out_dir: str | Path) -> pd.DataFrame:
    """The campaign columns of ``truth.parquet`` for the customers in the campaign.

    Raises:
        LtvcastError: the simulation ran without a campaign.
    """
    import pyarrow.parquet as pq

    path = Path(out_dir) / "truth.parquet"
    if not path.exists():
        raise LtvcastError(f"{path} not found: is {out_dir} the output of `ltvcast simulate`?")
    truth = pq.read_table(path).to_pandas()
    if "treated" not in truth.columns:
        raise LtvcastError(f"{out_dir} was simulated without a campaign (ltvcast simulate --campaign-start ...)")
    cols = ["customer_id"] + [name for name, _ in TRUTH_FIELDS]
    return truth.loc[truth["in_campaign"], cols].reset_index(drop=True)


def simulate_outcomes(n: int, seed: int, *, base_lift: float = 0.5, treated_share: float = 0.5,
                      pre_days: float = 180.0, days: float = 90.0, order_value: float = 60.0) -> pd.DataFrame:
    """Outcomes of a campaign drawn directly from the customer-level core of the process (vectorised).

    Each customer: λ ~ Gamma(0.75, 0.0128)/day, dropout μ ~ Gamma(0.8, 0.003125)/day
    (the process's defaults), ν ~ Gamma(3, 1/3), app share ~ Beta(1.5, 2.5), browse
    beyond the rate w ~ lognormal(σ = 0.9, mean 1), acquisition channel by the
    process's shares; alive at the pre-period's
    start, lifetime Exp(μ); orders Poisson(λ · time alive) in the pre-period and
    Poisson((λ + λ̄ · lift · treated) · time alive) in the window,
    each order worth Gamma(2, order_value·ν/2) EUR; ``lift`` from
    :func:`campaign_lift`. No calendar. Treatment Bernoulli(treated_share).

    Returns:
        Frame of n rows: ``treated`` (bool), ``pre_spend``, ``spend``, ``orders``,
        ``clv`` (a CLV prediction made at the campaign start: the expected window
        spend without treatment given λ, ν, μ and whether alive, times
        lognormal(σ = 0.5) noise of mean 1, standing in for a model's error), ``effect`` (true expected
        incremental spend if treated, EUR).
    """
    rng = np.random.default_rng(seed)
    lam = rng.gamma(0.75, 0.0128, n)
    lam_mean = 0.75 * 0.0128
    mu = rng.gamma(0.8, 0.003125, n)
    nu = rng.gamma(3.0, 1.0 / 3.0, n)
    app = rng.beta(1.5, 2.5, n)
    w = rng.lognormal(-0.5 * 0.81, 0.9, n)  # browsing beyond the purchase rate
    life = rng.exponential(1.0, n) / mu
    pre_alive = np.minimum(life, pre_days)
    post_alive = np.clip(life - pre_days, 0.0, days)
    treated = rng.random(n) < treated_share
    share = np.array([c[1] for c in CHANNELS])
    channel = rng.choice(len(CHANNELS), size=n, p=share / share.sum())
    lift = campaign_lift(base_lift, channel, app, w)
    pre_orders = rng.poisson(lam * pre_alive)
    orders = rng.poisson((lam + lam_mean * lift * treated) * post_alive)

    def value(k: np.ndarray) -> np.ndarray:
        return rng.gamma(2.0 * np.maximum(k, 1e-12), order_value * nu / 2.0) * (k > 0)  # sum of k Gamma(2) draws

    alive_at_start = life > pre_days
    # expected window spend without treatment, given the latent traits and whether alive (an oracle CLV)
    mean_alive = (1.0 - np.exp(-mu * days)) / mu
    clv = lam * order_value * nu * np.where(alive_at_start, mean_alive, 0.0) * rng.lognormal(-0.125, 0.5, n)
    effect = lift * lam_mean * order_value * nu * post_alive
    return pd.DataFrame({
        "treated": treated, "pre_spend": value(pre_orders), "spend": value(orders),
        "orders": orders, "clv": clv, "effect": effect,
    })
