"""`ltvcast ingest`: read a shop export (one file) or every source of a sources.yaml into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ltvcast.cli._app import app, console, user_errors
from ltvcast.cli._show import ingest_table, progress, show
from ltvcast.errors import DataError
from ltvcast.ingest.config import load_config
from ltvcast.ingest.mapping import ColumnMapping, load_mapping_file, parse_exclude_option, parse_map_option
from ltvcast.ingest.multisource import MultiSourceResult, ingest_sources
from ltvcast.ingest.single import ingest as run_ingest
from ltvcast.ingest.write import write_ingest
from ltvcast.store import Store


@app.command("ingest")
@user_errors
def ingest_command(
    source: Annotated[
        Path | None,
        typer.Argument(
            help="File to read: .csv, .parquet/.pq, or whitespace-separated .txt/.dat/.tsv "
            "(text formats may be .gz compressed). Leave it out with --config.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="sources.yaml declaring the shop (currency, time zone) and every source: orders, "
            "order_items, returns, events, customers, products, fx_rates; files, globs or a SQL "
            "database. All sources are written in one transaction; content already ingested is skipped.",
            show_default=False,
        ),
    ] = None,
    db: Annotated[
        Path, typer.Option("--db", help="DuckDB store to write to (created if missing).")
    ] = Path("ltvcast.duckdb"),
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            metavar="CANONICAL=SOURCE,...",
            help="Column mapping canonical=SourceColumn, comma-separated or repeated, e.g. "
            "--map customer_id=CustomerID --map amount=Sales. "
            "Map unit_price (with quantity) instead of amount to get amount = quantity x unit_price. "
            "Overrides --map-file.",
            show_default=False,
        ),
    ] = None,
    map_file: Annotated[
        Path | None,
        typer.Option(
            "--map-file",
            help="YAML file with the mapping (customer_id: CustomerID, ...) and optional "
            "date_format, dayfirst, has_header, columns.",
            show_default=False,
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            metavar="COLUMN=VALUE,...",
            help="Leave out the rows whose COLUMN (canonical field or source column) holds one of the "
            "values, e.g. --exclude product_id=POST,M,DOT (postage, manual lines); repeatable. The rows "
            "are counted in the summary as excluded. In a --map-file: exclude: {product_id: [POST, M]}.",
            show_default=False,
        ),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Read as csv, whitespace or parquet instead of guessing from the extension.",
            show_default=False,
        ),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            metavar="NAME,NAME,...",
            help="Column names of a header-less text file, in order (the first line is data).",
            show_default=False,
        ),
    ] = None,
    dayfirst: Annotated[
        bool, typer.Option("--dayfirst", help="Read 01/02/2020 as 1 February.")
    ] = False,
    decimal: Annotated[
        str | None,
        typer.Option(
            "--decimal",
            metavar="MARK",
            help="Decimal mark of the numbers: '.' (default) or ',' (1.234,56 = 1234.56; '.' or spaces "
            "group thousands). In sources.yaml: decimal: \",\" on a source.",
            show_default=False,
        ),
    ] = None,
    date_format: Annotated[
        str | None,
        typer.Option(
            "--date-format",
            metavar="FMT",
            help="strptime format of the timestamps, e.g. '%d/%m/%Y %H:%M'. Without it ISO 8601, "
            "YYYYMMDD and common formats are recognised. Times without zone are UTC.",
            show_default=False,
        ),
    ] = None,
    data_end: Annotated[
        str | None,
        typer.Option(
            "--data-end",
            metavar="YYYY-MM-DD",
            help="Last day the data covers (default: the day of the last transaction).",
            show_default=False,
        ),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Replace the rows of an earlier ingest of the same file (with --config: of every "
            "source whose path or content was ingested before).",
        ),
    ] = False,
) -> None:
    """Read a shop's transactions (one file) or all its sources (--config sources.yaml) into the store.

    One file: required columns customer_id, timestamp, amount (or unit_price and
    quantity); optional order_id, line, quantity, product_id, category, brand, channel,
    currency. Columns already named so need no mapping. Rows with a bad timestamp or
    amount or no customer id go to the store's quarantine table with a reason and their
    data row number (header not counted). Repeated order lines (same order_id and line)
    are dropped as export duplicates.

    Example: ltvcast ingest CDNOW_master.txt --db cdnow.duckdb
    --map timestamp=date,amount=dollar_value,quantity=number_of_cds

    Many sources: ltvcast ingest --config sources.yaml --db shop.duckdb
    (format: docs/multisource.md).
    """
    if config is not None:
        single = {"FILE": source, "--map": map_, "--map-file": map_file, "--exclude": exclude, "--format": format,
                  "--columns": columns, "--date-format": date_format, "--dayfirst": dayfirst or None, "--decimal": decimal}
        given = [name for name, value in single.items() if value]
        if given:
            raise DataError(
                f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to a single file; "
                "with --config, declare sources and their mappings in the YAML file"
            )
        cfg = load_config(config)
        with Store.open(db) as store, progress(console, len(cfg.sources) + 3) as step:
            result = ingest_sources(cfg, store, replace=replace, data_end=data_end, progress=step)
        _print_sources(result, db, config)
        return
    if source is None:
        raise DataError("give a FILE to ingest, or --config sources.yaml")
    mapping = load_mapping_file(map_file) if map_file is not None else ColumnMapping()
    fields: dict[str, str] = {}
    for item in map_ or []:
        fields.update(parse_map_option(item))
    names = [c.strip() for c in columns.split(",")] if columns else None
    rules: dict[str, tuple[str, ...]] = {}
    for item in exclude or []:
        rules.update(parse_exclude_option(item))
    mapping = mapping.updated(
        fields,
        date_format=date_format,
        dayfirst=True if dayfirst else None,
        columns=names,
        decimal=decimal,
        exclude=rules,
    )
    result = run_ingest(source, mapping, format=format, data_end=data_end)
    with Store.open(db) as store:
        write_ingest(store, result, replace=replace)
        end = store.observation_end()
    console.print(f"ingested {result.stats.source} into {db}", soft_wrap=True, highlight=False)
    show(console, ingest_table(result, str(end.date())))
    if result.stats.zero_value_sales:
        console.print(
            f"[yellow]warning:[/] {result.stats.zero_value_sales:,} sale line(s) with amount 0 were kept as "
            "purchases (free items, adjustments?); they count as purchase occasions",
            highlight=False,
            soft_wrap=True,
        )
    if result.stats.personal_columns_dropped:
        console.print(
            f"personal columns dropped (not stored): {', '.join(result.stats.personal_columns_dropped)}",
            highlight=False,
            soft_wrap=True,
        )
    if result.stats.rows_quarantined:
        console.print(
            f"quarantined rows (reason, row, raw values) are in table [bold]quarantine[/] of {db}",
            highlight=False,
            soft_wrap=True,
        )


def _short(source: str, base: Path) -> str:
    try:
        return str(Path(source).relative_to(base.resolve().parent))
    except ValueError:
        return source


def sources_table(result: MultiSourceResult, config: Path) -> Table:
    """One row per source table of a --config run: kind, source, rows read / kept / quarantined / duplicates
    / excluded (read = kept + quarantined + duplicates + excluded)."""
    table = Table(header_style="bold")
    numbers = ("read", "kept", "quarantined", "duplicates", "excluded")
    for header in ("kind", "source", *numbers, "status"):
        table.add_column(header, justify="right" if header in numbers else "left")
    for rep in result.sources:
        c = rep.counts
        cells = ("–",) * len(numbers) if c is None else (
            f"{c.rows_read:,}", f"{c.rows_kept:,}", f"{c.rows_quarantined:,}", f"{c.duplicates_dropped:,}",
            f"{c.rows_excluded:,}",
        )
        status = rep.status if not rep.note else f"{rep.status}: {rep.note}"
        table.add_row(rep.kind, _short(rep.source, config), *cells, status)
    return table


def _print_sources(result: MultiSourceResult, db: Path, config: Path) -> None:
    ingested = [r for r in result.sources if r.status == "ingested"]
    run = f" (run {result.run_id})" if result.run_id is not None else ""
    console.print(
        f"{config}: {len(ingested)} of {len(result.sources)} source table(s) ingested into {db}{run}",
        soft_wrap=True,
        highlight=False,
    )
    show(console, sources_table(result, config))
    if result.quarantined:
        table = Table(show_header=True, header_style="bold", title="quarantined rows by reason")
        table.add_column("reason")
        table.add_column("rows", justify="right")
        for reason, n in result.quarantined.items():
            table.add_row(reason, f"{n:,}")
        show(console, table)
        console.print(
            f"see them with: ltvcast quarantine --db {db} --show 5", highlight=False, soft_wrap=True
        )
    for rep in ingested:
        if rep.personal_dropped:
            console.print(
                f"personal columns dropped from {_short(rep.source, config)}: {', '.join(rep.personal_dropped)}",
                highlight=False,
                soft_wrap=True,
            )
        if rep.counts is not None and rep.counts.excluded:
            rules = ", ".join(f"{k}: {v:,}" for k, v in rep.counts.excluded.items())
            console.print(
                f"rows excluded by the exclude rule in {_short(rep.source, config)}: {rules}",
                highlight=False,
                soft_wrap=True,
            )
        if rep.attributes:
            console.print(
                f"columns kept as JSON in attributes (no canonical field) in {_short(rep.source, config)}: "
                f"{', '.join(rep.attributes)}",
                highlight=False,
                soft_wrap=True,
            )
        if rep.ignored:
            console.print(
                f"columns ignored (no canonical field, not stored) in {_short(rep.source, config)}: "
                f"{', '.join(rep.ignored)}",
                highlight=False,
                soft_wrap=True,
            )
    normalised = sum(r.ids_normalised for r in ingested)
    if normalised:
        console.print(f"ids normalised (17850.0 -> 17850): {normalised:,}", highlight=False)
    end = "–" if result.observation_end is None else str(result.observation_end.date())
    console.print(
        f"shop currency {result.shop.currency}, time zone {result.shop.timezone}, "
        f"revenue basis {result.shop.revenue_basis}; observation end {end}",
        highlight=False,
        soft_wrap=True,
    )
