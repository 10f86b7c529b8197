"""The labelling hot path: next items, answers, undo, progress and live accuracy."""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, Protocol

from sqlalchemy import Connection, Row, Table, and_, bindparam, delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labelandlearn.errors import ConflictError, NotFoundError, ValidationError
from labelandlearn.jobs.base import JobRunner
from labelandlearn.services import queue
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import (
    Answer,
    Item,
    Job,
    Label,
    ModelVersion,
    Project,
    iso_utc,
)
from labelandlearn.team.review import refresh_training_labels

logger = logging.getLogger(__name__)

MAX_BATCH = 50
LIVE_WINDOW = 100

PROJECTS: Table = Project.__table__  # type: ignore[assignment]
LABELS: Table = Label.__table__  # type: ignore[assignment]
ANSWERS: Table = Answer.__table__  # type: ignore[assignment]
ITEMS: Table = Item.__table__  # type: ignore[assignment]
# The columns of an answer that its JSON shape shows.
ANSWER_COLUMNS = (ANSWERS.c.id, ANSWERS.c.item_id, ANSWERS.c.label_id, ANSWERS.c.created_at)


class Predictor(Protocol):
    """Interface of the per-process model cache that the labelling service calls."""

    def predict(
        self,
        db: Database,
        project_id: int,
        texts: list[str],
        *,
        current: tuple[int | None, list[str]] | None = None,
    ) -> tuple[Any, list[str], int | None] | None: ...

    def learn(
        self,
        db: Database,
        project_id: int,
        text: str,
        label_name: str,
        *,
        current: tuple[int | None, list[str]] | None = None,
    ) -> bool: ...


@dataclass
class AnswerInput:
    item_id: int
    label_id: int | None
    answer_id: str | None = None
    predicted_label_id: int | None = None
    predicted_confidence: float | None = None
    model_version_id: int | None = None
    duration_ms: int | None = None
    replace: bool = False
    # A label name, resolved to ``label_id`` when ``label_id`` is None.
    label_name: str | None = None


@dataclass(frozen=True)
class ProjectState:
    """The project settings and labels that the labelling requests read, from one query."""

    id: int
    overlap: int
    lease_seconds: int
    retrain_every: int
    train_on_single_answers: bool
    current_model_id: int | None
    # Label id to name, ordered by position then id (the model's class order).
    labels: dict[int, str]

    @property
    def label_names(self) -> list[str]:
        return list(self.labels.values())

    @property
    def model_key(self) -> tuple[int | None, list[str]]:
        """What the model cache checks its cached model against."""
        return self.current_model_id, self.label_names


# The columns that ``project_state_from_rows`` reads: the project's settings, repeated on one
# row per label. The web access check selects them too, to read the project with the
# user's role in one statement.
PROJECT_STATE_COLUMNS = (
    PROJECTS.c.overlap,
    PROJECTS.c.lease_seconds,
    PROJECTS.c.retrain_every,
    PROJECTS.c.train_on_single_answers,
    PROJECTS.c.current_model_id,
    LABELS.c.id.label("label_id"),
    LABELS.c.name.label("label_name"),
)
# The model's class order, for statements that join the labels to ``PROJECT_STATE_COLUMNS``.
PROJECT_STATE_ORDER = (LABELS.c.position, LABELS.c.id)

