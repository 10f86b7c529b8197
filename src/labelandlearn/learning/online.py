"""Per-process cache of each project's current model, updated online after every answer.

The labelling screen reads predictions from the cached model, and each answer runs one
``partial_fit`` step on it under the project's lock. The cache reloads a project's model when
``projects.current_model_id`` changes (a full training finished). Online updates live only in
this process's memory until the next full training, which learns from all stored answers.
Before a project's first training the cache holds a cold-start model on hashed n-grams, which
needs no vocabulary and learns from the first answers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from labelandlearn.errors import NotFoundError
from labelandlearn.learning.base import TextModel, get_recipe
from labelandlearn.learning.scoring import load_current_model
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Label, Project

logger = logging.getLogger(__name__)

COLD_START_RECIPE = "hashing-linear"


@dataclass
class _Entry:
    model: TextModel
    model_version_id: int | None
    lock: threading.Lock
    answers_learned: int = 0


class ModelCache:
    """Thread-safe cache of {project id: current model}; one per process."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._guard = threading.Lock()

    def _current_ids(self, db: Database, project_id: int) -> tuple[int | None, list[str]]:
        with db.session() as session:
            row = session.execute(
                sa.select(Project.id, Project.current_model_id).where(Project.id == project_id)
            ).first()
            if row is None:
                raise NotFoundError(f"project {project_id} not found")
            current = row.current_model_id
            labels = session.scalars(
                sa.select(Label.name)
                .where(Label.project_id == project_id)
                .order_by(Label.position, Label.id)
            ).all()
        return current, list(labels)

    def _entry(self, db: Database, project_id: int, *, cold_start: bool) -> _Entry | None:
        current_id, labels = self._current_ids(db, project_id)
        with self._guard:
            entry = self._entries.get(project_id)
            if entry is not None and entry.model_version_id == current_id:
                if current_id is not None or entry.model.labels == labels:
                    return entry
            if current_id is not None:
                loaded = load_current_model(db, project_id)
                if loaded is None:
                    return None
                entry = _Entry(loaded[0], loaded[1], threading.Lock())
                logger.info("model cache loaded project=%s model_version=%s", project_id, loaded[1])
            elif cold_start and len(labels) >= 2:
                model = get_recipe(COLD_START_RECIPE).build(labels)
                entry = _Entry(model, None, threading.Lock())
            else:
                return None
            self._entries[project_id] = entry
            return entry

    def get(self, db: Database, project_id: int) -> tuple[TextModel, int | None] | None:
        """Return (model, model_versions.id or None for a cold-start model), or None.

        Returns None before the first training unless answers have started a cold-start model.
        """
        entry = self._entry(db, project_id, cold_start=False)
        if entry is None or not entry.model.classifier.is_fitted:
            return None
        return entry.model, entry.model_version_id

    def predict(
        self, db: Database, project_id: int, texts: Sequence[str]
    ) -> tuple[np.ndarray, list[str], int | None] | None:
        """Return (probabilities, label names, model version id), or None without a model."""
        entry = self._entry(db, project_id, cold_start=False)
        if entry is None or not entry.model.classifier.is_fitted:
            return None
        with entry.lock:
            proba = entry.model.predict_proba(texts)
        return proba, entry.model.labels, entry.model_version_id

    def learn(self, db: Database, project_id: int, text: str, label_name: str) -> bool:
        """Run the online update for one answer; return False when the label is unknown."""
        entry = self._entry(db, project_id, cold_start=True)
        if entry is None:
            return False
        if label_name not in entry.model.labels:
            logger.warning(
                "online update skipped project=%s: label %r is not in the cached model",
                project_id,
                label_name,
            )
            return False
        with entry.lock:
            entry.model.partial_fit([text], [label_name])
            entry.answers_learned += 1
        return True

    def forget(self, project_id: int) -> None:
        """Drop a project's cached model (after deleting the project or its labels)."""
        with self._guard:
            self._entries.pop(project_id, None)


_default_cache: ModelCache | None = None
_default_guard = threading.Lock()


def model_cache() -> ModelCache:
    """Return this process's shared ``ModelCache``, created on first use."""
    global _default_cache
    with _default_guard:
        if _default_cache is None:
            _default_cache = ModelCache()
        return _default_cache
