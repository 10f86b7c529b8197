"""Cross-validated metrics and the live accuracy of labelling."""

from __future__ import annotations

import pytest
from learning_helpers import LABELS, corpus

from labelandlearn.errors import NotEnoughLabelsError
from labelandlearn.learning.evaluation import cross_validate, live_accuracy


def test_cross_validate_reports_all_metrics() -> None:
    texts, labels = corpus(per_class=10)
    steps: list[float] = []
    metrics = cross_validate(
        "tfidf-linear", texts, labels, label_names=LABELS, progress=lambda f, m: steps.append(f)
    )
    assert metrics["n_splits"] == 5
    assert metrics["n_labels"] == 30
    assert metrics["labels"] == LABELS
    assert len(metrics["fold_macro_f1"]) == 5
    assert set(metrics["per_class"]) == set(LABELS)
    assert metrics["per_class"]["useless"]["support"] == 10
    assert sum(map(sum, metrics["confusion_matrix"])) == 30
    assert 0.0 <= metrics["macro_f1"] <= 1.0
    assert metrics["accuracy"] > 0.6
    assert steps[-1] == 1.0


def test_cross_validate_shrinks_splits_to_smallest_class() -> None:
    texts, labels = corpus(per_class=10)
    keep = [i for i, label in enumerate(labels) if label != "negative" or i % 10 < 3]
    metrics = cross_validate(
        "tfidf-linear", [texts[i] for i in keep], [labels[i] for i in keep], label_names=LABELS
    )
    assert metrics["n_splits"] == 3


def test_cross_validate_with_model_factory() -> None:
    from labelandlearn.learning.base import get_recipe

    texts, labels = corpus(per_class=6)
    metrics = cross_validate(
        lambda: get_recipe("tfidf-linear").build(LABELS),
        texts,
        labels,
        label_names=LABELS,
        n_splits=3,
    )
    assert metrics["n_splits"] == 3


def test_one_example_class_names_class_and_count() -> None:
    texts, labels = corpus(per_class=5)
    labels = ["negative"] + ["useless"] * 14
    with pytest.raises(NotEnoughLabelsError, match=r"negative \(1\), positive \(0\)"):
        cross_validate("tfidf-linear", texts, labels, label_names=LABELS)


def test_live_accuracy_uses_last_hundred() -> None:
    rows = (
        [("useless", "positive")] * 50
        + [("useless", "useless")] * 80
        + [("positive", "positive")] * 20
    )
    result = live_accuracy(rows)
    assert result["n"] == 100
    assert result["accuracy"] == pytest.approx(1.0)
    assert result["per_class"]["useless"]["accuracy"] == 1.0


def test_live_accuracy_skips_missing_predictions() -> None:
    result = live_accuracy([(None, "useless"), ("useless", "positive")])
    assert result["n"] == 1
    assert result["accuracy"] == 0.0
    assert result["per_class"]["positive"]["accuracy"] == 0.0
    assert live_accuracy([])["accuracy"] is None
