"""Argon2 password hashes and the one password policy for create, change and reset."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from labelandlearn.errors import ValidationError

MIN_LENGTH = 10
MAX_LENGTH = 256

_hasher = PasswordHasher()
# Verified when a login names an unknown user, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("labelandlearn-dummy-password")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files("labelandlearn.auth").joinpath("common_passwords.txt").read_text()
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def check_password_policy(password: str, username: str = "") -> None:
    """Raise ValidationError when the password breaks the policy, saying what to change."""
    if len(password) < MIN_LENGTH:
        raise ValidationError(
            f"the password has {len(password)} characters; use at least {MIN_LENGTH}"
        )
    if len(password) > MAX_LENGTH:
        raise ValidationError(f"the password is longer than {MAX_LENGTH} characters")
    lowered = password.lower()
    if lowered in common_passwords():
        raise ValidationError("this password is one of the most common ones; choose another")
    if username and username.lower() in lowered:
        raise ValidationError("the password contains the user name; choose another")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Return whether ``password`` matches; a missing hash never matches."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
