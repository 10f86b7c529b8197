"""Training labels from several answers, the review queue and a reviewer's gold label.

Answer sources: ``labeller`` (given on the labelling screen), ``import`` (from a file) and
``review`` (a reviewer's decision, the gold label). Every labelled answer that is not a review
is a vote; skips (answers without a label) are not.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Table, and_, bindparam, exists, func, select, union, update
from sqlalchemy.orm import Session

from labelandlearn.errors import ConflictError, NotFoundError, ValidationError
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Item, Label, Project, User, iso_utc

logger = logging.getLogger(__name__)

T = TypeVar("T")

REVIEW_SOURCE = "review"
DEFAULT_CONFIDENCE = 0.9
MAX_PAGE = 200
# Ids per IN (...) query, well below SQLite's default limit of 32,766 bound parameters.
ID_CHUNK = 2000

ITEMS: Table = Item.__table__  # type: ignore[assignment]

REASON_DISAGREEMENT = "disagreement"
REASON_MODEL = "model"


def training_label(
    answers: Sequence[int | None], gold: int | None, count_single: bool
) -> int | None:
    """Return the label id that training uses for an item, or None while it waits.

    A reviewer's gold label wins. Otherwise the majority of the labelled answers (``None``
    entries are skips and do not vote) decides, and a tie waits for review. An item with a
    single labelled answer counts only when ``count_single`` is true.
    """
    if gold is not None:
        return gold
    votes = [label for label in answers if label is not None]
    if not votes:
        return None
    if len(votes) == 1 and not count_single:
        return None
    ranked = Counter(votes).most_common(2)
    if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]


class TrainingLabelSettings(Protocol):
    """The project settings that decide training labels (an ORM Project or a snapshot)."""

    @property
    def overlap(self) -> int: ...

    @property
    def train_on_single_answers(self) -> bool: ...


def counts_single_answers(project: TrainingLabelSettings) -> bool:
    """Return whether the project trains on items that have one answer.

    With an overlap of 1 every item has one answer by design, so it always counts.
    """
    return project.overlap <= 1 or project.train_on_single_answers


def chunked(values: Sequence[T], size: int = ID_CHUNK) -> Iterator[Sequence[T]]:
    """Yield slices of at most ``size`` values, to keep IN (...) lists within limits."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass
class _ItemAnswers:
    votes: list[int] = field(default_factory=list)
    gold: int | None = None
    labeller_answers: int = 0
    imported: bool = False
    newest: datetime | None = None


ANSWERS: Table = Answer.__table__  # type: ignore[assignment]
_ANSWER_VOTE_COLUMNS = (
    ANSWERS.c.item_id,
    ANSWERS.c.label_id,
    ANSWERS.c.source,
    ANSWERS.c.created_at,
)
# Built once, so SQLAlchemy reuses their memoized cache keys: the labelling hot path refreshes
# one item after every answer.
_ANSWERS_OF_ITEM = (
    select(*_ANSWER_VOTE_COLUMNS)
    .where(ANSWERS.c.item_id == bindparam("item_id"), ANSWERS.c.label_id.is_not(None))
    .order_by(ANSWERS.c.created_at)
)
_ANSWERS_OF_ITEMS = (
    select(*_ANSWER_VOTE_COLUMNS)
    .where(
        ANSWERS.c.item_id.in_(bindparam("item_ids", expanding=True)),
        ANSWERS.c.label_id.is_not(None),
    )
    .order_by(ANSWERS.c.created_at)
)
# The bound names differ from the column names, which SQLAlchemy reserves in UPDATE ... SET.
_UPDATE_TRAINING_LABEL = (
    update(ITEMS)
    .where(ITEMS.c.id.in_(bindparam("item_ids", expanding=True)))
    .values(
        label_id=bindparam("new_label_id"),
        labelled_at=bindparam("new_labelled_at"),
        n_answers=bindparam("new_n_answers"),
        reviewed=bindparam("new_reviewed"),
        done=bindparam("new_done"),
    )
)


def _collect_answers(session: Session, item_ids: Sequence[int]) -> dict[int, _ItemAnswers]:
    collected: dict[int, _ItemAnswers] = {item_id: _ItemAnswers() for item_id in item_ids}
    # Core statements on the session's connection skip the ORM autoflush, so flush here.
    session.flush()
    connection = session.connection()
    for chunk in chunked(item_ids):
        if len(chunk) == 1:
            rows = connection.execute(_ANSWERS_OF_ITEM, {"item_id": chunk[0]})
        else:
            rows = connection.execute(_ANSWERS_OF_ITEMS, {"item_ids": list(chunk)})
        for item_id, label_id, source, created_at in rows:
            if label_id is None:
                continue
            entry = collected[item_id]
            entry.newest = created_at
            if source == REVIEW_SOURCE:
                entry.gold = label_id
                continue
            entry.votes.append(label_id)
            entry.labeller_answers += source == "labeller"
            entry.imported = entry.imported or source == "import"
    return collected


