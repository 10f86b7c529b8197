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
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from labelandlearn.errors import NotFoundError
from labelandlearn.learning.base import TextModel, get_recipe
from labelandlearn.learning.embeddings import EmbeddingNotCachedError, cached_embeddings_only
from labelandlearn.learning.scoring import load_current_model
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Label, Project

logger = logging.getLogger(__name__)

COLD_START_RECIPE = "hashing-linear"


# Featurized texts kept per cached model, from the predictions handed out with next items.
# The answer to such an item reuses them for its online update, which saves one featurizer
# transform (the costliest step of the update) per answer.
FEATURE_CACHE_SIZE = 1024


@dataclass
class _Entry:
    model: TextModel
    model_version_id: int | None
    lock: threading.Lock
    answers_learned: int = 0
    # Text to its feature row, oldest first. The featurizer does not change while the entry
    # lives (online updates touch only the classifier), so a cached row stays valid.
    features: OrderedDict[str, Any] = field(default_factory=OrderedDict)

    def remember_features(self, texts: Sequence[str], X: Any) -> None:
        """Store each text's feature row; the caller must hold ``lock``."""
        for index, text in enumerate(texts):
            self.features[text] = X[index : index + 1]
            self.features.move_to_end(text)
        while len(self.features) > FEATURE_CACHE_SIZE:
            self.features.popitem(last=False)

    def partial_fit(self, text: str, label_name: str) -> None:
        """Run one online update, with the cached feature row when there is one."""
        X = self.features.pop(text, None)
        if X is None:
            self.model.partial_fit([text], [label_name])
            return
        y = self.model.encode_labels([label_name])
        self.model.classifier.partial_fit(X, y, classes=np.arange(len(self.model.labels)))


class ModelCache:
    """Thread-safe cache of {project id: current model}; one per process."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._guard = threading.Lock()
        # Projects whose newer model a background thread is loading.
        self._reloading: set[int] = set()

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

    def _entry(
        self,
        db: Database,
        project_id: int,
        *,
        cold_start: bool,
        current: tuple[int | None, list[str]] | None = None,
        wait: bool = True,
    ) -> _Entry | None:
        """Return the project's cached entry, loading or building it when it is stale.

        With ``wait`` false, a trained model that a newer trained model replaced (same labels)
        keeps serving while a background thread loads the new one: loading takes hundreds of
        milliseconds, which a labelling request should not wait for.
        """
        current_id, labels = current if current is not None else self._current_ids(db, project_id)
        with self._guard:
            entry = self._entries.get(project_id)
            if entry is not None and entry.model_version_id == current_id:
                if current_id is not None or entry.model.labels == labels:
                    return entry
            replaceable = (
                entry is not None
                and entry.model_version_id is not None
                and entry.model.labels == labels
            )
            if not wait and current_id is not None and replaceable:
                self._start_reload(db, project_id)
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

    def _start_reload(self, db: Database, project_id: int) -> None:
        """Load the project's current model in a background thread; the caller holds _guard."""
        if project_id in self._reloading:
            return
        self._reloading.add(project_id)
        thread = threading.Thread(
            target=self._reload,
            args=(db, project_id),
            name=f"model-reload-{project_id}",
            daemon=True,
        )
        thread.start()

    def _reload(self, db: Database, project_id: int) -> None:
        try:
            loaded = load_current_model(db, project_id)
            if loaded is not None:
                with self._guard:
                    self._entries[project_id] = _Entry(loaded[0], loaded[1], threading.Lock())
                logger.info(
                    "model cache reloaded project=%s model_version=%s", project_id, loaded[1]
                )
        except Exception:
            # The old model keeps serving, and the next request starts another reload.
            logger.exception("model cache reload failed project=%s", project_id)
        finally:
            with self._guard:
                self._reloading.discard(project_id)

    def get(self, db: Database, project_id: int) -> tuple[TextModel, int | None] | None:
        """Return (model, model_versions.id or None for a cold-start model), or None.

        Returns None before the first training unless answers have started a cold-start model.
        """
        entry = self._entry(db, project_id, cold_start=False)
        if entry is None or not entry.model.classifier.is_fitted:
            return None
        return entry.model, entry.model_version_id

    def predict(
        self,
        db: Database,
        project_id: int,
        texts: Sequence[str],
        *,
        current: tuple[int | None, list[str]] | None = None,
    ) -> tuple[np.ndarray, list[str], int | None] | None:
        """Return (probabilities, label names, model version id), or None without a model.

        ``current`` is the project's (current_model_id, label names in position order) when
        the caller has just read them; without it the cache reads them itself.
        """
        entry = self._entry(db, project_id, cold_start=False, current=current, wait=False)
        if entry is None or not entry.model.classifier.is_fitted:
            return None
        try:
            with entry.lock, cached_embeddings_only():
                X = entry.model.transform(texts)
                proba = entry.model.predict_proba_features(X)
                entry.remember_features(texts, X)
        except EmbeddingNotCachedError as error:
            # The items show without a prediction until the embed job reaches them.
            logger.debug("no prediction project=%s: %s", project_id, error)
            return None
        return proba, entry.model.labels, entry.model_version_id

    def learn(
        self,
        db: Database,
        project_id: int,
        text: str,
        label_name: str,
        *,
        current: tuple[int | None, list[str]] | None = None,
    ) -> bool:
        """Run the online update for one answer; return False when the label is unknown or
        the text has no cached embedding yet.

        ``current`` is as for :meth:`predict`.
        """
        entry = self._entry(db, project_id, cold_start=True, current=current, wait=False)
        if entry is None:
            return False
        if label_name not in entry.model.labels:
            logger.warning(
                "online update skipped project=%s: label %r is not in the cached model",
                project_id,
                label_name,
            )
            return False
        try:
            with entry.lock, cached_embeddings_only():
                entry.partial_fit(text, label_name)
                entry.answers_learned += 1
        except EmbeddingNotCachedError as error:
            # The answer is stored; the next full training learns from it.
            logger.debug("online update skipped project=%s: %s", project_id, error)
            return False
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
