"""Sessions of the web app: a read-scope API key exchanged for a random session id, with a CSRF token.

A session lives in memory (one server process), for :data:`SESSION_TTL_S`
seconds after its last request. Its id travels in an ``HttpOnly``,
``SameSite=Strict`` cookie; its CSRF token is put in every form (and in the
``X-CSRF-Token`` header of htmx requests) and checked on every POST. The
login form, before any session, is protected by the double-submit pattern:
a random token in a cookie and in the form must match.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from ltvcast.serve.auth import KeyRing

SESSION_COOKIE = "ltvcast_session"
LOGIN_CSRF_COOKIE = "ltvcast_login_csrf"
SESSION_TTL_S = 8 * 3600.0
READ_SCOPE = "read"


@dataclass
class Session:
    """A signed-in browser: the key's name (for logs), its CSRF token and when it was last used (monotonic s)."""

    key_name: str
    csrf: str
    seen: float


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two tokens; False when either is missing or empty."""
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


class Sessions:
    """The live sessions, by id (thread-safe).

    Args:
        keys: the API keys; a key needs the ``read`` scope to sign in.
        ttl_s: idle seconds after which a session ends.
    """

    def __init__(self, keys: KeyRing, ttl_s: float = SESSION_TTL_S) -> None:
        self.keys, self.ttl_s = keys, ttl_s
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def login(self, key: str) -> tuple[str, Session] | None:
        """A new session for a known key with the read scope, else None."""
        entry = self.keys.find(key.strip())
        if entry is None or READ_SCOPE not in entry.scopes:
            return None
        sid = secrets.token_urlsafe(32)
        session = Session(entry.name, secrets.token_urlsafe(32), time.monotonic())
        with self._lock:
            self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        """The live session of ``sid`` (its idle clock restarted), or None (unknown or expired)."""
        if not sid:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._by_id.get(sid)
            if session is None:
                return None
            if now - session.seen > self.ttl_s:
                del self._by_id[sid]
                return None
            session.seen = now
            return session

    def logout(self, sid: str | None) -> None:
        """End the session (nothing when unknown)."""
        with self._lock:
            self._by_id.pop(sid or "", None)
