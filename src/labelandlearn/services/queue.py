"""Handing out items under leases, so that each item goes to at most ``overlap`` annotators.

Each item has ``overlap`` slots, rows of the ``leases`` table unique on (item_id, slot). An
annotator claims a slot with an INSERT that does nothing on conflict, so two annotators racing
for the last slot cannot both get it, on SQLite and on PostgreSQL alike. A slot whose lease
expired is freed the next time someone fails to claim a slot of that item; an answered slot
has no expiry and stays taken.

The functions here run Core statements on the caller's session: they sit on the path of every
labelling request, where ORM object loading cost more than the queries themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import (
    BindParameter,
    CompoundSelect,
    Delete,
    Row,
    ScalarSelect,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    delete,
    exists,
    false,
    func,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from labelandlearn.storage.models import Answer, Item, Lease

# Queue candidates read per requested item in the first claim round. Other annotators can
# take a candidate between the query and the claim, so more are read than requested.
CANDIDATE_FACTOR = 4
CLAIM_ROUNDS = 4

LEASES: Table = Lease.__table__  # type: ignore[assignment]
ITEMS: Table = Item.__table__  # type: ignore[assignment]
ANSWERS: Table = Answer.__table__  # type: ignore[assignment]

# The columns of an item that the labelling screen shows.
ITEM_COLUMNS = (ITEMS.c.id, ITEMS.c.text, ITEMS.c.external_id, ITEMS.c.meta)


class LeaseSettings(Protocol):
    """The project settings that leasing reads (an ORM Project or a cached snapshot)."""

    @property
    def id(self) -> int: ...

    @property
    def overlap(self) -> int: ...

    @property
    def lease_seconds(self) -> int: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


def active_slots(now: Any) -> ScalarSelect[int]:
    """Count of an item's slots that are answered or under an unexpired lease."""
    return (
        select(func.count())
        .select_from(LEASES)
        .where(
            LEASES.c.item_id == ITEMS.c.id,
            (LEASES.c.expires_at.is_(None)) | (LEASES.c.expires_at > now),
        )
        .scalar_subquery()
    )


