"""Roles and the one access check that every page and API endpoint goes through.

A user who is not a member of a project gets NotFoundError (404) for anything of it, so the
response does not reveal that the project exists.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from labelandlearn.errors import NotFoundError, ValidationError
from labelandlearn.storage.models import Membership, Project

ROLES = ("manager", "annotator", "reviewer")
# view: dashboard and progress; label: answer items; review: adjudicate; manage: settings,
# members, import, export, training, model download.
ACTIONS = ("view", "label", "review", "manage")
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "manager": frozenset(ACTIONS),
    "annotator": frozenset({"view", "label"}),
    "reviewer": frozenset({"view", "label", "review"}),
}


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationError(f"unknown role {role!r}; choose one of: {', '.join(ROLES)}")
    return role


def project_role(session: Session, user_id: int, project_id: int) -> str | None:
    return session.scalar(
        select(Membership.role).where(
            Membership.user_id == user_id, Membership.project_id == project_id
        )
    )


def require_project_access(
    session: Session, user_id: int, is_admin: bool, project_id: int, action: str
) -> Project:
    """Return the project when the user may do ``action`` on it; else raise NotFoundError."""
    project = session.get(Project, project_id)
    if project is not None and is_admin:
        return project
    role = project_role(session, user_id, project_id) if project is not None else None
    if project is None or role is None or action not in ROLE_ACTIONS[role]:
        raise NotFoundError(f"project {project_id} not found")
    return project


def visible_project_ids(session: Session, user_id: int, is_admin: bool) -> list[int] | None:
    """Return the ids of the projects the user may see; None means all (admin)."""
    if is_admin:
        return None
    return list(session.scalars(select(Membership.project_id).where(Membership.user_id == user_id)))


def set_membership(session: Session, project_id: int, user_id: int, role: str | None) -> None:
    """Give the user ``role`` in the project, or remove them when role is None."""
    membership = session.scalar(
        select(Membership).where(
            Membership.project_id == project_id, Membership.user_id == user_id
        )
    )
    if role is None:
        if membership is not None:
            session.delete(membership)
        return
    check_role(role)
    if membership is None:
        session.add(Membership(project_id=project_id, user_id=user_id, role=role))
    else:
        membership.role = role
