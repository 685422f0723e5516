"""The Typer app, the console and the error boundary shared by all commands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

from ltvcast.errors import LtvcastError

app = typer.Typer(
    name="ltvcast",
    help="Customer lifetime value prediction: ingest, backtest, forecast.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., object])


def user_errors(func: F) -> F:
    """Turn :class:`LtvcastError` and file-system errors into one message and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except LtvcastError as exc:
            err_console.print("[bold red]error:[/] ", end="")
            err_console.print(str(exc), highlight=False, markup=False)
            raise typer.Exit(code=2) from None
        except OSError as exc:  # an output path that is a file, a read-only folder, a full disk
            err_console.print("[bold red]error:[/] ", end="")
            err_console.print(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), highlight=False, markup=False)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]
