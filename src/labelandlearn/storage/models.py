"""SQLAlchemy models of projects, labels, items, answers, model versions and jobs.

``Item.label_id`` is a denormalised copy of the label that training uses for the item; it is
written in the same transaction as the answer that sets it, so queries for the next item and
for training data need no join on answers.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import false as sa_false
from sqlalchemy import true as sa_true
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """Return ``moment`` in ISO 8601 with its UTC offset.

    SQLite gives back the stored UTC times without a zone, so they get UTC here, and an API
    reports the same time the same way on both databases.
    """
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def new_uuid() -> str:
    return str(uuid.uuid4())


# The model recipe of a new project: TF-IDF plus e5-small embeddings with a linear classifier,
# trained on TF-IDF alone until the background job has embedded every item. The recipes are
# registered in labelandlearn.learning; docs/benchmarks.md has the comparison behind this choice.
DEFAULT_MODEL = "tfidf-embedding-linear"
# The query strategy of a new project: margin sampling made diverse by k-means over the most
# uncertain items. With the default model it needed the fewest labels in the simulations.
DEFAULT_STRATEGY = "diverse-margin"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    text_column: Mapped[str] = mapped_column(String(200), default="text")
    id_column: Mapped[str | None] = mapped_column(String(200))
    label_column: Mapped[str | None] = mapped_column(String(200))
    model_name: Mapped[str] = mapped_column(String(100), default=DEFAULT_MODEL)
    strategy_name: Mapped[str] = mapped_column(String(100), default=DEFAULT_STRATEGY)
    retrain_every: Mapped[int] = mapped_column(Integer, default=50)
    # How many annotators answer each item, and how long a handed-out item stays reserved.
    overlap: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    lease_seconds: Mapped[int] = mapped_column(Integer, default=1800, server_default="1800")
    # Whether an item with one answer (below the overlap) is used for training.
    train_on_single_answers: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=sa_true()
    )
    current_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", use_alter=True, ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    labels: Mapped[list[Label]] = relationship(
        back_populates="project",
        order_by="Label.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Label(Base):
    __tablename__ = "labels"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_labels_project_name"),
        UniqueConstraint("project_id", "key", name="uq_labels_project_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(20))
    color: Mapped[str] = mapped_column(String(7), default="#6c757d")
    position: Mapped[int] = mapped_column(Integer, default=0)

    project: Mapped[Project] = relationship(back_populates="labels")


class Dataset(Base):
    """One imported file and its import report."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(500))
    file_format: Mapped[str] = mapped_column(String(20))
    encoding: Mapped[str | None] = mapped_column(String(40))
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    rows_imported: Mapped[int] = mapped_column(Integer, default=0)
    rows_labelled: Mapped[int] = mapped_column(Integer, default=0)
    rows_with_errors: Mapped[int] = mapped_column(Integer, default=0)
    duplicates_skipped: Mapped[int] = mapped_column(Integer, default=0)
    duplicates_kept: Mapped[int] = mapped_column(Integer, default=0)
    row_errors: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        # Serves the next item: open items of a project, highest priority first, then file
        # order.
        Index("ix_items_queue", "project_id", "done", text("score DESC"), "position"),
        Index("ix_items_project_position", "project_id", "position"),
        Index("ix_items_project_hash", "project_id", "text_hash"),
        Index("ix_items_project_external_id", "project_id", "external_id"),
        # Counts labelled items, in all and per label, from the index alone.
        Index("ix_items_project_label", "project_id", "label_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE")
    )
    external_id: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(40))
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    position: Mapped[int] = mapped_column(Integer)
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"))
    # Labelled answers from annotators (skips excluded); the item is done once this reaches
    # the project's overlap, or a reviewer decided it, or the import brought a label.
    n_answers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    done: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    reviewed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    labelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Priority from the project's query strategy: higher is asked first; 0 until scored.
    score: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Answer(Base):
    """One labeller's answer on one item; a NULL label means the item was skipped.

    The primary key is generated by the client, so a retried request stores one answer.
    Imported labels are answers with source ``import`` and no user.
    """

    __tablename__ = "answers"
    __table_args__ = (
        UniqueConstraint("item_id", "user_id", name="uq_answers_item_user"),
        Index("ix_answers_project_created", "project_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(20), default="labeller")
    predicted_label_id: Mapped[int | None] = mapped_column(
        ForeignKey("labels.id", ondelete="SET NULL")
    )
    predicted_confidence: Mapped[float | None] = mapped_column(Float)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelVersion(Base):
    """A trained model: settings, serialised weights, the labels it saw and its metrics."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("project_id", "version", name="uq_model_project_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    model_name: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    n_labels: Mapped[int] = mapped_column(Integer, default=0)
    class_counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    training_seconds: Mapped[float | None] = mapped_column(Float)
    weights: Mapped[bytes] = deferred(mapped_column(LargeBinary))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    """A background job (import, training, scoring, export) and its progress."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Lease(Base):
    """One of an item's ``overlap`` slots, held by an annotator.

    The unique (item_id, slot) pair makes handing out atomic on SQLite and PostgreSQL: two
    annotators racing for the last slot cannot both insert it. ``expires_at`` is NULL once the
    holder answered, so the slot stays taken.
    """

    __tablename__ = "leases"
    __table_args__ = (
        UniqueConstraint("item_id", "slot", name="uq_leases_item_slot"),
        UniqueConstraint("item_id", "user_id", name="uq_leases_item_user"),
        Index("ix_leases_user", "user_id", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    slot: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Membership(Base):
    """A user's role in one project: manager, annotator or reviewer."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("project_id", "user_id", name="uq_membership"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    """A token for scripts; only its SHA-256 is stored, the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Invite(Base):
    """A signup link that expires; only the SHA-256 of its token is stored."""

    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
