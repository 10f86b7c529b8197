"""Model benchmarks on the shared short-text datasets.

``cv``: 5-fold stratified cross-validated macro-F1 of each model recipe, and of the automatic
choice, nested so that it chooses on each outer training fold only.

TODO: the active-learning simulation (fixed stratified held-out 30%, 20 random labels to start,
20 more per round from each query strategy, 5 seeds, learning-curve PNGs and a table) is not
written yet.

Texts are deduplicated. Embeddings are computed once and cached in ``--cache-dir``. Run from the
repository root, for example::

    .venv/bin/python benchmarks/active_learning.py cv --dataset ethereum-useful
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from labelandlearn.learning.auto import AUTO_CANDIDATES, choose_recipe
from labelandlearn.learning.base import Features, ModelRecipe, make_classifier, make_featurizer
from labelandlearn.learning.embeddings import (
    DEFAULT_BACKEND,
    EmbeddingCache,
    embed_texts,
    get_backend,
)

logger = logging.getLogger("benchmarks.active_learning")

DATASETS_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


@dataclass(frozen=True)
class Dataset:
    name: str
    texts: list[str]
    y: np.ndarray
    label_names: list[str]


def _read(parts: Sequence[str], text: str, label: str, split: str | None = None) -> pd.DataFrame:
    frame = pd.read_csv(DATASETS_ROOT.joinpath(*parts))
    if split is not None and "split" in frame:
        frame = frame[frame["split"] == split]
    frame = frame.dropna(subset=[text, label]).drop_duplicates(text)
    return frame.rename(columns={text: "text", label: "label"})[["text", "label"]]


LOADERS: dict[str, Callable[[], pd.DataFrame]] = {
    "ethereum-useful": lambda: _read(("ethereum-tweets", "labelled.csv"), "text", "useful"),
    "ethereum-rating": lambda: _read(("ethereum-tweets", "labelled.csv"), "text", "rating"),
    "twitter-financial-news": lambda: _read(
        ("twitter-financial-news", "twitter_financial_news.csv"), "text", "label"
    ),
    "sms-spam": lambda: _read(("sms-spam", "sms_spam.csv"), "text", "label"),
    "trec": lambda: _read(("trec", "trec.csv"), "text", "label", split="train"),
}


def load_dataset(name: str) -> Dataset:
    frame = LOADERS[name]()
    labels = sorted(frame["label"].astype(str).unique())
    index = {label: i for i, label in enumerate(labels)}
    y = np.array([index[str(v)] for v in frame["label"]], dtype=np.int64)
    return Dataset(name, frame["text"].astype(str).tolist(), y, labels)


def with_cache(recipe: ModelRecipe, cache_dir: Path) -> ModelRecipe:
    """Return the recipe with its embedding cache folder set to ``cache_dir``."""
    if "embedding" not in recipe.featurizer:
        return recipe
    params = {**recipe.featurizer_params, "cache_dir": str(cache_dir)}
    return ModelRecipe(
        recipe.name, recipe.featurizer, recipe.classifier, params, recipe.classifier_params
    )


def featurize(recipe: ModelRecipe, texts: Sequence[str]) -> Features:
    featurizer = make_featurizer(recipe.featurizer, **dict(recipe.featurizer_params))
    return featurizer.fit(texts).transform(texts)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(f1_score(y_true, y_pred, average="macro"))


def fit_predict(recipe: ModelRecipe, X: Features, y: np.ndarray, rows: np.ndarray) -> Any:
    classifier = make_classifier(recipe.classifier, **dict(recipe.classifier_params))
    return classifier.fit(X[rows], y[rows])


# --------------------------------------------------------------------------- cv


def run_cv(dataset: Dataset, recipes: Sequence[ModelRecipe], folds: int, auto: bool) -> dict:
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    splits = list(splitter.split(np.zeros(dataset.y.size), dataset.y))
    results: dict[str, Any] = {}
    cache: dict[str, Features] = {}
    for recipe in recipes:
        started = time.perf_counter()
        if recipe.featurizer not in cache:
            cache[recipe.featurizer] = featurize(recipe, dataset.texts)
        X = cache[recipe.featurizer]
        scores = []
        for train_rows, test_rows in splits:
            classifier = fit_predict(recipe, X, dataset.y, train_rows)
            predicted = classifier.classes_[classifier.predict_proba(X[test_rows]).argmax(axis=1)]
            scores.append(macro_f1(dataset.y[test_rows], predicted))
        results[recipe.name] = _summary(scores, time.perf_counter() - started)
        logger.info("%s %s: %s", dataset.name, recipe.name, results[recipe.name])
    if auto:
        results["auto (nested)"] = _nested_auto(dataset, recipes, splits, cache)
    return results


def _nested_auto(
    dataset: Dataset,
    recipes: Sequence[ModelRecipe],
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    cache: dict[str, Features],
) -> dict[str, Any]:
    started = time.perf_counter()
    scores, chosen = [], []
    for train_rows, test_rows in splits:
        train_texts = [dataset.texts[i] for i in train_rows]
        choice = choose_recipe(
            train_texts, dataset.y[train_rows], candidates=recipes, time_budget_s=600
        )
        recipe = next(r for r in recipes if r.name == choice.chosen)
        X = cache[recipe.featurizer]
        classifier = fit_predict(recipe, X, dataset.y, train_rows)
        predicted = classifier.classes_[classifier.predict_proba(X[test_rows]).argmax(axis=1)]
        scores.append(macro_f1(dataset.y[test_rows], predicted))
        chosen.append(choice.chosen)
    summary = _summary(scores, time.perf_counter() - started)
    summary["chosen"] = chosen
    return summary


def _summary(scores: Sequence[float], seconds: float) -> dict[str, Any]:
    return {
        "macro_f1": round(float(np.mean(scores)), 4),
        "std": round(float(np.std(scores, ddof=1)), 4),
        "folds": [round(s, 4) for s in scores],
        "seconds": round(seconds, 1),
    }


def warm_embeddings(dataset: Dataset, cache_dir: Path, backend: str = DEFAULT_BACKEND) -> None:
    """Embed every text of the dataset once, so the timed runs read vectors from the cache."""
    embed_texts(dataset.texts, get_backend(backend), EmbeddingCache(cache_dir))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cv = sub.add_parser("cv", help="cross-validated macro-F1 of each model recipe")
    cv.add_argument("--dataset", action="append", choices=sorted(LOADERS), required=True)
    cv.add_argument("--folds", type=int, default=5)
    cv.add_argument("--recipes", nargs="*", default=[r.name for r in AUTO_CANDIDATES])
    cv.add_argument("--no-auto", action="store_true", help="skip the nested automatic choice")
    cv.add_argument("--cache-dir", type=Path, default=Path("/tmp/labelandlearn-bench-cache"))
    cv.add_argument("--output", type=Path, help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    recipes = [with_cache(r, args.cache_dir) for r in AUTO_CANDIDATES if r.name in args.recipes]
    report = {}
    for name in args.dataset:
        dataset = load_dataset(name)
        if any("embedding" in r.featurizer for r in recipes):
            warm_embeddings(dataset, args.cache_dir)
        report[name] = run_cv(dataset, recipes, args.folds, auto=not args.no_auto)
    text = json.dumps(report, indent=2)
    if args.output:
        args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