# Built once, so SQLAlchemy reuses their memoized cache keys (see services.queue).
_PROJECT_STATE = (
    select(*PROJECT_STATE_COLUMNS)
    .select_from(PROJECTS.outerjoin(LABELS, LABELS.c.project_id == PROJECTS.c.id))
    .where(PROJECTS.c.id == bindparam("project_id"))
    .order_by(*PROJECT_STATE_ORDER)
)
_ANSWER_BY_ID = select(*ANSWER_COLUMNS, ANSWERS.c.project_id, ANSWERS.c.user_id).where(
    ANSWERS.c.id == bindparam("answer_id")
)
_CURRENT = ANSWERS.alias("current")
_PREVIOUS = ANSWERS.alias("previous")
# The item, the user's current answer on it, and the answer stored under the request's answer
# id (set when the request is a retry), in one statement.
_ITEM_FOR_ANSWER = (
    select(
        ITEMS.c.id,
        ITEMS.c.project_id,
        ITEMS.c.text,
        _CURRENT.c.id.label("current_id"),
        _CURRENT.c.item_id.label("current_item_id"),
        _CURRENT.c.label_id.label("current_label_id"),
        _CURRENT.c.created_at.label("current_created_at"),
        _PREVIOUS.c.id.label("previous_id"),
        _PREVIOUS.c.item_id.label("previous_item_id"),
        _PREVIOUS.c.label_id.label("previous_label_id"),
        _PREVIOUS.c.created_at.label("previous_created_at"),
        _PREVIOUS.c.project_id.label("previous_project_id"),
        _PREVIOUS.c.user_id.label("previous_user_id"),
    )
    .select_from(
        ITEMS.outerjoin(
            _CURRENT,
            and_(_CURRENT.c.item_id == ITEMS.c.id, _CURRENT.c.user_id == bindparam("user_id")),
        ).outerjoin(_PREVIOUS, _PREVIOUS.c.id == bindparam("answer_id"))
    )
    .where(ITEMS.c.id == bindparam("item_id"))
)
_INSERT_ANSWER = insert(ANSWERS)
_DELETE_ANSWER = delete(ANSWERS).where(ANSWERS.c.id == bindparam("answer_id"))


def load_project_state(session: Session, project_id: int) -> ProjectState:
    """Read the project's settings and labels in one statement; raise NotFoundError."""
    rows = session.connection().execute(_PROJECT_STATE, {"project_id": project_id}).all()
    if not rows:
        raise NotFoundError(f"project {project_id} not found")
    return project_state_from_rows(project_id, rows)


def project_state_from_rows(project_id: int, rows: Sequence[Any]) -> ProjectState:
    """Build the project state from rows with ``PROJECT_STATE_COLUMNS``, one per label.

    A project without labels has one row whose label columns are None.
    """
    first = rows[0]
    return ProjectState(
        id=project_id,
        overlap=first.overlap,
        lease_seconds=first.lease_seconds,
        retrain_every=first.retrain_every,
        train_on_single_answers=bool(first.train_on_single_answers),
        current_model_id=first.current_model_id,
        labels={row.label_id: row.label_name for row in rows if row.label_id is not None},
    )


@contextmanager
def _transaction(db: Database, session: Session | None) -> Iterator[Session]:
    """Yield ``session`` or a new session of ``db``, and commit it on success or roll back.

    A caller's session is committed here too, because the online update after an answer must
    only learn what is stored. The caller still closes it.
    """
    if session is None:
        with db.session() as own:
            yield own
        return
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


def _label_map(session: Session, project_id: int) -> dict[int, str]:
    return {
        label_id: name
        for label_id, name in session.execute(
            select(LABELS.c.id, LABELS.c.name)
            .where(LABELS.c.project_id == project_id)
            .order_by(LABELS.c.position, LABELS.c.id)
        )
    }


def item_payload(item: Any) -> dict[str, Any]:
    """Return the JSON shape of an item (an ORM Item or a row of ``queue.ITEM_COLUMNS``)."""
    return {
        "id": item.id,
        "text": item.text,
        "external_id": item.external_id,
        "meta": item.meta or {},
    }


def next_items(
    db: Database,
    project_id: int,
    user_id: int,
    *,
    limit: int = 5,
    exclude: list[int] | tuple[int, ...] = (),
    predictor: Predictor | None = None,
    session: Session | None = None,
    project: ProjectState | None = None,
) -> list[dict[str, Any]]:
    """Hand out up to ``limit`` items to label next, highest query priority first.

    Each item is leased to the user (see services.queue); items the user already answered or
    skipped, and the ids in ``exclude`` (items the client has prefetched), are left out.
    Each item carries the current model's prediction.

    ``session`` is an open session to run in (it is committed here), and ``project`` the
    project's state when the caller has just read it; without them the function opens its
    own session and reads the project.
    """
    limit = max(1, min(limit, MAX_BATCH))
    with _transaction(db, session) as session:
        if project is None:
            project = load_project_state(session, project_id)
        items = queue.lease_items(session, project, user_id, limit, list(exclude))
        payload = [item_payload(item) for item in items]

    if payload and predictor is not None:
        attach_predictions(db, project, payload, predictor)
    return payload


