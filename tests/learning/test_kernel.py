"""The RBF-kernel SVM member and its share of the ``linear+knn`` vote."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from learning_helpers import embedding_blocks
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC

from labelandlearn.errors import ValidationError
from labelandlearn.learning.auto import AUTO_CANDIDATES, TFIDF_EMBEDDING_KNN_KERNEL
from labelandlearn.learning.base import TextModel, get_recipe, make_classifier, make_featurizer
from labelandlearn.learning.ensemble import LinearKnnClassifier
from labelandlearn.learning.kernel import RbfKernelMember


def rings(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return unit vectors in 6 dimensions. Class 1 lies near both ends of the first axis."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, 6))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    y = (np.abs(rows[:, 0]) > 0.55).astype(np.int64)
    return rows.astype(np.float32), y


def blocks(n: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Return embedding blocks whose clusters overlap enough for the members to disagree."""
    return embedding_blocks(n, noise=0.3)


def test_decision_values_match_scikit_learn() -> None:
    rows, y = rings(200)
    member = RbfKernelMember(C=2.0, gamma=1.5).fit(rows, y, np.array([0, 1]))
    reference = SVC(C=2.0, gamma=1.5, class_weight="balanced").fit(rows, y)
    assert np.allclose(
        member.decision_function(rows)[:, 0], reference.decision_function(rows), atol=1e-4
    )


def test_learns_a_boundary_a_line_cannot() -> None:
    rows, y = rings(600)
    member = RbfKernelMember().fit(rows[:400], y[:400], np.array([0, 1]))
    proba = member.predict_proba(rows[400:])
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert (proba.argmax(axis=1) == y[400:]).mean() > 0.9
    linear = make_classifier("linear").fit(rows[:400], y[:400])
    assert (linear.predict_proba(rows[400:]).argmax(axis=1) == y[400:]).mean() < 0.8


def test_platt_scaling_is_fitted_on_held_out_values() -> None:
    rows, y = rings(400, seed=3)
    member = RbfKernelMember().fit(rows, y, np.array([0, 1]))
    slope, intercept = member.platt_[0]
    # A larger decision value means a likelier positive.
    assert slope > 0
    # The curve is the one fitted on decision values of rows each machine did not train on.
    held_out = np.zeros(y.size)
    for train, test in StratifiedKFold(3, shuffle=True, random_state=0).split(rows, y):
        machine = SVC(C=1.0, gamma=1.0, class_weight="balanced").fit(rows[train], y[train])
        held_out[test] = machine.decision_function(rows[test])
    curve = LogisticRegression(C=1e4).fit(held_out[:, None], y)
    assert slope == pytest.approx(curve.coef_[0, 0], rel=1e-3)
    assert intercept == pytest.approx(curve.intercept_[0], rel=1e-3, abs=1e-3)
    fresh, fresh_y = rings(400, seed=4)
    proba = member.predict_proba(fresh)[:, 1]
    # Calibrated: most rows given 0.8 or more are positive, but not all of them need be.
    confident = proba >= 0.8
    assert confident.sum() > 10
    assert 0.7 <= fresh_y[confident].mean() <= 1.0


def test_three_classes_share_one_set_of_support_vectors() -> None:
    X, y = blocks(90)
    rows = X[:, 20:].toarray()
    member = RbfKernelMember().fit(rows, y, np.arange(3))
    assert member.dual_coef_.shape == (member.support_vectors_.shape[0], 3)
    assert member.support_vectors_.shape[0] <= 90
    assert (member.predict_proba(rows).argmax(axis=1) == y).mean() > 0.9


def test_rare_class_leaves_member_unfitted() -> None:
    rows, _ = rings(20)
    y = np.zeros(20, dtype=np.int64)
    y[:2] = 1
    member = RbfKernelMember(platt_folds=3).fit(rows, y, np.array([0, 1]))
    assert not member.fitted_
    with pytest.raises(ValidationError, match="fit it on at least 3 rows of each class"):
        member.predict_proba(rows)


def test_rows_above_the_cap_are_sampled_by_class() -> None:
    rows, y = rings(300)
    member = RbfKernelMember(max_rows=120).fit(rows, y, np.array([0, 1]))
    assert member.fitted_
    assert member.support_vectors_.shape[0] <= 121
    sampled = member._sample(y)
    assert abs(sampled.size - 120) <= 1
    assert abs(y[sampled].mean() - y.mean()) < 0.01


