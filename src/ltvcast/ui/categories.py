"""The web app's categories panel: what each segment is predicted to buy, and the demand per category and week.

Computed once per served version, on the first visit of the page (fitting a
category split takes seconds to a minute on a large shop), from the
snapshot's predictions (:class:`~ltvcast.ui.snapshot.Snapshot`: every
customer, the next :data:`~ltvcast.ui.snapshot.HORIZON_DAYS` days):

* the split (:class:`~ltvcast.models.categories.CategorySplit`) is the one
  registered with the model (``ltvcast train --categories``) when it was
  fitted for the snapshot's horizon, else one fitted at the snapshot's
  cutoff for it;
* categories per segment: :func:`ltvcast.evaluate.categories.categories_per_segment`
  over the snapshot's value tier × churn-risk cells;
* demand: :func:`ltvcast.models.demand.customer_demand` over the whole
  weeks of the horizon (52), the customers' spend scaled from the horizon's
  days to those weeks (``× 364 / 365``), with its 80 % interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ltvcast.errors import LtvcastError
from ltvcast.evaluate.categories import categories_per_segment
from ltvcast.features.categories import history_lines
from ltvcast.models.categories import CategorySplit
from ltvcast.models.demand import aggregate_demand, customer_demand
from ltvcast.registry import load_category_split
from ltvcast.ui import charts


@dataclass
class CategoryPanel:
    """What the categories page shows (module doc).

    Attributes:
        per_segment: :func:`~ltvcast.evaluate.categories.categories_per_segment`'s
            frame (None when the panel could not be built).
        demand: gross sales per category over ``weeks`` (``category``,
            ``existing``, ``new``, ``pred_sales``, ``lower``, ``upper``; currency;
            largest first), or None.
        cells: the same per category and week (:func:`~ltvcast.models.demand.customer_demand`), or None.
        weeks: the demand's whole weeks.
        spec: the demand chart (:func:`ltvcast.ui.charts.demand`), or None.
        notes: where the split is from, how the spend was scaled, or why there is no panel.
    """

    per_segment: pd.DataFrame | None = None
    demand: pd.DataFrame | None = None
    cells: pd.DataFrame | None = None
    weeks: int = 0
    spec: dict | None = None
    notes: list[str] = field(default_factory=list)


def build_category_panel(snap, top: int = 8) -> CategoryPanel:
    """The panel of one snapshot (module doc); a panel with only a note when the shop has no category.

    Args:
        snap: the :class:`~ltvcast.ui.snapshot.Snapshot` shown.
        top: named categories when a split is fitted here.

    Returns:
        A :class:`CategoryPanel`. Failures of the split or the demand
        (:class:`~ltvcast.errors.LtvcastError`, e.g. too little history
        before the cutoff for a training window) become its note.
    """
    history, cutoff, days = snap.history, snap.cutoff, snap.horizon_days
    weeks = int(days // 7)
    if history_lines(history.transactions, cutoff, history.timezone)["category"].isna().all():
        return CategoryPanel(notes=["No categories: the order lines carry no category (docs/multisource.md)."])
    try:
        split = load_category_split(snap.model)
        if split is not None and abs(split.horizon_days_ - days) <= 0.5:
            source = f"the split registered with {snap.label} (fitted at {split.cutoff_.date()})"
        else:
            why = "none is registered" if split is None else f"the registered one is for {split.horizon_days_:g} days"
            split = CategorySplit(top=top).fit(history, cutoff, days)
            source = f"a split fitted at {cutoff.date()} for {days:g} days ({why})"
        by_cat = split.split(snap.predictions, history, cutoff)
        per_segment = categories_per_segment(by_cat, snap.segments)
        scaled = by_cat.assign(pred_spend=by_cat["pred_spend"] * (7.0 * weeks / days))
        cells = customer_demand(scaled, history, cutoff, weeks)
    except LtvcastError as exc:
        return CategoryPanel(notes=[f"No categories panel: {exc}"])
    notes = [f"Categories: {', '.join(split.categories_)}; from {source}.",
             f"Demand over the {weeks} whole weeks from {cutoff.date()}: the customers' {days:g}-day spend "
             f"scaled by {7 * weeks}/{days:g}, plus customers not yet acquired; gross sales with an 80 % interval "
             "that leaves out the uncertainty of the forecast's level (docs/categories.md)."]
    demand = aggregate_demand(cells, ("category",))[["category", "existing", "new", "pred_sales", "lower", "upper"]]
    return CategoryPanel(per_segment=per_segment, demand=demand, cells=cells, weeks=weeks, spec=charts.demand(cells),
                         notes=notes)


__all__ = ["CategoryPanel", "build_category_panel"]
