"""The HTTP API (FastAPI): events in, predictions out.

==========================================  ======  ========================================
route                                       scope   what
==========================================  ======  ========================================
``POST /v1/events``                         write   a batch of 1..1,000 events (:mod:`.events`)
``GET /v1/customers/{id}/prediction``       read    the canonical prediction row
``GET /v1/customers/{id}/summary``          read    the online RFM summary (weeks)
``GET /v1/customers/{id}/explanation``      read    top reasons of pred_spend and p_churn (``top``)
``GET /v1/customers/{id}/next-categories``  read    the next categories to offer (``k``; ``--next-categories``)
``GET /v1/customer/{what}?id=ID``           read    the same three (``prediction``, ``summary``,
                                                    ``explanation``) for any id, URL-encoded
``POST /v1/predict``                        read    prediction rows for 1..10,000 ids
``GET /healthz``, ``/readyz``, ``/metrics``  none    liveness, readiness, Prometheus text
==========================================  ======  ========================================

A customer id may hold any characters (``/``, spaces, ``%``, non-ASCII):
``/v1/customer/prediction?id=a%2Fb%20c`` reads customer ``a/b c`` (the
recommended form); in the path form each character but ``/`` must be
percent-encoded and ``/`` may be (``/v1/customers/a%2Fb/summary`` and
``/v1/customers/a/b/summary`` both read ``a/b``).

Query parameters (body fields for ``/v1/predict``): ``horizon`` (``26w``,
``180d``, ``12m``; default: the model's trained horizon; rounded to whole
days as in ``ltvcast forecast``) and ``cutoff`` (``YYYY-MM-DD``; default:
tomorrow in the shop's time zone, so everything up to now counts — the
same history a batch forecast with that cutoff would read).

Errors are JSON ``{"error": {"code": ..., "message": ...}}`` with a stable
code: ``unauthorized`` (401), ``forbidden`` (403), ``not_found`` (404),
``method_not_allowed`` (405), ``conflict`` (409, with ``index``),
``payload_too_large`` (413), ``invalid_json`` (400), ``validation_error``
(422, naming the field and item: ``events[3].amount: ...``; all problems in
``details``), ``not_ready`` (503), ``internal_error`` (500; details only in
the server log). Prediction responses carry the header ``X-Ltvcast-Model:
NAME:VERSION`` and name the version in the body; a single prediction's
also carries ``Server-Timing`` (ms in the handler: ``inputs``, the cutoff,
horizon, model and for BTYD the online state; ``cache``, the lookup of a
learned model's current row; ``model``, when the row was not there, the
model call or the build of its row, queueing included; ``total``), also
logged at DEBUG.
"""

from __future__ import annotations

import logging
import math
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ltvcast.errors import LtvcastError
from ltvcast.monitor.report import latest_run
from ltvcast.serve.auth import KeyRing
from ltvcast.serve.events import EventBatch, OrderEvent
from ltvcast.serve.metrics import Metrics
from ltvcast.serve.mirror import Mirror
from ltvcast.serve.model import Batcher, ModelHolder, Served, cached_learned, predict, predict_learned
from ltvcast.serve.online_store import OnlineStore
from ltvcast.serve.state import ConflictError, summarize
from ltvcast.serve.sync import ShopSettings
from ltvcast.timeutil import parse_horizon

log = logging.getLogger("ltvcast.serve")
MAX_PREDICT = 10_000
DEFAULT_MAX_BODY = 2 * 1024 * 1024
DEFAULT_HORIZON_DAYS = 182.0
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CONVERTOR = re.compile(r":\w+}")
_TYPES = {"order", "order_line", "return", "browse"}
#: A customer id as the query parameter ``id`` of the ``/v1/customer/...`` routes (any characters).
CustomerId = Annotated[str, Query(min_length=1, max_length=256)]


