"""Whom to contact under a budget: uplift from a past randomised campaign, or a stated assumption.

With a campaign (:func:`target_from_campaign`)
----------------------------------------------
1. **Data.** The customers of the campaign's assignments file; their features
   at the campaign start (:func:`ltvcast.features.build`, ``population="all"``,
   every column: numeric as is, text as LightGBM categoricals); outcome =
   spend in the campaign window (net, the store's basis), and whether they
   bought.
2. **Split.** A hash of (salt, customer id) puts ``test_share`` (30 %) of
   them aside; the models are fitted on the rest.
3. **Models.** A T-learner and an X-learner (:mod:`ltvcast.actions.uplift`)
   for τ̂ (incremental spend), and LightGBM classifiers for P(buy | arm, x).
   The X-learner is used only if its held-out Qini coefficient beats the
   T-learner's by more than ``X_MARGIN`` (0.02): "measurably better".
4. **Choice.** For the customers to score (features at ``cutoff``), expected
   cost ``c = cost_per_contact + offer_cost · P̂(buy | treated)`` (the offer is
   paid when redeemed) and expected incremental margin ``m = margin · τ̂``;
   ranked by ``m / c``, contacted while ``m > c`` and the budget lasts
   (greedy knapsack: Dantzig's ratio rule).
5. **Evidence.** On the held-out customers each policy (uplift, top CLV =
   highest μ̂₀, the spend predicted without contact; top churn risk = lowest
   P̂(buy | control); random) contacts the same share of customers as the
   list does; its incremental margin per contacted customer is measured from
   the randomisation itself, ``margin · (ȳ_T − ȳ_C) − cost_per_contact −
   offer_cost · conv_T`` among the selected, with a bootstrap 95 % interval
   (customers resampled, 500 draws). The list's expected incremental margin =
   its size × the uplift policy's per-contact figure (interval likewise).
   Qini coefficient, AUUC and uplift at the list's share are reported per
   learner and policy.

Without a campaign (:func:`target_by_assumption`)
-------------------------------------------------
Value at risk ``= pred_spend · p_churn`` (a predictions frame), the
incremental spend is **assumed** to be ``assumed_uplift · value at risk``; the
cost ``cost_per_contact + offer_cost · (1 − p_churn)``; same ranking and
budget. Every output says it rests on that assumption: no data measured it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ltvcast.actions import uplift as up
from ltvcast.actions.experiments import TREATMENT, hash_unit
from ltvcast.errors import DataError

X_MARGIN = 0.02
N_BOOT = 500


@dataclass(frozen=True)
class Economics:
    """Money of a contact: ``budget`` (currency), ``cost_per_contact``, ``offer_cost`` (per redeemed offer), ``margin`` (share of spend)."""

    budget: float
    cost_per_contact: float
    offer_cost: float = 0.0
    margin: float = 0.3

    def checked(self) -> Economics:
        """Validate; returns self. Raises DataError for a negative amount or a margin outside (0, 1]."""
        if not self.budget > 0 or not self.cost_per_contact > 0 or self.offer_cost < 0:
            raise DataError("budget and cost per contact must be positive, offer cost not negative "
                            f"(got {self.budget}, {self.cost_per_contact}, {self.offer_cost})")
        if not 0 < self.margin <= 1:
            raise DataError(f"margin must be in (0, 1], got {self.margin}")
        return self


@dataclass
class TargetingResult:
    """The list and the evidence.

    Attributes:
        contacts: one row per contacted customer, in order: customer_id, rank,
            expected_incremental_spend, expected_cost, expected_incremental_margin (net of cost), cum_cost.
        summary: mode (``uplift`` or ``assumption``), learner, contacted, spent,
            expected_incremental_margin with ci_low/ci_high (held-out, uplift
            mode) and model_incremental_margin (the model's own sum), ...
        policies: per policy on the held-out customers: share contacted,
            uplift per contact, incremental margin per contact with interval,
            Qini coefficient, AUUC (uplift mode only).
        learners: per learner, held-out Qini coefficient, AUUC, uplift at the share.
        notes: what to know (the assumption, the learner choice).
    """

    contacts: pd.DataFrame
    summary: dict
    policies: pd.DataFrame = field(default_factory=pd.DataFrame)
    learners: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Plain values for JSON (without the contact list)."""
        clean = lambda f: f.replace({np.nan: None}).to_dict(orient="records")  # noqa: E731
        return {"summary": self.summary, "policies": clean(self.policies), "learners": clean(self.learners),
                "notes": self.notes}


def choose(customer_ids, incremental_spend, cost, econ: Economics) -> pd.DataFrame:
    """Greedy choice under the budget by incremental margin per unit cost (module docstring, step 4).

    Args:
        customer_ids, incremental_spend, cost: shape (n,); cost > 0.

    Returns:
        The contact list (TargetingResult.contacts columns), possibly empty.
    """
    inc = np.asarray(incremental_spend, float)
    cost = np.asarray(cost, float)
    gain = econ.margin * inc
    ratio = gain / cost
    order = np.argsort(-ratio, kind="stable")
    order = order[ratio[order] > 1.0]  # only contacts that pay for themselves
    cum = np.cumsum(cost[order])
    order = order[cum <= econ.budget]
    ids = pd.Series(customer_ids).take(order).to_numpy(dtype=object)  # only the chosen rows, no Python loop
    return pd.DataFrame({
        "customer_id": ids, "rank": np.arange(1, order.size + 1),
        "expected_incremental_spend": inc[order], "expected_cost": cost[order],
        "expected_incremental_margin": gain[order] - cost[order], "cum_cost": np.cumsum(cost[order]),
    })


def _policy_value(sel_t: np.ndarray, sel_y: np.ndarray, sel_buy: np.ndarray, econ: Economics,
                  rng: np.random.Generator) -> tuple[float, float, float, float]:
    """(uplift per contact, net margin per contact, bootstrap 2.5 %, 97.5 %) among the selected."""
    def value(t, y, b):
        nt, nc = t.sum(axis=-1), (~t).sum(axis=-1)
        yt = np.where(t, y, 0).sum(axis=-1) / np.maximum(nt, 1)
        yc = np.where(t, 0, y).sum(axis=-1) / np.maximum(nc, 1)
        conv = np.where(t, b, 0).sum(axis=-1) / np.maximum(nt, 1)
        ok = (nt > 0) & (nc > 0)
        return np.where(ok, yt - yc, np.nan), np.where(ok, econ.margin * (yt - yc) - econ.cost_per_contact
                                                        - econ.offer_cost * conv, np.nan)

    if sel_t.size == 0:
        return (float("nan"),) * 4
    lift, net = value(sel_t, sel_y, sel_buy)
    idx = rng.integers(0, sel_t.size, (N_BOOT, sel_t.size))
    _, boot = value(sel_t[idx], sel_y[idx], sel_buy[idx])
    lo, hi = np.nanpercentile(boot, [2.5, 97.5]) if np.isfinite(boot).any() else (np.nan, np.nan)
    return float(lift), float(net), float(lo), float(hi)


def evaluate_policies(scores: dict[str, np.ndarray], treated, spend, buy, share: float, econ: Economics,
                      seed: int = 0, truth=None) -> pd.DataFrame:
    """Each policy contacts its top ``share`` of the held-out customers (module docstring, step 5).

    Args:
        scores: policy name → score (higher = contact first), shape (n,) each.
        treated, spend, buy: held-out customers' arm (bool), window spend, bought (bool).
        share: the share contacted, 0 < share ≤ 1.
        truth: optional true individual incremental spend (simulator), shape (n,):
            adds ``true_margin_per_contact`` = margin · mean(truth) − cost_per_contact among the selected
            and ``true_qini`` (:func:`ltvcast.actions.uplift.true_qini_coefficient`).

    Returns:
        One row per policy: policy, share, contacted, uplift_per_contact,
        margin_per_contact, ci_low, ci_high, qini, auuc (and true_margin_per_contact).
    """
    treated, spend, buy = np.asarray(treated, bool), np.asarray(spend, float), np.asarray(buy, bool)
    n = treated.size
    k = max(int(round(share * n)), 1)
    rng = np.random.default_rng(seed)
    rows = []
    for name, score in scores.items():
        score = np.asarray(score, float)
        top = np.argsort(-score, kind="stable")[:k]
        lift, net, lo, hi = _policy_value(treated[top], spend[top], buy[top], econ, rng)
        row = {"policy": name, "share": k / n, "contacted": k, "uplift_per_contact": lift,
               "margin_per_contact": net, "ci_low": lo, "ci_high": hi,
               "qini": up.qini_coefficient(score, treated, spend), "auuc": up.auuc(score, treated, spend)}
        if truth is not None:
            row["true_margin_per_contact"] = float(econ.margin * np.asarray(truth, float)[top].mean()
                                                   - econ.cost_per_contact)
            row["true_qini"] = up.true_qini_coefficient(score, truth)
        rows.append(row)
    return pd.DataFrame(rows)


def campaign_frame(history, assignments: pd.DataFrame, start, end) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features at ``start`` indexed by customer_id, outcomes: customer_id, treated, spend, buy) of the campaign's customers.

    Raises:
        DataError: as :func:`ltvcast.actions.experiments.campaign_outcomes`.
    """
    from ltvcast.actions.experiments import campaign_outcomes

    out = campaign_outcomes(history, assignments, start, end)
    x = features_at(history, start, out["customer_id"])
    outcomes = pd.DataFrame({"customer_id": out["customer_id"].to_numpy(), "treated": (out["arm"] == TREATMENT).to_numpy(),
                             "spend": out["spend"].to_numpy(float), "buy": (out["orders"] > 0).to_numpy()})
    return x, outcomes


def features_at(history, cutoff, customer_ids=None) -> pd.DataFrame:
    """Customer features at ``cutoff`` (``features.build``, population all), indexed by customer_id.

    With ``customer_ids`` the rows follow them (customers without history get missing values).
    """
    from ltvcast.features.build import build

    fs = build(history.store, cutoff, population="all", timezone=history.timezone,
               revenue_basis=history.revenue_basis)
    x = fs.customers.copy()
    x["customer_id"] = x["customer_id"].astype("string")
    x = x.set_index("customer_id")
    if customer_ids is not None:
        x = x.reindex(pd.Index(pd.Series(customer_ids, dtype="string"), name="customer_id"))
    return x


def _classifier(seed: int):
    import lightgbm as lgb

    params = {k: v for k, v in up.LGBM_PARAMS.items() if k != "objective"}
    return lgb.LGBMClassifier(random_state=seed, **params)


def target_from_campaign(x: pd.DataFrame, outcomes: pd.DataFrame, score_x: pd.DataFrame, econ: Economics,
                         salt: str = "ltvcast-uplift", test_share: float = 0.3, seed: int = 0,
                         truth: pd.Series | None = None) -> TargetingResult:
    """The uplift path (module docstring).

    Args:
        x: features of the campaign's customers at its start, one row per customer (index customer_id).
        outcomes: customer_id, treated, spend, buy — same order as ``x``.
        score_x: features of the customers to choose from (index customer_id), same columns as ``x``.
        econ: the money.
        truth: optional true incremental spend per campaign customer (index customer_id), for studies.

    Raises:
        DataError: fewer than 20 customers per arm in the training part; mismatched frames.
    """
    econ.checked()
    if len(x) != len(outcomes):
        raise DataError("features and outcomes of the campaign differ in length")
    if not 0 < test_share < 1:
        raise DataError(f"test share must be in (0, 1), got {test_share}")
    ids = outcomes["customer_id"].astype(str).to_numpy()
    test = hash_unit(salt, ids) < test_share
    t = outcomes["treated"].to_numpy(bool)
    y = outcomes["spend"].to_numpy(float)
    buy = outcomes["buy"].to_numpy(bool)
    xtr = x.iloc[~test]
    tl = up.TLearner(seed).fit(xtr, t[~test], y[~test])
    xl = up.XLearner(seed).fit(xtr, t[~test], y[~test])
    cats = tl.categories_
    xtr_p, _ = up.prepare_features(xtr, cats)
    p1 = _classifier(seed + 4).fit(xtr_p[t[~test]], buy[~test][t[~test]])
    p0 = _classifier(seed + 5).fit(xtr_p[~t[~test]], buy[~test][~t[~test]])

    xte = x.iloc[test]
    tau_t, tau_x = tl.predict(xte), xl.predict(xte)
    q_t = up.qini_coefficient(tau_t, t[test], y[test])
    q_x = up.qini_coefficient(tau_x, t[test], y[test])
    use_x = q_x > q_t + X_MARGIN
    model = xl if use_x else tl
    learner = "x-learner" if use_x else "t-learner"

    # the list
    sx = score_x[x.columns]
    sx_p, _ = up.prepare_features(sx, cats)
    tau = model.predict(sx)
    cost = econ.cost_per_contact + econ.offer_cost * p1.predict_proba(sx_p)[:, 1]
    contacts = choose(sx.index.astype(str), tau, cost, econ)
    share = len(contacts) / max(len(sx), 1)

    # the evidence on the held-out customers
    xte_p, _ = up.prepare_features(xte, cats)
    mu0, _ = tl.predict_arms(xte)
    rng = np.random.default_rng(seed)
    scores = {
        "uplift": tau_x if use_x else tau_t,
        "top CLV": mu0,
        "top churn risk": 1.0 - p0.predict_proba(xte_p)[:, 1],
        "random": rng.random(int(test.sum())),
    }
    true_te = None
    if truth is not None:
        true_te = pd.Series(truth).reindex(pd.Index(ids[test])).to_numpy(float)
    eval_share = share if share > 0 else 0.1
    policies = evaluate_policies(scores, t[test], y[test], buy[test], eval_share, econ, seed, true_te)
    learners = pd.DataFrame([
        {"learner": "t-learner", "qini": q_t, "auuc": up.auuc(tau_t, t[test], y[test]),
         "uplift_at_share": up.uplift_at(tau_t, t[test], y[test], eval_share)},
        {"learner": "x-learner", "qini": q_x, "auuc": up.auuc(tau_x, t[test], y[test]),
         "uplift_at_share": up.uplift_at(tau_x, t[test], y[test], eval_share)},
    ])
    best = policies.iloc[0]
    n = len(contacts)
    summary = {
        "mode": "uplift", "learner": learner, "customers_scored": int(len(sx)), "contacted": n,
        "share_contacted": share, "spent": float(contacts["expected_cost"].sum()) if n else 0.0,
        "budget": econ.budget, "model_incremental_margin": float(contacts["expected_incremental_margin"].sum()),
        "expected_incremental_margin": n * best["margin_per_contact"],
        "ci_low": n * best["ci_low"], "ci_high": n * best["ci_high"],
        "campaign_customers": int(len(ids)), "held_out": int(test.sum()),
    }
    notes = [
        f"uplift learner: {learner} (held-out Qini T {q_t:.3f}, X {q_x:.3f}; the X-learner is used only if it "
        f"beats the T-learner by more than {X_MARGIN})",
        "expected incremental margin of the list = contacted × the uplift policy's measured margin per contact "
        f"on the held-out campaign customers at the same share ({eval_share:.1%}), bootstrap 95 % interval",
    ]
    if share == 0:
        notes.append("no customer's predicted incremental margin pays for the contact: the list is empty "
                     "(the held-out comparison uses a 10 % share)")
    return TargetingResult(contacts, summary, policies, learners, notes)


def target_by_assumption(predictions: pd.DataFrame, econ: Economics, assumed_uplift: float) -> TargetingResult:
    """The fallback without a campaign (module docstring): an ASSUMED relative uplift on the value at risk.

    Args:
        predictions: canonical predictions (customer_id, pred_spend, p_churn; one model).
        assumed_uplift: relative uplift on the value at risk the user states, 0 < u ≤ 1.

    Raises:
        DataError: columns missing or several models, an uplift outside (0, 1].
    """
    econ.checked()
    if not 0 < assumed_uplift <= 1:
        raise DataError(f"assumed uplift must be in (0, 1], got {assumed_uplift}")
    need = {"customer_id", "pred_spend", "p_churn"}
    if not need <= set(predictions.columns):
        raise DataError(f"predictions lack columns {sorted(need - set(predictions.columns))}")
    if "model" in predictions.columns and predictions["model"].nunique() > 1:
        raise DataError("the predictions hold several models; choose one (--pred-model)")
    p = predictions.dropna(subset=["pred_spend", "p_churn"])
    var = p["pred_spend"].to_numpy(float) * p["p_churn"].to_numpy(float)
    inc = assumed_uplift * var
    cost = econ.cost_per_contact + econ.offer_cost * (1.0 - p["p_churn"].to_numpy(float))
    contacts = choose(p["customer_id"].astype(str), inc, cost, econ)
    pos = pd.Index(p["customer_id"].astype(str)).get_indexer(contacts["customer_id"])
    contacts.insert(1, "value_at_risk", var[pos])
    n = len(contacts)
    summary = {
        "mode": "assumption", "assumed_uplift": assumed_uplift, "customers_scored": int(len(p)), "contacted": n,
        "share_contacted": n / max(len(p), 1), "spent": float(contacts["expected_cost"].sum()) if n else 0.0,
        "budget": econ.budget, "expected_incremental_margin": float(contacts["expected_incremental_margin"].sum()),
        "ci_low": None, "ci_high": None,
    }
    notes = [f"ASSUMPTION: no campaign measured the uplift; each contact is assumed to recover "
             f"{assumed_uplift:.1%} of the customer's value at risk (pred_spend × p_churn). The expected "
             "incremental margin is only as good as that assumption, so it has no interval: run a "
             "randomised campaign (ltvcast experiment assign) to measure it."]
    if n == 0:
        notes.append("no customer's assumed incremental margin pays for the contact and the expected offer "
                     "cost: the list is empty")
    return TargetingResult(contacts, summary, pd.DataFrame(), pd.DataFrame(), notes)
