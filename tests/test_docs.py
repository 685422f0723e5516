"""The docs stay true: every shell command in README.md and docs/*.md is a command the CLI parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from ltvcast.cli import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAKE_TARGETS = {"demo", "test", "install", "lock", "clean"}


def _commands() -> list[tuple[str, str]]:
    """(page, command line) of every line of every ```bash block."""
    out = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S):
            for line in block.splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    out.append((page.relative_to(ROOT).as_posix(), line.strip()))
    return out


def _parse(args: list[str]) -> None:
    """Parse ``ltvcast ARGS`` down to the subcommand's options, without running it (raises click errors)."""
    command = typer.main.get_command(app)  # Typer ships its own click: duck-type groups and errors
    ctx = command.make_context("ltvcast", list(args))
    while hasattr(command, "resolve_command"):
        name, command, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        ctx = command.make_context(name, rest, parent=ctx)


def test_the_docs_hold_commands():
    pages = {page for page, _ in _commands()}
    assert {"README.md", "docs/data.md", "docs/evaluation.md", "docs/serving.md"} <= pages


@pytest.mark.parametrize(("page", "line"), _commands())
def test_every_documented_command_parses(page, line):
    words = shlex.split(line)
    if words[0] == "make":
        assert set(words[1:]) <= MAKE_TARGETS, f"{page}: unknown make target in {line!r}"
        return
    assert words[0] == "ltvcast", f"{page}: a shell command that is not ltvcast or make: {line!r}"
    try:
        _parse(words[1:])
    except Exception as exc:  # the CLI's usage errors (typer's click: NoSuchOption, BadParameter, ...)
        pytest.fail(f"{page}: `{line}` does not parse: {type(exc).__name__}: {exc}")


def test_a_wrong_option_is_caught():
    with pytest.raises(Exception, match="No such option"):
        _parse(["backtest", "--dataset", "cdnow", "--no-such-option"])
    with pytest.raises(Exception, match="No such command"):
        _parse(["no-such-command"])


def test_every_doc_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in readme]
    assert not missing, f"README.md does not link {missing}"
    assert len(readme.splitlines()) <= 300