@dataclass
class Service:
    """Everything the app serves from.

    Attributes:
        online: the online store (log + state).
        models: the served model (watched for promotions).
        settings: the shop's time zone, revenue basis and currency.
        keys: the API keys, or None to serve without authentication.
        max_body: request body limit in bytes (413 above it).
        mirror: the store's mirror for learned models (:mod:`.mirror`), or
            None when only BTYD models are served; every acknowledged batch
            is written to it.
        monitor_db: the DuckDB store whose ``monitor_log`` (``ltvcast monitor``)
            feeds the drift and live-accuracy gauges of ``/metrics``, re-read
            at most every :data:`MONITOR_REFRESH_S` seconds; None: no gauges.
        next_categories: customer id -> next categories (rows of a table
            written by ``ltvcast next-categories``,
            :func:`ltvcast.actions.cross_sell.index_next_categories`); None:
            the route answers 503.
    """

    online: OnlineStore
    models: ModelHolder
    settings: ShopSettings
    keys: KeyRing | None
    max_body: int = DEFAULT_MAX_BODY
    mirror: Mirror | None = None
    monitor_db: Path | None = None
    next_categories: dict[str, list[dict]] | None = None


#: Seconds between two reads of the store's monitoring log for ``/metrics``.
MONITOR_REFRESH_S = 60.0


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", ...}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def error_response(status: int, code: str, message: str, **extra: object) -> JSONResponse:
    """The JSON error body with ``status``."""
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


class PredictRequest(BaseModel):
    """Body of ``POST /v1/predict``."""

    model_config = ConfigDict(extra="forbid")

    customer_ids: Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]],
                            Field(min_length=1, max_length=MAX_PREDICT)]
    horizon: str | None = None
    cutoff: str | None = None


def _loc(loc: tuple) -> str:
    out, parts = "", list(loc)
    if parts and parts[0] in ("body", "query", "path"):
        parts = parts[1:]
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _TYPES and i > 0 and isinstance(parts[i - 1], int):
            continue  # the union member's tag, not a field
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def _scope_of(path: str) -> str | None:
    if path.startswith("/v1/events"):
        return "write"
    if path.startswith("/v1/"):
        return "read"
    return None


