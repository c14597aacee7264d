"""Password hashing with argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile) and the
rules a new password must meet."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 200  # argon2 takes any length; a megabyte "password" would only cost us CPU

HASHING_THREADS = 2  # argon2 is CPU work: more threads than cores only queue inside the kernel

T = TypeVar("T")
_hasher = PasswordHasher()
_pool: ThreadPoolExecutor | None = None
# Verified when the user has no password, so an unknown user costs the same time as a wrong one.
_DUMMY = _hasher.hash("not a password of anyone")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches `stored`; None (no password yet) is checked against a dummy
    hash so that the answer takes as long."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)


def password_problem(password: str, *, user_words: tuple[str, ...] = ()) -> str | None:
    """The locale key of what is wrong with a new password, or None."""
    if len(password) < MIN_LENGTH:
        return "password_too_short"
    if len(password) > MAX_LENGTH:
        return "password_too_long"
    lowered = password.lower()
    if any(word and len(word) >= 3 and word.lower() in lowered for word in user_words):
        return "password_has_name"
    if len(set(password)) < 4:
        return "password_too_simple"
    return None


# Hashing has a pool of its own, apart from `base.offload`'s: a burst of logins or code requests
# then queues here, and never takes the threads that answer calls (FastAGI, the IVRs' storage).

def _hashing_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=HASHING_THREADS, thread_name_prefix="vipbx-argon2")
    return _pool


async def _hashing(fn: Callable[..., T], *args: object) -> T:
    call = functools.partial(contextvars.copy_context().run, fn, *args)
    return await asyncio.get_running_loop().run_in_executor(_hashing_pool(), call)


async def hash_in_pool(password: str) -> str:
    """`hash_password` in the hashing pool."""
    return await _hashing(hash_password, password)


async def verify_in_pool(stored: str | None, password: str) -> bool:
    """`verify_password` in the hashing pool."""
    return await _hashing(verify_password, stored, password)
