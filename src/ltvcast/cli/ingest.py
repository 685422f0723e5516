"""`ltvcast ingest`."""

from ltvcast.cli._app import app, console, user_errors  # noqa: F401
