"""`ltvcast export`: a registered deep model's network to ONNX (:func:`ltvcast.registry.export_onnx`)."""

from __future__ import annotations

from typing import Annotated

import typer

from ltvcast.cli._app import app, console, user_errors
from ltvcast.cli.registry import Registry
from ltvcast.errors import LtvcastError
from ltvcast.registry import DEFAULT_ROOT, load_model

FORMATS = ("onnx",)


@app.command("export")
@user_errors
def export_command(
    model: Annotated[str, typer.Option("--model", help="NAME (promoted, else latest version) or NAME:VERSION.")],
    fmt: Annotated[str, typer.Option("--format", help="Export format: onnx (the only one).")] = "onnx",
    registry: Registry = DEFAULT_ROOT,
) -> None:
    """Export a registered deep model's network to model.onnx beside it; `score` and `serve` then run it.

    The export is checked against torch (every output to 1e-4 absolute) and
    recorded in the version's manifest; nothing is written when the check fails.
    """
    if fmt.strip().lower() not in FORMATS:
        raise LtvcastError(f"--format {fmt!r} is not supported: the only export format is onnx")
    from ltvcast.registry import TOLERANCE, export_onnx

    registered = load_model(model, registry, use_onnx=False)  # an earlier export may be the one to replace
    result = export_onnx(registered)
    console.print(
        f"exported {registered.name}:{registered.version} to {result.path} ({result.bytes:,} bytes, ONNX opset "
        f"{result.opset}); max |ONNX - torch| {result.max_abs_diff:.2e} over {result.checked_rows} generated rows "
        f"(tolerance {TOLERANCE:.0e})",
        highlight=False,
        soft_wrap=True,  # a path broken over lines cannot be copied
    )
