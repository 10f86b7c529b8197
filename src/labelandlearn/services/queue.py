"""Handing out items under leases, so that each item goes to at most ``overlap`` annotators.

Each item has ``overlap`` slots, rows of the ``leases`` table unique on (item_id, slot). An
annotator claims a slot with an INSERT that does nothing on conflict, so two annotators racing
for the last slot cannot both get it, on SQLite and on PostgreSQL alike. A slot whose lease
expired is freed the next time someone claims a slot of that item; an answered slot has no
expiry and stays taken.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from labelandlearn.storage.models import Answer, Item, Lease, Project

# How many queue candidates to look at per requested item before giving up; candidates can be
# lost to other annotators between the query and the claim.
CANDIDATE_FACTOR = 4
CLAIM_ROUNDS = 4


def utcnow() -> datetime:
    return datetime.now(UTC)


def _insert(session: Session):  # type: ignore[no-untyped-def]
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def active_slots(now: datetime):  # type: ignore[no-untyped-def]
    """Count of an item's slots that are answered or under an unexpired lease."""
    return (
        select(func.count())
        .select_from(Lease)
        .where(
            Lease.item_id == Item.id,
            (Lease.expires_at.is_(None)) | (Lease.expires_at > now),
        )
        .scalar_subquery()
    )


def claim_slot(
    session: Session, project: Project, item_id: int, user_id: int, expires_at: datetime | None
) -> bool:
    """Give one free slot of the item to the user; return False when none is free.

    A slot the user already holds on the item gets the new ``expires_at`` instead; None
    makes it permanent (answered).
    """
    now = utcnow()
    own = session.scalar(select(Lease).where(Lease.item_id == item_id, Lease.user_id == user_id))
    if own is not None:
        own.expires_at = expires_at
        return True
    session.execute(
        delete(Lease).where(Lease.item_id == item_id, Lease.expires_at <= now)
    )
    taken = set(session.scalars(select(Lease.slot).where(Lease.item_id == item_id)))
    insert = _insert(session)
    for slot in range(project.overlap):
        if slot in taken:
            continue
        statement = (
            insert(Lease)
            .values(
                project_id=project.id,
                item_id=item_id,
                user_id=user_id,
                slot=slot,
                expires_at=expires_at,
            )
            .on_conflict_do_nothing()
            .returning(Lease.id)
        )
        # RETURNING yields a row only when the insert happened; rowcount is not reliable
        # for INSERT .. RETURNING on every driver.
        if session.execute(statement).first() is not None:
            return True
    return False


def release(session: Session, item_id: int, user_id: int) -> None:
    session.execute(delete(Lease).where(Lease.item_id == item_id, Lease.user_id == user_id))


def mark_answered(session: Session, project: Project, item_id: int, user_id: int) -> bool:
    """Make the user's slot on the item permanent; claim one if the lease had lapsed.

    Returns False when every slot of the item is taken by others.
    """
    return claim_slot(session, project, item_id, user_id, expires_at=None)


def lease_items(
    session: Session,
    project: Project,
    user_id: int,
    limit: int,
    exclude: list[int],
) -> list[Item]:
    """Return up to ``limit`` items leased to the user, highest priority first.

    Items the user still holds come first, so a reloaded page shows the same items.
    """
    now = utcnow()
    expires_at = now + timedelta(seconds=project.lease_seconds)
    excluded = list(exclude)[:1000]

    held_query = (
        select(Item)
        .join(Lease, Lease.item_id == Item.id)
        .where(
            Lease.project_id == project.id,
            Lease.user_id == user_id,
            Lease.expires_at > now,
        )
        .order_by(Item.score.desc(), Item.position)
        .limit(limit)
    )
    if excluded:
        held_query = held_query.where(Item.id.not_in(excluded))
    items = list(session.scalars(held_query))
    if len(items) >= limit:
        return items

    answered = exists().where(and_(Answer.item_id == Item.id, Answer.user_id == user_id))
    holds = exists().where(and_(Lease.item_id == Item.id, Lease.user_id == user_id))
    tried = excluded + [item.id for item in items]
    window = (limit - len(items)) * CANDIDATE_FACTOR
    # Other annotators may claim the top candidates between the query and the claim; each
    # round looks further down the queue, so a busy project still hands out items.
    for _round in range(CLAIM_ROUNDS):
        candidates_query = (
            select(Item)
            .where(
                Item.project_id == project.id,
                Item.done.is_(False),
                ~answered,
                ~holds,
                active_slots(now) < project.overlap,
            )
            .order_by(Item.score.desc(), Item.position)
            .limit(window)
        )
        if tried:
            candidates_query = candidates_query.where(Item.id.not_in(tried))
        candidates = session.scalars(candidates_query).all()
        for item in candidates:
            tried.append(item.id)
            if claim_slot(session, project, item.id, user_id, expires_at):
                items.append(item)
                if len(items) >= limit:
                    return items
        if len(candidates) < window:
            break
        window *= 4
    return items
