"""`ltvcast ingest`: read a shop export into the DuckDB store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ltvcast.cli._app import app, console, user_errors
from ltvcast.cli._show import ingest_table
from ltvcast.data.ingest import IngestResult
from ltvcast.data.ingest import ingest as run_ingest
from ltvcast.data.mapping import ColumnMapping, load_mapping_file, parse_map_option
from ltvcast.store import Store


@app.command("ingest")
@user_errors
def ingest_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="File to read: .csv, .parquet/.pq, or whitespace-separated .txt/.dat/.tsv "
            "(text formats may be .gz compressed).",
            show_default=False,
        ),
    ],
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
        typer.Option("--replace", help="Replace the rows of an earlier ingest of the same file."),
    ] = False,
) -> None:
    """Read a shop's transactions into the store, quarantining bad rows.

    Required columns: customer_id, timestamp, amount (or unit_price and quantity).
    Optional: order_id, line, quantity, product_id, category, brand, channel, currency.
    Columns already named so need no mapping. Rows with a bad timestamp or amount
    or no customer id go to the store's quarantine table with a reason and their
    data row number (header not counted). Repeated order lines (same order_id and
    line) are dropped as export duplicates.

    Example: ltvcast ingest CDNOW_master.txt --db cdnow.duckdb
    --map timestamp=date,amount=dollar_value,quantity=number_of_cds
    """
    mapping = load_mapping_file(map_file) if map_file is not None else ColumnMapping()
    fields: dict[str, str] = {}
    for item in map_ or []:
        fields.update(parse_map_option(item))
    names = [c.strip() for c in columns.split(",")] if columns else None
    mapping = mapping.updated(
        fields,
        date_format=date_format,
        dayfirst=True if dayfirst else None,
        columns=names,
    )
    result = run_ingest(source, mapping, format=format, data_end=data_end)
    with Store.open(db) as store:
        store.write_ingest(result, replace=replace)
        end = store.observation_end()
    console.print(f"ingested {result.stats.source} into {db}", soft_wrap=True, highlight=False)
    console.print(ingest_table(result, str(end.date())))
    if result.stats.rows_quarantined:
        console.print(
            f"quarantined rows (reason, row, raw values) are in table [bold]quarantine[/] of {db}",
            highlight=False,
            soft_wrap=True,
        )
