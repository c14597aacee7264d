"""Logging in, behind the routes, the API and `vipbx web code`: passwords checked under the
call-state service's rate limits and lockouts, one-time codes made, sent and checked, passwords
chosen with a code and changed.

Whatever is wrong (unknown user, no password yet, wrong password, a lock) a login fails the same
way and as slowly: the audit trail, not the client, learns why. A code request answers the same
whether or not the user exists: the code is made and sent in the background.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from base.model import TenantUser
from base.offload import run_blocking
from callstate import CallStateService
from callstate.web_accounts import token_hash
from notify import DeliveryError, Messenger

from ..deps import WebDeps
from ..i18n import Translator
from .passwords import (
    MAX_LENGTH,
    hash_in_pool,
    needs_rehash,
    password_problem,
    verify_in_pool,
)
from .usernames import find_login, login_name

log = logging.getLogger(__name__)

CODE_DIGITS = 8
ANONYMOUS = "web:anonymous"  # the audit's actor of an attempt before anyone is known
TASKS_KEY = "login_code_tasks"
MAX_PENDING_CODES = 32  # code requests hashed and sent at once; beyond, a flood is dropped


def actor_of(who: TenantUser | None) -> str:
    return f"web:{who.user.id}@{who.tenant.id}" if who else ANONYMOUS


def ids_of(who: TenantUser | None) -> tuple[str | None, str | None]:
    return (who.tenant.id, who.user.id) if who else (None, None)


def user_words(who: TenantUser) -> tuple[str, ...]:
    """What a user's password may not contain: their name, ids and number."""
    tenant, user = who
    return (user.id, *user.id.replace(".", " ").replace("-", " ").split(), *user.name.split(),
            user.number.lstrip("+"), user.number[-7:], tenant.id, login_name(who).partition("@")[0])


def new_password_problem(who: TenantUser, password: str, repeat: str) -> str | None:
    """The locale key of what is wrong with a chosen password, or None."""
    if password != repeat:
        return "password_mismatch"
    return password_problem(password, user_words=user_words(who))


# ------------------------------------------------------------------ passwords

async def check_password(state: CallStateService, who: TenantUser | None, password: str, address: str) -> bool:
    """Whether `password` is `who`'s, counted against the user's and the address's limits. As
    slow whatever the answer; an old-cost hash is renewed on success."""
    logins, accounts = state.web_logins, state.web_accounts
    tenant_id, user_id = ids_of(who)
    admission = await run_blocking(logins.claim_login, tenant_id, user_id, address, actor=actor_of(who))
    stored = (await run_blocking(accounts.password_hash, tenant_id, user_id)
              if who is not None and tenant_id and user_id and admission.allowed else None)
    ok = await verify_in_pool(stored, password)  # a dummy hash when None: as slow
    if not admission.allowed:
        return False  # audited as refused, with the lock
    if ok and who is not None and stored is not None:
        await run_blocking(logins.login_ok, who.tenant.id, who.user.id, address)
        if needs_rehash(stored):
            fresh = await hash_in_pool(password)
            await run_blocking(accounts.set_password_hash, who.tenant.id, who.user.id, fresh, actor=actor_of(who),
                               source="web")
        return True
    reason = "unknown user" if who is None else "no password yet" if stored is None else "wrong password"
    await run_blocking(logins.login_failed, tenant_id, user_id, address, reason, actor=actor_of(who))
    return False


async def authenticate(state: CallStateService, username: str, password: str, address: str) -> TenantUser | None:
    """The user whose user name and password these are, else None."""
    who = find_login(state.config, username)
    return who if await check_password(state, who, password, address) else None


async def change_password(state: CallStateService, who: TenantUser, token: str, current: str, new: str,
                          repeat: str, address: str) -> str | None:
    """The logged-in user's new password; every other session ends. None when changed, else the
    locale key of the problem (nothing changed)."""
    problem = new_password_problem(who, new, repeat)
    if problem is None and new == current:
        problem = "password_same"
    if problem is not None:
        return problem
    if not await check_password(state, who, current, address):
        return "account_wrong_password"
    fresh = await hash_in_pool(new)
    await run_blocking(state.web_accounts.set_password_hash, who.tenant.id, who.user.id, fresh,
                       actor=actor_of(who), source="web", keep_token=token)
    return None


# ------------------------------------------------------------------ one-time codes

def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def typed_code(text: str) -> str:
    """The digits of a typed code: spaces and dashes people add are dropped."""
    return "".join(ch for ch in text[:MAX_LENGTH] if not ch.isspace() and ch != "-")


async def deliver(messenger: Messenger | None, who: TenantUser, code: str, minutes: int) -> tuple[str | None, str]:
    """Sends `code` by SMS to the user's number, else (no SMS gateway) by e-mail to their
    address: (the channel, "") or (None, why not)."""
    user = who.user
    t = Translator(user.language)
    text = t("login_code_message", code=code, minutes=minutes)
    try:
        if messenger is not None and messenger.can_sms:
            await messenger.sms(user.number, text)
            return "sms", ""
        if messenger is not None and messenger.can_email and user.email:
            await messenger.email(user.email, t("login_code_subject"), text)
            return "email", ""
    except DeliveryError as exc:
        return None, f"delivery failed: {exc}"
    return None, "no SMS gateway, and no e-mail relay or address"


