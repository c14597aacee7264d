"""WebLoginState: the home page's one-time login codes, and the rate limits and lockouts of its
logins, audited like every other change.

Password logins are counted per user and per client address *before* the password is checked
(`claim_login`), so parallel guesses cannot slip past the limit; a success takes its claim back
(`login_ok`). A user's series of failures locks like the PIN (15 min, 1 h, 24 h, then held until
the user proves their phone with a code or an operator unlocks); an address locks after many
failures within a window, for the same steps, the last repeating (an address is never held: many
users may share it).

A code is made and hashed by the caller (argon2, `web/auth/codes.py`): this room stores the hash,
counts the attempts (`claim_code` before the caller checks, like a password), and once a code is
right hands out a ticket that lets the user choose a password (`take_ticket`). A new code replaces
the old; sending is limited per user and per address (`issue_code`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar

from .db import Tx
from .pin import DEFAULT_STEPS, PinStatus
from .store import Event, StateStore, log_changes
from .times import from_text, to_text
from .users import Origin, find_user

USER = "user"
ADDRESS = "address"
SEND_USER = "send_user"
SEND_ADDRESS = "send_address"

# Audit events (field "web.login", "web.address" or "web.code"); a code or password never appears.
LOGIN_FAILED = "login_failed"  # old: why (wrong password, unknown user...), new: the address
LOGIN_REFUSED = "login_refused"  # an attempt while locked, not checked: old: which lock
LOGIN_LOCKED = "login_locked"  # old: the user or address, new: the lock's end or HELD
LOGIN_UNLOCKED = "login_unlocked"
CODE_SENT = "code_sent"  # new: how (sms, email)
CODE_UNSENT = "code_unsent"  # old: why (no gateway, delivery failed)
CODE_REFUSED = "code_refused"  # a request over the rate limit, or an attempt while locked
CODE_FAILED = "code_failed"  # a wrong, expired or used-up code
CODE_USED = "code_used"
FIELD_LOGIN = "web.login"
FIELD_ADDRESS = "web.address"
FIELD_CODE = "web.code"
T = TypeVar("T")
NOBODY = ("", "")  # the audit's (tenant, user) of an attempt that names no user
ADDRESS_MAX = 64
KEEP_IDLE = timedelta(days=2)  # counters untouched this long (and not locked) are tidied away


@dataclass(frozen=True)
class LoginPolicy:
    user_attempts: int = 5  # wrong passwords (or codes) in a row before the user's lock
    user_steps: tuple[int, ...] = DEFAULT_STEPS  # minutes per lock level; beyond: held
    address_attempts: int = 20  # failures from one address within the window before its lock
    address_window_minutes: int = 15
    address_steps: tuple[int, ...] = DEFAULT_STEPS  # the last step repeats
    code_minutes: int = 10  # a code's life
    code_attempts: int = 5  # tries of one code
    ticket_minutes: int = 10  # time to choose the password once the code was right
    sends_per_user: int = 3  # codes per user per send window
    sends_per_address: int = 10  # code requests per address per send window
    send_window_minutes: int = 60


@dataclass(frozen=True)
class Limit(PinStatus):
    """A counter like the PIN's: failures (or codes sent) since `window_start`, and its lock."""

    window_start: datetime | None = None


@dataclass(frozen=True)
class Admission:
    allowed: bool
    reason: str | None = None  # for the audit and the operator, never for the client


def address_subject(address: str) -> str:
    """What an address's limits count: the address, or for IPv6 its /64 (one subscriber's
    network, from which any of 2^64 addresses can be used)."""
    try:
        parsed = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return address[:ADDRESS_MAX]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def user_subject(tenant_id: str, user_id: str) -> str:
    return f"{tenant_id}/{user_id}"


def _load(tx: Tx, scope: str, subject: str) -> Limit:
    row = tx.one("SELECT failures, window_start, locked_until, lock_level, held FROM web_login_limits "
                 "WHERE scope = ? AND subject = ?", (scope, subject))
    if row is None:
        return Limit()
    return Limit(int(row[0]), from_text(row[2]) if row[2] else None, int(row[3]), bool(row[4]),
                 window_start=from_text(row[1]))


def _save(tx: Tx, scope: str, subject: str, limit: Limit, now: datetime) -> None:
    tx.run("DELETE FROM web_login_limits WHERE scope = ? AND subject = ?", (scope, subject))
    if limit == Limit():
        return
    tx.run("INSERT INTO web_login_limits (scope, subject, failures, window_start, locked_until, lock_level, held, "
           "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
           (scope, subject, limit.failures, to_text(limit.window_start or now),
            to_text(limit.locked_until) if limit.locked_until else None, limit.level, int(limit.held), to_text(now)))


