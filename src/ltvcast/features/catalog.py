"""The customer-level feature catalog: every column of ``FeatureSet.customers``.

One :class:`FeatureSpec` per column says which family (SQL file under
``ltvcast/features/sql/``) computes it, its pandas dtype, how a customer the
family has no row for is filled, its unit and its definition. ``build`` uses
the catalog to join the families, and ``FeatureSet.feature_docs`` is made
from it. Conventions for every family:

* ``C`` is the cutoff day (a calendar day in the shop's time zone); history
  is everything strictly before 00:00 of ``C`` in that zone. "Day" always
  means a local calendar day in the shop's time zone.
* A *purchase occasion* is a local day with at least one ``sale`` row in
  ``transactions``; a day with only returns is not an occasion, nor (net
  basis) a day whose sales the refunds of its own orders bring to <= 0. The
  sale rows of one order are dated by the order's earliest sale row (an
  order never spans two days); rows without ``order_id`` are grouped by
  timestamp.
* "Spend" is in the revenue basis (``store_meta.revenue_basis``): ``net``
  (default) = sale amounts + return amounts; ``gross`` = sale amounts only.
  Refunds are netted by order (``sql/README.md``, "Refunds"): a refund that
  names an earlier order of the same customer counts on that order's day; a
  refund of no known order (while the customer's rows have order ids)
  lowers total and window spend only; without order ids a refund counts on
  its own day (the rule before order ids). "Gross sales" is always sales only. Money is
  summed exactly as DECIMAL(18,4) in SQL and cast to float at the end.
* A window ``Nd`` is the last N local days before the cutoff: days
  ``C-N .. C-1``.
* ``int`` columns are int64 and never missing; ``float`` columns are float64
  with NaN where the definition says NULL; ``str`` columns are pandas
  strings with NaN for missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["int", "float", "str"]

#: Family names in join order; each is one SQL file ``sql/<family>.sql``.
FAMILIES = (
    "rfm",
    "ipt",
    "windows",
    "trend",
    "tenure",
    "basket",
    "loyalty",
    "diversity",
    "returns",
    "events",
    "attributes",
)

DEFAULT_WINDOWS = (30, 90, 180, 365)


@dataclass(frozen=True)
class FeatureSpec:
    """One customer-level feature column.

    Attributes:
        name: column name in ``FeatureSet.customers``.
        family: the SQL family computing it (a name in :data:`FAMILIES`).
        kind: ``int`` (int64, never missing), ``float`` (float64, NaN for
            NULL) or ``str`` (pandas string, NaN for missing).
        fill: value for a customer the family returns no row for: ``0`` or
            ``None`` (NULL).
        unit: unit of the value (``days``, ``weeks``, ``currency`` = shop
            currency, ``count``, ``fraction``, ...).
        definition: what it measures, and when it is NULL.
    """

    name: str
    family: str
    kind: Kind
    fill: int | None
    unit: str
    definition: str

    @property
    def doc(self) -> str:
        """``definition [unit]`` as shown in ``FeatureSet.feature_docs``."""
        return f"{self.definition} [{self.unit}]"


def _f(name, family, kind, fill, unit, definition) -> FeatureSpec:
    return FeatureSpec(name, family, kind, fill, unit, " ".join(definition.split()))


def feature_specs(windows: tuple[int, ...] = DEFAULT_WINDOWS) -> tuple[FeatureSpec, ...]:
    """Every customer-level feature, in column order, for the given windows (days)."""
    specs: list[FeatureSpec] = [
        # -- rfm: BTYD summary ------------------------------------------------
        _f("occasions", "rfm", "int", 0, "count",
           "purchase occasions before the cutoff: distinct local days with at least one sale row"),
        _f("frequency", "rfm", "float", None, "count",
           "BTYD frequency x: repeat purchase occasions = occasions - 1; NULL for a customer without a sale"),
        _f("recency", "rfm", "float", None, "weeks",
           "BTYD recency t_x: days from the first to the last occasion / 7; NULL without a sale"),
        _f("T", "rfm", "float", None, "weeks",
           "BTYD age T: days from the first occasion to the last day before the cutoff (C-1) / 7 "
           "(the papers' convention, as rfm_summary); NULL without a sale"),
        _f("recency_days", "rfm", "float", None, "days",
           "days from the first to the last occasion (recency x 7); NULL without a sale"),
        _f("T_days", "rfm", "float", None, "days",
           "days from the first occasion to C-1 (T x 7); NULL without a sale"),
        _f("days_since_last_purchase", "rfm", "float", None, "days",
           "C minus the day of the last occasion (1 = bought the day before the cutoff); NULL without a sale"),
        _f("monetary_value", "rfm", "float", None, "currency",
           "Gamma-Gamma monetary value: mean spend of the repeat occasions (first occasion excluded), an "
           "occasion's spend being the value of that day's orders in the revenue basis (net: less the refunds "
           "of those orders, whenever they happened before the cutoff; unmatched refunds excluded); 0.0 when "
           "frequency is 0; NULL without a sale"),
        _f("spend_total", "rfm", "float", 0, "currency",
           "spend in the revenue basis over all history before the cutoff (net: sales + returns, unmatched "
           "refunds included)"),
        _f("gross_spend", "rfm", "float", 0, "currency", "sum of sale amounts over all history"),
        _f("unmatched_refunds", "rfm", "int", 0, "count",
           "refund rows before the cutoff that name no sale order of the customer before the cutoff (or "
           "name none) while the customer's rows have order ids; they lower spend_total only"),
        _f("unmatched_refund_amount", "rfm", "float", 0, "currency",
           "money given back by those unmatched refunds (positive)"),
        # -- ipt: inter-purchase time -----------------------------------------
        _f("ipt_mean_days", "ipt", "float", None, "days",
           "mean gap between consecutive occasions; NULL with fewer than 2 occasions"),
        _f("ipt_std_days", "ipt", "float", None, "days",
           "sample standard deviation (n-1) of the gaps between consecutive occasions; NULL with fewer "
           "than 3 occasions"),
        _f("ipt_cv", "ipt", "float", None, "ratio",
           "coefficient of variation of the gaps = ipt_std_days / ipt_mean_days; NULL with fewer than 3 occasions"),
    ]
    # -- windows: occasions and spend in the last N days -----------------------
    for w in windows:
        specs.append(_f(f"occasions_{w}d", "windows", "int", 0, "count",
                        f"purchase occasions in the last {w} days (days C-{w} .. C-1)"))
        specs.append(_f(f"spend_{w}d", "windows", "float", 0, "currency",
                        f"spend in the revenue basis in the last {w} days (days C-{w} .. C-1)"))
    specs += [
        # -- trend --------------------------------------------------------------
        _f("spend_trend_slope", "trend", "float", 0, "currency per 30 days",
           "least-squares slope of spend (revenue basis) over the last 360 days split into 12 blocks of "
           "30 days (oldest block x=0 .. newest x=11), blocks without purchases count as 0: "
           "sum((x - 5.5) * spend_x) / 143"),
        _f("spend_recent_ratio", "trend", "float", None, "ratio",
           "spend in the last 180 days / spend in the 180 days before (days C-360 .. C-181); NULL when "
           "the earlier spend is <= 0"),
        _f("spend_slope_13w", "trend", "float", None, "per week",
           "least-squares slope of the weekly spend over the last 13 weeks (week k = days C-7k-7 .. C-7k-1; "
           "only the n weeks since the first sale or return day, n <= 13), divided by the mean weekly spend "
           "of the last min(52, weeks of tenure) weeks: relative change per week, age-robust; NULL with "
           "n < 2 or no positive spend in the last 52 weeks"),
        _f("spend_13w_vs_52w", "trend", "float", None, "ratio",
           "mean weekly spend of the last min(13, weeks of tenure) weeks / mean weekly spend of the last "
           "min(52, weeks of tenure) weeks (1 = steady); NULL without positive spend in the last 52 weeks"),
        # -- tenure ---------------------------------------------------------------
        _f("tenure_days", "tenure", "float", None, "days",
           "C minus the day of the first occasion (1 = first purchase the day before the cutoff); NULL "
           "without a sale"),
        _f("days_since_first_activity", "tenure", "float", None, "days",
           "C minus the earliest of: first sale or return day, first event day, signup day"),
        # -- basket ---------------------------------------------------------------
        _f("orders", "basket", "int", 0, "count",
           "distinct orders with a sale row (order_id; rows without order_id are grouped by timestamp)"),
        _f("items_total", "basket", "float", 0, "units",
           "sum of quantity over sale rows (a missing quantity counts as 1)"),
        _f("items_per_order", "basket", "float", None, "units per order",
           "items_total / orders; NULL without orders"),
        _f("lines_per_order", "basket", "float", None, "lines per order",
           "sale rows / orders; NULL without orders"),
        _f("order_value_mean", "basket", "float", None, "currency",
           "mean order value = gross sales / orders; NULL without orders"),
        _f("mean_unit_price", "basket", "float", None, "currency per unit",
           "mean price paid per unit = gross sales / items_total (after discounts); NULL when items_total is 0"),
        _f("discount_share", "basket", "float", None, "fraction",
           "sum of discount / sum of (amount + discount) over the order_items (amount > 0) of orders placed "
           "before the cutoff; NULL when the store has no order items for the customer"),
        _f("distinct_products", "basket", "int", 0, "count", "distinct product_id over sale rows"),
        _f("distinct_categories", "basket", "int", 0, "count", "distinct category over sale rows"),
        _f("distinct_brands", "basket", "int", 0, "count", "distinct brand over sale rows"),
        # -- loyalty (brand) ------------------------------------------------------
        _f("top_brand_share", "loyalty", "float", None, "fraction",
           "share of the customer's gross sales on branded rows spent on their top brand; NULL without "
           "branded sales"),
        _f("brand_hhi", "loyalty", "float", None, "index 0..1",
           "Herfindahl index of gross sales shares over brands: sum of share^2 (1 = one brand); NULL without "
           "branded sales"),
        # -- diversity (category) ----------------------------------------------
        _f("category_entropy", "diversity", "float", None, "nats",
           "Shannon entropy -sum(p ln p) of gross sales shares over categories (0 = one category); NULL "
           "without categorised sales"),
        _f("top_category", "diversity", "str", None, "category",
           "category with the largest gross sales (ties: alphabetically first); missing without categorised sales"),
        # -- returns --------------------------------------------------------------
        _f("returns_count", "returns", "int", 0, "count",
           "return rows (return or cancellation lines) with a timestamp before the cutoff"),
        _f("returned_value", "returns", "float", 0, "currency",
           "money given back by those returns (positive)"),
        _f("return_rate_lines", "returns", "float", None, "ratio",
           "returns_count / sale rows; NULL without sale rows"),
        _f("return_rate_value", "returns", "float", None, "ratio",
           "returned_value / gross sales; NULL when gross sales are 0"),
        # -- events ---------------------------------------------------------------
        _f("sessions", "events", "int", 0, "count",
           "distinct sessions (session_id) whose first event is before the cutoff; events without "
           "session_id are not sessions"),
        _f("views", "events", "int", 0, "count", "view events before the cutoff"),
        _f("add_to_carts", "events", "int", 0, "count", "add_to_cart events before the cutoff"),
        _f("purchase_events", "events", "int", 0, "count", "purchase events before the cutoff"),
        _f("other_events", "events", "int", 0, "count",
           "events of any other type (email_open, search, ...: types are open) before the cutoff"),
    ]
    for w in windows:
        specs += [
            _f(f"sessions_{w}d", "events", "int", 0, "count",
               f"sessions whose first event falls in the last {w} days"),
            _f(f"views_{w}d", "events", "int", 0, "count", f"view events in the last {w} days"),
            _f(f"add_to_carts_{w}d", "events", "int", 0, "count",
               f"add_to_cart events in the last {w} days"),
            _f(f"other_events_{w}d", "events", "int", 0, "count",
               f"events of other types in the last {w} days"),
        ]
    specs += [
        _f("view_to_cart_rate", "events", "float", None, "ratio",
           "add_to_carts / views over all history (event counts, may exceed 1); NULL without views"),
        _f("cart_to_purchase_rate", "events", "float", None, "ratio",
           "purchase_events / add_to_carts over all history (event counts, may exceed 1); NULL without "
           "add_to_carts"),
        _f("days_since_last_visit", "events", "float", None, "days",
           "C minus the day of the last event of any type; NULL without events"),
        _f("days_since_last_other_event", "events", "float", None, "days",
           "C minus the day of the last event of another type; NULL without such events"),
    ]
    for i in (1, 2, 3):
        specs += [
            _f(f"other_type_{i}_events", "events", "int", 0, "count",
               f"events of the shop's {i}. most frequent other event type (types beyond session_start, view, "
               "add_to_cart, purchase, e.g. email_open, search; ranked by their count over all customers before "
               "the cutoff, ties alphabetically) before the cutoff; 0 when the shop has fewer such types"),
            _f(f"other_type_{i}_events_90d", "events", "int", 0, "count",
               f"events of the {i}. other event type in the last 90 days"),
            _f(f"days_since_other_type_{i}", "events", "float", None, "days",
               f"C minus the day of the customer's last event of the {i}. other event type; NULL without one"),
        ]
    specs += [
        _f("visit_slope_13w", "events", "float", None, "per week",
           "least-squares slope of the weekly visit days (local days with any event) over the last 13 weeks "
           "(only the n weeks since the first event day, n <= 13), divided by the mean weekly visit days of "
           "the last min(52, weeks since the first event) weeks; NULL with n < 2 or no visit in the last 52 weeks"),
        _f("visits_13w_vs_52w", "events", "float", None, "ratio",
           "mean weekly visit days of the last min(13, weeks) weeks / of the last min(52, weeks) weeks "
           "(weeks since the first event day; 1 = steady); NULL without a visit in the last 52 weeks"),
        # -- attributes -----------------------------------------------------------
        _f("acquisition_channel", "attributes", "str", None, "category",
           "customers.acquisition_channel; missing when the customer has no customers row known at the "
           "cutoff (signup_at < cutoff, or signup_at NULL and a sale before the cutoff)"),
        _f("region", "attributes", "str", None, "category", "customers.region (same availability)"),
        _f("country", "attributes", "str", None, "category", "customers.country (same availability)"),
        _f("signup_age_days", "attributes", "float", None, "days",
           "C minus the local day of signup_at; NULL when signup_at is NULL or not before the cutoff"),
        _f("first_order_value", "attributes", "float", None, "currency",
           "gross sales of the first order (earliest sale timestamp; ties: smallest order id); NULL without a sale"),
        _f("first_order_category", "attributes", "str", None, "category",
           "category with the largest gross sales within the first order (ties: alphabetically first)"),
        _f("first_order_channel", "attributes", "str", None, "category",
           "sales channel of the first order (transactions.channel)"),
    ]
    names = [s.name for s in specs]
    assert len(names) == len(set(names)), "duplicate feature names"
    assert {s.family for s in specs} == set(FAMILIES)
    return tuple(specs)


#: The generic columns of the shop's added event types, per slot i (the i-th most frequent type, ``events.sql``).
TYPE_SLOTS = {i: (f"other_type_{i}_events", f"other_type_{i}_events_90d", f"days_since_other_type_{i}")
              for i in (1, 2, 3)}


def unused_type_slots(event_totals) -> list[str]:
    """The columns of the added-event-type slots that hold nothing, to leave out of a written feature table.

    A slot holds nothing when its count column (``other_type_i_events``)
    totals 0 over the table's customers: the shop has fewer than i added
    event types before the cutoff (or none of these customers used the i-th),
    so its counts are all 0 and its ``days_since_other_type_i`` all NULL.
    ``FeatureSet.customers`` keeps every catalog column (a model fitted on
    one cutoff scores at another; a registered model's feature schema lists
    them); only the written table (``ltvcast features``) drops them.

    Args:
        event_totals: mapping count column -> its total (a pandas Series of
            column sums, or a Spark ``Row.asDict()``); a missing or None total
            reads as 0.

    Returns:
        The slot columns to drop, slot by slot (count, 90-day count, days since).
    """
    return [c for cols in TYPE_SLOTS.values() if not event_totals.get(cols[0]) for c in cols]
