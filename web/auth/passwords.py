"""Password hashing with argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile) and the
rules a new password must meet."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 200  # argon2 takes any length; a megabyte "password" would only cost us CPU

_hasher = PasswordHasher()
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
