"""Contract tests run for every query strategy, then each strategy's own ordering."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from labelandlearn.errors import ValidationError
from labelandlearn.learning.strategies import get_strategy, strategy_names


def _proba(n: int, n_labels: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(n_labels), size=n)


@pytest.mark.parametrize("name", strategy_names())
class TestStrategyContract:
    def test_one_finite_score_per_item(self, name: str) -> None:
        scores = get_strategy(name).score(_proba(50), random_state=0)
        assert scores.shape == (50,)
        assert np.isfinite(scores).all()

    def test_same_random_state_same_scores(self, name: str) -> None:
        proba = _proba(40)
        first = get_strategy(name).score(proba, random_state=7)
        second = get_strategy(name).score(proba, random_state=7)
        np.testing.assert_array_equal(first, second)

    def test_single_item(self, name: str) -> None:
        assert get_strategy(name).score(_proba(1), random_state=0).shape == (1,)

    def test_empty_pool(self, name: str) -> None:
        assert get_strategy(name).score(np.zeros((0, 3)), random_state=0).shape == (0,)

    def test_two_labels(self, name: str) -> None:
        scores = get_strategy(name).score(_proba(10, n_labels=2), random_state=0)
        assert np.isfinite(scores).all()

    def test_constant_proba(self, name: str) -> None:
        scores = get_strategy(name).score(np.full((20, 3), 1 / 3), random_state=0)
        assert np.isfinite(scores).all()

    def test_rejects_one_dimensional_proba(self, name: str) -> None:
        with pytest.raises(ValidationError, match="probabilities must be"):
            get_strategy(name).score(np.ones(5), random_state=0)

    def test_features_and_batch_size_accepted(self, name: str) -> None:
        features = np.random.default_rng(3).normal(size=(60, 8))
        first = get_strategy(name).score(
            _proba(60), random_state=5, features=features, batch_size=4
        )
        second = get_strategy(name).score(
            _proba(60), random_state=5, features=features, batch_size=4
        )
        assert first.shape == (60,)
        assert np.isfinite(first).all()
        np.testing.assert_array_equal(first, second)

    def test_without_model(self, name: str) -> None:
        strategy = get_strategy(name)
        if strategy.needs_model:
            with pytest.raises(ValidationError, match="train a model first"):
                strategy.score(None, random_state=0, n_items=5)
        else:
            assert strategy.score(None, random_state=0, n_items=5).shape == (5,)


def test_unknown_strategy_lists_names() -> None:
    with pytest.raises(ValidationError, match=r"unknown query strategy 'x'; allowed: .*margin"):
        get_strategy("x")


def test_margin_asks_closest_call_first() -> None:
    proba = np.array([[0.9, 0.05, 0.05], [0.45, 0.44, 0.11], [0.6, 0.3, 0.1]])
    assert get_strategy("margin").score(proba, random_state=0).argmax() == 1


def test_margin_breaks_ties_by_random_state() -> None:
    proba = np.tile([[0.5, 0.3, 0.2]], (100, 1))
    first = get_strategy("margin").score(proba, random_state=1).argmax()
    second = get_strategy("margin").score(proba, random_state=2).argmax()
    assert first != second


def test_entropy_and_least_confidence_prefer_uniform() -> None:
    proba = np.array([[0.98, 0.01, 0.01], [0.34, 0.33, 0.33]])
    assert get_strategy("entropy").score(proba, random_state=0).argmax() == 1
    assert get_strategy("least-confidence").score(proba, random_state=0).argmax() == 1


def test_file_order_keeps_positions() -> None:
    scores = get_strategy("file-order").score(None, n_items=4)
    assert list(np.argsort(-scores)) == [0, 1, 2, 3]


def test_class_balanced_favours_rare_prediction() -> None:
    # Nine items predicted "useless", one predicted "positive", all equally uncertain.
    proba = np.array([[0.1, 0.5, 0.4]] * 9 + [[0.1, 0.4, 0.5]])
    scores = get_strategy("class-balanced").score(proba, random_state=0)
    assert scores.argmax() == 9
    plain = get_strategy("margin").score(proba, random_state=0)
    assert plain[9] == pytest.approx(plain[0], abs=1e-6)


def _two_themes(n_per_theme: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Return (proba, features): theme A is the most uncertain, theme B slightly less.

    With a batch of 2 the uncertain top holds 2 * 10 items, so both themes are candidates.
    """
    proba_a = np.tile([[0.50, 0.49, 0.01]], (n_per_theme, 1))
    proba_b = np.tile([[0.60, 0.39, 0.01]], (n_per_theme, 1))
    rng = np.random.default_rng(0)
    features_a = np.array([1.0, 0.0]) + rng.normal(scale=0.01, size=(n_per_theme, 2))
    features_b = np.array([0.0, 1.0]) + rng.normal(scale=0.01, size=(n_per_theme, 2))
    return np.vstack([proba_a, proba_b]), np.vstack([features_a, features_b])


def test_diverse_margin_batch_spans_themes() -> None:
    proba, features = _two_themes()
    scores = get_strategy("diverse-margin").score(
        proba, random_state=0, features=features, batch_size=2
    )
    batch = np.argsort(-scores)[:2]
    assert sorted(batch // 10) == [0, 1]
    margin_batch = np.argsort(-get_strategy("margin").score(proba, random_state=0))[:2]
    assert list(margin_batch // 10) == [0, 0]


def test_diverse_margin_batch_most_uncertain_first() -> None:
    proba, features = _two_themes()
    scores = get_strategy("diverse-margin").score(
        proba, random_state=0, features=features, batch_size=2
    )
    assert scores.argmax() < 10


def test_diverse_margin_sparse_and_callable_features() -> None:
    proba, features = _two_themes()
    sparse = sp.csr_matrix(features)
    from_matrix = get_strategy("diverse-margin").score(
        proba, random_state=1, features=sparse, batch_size=2
    )
    from_function = get_strategy("diverse-margin").score(
        proba, random_state=1, features=lambda rows: features[rows], batch_size=2
    )
    np.testing.assert_allclose(from_matrix, from_function)


def test_diverse_margin_without_features_is_margin() -> None:
    proba = _proba(30)
    diverse = get_strategy("diverse-margin").score(proba, random_state=4)
    margin = get_strategy("margin").score(proba, random_state=4)
    np.testing.assert_array_equal(diverse, margin)


def test_diverse_margin_rejects_wrong_feature_rows() -> None:
    with pytest.raises(ValidationError, match="features have 5 rows but the pool has 40"):
        get_strategy("diverse-margin").score(
            _proba(40), random_state=0, features=np.ones((5, 2)), batch_size=2
        )


def test_diverse_margin_candidates_without_features() -> None:
    # Texts whose n-grams are all outside the vocabulary give all-zero feature rows.
    proba, _ = _two_themes()
    empty = sp.csr_matrix((len(proba), 50))
    scores = get_strategy("diverse-margin").score(
        proba, random_state=0, features=empty, batch_size=2
    )
    assert scores.shape == (len(proba),)
    assert np.isfinite(scores).all()
