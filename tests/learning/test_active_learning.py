"""The active-learning simulation loop of benchmarks/active_learning.py, on a small pool."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from labelandlearn.learning.auto import TFIDF_LINEAR

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "active_learning.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("active_learning_bench", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _dataset(bench: ModuleType) -> object:
    rng = np.random.default_rng(0)
    words = {0: ["refund", "invoice", "payment"], 1: ["goal", "match", "league"]}
    y = rng.integers(0, 2, size=200)
    texts = [
        " ".join(rng.choice(words[int(label)], size=4)) + f" note{i % 17} item{i}"
        for i, label in enumerate(y)
    ]
    return bench.Dataset("toy", texts, y.astype(np.int64), ["a", "b"])


def test_held_out_split_is_stratified_and_fixed(bench: ModuleType) -> None:
    y = np.array([0] * 70 + [1] * 30)
    settings = bench.SimulationSettings()
    pool, test = bench.held_out_split(y, settings)
    again_pool, _ = bench.held_out_split(y, settings)
    assert test.size == 30
    assert np.intersect1d(pool, test).size == 0
    assert np.bincount(y[test]).tolist() == [21, 9]
    np.testing.assert_array_equal(pool, again_pool)


def test_initial_rows_hold_two_classes(bench: ModuleType) -> None:
    y_pool = np.array([0] * 95 + [1] * 5)
    rows = bench.initial_rows(y_pool, 10, np.random.default_rng(3))
    assert rows.size == 10
    assert np.unique(y_pool[rows]).size == 2


@pytest.mark.parametrize("strategy", ["random", "margin", "diverse-margin"])
def test_simulate_run_adds_step_per_round(bench: ModuleType, strategy: str) -> None:
    dataset = _dataset(bench)
    settings = bench.SimulationSettings(initial=10, step=10, max_labels=50)
    X = bench.featurize(TFIDF_LINEAR, dataset.texts)
    split = bench.held_out_split(dataset.y, settings)
    query = bench.strategy_query(strategy)
    curve = bench.simulate_run(TFIDF_LINEAR, X, dataset.y, split, query, 0, settings)
    again = bench.simulate_run(TFIDF_LINEAR, X, dataset.y, split, query, 0, settings)
    assert curve.labels == [10, 20, 30, 40, 50]
    assert len(curve.round_seconds) == 4
    assert all(0.0 <= f1 <= 1.0 for f1 in curve.macro_f1)
    assert curve.macro_f1[-1] > 0.9
    assert again.macro_f1 == curve.macro_f1


def test_summarise_checkpoints_and_labels_to_95(bench: ModuleType) -> None:
    curves = [
        bench.Curve(labels=[100, 200, 300], macro_f1=[0.5, 0.9, 1.0], round_seconds=[0.1, 0.3]),
        bench.Curve(labels=[100, 200, 300], macro_f1=[0.7, 0.9, 1.0], round_seconds=[0.2, 0.2]),
    ]
    row = bench.summarise(curves, full_score=1.0)
    assert row["at"]["100"] == pytest.approx(0.6)
    assert row["at"]["200"] == pytest.approx(0.9)
    assert row["at"]["500"] is None
    assert row["labels_to_95"] == 300
    assert row["aulc"] == pytest.approx((0.75 + 0.95) / 2)
    assert row["round_seconds"] == pytest.approx(0.2)


def test_small_text_query_matches_label_count(bench: ModuleType) -> None:
    pytest.importorskip("small_text")
    dataset = _dataset(bench)
    settings = bench.SimulationSettings(initial=10, step=10, max_labels=30)
    X = bench.featurize(TFIDF_LINEAR, dataset.texts)
    split = bench.held_out_split(dataset.y, settings)
    for name in bench.SMALL_TEXT_STRATEGIES:
        query = bench.small_text_query(name)
        curve = bench.simulate_run(TFIDF_LINEAR, X, dataset.y, split, query, 1, settings)
        assert curve.labels == [10, 20, 30], name