def effective(limit: Limit, now: datetime, window: timedelta | None = None) -> Limit:
    """A lock that ran out is gone with its series (the level stays); without a lock, a series
    older than `window` starts again."""
    if limit.locked_until is not None and now >= limit.locked_until:
        return Limit(level=limit.level)
    if (not limit.locked and window is not None and limit.window_start is not None
            and now >= limit.window_start + window):
        return Limit(level=limit.level)
    return limit


def claim(limit: Limit, now: datetime, attempts: int, steps: tuple[int, ...], *, hold: bool) -> tuple[Limit, bool]:
    """One more attempt: (the counter after it, whether it may go ahead). An attempt beyond
    `attempts` locks for the next step (held past the last step when `hold`, else the last
    step again) and is refused."""
    if limit.locked:
        return limit, False
    if limit.failures >= attempts:
        level = limit.level + 1
        minutes = steps[level - 1] if level <= len(steps) else (None if hold else steps[-1])
        until = now + timedelta(minutes=minutes) if minutes is not None else None
        return Limit(limit.failures, until, level, held=minutes is None, window_start=limit.window_start), False
    return Limit(limit.failures + 1, None, limit.level, window_start=limit.window_start or now), True


class WebLoginState:
    def __init__(self, store: StateStore, policy: LoginPolicy | None = None) -> None:
        self._store = store
        self.policy = policy or LoginPolicy()

    # ------------------------------------------------------------------ helpers

    def _who(self, tenant_id: str | None, user_id: str | None) -> tuple[str, str]:
        if tenant_id is None or user_id is None:
            return NOBODY
        find_user(self._store.config, tenant_id, user_id)
        return tenant_id, user_id

    def _address_window(self) -> timedelta:
        return timedelta(minutes=self.policy.address_window_minutes)

    def _write(self, who: tuple[str, str], origin: Origin, work: Callable[[Tx, datetime, list[Event]], T]) -> T:
        """`work(tx, now, events)` in one transaction; the events it adds are audited on `who`."""
        store = self._store

        def run(tx: Tx) -> tuple[T, list[Event]]:
            events: list[Event] = []
            result = work(tx, store.now(), events)
            if events:
                store.record(tx, store.now(), who[0], who[1], origin, events)
            return result, events

        result, events = store.write(run)
        log_changes(who[0], who[1], origin, events)
        return result

    # ------------------------------------------------------------------ password logins

    def claim_login(self, tenant_id: str | None, user_id: str | None, address: str, *, actor: str,
                    source: str = "web") -> Admission:
        """Before a password is checked: refused while the user or the address is locked (or when
        this attempt is one too many, which locks); otherwise counted as a failure until
        `login_ok` takes it back. `tenant_id`/`user_id` None: the user name named nobody."""
        who = self._who(tenant_id, user_id)
        where = address_subject(address)
        p = self.policy

        def work(tx: Tx, now: datetime, events: list[Event]) -> Admission:
            tx.run("DELETE FROM web_login_limits WHERE updated_at < ? AND held = 0 AND "
                   "(locked_until IS NULL OR locked_until < ?)", (to_text(now - KEEP_IDLE), to_text(now)))
            addr_before = effective(_load(tx, ADDRESS, where), now, self._address_window())
            addr, addr_ok = claim(addr_before, now, p.address_attempts, p.address_steps, hold=False)
            user_ok, user = True, None
            if who != NOBODY:
                user_before = effective(_load(tx, USER, user_subject(*who)), now)
                user, user_ok = claim(user_before, now, p.user_attempts, p.user_steps, hold=True)
            if addr_ok and user_ok:
                _save(tx, ADDRESS, where, addr, now)
                if user is not None:
                    _save(tx, USER, user_subject(*who), user, now)
                return Admission(True)
            reasons = []
            if not addr_ok:
                reasons.append(f"address locked until {addr.describe()}")
                if not addr_before.locked:
                    _save(tx, ADDRESS, where, addr, now)
                    events.append(Event(LOGIN_LOCKED, FIELD_ADDRESS, where, addr.describe()))
            if user is not None and not user_ok:
                reasons.append(f"user locked until {user.describe()}")
                if not user_before.locked:
                    _save(tx, USER, user_subject(*who), user, now)
                    events.append(Event(LOGIN_LOCKED, FIELD_LOGIN, user_subject(*who), user.describe()))
            reason = "; ".join(reasons)
            events.append(Event(LOGIN_REFUSED, FIELD_LOGIN, reason, where))
            return Admission(False, reason)

        return self._write(who, Origin(actor, source), work)

    def login_ok(self, tenant_id: str, user_id: str, address: str) -> None:
        """The password was right: the user's series ends (lock level too), the address's claim
        is taken back. The login itself is audited by the session it opens."""
        who = self._who(tenant_id, user_id)
        where = address_subject(address)

        def work(tx: Tx) -> None:
            now = self._store.now()
            _save(tx, USER, user_subject(*who), Limit(), now)
            addr = effective(_load(tx, ADDRESS, where), now, self._address_window())
            if not addr.locked and addr.failures:
                _save(tx, ADDRESS, where, replace(addr, failures=addr.failures - 1), now)

        self._store.write(work)

    def login_failed(self, tenant_id: str | None, user_id: str | None, address: str, reason: str, *,
                     actor: str, source: str = "web") -> None:
        """Audits a failed login (already counted by its claim)."""
        who = self._who(tenant_id, user_id)
        where = address_subject(address)

        def work(tx: Tx, now: datetime, events: list[Event]) -> None:
            events.append(Event(LOGIN_FAILED, FIELD_LOGIN, reason, where))

        self._write(who, Origin(actor, source), work)

    def user_lock(self, tenant_id: str, user_id: str) -> Limit:
        """The user's failure series and lock as they hold now."""
        who = self._who(tenant_id, user_id)
        store = self._store
        return effective(store.read(lambda tx: _load(tx, USER, user_subject(*who))), store.now())

    def address_lock(self, address: str) -> Limit:
        store = self._store
        return effective(store.read(lambda tx: _load(tx, ADDRESS, address_subject(address))), store.now(),
                         self._address_window())

    def locks(self) -> list[tuple[str, str, Limit]]:
        """Every user and address locked now: (scope, subject, lock)."""
        store = self._store
        rows = store.read(lambda tx: tx.all(
            "SELECT scope, subject FROM web_login_limits WHERE scope IN (?, ?) AND (held = 1 OR locked_until > ?) "
            "ORDER BY scope, subject", (USER, ADDRESS, to_text(store.now()))))
        found = []
        for scope, subject in rows:
            limit = effective(store.read(lambda tx, s=scope, j=subject: _load(tx, s, j)), store.now())
            if limit.locked:
                found.append((str(scope), str(subject), limit))
        return found

    def unlock_user(self, tenant_id: str, user_id: str, *, actor: str, source: str) -> bool:
        """The user's failures, lock and level are cleared (audited when there was any)."""
        who = self._who(tenant_id, user_id)

        def work(tx: Tx, now: datetime, events: list[Event]) -> bool:
            before = _load(tx, USER, user_subject(*who))
            if before == Limit():
                return False
            _save(tx, USER, user_subject(*who), Limit(), now)
            events.append(Event(LOGIN_UNLOCKED, FIELD_LOGIN, effective(before, now).describe(), None))
            return True

        return self._write(who, Origin(actor, source), work)

    def unlock_address(self, address: str, *, actor: str, source: str) -> bool:
        where = address_subject(address)

        def work(tx: Tx, now: datetime, events: list[Event]) -> bool:
            if _load(tx, ADDRESS, where) == Limit():
                return False
            _save(tx, ADDRESS, where, Limit(), now)
            events.append(Event(LOGIN_UNLOCKED, FIELD_ADDRESS, where, None))
            return True

        return self._write(NOBODY, Origin(actor, source), work)

    # ------------------------------------------------------------------ one-time codes

    def issue_code(self, tenant_id: str | None, user_id: str | None, code_hash: str | None, address: str, *,
                   actor: str, source: str = "web", limited: bool = True) -> str | None:
        """Stores a new code (replacing the user's old one) unless sending is over the limit for
        the user or the address; None when issued, else why not (audited). A request naming nobody
        (`tenant_id` None) only counts against the address. `limited` False: an operator's code."""
        who = self._who(tenant_id, user_id)
        where = address_subject(address)
        p = self.policy
        window = timedelta(minutes=p.send_window_minutes)

        def work(tx: Tx, now: datetime, events: list[Event]) -> str | None:
            if limited:
                sent_addr = effective(_load(tx, SEND_ADDRESS, where), now, window)
                sent_user = (effective(_load(tx, SEND_USER, user_subject(*who)), now, window)
                             if who != NOBODY else Limit())
                reason = ("too many codes for the address" if sent_addr.failures >= p.sends_per_address
                          else "too many codes for the user" if sent_user.failures >= p.sends_per_user else None)
                if reason:
                    events.append(Event(CODE_REFUSED, FIELD_CODE, reason, where))
                    return reason
                _save(tx, SEND_ADDRESS, where, replace(sent_addr, failures=sent_addr.failures + 1,
                                                       window_start=sent_addr.window_start or now), now)
                if who != NOBODY:
                    _save(tx, SEND_USER, user_subject(*who), replace(
                        sent_user, failures=sent_user.failures + 1, window_start=sent_user.window_start or now), now)
            if who != NOBODY and code_hash:
                tx.run("DELETE FROM web_login_codes WHERE tenant_id = ? AND user_id = ?", who)
                tx.run("INSERT INTO web_login_codes (tenant_id, user_id, code_hash, attempts, ticket_hash, created_at, "
                       "expires_at) VALUES (?, ?, ?, 0, NULL, ?, ?)",
                       (*who, code_hash, to_text(now), to_text(now + timedelta(minutes=p.code_minutes))))
            return None

        return self._write(who, Origin(actor, source), work)

    def may_send_code(self, tenant_id: str | None, user_id: str | None, address: str) -> bool:
        """Whether a code request would be within the sending limits now (nothing changes):
        checked before a code is hashed, so that a flood over the limit costs no hashing.
        `issue_code` decides for good."""
        who = self._who(tenant_id, user_id)
        where = address_subject(address)
        p = self.policy
        window = timedelta(minutes=p.send_window_minutes)

        def read(tx: Tx) -> bool:
            now = self._store.now()
            if effective(_load(tx, SEND_ADDRESS, where), now, window).failures >= p.sends_per_address:
                return False
            return who == NOBODY or (effective(_load(tx, SEND_USER, user_subject(*who)), now, window).failures
                                     < p.sends_per_user)

        return self._store.read(read)

    def code_delivered(self, tenant_id: str, user_id: str, channel: str, *, actor: str, source: str = "web") -> None:
        """Audits a code handed to the gateway (`channel`: sms or email)."""
        who = self._who(tenant_id, user_id)

        def work(tx: Tx, now: datetime, events: list[Event]) -> None:
            events.append(Event(CODE_SENT, FIELD_CODE, None, channel))

        self._write(who, Origin(actor, source), work)

    def code_undelivered(self, tenant_id: str, user_id: str, reason: str, *, actor: str, source: str = "web") -> None:
        """The code could not be sent: it is withdrawn (audited with why)."""
        who = self._who(tenant_id, user_id)

        def work(tx: Tx, now: datetime, events: list[Event]) -> None:
            tx.run("DELETE FROM web_login_codes WHERE tenant_id = ? AND user_id = ? AND ticket_hash IS NULL", who)
            events.append(Event(CODE_UNSENT, FIELD_CODE, reason[:200], None))

        self._write(who, Origin(actor, source), work)

    def claim_code(self, tenant_id: str | None, user_id: str | None, address: str, *, actor: str,
                   source: str = "web") -> str | None:
        """Before a typed code is checked: the hash to check it against, with the attempt counted
        (on the code and on the address); None (audited) when there is no live code to try, its
        attempts are used up, or the address is locked."""
        who = self._who(tenant_id, user_id)
        where = address_subject(address)
        p = self.policy

        def work(tx: Tx, now: datetime, events: list[Event]) -> str | None:
            addr_before = effective(_load(tx, ADDRESS, where), now, self._address_window())
            addr, addr_ok = claim(addr_before, now, p.address_attempts, p.address_steps, hold=False)
            if not addr_ok:
                if not addr_before.locked:
                    _save(tx, ADDRESS, where, addr, now)
                    events.append(Event(LOGIN_LOCKED, FIELD_ADDRESS, where, addr.describe()))
                events.append(Event(CODE_REFUSED, FIELD_CODE, f"address locked until {addr.describe()}", where))
                return None
            _save(tx, ADDRESS, where, addr, now)
            row = (tx.one("SELECT code_hash, attempts, ticket_hash, expires_at FROM web_login_codes "
                          "WHERE tenant_id = ? AND user_id = ?", who) if who != NOBODY else None)
            why = ("no code" if row is None else "code already used" if row[2] is not None
                   else "code expired" if now >= from_text(row[3])
                   else "too many attempts" if int(row[1]) >= p.code_attempts else None)
            if why or row is None:
                if row is not None:
                    tx.run("DELETE FROM web_login_codes WHERE tenant_id = ? AND user_id = ?", who)
                events.append(Event(CODE_FAILED, FIELD_CODE, why, where))
                return None
            tx.run("UPDATE web_login_codes SET attempts = attempts + 1 WHERE tenant_id = ? AND user_id = ?", who)
            return str(row[0])

        return self._write(who, Origin(actor, source), work)

    def code_failed(self, tenant_id: str, user_id: str, address: str, *, actor: str, source: str = "web") -> None:
        """Audits a wrong code (already counted by its claim)."""
        who = self._who(tenant_id, user_id)

        def work(tx: Tx, now: datetime, events: list[Event]) -> None:
            events.append(Event(CODE_FAILED, FIELD_CODE, "wrong code", address_subject(address)))

        self._write(who, Origin(actor, source), work)

    def code_ok(self, tenant_id: str, user_id: str, code_hash: str, ticket_hash: str, address: str, *,
                actor: str, source: str = "web") -> bool:
        """The code was right: it is used up, and `ticket_hash` (of a random ticket) lets the user
        choose a password for `ticket_minutes`. False when the code was replaced meanwhile."""
        who = self._who(tenant_id, user_id)
        where = address_subject(address)

        def work(tx: Tx, now: datetime, events: list[Event]) -> bool:
            changed = tx.run("UPDATE web_login_codes SET ticket_hash = ?, expires_at = ? WHERE tenant_id = ? AND "
                             "user_id = ? AND code_hash = ? AND ticket_hash IS NULL",
                             (ticket_hash, to_text(now + timedelta(minutes=self.policy.ticket_minutes)), *who,
                              code_hash))
            if not changed:
                return False
            addr = effective(_load(tx, ADDRESS, where), now, self._address_window())
            if not addr.locked and addr.failures:
                _save(tx, ADDRESS, where, replace(addr, failures=addr.failures - 1), now)
            events.append(Event(CODE_USED, FIELD_CODE, None, where))
            return True

        return self._write(who, Origin(actor, source), work)

    def ticket_owner(self, ticket_hash: str) -> tuple[str, str] | None:
        """Whose live ticket this is (nothing changes)."""
        store = self._store
        row = store.read(lambda tx: tx.one(
            "SELECT tenant_id, user_id, expires_at FROM web_login_codes WHERE ticket_hash = ?", (ticket_hash,)))
        if row is None or store.now() >= from_text(row[2]):
            return None
        return str(row[0]), str(row[1])

    def take_ticket(self, ticket_hash: str, *, actor: str, source: str = "web") -> tuple[str, str] | None:
        """Uses up a live ticket: its (tenant, user), whose login lock is lifted (the code proved
        the phone); None when unknown or expired."""
        store = self._store
        origin = Origin(actor, source)

        def run(tx: Tx) -> tuple[tuple[str, str] | None, list[Event]]:
            now = store.now()
            row = tx.one("SELECT tenant_id, user_id, expires_at FROM web_login_codes WHERE ticket_hash = ?",
                         (ticket_hash,))
            if row is None:
                return None, []
            who = (str(row[0]), str(row[1]))
            tx.run("DELETE FROM web_login_codes WHERE tenant_id = ? AND user_id = ?", who)
            if now >= from_text(row[2]):
                return None, []
            before = _load(tx, USER, user_subject(*who))
            events = []
            if before.locked or before.level:
                _save(tx, USER, user_subject(*who), Limit(), now)
                events.append(Event(LOGIN_UNLOCKED, FIELD_LOGIN, effective(before, now).describe(), "code"))
                store.record(tx, now, who[0], who[1], origin, events)
            return who, events

        who, events = store.write(run)
        if who:
            log_changes(who[0], who[1], origin, events)
        return who

    def pending_code(self, tenant_id: str, user_id: str) -> datetime | None:
        """When the user's live code (or ticket) expires; None without one."""
        who = self._who(tenant_id, user_id)
        store = self._store
        row = store.read(lambda tx: tx.one(
            "SELECT expires_at FROM web_login_codes WHERE tenant_id = ? AND user_id = ?", who))
        if row is None or store.now() >= from_text(row[0]):
            return None
        return from_text(row[0])
