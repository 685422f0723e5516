"""`ltvcast serve` (the real-time prediction service) and `ltvcast sync` (online log -> DuckDB store)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ltvcast.cli._app import app, console, err_console, user_errors
from ltvcast.errors import DataError, LtvcastError
from ltvcast.registry import DEFAULT_ROOT

Db = Annotated[Path, typer.Option("--db", help="DuckDB store written by `ltvcast ingest`.")]
Online = Annotated[
    Path | None,
    typer.Option("--online", help="SQLite online store (default: next to --db, e.g. shop.online.sqlite)."),
]
RedisUrl = Annotated[
    str | None, typer.Option("--redis", help="Redis online store instead of SQLite, e.g. redis://127.0.0.1:6379/0.")
]
Prefix = Annotated[str, typer.Option("--redis-prefix", help="Key prefix of the Redis online store.")]


def _online(db: Path, online: Path | None, redis: str | None, prefix: str):
    from ltvcast.serve.online import default_online_path, open_online

    if online is not None and redis is not None:
        raise LtvcastError("give --online FILE or --redis URL, not both")
    if redis is not None:
        return open_online(redis_url=redis, prefix=prefix)
    return open_online(online if online is not None else default_online_path(db))


def _keys(keys: Path | None, no_auth: bool):
    from ltvcast.serve.auth import ENV_VAR, KeyRing

    if no_auth:
        if keys is not None:
            raise LtvcastError("--no-auth and --keys exclude each other")
        return None
    if keys is not None:
        return KeyRing.from_file(keys)
    if os.environ.get(ENV_VAR):
        return KeyRing.from_env(os.environ[ENV_VAR])
    raise LtvcastError(
        f"no API keys: give --keys keys.yaml or set {ENV_VAR} (see `ltvcast serve --hash-key`), "
        "or --no-auth to serve without authentication (local use only)"
    )


def _hash_key() -> None:
    from ltvcast.serve.auth import hash_key, new_key

    if sys.stdin.isatty():
        key = new_key()
        console.print(f"new key (give it to the client; it is not stored): {key}", highlight=False)
    else:
        key = sys.stdin.readline().strip()
        if not key:
            raise LtvcastError("--hash-key: no key on standard input")
    console.print(f"sha256: {hash_key(key)}", highlight=False)


def _mount_ui(web, db: Path, registry: Path, holder, ring) -> None:
    from ltvcast.data.datasets import open_history
    from ltvcast.ui.app import UiConfig, mount_ui
    from ltvcast.ui.local import one_time_keys

    key = None
    if ring is None:  # --no-auth: the API stays open, the web app still needs a sign-in
        ring, key = one_time_keys()
    console.print("preparing the web app's pages ...", highlight=False)
    mount_ui(web, UiConfig(open_history=lambda: open_history(db=db), registry=registry,
                           model=lambda: holder.current.label, keys=ring, monitor_db=db))
    if key is not None:
        console.print(f"web app one-time sign-in key (valid until the service stops): {key}", highlight=False,
                      markup=False)


def _next_categories(path: Path) -> dict[str, list[dict]]:
    from ltvcast.actions.cross_sell import index_next_categories
    from ltvcast.schema.predictions import read_predictions

    return index_next_categories(read_predictions(path), str(path))


@app.command("serve")
@user_errors
def serve_command(
    db: Annotated[Path | None, typer.Option("--db", help="DuckDB store written by `ltvcast ingest`.")] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="NAME (the promoted version, watched) or NAME:VERSION (pinned).")
    ] = None,
    registry: Annotated[Path, typer.Option("--registry", help="Model registry folder.")] = DEFAULT_ROOT,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    online: Online = None,
    redis: RedisUrl = None,
    redis_prefix: Prefix = "ltvcast:",
    keys: Annotated[Path | None, typer.Option("--keys", help="YAML file of API key hashes and scopes.")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve without API keys (local use only).")] = False,
    max_body: Annotated[int, typer.Option("--max-body", help="Request body limit in bytes (413 above).")] = 2097152,
    watch_interval: Annotated[
        float, typer.Option("--watch-interval", help="Seconds between checks of the model's promotion.")
    ] = 1.0,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
    ui: Annotated[bool, typer.Option(
        "--ui", help="Also serve the analyst web app at /ui/ (sign in with a read key; docs/ui.md).")] = False,
    next_categories: Annotated[Path | None, typer.Option(
        "--next-categories", help="Table written by `ltvcast next-categories`, served per customer.")] = None,
    hash_key: Annotated[
        bool,
        typer.Option("--hash-key", help="Print the SHA-256 of a key read from standard input (or of a new key), then exit."),
    ] = False,
) -> None:
    """Start the prediction service (FastAPI under uvicorn, one worker) until Ctrl-C / SIGTERM."""
    if hash_key:
        _hash_key()
        return
    if db is None or model is None:
        raise LtvcastError("serve needs --db and --model (or --hash-key)")
    import uvicorn

    from ltvcast.serve.app import Service, create_app
    from ltvcast.serve.mirror import Mirror
    from ltvcast.serve.model import ModelHolder
    from ltvcast.serve.sync import ShopSettings, refresh_base
    from ltvcast.store import Store

    ring = _keys(keys, no_auth)
    store_online = _online(db, online, redis, redis_prefix)
    try:
        with Store.open(db, read_only=True) as store:
            if refresh_base(store, store_online):
                console.print(f"loaded the store's history into {store_online.description}", highlight=False)
    except DataError as exc:
        meta = store_online.meta()
        if "timezone" not in meta or not Path(db).exists():
            raise
        err_console.print(f"warning: {exc}; serving with the history loaded before", highlight=False)
    meta = store_online.meta()
    settings = ShopSettings(meta["timezone"], meta["revenue_basis"], meta.get("currency") or None)
    mirror = Mirror(db, store_online)

    def prepare(served) -> None:  # learned models read the store's mirror: load it once one is served
        if served.learned and not mirror.loaded:
            mirror.load()
            mirror.start(watch_interval)

    try:
        holder = ModelHolder(model, registry, prepare=prepare)
    except BaseException:
        mirror.close()
        store_online.close()
        raise
    holder.start(watch_interval)
    service = Service(store_online, holder, settings, ring, max_body, mirror, monitor_db=db,
                      next_categories=None if next_categories is None else _next_categories(next_categories))
    console.print(
        f"serving {holder.current.label} ({holder.current.forecaster.name}) on http://{host}:{port} "
        f"[{'auth' if ring else 'NO AUTH'}; online store {store_online.description}]",
        highlight=False,
        markup=False,
    )
    logging.getLogger("ltvcast").setLevel(log_level.upper())
    try:
        web = create_app(service)
        if ui:
            _mount_ui(web, db, registry, holder, ring)
        uvicorn.run(web, host=host, port=port, workers=1, log_level=log_level,
                    access_log=access_log)
    finally:
        holder.stop()
        mirror.close()
        store_online.close()


@app.command("sync")
@user_errors
def sync_command(
    db: Db,
    online: Online = None,
    redis: RedisUrl = None,
    redis_prefix: Prefix = "ltvcast:",
) -> None:
    """Write every event the service acknowledged into the DuckDB store (once each; safe to repeat)."""
    from ltvcast.serve.sync import refresh_base, sync
    from ltvcast.store import Store

    store_online = _online(db, online, redis, redis_prefix)
    try:
        with Store.open(db) as store:
            result = sync(store, store_online)
            refresh_base(store, store_online)
    finally:
        store_online.close()
    where = f" (ingest {result.ingest_id})" if result.ingest_id is not None else ""
    console.print(
        f"{result.written} new event(s) written to {db}{where}; "
        f"{result.read - result.written} of {result.read} read were there already",
        highlight=False,
    )