def attach_predictions(
    db: Database,
    project: ProjectState,
    payload: list[dict[str, Any]],
    predictor: Predictor,
) -> None:
    """Add the current model's ``prediction`` to each entry (with ``text``) of ``payload``.

    Entries stay without one while the project has no model or an item has no cached vector.
    """
    prediction = predictor.predict(
        db, project.id, [entry["text"] for entry in payload], current=project.model_key
    )
    if prediction is None:
        return
    proba, label_names, version_id = prediction
    label_ids = {name: label_id for label_id, name in project.labels.items()}
    for entry, row in zip(payload, proba, strict=True):
        best = int(row.argmax())
        entry["prediction"] = {
            "label": label_names[best],
            "label_id": label_ids.get(label_names[best]),
            "confidence": float(row[best]),
            "probabilities": {name: float(p) for name, p in zip(label_names, row, strict=True)},
            "model_version_id": version_id,
        }


def _answer_payload(answer: Any, labels: dict[int, str]) -> dict[str, Any]:
    """Return the JSON shape of an answer (an ORM Answer or a row with the same columns)."""
    label_id = answer.label_id
    return {
        "id": answer.id,
        "item_id": answer.item_id,
        "label_id": label_id,
        "label": labels.get(label_id) if label_id is not None else None,
        "skipped": label_id is None,
        "created_at": iso_utc(answer.created_at),
    }


def refresh_item(session: Session, item: Item, project: Project) -> None:
    """Recompute the item's answer count, done flag and training label from its answers."""
    session.flush()
    refresh_training_labels(session, project, [item.id])
    session.expire(item)


def _resolve_label(project: ProjectState, answer: AnswerInput) -> int | None:
    label_id = answer.label_id
    if label_id is None and answer.label_name is not None:
        found = [key for key, name in project.labels.items() if name == answer.label_name]
        if not found:
            raise ValidationError(f"label {answer.label_name!r} is not a label of this project")
        label_id = found[0]
    if label_id is not None and label_id not in project.labels:
        raise ValidationError(f"label id {label_id} is not a label of project {project.id}")
    return label_id


def _check_answer_id(answer_id: str | None) -> str:
    answer_id = answer_id or str(uuid.uuid4())
    try:
        uuid.UUID(answer_id)
    except ValueError:
        raise ValidationError(f"answer id {answer_id!r} is not a UUID") from None
    return answer_id


