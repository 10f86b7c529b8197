"""Contract tests run for every query strategy, then each strategy's own ordering."""

from __future__ import annotations

import numpy as np
import pytest

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
