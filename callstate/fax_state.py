"""FaxState: whether a user receives faxes and where they are e-mailed, and the faxes received.

A received fax is one row: when, from whom, how many pages, whether the transfer succeeded, the
TIFF Asterisk wrote, and the state of its e-mail (`pending` until the fax plugin has sent it,
retried with a growing pause, then `sent` or `failed`; `none` when there was nothing to send).
Settings changes are audited; the rows themselves are the record of the calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from .db import Tx
from .errors import SettingsError
from .store import Event, StateStore, log_changes
from .times import from_text, to_text
from .users import Origin, find_user

AUDIT_PREFIX = "fax."
EMAIL_MAX = 254
# One address, no display name, no header tricks: what a form may put in a To: header.
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
RECEIVED = "received"
FAILED = "failed"
PENDING = "pending"
SENT = "sent"
NONE = "none"
TEXT_MAX = 64
LIST_MAX = 200


@dataclass(frozen=True)
class FaxSettings:
    enabled: bool
    email: str | None  # where faxes are sent: the chosen address, else the user's YAML e-mail
    own_email: bool  # True: `email` was chosen here, not taken from the YAML


@dataclass(frozen=True)
class ReceivedFax:
    id: int
    tenant_id: str
    user_id: str
    received_at: datetime
    caller: str
    remote_id: str
    pages: int
    status: str  # received / failed
    error: str
    tiff: str
    email: str | None
    delivery: str  # pending / sent / failed / none
    attempts: int
    delivery_error: str


def check_email(text: str) -> str:
    value = text.strip()
    if len(value) > EMAIL_MAX or not EMAIL.fullmatch(value):
        raise SettingsError("the e-mail address is not valid")
    return value


def _clip(text: str, limit: int = TEXT_MAX) -> str:
    return "".join(ch for ch in str(text) if ch.isprintable())[:limit]


_COLUMNS = ("id, tenant_id, user_id, received_at, caller, remote_id, pages, status, error, tiff, email, "
            "delivery, attempts, delivery_error")


def _fax(row: tuple[object, ...]) -> ReceivedFax:
    (id_, tenant, user, at, caller, remote, pages, status, error, tiff, email, delivery, attempts,
     delivery_error) = row
    return ReceivedFax(int(id_), str(tenant), str(user), from_text(str(at)), str(caller), str(remote),  # type: ignore[call-overload]
                       int(pages), str(status), str(error), str(tiff), None if email is None else str(email),  # type: ignore[call-overload]
                       str(delivery), int(attempts), str(delivery_error))  # type: ignore[call-overload]


class FaxState:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    # ------------------------------------------------------------------ settings

    def settings(self, tenant_id: str, user_id: str) -> FaxSettings:
        _, user = find_user(self._store.config, tenant_id, user_id)
        row = self._store.read(lambda tx: tx.one(
            "SELECT enabled, email FROM fax_settings WHERE tenant_id = ? AND user_id = ?", (tenant_id, user_id)))
        if row is None:
            return FaxSettings(False, user.email, False)
        own = row[1] is not None
        return FaxSettings(bool(row[0]), str(row[1]) if own else user.email, own)

    def enabled(self, tenant_id: str, user_id: str) -> bool:
        """For the call router: False for an unknown user instead of an error."""
        if self._store.config.find_user(tenant_id, user_id) is None:
            return False
        return self.settings(tenant_id, user_id).enabled

    def set_settings(self, tenant_id: str, user_id: str, *, enabled: bool, email: str | None,
                     actor: str, source: str) -> FaxSettings:
        """`email` None or empty: the user's YAML e-mail. Turning fax on needs an address."""
        store = self._store
        _, user = find_user(store.config, tenant_id, user_id)
        origin = Origin(actor, source)
        chosen = check_email(email) if email and email.strip() else None
        if enabled and not (chosen or user.email):
            raise SettingsError("fax needs an e-mail address to send the faxes to")

        def work(tx: Tx) -> list[Event]:
            now = store.now()
            row = tx.one("SELECT enabled, email FROM fax_settings WHERE tenant_id = ? AND user_id = ?",
                         (tenant_id, user_id))
            before_on, before_mail = (bool(row[0]), row[1]) if row else (False, None)
            events = [Event("setting_changed", AUDIT_PREFIX + name, old, new) for name, old, new in (
                ("enabled", str(before_on).lower(), str(enabled).lower()), ("email", before_mail, chosen))
                if old != new]
            if not events:
                return []
            if row:
                tx.run("UPDATE fax_settings SET enabled = ?, email = ?, updated_at = ? "
                       "WHERE tenant_id = ? AND user_id = ?", (int(enabled), chosen, to_text(now), tenant_id, user_id))
            else:
                tx.run("INSERT INTO fax_settings (tenant_id, user_id, enabled, email, updated_at) "
                       "VALUES (?, ?, ?, ?, ?)", (tenant_id, user_id, int(enabled), chosen, to_text(now)))
            store.record(tx, now, tenant_id, user_id, origin, events)
            return events

        log_changes(tenant_id, user_id, origin, store.write(work))
        return self.settings(tenant_id, user_id)

    # ------------------------------------------------------------------ received faxes

    def record(self, tenant_id: str, user_id: str, *, caller: str, remote_id: str, pages: int, ok: bool,
               error: str, tiff: str) -> int:
        """A fax call ended (the dialplan tells): its row, due for e-mail at once when a page came."""
        store = self._store
        settings = self.settings(tenant_id, user_id)
        pages = max(0, int(pages))
        deliver = pages > 0 and settings.email is not None

        def work(tx: Tx) -> int:
            now = to_text(store.now())
            tx.run("INSERT INTO fax_received (tenant_id, user_id, received_at, caller, remote_id, pages, status, "
                   "error, tiff, email, delivery, attempts, next_at, delivery_error) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (tenant_id, user_id, now, _clip(caller), _clip(remote_id), pages, RECEIVED if ok else FAILED,
                    _clip(error, 200), tiff[:400], settings.email, PENDING if deliver else NONE, 0, now, ""))
            row = tx.one("SELECT MAX(id) FROM fax_received WHERE tenant_id = ? AND user_id = ?", (tenant_id, user_id))
            return int(row[0]) if row else 0

        return store.write(work)

    def received(self, tenant_id: str, user_id: str, limit: int = LIST_MAX) -> list[ReceivedFax]:
        """The user's faxes, newest first."""
        find_user(self._store.config, tenant_id, user_id)
        rows = self._store.read(lambda tx: tx.all(
            f"SELECT {_COLUMNS} FROM fax_received WHERE tenant_id = ? AND user_id = ? "
            "ORDER BY received_at DESC, id DESC LIMIT ?", (tenant_id, user_id, limit)))
        return [_fax(r) for r in rows]

    def find(self, tenant_id: str, user_id: str, fax_id: int) -> ReceivedFax | None:
        """One of the user's own faxes; None for any other id."""
        row = self._store.read(lambda tx: tx.one(
            f"SELECT {_COLUMNS} FROM fax_received WHERE id = ? AND tenant_id = ? AND user_id = ?",
            (fax_id, tenant_id, user_id)))
        return _fax(row) if row else None

    def delete(self, tenant_id: str, user_id: str, fax_id: int, *, actor: str, source: str) -> ReceivedFax | None:
        """Forgets one of the user's faxes (the caller removes its files); None: not theirs."""
        store = self._store
        origin = Origin(actor, source)
        found = self.find(tenant_id, user_id, fax_id)
        if found is None:
            return None
        events = [Event("setting_changed", AUDIT_PREFIX + "deleted", str(fax_id), None)]

        def work(tx: Tx) -> None:
            tx.run("DELETE FROM fax_received WHERE id = ? AND tenant_id = ? AND user_id = ?",
                   (fax_id, tenant_id, user_id))
            store.record(tx, store.now(), tenant_id, user_id, origin, events)

        store.write(work)
        log_changes(tenant_id, user_id, origin, events)
        return found

    # ------------------------------------------------------------------ e-mail delivery

    def due(self, limit: int = 20) -> list[ReceivedFax]:
        """Faxes whose e-mail is pending and due now."""
        now = to_text(self._store.now())
        rows = self._store.read(lambda tx: tx.all(
            f"SELECT {_COLUMNS} FROM fax_received WHERE delivery = ? AND next_at <= ? ORDER BY id LIMIT ?",
            (PENDING, now, limit)))
        return [_fax(r) for r in rows]

    def delivered(self, fax_id: int) -> None:
        self._store.write(lambda tx: tx.run(
            "UPDATE fax_received SET delivery = ?, attempts = attempts + 1, delivery_error = '' WHERE id = ?",
            (SENT, fax_id)))

    def delivery_failed(self, fax_id: int, error: str, retry_in: timedelta | None) -> None:
        """Tried again after `retry_in`; None: given up."""
        store = self._store

        def work(tx: Tx) -> None:
            if retry_in is None:
                tx.run("UPDATE fax_received SET delivery = ?, attempts = attempts + 1, delivery_error = ? "
                       "WHERE id = ?", (FAILED, _clip(error, 200), fax_id))
            else:
                tx.run("UPDATE fax_received SET attempts = attempts + 1, next_at = ?, delivery_error = ? "
                       "WHERE id = ?", (to_text(store.now() + retry_in), _clip(error, 200), fax_id))

        store.write(work)
