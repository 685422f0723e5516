"""The DuckDB store: one file holding the canonical tables of a shop.

>>> from ltvcast.ingest.single import ingest
>>> from ltvcast.ingest.write import write_ingest
>>> with Store.open("shop.duckdb") as store:            # doctest: +SKIP
...     write_ingest(store, ingest("orders.csv"))
...     tx = store.transactions()
...     end = store.observation_end()

Every ingest is written in one database transaction (all or nothing): a
single file by :func:`ltvcast.ingest.write.write_ingest`, a whole ``sources.yaml`` run by
:func:`ltvcast.ingest.multisource.ingest_sources` inside
:meth:`Store.transaction`. Timestamps are stored as UTC without a zone
(``TIMESTAMP``, microseconds), so SQL on them never depends on a session
time zone; :meth:`Store.transactions` returns them tz-aware
(``datetime64[us, UTC]``). Money is ``DECIMAL(18,4)``, so sums in SQL are
exact. The tables are documented in :data:`STORE_TABLES_DOC` (generated
from :mod:`ltvcast.schema.tables`).

Observation end of a store: the latest of the declared ``data_end`` values
and the last transaction day. (A declared ``data_end`` is checked at write
time against every transaction in the store, so it is only exceeded by data
from a later ingest that declared nothing.)

Schema version 2 added ``transactions.kind``, DECIMAL amounts,
the multi-source tables and ``store_meta`` shop settings; version 3 (this
one) added ``attributes`` (JSON of a source's extra columns) to customers,
orders and order_items. An older store is upgraded in place when opened.
"""

from __future__ import annotations

from ltvcast.schema.tables import FOUNDATION_TABLES, tables_doc
from ltvcast.store.reads import STORE_TRANSACTION_COLUMNS, StoreReads
from ltvcast.store.writes import StoreWrites

STORE_TABLES_DOC = (
    tables_doc(FOUNDATION_TABLES)
    + "\n`rows_read = rows_kept + rows_quarantined + duplicates_dropped` for every ingest.\n"
    "**`store_meta`** holds `key`, `value` text pairs: `schema_version` (3), `shop_currency`, "
    "`shop_timezone` (default `UTC`), `revenue_basis` (`net` or `gross`, default `net`).\n"
)


class Store(StoreWrites, StoreReads):
    """A DuckDB file with the tables in :mod:`ltvcast.schema.tables`.

    Open it with :meth:`open` (a context manager); one process may write to
    a DuckDB file at a time. Lifecycle in :mod:`.connection`, writes in
    :mod:`.writes`, reads in :mod:`.reads`; ingests are written by
    :mod:`ltvcast.ingest.write`.
    """


__all__ = ["STORE_TABLES_DOC", "STORE_TRANSACTION_COLUMNS", "Store"]
