"""The served model: loaded from the registry, watched for promotions, swapped atomically; predictions.

``ModelHolder("clv")`` serves the promoted version of ``clv`` (else the
latest) and checks ``models/clv/PROMOTED`` (its text and modification time;
without it, the list of versions) every ``interval`` seconds. A change loads
the new version in the background; the swap is one reference assignment,
so a request that already took the old model finishes on it, and every
response names the version that made it. ``clv:3`` pins a version (no
watching). A version that cannot be loaded or served leaves the current one
in place (the failure is logged and counted).

Served models:

* the BTYD family (``naive``, ``bgnbd``, ``paretonbd``): predictions from
  the RFM summary the online state gives at any cutoff, through
  :meth:`ltvcast.models.btyd.BTYDForecaster.predict_columns` (the math batch
  predictions take) — :func:`predict`;
* learned models whose inputs for a customer depend on that customer's rows
  only (``gbm``, ``deep``, ``auto`` without ``hybrid``): the model's own
  ``inputs`` on the history of the requested customers in the store's
  mirror (:mod:`ltvcast.serve.mirror`: the offline feature SQL on the store
  plus every acknowledged event), then ``predict_inputs`` —
  :func:`predict_learned`. Parity with offline predictions holds by
  construction. The numbers come from the mirror's table of every
  customer's predictions at the (model, cutoff, horizon) (made once in the
  background, rows of customers touched by events made again together), so
  a request costs a lookup (:func:`cached_learned`, on the event loop); a
  request for a customer whose row is not current builds it (one feature
  build, ~0.2 s, on a worker thread).

Refused, with the reason (:func:`servable`): models whose inputs fit BTYD
models on the whole population at the prediction cutoff (``hybrid``, and
``auto`` with a ``hybrid`` candidate): they cannot be computed for one
customer; and models that do not split prediction into ``inputs`` and
``predict_inputs``.

Cold start: a customer with no purchase occasion before the cutoff (unknown
to the service, or only browsing) is predicted by a BTYD model as a customer
whose first purchase was the day before the cutoff (frequency 0, recency 0,
T 0; spend per occasion = the Gamma-Gamma population mean, or naive's mean
repeat value). Learned models predict only customers with a purchase before
the cutoff (as offline): the row's numbers are null. Either way the row
says ``"cold_start": true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from ltvcast.errors import LtvcastError
from ltvcast.models.base import Forecaster
from ltvcast.models.btyd import BTYDForecaster
from ltvcast.registry import PROMOTED, RegisteredModel, load_model, parse_ref
from ltvcast.schema import PREDICTION_COLUMNS
from ltvcast.serve.mirror import Mirror
from ltvcast.serve.state import Summary

log = logging.getLogger("ltvcast.serve")
SUMMARY_COLUMNS = ("frequency", "recency", "T", "monetary_value")


@dataclass(frozen=True)
class Served:
    """One loaded model version: registry name and version, the forecaster, the trained horizon (days) and cutoff."""

    name: str
    version: int
    forecaster: Forecaster
    horizon_days: float | None
    trained_cutoff: date | None = None

    @property
    def label(self) -> str:
        """``NAME:VERSION``."""
        return f"{self.name}:{self.version}"

    @property
    def learned(self) -> bool:
        """True for a model predicted from the store's features (:func:`predict_learned`), False for BTYD."""
        return not isinstance(self.forecaster, BTYDForecaster)


def population_inputs(forecaster: Forecaster) -> bool:
    """True when a model's inputs for one customer depend on the other customers.

    That is the case of the BTYD features of ``hybrid`` (``btyd_features``):
    Pareto/NBD and BG/NBD fitted at the prediction cutoff on every customer;
    and of ``auto`` when one of its fitted learned models (``learned_``) has them.
    """
    models = [forecaster, *getattr(forecaster, "learned_", {}).values()]
    return any(getattr(m, "btyd_features", False) for m in models)


