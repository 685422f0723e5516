"""The analyst web app: server-rendered pages (Jinja2, htmx) over one model version's :class:`~ltvcast.ui.snapshot.Snapshot`.

==========================  ===============================================================
route (under the mount)     what
==========================  ===============================================================
``GET /login``, ``POST``    exchange a read-scope API key for a session cookie
``POST /logout``            end the session
``GET /``                   Overview: customers, next 12 months' value and its interval,
                            the CLV distribution, the matured window's Lorenz and deciles
``GET /customer?id=``       Customer: timeline, predictions with intervals, reasons
                            (``/customer/reasons?id=``, an htmx partial loaded after the page)
``GET /segments``           Segments: value tier × churn risk grid, RFM groups
``GET /segments/list``      the customers of one cell or group (htmx partial; ``tier``,
                            ``risk`` or ``rfm``); ``/segments.csv`` the same as CSV
``GET /categories``        Categories: each segment's top categories, demand per category and
                            week with its interval (``/categories/panel``, an htmx partial
                            loaded after the page: :mod:`ltvcast.ui.categories`)
``GET /planner``, ``POST``  Campaign planner (``ltvcast target``'s numbers); ``/planner.csv``
``GET /experiments``        Experiments: arms, effects with intervals, sample ratio check
``GET /health``             Model health: versions, promotions, monitoring checks, alerts
``GET /static/...``         the vendored JavaScript (no CDN) and the style sheet
==========================  ===============================================================

Every page and export needs a live session (else a redirect to the login
page; an htmx request gets 401 with ``HX-Redirect``); every POST needs the
session's CSRF token (403 otherwise).
"""

from __future__ import annotations

import io
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ltvcast.actions import experiments as ex
from ltvcast.actions import targeting as tg
from ltvcast.data.datasets import History
from ltvcast.errors import LtvcastError
from ltvcast.explain.core import explain_inputs, explanation_record
from ltvcast.monitor.report import latest_run
from ltvcast.monitor.retrain import read_decisions
from ltvcast.registry import list_models, load_model
from ltvcast.serve.auth import KeyRing
from ltvcast.ui import charts
from ltvcast.ui.categories import CategoryPanel, build_category_panel
from ltvcast.ui.session import LOGIN_CSRF_COOKIE, SESSION_COOKIE, Session, Sessions, same
from ltvcast.ui.snapshot import Snapshot, build_snapshot

log = logging.getLogger("ltvcast.ui")
HERE = Path(__file__).parent
#: Customers listed on a segment's page (the CSV export has them all).
LIST_ROWS = 50
#: Contacts shown by the planner (the CSV export has them all).
PLANNER_ROWS = 20
#: Planner results kept (per inputs and model version), so an export repeats no work.
PLANS_KEPT = 8
#: Seconds a monitoring run read from the store is shown before it is read again.
MONITOR_REFRESH_S = 30.0
#: The planner's starting values: ``ltvcast target``'s example.
PLANNER_DEFAULTS = {"budget": 10000.0, "cost_per_contact": 1.5, "offer_cost": 5.0, "margin": 0.3,
                    "assumed_uplift": 0.05}
CSP = ("default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")


@dataclass(frozen=True)
class Experiment:
    """A randomised campaign to show: the assignments file (``customer_id, arm``) and its window (inclusive days)."""

    assignments: Path
    start: str
    end: str


@dataclass
class UiConfig:
    """What the app reads.

    Attributes:
        open_history: opens the shop's data (a store, or a built-in dataset);
            the app closes it after each snapshot, so a store is locked only
            while a snapshot is built.
        registry: the registry folder.
        model: returns the ``NAME:VERSION`` in service (read on every page;
            a new one builds a new snapshot).
        keys: the API keys that may sign in (read scope).
        monitor_db: the store whose ``monitor_log`` the health page reads, or None.
        experiment: the campaign the experiments page analyses, or None.
    """

    open_history: Callable[[], History]
    registry: Path
    model: Callable[[], str]
    keys: KeyRing
    monitor_db: Path | None = None
    experiment: Experiment | None = None