def submit_answer(
    db: Database,
    project_id: int,
    user_id: int,
    answer: AnswerInput,
    *,
    predictor: Predictor | None = None,
    runner: JobRunner | None = None,
    session: Session | None = None,
    project: ProjectState | None = None,
) -> dict[str, Any]:
    """Store one answer exactly once and return it with ``created`` true or false.

    The client sends its own answer id, so a retried or doubled request returns the stored
    answer instead of writing a second one. A different answer by the same user on the same
    item is a conflict (the response carries the current answer) unless ``replace`` is set.
    An item whose slots were all handed to other annotators is a conflict too.

    The online model update and the retrain check run after the answer is committed.
    ``session`` and ``project`` are as for :func:`next_items`.
    """
    answer_id = _check_answer_id(answer.answer_id)

    with _transaction(db, session) as session:
        if project is None:
            project = load_project_state(session, project_id)
        connection = session.connection()
        item = connection.execute(
            _ITEM_FOR_ANSWER,
            {"item_id": answer.item_id, "user_id": user_id, "answer_id": answer_id},
        ).first()
        previous = _previous_answer(connection, item, answer_id)
        if previous is not None:
            if previous.project_id != project_id or previous.user_id != user_id:
                raise ConflictError(f"answer id {answer_id} is already used")
            _check_same_answer(project, answer, previous, answer_id)
            return {**_answer_payload(previous, project.labels), "created": False}

        label_id = _resolve_label(project, answer)
        if item is None or item.project_id != project_id:
            raise NotFoundError(f"item {answer.item_id} not found in project {project_id}")
        predicted = answer.predicted_label_id
        if predicted is not None and predicted not in project.labels:
            predicted = None

        if item.current_id is not None:
            _replace_current(session, item, project.labels, answer.replace)

        if label_id is None:
            queue.release(session, item.id, user_id)
        elif not queue.mark_answered(session, project, item.id, user_id):
            raise ConflictError(
                f"item {item.id} is already handed to {project.overlap} other annotator(s); "
                "fetch the next item"
            )

        row = {
            "id": answer_id,
            "project_id": project_id,
            "item_id": item.id,
            "user_id": user_id,
            "label_id": label_id,
            "source": "labeller",
            "predicted_label_id": predicted,
            "predicted_confidence": answer.predicted_confidence,
            "model_version_id": answer.model_version_id,
            "duration_ms": answer.duration_ms,
            "created_at": datetime.now(UTC),
        }
        try:
            connection.execute(_INSERT_ANSWER, row)
        except IntegrityError:
            session.rollback()
            return _answer_after_race(db, project_id, user_id, answer_id, answer.model_version_id)
        refresh_training_labels(session, project, [item.id])
        text = item.text
        result = {**_answer_payload(SimpleNamespace(**row), project.labels), "created": True}

    if label_id is not None:
        _learn_and_check_retrain(db, project, text, project.labels[label_id], predictor, runner)
    return result


def _check_same_answer(
    project: ProjectState, answer: AnswerInput, previous: Any, answer_id: str
) -> None:
    """Raise ConflictError when a request reuses an answer id for a different answer.

    A retry or a doubled request repeats the item and the label, and gets the stored answer
    back. Another item or label under the same id is a client error, which must not be
    reported as stored.
    """
    if previous.item_id == answer.item_id and previous.label_id == _resolve_label(project, answer):
        return
    raise ConflictError(
        f"answer id {answer_id} already stores an answer for item {previous.item_id}; send a "
        "new id for a different answer",
        details={"current": _answer_payload(previous, project.labels)},
    )


def _previous_answer(
    connection: Connection, item: Row[*tuple[Any, ...]] | None, answer_id: str
) -> Any:
    """Return the answer already stored under ``answer_id`` (a retry), or None.

    ``item`` is the row of ``_ITEM_FOR_ANSWER``, which carries that answer; when the item
    itself is missing, the answer is looked up on its own.
    """
    if item is None:
        return connection.execute(_ANSWER_BY_ID, {"answer_id": answer_id}).first()
    if item.previous_id is None:
        return None
    return SimpleNamespace(
        id=item.previous_id,
        item_id=item.previous_item_id,
        label_id=item.previous_label_id,
        created_at=item.previous_created_at,
        project_id=item.previous_project_id,
        user_id=item.previous_user_id,
    )


def _replace_current(
    session: Session, item: Row[*tuple[Any, ...]], labels: dict[int, str], replace: bool
) -> None:
    """Delete the user's current answer on the item, or raise ConflictError carrying it."""
    if not replace:
        current_payload = _answer_payload(
            SimpleNamespace(
                id=item.current_id,
                item_id=item.current_item_id,
                label_id=item.current_label_id,
                created_at=item.current_created_at,
            ),
            labels,
        )
        raise ConflictError(
            f"item {item.id} already has your answer "
            f"{current_payload['label'] or 'skip'!r}; send replace=true to change it",
            details={"current": current_payload},
        )
    session.connection().execute(_DELETE_ANSWER, {"answer_id": item.current_id})


def _learn_and_check_retrain(
    db: Database,
    project: ProjectState,
    text: str,
    label_name: str,
    predictor: Predictor | None,
    runner: JobRunner | None,
) -> None:
    """Run the online update for one stored answer, then start a retrain when one is due."""
    if predictor is not None:
        predictor.learn(db, project.id, text, label_name, current=project.model_key)
    if runner is not None:
        retrain_checks.after_answer(db, project, runner)


