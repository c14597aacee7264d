"""ContactsState: a user's personal contacts (name, number, note) for the home page's Contacts.

Each user has their own list; a contact is found only through its owner's (tenant, user), so an
id of another user's contact is simply unknown. Numbers are stored in E.164, read as the tenant's
users type them (`targets.resolve`: a colleague's extension, the national form, 00 or +).
Every change is one short transaction with its audit row (`contact.<id>`).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from base.model import Tenant

from .audit import SETTING_CHANGED
from .db import Tx
from .errors import SettingsError
from .presence import Presence
from .presence_state import presence_at
from .store import Event, StateStore, log_changes
from .targets import TargetRefused, resolve
from .times import from_text, to_text
from .users import Origin, find_user

AUDIT_PREFIX = "contact."
MAX_CONTACTS = 500  # per user
NAME_MAX = 80
NOTE_MAX = 200
_ID = re.compile(r"[0-9a-f]{16}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Contact:
    id: str
    name: str
    number: str  # E.164
    note: str


class ContactError(SettingsError):
    """A contact that cannot be stored; `field` (name, number, note, count) says which part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownContact(SettingsError):
    """No contact of this user has that id (whoever else's it may be)."""


def check_text(field: str, value: str, limit: int, *, required: bool) -> str:
    text = " ".join((value or "").split())  # one line, single spaces
    if required and not text:
        raise ContactError(field, f"the {field} is empty")
    if len(text) > limit:
        raise ContactError(field, f"the {field} is longer than {limit} characters")
    if _CONTROL.search(text):
        raise ContactError(field, f"the {field} has control characters")
    return text