def create_app(service: Service):
    """The ASGI app over ``service``: the FastAPI routes behind metrics, API-key check and body limit.

    The model watcher (:meth:`ModelHolder.start`) is the caller's to start;
    it is stopped when the app shuts down.
    """
    metrics = Metrics(lambda: float(service.models.reload_failures))

    def on_change(served: Served) -> None:
        metrics.set_model(served.name, served.version, served.forecaster.name)

    service.models.on_change = on_change
    on_change(service.models.current)

    def run(served: Served, ids: list[str], summaries: list, day: date, days: float) -> list[dict]:
        if served.learned:
            return predict_learned(served, service.mirror, ids, day, days)
        return predict(served, ids, summaries, day, days)

    batcher = Batcher(run)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.models.stop()

    app = FastAPI(title="ltvcast", docs_url=None, redoc_url=None, lifespan=lifespan)
    tz = ZoneInfo(service.settings.timezone)

    # -- errors ------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "invalid_json", "the request body is not valid JSON")
        details = [{"field": _loc(tuple(e.get("loc", ()))), "message": str(e.get("msg", "invalid"))} for e in errors]
        first = details[0] if details else {"field": "body", "message": "invalid"}
        more = f" (and {len(details) - 1} more problem(s))" if len(details) > 1 else ""
        return error_response(422, "validation_error", f"{first['field']}: {first['message']}{more}", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(ConflictError)
    async def _conflict(request: Request, exc: ConflictError) -> JSONResponse:
        return error_response(409, "conflict", str(exc), index=exc.index)

    @app.exception_handler(LtvcastError)
    async def _user(request: Request, exc: LtvcastError) -> JSONResponse:
        return error_response(422, "validation_error", str(exc))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "internal server error (see the server log)")

    # -- helpers -----------------------------------------------------------
    def cutoff_of(text: str | None, field: str) -> date:
        if text is None:
            return datetime.now(tz).date() + timedelta(days=1)
        try:
            if not _DATE.match(text):
                raise ValueError
            return date.fromisoformat(text)
        except ValueError:
            raise ApiError(422, "validation_error", f"{field}: {text!r} is not a date; write YYYY-MM-DD") from None

    def horizon_of(text: str | None, served: Served, field: str) -> float:
        if text is None:
            return float(round(served.horizon_days or DEFAULT_HORIZON_DAYS))
        try:
            return float(round(parse_horizon(text)))
        except LtvcastError as exc:
            raise ApiError(422, "validation_error", f"{field}: {exc}") from None

    def inputs(ids: list[str], horizon: str | None, cutoff: str | None):
        served = service.models.current  # one version for the whole request
        day = cutoff_of(cutoff, "cutoff")
        if served.trained_cutoff is not None and day < served.trained_cutoff:
            raise ApiError(
                422,
                "validation_error",
                f"cutoff: {day} is before {served.label}'s training cutoff {served.trained_cutoff} "
                "(the model has seen what followed it)",
            )
        days = horizon_of(horizon, served, "horizon")
        if served.learned:  # inputs come from the mirror (predict_learned)
            return served, [None] * len(ids), day, days
        found = service.online.days(ids)
        basis = service.settings.revenue_basis
        return served, [summarize(found.get(c, ()), day, "W", basis) for c in ids], day, days

    # -- routes ------------------------------------------------------------
    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        served = service.models.current
        try:
            service.online.ping()
        except Exception as exc:  # any backend failure means not ready
            return error_response(503, "not_ready", f"the online store is not reachable: {type(exc).__name__}")
        if served is None:
            return error_response(503, "not_ready", "no model is loaded")
        if served.learned and (service.mirror is None or not service.mirror.loaded):
            return error_response(503, "not_ready", "the store's mirror for learned models is not loaded")
        body = {"status": "ready", "model": served.label, "kind": served.forecaster.name}
        if hasattr(served.forecaster, "runtime"):  # deep models: "torch" or "onnxruntime" (an ONNX export)
            body["runtime"] = served.forecaster.runtime
        return JSONResponse(body)

    monitor_read = {"at": -math.inf}

    def refresh_monitoring() -> None:
        """Copy the served model's latest monitoring run into the gauges (throttled; a locked store is skipped)."""
        if service.monitor_db is None or time.monotonic() - monitor_read["at"] < MONITOR_REFRESH_S:
            return
        monitor_read["at"] = time.monotonic()
        served = service.models.current
        try:
            run = latest_run(service.monitor_db, served.label)
        except LtvcastError:  # the store is being written (ltvcast sync/monitor): keep the last values
            return
        if run is not None:
            metrics.set_monitoring(served.label, *run)

    @app.get("/metrics")
    def prometheus() -> Response:
        refresh_monitoring()
        return Response(metrics.text(), media_type=metrics.content_type)

    @app.post("/v1/events")
    def post_events(batch: EventBatch) -> dict:
        shop = service.settings.currency
        for i, ev in enumerate(batch.events):
            if isinstance(ev, OrderEvent) and shop and ev.currency and ev.currency.upper() != shop.upper():
                raise ApiError(422, "validation_error",
                               f"events[{i}].currency: {ev.currency} is not the shop currency {shop}")
        applied = service.online.append(batch.events, service.settings.timezone)
        if service.mirror is not None:
            try:
                service.mirror.append(applied.events)
            except LtvcastError as exc:  # acknowledged in the log all the same; `ltvcast sync` will refuse them too
                service.mirror.failures += 1
                log.error("events not mirrored for learned models (%d in the batch): %s", len(applied.events), exc)
        for ev in applied.events:
            metrics.events_applied.labels(ev.type).inc()
        if applied.duplicates:
            metrics.events_duplicate.inc(len(applied.duplicates))
        return {"received": len(batch.events), "applied": len(applied.events), "duplicates": applied.duplicates}

    @app.get("/v1/customers/{customer_id:path}/prediction")
    async def get_prediction(customer_id: str, horizon: str | None = None, cutoff: str | None = None) -> JSONResponse:
        return await prediction(customer_id, horizon, cutoff)

    @app.get("/v1/customer/prediction")
    async def get_prediction_by_query(id: CustomerId, horizon: str | None = None,
                                      cutoff: str | None = None) -> JSONResponse:
        return await prediction(id, horizon, cutoff)

    async def prediction(customer_id: str, horizon: str | None, cutoff: str | None) -> JSONResponse:
        # async: the state read is a short local query, a learned model's current row a lookup; the rest
        # (a BTYD model call, a learned model's rows to build) is batched by the Batcher
        t0 = time.perf_counter()
        served, summaries, day, days = inputs([customer_id], horizon, cutoff)
        stages, rows = {"inputs": time.perf_counter() - t0}, None
        if served.learned and service.mirror is not None:
            rows = cached_learned(served, service.mirror, [customer_id], day, days)
            stages["cache"] = time.perf_counter() - t0 - stages["inputs"]
        if rows:
            row = rows[0]
        else:
            t1 = time.perf_counter()
            row = await batcher.predict(served, customer_id, summaries[0], day, days)
            stages["model"] = time.perf_counter() - t1
        metrics.predictions.labels(served.label).inc()
        response = JSONResponse(row, headers={"X-Ltvcast-Model": served.label})
        stages["total"] = time.perf_counter() - t0
        response.headers["Server-Timing"] = ", ".join(f"{k};dur={v * 1000:.3f}" for k, v in stages.items())
        if log.isEnabledFor(logging.DEBUG):
            log.debug("prediction of %r by %s: %s ms", customer_id, served.label,
                      ", ".join(f"{k} {v * 1000:.3f}" for k, v in stages.items()))
        return response

    @app.get("/v1/customers/{customer_id:path}/explanation")
    def get_explanation(customer_id: str, horizon: str | None = None, cutoff: str | None = None,
                        top: Annotated[int, Query(ge=1, le=20)] = 3) -> JSONResponse:
        return explanation(customer_id, horizon, cutoff, top)

    @app.get("/v1/customer/explanation")
    def get_explanation_by_query(id: CustomerId, horizon: str | None = None, cutoff: str | None = None,
                                 top: Annotated[int, Query(ge=1, le=20)] = 3) -> JSONResponse:
        return explanation(id, horizon, cutoff, top)

    def explanation(customer_id: str, horizon: str | None, cutoff: str | None, top: int) -> JSONResponse:
        # the batch path's numbers (ltvcast.explain) on the inputs the prediction route builds
        from ltvcast.explain import explain_inputs, explanation_record
        from ltvcast.models.learned.examples import history_before
        from ltvcast.serve.model import summary_frame

        served, summaries, day, days = inputs([customer_id], horizon, cutoff)
        frame = None
        if not served.learned:
            frame = summary_frame([customer_id], summaries)
        elif service.mirror is None or not service.mirror.loaded:
            raise ApiError(503, "not_ready", "the store's mirror for learned models is not loaded")
        else:
            with service.mirror.history([customer_id], day) as history:
                if not history_before(history.transactions, day, history.timezone).empty:
                    frame = served.forecaster.inputs(history, day, days)
        body = {"customer_id": customer_id, "pred_spend": None, "p_churn": None, "reasons": {}, "notes": []}
        if frame is not None and len(frame):
            body = explanation_record(explain_inputs(served.forecaster, frame, day, days, k=top), customer_id)
        body.update({"model_name": served.name, "model_version": served.version, "cutoff": day.isoformat(),
                     "horizon_days": days, "cold_start": frame is None or summaries[0] is None and not served.learned})
        return JSONResponse(body, headers={"X-Ltvcast-Model": served.label})

    @app.get("/v1/customers/{customer_id:path}/next-categories")
    def get_next_categories(customer_id: str, k: Annotated[int, Query(ge=1, le=20)] = 3) -> dict:
        if service.next_categories is None:
            raise ApiError(503, "not_ready", "no next-categories table: start the service with --next-categories "
                           "FILE (written by `ltvcast next-categories`)")
        rows = service.next_categories.get(customer_id, [])
        return {"customer_id": customer_id, "categories": rows[:k]}

    @app.get("/v1/customers/{customer_id:path}/summary")
    def get_summary(customer_id: str, cutoff: Annotated[str | None, Query()] = None) -> dict:
        return summary(customer_id, cutoff)

    @app.get("/v1/customer/summary")
    def get_summary_by_query(id: CustomerId, cutoff: Annotated[str | None, Query()] = None) -> dict:
        return summary(id, cutoff)

    def summary(customer_id: str, cutoff: str | None) -> dict:
        day = cutoff_of(cutoff, "cutoff")
        rows = service.online.days([customer_id]).get(customer_id, ())
        s = summarize(rows, day, "W", service.settings.revenue_basis)
        out = {"customer_id": customer_id, "cutoff": day.isoformat(), "unit": "W", "cold_start": s is None}
        if s is not None:
            out.update({k: (v.isoformat() if isinstance(v, date) else v) for k, v in s.__dict__.items()})
        return out

    @app.post("/v1/predict")
    def post_predict(body: PredictRequest) -> JSONResponse:
        served, summaries, day, days = inputs(body.customer_ids, body.horizon, body.cutoff)
        rows = run(served, body.customer_ids, summaries, day, days)
        metrics.predictions.labels(served.label).inc(len(rows))
        return JSONResponse(
            {"model_name": served.name, "model_version": served.version, "predictions": rows},
            headers={"X-Ltvcast-Model": served.label},
        )

    return _Gate(app, service, metrics)


