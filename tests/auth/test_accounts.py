from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from labelandlearn.auth import users
from labelandlearn.auth.passwords import check_password_policy, hash_password, verify_password
from labelandlearn.auth.permissions import require_project_access, set_membership
from labelandlearn.auth.ratelimit import LoginRateLimiter
from labelandlearn.errors import ConflictError, NotFoundError, ValidationError
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import ApiToken, Invite, Label, Project

GOOD_PASSWORD = "correct horse battery"


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "at least 10"),
        ("password123", "most common"),
        ("QWERTY12345", "most common"),
        ("alice-secret-99", "user name"),
    ],
)
def test_password_policy_rejects(password: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        check_password_policy(password, "alice")


def test_password_hash_is_argon2() -> None:
    hashed = hash_password(GOOD_PASSWORD)
    assert hashed.startswith("$argon2")
    assert verify_password(hashed, GOOD_PASSWORD)
    assert not verify_password(hashed, GOOD_PASSWORD + "x")
    assert not verify_password(None, GOOD_PASSWORD)


def test_create_and_authenticate(db: Database) -> None:
    user_id = users.create_user(db, "alice", GOOD_PASSWORD, is_admin=True)
    info = users.authenticate(db, "alice", GOOD_PASSWORD)
    assert info is not None
    assert info.id == user_id
    assert info.is_admin
    assert users.authenticate(db, "alice", "wrong password!!") is None
    assert users.authenticate(db, "nobody", GOOD_PASSWORD) is None
    assert users.has_admin(db)


def test_create_user_rejects_duplicates_and_bad_names(db: Database) -> None:
    users.create_user(db, "alice", GOOD_PASSWORD)
    with pytest.raises(ConflictError, match="already exists"):
        users.create_user(db, "alice", GOOD_PASSWORD)
    with pytest.raises(ValidationError, match="invalid"):
        users.create_user(db, "a b", GOOD_PASSWORD)
    with pytest.raises(ValidationError, match="reserved"):
        users.create_user(db, "local", GOOD_PASSWORD)


def test_password_change_applies_policy(db: Database) -> None:
    user_id = users.create_user(db, "alice", GOOD_PASSWORD)
    with pytest.raises(ValidationError, match="current password is wrong"):
        users.change_password(db, user_id, "not it at all", "another good one")
    with pytest.raises(ValidationError, match="most common"):
        users.change_password(db, user_id, GOOD_PASSWORD, "password1234")
    users.change_password(db, user_id, GOOD_PASSWORD, "another good one")
    assert users.authenticate(db, "alice", "another good one") is not None


def test_invite_is_single_use_and_expires(db: Database) -> None:
    token = users.create_invite(db, None, hours=1)
    users.accept_invite(db, token, "bob", GOOD_PASSWORD)
    with pytest.raises(NotFoundError, match="invalid, used or expired"):
        users.accept_invite(db, token, "carol", GOOD_PASSWORD)
    expired = users.create_invite(db, None, hours=1)
    with db.session() as session:
        session.execute(
            update(Invite)
            .where(Invite.used_at.is_(None))
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    with pytest.raises(NotFoundError, match="expired"):
        users.accept_invite(db, expired, "carol", GOOD_PASSWORD)


def test_api_token_stored_hashed_and_revocable(db: Database) -> None:
    user_id = users.create_user(db, "alice", GOOD_PASSWORD)
    token = users.create_api_token(db, user_id, "script")
    with db.session() as session:
        row = session.scalars(select(ApiToken)).one()
        assert token not in (row.token_hash, row.prefix)
        token_id = row.id
    info = users.user_for_api_token(db, token)
    assert info is not None
    assert info.id == user_id
    users.revoke_api_token(db, user_id, token_id)
    assert users.user_for_api_token(db, token) is None
    assert users.user_for_api_token(db, "lnl_forged") is None


def test_rate_limiter_blocks_after_failures() -> None:
    limiter = LoginRateLimiter(per_account=3, per_address=5, window_seconds=60)
    for _ in range(3):
        assert limiter.retry_after("alice", "1.2.3.4") == 0
        limiter.record_failure("alice", "1.2.3.4")
    assert limiter.retry_after("alice", "5.6.7.8") > 0
    assert limiter.retry_after("bob", "1.2.3.4") == 0
    limiter.record_failure("bob", "1.2.3.4")
    limiter.record_failure("carol", "1.2.3.4")
    assert limiter.retry_after("dave", "1.2.3.4") > 0


def test_project_access_by_role(db: Database) -> None:
    annotator = users.create_user(db, "anna", GOOD_PASSWORD)
    outsider = users.create_user(db, "otto", GOOD_PASSWORD)
    with db.session() as session:
        project = Project(name="p", labels=[Label(name="a", key="1"), Label(name="b", key="2")])
        session.add(project)
        session.flush()
        set_membership(session, project.id, annotator, "annotator")
        project_id = project.id
    with db.session() as session:
        assert require_project_access(session, annotator, False, project_id, "label")
        with pytest.raises(NotFoundError):
            require_project_access(session, annotator, False, project_id, "manage")
        with pytest.raises(NotFoundError):
            require_project_access(session, outsider, False, project_id, "view")
        assert require_project_access(session, outsider, True, project_id, "manage")
        with pytest.raises(NotFoundError):
            require_project_access(session, outsider, True, project_id + 100, "view")
