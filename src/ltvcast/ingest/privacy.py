"""Personal data: drop personal columns at read time; pseudonymise customer ids.

*Personal columns* are matched on a normalised name: lower case with every
character that is not a letter or digit removed, so ``E-Mail``, ``EMAIL``
and ``e_mail`` all match ``email``, ``FirstName`` matches ``first_name``,
while ``product_name`` does not match ``name``. Dropped columns never reach
the store, not even inside a quarantined row's ``raw_row``.

*Pseudonyms* are ``HMAC-SHA256(key, id)`` as 32 hex characters (128 bits):
the same id gives the same pseudonym in every source and every run with the
same key, so sources still join; without the key the id cannot be recovered
or checked. The key comes from an environment variable (never from the
YAML file).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from ltvcast.errors import DataError

PSEUDONYM_HEX_CHARS = 32


def normalise_column_name(name: str) -> str:
    """``"E-Mail Address"`` -> ``"emailaddress"``: lower case, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def personal_columns_in(
    columns: Sequence[str], personal: Iterable[str], allowed: Iterable[str] = ()
) -> list[str]:
    """The columns of a source that hold personal data and are not allowed.

    Args:
        columns: the source's column names.
        personal: personal column names (see module doc for matching).
        allowed: personal column names explicitly allowed into the store
            (matched the same way).

    Returns:
        The matching source column names, in source order.
    """
    keys = {normalise_column_name(p) for p in personal} - {normalise_column_name(a) for a in allowed}
    keys.discard("")
    return [c for c in columns if normalise_column_name(c) in keys]


def drop_personal_columns(
    frame: pd.DataFrame,
    personal: Iterable[str],
    allowed: Iterable[str] = (),
    keep: Iterable[str] = (),
) -> tuple[pd.DataFrame, list[str]]:
    """Remove personal columns from a raw frame.

    Args:
        frame: a source read as text, shape (rows, columns).
        personal, allowed: as in :func:`personal_columns_in`.
        keep: source columns that must stay although personal (the column
            mapped to ``customer_id`` when its values are pseudonymised).

    Returns:
        (frame without the dropped columns, names of the dropped columns).
    """
    keep = set(keep)
    dropped = [c for c in personal_columns_in(list(frame.columns), personal, allowed) if c not in keep]
    return (frame.drop(columns=dropped) if dropped else frame), dropped


def id_key(env_var: str, environ: Mapping[str, str] | None = None) -> bytes:
    """The pseudonymisation key from environment variable ``env_var`` (UTF-8 bytes).

    Raises:
        DataError: the variable is not set or empty (the message names it).
    """
    env = os.environ if environ is None else environ
    value = env.get(env_var, "")
    if not value:
        raise DataError(
            f"pseudonymise_ids is on but environment variable {env_var} is not set; "
            f"set it to a long secret (e.g. export {env_var}=$(openssl rand -hex 32)) and keep it: "
            "the same key gives the same pseudonyms in every run"
        )
    return value.encode("utf-8")


def pseudonymise(ids: pd.Series, key: bytes) -> pd.Series:
    """Replace each id by ``HMAC-SHA256(key, id)`` (first 32 hex characters).

    Args:
        ids: text ids (already normalised); missing values (NaN) stay missing.
        key: the secret key (:func:`id_key`).

    Returns:
        Series of the same index, dtype ``str`` with NaN where ``ids`` was missing.
    """
    present = ids.notna()
    unique = pd.unique(ids[present])
    table = {
        v: hmac.new(key, str(v).encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS]
        for v in unique
    }
    out = ids.astype(object).copy()
    out[present] = ids[present].map(table)
    return out.astype(str).where(present)