async def send_code(state: CallStateService, messenger: Messenger | None, who: TenantUser | None, address: str, *,
                    actor: str | None = None, source: str = "web", limited: bool = True) -> tuple[str | None, str]:
    """Makes a new code for `who` (replacing the old), and sends it: (the channel it went by, "")
    or (None, why not: over the rate limit, nobody, not deliverable), each audited."""
    logins = state.web_logins
    actor = actor or actor_of(who)
    tenant_id, user_id = ids_of(who)
    if limited and not await run_blocking(logins.may_send_code, tenant_id, user_id, address):
        code = None  # over the limit: refused (and audited) below without the cost of a hash
    else:
        code = new_code() if who is not None else None
    code_hash = await hash_in_pool(code) if code else None
    refused = await run_blocking(logins.issue_code, tenant_id, user_id, code_hash, address, actor=actor,
                                 source=source, limited=limited)
    if refused is not None or who is None or code is None:
        return None, refused or "no such user"
    channel, why = await deliver(messenger, who, code, logins.policy.code_minutes)
    if channel is None:
        log.warning("login code for %s/%s not sent: %s", who.tenant.id, who.user.id, why)
        await run_blocking(logins.code_undelivered, who.tenant.id, who.user.id, why, actor=actor, source=source)
        return None, why
    await run_blocking(logins.code_delivered, who.tenant.id, who.user.id, channel, actor=actor, source=source)
    return channel, ""


def request_code(deps: WebDeps, username: str, address: str) -> None:
    """"Send me a code": done in the background, so that the answer is the same, and as quick,
    whether or not the user exists. `settle(deps)` waits for what is under way (tests)."""
    who = find_login(deps.config, username)
    tasks: set[asyncio.Task[Any]] = deps.extras.setdefault(TASKS_KEY, set())
    if len(tasks) >= MAX_PENDING_CODES:
        log.warning("login code request from %s dropped: %d requests already under way", address, len(tasks))
        return
    task = asyncio.create_task(_quietly(send_code(deps.state, deps.messenger, who, address)))
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _quietly(work: Any) -> None:
    try:
        await work
    except Exception:  # a background task: its failure is logged, never raised at nobody
        log.exception("sending a login code failed")


async def settle(deps: WebDeps) -> None:
    tasks = list(deps.extras.get(TASKS_KEY, ()))
    if tasks:
        await asyncio.gather(*tasks)


async def check_code(state: CallStateService, username: str, code: str, address: str) -> str | None:
    """A ticket to choose a password when `code` is the live code of the user named; else None
    (wrong, expired, used up, nobody, locked: all alike). Counted against the limits."""
    logins = state.web_logins
    who = find_login(state.config, username)
    tenant_id, user_id = ids_of(who)
    code_hash = await run_blocking(logins.claim_code, tenant_id, user_id, address, actor=actor_of(who))
    ok = await verify_in_pool(code_hash, typed_code(code))
    if who is None or code_hash is None:
        return None
    if not ok:
        await run_blocking(logins.code_failed, who.tenant.id, who.user.id, address, actor=actor_of(who))
        return None
    ticket = secrets.token_urlsafe(32)
    used = await run_blocking(logins.code_ok, who.tenant.id, who.user.id, code_hash, token_hash(ticket), address,
                              actor=actor_of(who))
    return ticket if used else None


def ticket_owner(state: CallStateService, ticket: str) -> TenantUser | None:
    """Whose live ticket this is (blocking: call through run_blocking)."""
    if not ticket or len(ticket) > 200:
        return None
    owner = state.web_logins.ticket_owner(token_hash(ticket))
    return state.config.find_user(*owner) if owner else None


async def choose_password(state: CallStateService, ticket: str, password: str, repeat: str,
                          ) -> tuple[TenantUser | None, str | None]:
    """The password chosen with a ticket: (the user, None) once stored (every session of the
    user ended, the login lock lifted, the ticket used up), else (the user or None, the problem's
    locale key: nothing changed)."""
    who = await run_blocking(ticket_owner, state, ticket)
    if who is None:
        return None, "login_ticket_over"
    problem = new_password_problem(who, password, repeat)
    if problem is not None:
        return who, problem
    fresh = await hash_in_pool(password)
    taken = await run_blocking(state.web_logins.take_ticket, token_hash(ticket), actor=actor_of(who))
    if taken != (who.tenant.id, who.user.id):
        return None, "login_ticket_over"
    await run_blocking(state.web_accounts.set_password_hash, who.tenant.id, who.user.id, fresh,
                       actor=actor_of(who), source="web")
    return who, None

