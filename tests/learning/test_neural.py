"""The PyTorch network classifier on synthetic data and on a subset of the Ethereum tweets."""

from __future__ import annotations

import io
import json
import sys
import time

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("torch", reason="the nn extra (torch) is not installed")

from conftest import dataset_path  # noqa: E402
from labelandlearn.errors import MissingExtraError, ValidationError  # noqa: E402
from labelandlearn.learning.neural import NeuralClassifier  # noqa: E402


def blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian blobs in 10 dimensions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centres = rng.normal(0.0, 3.0, size=(3, 10))
    X = centres[y] + rng.normal(0.0, 1.0, size=(n, 10))
    return X.astype(np.float32), y


def sparse_blobs(n: int, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    """Blobs stacked after 2,000 sparse noise columns, like TF-IDF next to embeddings."""
    X, y = blobs(n, seed)
    noise = sp.random(n, 2000, density=0.005, random_state=seed, format="csr", dtype=np.float32)
    return sp.hstack([noise, sp.csr_matrix(X)], format="csr"), y


def accuracy(classifier: NeuralClassifier, X: object, y: np.ndarray) -> float:
    return float((classifier.predict_proba(X).argmax(axis=1) == y).mean())


def test_fits_dense_blobs() -> None:
    X, y = blobs(600)
    classifier = NeuralClassifier(hidden_sizes=(32,), max_epochs=15).fit(X[:400], y[:400])
    assert accuracy(classifier, X[400:], y[400:]) > 0.95
    proba = classifier.predict_proba(X[400:])
    assert proba.shape == (200, 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert classifier.architecture() == "dense 10 → 32 → 3, dropout 0.3"


def test_records_training_curve() -> None:
    X, y = blobs(400)
    classifier = NeuralClassifier(hidden_sizes=(16,), max_epochs=5, patience=10).fit(X, y)
    curve = classifier.training_curve_
    assert [row["epoch"] for row in curve] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert {"train_loss", "validation_loss", "validation_macro_f1"} <= set(curve[0])
    assert curve[-1]["train_loss"] < curve[0]["train_loss"]


def test_early_stopping_on_random_labels() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 50)).astype(np.float32)
    y = rng.integers(0, 2, size=300)
    classifier = NeuralClassifier(hidden_sizes=(128,), max_epochs=60, patience=3).fit(X, y)
    assert len(classifier.training_curve_) < 60
    assert classifier.best_epoch_ <= len(classifier.training_curve_) - 3


def test_fits_sparse_with_column_cap() -> None:
    X, y = sparse_blobs(600)
    classifier = NeuralClassifier(hidden_sizes=(32,), max_epochs=15, max_input_features=500)
    classifier.fit(X[:400], y[:400])
    assert classifier.columns_ is not None
    assert len(classifier.columns_) == 500
    # The dense blob columns are present in every row, so the cap keeps all ten.
    assert set(range(2000, 2010)) <= set(classifier.columns_.tolist())
    assert accuracy(classifier, X[400:], y[400:]) > 0.95
    assert classifier.architecture().startswith("sparse 500 → 32 → 3")


def test_state_round_trip_without_pickle() -> None:
    X, y = sparse_blobs(300)
    classifier = NeuralClassifier(hidden_sizes=(16, 8), max_epochs=3, max_input_features=800)
    classifier.fit(X, y)
    config, arrays = classifier.get_state()

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        loaded = {key: npz[key] for key in npz.files}
    restored = NeuralClassifier.from_state(json.loads(json.dumps(config)), loaded)

    assert np.allclose(restored.predict_proba(X), classifier.predict_proba(X), atol=1e-6)
    assert restored.hidden_sizes == (16, 8)
    assert restored.training_curve_ == classifier.training_curve_
    assert config["architecture"] == classifier.architecture()


def test_unfitted_state_round_trip() -> None:
    config, arrays = NeuralClassifier(dropout=0.1).get_state()
    restored = NeuralClassifier.from_state(config, arrays)
    assert not restored.is_fitted
    assert restored.dropout == 0.1