class RetrainChecks:
    """Spaces out the retrain check, which counts the project's labelled items.

    One answer adds at most one training label, so after a check finds ``missing`` labels
    still to come before a retrain is due, the next ``missing`` answers stored through this
    process cannot make it due and skip the check. Labels added elsewhere (an import, another
    process) are noticed at the next check.
    """

    # Answers between checks while a training job is already queued or running.
    BUSY_RECHECK = 10

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._skip: weakref.WeakKeyDictionary[Database, dict[int, int]] = (
            weakref.WeakKeyDictionary()
        )

    def after_answer(self, db: Database, project: ProjectState, runner: JobRunner) -> None:
        with self._lock:
            per_project = self._skip.setdefault(db, {})
            remaining = per_project.get(project.id, 0)
            if remaining > 0:
                per_project[project.id] = remaining - 1
                return
            # Held until the check below updates it, so concurrent answers skip meanwhile.
            per_project[project.id] = project.retrain_every
        missing = _check_retrain(db, project.id, runner)
        with self._lock:
            self._skip.setdefault(db, {})[project.id] = max(missing - 1, 0)


retrain_checks = RetrainChecks()


def _answer_after_race(
    db: Database, project_id: int, user_id: int, answer_id: str, model_version_id: int | None
) -> dict[str, Any]:
    """Return the answer that a concurrent request with the same id stored first.

    Without one, the insert broke another constraint: a model version that is not the
    project's is reported as such, anything else as a concurrent answer.
    """
    with db.session() as session:
        stored = session.execute(
            select(*ANSWER_COLUMNS, ANSWERS.c.user_id).where(ANSWERS.c.id == answer_id)
        ).first()
        if stored is None and model_version_id is not None:
            version_project = session.scalar(
                select(ModelVersion.project_id).where(ModelVersion.id == model_version_id)
            )
            if version_project != project_id:
                raise ValidationError(
                    f"model_version_id {model_version_id} is not a model version of project "
                    f"{project_id}; send the id that came with the item's prediction, or none"
                )
        if stored is None or stored.user_id != user_id:
            raise ConflictError("another answer for this item was stored at the same time")
        return {**_answer_payload(stored, _label_map(session, project_id)), "created": False}


def undo_last(
    db: Database, project_id: int, user_id: int, *, answer_id: str | None = None
) -> dict[str, Any] | None:
    """Delete the user's answer ``answer_id`` in the project, or without it their newest one,
    and hand its item back to the user.

    A page sends the id of the answer it undoes: answers sent one after the other may be
    stored in another order, so the newest stored one need not be the last one given.
    """
    with db.session() as session:
        project = session.get(Project, project_id)
        if project is None:
            raise NotFoundError(f"project {project_id} not found")
        mine = select(Answer).where(
            Answer.project_id == project_id,
            Answer.user_id == user_id,
            Answer.source == "labeller",
        )
        if answer_id is not None:
            last = session.scalar(mine.where(Answer.id == answer_id))
            if last is None:
                raise NotFoundError(
                    f"answer {answer_id!r} not found among your answers in project "
                    f"{project_id}; it was undone already or never stored"
                )
        else:
            last = session.scalar(mine.order_by(Answer.created_at.desc()).limit(1))
        if last is None:
            return None
        item = session.get(Item, last.item_id)
        assert item is not None
        undone = {"answer_id": last.id, "label_id": last.label_id}
        session.delete(last)
        session.flush()
        expires_at = queue.utcnow() + timedelta(seconds=project.lease_seconds)
        queue.claim_slot(session, project, item.id, user_id, expires_at)
        refresh_item(session, item, project)
        return {"item": item_payload(item), "undone": undone}


def maybe_schedule_retrain(db: Database, project_id: int, runner: JobRunner) -> str | None:
    """Start a full retrain when ``retrain_every`` labels arrived since the current model."""
    job_id, _missing = _schedule_retrain_if_due(db, project_id, runner)
    return job_id


def _check_retrain(db: Database, project_id: int, runner: JobRunner) -> int:
    """Start a retrain when one is due; return how many answers the next check may skip."""
    _job_id, missing = _schedule_retrain_if_due(db, project_id, runner)
    return missing


