"""The ``ltvcast`` command line (Typer). Commands are thin wrappers over the library.

Each command lives in its own module, which registers itself on :data:`app`.
"""

from __future__ import annotations

from ltvcast.cli import (  # noqa: F401  (register commands)
    backtest,
    categories,
    clv,
    demo,
    experiment,
    explain,
    export,
    features,
    ingest,
    monitor,
    quarantine,
    registry,
    retrain,
    segments,
    serve,
    simulate,
    target,
    tune,
    ui,
)
from ltvcast.cli._app import app


def main() -> None:
    """Entry point of the ``ltvcast`` console script."""
    app()
