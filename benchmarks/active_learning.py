"""Model and active-learning benchmarks on the shared short-text datasets.

``cv``: 5-fold stratified cross-validated macro-F1 of each model recipe, and of the automatic
choice, nested so that it chooses on each outer training fold only.

``simulate``: active learning against a fixed stratified held-out 30% of each dataset. Each run
starts from 20 random labels of the other 70% (the pool), asks for 20 more per round with one
query strategy, refits the classifier and scores it on the held-out part, up to 1,000 labels.
Every strategy of the registry (except file order) runs with every model, for 5 seeds; where
``small-text`` imports, its random, least-confidence and breaking-ties strategies run on the
same splits and seeds. Writes learning-curve PNGs, ``results.json`` and ``table.md``.

Texts are deduplicated. Embeddings are computed once and cached in ``--cache-dir``; the
simulation uses the TF-IDF + e5 model only on datasets whose texts are all cached (``warm``
fills the cache). Run from the repository root, for example::

    .venv/bin/python benchmarks/active_learning.py cv --dataset ethereum-useful
    .venv/bin/python benchmarks/active_learning.py warm --dataset trec
    .venv/bin/python benchmarks/active_learning.py simulate --output-dir /tmp/al
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from labelandlearn.learning.auto import (
    AUTO_CANDIDATES,
    TFIDF_EMBEDDING_KNN,
    TFIDF_EMBEDDING_LINEAR,
    TFIDF_LINEAR,
    choose_recipe,
)
from labelandlearn.learning.base import Features, ModelRecipe, make_classifier, make_featurizer
from labelandlearn.learning.embeddings import (
    DEFAULT_BACKEND,
    EmbeddingCache,
    backend_available,
    count_missing,
    embed_texts,
    get_backend,
)
from labelandlearn.learning.strategies import get_strategy

logger = logging.getLogger("benchmarks.active_learning")

DEFAULT_CACHE_DIR = Path("/tmp/labelandlearn-bench-cache")
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


def run_cv(
    dataset: Dataset,
    recipes: Sequence[ModelRecipe],
    folds: int,
    auto: bool,
    fold_seed: int = 0,
) -> dict:
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=fold_seed)
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
    scores, chosen, inner = [], [], []
    for train_rows, test_rows in splits:
        train_texts = [dataset.texts[i] for i in train_rows]
        choice = choose_recipe(
            train_texts, dataset.y[train_rows], candidates=recipes, time_budget_s=600
        )
        inner.append({c.recipe: c.fold_scores for c in choice.candidates if c.fold_scores})
        recipe = next(r for r in recipes if r.name == choice.chosen)
        X = cache[recipe.featurizer]
        classifier = fit_predict(recipe, X, dataset.y, train_rows)
        predicted = classifier.classes_[classifier.predict_proba(X[test_rows]).argmax(axis=1)]
        scores.append(macro_f1(dataset.y[test_rows], predicted))
        chosen.append(choice.chosen)
    summary = _summary(scores, time.perf_counter() - started)
    summary["chosen"] = chosen
    # Each outer fold's inner cross-validation scores per candidate, to compare selection rules
    # against the outer-fold scores of the candidates above.
    summary["inner_fold_scores"] = inner
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


# --------------------------------------------------------------------------- simulate

DEFAULT_STRATEGIES = [
    "random",
    "least-confidence",
    "margin",
    "entropy",
    "class-balanced",
    "diverse-margin",
]
SMALL_TEXT_STRATEGIES = ["random", "least-confidence", "breaking-ties"]
SIMULATION_DATASETS = ["ethereum-useful", "twitter-financial-news", "sms-spam", "trec"]
CHECKPOINTS = (100, 200, 500, 1000)
# Query: (fitted classifier, pool features, unlabelled pool rows, labelled pool rows,
# labels of the labelled rows, batch size, generator) -> the pool rows to label next.
Query = Callable[
    [Any, Features, np.ndarray, np.ndarray, np.ndarray, int, np.random.Generator], np.ndarray
]


@dataclass(frozen=True)
class SimulationSettings:
    """The protocol: initial labels, labels per round, label budget and held-out share."""

    initial: int = 20
    step: int = 20
    max_labels: int = 1000
    test_size: float = 0.3
    split_seed: int = 0


@dataclass
class Curve:
    """Held-out macro-F1 after each round of one run (one strategy, model and seed)."""

    labels: list[int] = field(default_factory=list)
    macro_f1: list[float] = field(default_factory=list)
    round_seconds: list[float] = field(default_factory=list)


def held_out_split(y: np.ndarray, settings: SimulationSettings) -> tuple[np.ndarray, np.ndarray]:
    """Return (pool rows, test rows): a stratified split that every run shares."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(y.size)
    pool, test = train_test_split(
        rows, test_size=settings.test_size, stratify=y, random_state=settings.split_seed
    )
    return np.sort(pool), np.sort(test)


