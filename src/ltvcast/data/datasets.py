"""Built-in datasets and the one way every command opens its transactions.

``cdnow``: the CDNOW master file (23,570 real customers, 1997-01-01 ..
1998-06-30; see ``ltvcast/data/files/README.md`` for source and attribution),
read through the same ingest path as a user's file.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from ltvcast.errors import DataError
from ltvcast.ingest.mapping import ColumnMapping
from ltvcast.ingest.single import IngestResult, ingest
from ltvcast.ingest.write import write_ingest
from ltvcast.store import Store

CDNOW_MASTER_MAPPING = ColumnMapping(
    fields={"timestamp": "date", "amount": "dollar_value", "quantity": "number_of_cds"},
    date_format="%Y%m%d",
)
CDNOW_SAMPLE_MAPPING = ColumnMapping(
    fields={"customer_id": "sample_id", "timestamp": "date", "amount": "dollar_value", "quantity": "number_of_cds"},
    date_format="%Y%m%d",
    columns=("master_id", "sample_id", "date", "number_of_cds", "dollar_value"),
)
DATASETS = ("cdnow", "cdnow-sample")


def dataset_path(name: str) -> Path:
    """Path of a built-in dataset's packaged file (``cdnow`` or ``cdnow-sample``).

    Raises:
        DataError: the name is unknown.
    """
    files = {"cdnow": "CDNOW_master.txt.gz", "cdnow-sample": "CDNOW_sample.txt.gz"}
    if name not in files:
        raise DataError(f"unknown dataset {name!r}; built-in datasets: {', '.join(DATASETS)}")
    return Path(str(resources.files("ltvcast.data") / "files" / files[name]))


def load_dataset(name: str) -> IngestResult:
    """Ingest a built-in dataset into canonical transactions.

    ``cdnow`` ids are the master ids (``00001`` .. ``23570``); ``cdnow-sample``
    ids are the papers' sample ids (``0001`` .. ``2357``).

    Raises:
        DataError: the name is unknown.
    """
    mapping = CDNOW_MASTER_MAPPING if name == "cdnow" else CDNOW_SAMPLE_MAPPING
    return ingest(dataset_path(name), mapping, format="whitespace")


@dataclass(frozen=True)
class History:
    """A shop's data as every model sees it.

    Attributes:
        transactions: canonical transactions frame (all of them; models
            split at their cutoff).
        observation_end: last observed day (UTC 00:00).
        origin: ``dataset cdnow`` or the store path, for reports.
        store: the open store (read-only file, or in memory for a built-in
            dataset) for point-in-time features
            (:func:`ltvcast.features.build`).
        timezone: the shop's IANA time zone (decides calendar days).
        revenue_basis: ``net`` (sales minus returns) or ``gross``.
    """

    transactions: pd.DataFrame
    observation_end: pd.Timestamp
    origin: str
    store: Store
    timezone: str = "UTC"
    revenue_basis: str = "net"


def open_history(dataset: str | None = None, db: str | Path | None = None, data_end=None) -> History:
    """Open the transactions of a built-in dataset or of a store (exactly one of them).

    Args:
        dataset: built-in dataset name.
        db: path of a DuckDB store written by ``ltvcast ingest``.
        data_end: declared last observed day, overriding the data's own.

    Raises:
        DataError: neither or both sources given; the store is missing or
            empty; ``data_end`` is before the last transaction day.
    """
    from ltvcast.timeutil import observation_end

    if (dataset is None) == (db is None):
        raise DataError("give exactly one source of transactions: --dataset NAME or --db PATH")
    if dataset is not None:
        result = load_dataset(dataset)
        store = Store.open(":memory:")
        write_ingest(store, result)
        tx, declared, origin = result.transactions, result.data_end, f"dataset {dataset}"
    else:
        store = Store.open(db, read_only=True)
        tx = store.transactions()
        if tx.empty:
            store.close()
            raise DataError(f"store {db} holds no transactions; run `ltvcast ingest` first")
        declared = store.observation_end()
        origin = str(db)
    end = observation_end(tx, data_end if data_end is not None else declared)
    meta = store.meta()
    return History(
        tx, end, origin, store, meta.get("shop_timezone", "UTC"), meta.get("revenue_basis", "net")
    )
