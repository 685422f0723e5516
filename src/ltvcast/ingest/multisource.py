"""Ingest every source of a ``sources.yaml`` into the store, in one database transaction.

>>> from ltvcast.ingest.config import load_config
>>> from ltvcast.store import Store
>>> with Store.open("shop.duckdb") as store:                      # doctest: +SKIP
...     result = ingest_sources(load_config("sources.yaml"), store)
>>> [(s.kind, s.status, s.counts.rows_kept) for s in result.sources]  # doctest: +SKIP

Steps: read each source (a file, each file of a glob, or a database table /
query) and hash its content; skip what the store has seen (same kind, same
content hash); parse and stage (:mod:`ltvcast.ingest.staging`; events in
batches into the database, :mod:`ltvcast.ingest.stream`, so that memory
does not grow with their number); then, in one transaction, resolve all
rows against the store (:mod:`ltvcast.ingest.resolve`; events in SQL),
write them, rebuild orders' totals and the derived ``transactions`` and
commit. Any error before the commit leaves the store exactly as it was.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ltvcast.errors import DataError
from ltvcast.ingest.config import ShopConfig, SourcesConfig, SourceSpec
from ltvcast.ingest.ledger import FileCounts
from ltvcast.ingest.parse import number_format
from ltvcast.ingest.privacy import id_key
from ltvcast.ingest.readers import SOURCE_FORMATS, RawTable, batches_of, file_sha256, read_batches, read_table
from ltvcast.ingest.resolve import resolve
from ltvcast.ingest.sql_source import frame_hash, read_sql_source, source_label
from ltvcast.ingest.staging import StagedTable, stage_table
from ltvcast.ingest.stream import EventStage
from ltvcast.ingest.write import MEMORY_LIMIT, ingest_context, write_run
from ltvcast.schema.quarantine import reason_order
from ltvcast.timeutil import DateLike, declared_day

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from ltvcast.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceReport:
    """What happened to one source table (a file, one file of a glob, or a database source).

    Attributes:
        kind: source kind.
        source: absolute path or database label (password masked).
        format: reader format.
        status: ``ingested`` or ``skipped`` (content already in the store).
        ingest_id: its ``ingest_log`` id (None when skipped).
        counts: fate counts (None when skipped).
        personal_dropped: personal columns dropped at read time.
        ids_normalised: float-spelled ids rewritten.
        content_hash: SHA-256 of the content.
        note: why it was skipped, or which ingest it replaced.
        ignored: source columns that reach no canonical field (not stored).
        attributes: source columns with no canonical field kept as JSON in the
            ``attributes`` column (customers, orders, order_items, returns, events).
    """

    kind: str
    source: str
    format: str
    status: str
    ingest_id: int | None = None
    counts: FileCounts | None = None
    personal_dropped: tuple[str, ...] = ()
    ids_normalised: int = 0
    content_hash: str = ""
    note: str = ""
    ignored: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MultiSourceResult:
    """Outcome of :func:`ingest_sources`.

    Attributes:
        run_id: the run's id in ``ingest_log.run_id`` (None if nothing new was read).
        sources: one report per source table, in config order.
        quarantined: reason -> rows quarantined in this run.
        observation_end: the store's observation end after the run (None if empty).
        shop: the shop settings used.
        seconds: wall time of the run.
    """

    run_id: int | None
    sources: list[SourceReport]
    quarantined: dict[str, int]
    observation_end: pd.Timestamp | None
    shop: ShopConfig
    seconds: float = 0.0
    replaced: list[int] = field(default_factory=list)


def source_files(spec: SourceSpec) -> list[Path]:
    """The files of a path source: the file itself, or every file matching the glob, sorted by name.

    Raises:
        DataError: the file does not exist, or the glob matches no file.
    """
    assert spec.path is not None
    if any(ch in spec.path for ch in "*?["):
        files = sorted(Path(p) for p in glob(spec.path, recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(f"sources[{spec.index}] ({spec.kind}): no file matches {spec.path}")
        return files
    path = Path(spec.path)
    if not path.exists():
        raise DataError(f"sources[{spec.index}] ({spec.kind}): file not found: {path}")
    return [path]


def _read_file(path: Path, spec: SourceSpec):
    fmt = spec.format if spec.format not in (None, "sql") else None
    return read_table(
        path,
        fmt,
        has_header=spec.header,
        columns=spec.columns,
        encoding=spec.encoding,
        sheet=spec.sheet,
        formats=SOURCE_FORMATS,
        bad_rows="keep",  # malformed CSV rows are quarantined as bad_row (staging), the rest is read
    )


def _file_batches(path: Path, spec: SourceSpec) -> Callable[[str | None, bool], Iterator[tuple[int, RawTable]]]:
    """``batches(encoding, lenient)`` of a source file (:meth:`ltvcast.ingest.stream.EventStage.stage`)."""
    fmt = spec.format if spec.format not in (None, "sql") else None

    def batches(encoding: str | None, lenient: bool) -> Iterator[tuple[int, RawTable]]:
        return read_batches(path, fmt, has_header=spec.header, columns=spec.columns, encoding=encoding,
                            sheet=spec.sheet, formats=SOURCE_FORMATS, lenient=lenient)

    return batches


def _stage_all(
    config: SourcesConfig, seen: pd.DataFrame, replace: bool, key: bytes | None, events: EventStage,
    progress: Callable[[str], None] = lambda text: None,
) -> tuple[list[StagedTable], list[SourceReport | int], list[int]]:
    """Read and stage every source; return staged tables, the report slots, ingests to replace."""
    staged: list[StagedTable] = []
    slots: list[SourceReport | int] = []  # a report (skipped) or the index into `staged`
    replaced: list[int] = []
    known = {(k, h): i for i, k, h in zip(seen["ingest_id"], seen["kind"], seen["content_hash"]) if h}
    this_run: set[tuple[str, str]] = set()
    for spec in config.sources:
        if spec.url is not None:
            items = [("sql", None)]
        else:
            items = [("file", p) for p in source_files(spec)]
        for what, path in items:
            t0 = time.perf_counter()
            if what == "sql":
                raw = read_sql_source(spec.url, spec.table, spec.query)
                content_hash = frame_hash(raw.frame)
                label = source_label(spec.url, spec.table, spec.query)
            else:
                content_hash = file_sha256(path)
                label = str(path.resolve())
                raw = None
            fmt = "sql" if what == "sql" else (spec.format or "")
            if (spec.kind, content_hash) in this_run:
                slots.append(SourceReport(spec.kind, label, fmt, "skipped", content_hash=content_hash,
                                          note="same content as an earlier source of this run"))
                continue
            earlier = known.get((spec.kind, content_hash))
            previous = seen.loc[(seen["source"] == label) & (seen["kind"] == spec.kind), "ingest_id"].tolist()
            if earlier is not None and not replace:
                slots.append(SourceReport(spec.kind, label, fmt, "skipped", content_hash=content_hash,
                                          note=f"already in the store (ingest {earlier})"))
                continue
            if replace:
                replaced.extend(int(i) for i in previous)
                if earlier is not None:
                    replaced.append(int(earlier))
            this_run.add((spec.kind, content_hash))
            progress(f"reading {spec.kind}: {label}")
            if spec.kind == "events":  # the large kind: staged in the database batch by batch
                sql_raw = raw
                batches = _file_batches(path, spec) if sql_raw is None else (lambda *_: batches_of(sql_raw))
                table = events.stage(len(staged), batches, spec, config.shop, label, fmt, content_hash, key)
            else:
                if raw is None:
                    raw = _read_file(path, spec)
                    raw = type(raw)(frame=raw.frame, source=label, format=raw.format, encoding=raw.encoding,
                                    bad_rows=raw.bad_rows)
                with number_format(spec.decimal):  # decimal: "," on the source
                    table = stage_table(raw, spec, config.shop, content_hash, key)
            raw = None  # the text frame is not needed any more; free it before the next source is read
            table.seconds = time.perf_counter() - t0
            if table.personal_dropped:
                log.info("%s: dropped personal column(s) %s", label, ", ".join(table.personal_dropped))
            if table.attributes:
                log.info("%s: column(s) kept as JSON in attributes: %s", label, ", ".join(table.attributes))
            if table.ignored:
                log.warning("%s: column(s) with no canonical field, not stored: %s", label, ", ".join(table.ignored))
            log.info("%s: %d rows read and parsed in %.1f s", label, table.rows_read, table.seconds)
            slots.append(len(staged))
            staged.append(table)
    return staged, slots, sorted(set(replaced))


def ingest_sources(
    config: SourcesConfig,
    store: Store,
    *,
    replace: bool = False,
    data_end: DateLike | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> MultiSourceResult:
    """Read every source of ``config`` and write it to ``store`` in one transaction.

    Args:
        config: parsed ``sources.yaml`` (:func:`ltvcast.ingest.config.load_config`).
        store: an open, writable store.
        replace: re-ingest sources whose content (or path / database source)
            was ingested before, deleting the earlier ingest's rows first;
            without it such content is skipped (idempotent re-runs).
        data_end: declared last observed day; overrides ``shop.data_end``.
        environ: environment for the pseudonymisation key (default ``os.environ``).
        progress: called with a short text at each stage (reading each source,
            resolving, writing, rebuilding); the CLI shows it as a progress
            bar or as log lines.

    Returns:
        :class:`MultiSourceResult`; for every ingested source
        ``rows_read == rows_kept + rows_quarantined + duplicates_dropped + rows_excluded``
        (malformed CSV rows are quarantined as ``bad_row``; rows matching a
        source's ``exclude:`` rule are counted in ``rows_excluded``).

    Raises:
        DataError: a source cannot be read (names the file / database, row
            and column where known), a required column is missing, an
            ``exclude`` rule names a column the source does not have, personal
            data is mapped without being allowed, the key for pseudonymised
            ids is missing, the store holds another shop currency, or the
            declared ``data_end`` is before the last transaction day.
            Nothing is written when any error is raised.
    """
    t0 = time.perf_counter()
    started_at = pd.Timestamp.now(tz="UTC")
    shop = config.shop
    key = id_key(shop.id_key_env, environ) if shop.pseudonymise_ids else None
    declared_text = data_end if data_end is not None else shop.data_end
    declared = declared_day(declared_text) if declared_text is not None else None
    seen = store.ingested_sources()
    step = progress or (lambda text: None)
    run_id = None
    ids: list[int] = []
    run = None
    events = EventStage(store)
    with store.memory_limit(MEMORY_LIMIT):
        try:
            staged, slots, replaced = _stage_all(config, seen, replace, key, events, step)
            with store.transaction():
                store.set_shop(shop.currency, shop.timezone, shop.revenue_basis)
                if staged:
                    run_id = store.next_run_id()
                    store.delete_ingests(replaced)
                    ctx = ingest_context(store, {t.spec.kind for t in staged if not t.streamed} | {"orders"})
                    step(f"resolving {sum(t.rows_read for t in staged):,} rows of {len(staged)} source table(s)")
                    run = resolve(staged, ctx, shop)
                    for table in staged:
                        table.release()
                    step("writing the store")
                    ids = write_run(store, run, staged, run_id, started_at, declared, events)
                    step("rebuilding transactions and order totals")
                    store.rebuild_derived()
                store.check_data_end(declared)
        finally:
            events.drop()
    reports: list[SourceReport] = []
    totals: dict[str, int] = {}
    for slot in slots:
        if isinstance(slot, SourceReport):
            reports.append(slot)
            continue
        table = staged[slot]
        counts = run.counts[slot]
        for reason, n in counts.quarantined.items():
            totals[reason] = totals.get(reason, 0) + n
        reports.append(
            SourceReport(
                kind=table.spec.kind,
                source=table.source,
                format=table.format,
                status="ingested",
                ingest_id=ids[slot],
                counts=counts,
                personal_dropped=tuple(table.personal_dropped),
                ids_normalised=table.ids_normalised,
                content_hash=table.content_hash,
                ignored=tuple(table.ignored),
                attributes=tuple(table.attributes),
            )
        )
    try:
        end = store.observation_end()
    except DataError:
        end = None
    return MultiSourceResult(
        run_id=run_id,
        sources=reports,
        quarantined={r: totals[r] for r in reason_order(totals)},
        observation_end=end,
        shop=shop,
        seconds=time.perf_counter() - t0,
        replaced=replaced,
    )