def _schedule_retrain_if_due(
    db: Database, project_id: int, runner: JobRunner
) -> tuple[str | None, int]:
    """Return (the started job's id or None, labels still missing before a retrain is due).

    While a training job is queued or running the count is ``RetrainChecks.BUSY_RECHECK``,
    so the check runs again soon after it ends.
    """
    with db.session() as session:
        project = session.get(Project, project_id)
        if project is None:
            return None, 0
        # The busy check comes first because it is cheap.
        busy = session.scalar(
            select(Job.id).where(
                Job.project_id == project_id,
                Job.kind == "train",
                Job.status.in_(("queued", "running")),
            )
        )
        if busy is not None:
            return None, RetrainChecks.BUSY_RECHECK
        labelled = (
            session.scalar(
                select(func.count())
                .select_from(Item)
                .where(Item.project_id == project_id, Item.label_id.is_not(None))
            )
            or 0
        )
        seen = 0
        if project.current_model_id is not None:
            seen = (
                session.scalar(
                    select(ModelVersion.n_labels).where(ModelVersion.id == project.current_model_id)
                )
                or 0
            )
        missing = project.retrain_every - (labelled - seen)
        if missing > 0:
            return None, missing
    job_id = runner.submit("train", project_id, {"reason": "auto"})
    logger.info(
        "project %s: retrain %s queued after %d new labels", project_id, job_id, labelled - seen
    )
    return job_id, 0


def progress(db: Database, project_id: int, user_id: int | None = None) -> dict[str, Any]:
    """Return labelled / total counts, per class, and how many items the user skipped."""
    with db.session() as session:
        labels = _label_map(session, project_id)
        total = (
            session.scalar(
                select(func.count()).select_from(Item).where(Item.project_id == project_id)
            )
            or 0
        )
        per_label = {
            label_id: count
            for label_id, count in session.execute(
                select(Item.label_id, func.count())
                .where(Item.project_id == project_id, Item.label_id.is_not(None))
                .group_by(Item.label_id)
            )
        }
        skipped = (
            session.scalar(
                select(func.count())
                .select_from(Answer)
                .join(Item, Item.id == Answer.item_id)
                .where(
                    Answer.project_id == project_id,
                    Answer.label_id.is_(None),
                    Item.label_id.is_(None),
                )
            )
            or 0
        )
    labelled = sum(per_label.values())
    return {
        "total": total,
        "labelled": labelled,
        "unlabelled": total - labelled,
        "skipped": skipped,
        "per_label": {name: per_label.get(label_id, 0) for label_id, name in labels.items()},
    }


def live_accuracy(db: Database, project_id: int, window: int = LIVE_WINDOW) -> dict[str, Any]:
    """Return how often the prediction shown matched the answer, over the last answers.

    ``series`` gives the rolling accuracy after each of the last 1,000 answers that had a
    prediction, for the dashboard plot.
    """
    with db.session() as session:
        labels = _label_map(session, project_id)
        rows = session.execute(
            select(Answer.predicted_label_id, Answer.label_id)
            .where(
                Answer.project_id == project_id,
                Answer.source == "labeller",
                Answer.label_id.is_not(None),
                Answer.predicted_label_id.is_not(None),
            )
            .order_by(Answer.created_at.desc())
            .limit(1000 + window)
        ).all()
    rows = list(reversed(rows))
    hits = [int(predicted == actual) for predicted, actual in rows]
    series = []
    for end in range(1, len(hits) + 1):
        start = max(0, end - window)
        series.append(sum(hits[start:end]) / (end - start))
    recent = rows[-window:]
    per_label: dict[str, dict[str, float | int | None]] = {}
    for label_id, name in labels.items():
        matching = [predicted == actual for predicted, actual in recent if actual == label_id]
        per_label[name] = {
            "answers": len(matching),
            "accuracy": (sum(matching) / len(matching)) if matching else None,
        }
    return {
        "window": window,
        "answers": len(recent),
        "accuracy": (sum(hits[-window:]) / len(recent)) if recent else None,
        "per_label": per_label,
        "series": series[-1000:],
    }