@dataclass(frozen=True)
class RefreshCounts:
    """How many refreshed items got a training label, and how many wait on a tie."""

    labelled: int
    tied: int


def refresh_training_labels(
    session: Session, project: TrainingLabelSettings, item_ids: Sequence[int]
) -> RefreshCounts:
    """Recompute the training label, answer count and flags of many items in bulk.

    The label follows :func:`training_label`. An item is done once it is reviewed, carries
    an imported answer, or has as many labeller answers as the project's overlap.
    """
    count_single = counts_single_answers(project)
    collected = _collect_answers(session, list(item_ids))
    # Items that get the same values share one UPDATE ... WHERE id IN (...): after an import
    # there are a handful of distinct value sets, so this beats one statement per item.
    groups: dict[tuple[Any, ...], list[int]] = {}
    labelled = tied = 0
    for item_id, entry in collected.items():
        label_id = training_label(entry.votes, entry.gold, count_single)
        if label_id is not None:
            labelled += 1
        elif entry.gold is None and len(entry.votes) > 1:
            tied += 1
        reviewed = entry.gold is not None
        values = (
            label_id,
            entry.newest if label_id is not None else None,
            entry.labeller_answers,
            reviewed,
            reviewed or entry.imported or entry.labeller_answers >= project.overlap,
        )
        groups.setdefault(values, []).append(item_id)
    connection = session.connection()
    for values, ids in groups.items():
        label_id, labelled_at, n_answers, reviewed, done = values
        for chunk in chunked(ids):
            connection.execute(
                _UPDATE_TRAINING_LABEL,
                {
                    "item_ids": list(chunk),
                    "new_label_id": label_id,
                    "new_labelled_at": labelled_at,
                    "new_n_answers": n_answers,
                    "new_reviewed": reviewed,
                    "new_done": done,
                },
            )
    return RefreshCounts(labelled=labelled, tied=tied)


# Review queue


@dataclass
class ReviewEntry:
    """An item waiting for review, why it is in the queue, and its answers."""

    item_id: int
    text: str
    position: int
    reasons: list[str]
    votes: dict[str, int]
    answers: list[dict[str, Any]]


@dataclass
class ReviewPage:
    total: int
    entries: list[ReviewEntry]


def _vote_filter(project_id: int) -> Any:
    return and_(
        Answer.project_id == project_id,
        Answer.label_id.is_not(None),
        Answer.source != REVIEW_SOURCE,
    )


def _disagreement_items(project_id: int) -> Any:
    return (
        select(Answer.item_id)
        .where(_vote_filter(project_id))
        .group_by(Answer.item_id)
        .having(func.count(func.distinct(Answer.label_id)) > 1)
    )


def _model_items(project_id: int, confidence: float) -> Any:
    return select(Answer.item_id).where(
        _vote_filter(project_id),
        Answer.predicted_label_id.is_not(None),
        Answer.predicted_confidence >= confidence,
        Answer.label_id != Answer.predicted_label_id,
    )


def review_queue(
    db: Database,
    project_id: int,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    limit: int = 50,
    offset: int = 0,
) -> ReviewPage:
    """Return one page of the items that need a reviewer, in file order.

    An item needs review when its labelled answers disagree, or when an answer disagrees
    with a model prediction that was shown with at least ``confidence``. Items that already
    have a review answer are left out.
    """
    if not 0.0 <= confidence <= 1.0:
        raise ValidationError(f"confidence {confidence} is outside 0 to 1; pass a probability")
    limit = max(1, min(limit, MAX_PAGE))
    candidates = union(
        _disagreement_items(project_id), _model_items(project_id, confidence)
    ).subquery()
    reviewed = exists().where(Answer.item_id == Item.id, Answer.source == REVIEW_SOURCE)
    query = select(Item).where(
        Item.project_id == project_id, Item.id.in_(select(candidates.c.item_id)), ~reviewed
    )
    with db.session() as session:
        if session.get(Project, project_id) is None:
            raise NotFoundError(f"project {project_id} not found")
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        items = list(
            session.scalars(
                query.order_by(Item.position, Item.id).limit(limit).offset(max(0, offset))
            )
        )
        entries = _review_entries(session, project_id, items, confidence)
    return ReviewPage(total=total, entries=entries)


