"""Users, invites and API tokens. Secrets (passwords, invite and API tokens) are stored hashed."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from labelandlearn.auth.passwords import (
    check_password_policy,
    hash_password,
    needs_rehash,
    verify_password,
)
from labelandlearn.errors import ConflictError, NotFoundError, ValidationError
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import ApiToken, Invite, User

logger = logging.getLogger(__name__)

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{3,150}$")
TOKEN_PREFIX = "lnl_"  # noqa: S105 - a public prefix, not a secret
# The user that the single-user mode on 127.0.0.1 acts as; it has no password.
LOCAL_USERNAME = "local"


@dataclass(frozen=True)
class UserInfo:
    id: int
    username: str
    is_admin: bool


def _info(user: User) -> UserInfo:
    return UserInfo(user.id, user.username, user.is_admin)


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_username(username: str) -> str:
    username = username.strip()
    if not USERNAME_PATTERN.match(username):
        raise ValidationError(
            f"user name {username!r} is invalid; use 3 to 150 letters, digits or _ . @ -"
        )
    if username == LOCAL_USERNAME:
        raise ValidationError(f"user name {LOCAL_USERNAME!r} is reserved; choose another")
    return username


def create_user(db: Database, username: str, password: str, *, is_admin: bool = False) -> int:
    username = check_username(username)
    check_password_policy(password, username)
    with db.session() as session:
        if session.scalar(select(User.id).where(User.username == username)) is not None:
            raise ConflictError(f"user {username!r} already exists")
        user = User(username=username, password_hash=hash_password(password), is_admin=is_admin)
        session.add(user)
        session.flush()
        logger.info("user %s created (admin=%s)", user.id, is_admin)
        return user.id


def has_admin(db: Database) -> bool:
    with db.session() as session:
        query = select(User.id).where(
            User.is_admin.is_(True), User.password_hash.is_not(None), User.is_active.is_(True)
        )
        return session.scalar(query.limit(1)) is not None


def authenticate(db: Database, username: str, password: str) -> UserInfo | None:
    """Return the user when the password matches, else None (same time for unknown users)."""
    with db.session() as session:
        user = session.scalar(select(User).where(User.username == username.strip()))
        stored = user.password_hash if user is not None and user.is_active else None
        if not verify_password(stored, password) or user is None:
            return None
        if stored and needs_rehash(stored):
            user.password_hash = hash_password(password)
        return _info(user)


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"user {user_id} not found")
    return user


def find_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFoundError(f"user {username!r} not found")
    return user


def change_password(db: Database, user_id: int, current: str, new: str) -> None:
    with db.session() as session:
        user = get_user(session, user_id)
        if not verify_password(user.password_hash, current):
            raise ValidationError("the current password is wrong")
        check_password_policy(new, user.username)
        user.password_hash = hash_password(new)
    logger.info("user %s changed their password", user_id)


def reset_password(db: Database, user_id: int, new: str) -> None:
    """Set a new password for a user, as an admin does for someone who forgot theirs."""
    with db.session() as session:
        user = get_user(session, user_id)
        check_password_policy(new, user.username)
        user.password_hash = hash_password(new)
    logger.info("password of user %s reset", user_id)


def create_invite(
    db: Database, created_by: int | None, *, is_admin: bool = False, hours: int = 72
) -> str:
    """Create an invite that expires after ``hours`` and return its token (shown once)."""
    if not 1 <= hours <= 24 * 30:
        raise ValidationError(f"an invite lasts 1 to 720 hours, got {hours}")
    token = secrets.token_urlsafe(32)
    with db.session() as session:
        session.add(
            Invite(
                token_hash=sha256(token),
                created_by=created_by,
                is_admin=is_admin,
                expires_at=datetime.now(UTC) + timedelta(hours=hours),
            )
        )
    return token


def invite_is_open(db: Database, token: str) -> bool:
    """Return whether the invite exists, is unused and has not expired."""
    with db.session() as session:
        invite = session.scalar(select(Invite).where(Invite.token_hash == sha256(token)))
        return (
            invite is not None
            and invite.used_at is None
            and _aware(invite.expires_at) > datetime.now(UTC)
        )


def accept_invite(db: Database, token: str, username: str, password: str) -> int:
    username = check_username(username)
    check_password_policy(password, username)
    with db.session() as session:
        invite = session.scalar(select(Invite).where(Invite.token_hash == sha256(token)))
        now = datetime.now(UTC)
        if invite is None or invite.used_at is not None or _aware(invite.expires_at) <= now:
            raise NotFoundError("this invite link is invalid, used or expired; ask for a new one")
        if session.scalar(select(User.id).where(User.username == username)) is not None:
            raise ConflictError(f"user {username!r} already exists; choose another name")
        user = User(
            username=username, password_hash=hash_password(password), is_admin=invite.is_admin
        )
        session.add(user)
        invite.used_at = now
        session.flush()
        logger.info("user %s signed up with invite %s", user.id, invite.id)
        return user.id


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes; every stored time is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def create_api_token(db: Database, user_id: int, name: str) -> str:
    """Create an API token and return it; only its hash is stored, so it is shown once."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise ValidationError("give the token a name of 1 to 100 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.session() as session:
        get_user(session, user_id)
        session.add(
            ApiToken(user_id=user_id, name=name, token_hash=sha256(token), prefix=token[:10])
        )
    logger.info("API token %r created for user %s", name, user_id)
    return token


def revoke_api_token(db: Database, user_id: int, token_id: int) -> None:
    with db.session() as session:
        token = session.get(ApiToken, token_id)
        if token is None or token.user_id != user_id:
            raise NotFoundError(f"API token {token_id} not found")
        token.revoked_at = datetime.now(UTC)
    logger.info("API token %s of user %s revoked", token_id, user_id)


def user_for_api_token(db: Database, token: str) -> UserInfo | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    with db.session() as session:
        row = session.scalar(
            select(ApiToken).where(
                ApiToken.token_hash == sha256(token), ApiToken.revoked_at.is_(None)
            )
        )
        if row is None:
            return None
        user = session.get(User, row.user_id)
        if user is None or not user.is_active:
            return None
        now = datetime.now(UTC)
        if row.last_used_at is None or now - _aware(row.last_used_at) > timedelta(minutes=1):
            row.last_used_at = now
        return _info(user)
