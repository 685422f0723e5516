"""Reading a YAML file the user wrote (sources.yaml, mapping files, policies, calendars), with one-line errors."""

from __future__ import annotations

from pathlib import Path

import yaml

from ltvcast.errors import DataError


def read_yaml(path: str | Path, what: str) -> object:
    """The parsed content of the YAML file ``path`` (None for an empty file).

    Args:
        path: the file.
        what: what the file holds, for messages (``"config"``, ``"mapping file"``, ...).

    Raises:
        DataError: ``cannot read {what} {path}: ...`` when the file cannot be
            read; ``{what} {path} is not valid YAML: ...`` (one line) when it
            does not parse.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataError(f"{what} {path} is not valid YAML: {' '.join(str(exc).split())}") from None
