"""Honest metrics: stratified k-fold cross-validation on labelled items, and live accuracy.

Cross-validation trains each fold's classifier on the other folds' labels only. When the model
is a recipe of a featurizer and a classifier, the featurizer is fitted once on all texts, as
in production, where TF-IDF sees every item of the project, labelled or not; it learns no
labels, so this leaks no answers into the folds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)
from sklearn.model_selection import StratifiedKFold

from labelandlearn.errors import NotEnoughLabelsError, ValidationError
from labelandlearn.learning.base import (
    Features,
    ModelRecipe,
    ProgressCallback,
    TextModel,
    get_recipe,
)

logger = logging.getLogger(__name__)

ModelFactory = Callable[[], TextModel]
MIN_EXAMPLES_PER_CLASS = 2
LIVE_WINDOW = 100
# Folds fitted at once by cross_validate_features.
FOLD_THREADS = 2


def check_class_counts(
    labels: Sequence[str], label_names: Sequence[str], minimum: int = MIN_EXAMPLES_PER_CLASS
) -> dict[str, int]:
    """Return examples per label; raise NotEnoughLabelsError naming classes below ``minimum``."""
    counts = {label: 0 for label in labels}
    for name in label_names:
        if name not in counts:
            raise ValidationError(f"unknown label {name!r}; labels are: {', '.join(labels)}")
        counts[name] += 1
    short = {label: n for label, n in counts.items() if n < minimum}
    if short:
        listed = ", ".join(f"{label} ({n})" for label, n in short.items())
        raise NotEnoughLabelsError(
            f"every label needs at least {minimum} labelled examples; too few for: {listed}. "
            "Label more items of these classes and train again."
        )
    return counts


def _prepare(
    labels: Sequence[str], label_names: Sequence[str] | None, n_splits: int, random_state: int
) -> tuple[list[str], np.ndarray, StratifiedKFold]:
    names = list(label_names) if label_names is not None else list(dict.fromkeys(labels))
    counts = check_class_counts(names, labels)
    splits = max(2, min(n_splits, min(counts.values())))
    position = {name: i for i, name in enumerate(names)}
    y = np.array([position[label] for label in labels], dtype=np.int64)
    return names, y, StratifiedKFold(n_splits=splits, shuffle=True, random_state=random_state)


def cross_validate(
    recipe_or_factory: ModelRecipe | str | ModelFactory,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    label_names: Sequence[str] | None = None,
    unlabelled_texts: Sequence[str] = (),
    n_splits: int = 5,
    random_state: int = 0,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Run stratified k-fold cross-validation; see ``cross_validate_with_proba``."""
    metrics, _ = cross_validate_with_proba(
        recipe_or_factory,
        texts,
        labels,
        label_names=label_names,
        unlabelled_texts=unlabelled_texts,
        n_splits=n_splits,
        random_state=random_state,
        progress=progress,
    )
    return metrics


def cross_validate_with_proba(
    recipe_or_factory: ModelRecipe | str | ModelFactory,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    label_names: Sequence[str] | None = None,
    unlabelled_texts: Sequence[str] = (),
    n_splits: int = 5,
    random_state: int = 0,
    progress: ProgressCallback | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Run stratified k-fold cross-validation over labelled ``texts`` with answers ``labels``.

    Returns the metrics and the out-of-fold probabilities: one row per text, one column per
    label of the model's label list.

    ``label_names`` is the model's full label list in display order (default: the distinct
    answers in order of first appearance). ``n_splits`` shrinks to the smallest class count,
    down to 2; a class with fewer than 2 examples raises NotEnoughLabelsError.
    """
    recipe = (
        get_recipe(recipe_or_factory) if isinstance(recipe_or_factory, str) else recipe_or_factory
    )
    names, y, folds = _prepare(labels, label_names, n_splits, random_state)
    if isinstance(recipe, ModelRecipe) and type(recipe).fit_model is ModelRecipe.fit_model:
        model = recipe.build(names, random_state=random_state)
        model.featurizer.fit(list(texts) + list(unlabelled_texts))
        features = model.featurizer.transform(texts)
        return cross_validate_features_with_proba(
            model, features, labels, n_splits=n_splits, random_state=random_state, progress=progress
        )
    started = time.perf_counter()
    results = []
    splits = list(folds.split(np.zeros(len(y)), y))
    for fold, (train, test) in enumerate(splits):
        train_texts = [texts[i] for i in train]
        train_labels = [names[i] for i in y[train]]
        if isinstance(recipe, ModelRecipe):
            fold_model = recipe.fit_model(
                names,
                train_texts,
                train_labels,
                unlabelled_texts=unlabelled_texts,
                random_state=random_state,
            )
        else:
            fold_model = recipe().fit(train_texts, train_labels, unlabelled_texts=unlabelled_texts)
        proba = fold_model.predict_proba([texts[i] for i in test])
        results.append((test, proba))
        _report(progress, fold + 1, len(splits))
    return _metrics(y, names, results, started), _out_of_fold(y, names, results)


def cross_validate_features(
    model: TextModel,
    features: Features,
    labels: Sequence[str],
    *,
    n_splits: int = 5,
    random_state: int = 0,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Cross-validate clones of ``model.classifier``; see ``cross_validate_features_with_proba``."""
    metrics, _ = cross_validate_features_with_proba(
        model, features, labels, n_splits=n_splits, random_state=random_state, progress=progress
    )
    return metrics


