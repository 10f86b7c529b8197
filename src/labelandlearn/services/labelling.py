"""The labelling hot path: next items, answers, undo, progress and live accuracy."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labelandlearn.errors import ConflictError, NotFoundError, ValidationError
from labelandlearn.jobs.base import JobRunner
from labelandlearn.services import queue
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Item, Job, Label, ModelVersion, Project
from labelandlearn.team.review import refresh_training_labels

logger = logging.getLogger(__name__)

MAX_BATCH = 50
LIVE_WINDOW = 100


class Predictor(Protocol):
    """What the labelling service needs from the per-process model cache."""

    def predict(
        self, db: Database, project_id: int, texts: list[str]
    ) -> tuple[Any, list[str], int | None] | None: ...

    def learn(self, db: Database, project_id: int, text: str, label_name: str) -> None: ...


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


def _label_map(session: Session, project_id: int) -> dict[int, Label]:
    return {
        label.id: label
        for label in session.scalars(select(Label).where(Label.project_id == project_id))
    }


def item_payload(item: Item) -> dict[str, Any]:
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
) -> list[dict[str, Any]]:
    """Hand out up to ``limit`` items to label next, highest query priority first.

    Each item is leased to the user (see services.queue); items the user already answered or
    skipped, and the ids in ``exclude`` (items the client has prefetched), are left out.
    Each item carries the current model's prediction.
    """
    limit = max(1, min(limit, MAX_BATCH))
    with db.session() as session:
        project = session.get(Project, project_id)
        if project is None:
            raise NotFoundError(f"project {project_id} not found")
        items = queue.lease_items(session, project, user_id, limit, list(exclude))
        payload = [item_payload(item) for item in items]
        labels = {label.name: label.id for label in project.labels}

    if payload and predictor is not None:
        _attach_predictions(db, project_id, payload, labels, predictor)
    return payload


def _attach_predictions(
    db: Database,
    project_id: int,
    payload: list[dict[str, Any]],
    labels: dict[str, int],
    predictor: Predictor,
) -> None:
    prediction = predictor.predict(db, project_id, [entry["text"] for entry in payload])
    if prediction is None:
        return
    proba, label_names, version_id = prediction
    for entry, row in zip(payload, proba, strict=True):
        best = int(row.argmax())
        entry["prediction"] = {
            "label": label_names[best],
            "label_id": labels.get(label_names[best]),
            "confidence": float(row[best]),
            "probabilities": {name: float(p) for name, p in zip(label_names, row, strict=True)},
            "model_version_id": version_id,
        }


def _answer_payload(answer: Answer, labels: dict[int, Label]) -> dict[str, Any]:
    label = labels.get(answer.label_id) if answer.label_id is not None else None
    return {
        "id": answer.id,
        "item_id": answer.item_id,
        "label_id": answer.label_id,
        "label": label.name if label else None,
        "skipped": answer.label_id is None,
        "created_at": answer.created_at.isoformat(),
    }


def refresh_item(session: Session, item: Item, project: Project) -> None:
    """Recompute the item's answer count, done flag and training label from its answers."""
    session.flush()
    refresh_training_labels(session, project, [item.id])
    session.expire(item)


