"""The online store's interface: the append-only event log and the per-customer online state.

The backends (:mod:`ltvcast.serve.sqlite_store`, :mod:`ltvcast.serve.redis_store`) implement
:class:`OnlineStore`; :func:`ltvcast.serve.online.open_online` opens one.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ltvcast.serve.events import Event, parse_event
from ltvcast.serve.state import STATE_VERSION, Applied, DayRow, MemoryState, Snapshot

__all__ = ["BaseRow", "DayRow", "LogEntry", "OnlineStore"]

#: A base row: ``(customer_id, day, order_id, sales, returned, sale_rows, orders, return_rows)``
#: (a :class:`~ltvcast.serve.state.DayRow` with its customer; 1/10,000 units).
BaseRow = tuple[str, int, str, int, int, int, int, int]


@dataclass(frozen=True)
class LogEntry:
    """One logged event: arrival sequence (1, 2, ...), event id, canonical JSON."""

    seq: int
    event_id: str
    body: str


class OnlineStore(ABC):
    """Event log + online state. Methods are safe to call from several threads.

    Attributes:
        description: where the store lives (a path, or a masked Redis URL and prefix).
    """

    description: str

    @abstractmethod
    def append(self, events: Sequence[Event], timezone: str) -> Applied:
        """Log the batch's new events and update the state, atomically (all or nothing).

        Raises:
            ConflictError: a key reused under another event id (nothing written).
        """

    @abstractmethod
    def days(self, customer_ids: Sequence[str]) -> dict[str, list[DayRow]]:
        """Each known customer's :class:`~ltvcast.serve.state.DayRow` rows (online and base; a day and
        order id may appear twice); unknown ids are absent."""

    @abstractmethod
    def log(self, after: int = 0, limit: int = 10_000) -> list[LogEntry]:
        """Up to ``limit`` log entries with ``seq > after``, in arrival order."""

    @abstractmethod
    def meta(self) -> dict[str, str]:
        """The store's settings (``log_id``, ``timezone``, ``base_fingerprint``, ...)."""

    @abstractmethod
    def set_meta(self, values: dict[str, str]) -> None:
        """Set settings (atomically)."""

    @abstractmethod
    def replace_base(self, rows: Iterable[BaseRow], fingerprint: str) -> None:
        """Replace the base with ``rows`` and record ``fingerprint`` (readers see the old or the new base)."""

    @abstractmethod
    def snapshot(self) -> Snapshot:
        """The online part of the state (not the base), for comparisons."""

    @abstractmethod
    def _replace_state(self, snapshot: Snapshot) -> None:
        """Replace the online part of the state (used by :meth:`rebuild_state`)."""

    @abstractmethod
    def ping(self) -> None:
        """Raise if the store cannot be read."""

    @abstractmethod
    def close(self) -> None:
        """Release connections (idempotent)."""

    # -- shared ------------------------------------------------------------
    def ensure_log_id(self) -> str:
        """The log's identity (a UUID made on first use); ``sync`` keeps its progress per log."""
        log_id = self.meta().get("log_id")
        if log_id is None:
            log_id = uuid.uuid4().hex
            self.set_meta({"log_id": log_id})
        return log_id

    def iter_log(self, after: int = 0, page: int = 10_000) -> Iterator[LogEntry]:
        """Every log entry after ``after``, in pages."""
        while True:
            entries = self.log(after, page)
            yield from entries
            if len(entries) < page:
                return
            after = entries[-1].seq

    def replay(self, timezone: str) -> Snapshot:
        """The online state a rebuild from the whole log gives (nothing is written)."""
        state = MemoryState()
        chunk: list[Event] = []
        for entry in self.iter_log():
            chunk.append(parse_event(entry.body))
            if len(chunk) == 1000:
                state.append(chunk, timezone)
                chunk = []
        if chunk:
            state.append(chunk, timezone)
        return state.snapshot

    def rebuild_state(self, timezone: str) -> None:
        """Recompute the online state from the log in ``timezone`` (after the shop's zone changed)."""
        self._replace_state(self.replay(timezone))
        self.set_meta({"state_timezone": timezone})

    def check_version(self) -> None:
        """Bring a state of an older row shape up to :data:`~ltvcast.serve.state.STATE_VERSION`.

        The online part is rebuilt from the log (in the zone it was built
        in) and the base fingerprint cleared, so the next
        :func:`ltvcast.serve.sync.refresh_base` reloads the base. A new,
        empty store only records the version.
        """
        meta = self.meta()
        if meta.get("state_version") == STATE_VERSION:
            return
        if self.log(0, 1):
            self.rebuild_state(meta.get("state_timezone") or meta.get("timezone") or "UTC")
        self.set_meta({"state_version": STATE_VERSION, "base_fingerprint": ""})
