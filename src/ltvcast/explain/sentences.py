"""Sentences a marketer reads: what a driver's value says about the customer, and what it does to the output.

A sentence has two halves: the value in words (a phrase per known feature,
e.g. ``inactive_per_gap`` → "no purchase for 143 days, 3.1× their usual
gap"; a sequence group → "bought in 5 of the last 6 months"; other features
→ "<feature>: <value>") and the effect on the output ("expected spend ×1.8",
"churn odds ×0.6", "10 % higher: expected spend +4 %").
"""

from __future__ import annotations

import math

import numpy as np

from ltvcast.explain.attribution import Attribution

__all__ = ["describe_value", "effect_phrase", "sentence"]


def _num(v: float) -> str:
    if not math.isfinite(v):
        return "unknown"
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:,.2f}"


def _money(v: float) -> str:
    return "unknown" if not math.isfinite(v) else f"{v:,.2f}"


def _plural(n: float, word: str) -> str:
    return f"{_num(n)} {word}{'' if n == 1 else 's'}"


def _ctx(att: Attribution, i: int, name: str) -> float:
    if att.context is not None and name in att.context.columns:
        v = att.context[name].iloc[i]
        return float(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else math.nan
    if name in att.features:
        return float(att.values[i, att.features.index(name)])
    return math.nan


def _inactive(att, i, v):
    gap = _ctx(att, i, "ipt_mean_days")
    if math.isfinite(gap) and math.isfinite(v):
        return f"no purchase for {v * gap:.0f} days, {v:.1f}× their usual gap"
    return f"inactive for {_num(v)}× their usual gap between purchases"


_PHRASES = {
    "inactive_per_gap": _inactive,
    "expected_gaps_missed": lambda a, i, v: f"{v:.1f} purchases overdue at their own pace",
    "inactive_share": lambda a, i, v: f"no purchase in the last {v:.0%} of their time as a customer",
    "recency_share": lambda a, i, v: f"last purchase {v:.0%} of the way through their time as a customer",
    "occasions": lambda a, i, v: f"bought on {_plural(v, 'day')} so far",
    "frequency": lambda a, i, v: f"{_plural(v, 'repeat purchase')}",
    "orders": lambda a, i, v: f"{_plural(v, 'order')} so far",
    "occasions_30d": lambda a, i, v: f"bought on {_plural(v, 'day')} in the last 30 days",
    "occasions_90d": lambda a, i, v: f"bought on {_plural(v, 'day')} in the last 90 days",
    "spend_30d": lambda a, i, v: f"spent {_money(v)} in the last 30 days",
    "spend_90d": lambda a, i, v: f"spent {_money(v)} in the last 90 days",
    "spend_total": lambda a, i, v: f"spent {_money(v)} in all",
    "gross_spend": lambda a, i, v: f"bought for {_money(v)} in all",
    "value_per_occasion": lambda a, i, v: f"spends {_money(v)} per purchase day",
    "order_value_mean": lambda a, i, v: f"average order {_money(v)}",
    "monetary_value": lambda a, i, v: f"spends {_money(v)} per repeat purchase",
    "first_order_value": lambda a, i, v: f"first order {_money(v)}",
    "ipt_mean_days": lambda a, i, v: f"buys every {v:.0f} days on average",
    "ipt_cv": lambda a, i, v: f"gaps between purchases vary by {v:.0%} of their mean",
    "rate_occasions_wk": lambda a, i, v: f"buys {v * 30.4375 / 7:.1f} times a month on average",
    "rate_repeat_wk": lambda a, i, v: f"repeat purchases at {v * 30.4375 / 7:.1f} a month",
    "rate_spend_wk": lambda a, i, v: f"spends {_money(v * 30.4375 / 7)} a month on average",
    "share_occasions_30d": lambda a, i, v: f"{v:.0%} of their purchase days in the last 30 days",
    "share_occasions_90d": lambda a, i, v: f"{v:.0%} of their purchase days in the last 90 days",
    "share_spend_90d": lambda a, i, v: f"{v:.0%} of their spend in the last 90 days",
    "views_30d": lambda a, i, v: f"{_plural(v, 'product view')} in the last 30 days",
    "views_90d": lambda a, i, v: f"{_plural(v, 'product view')} in the last 90 days",
    "views": lambda a, i, v: f"{_plural(v, 'product view')} in all",
    "sessions_30d": lambda a, i, v: f"{_plural(v, 'visit')} in the last 30 days",
    "sessions_90d": lambda a, i, v: f"{_plural(v, 'visit')} in the last 90 days",
    "add_to_carts_30d": lambda a, i, v: f"{_plural(v, 'add-to-cart')} in the last 30 days",
    "add_to_carts_90d": lambda a, i, v: f"{_plural(v, 'add-to-cart')} in the last 90 days",
    "days_since_last_visit": lambda a, i, v: f"last visit {v:.0f} days ago",
    "return_rate_value": lambda a, i, v: f"returned {v:.0%} of what they bought",
    "return_rate_lines": lambda a, i, v: f"returned {v:.0%} of the lines they bought",
    "items_per_order": lambda a, i, v: f"{v:.1f} items per order",
    "discount_share": lambda a, i, v: f"{v:.0%} of their list price came off as discounts",
    "distinct_categories": lambda a, i, v: f"bought in {_plural(v, 'category')}".replace("categorys", "categories"),
    "ipt_std_days": lambda a, i, v: f"gaps between purchases vary by ±{v:.0f} days",
    # hybrid's BTYD inputs
    "pnbd_tx": lambda a, i, v: f"Pareto/NBD expects {v:.2f} purchases in the horizon",
    "bgnbd_tx": lambda a, i, v: f"BG/NBD expects {v:.2f} purchases in the horizon",
    "pnbd_p_alive": lambda a, i, v: f"Pareto/NBD: {v:.0%} likely still a customer",
    "bgnbd_p_alive": lambda a, i, v: f"BG/NBD: {v:.0%} likely still a customer",
    "pnbd_p_none": lambda a, i, v: f"Pareto/NBD: {v:.0%} chance of no purchase in the horizon",
    "bgnbd_p_none": lambda a, i, v: f"BG/NBD: {v:.0%} chance of no purchase in the horizon",
    "gg_value": lambda a, i, v: f"Gamma-Gamma expects {_money(v)} per purchase",
    "pnbd_spend": lambda a, i, v: f"Pareto/NBD expects {_money(v)} of spend in the horizon",
    "bgnbd_spend": lambda a, i, v: f"BG/NBD expects {_money(v)} of spend in the horizon",
    # BTYD summary (weeks)
    "recency": lambda a, i, v: f"last purchase {v * 7:.0f} days after the first",
    "T": lambda a, i, v: f"a customer for {v * 7:.0f} days",
}
_PERIOD_WORD = {"W": "week", "M": "month"}


def _group(att: Attribution, i: int, feature: str, v: float) -> str:
    """A sequence group ``seq:<channel>:<recent|older>`` of the deep model."""
    _, channel, part = feature.split(":")
    meta = att.extra.get("groups", {}).get(feature, {})
    word = _PERIOD_WORD.get(att.extra.get("period", ""), "period")
    n = int(meta.get("periods", 0))
    active = att.extra.get("active", {}).get(feature)
    when = f"the last {n} {word}s" if part == "recent" else f"the {n} {word}s before those"
    if channel in ("orders", "spend") and active is not None:
        k = int(active[i])
        return f"bought in {k} of {when}" + (f" ({_money(v)})" if channel == "spend" else "")
    if channel == "spend":
        return f"spent {_money(v)} in {when}"
    return f"{_num(v)} {channel.replace('_', '-')} in {when}"


def describe_value(att: Attribution, i: int, j: int) -> str:
    """Driver ``j``'s value for customer row ``i`` in words."""
    feature, v = att.features[j], float(att.values[i, j])
    if feature.startswith("seq:"):
        return _group(att, i, feature, v)
    phrase = _PHRASES.get(feature)
    if phrase is not None and math.isfinite(v):
        return phrase(att, i, v)
    if not math.isfinite(v):
        return f"{feature} unknown"
    return f"{feature} = {_num(v)}"


def effect_phrase(att: Attribution, i: int, j: int) -> str:
    """What driver ``j`` does to the output for row ``i``."""
    c = float(att.contributions[i, j])
    what = "expected spend" if att.target == "pred_spend" else "churn odds"
    if att.scale == "elasticity":
        what = "expected spend" if att.target == "pred_spend" else "the chance of no purchase"
        if att.methods[j] == "arc_elasticity":
            factor = float(att.extra.get("arc_factor", {}).get(att.features[j], np.full(len(att.output), np.nan))[i])
            return f"one more purchase: {what} ×{factor:.2f}"
        change = 1.1 ** c - 1
        p = float(att.output[i])
        if att.target != "pred_spend" and p > 0:
            change = min(change, 1 / p - 1)  # a local elasticity extrapolated; a probability stays <= 1
        return f"10 % higher: {what} {change:+.1%}"
    return f"{what} ×{math.exp(c):.2f}"


def sentence(att: Attribution, i: int, j: int) -> str:
    """``"<value in words> → <effect>"`` for driver ``j`` of customer row ``i``."""
    return f"{describe_value(att, i, j)} → {effect_phrase(att, i, j)}"
