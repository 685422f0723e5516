"""`ltvcast ui`: the analyst web app, read-only, on a store or a built-in dataset and the registry (docs/ui.md)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ltvcast.cli._app import app, console, user_errors
from ltvcast.cli.backtest import Dataset, Db
from ltvcast.errors import LtvcastError, RegistryError
from ltvcast.registry import DEFAULT_ROOT

LOG_LEVELS = ("debug", "info", "warning", "error")


@app.command("ui")
@user_errors
def ui_command(
    dataset: Dataset = None,
    db: Db = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="NAME (promoted version, followed) or NAME:VERSION (default: the registry's only model of "
        "this data; without one a BG/NBD fitted on the data, kept in a temporary registry removed at exit).")] = None,
    registry: Annotated[Path, typer.Option("--registry", help="Model registry folder.")] = DEFAULT_ROOT,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8050,
    keys: Annotated[Path | None, typer.Option(
        "--keys", help="YAML file of API key hashes (as `ltvcast serve`); default: LTVCAST_API_KEYS, else a "
        "one-time key printed at start.")] = None,
    assignments: Annotated[Path | None, typer.Option(
        "--assignments", help="An experiment's assignments (customer_id, arm) for the Experiments page.")] = None,
    campaign_start: Annotated[str | None, typer.Option("--campaign-start", metavar="YYYY-MM-DD",
                                                       help="First day of the experiment's window.")] = None,
    campaign_end: Annotated[str | None, typer.Option("--campaign-end", metavar="YYYY-MM-DD",
                                                     help="Last day of its window (inclusive).")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "warning",
) -> None:
    """Open the web app on http://HOST:PORT/ui/: overview, customers, segments, campaign planner, experiments, health.

    Example: ltvcast ui --dataset cdnow
    """
    import uvicorn

    from ltvcast.data.datasets import open_history
    from ltvcast.serve.auth import ENV_VAR, KeyRing
    from ltvcast.ui.app import Experiment, UiConfig, local_app
    from ltvcast.ui.local import current_label, fit_default, one_time_keys, pick_model, unusable_models

    if (dataset is None) == (db is None):
        raise LtvcastError("give exactly one source: --dataset NAME or --db PATH")
    if (assignments is None) != (campaign_start is None) or (assignments is None) != (campaign_end is None):
        raise LtvcastError("the Experiments page needs --assignments, --campaign-start and --campaign-end together")
    # the options before the minutes of preparing the pages (a bad port or level was a traceback after them)
    if not 0 <= port <= 65535:
        raise LtvcastError(f"--port must be 0-65535, got {port}")
    log_level = log_level.lower()  # uvicorn knows the lower-case names only
    if log_level not in LOG_LEVELS:
        raise LtvcastError(f"--log-level {log_level!r}: choose from {', '.join(LOG_LEVELS)}")
    if assignments is not None:
        from ltvcast.timeutil import to_day

        if not assignments.is_file():
            raise LtvcastError(f"--assignments {assignments}: no such file")
        if to_day(campaign_start) > to_day(campaign_end):
            raise LtvcastError(f"--campaign-start {campaign_start} is after --campaign-end {campaign_end}")

    port = check_port(host, port)

    def history():
        return open_history(dataset, db)

    with contextlib.ExitStack() as cleanup:
        ref = model
        if ref is None:
            first = history()
            try:
                skipped = unusable_models(registry, first)
                ref = pick_model(registry, None, exclude=skipped)
                if ref is None:
                    shown = registry
                    registry = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="ltvcast-ui-registry-")))
                    ref = fit_default(first, registry)
                    why = "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
                    console.print(f"fitted {ref} on the data (a temporary registry, removed at exit): " + (
                        f"no model in {shown} can show {first.origin} ({why}); choose one with --model NAME or "
                        "another registry with --registry PATH" if skipped else f"no model in {shown}"),
                        highlight=False, markup=False)
            finally:
                first.store.close()
        if keys is not None:
            ring, key = KeyRing.from_file(keys), None
        elif os.environ.get(ENV_VAR):
            ring, key = KeyRing.from_env(os.environ[ENV_VAR]), None
        else:
            ring, key = one_time_keys()
        experiment = None if assignments is None else Experiment(assignments, campaign_start, campaign_end)
        config = UiConfig(open_history=history, registry=registry, model=lambda: current_label(registry, ref),
                          keys=ring, monitor_db=db, experiment=experiment)
        logging.getLogger("ltvcast").setLevel(log_level.upper())
        console.print("preparing the pages (predictions, segments, backtest) ...", highlight=False)
        try:
            web = local_app(config)
        except RegistryError as exc:
            raise LtvcastError(f"{exc}; choose a model of this data with --model NAME[:VERSION], or its registry with "
                               "--registry PATH") from None
        console.print(f"ltvcast ui on http://{host}:{port}/ui/ (read only; Ctrl-C to stop)", highlight=False,
                      markup=False)
        if key is not None:
            console.print(f"one-time sign-in key (valid until this app stops): {key}", highlight=False, markup=False)
        uvicorn.run(web, host=host, port=port, workers=1, log_level=log_level)


def check_port(host: str, port: int) -> int:
    """The port to listen on: ``port``, checked to be free now (before minutes of model work), or for 0 a free one.

    Returns:
        ``port``, or the free port the system gave for 0 (so the printed address is the real one).

    Raises:
        LtvcastError: ``host`` does not resolve, or ``host:port`` cannot be listened on.
    """
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise LtvcastError(f"--host {host}: {exc.strerror or exc}") from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a closed port in TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise LtvcastError(f"port {port} on {host} cannot be listened on ({exc.strerror or exc}): stop what "
                               "holds it or choose another with --port") from None
        return int(probe.getsockname()[1])