def initial_rows(y_pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``n`` random pool rows of at least 2 classes (drawn again until they are)."""
    if np.unique(y_pool).size < 2:
        raise ValueError("the pool contains a single class; a simulation needs at least 2")
    while True:
        rows = rng.choice(y_pool.size, size=min(n, y_pool.size), replace=False)
        if np.unique(y_pool[rows]).size >= 2:
            return np.sort(rows)


def strategy_query(name: str) -> Query:
    """Return a query that takes the next batch from the registered strategy ``name``."""
    strategy = get_strategy(name)

    def query(
        classifier: Any,
        X_pool: Features,
        unlabelled: np.ndarray,
        labelled: np.ndarray,
        y_labelled: np.ndarray,
        n: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        X = X_pool[unlabelled]
        proba = classifier.predict_proba(X)
        features = X if strategy.uses_features else None
        scores = strategy.score(proba, random_state=rng, features=features, batch_size=n)
        return unlabelled[np.argsort(-scores, kind="stable")[:n]]

    return query


class _SmallTextClassifier:
    """Gives small-text's strategies ``predict_proba(dataset)`` on our fitted classifier."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier

    def predict_proba(self, dataset: Any) -> np.ndarray:
        return np.asarray(self.classifier.predict_proba(dataset.x))


def small_text_query(name: str) -> Query:
    """Return a query that runs small-text's strategy ``name`` on the same pool."""
    import small_text

    factories = {
        "random": small_text.RandomSampling,
        "least-confidence": small_text.LeastConfidence,
        "breaking-ties": small_text.BreakingTies,
    }
    strategy = factories[name]()

    def query(
        classifier: Any,
        X_pool: Features,
        unlabelled: np.ndarray,
        labelled: np.ndarray,
        y_labelled: np.ndarray,
        n: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        # small-text's random sampling draws from numpy's global generator.
        np.random.seed(int(rng.integers(2**31)))
        # The strategies read only the features; the dataset's labels are placeholders.
        placeholder = np.zeros(X_pool.shape[0], dtype=np.int64)
        with warnings.catch_warnings():
            # small-text 1.4 warns about its own deprecated helper here.
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = small_text.SklearnDataset(X_pool, placeholder, target_labels=np.array([0]))
        chosen = strategy.query(
            _SmallTextClassifier(classifier), dataset, unlabelled, labelled, y_labelled, n=n
        )
        return np.asarray(chosen, dtype=np.int64)

    return query


def small_text_available() -> bool:
    try:
        import small_text  # noqa: F401
    except ImportError:
        return False
    return True


def simulate_run(
    recipe: ModelRecipe,
    X: Features,
    y: np.ndarray,
    split: tuple[np.ndarray, np.ndarray],
    query: Query,
    seed: int,
    settings: SimulationSettings,
) -> Curve:
    """Run one active-learning simulation and return its held-out learning curve."""
    pool, test = split
    X_pool, y_pool, X_test, y_test = X[pool], y[pool], X[test], y[test]
    rng = np.random.default_rng(seed)
    labelled = initial_rows(y_pool, settings.initial, rng)
    curve = Curve()
    while True:
        started = time.perf_counter()
        classifier = make_classifier(
            recipe.classifier, **{"random_state": seed, **dict(recipe.classifier_params)}
        )
        classifier.fit(X_pool[labelled], y_pool[labelled])
        predicted = classifier.classes_[classifier.predict_proba(X_test).argmax(axis=1)]
        curve.labels.append(int(labelled.size))
        curve.macro_f1.append(macro_f1(y_test, predicted))
        unlabelled = np.setdiff1d(np.arange(y_pool.size), labelled, assume_unique=True)
        if labelled.size >= settings.max_labels or unlabelled.size == 0:
            break
        n = min(settings.step, settings.max_labels - labelled.size, unlabelled.size)
        chosen = query(classifier, X_pool, unlabelled, labelled, y_pool[labelled], n, rng)
        labelled = np.concatenate([labelled, chosen])
        curve.round_seconds.append(time.perf_counter() - started)
    return curve


def full_pool_score(
    recipe: ModelRecipe, X: Features, y: np.ndarray, split: tuple[np.ndarray, np.ndarray]
) -> float:
    """Return the held-out macro-F1 of the model trained on the whole pool."""
    pool, test = split
    classifier = make_classifier(
        recipe.classifier, **{"random_state": 0, **dict(recipe.classifier_params)}
    )
    classifier.fit(X[pool], y[pool])
    return macro_f1(y[test], classifier.classes_[classifier.predict_proba(X[test]).argmax(axis=1)])


def summarise(curves: Sequence[Curve], full_score: float) -> dict[str, Any]:
    """Return the table row of one strategy: mean curve, checkpoints, labels to 95%, AULC."""
    labels = np.array(curves[0].labels)
    scores = np.array([curve.macro_f1 for curve in curves])
    mean = scores.mean(axis=0)
    reached = np.flatnonzero(mean >= 0.95 * full_score)
    seconds = [s for curve in curves for s in curve.round_seconds]
    return {
        "labels": labels.tolist(),
        "mean": mean.round(4).tolist(),
        "std": scores.std(axis=0).round(4).tolist(),
        "at": {
            str(n): round(float(mean[labels == n][0]), 4) if (labels == n).any() else None
            for n in CHECKPOINTS
        },
        "labels_to_95": int(labels[reached[0]]) if reached.size else None,
        # Normalised area: the mean macro-F1 over the label range, by the trapezoid rule.
        "aulc": round(float(np.trapezoid(mean, labels) / max(1, labels[-1] - labels[0])), 4),
        "round_seconds": round(float(np.mean(seconds)), 4) if seconds else None,
        "seeds": len(curves),
    }


def simulation_models(dataset: Dataset, cache_dir: Path) -> list[ModelRecipe]:
    """Return TF-IDF + linear, and the two TF-IDF + e5 models when every text has a cached
    vector: the linear classifier, and the linear classifier averaged with nearest neighbours."""
    models = [TFIDF_LINEAR]
    embedding = [with_cache(r, cache_dir) for r in (TFIDF_EMBEDDING_LINEAR, TFIDF_EMBEDDING_KNN)]
    if not backend_available(DEFAULT_BACKEND):
        logger.info("%s: e5 backend not installed, TF-IDF model only", dataset.name)
    elif missing := count_missing(dataset.texts, DEFAULT_BACKEND, None, cache_dir):
        logger.info(
            "%s: %d texts have no cached e5 vector, TF-IDF model only (run warm first)",
            dataset.name,
            missing,
        )
    else:
        models.extend(embedding)
    return models


def simulate_dataset(
    dataset: Dataset,
    models: Sequence[ModelRecipe],
    strategies: Sequence[str],
    small_text_strategies: Sequence[str],
    seeds: int,
    settings: SimulationSettings,
) -> dict[str, Any]:
    """Run every (model, strategy, seed) on one dataset; return the rows by model and strategy."""
    split = held_out_split(dataset.y, settings)
    report: dict[str, Any] = {"n_texts": len(dataset.texts), "n_pool": int(split[0].size)}
    for recipe in models:
        X = featurize(recipe, dataset.texts)
        full = full_pool_score(recipe, X, dataset.y, split)
        rows: dict[str, Any] = {}
        queries = [(name, strategy_query(name)) for name in strategies]
        queries += [
            (f"small-text {name}", small_text_query(name)) for name in small_text_strategies
        ]
        for name, query in queries:
            curves = [
                simulate_run(recipe, X, dataset.y, split, query, seed, settings)
                for seed in range(seeds)
            ]
            rows[name] = summarise(curves, full)
            logger.info(
                "%s %s %s: at %s, labels to 95%% %s, AULC %.3f",
                dataset.name,
                recipe.name,
                name,
                rows[name]["at"],
                rows[name]["labels_to_95"],
                rows[name]["aulc"],
            )
        report[recipe.name] = {"full_pool_macro_f1": round(full, 4), "strategies": rows}
    return report


def plot_dataset(name: str, report: dict[str, Any], folder: Path) -> Path:
    """Draw one panel per model: mean held-out macro-F1 by labels, a band of one std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [key for key in report if isinstance(report[key], dict)]
    figure, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.5), squeeze=False)
    for axis, model in zip(axes[0], models, strict=True):
        entry = report[model]
        for strategy, row in entry["strategies"].items():
            mean, std = np.array(row["mean"]), np.array(row["std"])
            style = "--" if strategy.startswith("small-text") else "-"
            axis.plot(row["labels"], mean, style, label=strategy, linewidth=1.4)
            axis.fill_between(row["labels"], mean - std, mean + std, alpha=0.12)
        full = entry["full_pool_macro_f1"]
        axis.axhline(0.95 * full, color="grey", linestyle=":", label="95% of full pool")
        axis.set_title(f"{name}: {model}")
        axis.set_xlabel("labels")
        axis.set_ylabel("held-out macro-F1")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    path = folder / f"active-learning-{name}.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def markdown_table(results: dict[str, Any]) -> str:
    """Return the results as one Markdown table, a row per dataset, model and strategy."""
    header = (
        "| Dataset | Model | Strategy | F1 @100 | @200 | @500 | @1000 | Labels to 95% | AULC "
        "| s/round |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for dataset, report in results.items():
        for model, entry in report.items():
            if not isinstance(entry, dict):
                continue
            for strategy, row in entry["strategies"].items():
                at = [_cell(row["at"][str(n)]) for n in CHECKPOINTS]
                lines.append(
                    f"| {dataset} | {model} (full {entry['full_pool_macro_f1']:.3f}) | {strategy} "
                    f"| {' | '.join(at)} | {_cell(row['labels_to_95'])} | {row['aulc']:.3f} "
                    f"| {_cell(row['round_seconds'])} |"
                )
    return header + "\n".join(lines) + "\n"


def _cell(value: float | int | None) -> str:
    if value is None:
        return "not reached"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def run_simulation(args: argparse.Namespace) -> dict[str, Any]:
    settings = SimulationSettings(max_labels=args.max_labels, step=args.step, initial=args.initial)
    small_text_names = (
        [] if args.no_small_text or not small_text_available() else SMALL_TEXT_STRATEGIES
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for name in args.dataset or SIMULATION_DATASETS:
        started = time.perf_counter()
        dataset = load_dataset(name)
        models = simulation_models(dataset, args.cache_dir)
        if args.tfidf_only:
            models = models[:1]
        results[name] = simulate_dataset(
            dataset, models, args.strategies, small_text_names, args.seeds, settings
        )
        results[name]["seconds"] = round(time.perf_counter() - started, 1)
        plot_dataset(name, results[name], args.output_dir)
        (args.output_dir / "results.json").write_text(json.dumps(results, indent=1))
    (args.output_dir / "table.md").write_text(markdown_table(results))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cv = sub.add_parser("cv", help="cross-validated macro-F1 of each model recipe")
    cv.add_argument("--dataset", action="append", choices=sorted(LOADERS), required=True)
    cv.add_argument("--folds", type=int, default=5)
    cv.add_argument("--fold-seed", type=int, default=0, help="random_state of the fold split")
    cv.add_argument("--recipes", nargs="*", default=[r.name for r in AUTO_CANDIDATES])
    cv.add_argument("--no-auto", action="store_true", help="skip the nested automatic choice")
    cv.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    cv.add_argument("--output", type=Path, help="write the results as JSON to this file")
    _add_simulate_parser(sub)
    warm = sub.add_parser("warm", help="embed and cache every text of the datasets with e5")
    warm.add_argument("--dataset", action="append", choices=sorted(LOADERS), required=True)
    warm.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    if args.command == "simulate":
        results = run_simulation(args)
        print((args.output_dir / "table.md").read_text())
        logger.info(
            "simulation seconds by dataset: %s", {k: v["seconds"] for k, v in results.items()}
        )
        return
    if args.command == "warm":
        for name in args.dataset:
            warm_embeddings(load_dataset(name), args.cache_dir)
        return
    recipes = [with_cache(r, args.cache_dir) for r in AUTO_CANDIDATES if r.name in args.recipes]
    report = {}
    for name in args.dataset:
        dataset = load_dataset(name)
        if any("embedding" in r.featurizer for r in recipes):
            warm_embeddings(dataset, args.cache_dir)
        report[name] = run_cv(
            dataset, recipes, args.folds, auto=not args.no_auto, fold_seed=args.fold_seed
        )
    text = json.dumps(report, indent=2)
    if args.output:
        args.output.write_text(text)
    print(text)


def _add_simulate_parser(sub: Any) -> None:
    simulate = sub.add_parser("simulate", help="active-learning simulation against a held-out 30%")
    simulate.add_argument(
        "--dataset",
        action="append",
        choices=sorted(LOADERS),
        help=f"dataset to simulate, repeatable (default: {', '.join(SIMULATION_DATASETS)})",
    )
    simulate.add_argument("--seeds", type=int, default=5, help="runs per strategy and model")
    simulate.add_argument("--max-labels", type=int, default=1000, help="label budget per run")
    simulate.add_argument("--step", type=int, default=20, help="labels asked per round")
    simulate.add_argument("--initial", type=int, default=20, help="random labels to start from")
    simulate.add_argument(
        "--strategies", nargs="+", default=DEFAULT_STRATEGIES, help="registered strategy names"
    )
    simulate.add_argument(
        "--no-small-text", action="store_true", help="skip small-text's strategies"
    )
    simulate.add_argument("--tfidf-only", action="store_true", help="skip the TF-IDF + e5 models")
    simulate.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    simulate.add_argument(
        "--output-dir",
        type=Path,
        default=Path("benchmarks/results/active_learning"),
        help="folder for the PNG curves, results.json and table.md",
    )


if __name__ == "__main__":
    main()
