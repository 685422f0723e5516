"""Layouts of the store's tables (DuckDB): columns, types and meaning, in one place.

The DDL (:func:`create_statements`) and the markdown documentation
(:func:`tables_doc`, copied into README and docs/multisource.md) are both
generated from :data:`TABLES`, so they cannot drift apart.

Times are ``TIMESTAMP`` in UTC without a zone; money is ``DECIMAL(18,4)``
in the shop currency unless the meaning says "original currency".
"""

from __future__ import annotations

SCHEMA_VERSION = 3
#: Tables with the ``attributes`` column (JSON of a source's extra columns). Version 3 first had it on
#: the first three; a version-3 store without it on the others gets it when opened (:mod:`ltvcast.store`).
ATTRIBUTE_TABLES: tuple[str, ...] = ("customers", "orders", "order_items", "returns", "events")
MONEY = "DECIMAL(18,4)"
RATE = "DECIMAL(18,8)"

# table -> list of (column, type, meaning); a table-level constraint as a ("", "PRIMARY KEY (...)", "") entry.
TABLES: dict[str, list[tuple[str, str, str]]] = {
    "transactions": [
        ("ingest_id", "INTEGER NOT NULL", "the ingest that wrote the row (`ingest_log.ingest_id`)"),
        ("customer_id", "VARCHAR NOT NULL", "customer id, always text (`00012` keeps its zeros)"),
        ("timestamp", "TIMESTAMP NOT NULL", "purchase (or return) time, UTC, microseconds, stored without zone"),
        ("amount", f"{MONEY} NOT NULL", "value in the shop currency (returns < 0), exact decimal"),
        ("order_id", "VARCHAR", "order / invoice number (for a return: the order it reduces, NULL if unlinked)"),
        ("line", "BIGINT", "line number within the order"),
        ("quantity", "DOUBLE", "units (returns < 0)"),
        ("product_id", "VARCHAR", "product id"),
        ("category", "VARCHAR", "product category"),
        ("brand", "VARCHAR", "brand"),
        ("channel", "VARCHAR", "sales channel (web, app, store, ...)"),
        ("currency", "VARCHAR", "ISO currency code of `amount`"),
        ("kind", "VARCHAR NOT NULL", "`sale` or `return` (single-file ingest: amount < 0 is a return)"),
    ],
    "quarantine": [
        ("ingest_id", "INTEGER NOT NULL", "the ingest that read the row"),
        ("source", "VARCHAR NOT NULL", "absolute path of the source file, or the database source (`url#table`, password masked)"),
        ("source_row", "BIGINT NOT NULL", "1-based data row in the source (header not counted, blank lines skipped)"),
        ("reason", "VARCHAR NOT NULL", "reason code (see `ltvcast.schema.quarantine.REASONS`)"),
        ("source_column", "VARCHAR", "the offending column, as named in the source"),
        ("raw_value", "VARCHAR", "the offending value, as text"),
        ("raw_row", "VARCHAR", "the whole row as a JSON object of text values (personal columns removed)"),
        ("kind", "VARCHAR NOT NULL", "source kind (`orders`, ..., or `transactions` for a single-file ingest)"),
    ],
    "ingest_log": [
        ("ingest_id", "INTEGER PRIMARY KEY", "1, 2, ... in write order, never reused (a replaced ingest gets a new id)"),
        ("source", "VARCHAR NOT NULL", "absolute path of the source file, or the database source"),
        ("format", "VARCHAR", "`csv`, `whitespace`, `parquet`, `jsonl`, `excel`, `sql`, or `online` (`ltvcast sync`)"),
        ("rows_read", "BIGINT", "data rows in the source"),
        ("rows_kept", "BIGINT", "rows written to the store"),
        ("rows_quarantined", "BIGINT", "rows written to `quarantine`"),
        ("duplicates_dropped", "BIGINT", "export duplicates dropped (a key seen before with identical content)"),
        ("identical_rows_kept", "BIGINT", "identical rows without order id, kept (single-file ingest)"),
        ("ids_normalised", "BIGINT", "float-spelled ids rewritten (`17850.0` → `17850`)"),
        ("first_day", "DATE", "day of the first kept row (UTC)"),
        ("last_day", "DATE", "day of the last kept row (UTC)"),
        ("data_end", "DATE", "declared last observed day, NULL when not declared"),
        ("mapping", "VARCHAR", "the column mapping used, as JSON"),
        ("started_at", "TIMESTAMP", "when the ingest started, UTC"),
        ("seconds", "DOUBLE", "duration of reading and validating the source"),
        ("kind", "VARCHAR", "source kind, `transactions` for a single-file ingest, `online` for `ltvcast sync`"),
        ("content_hash", "VARCHAR", "SHA-256 of the file bytes (or of the query result, row order ignored)"),
        ("run_id", "INTEGER", "the `ingest --config` run (one database transaction); NULL for a single file"),
        ("personal_columns_dropped", "VARCHAR", "JSON list of the personal columns dropped at read time"),
    ],
    "customers": [
        ("ingest_id", "INTEGER NOT NULL", "the ingest that wrote the row"),
        ("customer_id", "VARCHAR PRIMARY KEY", "customer id (a pseudonym when `pseudonymise_ids`)"),
        ("signup_at", "TIMESTAMP", "sign-up time, UTC"),
        ("acquisition_channel", "VARCHAR", "how the customer came"),
        ("region", "VARCHAR", "region"),
        ("country", "VARCHAR", "country"),
        ("attributes", "VARCHAR", "JSON object of the source's extra columns (mapped to no field): column -> text, empty values left out; NULL when none"),
    ],
    "products": [
        ("ingest_id", "INTEGER NOT NULL", "the ingest that wrote the row"),
        ("product_id", "VARCHAR PRIMARY KEY", "product id"),
        ("category", "VARCHAR", "category"),
        ("brand", "VARCHAR", "brand"),
        ("list_price", MONEY, "list price in the shop currency (converted at the latest rate)"),
    ],
    "orders": [
        ("ingest_id", "INTEGER NOT NULL", "the ingest that wrote the row (of the lines, for an order derived from lines)"),
        ("order_id", "VARCHAR PRIMARY KEY", "order id"),
        ("customer_id", "VARCHAR NOT NULL", "customer id"),
        ("timestamp", "TIMESTAMP NOT NULL", "order time, UTC"),
        ("channel", "VARCHAR", "sales channel"),
        ("currency", "VARCHAR NOT NULL", "original currency of the order"),
        ("stated_amount", MONEY, "order total given by the orders source, shop currency (NULL if not given)"),
        ("gross_amount", f"{MONEY} NOT NULL", "sum of the order's lines, else `stated_amount`, else 0"),
        ("returned_amount", f"{MONEY} NOT NULL", "sum of the linked returns (money given back)"),
        ("net_amount", f"{MONEY} NOT NULL", "gross_amount − returned_amount"),
        ("attributes", "VARCHAR", "JSON object of the source's extra columns (mapped to no field): column -> text, empty values left out; NULL when none (and for an order derived from lines)"),
    ],
    "order_items": [
        ("ingest_id", "INTEGER NOT NULL", "the ingest that wrote the row"),
        ("order_id", "VARCHAR NOT NULL", "order id"),
        ("line", "BIGINT NOT NULL", "line number (numbered 1, 2, ... in file order when the source has none)"),
        ("product_id", "VARCHAR", "product id"),
        ("quantity", "DOUBLE", "units"),
        ("unit_price", MONEY, "unit price, original currency"),
        ("discount", MONEY, "discount, shop currency, ≥ 0"),
        ("amount", f"{MONEY} NOT NULL", "line value after discount, shop currency, ≥ 0"),
        ("category", "VARCHAR", "category given on the line (else the product's)"),
        ("brand", "VARCHAR", "brand given on the line (else the product's)"),
        ("attributes", "VARCHAR", "JSON object of the source's extra columns (mapped to no field): column -> text, empty values left out; NULL when none"),
        ("", "PRIMARY KEY (order_id, line)", ""),
    ],
    "returns": [
        ("ingest_id", "INTEGER NOT NULL", "the ingest that wrote the row"),
        ("return_id", "VARCHAR NOT NULL", "return id; for returned lines and cancellations the invoice number"),
        ("order_id", "VARCHAR", "the order it reduces, NULL if unlinked"),
        ("line", "BIGINT", "line number"),
        ("customer_id", "VARCHAR NOT NULL", "customer id (the order's when linked)"),
        ("timestamp", "TIMESTAMP NOT NULL", "time of the return itself, UTC (never back-dated)"),
        ("quantity", "DOUBLE", "units returned (≥ 0)"),
        ("amount", f"{MONEY} NOT NULL", "money given back, shop currency (> 0)"),
        ("linked", "BOOLEAN NOT NULL", "whether `order_id` names a known order"),
        ("product_id", "VARCHAR", "product returned"),
        ("attributes", "VARCHAR", "JSON object of the extra columns (mapped to no field) of the source row it came from (a returns, orders or order_items source): column -> text, empty values left out; NULL when none"),
    ],
    "events": [
        ("ingest_id", "INTEGER NOT NULL", "the ingest that wrote the row"),
        ("event_id", "VARCHAR PRIMARY KEY", "event id (`h:` + content hash when the source has none)"),
        ("customer_id", "VARCHAR NOT NULL", "customer id"),
        ("session_id", "VARCHAR", "session id"),
        ("timestamp", "TIMESTAMP NOT NULL", "event time, UTC"),
        ("event_type", "VARCHAR NOT NULL", "any type (lower-case, `_` for spaces/dashes); `session_start`, `view`, `add_to_cart`, `purchase` have own features"),
        ("product_id", "VARCHAR", "product id"),
        ("attributes", "VARCHAR", "JSON object of the source's extra columns (mapped to no field): column -> text, empty values left out; NULL when none (and for events written by `ltvcast sync`)"),
    ],
    "fx_rates": [
        ("ingest_id", "INTEGER NOT NULL", "the ingest that wrote the row"),
        ("day", "DATE NOT NULL", "calendar day of the rate"),
        ("currency", "VARCHAR NOT NULL", "ISO currency code"),
        ("rate", f"{RATE} NOT NULL", "shop currency per 1 unit of `currency`"),
        ("", "PRIMARY KEY (day, currency)", ""),
    ],
    "ingest_keys": [
        ("ingest_id", "INTEGER NOT NULL", "the ingest that kept the row"),
        ("kind", "VARCHAR NOT NULL", "source kind whose key it is (`online`: an event id written by `ltvcast sync`)"),
        ("key", "VARCHAR NOT NULL", "the row's key (`order_id`, `order_id|line`, `day|currency`, ...)"),
        ("row_hash", "VARCHAR NOT NULL", "hash of the row's parsed values: equal = export duplicate, else `duplicate_id`"),
        ("", "PRIMARY KEY (kind, key)", ""),
    ],
}

