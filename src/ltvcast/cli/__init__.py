"""The ``ltvcast`` command line (Typer). Commands are thin wrappers over the library.

Each command lives in its own module, which registers itself on :data:`app`.
"""

from __future__ import annotations

from ltvcast.cli import backtest, demo, export, ingest, quarantine, registry, serve, simulate, tune  # noqa: F401  (register commands)
from ltvcast.cli._app import app


def main() -> None:
    """Entry point of the ``ltvcast`` console script."""
    app()