# The statements below are built once: SQLAlchemy memoizes the cache key of a statement
# object, so reusing one with new bound parameters skips building and hashing the statement
# tree on every request.
_RENEW: Update = (
    update(LEASES)
    .where(
        LEASES.c.item_id == bindparam("lease_item_id"),
        LEASES.c.user_id == bindparam("lease_user_id"),
    )
    .values(expires_at=bindparam("new_expires_at"))
)
_DELETE_EXPIRED: Delete = delete(LEASES).where(
    LEASES.c.item_id == bindparam("item_id"), LEASES.c.expires_at <= bindparam("now")
)
_RELEASE: Delete = delete(LEASES).where(
    LEASES.c.item_id == bindparam("item_id"), LEASES.c.user_id == bindparam("user_id")
)
_INSERT_LEASE = {
    name: dialect.insert(LEASES).on_conflict_do_nothing().returning(LEASES.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def _held_query(with_excluded: bool) -> Select[Any]:
    query = (
        select(*ITEM_COLUMNS)
        .join(LEASES, LEASES.c.item_id == ITEMS.c.id)
        .where(
            LEASES.c.project_id == bindparam("project_id"),
            LEASES.c.user_id == bindparam("user_id"),
            LEASES.c.expires_at > bindparam("now"),
        )
        .order_by(ITEMS.c.score.desc(), ITEMS.c.position)
        .limit(bindparam("limit"))
    )
    if with_excluded:
        query = query.where(ITEMS.c.id.not_in(bindparam("excluded", expanding=True)))
    return query


def _candidates_query(with_tried: bool) -> Select[Any]:
    user_id: BindParameter[int] = bindparam("user_id")
    answered = exists().where(and_(ANSWERS.c.item_id == ITEMS.c.id, ANSWERS.c.user_id == user_id))
    holds = exists().where(and_(LEASES.c.item_id == ITEMS.c.id, LEASES.c.user_id == user_id))
    query = (
        select(*ITEM_COLUMNS)
        .where(
            ITEMS.c.project_id == bindparam("project_id"),
            ITEMS.c.done.is_(False),
            ~answered,
            ~holds,
            active_slots(bindparam("now")) < bindparam("overlap"),
        )
        .order_by(ITEMS.c.score.desc(), ITEMS.c.position)
        .limit(bindparam("window"))
    )
    if with_tried:
        query = query.where(ITEMS.c.id.not_in(bindparam("tried", expanding=True)))
    return query


def _held_and_candidates_query(with_excluded: bool) -> CompoundSelect[Any]:
    """Return the held items and the first candidates in one statement, held ones first.

    The ``held`` column is true for the held items. The candidate part leaves out the items
    that the user has a lease on, so no item is in both parts. Its ``tried`` parameter takes
    the same ids as ``excluded``.
    """
    held = _held_query(with_excluded).add_columns(
        true().label("held"), ITEMS.c.score, ITEMS.c.position
    )
    candidates = _candidates_query(with_excluded).add_columns(
        false().label("held"), ITEMS.c.score, ITEMS.c.position
    )
    held_part = held.subquery("held_items")
    candidate_part = candidates.subquery("candidate_items")
    return union_all(select(held_part), select(candidate_part)).order_by(
        held_part.c.held.desc(), held_part.c.score.desc(), held_part.c.position
    )


_CANDIDATES = {flag: _candidates_query(flag) for flag in (False, True)}
_HELD_AND_CANDIDATES = {flag: _held_and_candidates_query(flag) for flag in (False, True)}


def _insert_free_slot(
    session: Session,
    project: LeaseSettings,
    item_id: int,
    user_id: int,
    expires_at: datetime | None,
) -> bool:
    connection = session.connection()
    statement = _INSERT_LEASE[connection.dialect.name]
    for slot in range(project.overlap):
        values = {
            "project_id": project.id,
            "item_id": item_id,
            "user_id": user_id,
            "slot": slot,
            "expires_at": expires_at,
        }
        # RETURNING yields a row only when the insert happened; rowcount is not reliable
        # for INSERT .. RETURNING on every driver.
        if connection.execute(statement, values).first() is not None:
            return True
    return False


def _claim_new_slot(
    session: Session,
    project: LeaseSettings,
    item_id: int,
    user_id: int,
    expires_at: datetime | None,
) -> bool:
    """Insert a lease for a user who holds none on the item; free expired slots if needed.

    Trying the insert first saves the DELETE in the common case of a free slot. Only when
    every slot is taken do expired leases get deleted, and the insert is tried once more.
    """
    if _insert_free_slot(session, project, item_id, user_id, expires_at):
        return True
    expired = session.connection().execute(_DELETE_EXPIRED, {"item_id": item_id, "now": utcnow()})
    if not expired.rowcount:
        return False
    return _insert_free_slot(session, project, item_id, user_id, expires_at)


def claim_slot(
    session: Session,
    project: LeaseSettings,
    item_id: int,
    user_id: int,
    expires_at: datetime | None,
) -> bool:
    """Give one free slot of the item to the user; return False when none is free.

    A slot the user already holds on the item gets the new ``expires_at`` instead; None
    makes it permanent (answered).
    """
    renewed = session.connection().execute(
        _RENEW,
        {"lease_item_id": item_id, "lease_user_id": user_id, "new_expires_at": expires_at},
    )
    if renewed.rowcount:
        return True
    return _claim_new_slot(session, project, item_id, user_id, expires_at)


def release(session: Session, item_id: int, user_id: int) -> None:
    session.execute(delete(LEASES).where(LEASES.c.item_id == item_id, LEASES.c.user_id == user_id))


def mark_answered(session: Session, project: LeaseSettings, item_id: int, user_id: int) -> bool:
    """Make the user's slot on the item permanent; claim one if the lease had lapsed.

    Returns False when every slot of the item is taken by others.
    """
    return claim_slot(session, project, item_id, user_id, expires_at=None)


def lease_items(
    session: Session,
    project: LeaseSettings,
    user_id: int,
    limit: int,
    exclude: Sequence[int],
) -> list[Row[*tuple[Any, ...]]]:
    """Return up to ``limit`` items leased to the user, highest priority first.

    Each row has at least the columns of ``ITEM_COLUMNS``. Items the user still holds come
    first, so a reloaded page shows the same items.
    """
    connection = session.connection()
    now = utcnow()
    expires_at = now + timedelta(seconds=project.lease_seconds)
    excluded = list(exclude)[:1000]
    params: dict[str, Any] = {"project_id": project.id, "user_id": user_id, "now": now}

    # The first round reads the held items and the first candidates in one statement. Most
    # requests find no held item and claim one of these candidates.
    window = limit * CANDIDATE_FACTOR
    first_round = connection.execute(
        _HELD_AND_CANDIDATES[bool(excluded)],
        {
            **params,
            "limit": limit,
            "excluded": excluded,
            "overlap": project.overlap,
            "window": window,
            "tried": excluded,
        },
    ).all()
    items = [row for row in first_round if row.held]
    if len(items) >= limit:
        return items
    candidates = [row for row in first_round if not row.held]

    tried = excluded + [item.id for item in items]
    # Other annotators may claim the top candidates between the query and the claim. Each
    # round looks further down the queue, so a busy project still hands out items.
    for round_number in range(CLAIM_ROUNDS):
        if round_number > 0:
            candidates = list(
                connection.execute(
                    _CANDIDATES[bool(tried)],
                    {**params, "overlap": project.overlap, "window": window, "tried": tried},
                )
            )
        for item in candidates:
            tried.append(item.id)
            # The candidate query left out items the user holds a lease on, so no lease of
            # this user needs renewing: go straight to the insert.
            if _claim_new_slot(session, project, item.id, user_id, expires_at):
                items.append(item)
                if len(items) >= limit:
                    return items
        if len(candidates) < window:
            break
        window *= 4
    return items
