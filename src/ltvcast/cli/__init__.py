"""The ``ltvcast`` command line (Typer). Commands are thin wrappers over the library.

Each command lives in its own module, which registers itself on :data:`app`.
"""

from __future__ import annotations

from ltvcast.cli._app import app
from ltvcast.cli import ingest, backtest, demo, simulate, quarantine  # noqa: F401,E402  (register commands)


def main() -> None:
    """Entry point of the ``ltvcast`` console script."""
    app()
