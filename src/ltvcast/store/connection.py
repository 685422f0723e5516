"""Opening, creating and migrating a store file; transactions; shop settings."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import duckdb
import pandas as pd

from ltvcast.errors import DataError
from ltvcast.schema.tables import ATTRIBUTE_TABLES, SCHEMA_VERSION, TABLES, create_statement

SINGLE_FILE_KIND = "transactions"
DEFAULT_META = {"shop_timezone": "UTC", "revenue_basis": "net"}


def quote(name: str) -> str:
    """A SQL identifier in double quotes."""
    return '"' + name.replace('"', '""') + '"'


def as_utc(series: pd.Series) -> pd.Series:
    """Naive-UTC datetime column from DuckDB -> tz-aware ``datetime64[us, UTC]``."""
    series = pd.to_datetime(series)
    if series.dt.tz is None:
        series = series.dt.tz_localize("UTC")
    return series.dt.tz_convert("UTC").dt.as_unit("us")


def as_naive(series: pd.Series) -> pd.Series:
    """tz-aware -> naive UTC (what a TIMESTAMP column holds)."""
    series = pd.to_datetime(series)
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return series



def _missing_attributes(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Tables of :data:`~ltvcast.schema.tables.ATTRIBUTE_TABLES` in the database without an ``attributes`` column."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' AND table_name IN "
        "(SELECT unnest(?::VARCHAR[])) AND table_name NOT IN (SELECT table_name FROM information_schema.columns "
        "WHERE table_schema = 'main' AND column_name = 'attributes')",
        [list(ATTRIBUTE_TABLES)],
    ).fetchall()
    return sorted(r[0] for r in rows)


class StoreConnection:
    """The open DuckDB file: lifecycle, schema migration, transactions, ``store_meta``."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
        self._con = con
        self.path = path
        self.read_only = read_only
        self._in_transaction = False

    def fetch(self, sql: str, params: list[object] | dict[str, object] | None = None) -> list[tuple]:
        """Execute one statement and fetch its result completely."""
        return self._con.execute(sql, params or []).fetchall()

    def fetch_df(self, sql: str, params: list[object] | dict[str, object] | None = None) -> pd.DataFrame:
        """Execute one statement and return its result as a frame."""
        return self._con.execute(sql, params or []).df()

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, read_only: bool = False) -> Self:
        """Open (creating if needed) the store at ``path``.

        Args:
            path: the DuckDB file; parent folders are created.
            read_only: open without write access (the file must exist). A
                version-1 or -2 store is upgraded first (briefly opened for writing).

        Returns:
            The store; use it as ``with Store.open(p) as store:``.

        Raises:
            DataError: the file is not a DuckDB database, is locked by another
                process, cannot be created, is missing (``read_only``), or
                was written by an incompatible ltvcast version.
        """
        path = Path(path)
        if read_only and not path.exists():
            raise DataError(f"store {path} does not exist; run `ltvcast ingest` first")
        if read_only and cls._needs_upgrade(path):
            cls.open(path).close()  # upgrade in place, then reopen read-only
        try:
            if not read_only:
                path.parent.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(path), read_only=read_only)
        except (duckdb.Error, OSError) as exc:
            raise DataError(f"cannot open store {path}: {exc}") from None
        store = cls(con, path, read_only)
        try:
            con.execute("SET enable_progress_bar = false")  # the library never prints
            if not read_only:
                store._create_or_upgrade()
            store._check_version()
        except BaseException:
            con.close()
            raise
        return store

    @staticmethod
    def _needs_upgrade(path: Path) -> bool:
        """Whether the store at ``path`` is of version 1 or 2, or of version 3 without every ``attributes`` column."""
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.Error:
            return False
        try:
            rows = con.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchall()
            version = rows[0][0] if rows else None
            return version in ("1", "2") or (version == str(SCHEMA_VERSION) and bool(_missing_attributes(con)))
        except duckdb.Error:
            return False
        finally:
            con.close()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The open DuckDB connection, for SQL reads of the documented tables (features).

        Write only through the store's methods: they keep the derived tables
        and the ingest log consistent.
        """
        return self._con

    def close(self) -> None:
        """Close the database connection (idempotent)."""
        self._con.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _create_or_upgrade(self) -> None:
        """Create the tables of an empty file, upgrade a version-1 or -2 store; leave anything else alone."""
        run = self.fetch
        existing = {r[0] for r in run("SELECT table_name FROM information_schema.tables")}
        if existing:
            if "store_meta" not in existing:
                return  # not ours: _check_version names it
            version = run("SELECT value FROM store_meta WHERE key = 'schema_version'")
            if version and version[0][0] == "1":
                self._upgrade_from_1()
                self._upgrade_from_2()
            elif version and version[0][0] == "2":
                self._upgrade_from_2()
            elif not version or version[0][0] != str(SCHEMA_VERSION):
                return
            elif _missing_attributes(self._con):
                self._complete_attributes()
        run("CREATE TABLE IF NOT EXISTS store_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        for table in TABLES:
            run(create_statement(table))
        run(
            "INSERT INTO store_meta SELECT 'schema_version', ? "
            "WHERE NOT EXISTS (SELECT 1 FROM store_meta WHERE key = 'schema_version')",
            [str(SCHEMA_VERSION)],
        )
        for key, value in DEFAULT_META.items():
            run(
                "INSERT INTO store_meta SELECT ?, ? WHERE NOT EXISTS (SELECT 1 FROM store_meta WHERE key = ?)",
                [key, value, key],
            )

    def _upgrade_from_1(self) -> None:
        """Schema 1 -> 2: kind columns, DECIMAL amounts, new ingest_log columns (one transaction)."""
        con = self._con
        con.begin()
        try:
            run = self.fetch
            # DuckDB: every ALTER before the first UPDATE (no index changes with outstanding updates)
            run("ALTER TABLE transactions ADD COLUMN kind VARCHAR DEFAULT 'sale'")
            run("ALTER TABLE transactions ALTER COLUMN kind SET NOT NULL")
            run("ALTER TABLE transactions ALTER COLUMN kind DROP DEFAULT")
            run("ALTER TABLE transactions ALTER COLUMN amount TYPE DECIMAL(18,4)")
            run(f"ALTER TABLE quarantine ADD COLUMN kind VARCHAR DEFAULT '{SINGLE_FILE_KIND}'")
            run("ALTER TABLE quarantine ALTER COLUMN kind SET NOT NULL")
            run("ALTER TABLE quarantine ALTER COLUMN kind DROP DEFAULT")
            for name, type_, _ in TABLES["ingest_log"][15:]:
                default = f" DEFAULT '{SINGLE_FILE_KIND}'" if name == "kind" else ""
                run(f"ALTER TABLE ingest_log ADD COLUMN {quote(name)} {type_}{default}")
            run("ALTER TABLE ingest_log ALTER COLUMN kind DROP DEFAULT")
            run("UPDATE transactions SET kind = 'return' WHERE amount < 0")
            run("UPDATE store_meta SET value = '2' WHERE key = 'schema_version'")
            con.commit()
        except BaseException:
            con.rollback()
            raise

    def _upgrade_from_2(self) -> None:
        """Schema 2 -> 3: ``attributes`` (JSON of a source's extra columns) on the tables of
        :data:`~ltvcast.schema.tables.ATTRIBUTE_TABLES`."""
        con = self._con
        con.begin()
        try:
            existing = {r[0] for r in self.fetch("SELECT table_name FROM information_schema.tables")}
            for table in ATTRIBUTE_TABLES:
                if table in existing:  # a version-1 store gets them from CREATE TABLE afterwards
                    self.fetch(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS attributes VARCHAR")
            self.fetch("UPDATE store_meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
            con.commit()
        except BaseException:
            con.rollback()
            raise

    def _complete_attributes(self) -> None:
        """A version-3 store written before ``returns`` and ``events`` had ``attributes``: add the
        column (NULL in every existing row; no other change), in one transaction."""
        con = self._con
        con.begin()
        try:
            for table in _missing_attributes(con):
                self.fetch(f"ALTER TABLE {table} ADD COLUMN attributes VARCHAR")
            con.commit()
        except BaseException:
            con.rollback()
            raise

    def _check_version(self) -> None:
        try:
            rows = self.fetch("SELECT value FROM store_meta WHERE key = 'schema_version'")
            row = rows[0] if rows else None
        except duckdb.CatalogException:
            row = None
        if row is None or row[0] != str(SCHEMA_VERSION):
            found = "none" if row is None else row[0]
            raise DataError(
                f"{self.path} is not an ltvcast store of schema version {SCHEMA_VERSION} "
                f"(found {found})"
            )

    @contextlib.contextmanager
    def memory_limit(self, limit: str) -> Iterator[Self]:
        """DuckDB's ``memory_limit`` set to ``limit`` (``"1GB"``) for the block, the earlier one restored after.

        Work beyond the limit spills to the database's temporary directory
        (``<store>.tmp``); what cannot spill (indexes of uncommitted rows) fails
        with DuckDB's out-of-memory error.
        """
        previous = self.fetch("SELECT current_setting('memory_limit')")[0][0]
        self._con.execute(f"SET memory_limit = '{limit}'")
        try:
            yield self
        finally:
            self._con.execute(f"SET memory_limit = '{previous}'")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Self]:
        """One database transaction: committed when the block ends, rolled back on any exception.

        Raises:
            DataError: the store is read-only, or a transaction is already open.
        """
        if self.read_only:
            raise DataError(f"store {self.path} is open read-only")
        if self._in_transaction:
            raise DataError("a store transaction is already open")
        self._con.begin()
        self._in_transaction = True
        try:
            yield self
        except BaseException:
            self._con.rollback()
            raise
        else:
            self._con.commit()
        finally:
            self._in_transaction = False

    # -- settings ----------------------------------------------------------
    def meta(self) -> dict[str, str]:
        """``store_meta`` as a dict: schema_version, shop_timezone (default UTC),
        revenue_basis (default net), shop_currency (absent until a ``--config`` ingest)."""
        out = dict(DEFAULT_META)
        out.update({k: v for k, v in self.fetch("SELECT key, value FROM store_meta")})
        return out

    def set_shop(self, currency: str, timezone: str, revenue_basis: str) -> None:
        """Record the shop settings of a ``--config`` ingest in ``store_meta``.

        Raises:
            DataError: the store already holds amounts in another shop currency.
        """
        held = self.meta().get("shop_currency")
        if held is not None and held != currency:
            raise DataError(
                f"{self.path} holds amounts in {held}; sources.yaml says shop currency {currency}. "
                "Use one currency per store"
            )
        for key, value in (("shop_currency", currency), ("shop_timezone", timezone), ("revenue_basis", revenue_basis)):
            self.fetch("INSERT OR REPLACE INTO store_meta VALUES (?, ?)", [key, value])
