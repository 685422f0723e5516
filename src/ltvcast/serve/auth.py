"""API keys: kept as SHA-256 hashes, each with scopes ``read`` (predictions) and/or ``write`` (events).

A key file (``ltvcast serve --keys keys.yaml``)::

    keys:
      - name: checkout            # a label for logs
        sha256: 9f86d081884c7d65...  # hex SHA-256 of the key (ltvcast serve --hash-key)
        scopes: [write]
      - name: crm
        sha256: 60303ae22b998861...
        scopes: [read]

or the environment variable ``LTVCAST_API_KEYS``: entries
``NAME:SHA256:SCOPE+SCOPE`` separated by commas, e.g.
``checkout:9f86...:write,crm:6030...:read``. A client sends its key as
``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. The service never sees
keys at rest, only their hashes.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from ltvcast.errors import LtvcastError

SCOPES = ("read", "write")
ENV_VAR = "LTVCAST_API_KEYS"
_HEX = re.compile(r"^[0-9a-f]{64}$")


def hash_key(key: str) -> str:
    """Hex SHA-256 of the key's UTF-8 text (what the key file stores)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A new random key: 32 bytes from the OS, URL-safe text."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKey:
    """A known key: its label, hash and scopes."""

    name: str
    sha256: str
    scopes: frozenset[str]


class KeyRing:
    """The known keys, looked up by hash.

    Raises:
        LtvcastError: a hash that is not 64 hex digits, an unknown scope, a
            repeated hash, or no key at all.
    """

    def __init__(self, keys: list[ApiKey]) -> None:
        if not keys:
            raise LtvcastError("no API key is configured (a key file with keys:, or LTVCAST_API_KEYS)")
        self._by_hash: dict[str, ApiKey] = {}
        for key in keys:
            if not _HEX.match(key.sha256):
                raise LtvcastError(f"API key {key.name!r}: sha256 must be 64 lower-case hex digits")
            bad = sorted(key.scopes - set(SCOPES))
            if bad or not key.scopes:
                raise LtvcastError(f"API key {key.name!r}: scopes must be some of {', '.join(SCOPES)}; got {bad or 'none'}")
            if key.sha256 in self._by_hash:
                raise LtvcastError(f"API key {key.name!r}: the same key is listed twice")
            self._by_hash[key.sha256] = key

    def __len__(self) -> int:
        return len(self._by_hash)

    def find(self, key: str) -> ApiKey | None:
        """The key's entry, or None for an unknown key."""
        return self._by_hash.get(hash_key(key))

    @classmethod
    def from_file(cls, path: str | Path) -> KeyRing:
        """Read a YAML key file (module doc).

        Raises:
            LtvcastError: unreadable file or bad entries (the message names the entry).
        """
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise LtvcastError(f"cannot read the key file {path}: {exc}") from None
        entries = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise LtvcastError(f"{path}: expected a mapping with a list under 'keys'")
        keys = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or set(entry) - {"name", "sha256", "scopes"} or "sha256" not in entry:
                raise LtvcastError(f"{path}: keys[{i}] must have sha256, scopes and optionally name (nothing else)")
            scopes = entry.get("scopes") or []
            if isinstance(scopes, str):
                scopes = [scopes]
            keys.append(ApiKey(str(entry.get("name", f"key{i}")), str(entry["sha256"]).lower(), frozenset(map(str, scopes))))
        return cls(keys)

    @classmethod
    def from_env(cls, text: str) -> KeyRing:
        """Parse ``NAME:SHA256:SCOPE+SCOPE,...`` (module doc).

        Raises:
            LtvcastError: an entry that does not have three parts.
        """
        keys = []
        for i, part in enumerate(p.strip() for p in text.split(",") if p.strip()):
            fields = part.split(":")
            if len(fields) != 3:
                raise LtvcastError(f"{ENV_VAR}: entry {i + 1} is not NAME:SHA256:SCOPE+SCOPE")
            name, digest, scopes = fields
            keys.append(ApiKey(name, digest.lower(), frozenset(s for s in scopes.split("+") if s)))
        return cls(keys)