def _review_entries(
    session: Session, project_id: int, items: list[Item], confidence: float
) -> list[ReviewEntry]:
    if not items:
        return []
    label_rows = session.execute(select(Label.id, Label.name).where(Label.project_id == project_id))
    label_names = {label_id: name for label_id, name in label_rows}
    rows = session.execute(
        select(Answer, User.username)
        .outerjoin(User, User.id == Answer.user_id)
        .where(Answer.item_id.in_([item.id for item in items]), Answer.label_id.is_not(None))
        .order_by(Answer.created_at)
    ).all()
    by_item: dict[int, list[tuple[Answer, str | None]]] = {}
    for answer, username in rows:
        by_item.setdefault(answer.item_id, []).append((answer, username))

    entries = []
    for item in items:
        answers = by_item.get(item.id, [])
        votes = Counter(label_names[a.label_id] for a, _ in answers if a.label_id is not None)
        reasons = []
        if len(votes) > 1:
            reasons.append(REASON_DISAGREEMENT)
        if any(_disagrees_with_model(answer, confidence) for answer, _ in answers):
            reasons.append(REASON_MODEL)
        entries.append(
            ReviewEntry(
                item_id=item.id,
                text=item.text,
                position=item.position,
                reasons=reasons,
                votes=dict(votes),
                answers=[_answer_entry(a, username, label_names) for a, username in answers],
            )
        )
    return entries


def _disagrees_with_model(answer: Answer, confidence: float) -> bool:
    return (
        answer.predicted_label_id is not None
        and answer.predicted_confidence is not None
        and answer.predicted_confidence >= confidence
        and answer.label_id != answer.predicted_label_id
    )


def _answer_entry(
    answer: Answer, username: str | None, label_names: dict[int, str]
) -> dict[str, Any]:
    predicted = answer.predicted_label_id
    return {
        "answer_id": answer.id,
        "user_id": answer.user_id,
        "username": username,
        "source": answer.source,
        "label": label_names.get(answer.label_id) if answer.label_id is not None else None,
        "predicted_label": label_names.get(predicted) if predicted is not None else None,
        "predicted_confidence": answer.predicted_confidence,
        "created_at": iso_utc(answer.created_at),
    }


# Resolving


def resolve(db: Database, item_id: int, reviewer_id: int, label_id: int) -> dict[str, Any]:
    """Store the reviewer's decision as the item's gold label and return the review answer.

    The decision is an answer with source ``review`` by the reviewer; the annotators' answers
    stay as they are. A second decision by the same reviewer replaces the first. The caller
    checks that the reviewer may review the project.
    """
    with db.session() as session:
        item = session.get(Item, item_id)
        if item is None:
            raise NotFoundError(f"item {item_id} not found")
        project = session.get(Project, item.project_id)
        assert project is not None
        if session.get(User, reviewer_id) is None:
            raise NotFoundError(f"user {reviewer_id} not found")
        label = session.get(Label, label_id)
        if label is None or label.project_id != item.project_id:
            raise ValidationError(
                f"label id {label_id} is not a label of project {item.project_id}; "
                "pick one of the project's labels"
            )

        now = datetime.now(UTC)
        answer = session.scalar(
            select(Answer).where(Answer.item_id == item_id, Answer.user_id == reviewer_id)
        )
        if answer is not None and answer.source != REVIEW_SOURCE:
            # One answer per (item, user) is a database constraint, so an annotator's own
            # answer cannot sit beside their review of the same item.
            raise ConflictError(
                f"user {reviewer_id} answered item {item_id} as an annotator; "
                "another reviewer must decide it"
            )
        if answer is None:
            answer = Answer(
                id=str(uuid.uuid4()),
                project_id=item.project_id,
                item_id=item_id,
                user_id=reviewer_id,
                source=REVIEW_SOURCE,
            )
            session.add(answer)
        answer.label_id = label_id
        answer.created_at = now
        session.flush()

        refresh_training_labels(session, project, [item_id])
        logger.info(
            "review project=%s item=%s reviewer=%s label=%s",
            item.project_id,
            item_id,
            reviewer_id,
            label_id,
        )
        return {
            "answer_id": answer.id,
            "item_id": item_id,
            "label_id": label_id,
            "label": label.name,
            "created_at": now.isoformat(),
        }