def submit_answer(
    db: Database,
    project_id: int,
    user_id: int,
    answer: AnswerInput,
    *,
    predictor: Predictor | None = None,
    runner: JobRunner | None = None,
) -> dict[str, Any]:
    """Store one answer exactly once and return it with ``created`` true or false.

    The client sends its own answer id, so a retried or doubled request returns the stored
    answer instead of writing a second one. A different answer by the same user on the same
    item is a conflict (the response carries the current answer) unless ``replace`` is set.
    An item whose slots were all handed to other annotators is a conflict too.
    """
    answer_id = answer.answer_id or str(uuid.uuid4())
    try:
        uuid.UUID(answer_id)
    except ValueError:
        raise ValidationError(f"answer id {answer_id!r} is not a UUID") from None

    with db.session() as session:
        labels = _label_map(session, project_id)
        previous = session.get(Answer, answer_id)
        if previous is not None:
            if previous.project_id != project_id or previous.user_id != user_id:
                raise ConflictError(f"answer id {answer_id} is already used")
            return {**_answer_payload(previous, labels), "created": False}

        project = session.get(Project, project_id)
        item = session.get(Item, answer.item_id)
        if project is None:
            raise NotFoundError(f"project {project_id} not found")
        if item is None or item.project_id != project_id:
            raise NotFoundError(f"item {answer.item_id} not found in project {project_id}")
        if answer.label_id is not None and answer.label_id not in labels:
            raise ValidationError(
                f"label id {answer.label_id} is not a label of project {project_id}"
            )
        predicted = answer.predicted_label_id
        if predicted is not None and predicted not in labels:
            predicted = None

        current = session.scalar(
            select(Answer).where(Answer.item_id == item.id, Answer.user_id == user_id)
        )
        if current is not None:
            if not answer.replace:
                current_payload = _answer_payload(current, labels)
                raise ConflictError(
                    f"item {item.id} already has your answer "
                    f"{current_payload['label'] or 'skip'!r}; send replace=true to change it",
                    details={"current": current_payload},
                )
            session.delete(current)
            session.flush()

        if answer.label_id is None:
            queue.release(session, item.id, user_id)
        elif not queue.mark_answered(session, project, item.id, user_id):
            raise ConflictError(
                f"item {item.id} is already handed to {project.overlap} other annotator(s); "
                "fetch the next item"
            )

        row = Answer(
            id=answer_id,
            project_id=project_id,
            item_id=item.id,
            user_id=user_id,
            label_id=answer.label_id,
            source="labeller",
            predicted_label_id=predicted,
            predicted_confidence=answer.predicted_confidence,
            model_version_id=answer.model_version_id,
            duration_ms=answer.duration_ms,
            created_at=datetime.now(UTC),
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            return _answer_after_race(db, project_id, user_id, answer_id)
        refresh_item(session, item, project)
        text = item.text
        result = {**_answer_payload(row, labels), "created": True}

    if answer.label_id is not None and predictor is not None:
        predictor.learn(db, project_id, text, labels[answer.label_id].name)
    if runner is not None and answer.label_id is not None:
        maybe_schedule_retrain(db, project_id, runner)
    return result


def _answer_after_race(
    db: Database, project_id: int, user_id: int, answer_id: str
) -> dict[str, Any]:
    """Return the answer that a concurrent request with the same id stored first."""
    with db.session() as session:
        stored = session.get(Answer, answer_id)
        if stored is None or stored.user_id != user_id:
            raise ConflictError("another answer for this item was stored at the same time")
        return {**_answer_payload(stored, _label_map(session, project_id)), "created": False}


def undo_last(db: Database, project_id: int, user_id: int) -> dict[str, Any] | None:
    """Delete the user's newest answer in the project and hand its item back to the user."""
    with db.session() as session:
        project = session.get(Project, project_id)
        if project is None:
            raise NotFoundError(f"project {project_id} not found")
        last = session.scalar(
            select(Answer)
            .where(
                Answer.project_id == project_id,
                Answer.user_id == user_id,
                Answer.source == "labeller",
            )
            .order_by(Answer.created_at.desc())
            .limit(1)
        )
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
    with db.session() as session:
        project = session.get(Project, project_id)
        if project is None:
            return None
        labelled = session.scalar(
            select(func.count())
            .select_from(Item)
            .where(Item.project_id == project_id, Item.label_id.is_not(None))
        ) or 0
        seen = 0
        if project.current_model_id is not None:
            seen = session.scalar(
                select(ModelVersion.n_labels).where(ModelVersion.id == project.current_model_id)
            ) or 0
        if labelled - seen < project.retrain_every:
            return None
        busy = session.scalar(
            select(Job.id).where(
                Job.project_id == project_id,
                Job.kind == "train",
                Job.status.in_(("queued", "running")),
            )
        )
        if busy is not None:
            return None
    job_id = runner.submit("train", project_id, {"reason": "auto"})
    logger.info(
        "project %s: retrain %s started after %d new labels", project_id, job_id, labelled - seen
    )
    return job_id


def progress(db: Database, project_id: int, user_id: int | None = None) -> dict[str, Any]:
    """Return labelled / total counts, per class, and how many items the user skipped."""
    with db.session() as session:
        labels = _label_map(session, project_id)
        total = session.scalar(
            select(func.count()).select_from(Item).where(Item.project_id == project_id)
        ) or 0
        per_label = {
            label_id: count
            for label_id, count in session.execute(
                select(Item.label_id, func.count())
                .where(Item.project_id == project_id, Item.label_id.is_not(None))
                .group_by(Item.label_id)
            )
        }
        skipped = session.scalar(
            select(func.count())
            .select_from(Answer)
            .join(Item, Item.id == Answer.item_id)
            .where(
                Answer.project_id == project_id,
                Answer.label_id.is_(None),
                Item.label_id.is_(None),
            )
        ) or 0
    labelled = sum(per_label.values())
    return {
        "total": total,
        "labelled": labelled,
        "unlabelled": total - labelled,
        "skipped": skipped,
        "per_label": {
            label.name: per_label.get(label_id, 0) for label_id, label in labels.items()
        },
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
    rows.reverse()
    hits = [int(predicted == actual) for predicted, actual in rows]
    series = []
    for end in range(1, len(hits) + 1):
        start = max(0, end - window)
        series.append(sum(hits[start:end]) / (end - start))
    recent = rows[-window:]
    per_label: dict[str, dict[str, float | int | None]] = {}
    for label_id, label in labels.items():
        matching = [predicted == actual for predicted, actual in recent if actual == label_id]
        per_label[label.name] = {
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