@pytest.mark.parametrize("class_sizes", [(100, 101), (80, 80, 41), (100, 100, 3), (150, 60, 1)])
def test_sampling_just_over_the_cap(class_sizes: tuple[int, ...]) -> None:
    rows, _ = rings(sum(class_sizes), seed=5)
    y = np.repeat(np.arange(len(class_sizes)), class_sizes)
    member = RbfKernelMember(max_rows=200)
    sampled = member._sample(y)
    counts = np.bincount(y[sampled], minlength=len(class_sizes))
    # Every class keeps at least 3 rows for Platt scaling, or all it has.
    assert (counts >= np.minimum(class_sizes, 3)).all()
    member.fit(rows, y, np.arange(len(class_sizes)))
    assert member.fitted_ == (min(class_sizes) >= 3)


def test_bad_settings() -> None:
    with pytest.raises(ValidationError, match="C and gamma must be positive, got C=0"):
        RbfKernelMember(C=0)
    with pytest.raises(ValidationError, match="platt_folds must be at least 2, got 1"):
        RbfKernelMember(platt_folds=1)
    X, y = blocks(30)
    with pytest.raises(ValidationError, match="kernel_weight must be at least 0 and below 1"):
        LinearKnnClassifier(kernel_weight=1.0).fit(X, y)


def test_ensemble_gives_the_kernel_its_weight() -> None:
    X, y = blocks(90)
    with_kernel = LinearKnnClassifier(centre=True, kernel_weight=0.25).fit(X, y)
    assert with_kernel.kernel_ is not None
    without = LinearKnnClassifier(centre=True).fit(X, y)
    rows = X[:, 20:].toarray()
    centred = rows - rows.mean(axis=0)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    expected = 0.75 * without.predict_proba(X) + 0.25 * with_kernel.kernel_.predict_proba(centred)
    assert np.allclose(with_kernel.predict_proba(X), expected, atol=1e-5)


def test_no_kernel_without_an_embedding_block() -> None:
    X = sp.random(40, 300, density=0.05, random_state=1, format="csr")
    y = np.arange(40) % 2
    classifier = LinearKnnClassifier(kernel_weight=0.2).fit(X, y)
    assert classifier.kernel_ is None
    assert np.allclose(classifier.predict_proba(X).sum(axis=1), 1.0)


def test_partial_fit_keeps_kernel() -> None:
    X, y = blocks(60)
    two = y < 2
    classifier = LinearKnnClassifier(kernel_weight=0.2).fit(X[two], y[two])
    kernel = classifier.kernel_
    assert kernel is not None
    classifier.partial_fit(X[~two][:3], y[~two][:3], classes=np.arange(3))
    assert classifier.kernel_ is kernel
    proba = classifier.predict_proba(X)
    assert proba.shape == (60, 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    # The new class 2 gets no share of the kernel's vote; classes 0 and 1 get all of it.
    rows = np.asarray(classifier.memory_[:1])
    mixed = 0.5 * (classifier.linear_.predict_proba(X[:1]) + classifier.neighbour_proba(X[:1]))
    expected = 0.8 * mixed
    expected[0, :2] += 0.2 * kernel.predict_proba(rows)[0]
    assert np.allclose(proba[:1], expected)


def test_state_round_trip_keeps_the_kernel() -> None:
    X, y = blocks(60)
    classifier = LinearKnnClassifier(centre=True, vote="softmax", kernel_weight=0.2).fit(X, y)
    config, arrays = classifier.get_state()
    assert "kernel.support_vectors" in arrays
    restored = LinearKnnClassifier.from_state(config, arrays)
    assert restored.kernel_ is not None
    assert np.allclose(restored.predict_proba(X), classifier.predict_proba(X))


def test_text_model_keeps_kernel_settings() -> None:
    words = ("up", "down", "flat")
    texts = [f"ethereum price {w} today number {i}" for i in range(8) for w in words]
    labels = [w for _ in range(8) for w in ("positive", "negative", "useless")]
    featurizer = make_featurizer("tfidf")
    model = TextModel(
        featurizer, make_classifier("linear+knn", kernel_weight=0.2), sorted(set(labels))
    )
    model.fit(texts, labels)
    restored = TextModel.from_bytes(model.to_bytes())
    assert restored.classifier.get_params()["kernel_weight"] == 0.2
    # TF-IDF alone has no embedding block, so there is no kernel member to save.
    assert restored.classifier.kernel_ is None
    assert np.allclose(restored.predict_proba(texts), model.predict_proba(texts))


def test_recipe_is_an_auto_candidate() -> None:
    assert get_recipe("tfidf-embedding-knn-kernel") is TFIDF_EMBEDDING_KNN_KERNEL
    assert TFIDF_EMBEDDING_KNN_KERNEL in AUTO_CANDIDATES
    assert TFIDF_EMBEDDING_KNN_KERNEL.classifier_params["kernel_weight"] == 0.2