def servable(model: RegisteredModel) -> Served:
    """Wrap a registered model for serving.

    Raises:
        LtvcastError: the model cannot be predicted one customer at a time
            (:func:`population_inputs`); the one-line message says why.
    """
    forecaster = model.forecaster
    label, kind = f"{model.name}:{model.version}", getattr(forecaster, "name", type(forecaster).__name__)
    if not isinstance(forecaster, BTYDForecaster) and population_inputs(forecaster):
        raise LtvcastError(
            f"model {label} is a {kind!r} model: its inputs include BTYD models fitted on every customer at "
            "the prediction cutoff, which cannot be computed for one customer online; serve a gbm, deep or "
            "BTYD model, or predict this one in batch (`ltvcast predict`)"
        )
    horizon, trained = model.manifest.get("horizon_days"), model.manifest.get("cutoff")
    return Served(
        model.name,
        model.version,
        forecaster,
        float(horizon) if horizon else None,
        date.fromisoformat(trained) if trained else None,
    )


class ModelHolder:
    """The current model of a registry reference, reloaded when its promotion changes.

    Args:
        ref: ``NAME`` (watched) or ``NAME:VERSION`` (pinned).
        root: the registry folder.
        on_change: called with the new :class:`Served` after each swap.
        prepare: called with a loaded :class:`Served` before it is served
            (e.g. to load the store's mirror for a learned model); what it
            raises (an LtvcastError) keeps the current version.

    Raises:
        RegistryError: bad reference, or the model cannot be loaded.
        LtvcastError: the model cannot be served (:func:`servable`).
    """

    def __init__(
        self,
        ref: str,
        root: str | Path,
        on_change: Callable[[Served], None] | None = None,
        prepare: Callable[[Served], None] | None = None,
    ) -> None:
        self.ref = parse_ref(ref)
        self.root = Path(root)
        self.on_change = on_change
        self.prepare = prepare
        self.reload_failures = 0
        self._token = self._current_token()
        self.current = self._load()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _load(self) -> Served:
        served = servable(load_model(self.ref, self.root))
        if self.prepare is not None:
            self.prepare(served)
        return served

    @property
    def pinned(self) -> bool:
        """True when a version was named (no watching)."""
        return self.ref.version is not None

    def _current_token(self) -> tuple:
        folder = self.root / self.ref.name
        promoted = folder / PROMOTED
        try:
            stat = promoted.stat()
            return ("promoted", promoted.read_text(encoding="utf-8").strip(), stat.st_mtime_ns)
        except OSError:
            pass
        try:
            return ("latest", tuple(sorted(p.name for p in folder.iterdir() if p.name.isdigit())))
        except OSError:
            return ("none",)

    def poll(self) -> bool:
        """Check the promotion once; load and swap in a new version if it changed.

        Returns:
            True when a new version is now served.
        """
        if self.pinned:
            return False
        token = self._current_token()
        if token == self._token:
            return False
        self._token = token
        try:
            new = self._load()
        except LtvcastError as exc:
            self.reload_failures += 1
            log.error("model %s: keeping %s, the new version cannot be served: %s", self.ref, self.current.label, exc)
            return False
        if new.version == self.current.version:
            return False
        old, self.current = self.current, new
        log.info("model %s: now serving %s (was %s)", self.ref, new.label, old.label)
        if self.on_change is not None:
            self.on_change(new)
        return True

    def start(self, interval: float = 1.0) -> None:
        """Poll every ``interval`` seconds in a daemon thread (nothing for a pinned version)."""
        if self.pinned or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.poll()
                except Exception:  # never let the watcher die; the current model stays
                    self.reload_failures += 1
                    log.exception("model %s: watching the registry failed", self.ref)

        self._thread = threading.Thread(target=loop, name="ltvcast-model-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def summary_frame(customer_ids: Sequence[str], summaries: Sequence[Summary | None]) -> pd.DataFrame:
    """The RFM summary frame (weeks) with :func:`ltvcast.features.rfm_summary`'s model columns; None -> cold start.

    ``customer_id`` (object dtype: text) and float64 ``frequency``,
    ``recency``, ``T``, ``monetary_value``; a cold-start row is all zeros.
    """
    values = np.zeros((4, len(summaries)))
    for i, s in enumerate(summaries):
        if s is not None:
            values[:, i] = (s.frequency, s.recency, s.T, s.monetary_value)
    columns = {"customer_id": np.array(list(customer_ids), dtype=object)}
    columns.update(zip(SUMMARY_COLUMNS, values))
    return pd.DataFrame(columns)


def _rows(
    served: Served,
    customer_ids: Sequence[str],
    values: dict[str, list[float] | None],
    cold: Sequence[bool],
    cutoff: date,
    horizon_days: float,
) -> list[dict]:
    """JSON-ready canonical rows: ``values`` maps each column of PREDICTION_COLUMNS[4:] to n values (or None)."""
    day, name = cutoff.isoformat(), served.forecaster.name
    rows = []
    for i, cid in enumerate(customer_ids):
        row = {"customer_id": cid, "model": name, "cutoff": day, "horizon_days": float(horizon_days)}
        for c, v in values.items():
            row[c] = None if v is None or math.isnan(v[i]) else v[i]
        row.update({"model_name": served.name, "model_version": served.version, "cold_start": bool(cold[i])})
        rows.append(row)
    return rows


def predict(
    served: Served, customer_ids: Sequence[str], summaries: Sequence[Summary | None], cutoff: date, horizon_days: float
) -> list[dict]:
    """Canonical prediction rows (JSON-ready) of a BTYD model for the customers, in order.

    The numbers are :meth:`~ltvcast.models.btyd.BTYDForecaster.predict_columns`
    of the summaries (the math of the batch path, without building a frame).
    Each row: the canonical columns (:data:`~ltvcast.schema.PREDICTION_COLUMNS`;
    ``cutoff`` as ``YYYY-MM-DD``, NaN and columns the model does not fill as
    null), ``model_name`` and ``model_version`` (the registry's), and ``cold_start``.
    """
    data = served.forecaster.predict_columns(summary_frame(customer_ids, summaries), horizon_days)
    values = {c: np.asarray(data[c], dtype=float).tolist() if c in data else None for c in PREDICTION_COLUMNS[4:]}
    return _rows(served, customer_ids, values, [s is None for s in summaries], cutoff, horizon_days)


#: The columns a learned model's cached rows hold (:func:`predict_learned`): the canonical numbers.
LEARNED_COLUMNS = PREDICTION_COLUMNS[4:]


def _learned_key(served: Served, cutoff: date, horizon_days: float) -> tuple:
    return (served.label, id(served.forecaster), cutoff, float(horizon_days))


def _learned_rows(served: Served, customer_ids: Sequence[str], found: dict[str, list[float]], cutoff: date,
                  horizon_days: float) -> list[dict]:
    picked = [found.get(str(cid)) for cid in customer_ids]
    values = {c: [math.nan if p is None else p[j] for p in picked] for j, c in enumerate(LEARNED_COLUMNS)}
    return _rows(served, customer_ids, values, [p is None for p in picked], cutoff, horizon_days)


def predict_learned(
    served: Served, mirror: Mirror, customer_ids: Sequence[str], cutoff: date, horizon_days: float
) -> list[dict]:
    """Canonical prediction rows (JSON-ready) of a learned model for the customers, in order.

    The model's own ``inputs`` at ``cutoff`` on the mirror's history of
    these customers (the offline feature code on their rows), then
    ``predict_inputs``; the numbers are read from the mirror's table of
    every customer's predictions at (model version, cutoff, horizon) where it
    is current (:meth:`ltvcast.serve.mirror.Mirror.rows`: built once for all
    customers, rows of customers touched by events made again). A row's
    prediction depends on that row only, so the numbers equal those of an
    offline ``predict`` on the store after ``ltvcast sync``. A customer
    without a purchase before ``cutoff`` is not in the population learned
    models predict: null numbers, ``"cold_start": true``. Rows as
    :func:`predict`'s.

    Raises:
        LtvcastError: the mirror is not loaded; what the model's ``inputs``
            raise (a feature schema mismatch, a horizon the model cannot predict).
    """
    from ltvcast.models.learned.examples import history_before

    forecaster = served.forecaster

    def make(history):
        if history_before(history.transactions, cutoff, history.timezone).empty:
            return None
        inputs = forecaster.inputs(history, cutoff, horizon_days)
        with _threads(len(inputs)):
            frame = forecaster.predict_inputs(inputs, cutoff, horizon_days)
        return frame[["customer_id", *LEARNED_COLUMNS]]

    found = mirror.rows(_learned_key(served, cutoff, horizon_days), make, customer_ids, cutoff)
    return _learned_rows(served, customer_ids, found, cutoff, horizon_days)


def cached_learned(
    served: Served, mirror: Mirror, customer_ids: Sequence[str], cutoff: date, horizon_days: float
) -> list[dict] | None:
    """:func:`predict_learned`'s rows when the mirror holds them all current (a lookup, microseconds), else None.

    Never waits for the mirror's lock, never builds: an async handler may
    call it on the event loop and hand the request to :func:`predict_learned`
    on a worker thread when it answers None.
    """
    found = mirror.cached(_learned_key(served, cutoff, horizon_days), customer_ids)
    return None if found is None else _learned_rows(served, customer_ids, found, cutoff, horizon_days)


#: Up to this many rows, a learned model predicts on the calling thread alone (:func:`_threads`).
ONE_THREAD_ROWS = 256
_controller = None


def _threads(rows: int):
    """One OpenMP/BLAS thread for a prediction of few rows, else the libraries' default.

    LightGBM's predict on one row takes ~30 ms with its default threads on a
    busy machine (the threads' start and join), 0.02 ms on one thread
    (``docs/serving.md``); the limit holds on the calling thread only.
    """
    global _controller
    from threadpoolctl import ThreadpoolController

    if rows > ONE_THREAD_ROWS:
        return contextlib.nullcontext()
    if _controller is None:  # after the model's libraries are loaded, so it finds their thread pools
        _controller = ThreadpoolController()
    return _controller.limit(limits=1)


class Batcher:
    """Opportunistic batching of single predictions on the event loop: one model call for all waiting.

    A request queues its customer and awaits; a drain task on the loop takes
    everything queued and predicts it with one ``run`` call per (model
    version, cutoff, horizon), then yields and repeats while requests keep
    arriving. No wait is added when the service is idle; when it is busy,
    the requests that arrived during one model call share the next. Rows do
    not depend on the batch (per-customer simulation seeds; a learned model's
    row depends on that customer's inputs only), so each answer equals the
    single one. A BTYD model call (a pandas pass) runs on the loop's thread,
    so no thread contends with it for the interpreter lock; a learned model's
    (a feature build and its predict, when its row is not current) runs in
    a worker thread, so the loop keeps accepting requests meanwhile, and
    they share the next call.

    Args:
        run: ``run(served, customer_ids, summaries, cutoff, horizon_days)`` ->
            rows in order, e.g. :func:`predict` (summaries are None for
            learned models).
    """

    def __init__(self, run: Callable[[Served, list[str], list, date, float], list[dict]] = predict) -> None:
        self._run = run
        self._queue: list[tuple] = []
        self._task: asyncio.Task | None = None

    async def predict(self, served: Served, customer_id: str, summary: Summary | None, cutoff: date,
                      horizon_days: float) -> dict:
        """The prediction row of one customer (as ``run``, which raises what it raises)."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((served, customer_id, summary, cutoff, horizon_days, future))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let requests that are already readable queue up first
        while self._queue:
            batch, self._queue = self._queue, []
            groups: dict[tuple, list[tuple]] = {}
            for slot in batch:
                groups.setdefault((id(slot[0]), slot[3], slot[4]), []).append(slot)
            for slots in groups.values():
                served, _, _, cutoff, days = slots[0][:5]
                args = (served, [s[1] for s in slots], [s[2] for s in slots], cutoff, days)
                try:
                    rows = await asyncio.to_thread(self._run, *args) if served.learned else self._run(*args)
                except Exception as exc:  # handed to each waiting request, which answers it
                    for s in slots:
                        if not s[5].done():
                            s[5].set_exception(exc)
                    continue
                for s, row in zip(slots, rows):
                    if not s[5].done():
                        s[5].set_result(row)
            await asyncio.sleep(0)