# The monitoring loop's tables (ltvcast.monitor, docs/monitoring.md): created on first write by
# Store.ensure_monitor_tables, not with the store, so stores without monitoring stay as they were.
MONITOR_TABLE_LAYOUTS: dict[str, list[tuple[str, str, str]]] = {
    "score_log": [
        ("run_id", "INTEGER PRIMARY KEY", "1, 2, ... per logged scoring run"),
        ("logged_at", "TIMESTAMP NOT NULL", "when the run was logged, UTC"),
        ("model", "VARCHAR NOT NULL", "`NAME:VERSION` of the registered model"),
        ("model_name", "VARCHAR NOT NULL", "registry name"),
        ("model_version", "INTEGER NOT NULL", "registry version"),
        ("model_kind", "VARCHAR", "model family (`bgnbd`, `gbm`, ...)"),
        ("cutoff", "DATE NOT NULL", "prediction date (first day of the horizon)"),
        ("horizon_days", "DOUBLE NOT NULL", "horizon length, days"),
        ("customers", "BIGINT NOT NULL", "customers scored"),
        ("pred_spend_total", "DOUBLE", "sum of `pred_spend`, shop currency"),
        ("source", "VARCHAR NOT NULL", "`score` (`ltvcast score`/`predict`) or `service` (batch predictions)"),
        ("output", "VARCHAR", "the predictions file written, if any"),
    ],
    "score_log_predictions": [
        ("run_id", "INTEGER NOT NULL", "the run (`score_log.run_id`)"),
        ("customer_id", "VARCHAR NOT NULL", "customer id"),
        ("pred_transactions", "DOUBLE", "predicted purchase occasions in the horizon"),
        ("pred_spend", "DOUBLE", "predicted spend in the horizon, shop currency"),
        ("p_churn", "DOUBLE", "predicted probability of no purchase in the horizon"),
        ("", "PRIMARY KEY (run_id, customer_id)", ""),
    ],
    "monitor_log": [
        ("checked_at", "TIMESTAMP NOT NULL", "when `ltvcast monitor` ran, UTC"),
        ("model", "VARCHAR NOT NULL", "`NAME:VERSION` monitored"),
        ("at", "DATE NOT NULL", "the monitored cutoff (`--at`)"),
        ("check_kind", "VARCHAR NOT NULL", "`input_drift`, `prediction_drift`, `live_accuracy`, `data_health`, `model_age`"),
        ("subject", "VARCHAR NOT NULL", "feature, prediction column, run or source checked"),
        ("statistic", "VARCHAR NOT NULL", "`psi`, `ks`, `wasserstein`, `total_error_pct`, ..."),
        ("value", "DOUBLE", "the statistic's value"),
        ("warn", "DOUBLE", "the policy's warn threshold"),
        ("alert", "DOUBLE", "the policy's alert threshold"),
        ("status", "VARCHAR NOT NULL", "`ok`, `warn`, `alert` or `info` (reported, not judged)"),
        ("detail", "VARCHAR", "a sentence: what was compared"),
    ],
}