class _Gate:
    """ASGI wrapper: latency metrics per route template, API-key check, request body limit (in that order)."""

    def __init__(self, app: FastAPI, service: Service, metrics: Metrics) -> None:
        self.app, self.service, self.metrics = app, service, metrics
        self.routes = [r for r in app.router.routes if hasattr(r, "path")]

    def __getattr__(self, name: str):
        return getattr(self.app, name)

    def _route(self, scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:  # the template without convertors: {customer_id}, not {customer_id:path}
                return _CONVERTOR.sub("}", route.path)
        return "unmatched"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        route, method = self._route(scope), scope["method"]
        status = {"code": 500}

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            receive_ok = await self._check(scope, receive, send_status)
            if receive_ok is not None:
                await self.app(scope, receive_ok, send_status)
        finally:
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - start)
            self.metrics.requests.labels(route, method, str(status["code"])).inc()

    async def _check(self, scope, receive, send):
        """Return the receive callable to pass on, or None when an error response was sent."""
        keys = self.service.keys
        need = _scope_of(scope["path"])
        if need is not None and keys is not None:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            auth = headers.get("authorization", "")
            key = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get("x-api-key", "").strip()
            if not key:
                await error_response(401, "unauthorized", "missing API key: send Authorization: Bearer KEY "
                                     "or X-API-Key: KEY")(scope, receive, send)
                return None
            entry = keys.find(key)
            if entry is None:
                await error_response(401, "unauthorized", "unknown API key")(scope, receive, send)
                return None
            if need not in entry.scopes:
                await error_response(403, "forbidden", f"this API key lacks the {need} scope")(scope, receive, send)
                return None
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return receive
        limit = self.service.max_body
        too_large = error_response(413, "payload_too_large", f"request body over the limit of {limit} bytes")
        for k, v in scope["headers"]:
            if k.lower() == b"content-length" and v.isdigit() and int(v) > limit:
                await too_large(scope, receive, send)
                return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return receive
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await too_large(scope, receive, send)
                return None
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay
