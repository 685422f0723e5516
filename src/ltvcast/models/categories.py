"""The category split: each customer's predicted horizon spend divided among the shop's categories.

A total model (any :class:`ltvcast.models.base.Forecaster`) predicts what a
customer spends in the horizon (``pred_spend``) and whether they buy at all
(``p_churn``). :class:`CategorySplit` learns, for a customer who buys in the
horizon, which categories they buy in and what share of their spend goes to
each, and splits the total with it:

* ``p_buy[c] = (1 − p_churn) · q[c]``, with ``q[c]`` the learned probability
  of a sale line in category ``c`` given a purchase in the horizon;
* ``pred_spend[c] = pred_spend · s[c] / Σ_c' s[c']``, with ``s[c]`` the
  learned share of the horizon's gross sales in ``c``: the categories sum to
  the customer's total exactly (floating point), so the total model's spend
  and ranking are unchanged.

Both heads are LightGBM models trained on time-shifted windows before the
cutoff (features at ``cutoff − w·horizon``, labels in the following
horizon, ``w = 1 .. windows``), over customers who bought in the window.
``layout="stacked"``: one booster per head over customer × category rows
with the category as a categorical input; ``layout="per_category"``: one
booster per head and category (multi-output).

Inputs per customer × category: the customer's own category history
(:func:`ltvcast.features.categories.category_history`) and three shop-level
associations learned at the cutoff the model predicts from (held in the
model, so one customer's row depends only on that customer's lines):
``cat_pop`` (share of customers who bought the category), ``brand_affinity``
(the customer's brand spend shares times each brand's category mix of sales)
and ``lift_score`` (the customer's category spend shares times the category
co-purchase lift ``P(b, c) / (P(b) P(c))`` over customers, Agrawal et al.
1993 association rules); ``last_trans``, the chance that a customer's next
purchase occasion has a line in the category given the categories of this
one (a first-order Markov chain over consecutive occasions, learned over
the shop), from the customer's last occasion; and ``cat_post``, the
customer's line share in the category shrunk towards the shop's mix with
:data:`PRIOR_LINES` pseudo-lines (the posterior mean under a Dirichlet
prior centred on the mix: ``(n_c + a·m_c) / (n + a)``, Gelman et al. 2013,
BDA3 §3.5).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ltvcast.data.datasets import History
from ltvcast.errors import DataError, NotFittedError
from ltvcast.features.categories import (
    OTHER,
    category_history,
    category_labels,
    history_lines,
    label_categories,
    top_categories,
    window_lines,
)
from ltvcast.timeutil import to_day

#: inputs of both heads, in order (``category_code`` only in the stacked layout)
INPUTS: tuple[str, ...] = (
    "cat_share", "cat_line_share", "cat_spend", "cat_occasions", "cat_days_since", "cat_ever",
    "occasions", "spend", "days_since_last", "tenure_days", "n_categories",
    "cat_pop", "brand_affinity", "lift_score", "top_brand_share", "top_brand_mix", "cat_in_last", "last_lift",
    "last_trans", "cat_post",
)
#: Pseudo-lines of the shop's category mix in ``cat_post`` (a Dirichlet prior's weight, :func:`pair_inputs`).
PRIOR_LINES = 1.0
LAYOUTS = ("stacked", "per_category")


def _lightgbm():
    try:
        import lightgbm
    except ImportError as exc:  # pragma: no cover - lightgbm is a main dependency
        raise DataError("the category split needs LightGBM: pip install lightgbm") from exc
    return lightgbm


def shop_stats(lines: pd.DataFrame, categories: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """The shop-level associations of the module doc, from sale lines before a cutoff.

    Args:
        lines: sale lines (:func:`ltvcast.features.categories.history_lines`).
        categories: the category list.

    Returns:
        ``{"pop": frame category → cat_pop, "brand": frame (brand, category)
        → share of the brand's gross sales, "lift": frame (from_category,
        category) → lift, "line_mix": frame category → share of the lines,
        "trans": frame (from_category, category) → trans}``; lift is 0 where
        a category has no buyer; ``trans`` is ``P(a line in category on the
        next purchase occasion | a line in from_category on this one)`` over
        consecutive occasions of the same customer, 0 where
        ``from_category`` has no following occasion.
    """
    g = lines.assign(category=label_categories(lines, categories))
    n = max(g["customer_id"].nunique(), 1)
    bought = g[["customer_id", "category"]].drop_duplicates()
    pop = (bought.groupby("category").size() / n).reindex(list(categories), fill_value=0.0)
    ind = (pd.crosstab(bought["customer_id"], bought["category"]).reindex(columns=list(categories), fill_value=0)
           .to_numpy(float) > 0).astype(float)
    joint = ind.T @ ind / n
    p = pop.to_numpy(float)
    denom = np.outer(p, p)
    lift = np.divide(joint, denom, out=np.zeros_like(joint), where=denom > 0)
    lift_frame = pd.DataFrame(
        {"from_category": np.repeat(np.array(categories, dtype=object), len(categories)),
         "category": np.tile(np.array(categories, dtype=object), len(categories)), "lift": lift.ravel()}
    )
    branded = g.dropna(subset=["brand"])
    mix = branded.groupby(["brand", "category"])["amount"].agg(["sum", "size"]).reset_index()
    mix["brand_share"] = mix["sum"] / mix.groupby("brand")["sum"].transform("sum")
    mix["brand_line_share"] = mix["size"] / mix.groupby("brand")["size"].transform("sum")
    mix = mix.drop(columns=["sum", "size"])
    line_mix = (g.groupby("category").size() / max(len(g), 1)).reindex(list(categories), fill_value=0.0)
    return {"pop": pop.rename("cat_pop").rename_axis("category").reset_index(), "brand": mix, "lift": lift_frame,
            "line_mix": line_mix.rename("line_mix").rename_axis("category").reset_index(),
            "trans": _transitions(g, categories)}


def _transitions(g: pd.DataFrame, categories: tuple[str, ...]) -> pd.DataFrame:
    """``P(a line in c on a customer's next purchase occasion | a line in b on this one)`` over consecutive occasions.

    A first-order Markov chain over the categories of purchase occasions
    (each occasion's categories as a set); 0 where ``b`` has no following
    occasion. Frame ``from_category, category, trans``.
    """
    k = len(categories)
    occ = g[["customer_id", "occasion", "category"]].drop_duplicates()
    days = occ[["customer_id", "occasion"]].drop_duplicates().sort_values(["customer_id", "occasion"], kind="mergesort")
    days = days.assign(row=np.arange(len(days)))
    occ = occ.merge(days, on=["customer_id", "occasion"])
    ind = np.zeros((len(days), k))
    ind[occ["row"].to_numpy(), pd.Categorical(occ["category"].astype(str), categories=list(categories)).codes] = 1.0
    same = (days["customer_id"].to_numpy()[1:] == days["customer_id"].to_numpy()[:-1])
    prev, nxt = ind[:-1][same], ind[1:][same]
    base = prev.sum(axis=0)
    trans = np.divide(prev.T @ nxt, base[:, None], out=np.zeros((k, k)), where=base[:, None] > 0)
    return pd.DataFrame({"from_category": np.repeat(np.array(categories, dtype=object), k),
                         "category": np.tile(np.array(categories, dtype=object), k), "trans": trans.ravel()})


def pair_inputs(hist: pd.DataFrame, lines: pd.DataFrame, stats: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``hist`` (:func:`category_history`) with ``cat_pop``, ``brand_affinity`` and ``lift_score`` added.

    ``brand_affinity[i, c] = Σ_b w_ib · m_bc`` (``w_ib``: customer ``i``'s
    share of branded gross sales on brand ``b``; ``m_bc``: brand ``b``'s
    share of sales in ``c``); ``lift_score[i, c] = Σ_b share_ib · lift(b, c)``.
    ``top_brand_share``: the share of the customer's branded lines from
    their most-bought brand (by lines, ties by name); ``top_brand_mix[i, c]``:
    that brand's share of lines in ``c``. ``cat_in_last[i, c]``: 1 when the
    customer's last purchase occasion had a line in ``c``;
    ``last_lift[i, c]``: the mean of ``lift(b, c)`` over the categories ``b``
    of that occasion; ``last_trans[i, c]``: the mean of the transition
    probability ``T(b, c)`` (``stats["trans"]``) over the same categories
    ``b``; ``cat_post[i, c] = (n_ic + a·m_c) / (n_i + a)`` (``n``: lines,
    ``m_c``: the shop's line share of ``c``, ``a`` = :data:`PRIOR_LINES`).
    All but ``cat_post`` are 0 for a customer without the lines they need.
    """
    out = hist.merge(stats["pop"], on="category", how="left")
    out["cat_pop"] = out["cat_pop"].fillna(0.0)
    shares = hist[["customer_id", "category", "cat_share"]].rename(columns={"category": "from_category"})
    shares = shares[shares["cat_share"] > 0]
    lift = shares.merge(stats["lift"], on="from_category")
    lift = (lift["cat_share"] * lift["lift"]).groupby([lift["customer_id"], lift["category"]]).sum()
    out = out.merge(lift.rename("lift_score").reset_index(), on=["customer_id", "category"], how="left")
    ids = set(hist["customer_id"].unique())
    branded = lines.dropna(subset=["brand"])
    branded = branded[branded["customer_id"].isin(ids)]
    if branded.empty:
        out["brand_affinity"] = 0.0
        out["top_brand_share"] = 0.0
        out["top_brand_mix"] = 0.0
    else:
        w = branded.groupby(["customer_id", "brand"])["amount"].sum().rename("w").reset_index()
        w["w"] = w["w"] / w.groupby("customer_id")["w"].transform("sum")
        aff = w.merge(stats["brand"], on="brand")
        aff = (aff["w"] * aff["brand_share"]).groupby([aff["customer_id"], aff["category"]]).sum()
        out = out.merge(aff.rename("brand_affinity").reset_index(), on=["customer_id", "category"], how="left")
        n = branded.groupby(["customer_id", "brand"]).size().rename("n").reset_index()
        n = n.sort_values(["customer_id", "n", "brand"], ascending=[True, False, True], kind="mergesort")
        n["top_brand_share"] = n["n"] / n.groupby("customer_id")["n"].transform("sum")
        top = n.drop_duplicates("customer_id")[["customer_id", "brand", "top_brand_share"]]
        out = out.merge(top[["customer_id", "top_brand_share"]], on="customer_id", how="left")
        tmix = top.merge(stats["brand"], on="brand")[["customer_id", "category", "brand_line_share"]]
        out = out.merge(tmix.rename(columns={"brand_line_share": "top_brand_mix"}), on=["customer_id", "category"],
                        how="left")
        out["top_brand_share"] = out["top_brand_share"].fillna(0.0)
        out["top_brand_mix"] = out["top_brand_mix"].fillna(0.0)
    out["lift_score"] = out["lift_score"].fillna(0.0)
    out["brand_affinity"] = out["brand_affinity"].fillna(0.0)
    # the last purchase occasion's categories and their co-purchase lift: what a cross-sell follows
    last = (out["cat_ever"].to_numpy(float) > 0) & (out["cat_days_since"] == out["days_since_last"]).to_numpy(bool)
    out["cat_in_last"] = last.astype(float)
    anchors = out.loc[last, ["customer_id", "category"]].rename(columns={"category": "from_category"})
    anchors = anchors.assign(w=1.0 / anchors.groupby("customer_id")["from_category"].transform("size"))
    ll = anchors.merge(stats["lift"], on="from_category")
    ll = (ll["w"] * ll["lift"]).groupby([ll["customer_id"], ll["category"]]).sum()
    out = out.merge(ll.rename("last_lift").reset_index(), on=["customer_id", "category"], how="left")
    out["last_lift"] = out["last_lift"].fillna(0.0)
    tr = anchors.merge(stats["trans"], on="from_category")
    tr = (tr["w"] * tr["trans"]).groupby([tr["customer_id"], tr["category"]]).sum()
    out = out.merge(tr.rename("last_trans").reset_index(), on=["customer_id", "category"], how="left")
    out["last_trans"] = out["last_trans"].fillna(0.0)
    # the customer's line share shrunk towards the shop's mix: a few lines say little about a preference
    n = lines.groupby("customer_id").size().rename("n_lines")
    out = out.merge(n.reset_index(), on="customer_id", how="left").merge(stats["line_mix"], on="category", how="left")
    n_lines = out.pop("n_lines").fillna(0.0).to_numpy(float)
    out["cat_post"] = ((out["cat_line_share"].to_numpy(float) * n_lines + PRIOR_LINES * out.pop("line_mix").fillna(0.0))
                       / (n_lines + PRIOR_LINES))
    return out


class CategorySplit:
    """Split a total model's predictions by category (module doc).

    Args:
        top: number of named categories (the shop's largest by gross sales
            before the cutoff; the rest is ``other``).
        windows: time-shifted training windows before the cutoff (>= 1).
        layout: ``"stacked"`` or ``"per_category"``.
        rounds: boosting rounds per booster.
        seed: LightGBM seed.

    Attributes (after :meth:`fit`): ``categories_`` (named categories, then
    ``other``), ``stats_`` (the shop associations at the cutoff),
    ``boosters_``, ``inputs_`` (the inputs they were fitted on),
    ``cutoff_`` (the fit's cutoff day) and ``horizon_days_`` (the horizon
    its heads learned).

    Raises:
        DataError: a setting out of range.
    """

    def __init__(self, top: int = 8, windows: int = 2, layout: str = "stacked", rounds: int = 120,
                 seed: int = 0) -> None:
        if layout not in LAYOUTS:
            raise DataError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        if windows < 1 or top < 1 or rounds < 1:
            raise DataError("top, windows and rounds must each be >= 1")
        self.top, self.windows, self.layout, self.rounds, self.seed = top, windows, layout, rounds, seed
        self.categories_: tuple[str, ...] | None = None
        self.stats_: dict[str, pd.DataFrame] | None = None
        self.boosters_: dict[str, object] = {}
        self.timezone_ = "UTC"
        self.inputs_: tuple[str, ...] = INPUTS
        self.cutoff_: pd.Timestamp | None = None
        self.horizon_days_: float | None = None

    # -- inputs -------------------------------------------------------------------------------
    def inputs(self, data: History, cutoff, customers: pd.Series | None = None,
               stats: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
        """Customer × category inputs at ``cutoff`` (:data:`INPUTS`), from lines strictly before it.

        Args:
            data: the shop's history.
            cutoff: the prediction day.
            customers: customers to return (default: all with a sale line before the cutoff).
            stats: shop associations (default: the fitted ones).

        Raises:
            NotFittedError: no categories/stats yet.
        """
        if self.categories_ is None:
            raise NotFittedError("CategorySplit: call fit() first")
        lines = history_lines(data.transactions, cutoff, data.timezone)
        if customers is not None:
            lines = lines[lines["customer_id"].isin(set(pd.Series(customers, dtype="string")))]
        hist = category_history(lines, cutoff, self.categories_, data.timezone, customers=customers)
        x = pair_inputs(hist, lines, stats if stats is not None else self.stats_)
        x["category_code"] = pd.Categorical(x["category"].astype(str), categories=list(self.categories_)).codes
        return x

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, data: History, cutoff, horizon_days: float) -> CategorySplit:
        """Learn both heads from windows strictly before ``cutoff`` (module doc).

        Raises:
            DataError: no window has a customer with history who bought in it.
        """
        lgb = _lightgbm()
        day = to_day(cutoff)
        self.timezone_ = data.timezone
        self.cutoff_, self.horizon_days_ = day, float(horizon_days)
        lines = history_lines(data.transactions, day, data.timezone)
        self.categories_ = top_categories(lines, self.top)
        self.stats_ = shop_stats(lines, self.categories_)
        h = round(horizon_days)
        frames = []
        for w in range(1, self.windows + 1):
            at = day - pd.Timedelta(days=w * h)
            past = history_lines(data.transactions, at, data.timezone)
            win = window_lines(data.transactions, at, h, data.timezone)
            buyers = pd.Series(sorted(set(past["customer_id"]) & set(win["customer_id"])), dtype="string")
            if buyers.empty:
                continue
            x = self.inputs(data, at, customers=buyers, stats=shop_stats(past, self.categories_))
            y = category_labels(win[win["customer_id"].isin(set(buyers))], buyers, self.categories_)
            frames.append(x.merge(y, on=["customer_id", "category"]))
        if not frames:
            raise DataError(
                f"no training window before {day.date()}: no customer with history bought in the "
                f"{self.windows} window(s) of {h} days before the cutoff; use a later cutoff or shorter horizon"
            )
        train = pd.concat(frames, ignore_index=True)
        params = {"learning_rate": 0.08, "num_leaves": 31, "min_data_in_leaf": 40, "feature_fraction": 0.9,
                  "verbose": -1, "seed": self.seed, "deterministic": True, "num_threads": 1,
                  "force_col_wise": True}
        heads = {"buy": ("binary", "actual_bought"), "share": ("cross_entropy", "actual_share")}
        self.boosters_ = {}
        groups = [(None, train)] if self.layout == "stacked" else list(train.groupby("category", sort=False))
        self.inputs_ = INPUTS  # a registered split predicts with the inputs it was fitted on
        cols = [*INPUTS, "category_code"] if self.layout == "stacked" else list(INPUTS)
        for key, part in groups:
            for head, (objective, target) in heads.items():
                ds = lgb.Dataset(part[cols].to_numpy(float), part[target].to_numpy(float), feature_name=cols,
                                 categorical_feature=["category_code"] if self.layout == "stacked" else "auto")
                self.boosters_[f"{head}:{key}"] = lgb.train({**params, "objective": objective}, ds, self.rounds)
        self.n_train_rows_ = len(train)
        return self

    # -- predict ------------------------------------------------------------------------------
    def _heads(self, x: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        q, s = np.zeros(len(x)), np.zeros(len(x))
        if self.layout == "stacked":
            cols = [*self.inputs_, "category_code"]
            m = x[cols].to_numpy(float)
            return self.boosters_["buy:None"].predict(m), self.boosters_["share:None"].predict(m)
        for cat in self.categories_:
            sel = (x["category"] == cat).to_numpy(bool)
            key_buy, key_share = f"buy:{cat}", f"share:{cat}"
            if sel.any() and key_buy in self.boosters_:
                m = x.loc[sel, list(self.inputs_)].to_numpy(float)
                q[sel], s[sel] = self.boosters_[key_buy].predict(m), self.boosters_[key_share].predict(m)
        return q, s

    def split(self, predictions: pd.DataFrame, data: History, cutoff) -> pd.DataFrame:
        """Split ``predictions`` (the canonical frame of a total model at ``cutoff``) by category.

        Args:
            predictions: one row per customer with ``customer_id``,
                ``pred_spend`` (currency) and ``p_churn`` (null: treated as 0,
                so ``p_buy = q``).
            data: the shop's history (the customers' lines before the cutoff).
            cutoff: the prediction day.

        Returns:
            One row per customer and category (sorted as the categories):
            ``customer_id``, ``category``, ``p_buy`` (probability of a sale
            line in the category in the horizon), ``share`` (of the spend;
            sums to 1 per customer; both are 0 in a category no customer had
            bought before the fit's cutoff), ``pred_spend`` (currency; sums to the
            customer's ``pred_spend`` up to rounding, < 1e-9 relative),
            ``cat_ever``, ``cat_days_since``, ``cat_pop``,
            ``brand_affinity``, ``lift_score`` (the inputs the
            cross-sell reasons cite).

        Raises:
            NotFittedError: before :meth:`fit`.
            DataError: a required prediction column is missing or a customer appears twice.
        """
        if not self.boosters_:
            raise NotFittedError("CategorySplit: call fit() before split()")
        for col in ("customer_id", "pred_spend"):
            if col not in predictions.columns:
                raise DataError(f"predictions lack the column {col!r}")
        ids = predictions["customer_id"].astype("string")
        if ids.duplicated().any():
            raise DataError(f"predictions hold customer {ids[ids.duplicated()].iloc[0]!r} twice; split one model")
        x = self.inputs(data, cutoff, customers=ids)
        q, s = self._heads(x)
        # a category no customer had bought when the split was fitted (e.g. an empty 'other'): the heads never
        # saw it bought, yet their sigmoids stay above 0; give it nothing rather than a made-up share
        sold = (x["cat_pop"].to_numpy(float) > 0)
        q = np.where(sold, q, 0.0)
        k = len(self.categories_)
        s = np.where(sold, np.clip(s, 1e-9, None), 0.0).reshape(-1, k)
        share = (s / s.sum(axis=1, keepdims=True)).ravel()
        total = predictions.assign(customer_id=ids).set_index("customer_id")
        order = x["customer_id"].to_numpy()
        spend = total["pred_spend"].reindex(order).to_numpy(float)
        churn = (total["p_churn"].reindex(order).astype(float).fillna(0.0).to_numpy()
                 if "p_churn" in total.columns else np.zeros(len(order)))
        out = x[["customer_id", "category", "cat_ever", "cat_days_since", "cat_pop", "brand_affinity",
                 "lift_score"]].copy()
        out.insert(2, "p_buy", (1.0 - churn) * np.clip(q, 0.0, 1.0))
        out.insert(3, "share", share)
        out.insert(4, "pred_spend", spend * share)
        return out.reset_index(drop=True)


__all__ = ["INPUTS", "LAYOUTS", "OTHER", "CategorySplit", "pair_inputs", "shop_stats"]