@dataclass
class _State:
    snapshot: Snapshot | None = None
    experiment: object = None  # ExperimentResult, or an error message
    preparing: str | None = None  # the version whose snapshot is being built in the background
    failed: dict = field(default_factory=dict)  # version -> why its snapshot could not be built
    lock: threading.Lock = field(default_factory=threading.Lock)


class _NeedLogin(Exception):
    pass


class _BadCsrf(Exception):
    pass


def _fmt_money(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.2f}"


def _fmt_pct(v, digits: int = 1) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}%}"


def _fmt_num(v, digits: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.{digits}f}"


def _csv(frame: pd.DataFrame, filename: str) -> StreamingResponse:
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    buf.seek(0)
    return StreamingResponse(iter([buf.getvalue()]), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def create_ui(config: UiConfig, base: str = "/ui") -> FastAPI:
    """The web app as a FastAPI app, to be mounted at ``base`` (see :func:`mount_ui`).

    The first snapshot is built here (seconds on a large shop), so the first page is as fast as the others.

    Raises:
        LtvcastError: the model cannot predict the data (as :func:`~ltvcast.ui.snapshot.build_snapshot`).
    """
    sessions = Sessions(config.keys)
    state = _State()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(money=_fmt_money, pct=_fmt_pct, num=_fmt_num)
    app = FastAPI(title="ltvcast ui", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def build(label: str) -> None:
        started = time.perf_counter()
        history = config.open_history()
        try:
            snap = build_snapshot(load_model(label, config.registry), history)
            experiment = _experiment(config.experiment, history, snap)
            _overview_specs(snap)
        finally:
            history.store.close()
        with state.lock:
            state.snapshot, state.experiment = snap, experiment
        log.info("ui snapshot of %s built in %.1f s", label, time.perf_counter() - started)

    def build_in_background(label: str) -> None:
        try:
            build(label)
        except Exception as exc:  # keep showing the previous version, and say why on the pages
            log.error("ui snapshot of %s failed", label, exc_info=exc)
            with state.lock:
                state.failed[label] = str(exc)
        finally:
            with state.lock:
                state.preparing = None

    def snapshot() -> Snapshot:
        """The current snapshot; a newly served version is prepared in a thread while the last one is shown."""
        label = config.model()
        with state.lock:
            current = state.snapshot
            if current is not None and current.label != label and state.preparing is None and label not in state.failed:
                state.preparing = label
                threading.Thread(target=build_in_background, args=(label,), daemon=True).start()
        if current is None:
            build(label)
            current = state.snapshot
        return current

    snapshot()

    # -- auth --------------------------------------------------------------
    def session_of(request: Request) -> Session:
        s = sessions.get(request.cookies.get(SESSION_COOKIE))
        if s is None:
            raise _NeedLogin()
        return s

    async def form_of(request: Request, s: Session | None) -> dict[str, str]:
        body = (await request.body()).decode("utf-8", errors="replace")
        form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
        if s is not None and not same(form.get("csrf") or request.headers.get("x-csrf-token"), s.csrf):
            raise _BadCsrf()
        return form

    @app.exception_handler(_NeedLogin)
    async def _login_first(request: Request, exc: _NeedLogin) -> Response:
        target = f"{base}/login?next={quote(request.url.path + ('?' + request.url.query if request.url.query else ''))}"
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(_BadCsrf)
    async def _csrf(request: Request, exc: _BadCsrf) -> Response:
        return HTMLResponse("<p>The form's security token is missing or stale: reload the page and try again.</p>",
                            status_code=403)

    @app.middleware("http")
    async def headers(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        if not request.url.path.startswith(f"{base}/static"):
            response.headers["Cache-Control"] = "no-store"
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    def page(request: Request, name: str, s: Session | None, **context) -> HTMLResponse:
        context.update(base=base, csrf=s.csrf if s else None, signed_in=s is not None,
                       snap=state.snapshot, path=request.url.path, preparing=state.preparing,
                       failed=state.failed)
        return templates.TemplateResponse(request, name, context)

    def cookie_args(request: Request) -> dict:  # Secure whenever the page came over HTTPS
        return {"httponly": True, "samesite": "strict", "secure": request.url.scheme == "https", "path": base}

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "", error: str = "") -> HTMLResponse:
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = page(request, "login.html", None, login_csrf=token, next=next, error=error)
        response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, **cookie_args(request))
        return response

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await form_of(request, None)
        if not same(form.get("csrf"), request.cookies.get(LOGIN_CSRF_COOKIE)):
            raise _BadCsrf()
        nxt = form.get("next", "")
        found = sessions.login(form.get("key", ""))
        if found is None:
            return RedirectResponse(f"{base}/login?error=1&next={quote(nxt)}", status_code=303)
        sid, _ = found
        safe_next = nxt if nxt.startswith(base + "/") and not nxt.startswith("//") else f"{base}/"
        response = RedirectResponse(safe_next, status_code=303)
        response.set_cookie(SESSION_COOKIE, sid, max_age=int(sessions.ttl_s), **cookie_args(request))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path=base)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        s = session_of(request)
        await form_of(request, s)
        sessions.logout(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse(f"{base}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=base)
        return response

    # -- pages -------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request) -> HTMLResponse:
        s = session_of(request)
        snap = snapshot()
        specs = _overview_specs(snap)
        return page(request, "overview.html", s, specs=specs)

    @app.get("/customer", response_class=HTMLResponse)
    def customer(request: Request, id: str = "") -> HTMLResponse:
        s = session_of(request)
        snap = snapshot()
        cid = id.strip()
        ctx: dict = {"query": cid, "found": None}
        if cid:
            row = snap.customer(cid)
            ctx["found"] = row
            if row is not None:
                tx = snap.transactions_of(cid)
                ctx["tx"] = tx.tail(20).iloc[::-1]
                ctx["n_tx"] = len(tx)
                ctx["timeline"] = charts.timeline(tx, snap.cutoff) if len(tx) else None
        return page(request, "customer.html", s, **ctx)

    @app.get("/customer/reasons", response_class=HTMLResponse)
    def customer_reasons(request: Request, id: str = "") -> HTMLResponse:
        # its own request (htmx, after the page): the model's reasons take longer than the rest of the page
        s = session_of(request)
        reasons, notes = _reasons(snapshot(), id.strip())
        return page(request, "_reasons.html", s, reasons=reasons, reason_notes=notes)

    @app.get("/segments", response_class=HTMLResponse)
    def segments(request: Request) -> HTMLResponse:
        s = session_of(request)
        snap = snapshot()
        return page(request, "segments.html", s, grid=_grid(snap.summary), rfm=_rfm(snap.summary))

    def _cell(snap: Snapshot, tier: str, risk: str, rfm: str) -> tuple[pd.DataFrame, str]:
        segs = snap.segments
        if rfm:  # categorical columns: == compares codes (a label not among them matches nothing)
            mask, title = segs["rfm_group"] == rfm, f"RFM group {rfm}"
        else:
            mask = (segs["value_tier"] == tier) & (segs["churn_risk"] == risk)
            title = f"value tier {tier}, churn risk {risk}"
        cols = [c for c in ("customer_id", "pred_spend", "p_churn", "value_at_risk", "value_tier", "churn_risk",
                            "rfm_group", "days_since_last", "occasions", "total_spend") if c in segs.columns]
        return segs.loc[mask, cols].sort_values("value_at_risk", ascending=False, kind="stable"), title

    @app.get("/segments/list", response_class=HTMLResponse)
    def segment_list(request: Request, tier: str = "", risk: str = "", rfm: str = "") -> HTMLResponse:
        s = session_of(request)
        rows, title = _cell(snapshot(), tier, risk, rfm)
        query = "&".join(f"{k}={quote(v)}" for k, v in (("tier", tier), ("risk", risk), ("rfm", rfm)) if v)
        return page(request, "_segment_list.html", s, rows=rows.head(LIST_ROWS), n=len(rows), title=title,
                    export=f"{base}/segments.csv?{query}")

    @app.get("/segments.csv")
    def segment_csv(request: Request, tier: str = "", risk: str = "", rfm: str = "") -> Response:
        session_of(request)
        rows, _ = _cell(snapshot(), tier, risk, rfm)
        name = "segment-" + "-".join(v for v in (tier, risk, rfm) if v).replace(" ", "_") + ".csv"
        return _csv(rows, "".join(ch for ch in name if ch.isalnum() or ch in "-_.%"))

    category_lock = threading.Lock()

    def category_panel(snap: Snapshot) -> CategoryPanel:
        """The snapshot's categories panel, built on the first request (one at a time) and kept with it."""
        with category_lock:
            if getattr(snap, "_categories", None) is None:
                snap._categories = build_category_panel(snap)
            return snap._categories

    @app.get("/categories", response_class=HTMLResponse)
    def categories(request: Request) -> HTMLResponse:
        s = session_of(request)
        snapshot()
        return page(request, "categories.html", s)

    @app.get("/categories/panel", response_class=HTMLResponse)
    def categories_panel(request: Request) -> HTMLResponse:
        # its own request (htmx, after the page): fitting a category split takes longer than the rest of the page
        s = session_of(request)
        return page(request, "_categories_panel.html", s, panel=category_panel(snapshot()))

    plans: OrderedDict = OrderedDict()

    def plan(snap: Snapshot, values: dict) -> tg.TargetingResult:
        key = (snap.label, *(values[k] for k in PLANNER_DEFAULTS))
        with state.lock:
            if key in plans:  # the export right after a run
                plans.move_to_end(key)
                return plans[key]
        econ = tg.Economics(values["budget"], values["cost_per_contact"], values["offer_cost"], values["margin"])
        result = tg.target_by_assumption(snap.predictions, econ.checked(), values["assumed_uplift"])
        with state.lock:
            plans[key] = result
            while len(plans) > PLANS_KEPT:
                plans.popitem(last=False)
        return result

    def planner_values(raw: dict) -> tuple[dict, str | None]:
        values = dict(PLANNER_DEFAULTS)
        for k in PLANNER_DEFAULTS:
            if raw.get(k, "") != "":
                try:
                    values[k] = float(raw[k])
                except ValueError:
                    return values, f"{k.replace('_', ' ')}: {raw[k]!r} is not a number"
                if not math.isfinite(values[k]):
                    return values, f"{k.replace('_', ' ')}: give a finite number"
        return values, None

    @app.get("/planner", response_class=HTMLResponse)
    def planner_page(request: Request) -> HTMLResponse:
        s = session_of(request)
        snapshot()
        return page(request, "planner.html", s, values=PLANNER_DEFAULTS, result=None, error=None)

    @app.post("/planner", response_class=HTMLResponse)
    async def planner_run(request: Request) -> HTMLResponse:
        s = session_of(request)
        values, error = planner_values(await form_of(request, s))
        result = None
        if error is None:
            try:
                result = plan(snapshot(), values)
            except LtvcastError as exc:
                error = str(exc)
        query = "&".join(f"{k}={v!r}" for k, v in values.items())  # repr: the exact floats, not 6 digits
        name = "_planner_result.html" if request.headers.get("hx-request") else "planner.html"
        return page(request, name, s, values=values, result=result, error=error,
                    rows=None if result is None else result.contacts.head(PLANNER_ROWS),
                    export=f"{base}/planner.csv?{query}")

    @app.get("/planner.csv")
    def planner_csv(request: Request) -> Response:
        session_of(request)
        values, error = planner_values(dict(request.query_params))
        if error is not None:
            return Response(error, status_code=422, media_type="text/plain")
        try:
            result = plan(snapshot(), values)
        except LtvcastError as exc:
            return Response(str(exc), status_code=422, media_type="text/plain")
        return _csv(result.contacts, "contacts.csv")

    @app.get("/experiments", response_class=HTMLResponse)
    def experiments(request: Request) -> HTMLResponse:
        s = session_of(request)
        snapshot()
        result = state.experiment
        spec = charts.effects(result.effects) if isinstance(result, ex.ExperimentResult) else None
        return page(request, "experiments.html", s, experiment=config.experiment, result=result,
                    is_result=isinstance(result, ex.ExperimentResult), spec=spec)

    monitor_read: dict = {}

    def monitoring(label: str):
        """The latest monitoring run of ``label`` and an error message, re-read at most every MONITOR_REFRESH_S."""
        if config.monitor_db is None:
            return None, None
        at, found = monitor_read.get(label, (-math.inf, (None, None)))
        if time.monotonic() - at >= MONITOR_REFRESH_S:
            try:
                found = (latest_run(config.monitor_db, label), None)
            except LtvcastError as exc:  # the store is being written: say so rather than fail the page
                found = (None, str(exc))
            monitor_read[label] = (time.monotonic(), found)
        return found

    @app.get("/health", response_class=HTMLResponse)
    def health(request: Request) -> HTMLResponse:
        s = session_of(request)
        snap = snapshot()
        run, run_error = monitoring(snap.label)
        checks = None if run is None else run[0].sort_values(["status", "check_kind"], key=_status_order)
        name = snap.label.split(":")[0]
        return page(request, "health.html", s, versions=_versions(config.registry), checks=checks,
                    status=None if run is None else run[1], run_error=run_error,
                    decisions=list(reversed(read_decisions(name, config.registry)))[:20])

    return app


def _status_order(col: pd.Series) -> pd.Series:
    order = {"alert": 0, "warn": 1, "ok": 2, "info": 3}
    return col.map(order).fillna(9) if col.name == "status" else col


def _versions(registry: Path) -> pd.DataFrame:
    try:
        return list_models(registry).sort_values(["name", "version"], ascending=[True, False])
    except LtvcastError:
        return pd.DataFrame()


def _overview_specs(snap: Snapshot) -> dict[str, dict]:
    cache = getattr(snap, "_specs", None)
    if cache is None:
        cache = {"clv": charts.clv_histogram(snap.predictions["pred_spend"].to_numpy(float), snap.horizon_days)}
        if snap.matured is not None:
            cache["lorenz"] = charts.lorenz(snap.matured.lorenz)
            cache["deciles"] = charts.deciles(snap.matured.deciles)
        snap._specs = cache
    return cache


def _grid(summary: pd.DataFrame) -> dict:
    g = summary[summary["grid"] == "value x risk"]
    tiers = list(dict.fromkeys(g["value_tier"].astype(str)))[::-1]
    risks = list(dict.fromkeys(g["churn_risk"].astype(str)))
    cells = {(str(r.value_tier), str(r.churn_risk)): r for r in g.itertuples(index=False)}
    return {"tiers": tiers, "risks": risks, "cells": cells}


def _rfm(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["grid"] == "rfm"]


def _reasons(snap: Snapshot, cid: str) -> tuple[dict, list[str]]:
    inputs = snap.customer_inputs(cid)
    if inputs.empty:
        return {}, ["no model inputs for this customer at the prediction day"]
    try:
        record = explanation_record(explain_inputs(snap.model.forecaster, inputs, snap.cutoff, snap.horizon_days), cid)
    except LtvcastError as exc:
        return {}, [f"no reasons for this model: {exc}"]
    return record.get("reasons", {}), list(record.get("notes", []))


def _experiment(experiment: Experiment | None, history: History, snap: Snapshot):
    if experiment is None:
        return None
    try:
        arms = ex.read_assignments(experiment.assignments)
        share = 1.0 - float(arms["holdout_share"].iloc[0]) if "holdout_share" in arms.columns else 0.5
        data = ex.campaign_outcomes(history, arms, experiment.start, experiment.end)
        return ex.analyze(data, shares={ex.TREATMENT: share, ex.CONTROL: 1.0 - share},
                          window=(experiment.start, experiment.end))
    except LtvcastError as exc:
        return f"the experiment cannot be analysed: {exc}"


def mount_ui(app, config: UiConfig, base: str = "/ui") -> FastAPI:
    """Mount the web app on a FastAPI app (or the service's ASGI wrapper) at ``base``; ``/`` redirects to it.

    Returns:
        The mounted web app.
    """
    fastapi_app = getattr(app, "app", app)
    ui = create_ui(config, base)
    fastapi_app.mount(base, ui)

    @fastapi_app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse(f"{base}/", status_code=307)

    return ui


def local_app(config: UiConfig, base: str = "/ui") -> FastAPI:
    """A FastAPI app holding only the web app at ``base`` (``ltvcast ui``)."""
    app = FastAPI(title="ltvcast ui", docs_url=None, redoc_url=None, openapi_url=None)
    mount_ui(app, config, base)
    return app