def cross_validate_features_with_proba(
    model: TextModel,
    features: Features,
    labels: Sequence[str],
    *,
    n_splits: int = 5,
    random_state: int = 0,
    progress: ProgressCallback | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Cross-validate clones of ``model.classifier`` on features from its fitted featurizer.

    Each fold fits a fresh clone on the other folds' rows only, so the metrics never come from
    the data a classifier was trained on. Returns the metrics and the out-of-fold
    probabilities, columns in ``model.labels`` order.
    """
    names, y, folds = _prepare(labels, model.labels, n_splits, random_state)
    started = time.perf_counter()
    splits = list(folds.split(np.zeros(len(y)), y))

    def run_fold(split: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        train, test = split
        classifier = clone(model.classifier).fit(features[train], y[train])
        fold_model = TextModel(model.featurizer, classifier, names)
        return test, fold_model.predict_proba_features(features[test])

    # scikit-learn's SGD inner loop releases the GIL, so two threads fit two folds at once.
    results = []
    with ThreadPoolExecutor(max_workers=min(FOLD_THREADS, len(splits))) as pool:
        for done, result in enumerate(pool.map(run_fold, splits), start=1):
            results.append(result)
            _report(progress, done, len(splits))
    return _metrics(y, names, results, started), _out_of_fold(y, names, results)


def _metrics(
    y: np.ndarray,
    names: list[str],
    results: list[tuple[np.ndarray, np.ndarray]],
    started: float,
) -> dict[str, Any]:
    predicted = np.empty_like(y)
    fold_f1 = []
    for test_index, fold_proba in results:
        fold_predicted = fold_proba.argmax(axis=1)
        predicted[test_index] = fold_predicted
        fold_f1.append(
            f1_score(
                y[test_index],
                fold_predicted,
                labels=range(len(names)),
                average="macro",
                zero_division=0,
            )
        )
    metrics = _summary(y, predicted, names, fold_f1)
    metrics["n_splits"] = len(results)
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    return metrics


def _out_of_fold(
    y: np.ndarray, names: list[str], results: list[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    proba = np.zeros((y.size, len(names)), dtype=np.float64)
    for test_index, fold_proba in results:
        proba[test_index] = fold_proba
    return proba


def _report(progress: ProgressCallback | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done / total, f"cross-validation fold {done} of {total}")


def _summary(
    y: np.ndarray, predicted: np.ndarray, names: list[str], fold_f1: list[float]
) -> dict[str, Any]:
    indices = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, labels=indices, zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(f1_score(y, predicted, labels=indices, average="macro", zero_division=0)),
        "per_class": per_class,
        "labels": names,
        "confusion_matrix": confusion_matrix(y, predicted, labels=indices).tolist(),
        "fold_macro_f1": [float(v) for v in fold_f1],
        "fold_macro_f1_mean": float(np.mean(fold_f1)),
        "fold_macro_f1_std": float(np.std(fold_f1)),
        "n_labels": int(len(y)),
    }


def live_accuracy(
    rows: Iterable[tuple[str | None, str]], window: int = LIVE_WINDOW
) -> dict[str, Any]:
    """Return how often the prediction shown matched the answer, overall and per answer class.

    ``rows`` are (predicted_label, answer_label) pairs, oldest first; only the last ``window``
    pairs with a prediction count. Accuracy is None where no pair counts.
    """
    pairs = [(p, a) for p, a in rows if p is not None][-window:]
    per_class: dict[str, dict[str, Any]] = {}
    for predicted, answer in pairs:
        entry = per_class.setdefault(answer, {"n": 0, "correct": 0})
        entry["n"] += 1
        entry["correct"] += int(predicted == answer)
    for entry in per_class.values():
        entry["accuracy"] = entry["correct"] / entry["n"]
    correct = sum(int(p == a) for p, a in pairs)
    return {
        "n": len(pairs),
        "correct": correct,
        "accuracy": correct / len(pairs) if pairs else None,
        "per_class": per_class,
        "window": window,
    }
