"""WebAccountState: home-page passwords (as argon2 hashes made by the caller) and server-side
sessions, audited like every other change.

The hash itself is made and checked in `web/auth/passwords.py`: this room stores text and never
sees a password. A session's cookie token is random; only its SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from .db import Tx
from .store import Event, StateStore, log_changes
from .times import from_text, to_text
from .users import Origin, find_user

AUDIT_PREFIX = "web."
LOGIN = "login"
LOGOUT = "logout"
PASSWORD_SET = "password_set"
SESSIONS_ENDED = "sessions_ended"
# A session's last-seen time is written at most this often, so that a page load is a read.
TOUCH_EVERY = timedelta(seconds=60)
SOURCE_MAX = 64


@dataclass(frozen=True)
class WebSession:
    tenant_id: str
    user_id: str
    csrf_token: str
    created_at: datetime
    idle_until: datetime
    ends_at: datetime


@dataclass(frozen=True)
class SessionInfo:
    """A live session as its user or an operator sees it (never its token)."""

    source: str  # the client address at login
    created_at: datetime
    seen_at: datetime
    idle_until: datetime
    ends_at: datetime
    current: bool = False  # the asking session's own


@dataclass(frozen=True)
class OpenedSession:
    token: str  # for the cookie; never stored
    session: WebSession


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class WebAccountState:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    # ------------------------------------------------------------------ passwords

    def password_hash(self, tenant_id: str, user_id: str) -> str | None:
        """The stored argon2 hash, or None when the user has not chosen a password yet."""
        find_user(self._store.config, tenant_id, user_id)
        row = self._store.read(lambda tx: tx.one(
            "SELECT password_hash FROM web_accounts WHERE tenant_id = ? AND user_id = ?", (tenant_id, user_id)))
        return str(row[0]) if row else None

    def set_password_hash(self, tenant_id: str, user_id: str, password_hash: str, *, actor: str,
                          source: str, keep_token: str | None = None) -> int:
        """Stores a new hash and ends every other session of the user (a changed password must
        lock out whoever else was logged in); `keep_token`'s session stays. Returns how many
        sessions ended."""
        store = self._store
        find_user(store.config, tenant_id, user_id)
        origin = Origin(actor, source)
        keep = token_hash(keep_token) if keep_token else ""

        def work(tx: Tx) -> tuple[int, list[Event]]:
            now = store.now()
            existed = tx.one("SELECT 1 FROM web_accounts WHERE tenant_id = ? AND user_id = ?",
                             (tenant_id, user_id)) is not None
            if existed:
                tx.run("UPDATE web_accounts SET password_hash = ?, password_set_at = ? "
                       "WHERE tenant_id = ? AND user_id = ?", (password_hash, to_text(now), tenant_id, user_id))
            else:
                tx.run("INSERT INTO web_accounts (tenant_id, user_id, password_hash, password_set_at) "
                       "VALUES (?, ?, ?, ?)", (tenant_id, user_id, password_hash, to_text(now)))
            ended = tx.run("DELETE FROM web_sessions WHERE tenant_id = ? AND user_id = ? AND token_hash <> ?",
                           (tenant_id, user_id, keep))
            # The audit says that it changed, never the hash.
            events = [Event(PASSWORD_SET, AUDIT_PREFIX + "password", "set" if existed else None, "set")]
            if ended:
                events.append(Event(SESSIONS_ENDED, AUDIT_PREFIX + "session", str(ended), None))
            store.record(tx, now, tenant_id, user_id, origin, events)
            return ended, events

        ended, events = store.write(work)
        log_changes(tenant_id, user_id, origin, events)
        return ended

    # ------------------------------------------------------------------ sessions

    def open_session(self, tenant_id: str, user_id: str, *, address: str, idle: timedelta,
                     max_age: timedelta, actor: str, source: str = "web") -> OpenedSession:
        """A new session after a successful login (audited as a login from `address`)."""
        store = self._store
        find_user(store.config, tenant_id, user_id)
        origin = Origin(actor, source)
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        where = address[:SOURCE_MAX]

        def work(tx: Tx) -> tuple[WebSession, list[Event]]:
            now = store.now()
            session = WebSession(tenant_id, user_id, csrf, now, min(now + idle, now + max_age), now + max_age)
            tx.run("INSERT INTO web_sessions (token_hash, tenant_id, user_id, csrf_token, source, created_at, "
                   "seen_at, idle_until, ends_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (token_hash(token), tenant_id, user_id, csrf, where, to_text(now), to_text(now),
                    to_text(session.idle_until), to_text(session.ends_at)))
            # Old sessions of anyone are tidied here rather than by a timer.
            tx.run("DELETE FROM web_sessions WHERE idle_until < ? OR ends_at < ?", (to_text(now), to_text(now)))
            events = [Event(LOGIN, AUDIT_PREFIX + "session", None, where)]
            store.record(tx, now, tenant_id, user_id, origin, events)
            return session, events

        session, events = store.write(work)
        log_changes(tenant_id, user_id, origin, events)
        return OpenedSession(token, session)

    def session(self, token: str, *, idle: timedelta) -> WebSession | None:
        """The live session of a cookie token, its idle time renewed; None when unknown or over
        (idle too long, or past its end however busy)."""
        if not token or len(token) > 200:
            return None
        store = self._store
        key = token_hash(token)
        row = store.read(lambda tx: tx.one(
            "SELECT tenant_id, user_id, csrf_token, created_at, seen_at, idle_until, ends_at "
            "FROM web_sessions WHERE token_hash = ?", (key,)))
        if row is None:
            return None
        now = store.now()
        tenant_id, user_id, csrf, created, seen, idle_until, ends = row
        session = WebSession(str(tenant_id), str(user_id), str(csrf), from_text(created),
                             from_text(idle_until), from_text(ends))
        if now >= session.idle_until or now >= session.ends_at:
            store.write(lambda tx: tx.run("DELETE FROM web_sessions WHERE token_hash = ?", (key,)))
            return None
        if store.config.find_user(session.tenant_id, session.user_id) is None:
            return None  # the user was removed from the YAML since
        if now - from_text(seen) >= TOUCH_EVERY:
            renewed = min(now + idle, session.ends_at)
            store.write(lambda tx: tx.run(
                "UPDATE web_sessions SET seen_at = ?, idle_until = ? WHERE token_hash = ?",
                (to_text(now), to_text(renewed), key)))
            session = WebSession(session.tenant_id, session.user_id, session.csrf_token, session.created_at,
                                 renewed, session.ends_at)
        return session

    def end_session(self, token: str, *, actor: str, source: str = "web") -> bool:
        """Log out: the session is gone (audited); False when there was none."""
        store = self._store
        key = token_hash(token)
        origin = Origin(actor, source)

        def work(tx: Tx) -> tuple[tuple[str, str] | None, list[Event]]:
            row = tx.one("SELECT tenant_id, user_id FROM web_sessions WHERE token_hash = ?", (key,))
            if row is None:
                return None, []
            tx.run("DELETE FROM web_sessions WHERE token_hash = ?", (key,))
            events = [Event(LOGOUT, AUDIT_PREFIX + "session", None, None)]
            store.record(tx, store.now(), str(row[0]), str(row[1]), origin, events)
            return (str(row[0]), str(row[1])), events

        who, events = store.write(work)
        if who:
            log_changes(who[0], who[1], origin, events)
        return who is not None

    def end_sessions(self, tenant_id: str, user_id: str, *, actor: str, source: str,
                     keep_token: str | None = None) -> int:
        """Every session of the user ends (an operator's action, or a forgotten password), but
        `keep_token`'s (the user's own "log out my other sessions"); how many ended."""
        store = self._store
        origin = Origin(actor, source)
        keep = token_hash(keep_token) if keep_token else ""

        def work(tx: Tx) -> tuple[int, list[Event]]:
            ended = tx.run("DELETE FROM web_sessions WHERE tenant_id = ? AND user_id = ? AND token_hash <> ?",
                           (tenant_id, user_id, keep))
            events = [Event(SESSIONS_ENDED, AUDIT_PREFIX + "session", str(ended), None)] if ended else []
            if events:
                store.record(tx, store.now(), tenant_id, user_id, origin, events)
            return ended, events

        ended, events = store.write(work)
        log_changes(tenant_id, user_id, origin, events)
        return ended

    def sessions_of(self, tenant_id: str, user_id: str, *, current_token: str | None = None) -> list[SessionInfo]:
        """The user's live sessions, newest first; `current_token`'s is marked."""
        store = self._store
        find_user(store.config, tenant_id, user_id)
        now = to_text(store.now())
        mine = token_hash(current_token) if current_token else ""
        rows = store.read(lambda tx: tx.all(
            "SELECT source, created_at, seen_at, idle_until, ends_at, token_hash FROM web_sessions "
            "WHERE tenant_id = ? AND user_id = ? AND idle_until > ? AND ends_at > ? ORDER BY created_at DESC",
            (tenant_id, user_id, now, now)))
        return [SessionInfo(str(r[0]), from_text(r[1]), from_text(r[2]), from_text(r[3]), from_text(r[4]),
                            current=r[5] == mine) for r in rows]