#: Tables of the monitoring loop (:mod:`ltvcast.monitor`; docs/monitoring.md).
MONITOR_TABLES: tuple[str, ...] = tuple(MONITOR_TABLE_LAYOUTS)
_LAYOUTS = {**TABLES, **MONITOR_TABLE_LAYOUTS}

#: Tables written by the foundation's single-file ingest.
FOUNDATION_TABLES: tuple[str, ...] = ("transactions", "quarantine", "ingest_log")
#: Canonical tables written by ``ingest --config`` (besides the three above).
SOURCE_TABLES: tuple[str, ...] = (
    "customers", "products", "orders", "order_items", "returns", "events", "fx_rates", "ingest_keys",
)


def columns(table: str) -> tuple[str, ...]:
    """Column names of ``table`` in DDL order (extra customer attributes not included)."""
    return tuple(c for c, _, _ in _LAYOUTS[table] if c)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def create_statement(table: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for ``table``."""
    parts = [f"{_q(c)} {t}" if c else t for c, t, _ in _LAYOUTS[table]]
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(parts)})"


def tables_doc(tables: tuple[str, ...] = tuple(TABLES)) -> str:
    """Markdown: one section per table with a column | type | meaning table."""
    out = []
    for table in tables:
        out.append(f"**`{table}`**\n\n| column | type | meaning |\n|---|---|---|")
        for c, t, meaning in _LAYOUTS[table]:
            if c:
                out.append(f"| {c} | {t} | {meaning} |")
            else:
                out.append(f"\n{t}.")
        out.append("")
    return "\n".join(out)
