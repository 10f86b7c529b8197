"""The linear classifier averaged with nearest neighbours on the embedding block."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from learning_helpers import embedding_blocks

from labelandlearn.errors import ValidationError
from labelandlearn.learning.auto import AUTO_CANDIDATES, TFIDF_EMBEDDING_KNN
from labelandlearn.learning.base import TextModel, get_recipe, make_classifier, make_featurizer
from labelandlearn.learning.ensemble import LinearKnnClassifier, dense_tail_start

blocks = embedding_blocks


def test_dense_tail_found_after_sparse_columns() -> None:
    X, _ = blocks(30)
    assert dense_tail_start(X) == 20
    assert dense_tail_start(np.ones((4, 3))) == 0
    assert dense_tail_start(sp.csr_matrix(np.eye(4))) is None
    assert dense_tail_start(sp.csr_matrix(np.ones((1, 3)))) is None


def test_probabilities_are_the_mean_of_both_parts() -> None:
    X, y = blocks(60)
    classifier = LinearKnnClassifier(n_neighbors=5).fit(X, y)
    proba = classifier.predict_proba(X[:10])
    assert proba.shape == (10, 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    expected = 0.5 * (classifier.linear_.predict_proba(X[:10]) + classifier.neighbour_proba(X[:10]))
    assert np.allclose(proba, expected)


def test_neighbours_compare_only_the_embedding_block() -> None:
    X, y = blocks(60)
    classifier = LinearKnnClassifier(n_neighbors=3).fit(X, y)
    assert classifier.memory_.shape == (60, 8)
    # The same embedding with a different sparse part is an exact match: its label takes the
    # whole vote.
    query = X[:1].toarray()
    query[0, :20] = 0.0
    query[0, 3] = 5.0
    votes = classifier.neighbour_proba(sp.csr_matrix(query))
    assert votes[0, y[0]] == pytest.approx(1.0)


def test_clusters_are_voted_right() -> None:
    X, y = blocks(90)
    classifier = LinearKnnClassifier(n_neighbors=7).fit(X[:60], y[:60])
    votes = classifier.neighbour_proba(X[60:])
    assert (votes.argmax(axis=1) == y[60:]).mean() > 0.95


def test_sparse_rows_without_an_embedding_block() -> None:
    rng = np.random.default_rng(1)
    X = sp.random(40, 500, density=0.05, random_state=1, format="csr")
    y = rng.integers(0, 2, size=40)
    classifier = LinearKnnClassifier(n_neighbors=3).fit(X, y)
    assert classifier.knn_start_ is None
    assert sp.issparse(classifier.memory_)
    assert np.allclose(classifier.predict_proba(X[:5]).sum(axis=1), 1.0)


def test_partial_fit_remembers_answers() -> None:
    X, y = blocks(60)
    classifier = LinearKnnClassifier(n_neighbors=1).fit(X[:30], y[:30])
    far = X[30:31].toarray()
    far[0, 20:] = 100.0 * np.arange(1, 9)
    before = classifier.neighbour_proba(sp.csr_matrix(far))
    label = (int(before.argmax()) + 1) % 3
    classifier.partial_fit(sp.csr_matrix(far), np.array([label]), classes=np.arange(3))
    assert classifier.n_memory_ == 31
    after = classifier.neighbour_proba(sp.csr_matrix(far))
    assert after[0, label] == pytest.approx(1.0)


def test_cold_start_partial_fit() -> None:
    X, y = blocks(6)
    classifier = LinearKnnClassifier(n_neighbors=2)
    for row in range(6):
        classifier.partial_fit(X[row], y[row : row + 1], classes=np.arange(3))
    assert classifier.n_memory_ == 6
    assert np.allclose(classifier.predict_proba(X).sum(axis=1), 1.0)


@pytest.mark.parametrize("sparse_memory", [False, True])
def test_state_round_trip(sparse_memory: bool) -> None:
    if sparse_memory:
        X = sp.random(30, 200, density=0.1, random_state=2, format="csr")
        y = np.arange(30) % 2
    else:
        X, y = blocks(30)
    classifier = LinearKnnClassifier(n_neighbors=4).fit(X, y)
    config, arrays = classifier.get_state()
    restored = LinearKnnClassifier.from_state(config, arrays)
    assert np.allclose(restored.predict_proba(X), classifier.predict_proba(X))
    restored.partial_fit(X[:1], y[:1])
    assert restored.n_memory_ == 31


def test_text_model_file_round_trip() -> None:
    texts = [f"ethereum price {word} today" for word in ("up", "down", "flat")] * 5
    labels = ["positive", "negative", "useless"] * 5
    model = TextModel(make_featurizer("tfidf"), make_classifier("linear+knn"), sorted(set(labels)))
    model.fit(texts, labels)
    restored = TextModel.from_bytes(model.to_bytes())
    assert np.allclose(restored.predict_proba(texts), model.predict_proba(texts))
    assert restored.predict(["ethereum price up today"]) == ["positive"]


def test_bad_neighbour_count() -> None:
    X, y = blocks(10)
    with pytest.raises(ValidationError, match="n_neighbors"):
        LinearKnnClassifier(n_neighbors=0).fit(X, y)


def test_recipe_is_an_auto_candidate() -> None:
    assert get_recipe("tfidf-embedding-knn") is TFIDF_EMBEDDING_KNN
    assert TFIDF_EMBEDDING_KNN in AUTO_CANDIDATES


def test_centred_vote_subtracts_the_training_mean() -> None:
    X, y = blocks(60)
    classifier = LinearKnnClassifier(n_neighbors=5, centre=True).fit(X, y)
    dense = X[:, 20:].toarray()
    assert np.allclose(classifier.centre_, dense.mean(axis=0), atol=1e-6)
    centred = dense - dense.mean(axis=0)
    expected = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    assert np.allclose(classifier.memory_, expected, atol=1e-5)
    # Online answers are centred by the same mean.
    classifier.partial_fit(X[:2], y[:2])
    assert np.allclose(classifier.memory_[60:62], expected[:2], atol=1e-5)


def test_softmax_vote_follows_the_temperature() -> None:
    X, y = blocks(60)
    query = X[:1]
    sharp = LinearKnnClassifier(n_neighbors=9, vote="softmax", temperature=1e-4).fit(X[1:], y[1:])
    flat = LinearKnnClassifier(n_neighbors=9, vote="softmax", temperature=1e4).fit(X[1:], y[1:])
    # Cold: the nearest row takes the whole vote.
    embedding = query[:, 20:].toarray().ravel()
    nearest = int(np.argmax(sharp.memory_ @ (embedding / np.linalg.norm(embedding))))
    votes = sharp.neighbour_proba(query)
    assert votes[0, y[1:][nearest]] == pytest.approx(1.0)
    # Hot: each of the 9 nearest rows counts once, so a far query gets the class counts.
    far = sp.csr_matrix(np.hstack([np.zeros((1, 20)), np.ones((1, 8))]))
    similarity = flat.memory_ @ (np.ones(8) / np.sqrt(8))
    counts = np.bincount(y[1:][np.argsort(-similarity)[:9]], minlength=3) / 9
    assert np.allclose(flat.neighbour_proba(far)[0], counts, atol=1e-3)


@pytest.mark.parametrize("vote", ["distance", "softmax"])
def test_centred_state_round_trip(vote: str) -> None:
    X, y = blocks(60)
    classifier = LinearKnnClassifier(n_neighbors=5, centre=True, vote=vote).fit(X, y)
    config, arrays = classifier.get_state()
    restored = LinearKnnClassifier.from_state(config, arrays)
    assert restored.centre_ is not None
    assert np.allclose(restored.predict_proba(X), classifier.predict_proba(X))


def test_bad_vote_settings() -> None:
    X, y = blocks(30)
    with pytest.raises(ValidationError, match="unknown vote 'majority'; allowed: distance"):
        LinearKnnClassifier(vote="majority").fit(X, y)
    with pytest.raises(ValidationError, match="temperature must be positive, got 0"):
        LinearKnnClassifier(vote="softmax", temperature=0).fit(X, y)