def test_partial_fit_cold_start_and_update() -> None:
    X, y = blobs(200)
    classifier = NeuralClassifier(hidden_sizes=(16,), partial_fit_steps=5)
    classifier.partial_fit(X[:3], y[:3], classes=np.array([0, 1, 2]))
    assert classifier.classes_.tolist() == [0, 1, 2]
    before = classifier.predict_proba(X[:50])
    for start in range(0, 200, 10):
        classifier.partial_fit(X[start : start + 10], y[start : start + 10])
    after = classifier.predict_proba(X[:50])
    assert not np.allclose(before, after)
    assert accuracy(classifier, X, y) > 0.8


def test_answers_nudge_trained_network_gently() -> None:
    import torch

    # Overlapping classes, so the trained network is unsure of many rows, as on real texts.
    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 20)).astype(np.float32)
    y = (X[:, :3] + rng.normal(scale=1.5, size=(400, 3))).argmax(axis=1)
    trained = NeuralClassifier(hidden_sizes=(64,), max_epochs=5).fit(X[:300], y[:300])
    classifier = NeuralClassifier.from_state(*trained.get_state())
    before = classifier.predict_proba(X[300:])
    torch.manual_seed(0)
    for row in range(300, 310):
        classifier.partial_fit(X[row : row + 1], y[row : row + 1])
    after = classifier.predict_proba(X[300:])
    assert not np.allclose(before, after)
    assert (after.argmax(axis=1) == before.argmax(axis=1)).mean() >= 0.95
    assert abs(after.max(axis=1).mean() - before.max(axis=1).mean()) < 0.03


def test_partial_fit_unknown_class() -> None:
    X, y = blobs(100)
    classifier = NeuralClassifier(hidden_sizes=(8,), max_epochs=2).fit(X, np.minimum(y, 1))
    with pytest.raises(ValidationError, match="not among the network's classes"):
        classifier.partial_fit(X[:2], np.array([2, 2]))


def test_rejects_wrong_width() -> None:
    X, y = blobs(100)
    classifier = NeuralClassifier(hidden_sizes=(8,), max_epochs=2).fit(X, y)
    with pytest.raises(ValidationError, match="10"):
        classifier.predict_proba(X[:, :5])


def test_rejects_single_class() -> None:
    X, _ = blobs(80)
    with pytest.raises(ValidationError, match="at least 2 classes"):
        NeuralClassifier().fit(X, np.zeros(80, dtype=int))


def test_same_seed_same_model() -> None:
    X, y = blobs(300)
    first = NeuralClassifier(hidden_sizes=(16,), max_epochs=3, random_state=7).fit(X, y)
    second = NeuralClassifier(hidden_sizes=(16,), max_epochs=3, random_state=7).fit(X, y)
    assert np.allclose(first.predict_proba(X), second.predict_proba(X))


def test_missing_torch_names_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    X, y = blobs(50)
    with pytest.raises(MissingExtraError, match=r"labelandlearn\[nn\]"):
        NeuralClassifier().fit(X, y)


def test_tweets_subset_useful() -> None:
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    frame = pd.read_csv(dataset_path("ethereum-tweets", "labelled.csv"))
    frame = frame.drop_duplicates("text").sample(2000, random_state=0)
    train, test = train_test_split(frame, test_size=0.3, stratify=frame.useful, random_state=0)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    X_train = vectorizer.fit_transform(train.text)

    started = time.perf_counter()
    classifier = NeuralClassifier(hidden_sizes=(64,), max_epochs=20).fit(
        X_train, train.useful.to_numpy()
    )
    seconds = time.perf_counter() - started
    predicted = classifier.predict_proba(vectorizer.transform(test.text)).argmax(axis=1)

    assert f1_score(test.useful, predicted, average="macro") > 0.68
    assert seconds < 15