class ContactsState:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def contacts(self, tenant_id: str, user_id: str) -> list[Contact]:
        """The user's contacts by name."""
        find_user(self._store.config, tenant_id, user_id)
        rows = self._store.read(lambda tx: tx.all(
            "SELECT contact_id, name, number, note FROM personal_contacts WHERE tenant_id = ? AND user_id = ? "
            "ORDER BY name, contact_id", (tenant_id, user_id)))
        return [Contact(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    def presences(self, tenant_id: str, user_ids: list[str]) -> dict[str, Presence]:
        """The directory's view: the presence of these users of one tenant, in one read (a user
        without a row is Available)."""
        tenant = self._store.config.tenant(tenant_id) if user_ids else None
        if tenant is None:
            return {}
        marks = ", ".join("?" for _ in user_ids)
        rows = self._store.read(lambda tx: tx.all(
            f"SELECT user_id, activity, until_at, note FROM presence WHERE tenant_id = ? AND user_id IN ({marks})",
            (tenant_id, *user_ids)))
        found = {str(r[0]): (str(r[1]), from_text(r[2]) if r[2] is not None else None, str(r[3])) for r in rows}
        return {uid: presence_at(tenant, found.get(uid), self._store.now) for uid in user_ids}

    def contact(self, tenant_id: str, user_id: str, contact_id: str) -> Contact:
        """One of the user's own contacts, else UnknownContact."""
        find_user(self._store.config, tenant_id, user_id)
        row = self._store.read(lambda tx: _load(tx, tenant_id, user_id, contact_id))
        if row is None:
            raise UnknownContact(f"no contact {contact_id!r}")
        return row

    def add_contact(self, tenant_id: str, user_id: str, name: str, number: str, note: str = "", *,
                    actor: str, source: str) -> Contact:
        """A new contact; ContactError (nothing written) for a bad field or a full list."""
        store = self._store
        tenant, _ = find_user(store.config, tenant_id, user_id)
        origin = Origin(actor, source)
        fresh = Contact(secrets.token_hex(8), *_checked(tenant, name, number, note))

        def work(tx: Tx) -> list[Event]:
            count = tx.one("SELECT COUNT(*) FROM personal_contacts WHERE tenant_id = ? AND user_id = ?",
                           (tenant_id, user_id))
            if count is not None and int(count[0]) >= MAX_CONTACTS:
                raise ContactError("count", f"at most {MAX_CONTACTS} contacts")
            now = store.now()
            tx.run("INSERT INTO personal_contacts (tenant_id, user_id, contact_id, name, number, note, updated_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (tenant_id, user_id, fresh.id, fresh.name, fresh.number, fresh.note, to_text(now)))
            events = [Event(SETTING_CHANGED, AUDIT_PREFIX + fresh.id, None, _describe(fresh))]
            store.record(tx, now, tenant_id, user_id, origin, events)
            return events

        log_changes(tenant_id, user_id, origin, store.write(work))
        return fresh

    def update_contact(self, tenant_id: str, user_id: str, contact_id: str, name: str, number: str,
                       note: str = "", *, actor: str, source: str) -> Contact:
        """Changes one of the user's own contacts; UnknownContact for any other id."""
        store = self._store
        tenant, _ = find_user(store.config, tenant_id, user_id)
        origin = Origin(actor, source)
        after = Contact(contact_id, *_checked(tenant, name, number, note))

        def work(tx: Tx) -> list[Event]:
            before = _load(tx, tenant_id, user_id, contact_id)
            if before is None:
                raise UnknownContact(f"no contact {contact_id!r}")
            if before == after:
                return []
            now = store.now()
            tx.run("UPDATE personal_contacts SET name = ?, number = ?, note = ?, updated_at = ? "
                   "WHERE tenant_id = ? AND user_id = ? AND contact_id = ?",
                   (after.name, after.number, after.note, to_text(now), tenant_id, user_id, contact_id))
            events = [Event(SETTING_CHANGED, AUDIT_PREFIX + contact_id, _describe(before), _describe(after))]
            store.record(tx, now, tenant_id, user_id, origin, events)
            return events

        log_changes(tenant_id, user_id, origin, store.write(work))
        return after

    def delete_contact(self, tenant_id: str, user_id: str, contact_id: str, *, actor: str,
                       source: str) -> Contact:
        """Removes one of the user's own contacts (the removed one); UnknownContact for any other id."""
        store = self._store
        find_user(store.config, tenant_id, user_id)
        origin = Origin(actor, source)

        def work(tx: Tx) -> tuple[Contact, list[Event]]:
            before = _load(tx, tenant_id, user_id, contact_id)
            if before is None:
                raise UnknownContact(f"no contact {contact_id!r}")
            tx.run("DELETE FROM personal_contacts WHERE tenant_id = ? AND user_id = ? AND contact_id = ?",
                   (tenant_id, user_id, contact_id))
            events = [Event(SETTING_CHANGED, AUDIT_PREFIX + contact_id, _describe(before), None)]
            store.record(tx, store.now(), tenant_id, user_id, origin, events)
            return before, events

        removed, events = store.write(work)
        log_changes(tenant_id, user_id, origin, events)
        return removed


def _checked(tenant: Tenant, name: str, number: str, note: str) -> tuple[str, str, str]:
    clean_name = check_text("name", name, NAME_MAX, required=True)
    clean_note = check_text("note", note, NOTE_MAX, required=False)
    try:
        e164 = resolve(tenant, number)
    except TargetRefused as exc:
        raise ContactError("number", str(exc)) from None
    return clean_name, e164, clean_note


def _load(tx: Tx, tenant_id: str, user_id: str, contact_id: str) -> Contact | None:
    if not isinstance(contact_id, str) or not _ID.fullmatch(contact_id):
        return None
    row = tx.one("SELECT contact_id, name, number, note FROM personal_contacts "
                 "WHERE tenant_id = ? AND user_id = ? AND contact_id = ?", (tenant_id, user_id, contact_id))
    return Contact(str(row[0]), str(row[1]), str(row[2]), str(row[3])) if row else None


def _describe(contact: Contact) -> str:
    return f"{contact.name} <{contact.number}>" + (f" ({contact.note})" if contact.note else "")
