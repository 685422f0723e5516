"""Write the simulated shop: chunked Parquet part files, ``sources.yaml``, truth and the dirty manifest.

Layout of ``out_dir``::

    sources.yaml                 the contract's config (docs/multisource.md), paths relative to it
    products/part-0000.parquet   one part (the catalogue)
    fx_rates/part-0000.parquet   one part (daily USD and GBP rates)
    customers/part-NNNN.parquet  one part per chunk of customers (also orders, order_items,
    orders/...                   returns, events): part i holds chunk i's customers and
    order_items/...              everything they did; an empty part is not written (a
    returns/...                  small chunk may have no returns), so every file has rows
    events/...
    truth.parquet                per customer: the latent parameters (not a source)
    truth_calendar.parquet       per day: intensity multiplier and promotion discount
    dirty_manifest.json          exact counts of the injected dirty rows
    dirty_rows.parquet           each dirty row: kind, reason, file, 1-based row, column, value
    campaign_assignments.csv     with a campaign only: customer_id, arm (ltvcast.simulate.campaigns)
    campaign.json                with a campaign only: its settings and true average effect

Source column names are those of a realistic export (``OrderID``,
``CustomerRef``, ``CreatedAt``, ...) and ``sources.yaml`` maps them to the
canonical names. The shop's calendar is UTC (``shop.timezone: UTC``: promo
days, seasonality and the day of an order are UTC days). Timestamps are UTC:
``orders.CreatedAt`` is **text**
(``YYYY-MM-DD HH:MM:SS``, naive, ``timezone: UTC`` in the YAML) so that it can
hold the unparseable dirty values; the other timestamps are Parquet
``timestamp[ms, tz=UTC]``. Money is float64 with cents; ``unit_price``,
``discount`` (line total) and the refund ``amount`` of returns are in the
order's currency (the ``Currency`` of the order; order items and returns have
no currency column of their own).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from ltvcast.errors import LtvcastError
from ltvcast.simulate.campaigns import (
    ASSIGNMENTS_FILE,
    SETTINGS_FILE,
    Campaign,
    truth_schema,
    with_truth,
    write_campaign_files,
)
from ltvcast.simulate.process import (
    CATEGORIES,
    CHANNELS,
    COUNTRIES,
    CURRENCIES,
    EMAIL_DOMAINS,
    EVENT_TYPES,
    FIRST_NAMES,
    LAST_NAMES,
    UNKNOWN_CURRENCY,
    Chunk,
    ShopParams,
    World,
    make_world,
    simulate_chunk,
)
from ltvcast.simulate.seasons import Seasons

#: kinds written, in the order of sources.yaml
KINDS: tuple[str, ...] = ("products", "fx_rates", "customers", "orders", "order_items", "returns", "events")
#: kinds written as one part per chunk of customers
CHUNKED_KINDS: tuple[str, ...] = ("customers", "orders", "order_items", "returns", "events")
DEFAULT_CHUNK_CUSTOMERS = 20_000
DEFAULT_DIRTY_RATE = 0.001
FIRST_ORDER_ID = 10_000_001

_TS = pa.timestamp("ms", tz="UTC")

#: source schema of every kind (column names as in the files)
SCHEMAS: dict[str, pa.Schema] = {
    "products": pa.schema(
        [("SKU", pa.string()), ("Category", pa.string()), ("Brand", pa.string()), ("ListPriceEUR", pa.float64())]
    ),
    "fx_rates": pa.schema([("RateDate", pa.date32()), ("CurrencyCode", pa.string()), ("EURPerUnit", pa.float64())]),
    "customers": pa.schema(
        [
            ("CustomerRef", pa.string()),
            ("RegisteredAt", _TS),
            ("AcquisitionChannel", pa.string()),
            ("Region", pa.string()),
            ("CountryCode", pa.string()),
            ("Email", pa.string()),
            ("Name", pa.string()),
        ]
    ),
    "orders": pa.schema(
        [
            ("OrderID", pa.int64()),
            ("CustomerRef", pa.string()),
            ("CreatedAt", pa.string()),
            ("SalesChannel", pa.string()),
            ("Currency", pa.string()),
        ]
    ),
    "order_items": pa.schema(
        [
            ("OrderID", pa.int64()),
            ("LineNo", pa.int64()),
            ("SKU", pa.string()),
            ("Qty", pa.int64()),
            ("UnitPrice", pa.float64()),
            ("Discount", pa.float64()),
        ]
    ),
    "returns": pa.schema(
        [
            ("ReturnID", pa.string()),
            ("OrderID", pa.int64()),
            ("LineNo", pa.int64()),
            ("CustomerRef", pa.string()),
            ("ReturnedAt", _TS),
            ("Qty", pa.int64()),
            ("RefundAmount", pa.float64()),
        ]
    ),
    "events": pa.schema(
        [
            ("EventID", pa.int64()),
            ("CustomerRef", pa.string()),
            ("SessionID", pa.int64()),
            ("EventTime", _TS),
            ("EventType", pa.string()),
            ("SKU", pa.string()),
        ]
    ),
}

#: canonical column -> source column, per kind (the ``mapping`` of sources.yaml)
MAPPINGS: dict[str, dict[str, str]] = {
    "products": {"product_id": "SKU", "category": "Category", "brand": "Brand", "list_price": "ListPriceEUR"},
    "fx_rates": {"day": "RateDate", "currency": "CurrencyCode", "rate": "EURPerUnit"},
    "customers": {
        "customer_id": "CustomerRef",
        "signup_at": "RegisteredAt",
        "acquisition_channel": "AcquisitionChannel",
        "region": "Region",
        "country": "CountryCode",
        # Email and Name are deliberately not mapped: they are personal data, which the
        # ingest drops by default (shop.personal_columns) and refuses to map unless allowed.
    },
    "orders": {
        "order_id": "OrderID",
        "customer_id": "CustomerRef",
        "timestamp": "CreatedAt",
        "channel": "SalesChannel",
        "currency": "Currency",
    },
    "order_items": {
        "order_id": "OrderID",
        "line": "LineNo",
        "product_id": "SKU",
        "quantity": "Qty",
        "unit_price": "UnitPrice",
        "discount": "Discount",
    },
    "returns": {
        "return_id": "ReturnID",
        "order_id": "OrderID",
        "line": "LineNo",
        "customer_id": "CustomerRef",
        "timestamp": "ReturnedAt",
        "quantity": "Qty",
        "amount": "RefundAmount",
    },
    "events": {
        "event_id": "EventID",
        "customer_id": "CustomerRef",
        "session_id": "SessionID",
        "timestamp": "EventTime",
        "event_type": "EventType",
        "product_id": "SKU",
    },
}

TRUTH_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("signup_at", _TS),
        ("acquisition_channel", pa.string()),
        ("country", pa.string()),
        ("currency", pa.string()),
        ("purchase_rate", pa.float64()),
        ("dropout_rate", pa.float64()),
        ("lifetime_days", pa.float64()),
        ("dropout_at", _TS),
        ("alive_at_end", pa.bool_()),
        ("spend_level", pa.float64()),
        ("browse_intensity", pa.float64()),
        ("favourite_brand", pa.string()),
        ("brand_loyalty", pa.float64()),
        ("return_propensity", pa.float64()),
        ("app_share", pa.float64()),
        ("bought_at_signup", pa.bool_()),
        ("n_orders", pa.int64()),
    ]
)
DIRTY_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("reason", pa.string()),
        ("file", pa.string()),
        ("row", pa.int64()),
        ("column", pa.string()),
        ("raw_value", pa.string()),
        ("order_id", pa.int64()),
        ("line", pa.int64()),
    ]
)
DIRTY_REASONS: dict[str, tuple[str, ...]] = {
    "orders": ("bad_timestamp", "unknown_currency"),
    "order_items": ("duplicate_line",),
}
_OUTPUT_FILES = ("sources.yaml", "truth.parquet", "truth_calendar.parquet", "dirty_manifest.json", "dirty_rows.parquet",
                 ASSIGNMENTS_FILE, SETTINGS_FILE)


@dataclass(frozen=True)
class SimulationSummary:
    """What :func:`simulate_shop` wrote.

    ``rows`` counts the rows in the files per kind (dirty rows included, so
    ``order_items`` counts the duplicated lines twice); ``dirty`` the injected
    dirty rows per kind and reason; ``parts`` the part files written per kind
    (part ``i`` of a chunked kind holds chunk ``i``; empty parts are skipped).
    """

    out_dir: Path
    sources_yaml: Path
    truth: Path
    truth_calendar: Path
    dirty_manifest: Path
    dirty_rows: Path
    customers: int
    months: int
    seed: int
    start: pd.Timestamp
    end: pd.Timestamp
    chunk_customers: int
    chunks: int
    rows: dict[str, int]
    parts: dict[str, tuple[Path, ...]]
    dirty: dict[str, dict[str, int]]
    sessions: int
    seconds: float
    #: ``campaign_assignments.csv`` when a campaign ran (ltvcast.simulate.campaigns), else None
    campaign_assignments: Path | None = None

    @property
    def order_lines(self) -> int:
        """Rows of the order_items files (including export duplicates)."""
        return self.rows["order_items"]

    @property
    def dirty_total(self) -> int:
        return sum(sum(v.values()) for v in self.dirty.values())


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    text = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, text, "")


def _strings(values: tuple[str, ...] | list[str]) -> pa.Array:
    return pa.array(list(values), pa.string())


def _take(dictionary: pa.Array, idx: np.ndarray) -> pa.Array:
    return dictionary.take(pa.array(idx, pa.int64()))


def _product_ids(n: int) -> pa.Array:
    return _ids("SKU-", np.arange(1, n + 1), 5)


def products_table(world: World) -> pa.Table:
    n = world.list_price.size
    return pa.Table.from_arrays(
        [
            _product_ids(n),
            _take(_strings([c[0] for c in CATEGORIES]), world.product_category),
            _take(_strings(world.brand_names), world.product_brand),
            pa.array(world.list_price, pa.float64()),
        ],
        schema=SCHEMAS["products"],
    )


def fx_table(world: World) -> pa.Table:
    n = world.n_days
    foreign = len(CURRENCIES) - 1
    day = np.repeat((world.days.values.astype("datetime64[D]")).astype(np.int32), foreign)
    cur = np.tile(np.arange(1, len(CURRENCIES)), n)
    rate = world.fx[:, 1:].reshape(-1)
    return pa.Table.from_arrays(
        [pa.array(day, pa.date32()), _take(_strings(CURRENCIES), cur), pa.array(rate, pa.float64())],
        schema=SCHEMAS["fx_rates"],
    )


def calendar_table(world: World) -> pa.Table:
    return pa.table(
        {
            "day": pa.array(world.days.values.astype("datetime64[D]").astype(np.int32), pa.date32()),
            "intensity": pa.array(world.day_mult, pa.float64()),
            "promo_discount": pa.array(world.promo_pct, pa.float64()),
        }
    )


@dataclass
class _Offsets:
    customer: int = 0
    order: int = 0
    ret: int = 0
    session: int = 0
    event: int = 0


def chunk_tables(chunk: Chunk, world: World, off: _Offsets) -> tuple[dict[str, pa.Table], pa.Table, dict]:
    """Arrow tables (source schemas) of one chunk, its truth table and dirty-row positions."""
    n = chunk.n_customers
    cust_ids = _ids("C", off.customer + np.arange(1, n + 1), 8)
    products = _product_ids(world.list_price.size)
    code = _take(_strings([c[0] for c in COUNTRIES]), chunk.country)
    channel = _take(_strings([c[0] for c in CHANNELS]), chunk.channel)
    first = _take(_strings(FIRST_NAMES), chunk.first_name)
    last = _take(_strings(LAST_NAMES), chunk.last_name)
    email = pc.binary_join_element_wise(
        pc.utf8_lower(first),
        ".",
        pc.utf8_lower(last),
        pc.cast(pa.array(chunk.email_number, pa.int64()), pa.string()),
        "@",
        _take(_strings(EMAIL_DOMAINS), chunk.email_domain),
        "",
    )
    email = pc.replace_substring(email, " ", "")
    customers = pa.Table.from_arrays(
        [
            cust_ids,
            pa.array(chunk.signup_ms, _TS),
            channel,
            _take(_strings([c[1] for c in COUNTRIES]), chunk.country),
            code,
            email,
            pc.binary_join_element_wise(first, last, " "),
        ],
        schema=SCHEMAS["customers"],
    )

    n_orders = chunk.order_customer.size
    order_ids = off.order + FIRST_ORDER_ID + np.arange(n_orders, dtype=np.int64)
    created = pc.strftime(pa.array(chunk.order_sec, pa.timestamp("s")), format="%Y-%m-%d %H:%M:%S")
    if chunk.bad_timestamp_orders.size:
        mask = np.zeros(n_orders, dtype=bool)
        mask[chunk.bad_timestamp_orders] = True
        created = pc.replace_with_mask(created, pa.array(mask), pa.array(chunk.bad_timestamp_values, pa.string()))
    cur_idx = chunk.order_currency.copy()
    cur_idx[chunk.unknown_currency_orders] = len(CURRENCIES)
    orders = pa.Table.from_arrays(
        [
            pa.array(order_ids),
            _take(cust_ids, chunk.order_customer),
            created,
            _take(_strings(["web", "app"]), chunk.order_app.astype(np.int64)),
            _take(_strings([*CURRENCIES, UNKNOWN_CURRENCY]), cur_idx),
        ],
        schema=SCHEMAS["orders"],
    )

    # order lines, each export duplicate right after its original
    n_lines = chunk.line_order.size
    times = np.ones(n_lines, dtype=np.int64)
    times[chunk.duplicate_lines] = 2
    rows = np.repeat(np.arange(n_lines), times)
    line_order_ids = order_ids[chunk.line_order]
    items = pa.Table.from_arrays(
        [
            pa.array(line_order_ids[rows]),
            pa.array(chunk.line_number[rows], pa.int64()),
            _take(products, chunk.line_product[rows]),
            pa.array(chunk.line_quantity[rows], pa.int64()),
            pa.array(chunk.line_unit_price[rows], pa.float64()),
            pa.array(chunk.line_discount[rows], pa.float64()),
        ],
        schema=SCHEMAS["order_items"],
    )
    # 1-based row of the duplicate (second copy) in the part file
    dup_before = np.cumsum(times - 1) - (times - 1)
    dup_rows = chunk.duplicate_lines + dup_before[chunk.duplicate_lines] + 2

    n_ret = chunk.return_order.size
    returns = pa.Table.from_arrays(
        [
            _ids("RMA", off.ret + np.arange(1, n_ret + 1), 8),
            pa.array(order_ids[chunk.return_order]),
            pa.array(chunk.line_number[chunk.return_line], pa.int64()),
            _take(cust_ids, chunk.order_customer[chunk.return_order]),
            pa.array(chunk.return_ms, _TS),
            pa.array(chunk.return_quantity, pa.int64()),
            pa.array(chunk.return_amount, pa.float64()),
        ],
        schema=SCHEMAS["returns"],
    )

    n_ev = chunk.event_ms.size
    prod = pa.array(np.maximum(chunk.event_product, 0), pa.int64(), mask=chunk.event_product < 0)
    events = pa.Table.from_arrays(
        [
            pa.array(off.event + 1 + np.arange(n_ev, dtype=np.int64)),
            _take(cust_ids, chunk.event_customer),
            pa.array(off.session + 1 + chunk.event_session),
            pa.array(chunk.event_ms, _TS),
            _take(_strings(EVENT_TYPES), chunk.event_type.astype(np.int64)),
            products.take(prod),
        ],
        schema=SCHEMAS["events"],
    )

    fav = chunk.favourite_brand
    end_ms = int(world.end.value // 1_000_000)
    truth = pa.Table.from_arrays(
        [
            cust_ids,
            pa.array(chunk.signup_ms, _TS),
            channel,
            code,
            _take(_strings(CURRENCIES), chunk.currency),
            pa.array(chunk.purchase_rate),
            pa.array(chunk.dropout_rate),
            pa.array(chunk.lifetime_days),
            pa.array(chunk.dropout_ms, _TS),
            pa.array(chunk.dropout_ms >= end_ms),
            pa.array(chunk.spend_level),
            pa.array(chunk.browse_intensity),
            _strings(world.brand_names).take(pa.array(np.maximum(fav, 0), pa.int64(), mask=fav < 0)),
            pa.array(chunk.brand_loyalty),
            pa.array(chunk.return_propensity),
            pa.array(chunk.app_share),
            pa.array(chunk.bought_at_signup),
            pa.array(chunk.orders_per_customer.astype(np.int64)),
        ],
        schema=TRUTH_SCHEMA,
    )
    dirty = {
        "bad_timestamp": (chunk.bad_timestamp_orders + 1, order_ids[chunk.bad_timestamp_orders], chunk.bad_timestamp_values),
        "unknown_currency": (chunk.unknown_currency_orders + 1, order_ids[chunk.unknown_currency_orders]),
        "duplicate_line": (dup_rows, line_order_ids[chunk.duplicate_lines], chunk.line_number[chunk.duplicate_lines]),
        "lines_of_dirty_orders": int(
            np.isin(chunk.line_order, np.concatenate([chunk.bad_timestamp_orders, chunk.unknown_currency_orders])).sum()
        ),
    }
    if chunk.campaign is not None:
        truth = with_truth(truth, chunk.campaign)
    tables = {"customers": customers, "orders": orders, "order_items": items, "returns": returns, "events": events}
    off.customer += n
    off.order += n_orders
    off.ret += n_ret
    off.session += chunk.n_sessions
    off.event += n_ev
    return tables, truth, dirty


def _dirty_table(dirty: dict, files: dict[str, str]) -> pa.Table:
    kind, reason, file, row, column, raw, order_id, line = [], [], [], [], [], [], [], []
    rows_, ids_, values = dirty["bad_timestamp"]
    n = len(rows_)
    kind += ["orders"] * n
    reason += ["bad_timestamp"] * n
    file += [files["orders"]] * n
    row += rows_.tolist()
    column += [MAPPINGS["orders"]["timestamp"]] * n
    raw += list(values)
    order_id += ids_.tolist()
    line += [None] * n
    rows_, ids_ = dirty["unknown_currency"]
    n = len(rows_)
    kind += ["orders"] * n
    reason += ["unknown_currency"] * n
    file += [files["orders"]] * n
    row += rows_.tolist()
    column += [MAPPINGS["orders"]["currency"]] * n
    raw += [UNKNOWN_CURRENCY] * n
    order_id += ids_.tolist()
    line += [None] * n
    rows_, ids_, lines_ = dirty["duplicate_line"]
    n = len(rows_)
    kind += ["order_items"] * n
    reason += ["duplicate_line"] * n
    file += [files["order_items"]] * n
    row += rows_.tolist()
    column += [None] * n
    raw += [None] * n
    order_id += ids_.tolist()
    line += lines_.tolist()
    return pa.Table.from_pydict(
        {"kind": kind, "reason": reason, "file": file, "row": row, "column": column,
         "raw_value": raw, "order_id": order_id, "line": line},
        schema=DIRTY_SCHEMA,
    )


def sources_config(
    seed: int, customers: int, months: int, start: pd.Timestamp, kinds: tuple[str, ...] = KINDS
) -> str:
    """The text of ``sources.yaml`` (contract format, paths relative to the file).

    ``kinds``: the kinds that have at least one part file (a tiny shop may
    have no returns; a source whose glob matches nothing is an ingest error).
    """
    sources = []
    for kind in kinds:
        entry: dict = {"kind": kind, "path": f"{kind}/*.parquet", "format": "parquet"}
        if kind in ("customers", "orders", "returns", "events"):
            entry["timezone"] = "UTC"
        entry["mapping"] = dict(MAPPINGS[kind])
        sources.append(entry)
    config = {
        # the simulated calendar (seasonality, promo days, the day of an order) is UTC
        "shop": {"currency": "EUR", "timezone": "UTC", "revenue_basis": "net", "pseudonymise_ids": False},
        "sources": sources,
    }
    header = (
        f"# Simulated shop written by `ltvcast simulate` (seed {seed}, {customers} customers,\n"
        f"# {months} months from {start.date()}). Timestamps are UTC; orders.CreatedAt is text\n"
        "# (it may hold unparseable values, see dirty_manifest.json). unit_price, discount and\n"
        "# the refund amount of returns are in the order's currency (orders.Currency).\n"
        "# customers.Email and customers.Name are personal data, left unmapped: the ingest drops them.\n"
        "# truth.parquet, truth_calendar.parquet and dirty_rows.parquet are not sources.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=200)


def _prepare(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise LtvcastError(f"{out_dir} exists and is not a folder")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise LtvcastError(f"{out_dir} is not empty; pass overwrite=True (--overwrite) to replace a simulation")
        ours = set(KINDS) | set(_OUTPUT_FILES)
        others = sorted(p.name for p in out_dir.iterdir() if p.name not in ours)
        if others:
            raise LtvcastError(
                f"{out_dir} holds files that a simulation does not write ({', '.join(others[:5])}); "
                "refusing to overwrite it"
            )
        for kind in KINDS:
            if (out_dir / kind).is_dir():
                shutil.rmtree(out_dir / kind)
        for name in _OUTPUT_FILES:
            (out_dir / name).unlink(missing_ok=True)
    for kind in KINDS:
        (out_dir / kind).mkdir(parents=True, exist_ok=True)


def _write(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="snappy")


def simulate_shop(
    out_dir: str | Path,
    customers: int,
    months: int,
    seed: int = 0,
    start: str | pd.Timestamp = "2022-01-01",
    dirty_rate: float = DEFAULT_DIRTY_RATE,
    chunk_customers: int = DEFAULT_CHUNK_CUSTOMERS,
    overwrite: bool = False,
    on_chunk: Callable[[int, int, int], None] | None = None,
    params: ShopParams | None = None,
    seasons: Seasons | None = None,
    campaign: Campaign | None = None,
) -> SimulationSummary:
    """Simulate an online shop and write every source kind as Parquet plus ``sources.yaml``.

    The generative process is documented in :mod:`ltvcast.simulate.process`;
    the layout of ``out_dir`` in :mod:`ltvcast.simulate.writer`.

    Args:
        out_dir: folder to write (created; must be empty unless ``overwrite``).
        customers: number of customers (registered accounts, buyers or not).
        months: length of the observed period in calendar months.
        seed: non-negative integer; same arguments and seed give byte-identical files.
        start: first day of the period (UTC midnight).
        dirty_rate: per-row probability of each kind of dirty row (0 .. 0.2).
        chunk_customers: customers per chunk, i.e. per part file; memory is
            bounded by the size of one chunk. Changing it changes the draws.
        overwrite: replace an earlier simulation in ``out_dir``.
        on_chunk: called after each chunk is written with (chunks done,
            chunks in all, order lines written so far).
        params: the customer-level parameters of the process (default
            :class:`~ltvcast.simulate.process.ShopParams()`), e.g. to switch
            the browsing signal off in a study.
        seasons: the calendar (:class:`~ltvcast.simulate.seasons.Seasons`: yearly cycle
            strength, promotion days, holiday lull); default: the default shop.
        campaign: a randomised campaign (:class:`~ltvcast.simulate.campaigns.Campaign`):
            adds the truth's campaign columns, ``campaign_assignments.csv`` and
            ``campaign.json``; None (default): no campaign, unchanged output.

    Raises:
        LtvcastError: an argument out of range or an ``out_dir`` that is not free.
    """
    started = time.perf_counter()
    if isinstance(customers, bool) or int(customers) != customers or customers < 1:
        raise LtvcastError(f"customers must be a positive integer, got {customers!r}")
    if isinstance(months, bool) or int(months) != months or months < 1 or months > 600:
        raise LtvcastError(f"months must be an integer from 1 to 600, got {months!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise LtvcastError(f"seed must be a non-negative integer, got {seed!r}")
    if not (0.0 <= float(dirty_rate) <= 0.2):
        raise LtvcastError(f"dirty_rate must be between 0 and 0.2, got {dirty_rate!r}")
    if isinstance(chunk_customers, bool) or int(chunk_customers) != chunk_customers or chunk_customers < 1:
        raise LtvcastError(f"chunk_customers must be a positive integer, got {chunk_customers!r}")
    try:
        start_ts = pd.Timestamp(start)
    except (ValueError, TypeError) as exc:
        raise LtvcastError(f"start must be a date (YYYY-MM-DD), got {start!r}") from exc
    if start_ts.tzinfo is not None:
        start_ts = start_ts.tz_convert("UTC").tz_localize(None)
    start_ts = start_ts.normalize().as_unit("ns")
    customers, months, seed, chunk_customers = int(customers), int(months), int(seed), int(chunk_customers)
    dirty_rate = float(dirty_rate)
    if campaign is not None:
        campaign.checked()

    out = Path(out_dir)
    _prepare(out, overwrite)
    world = make_world(seed, start_ts, months, seasons)

    parts: dict[str, list[Path]] = {kind: [] for kind in KINDS}
    rows: dict[str, int] = {kind: 0 for kind in KINDS}
    for kind, table in (("products", products_table(world)), ("fx_rates", fx_table(world))):
        path = out / kind / "part-0000.parquet"
        _write(table, path)
        parts[kind].append(path)
        rows[kind] = table.num_rows
    _write(calendar_table(world), out / "truth_calendar.parquet")

    n_chunks = math.ceil(customers / chunk_customers)
    off = _Offsets()
    dirty_counts = {kind: {reason: 0 for reason in reasons} for kind, reasons in DIRTY_REASONS.items()}
    lines_of_dirty_orders = 0
    truth_path = out / "truth.parquet"
    dirty_path = out / "dirty_rows.parquet"
    # One background thread writes chunk i while chunk i + 1 is simulated (Parquet encoding
    # releases the GIL); at most one chunk waits to be written, so memory stays ~2 chunks.
    with (
        pq.ParquetWriter(truth_path, TRUTH_SCHEMA if campaign is None else truth_schema(TRUTH_SCHEMA)) as truth_w,
        pq.ParquetWriter(dirty_path, DIRTY_SCHEMA) as dirty_w,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        pending: Future | None = None
        rows_done = 0  # order lines of the chunks submitted before the pending one

        def write_chunk(i: int, tables: dict[str, pa.Table], truth: pa.Table, dirty_rows: pa.Table) -> None:
            for kind in CHUNKED_KINDS:
                if tables[kind].num_rows:
                    _write(tables[kind], out / kind / f"part-{i:04d}.parquet")
            truth_w.write_table(truth)
            dirty_w.write_table(dirty_rows)

        for i in range(n_chunks):
            n = min(chunk_customers, customers - i * chunk_customers)
            chunk = simulate_chunk(world, seed, i, n, dirty_rate, params, campaign=campaign)
            tables, truth, dirty = chunk_tables(chunk, world, off)
            del chunk
            files = {}
            for kind in CHUNKED_KINDS:
                path = out / kind / f"part-{i:04d}.parquet"
                if tables[kind].num_rows:
                    parts[kind].append(path)
                rows[kind] += tables[kind].num_rows
                files[kind] = path.relative_to(out).as_posix()
            dirty_rows = _dirty_table(dirty, files)
            dirty_counts["orders"]["bad_timestamp"] += len(dirty["bad_timestamp"][0])
            dirty_counts["orders"]["unknown_currency"] += len(dirty["unknown_currency"][0])
            dirty_counts["order_items"]["duplicate_line"] += len(dirty["duplicate_line"][0])
            lines_of_dirty_orders += dirty["lines_of_dirty_orders"]
            if pending is not None:
                pending.result()
                if on_chunk is not None:
                    on_chunk(i, n_chunks, rows_done)
            rows_done = rows["order_items"]
            pending = pool.submit(write_chunk, i, tables, truth, dirty_rows)
            del tables, truth, dirty, dirty_rows
        if pending is not None:
            pending.result()
            if on_chunk is not None:
                on_chunk(n_chunks, n_chunks, rows["order_items"])

    sources_yaml = out / "sources.yaml"
    written = tuple(k for k in KINDS if any((out / k).glob("*.parquet")))
    sources_yaml.write_text(sources_config(seed, customers, months, start_ts, written), encoding="utf-8")
    assignments = None
    if campaign is not None:
        assignments = write_campaign_files(out, campaign, pq.read_table(truth_path).to_pandas())
    manifest = {
        "seed": seed,
        "customers": customers,
        "months": months,
        "start": str(start_ts.date()),
        "dirty_rate": dirty_rate,
        "counts": dirty_counts,
        "total": sum(sum(v.values()) for v in dirty_counts.values()),
        "unknown_currency_code": UNKNOWN_CURRENCY,
        "order_items_of_dirty_orders": lines_of_dirty_orders,
        "rows_file": "dirty_rows.parquet",
        "notes": [
            "orders/bad_timestamp: CreatedAt holds an unparseable text (impossible date, zero date or '#VALUE!').",
            (
                f"orders/unknown_currency: Currency is {UNKNOWN_CURRENCY}, which has no fx rate; "
                "the order's items are priced in the customer's currency."
            ),
            (
                "order_items/duplicate_line: an exact copy of a clean order line (same OrderID and LineNo), "
                "written right after the original (an export duplicate)."
            ),
            (
                "dirty categories are disjoint; orders with a dirty row have no returns; "
                "order_items_of_dirty_orders counts the (clean) item rows whose order is a dirty order."
            ),
            "dirty_rows.parquet lists every dirty row with its file and 1-based data row.",
        ],
    }
    manifest_path = out / "dirty_manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return SimulationSummary(
        out_dir=out,
        sources_yaml=sources_yaml,
        truth=truth_path,
        truth_calendar=out / "truth_calendar.parquet",
        dirty_manifest=manifest_path,
        dirty_rows=dirty_path,
        customers=customers,
        months=months,
        seed=seed,
        start=start_ts,
        end=world.end,
        chunk_customers=chunk_customers,
        chunks=n_chunks,
        rows=rows,
        parts={k: tuple(v) for k, v in parts.items()},
        dirty=dirty_counts,
        sessions=off.session,
        seconds=time.perf_counter() - started,
        campaign_assignments=assignments,
    )
