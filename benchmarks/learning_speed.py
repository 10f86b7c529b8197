"""Speed of the learning engine on the Ethereum tweets, with the default model.

Measures: a full retrain of a SQLite project holding the labelled tweets (featurizer, 5-fold
cross-validation and classifier fit timed separately), predict throughput in memory and through
``predict_file`` (100,000 distinct tweets, with 1 and 2 worker processes), scoring a
100,000-item pool with the TF-IDF model and a pool of 100,000 distinct texts with the default
model (TF-IDF plus e5 vectors) and strategy, and the latency of the online update. The last
row is the 1-minute load average, because other processes on the machine slow every figure.

Run: .venv/bin/python benchmarks/learning_speed.py [--pool 100000]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from labelandlearn.learning.base import DEFAULT_RECIPE, TextModel, get_recipe
from labelandlearn.learning.embeddings import (
    DEFAULT_BACKEND,
    DEFAULT_MODELS,
    EmbeddingCache,
    text_sha1,
)
from labelandlearn.learning.predict import predict_file
from labelandlearn.learning.scoring import score_project
from labelandlearn.learning.strategies import DEFAULT_STRATEGY
from labelandlearn.learning.training import train_project
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Item, Label, ModelVersion, Project

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ethereum-tweets"
LABELS = ["negative", "useless", "positive"]
# Dimension of the e5-small vectors.
EMBEDDING_SIZE = 384
RATING_NAMES = {"-1": "negative", "0": "useless", "1": "positive"}


def load_tweets() -> tuple[list[str], list[str], list[str]]:
    """Return (labelled texts, their labels, unlabelled texts), labelled texts deduplicated."""
    texts, labels, seen = [], [], set()
    with (DATASET / "labelled.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["text"] not in seen:
                seen.add(row["text"])
                texts.append(row["text"])
                labels.append(RATING_NAMES[row["rating"]])
    with (DATASET / "unlabelled.csv").open(newline="", encoding="utf-8") as handle:
        unlabelled = [row["text"] for row in csv.DictReader(handle)]
    return texts, labels, unlabelled


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def bench_retrain(
    db: Database, texts: list[str], labels: list[str], unlabelled: list[str]
) -> tuple[dict[str, float], TextModel]:
    """Time ``train_project`` on a SQLite project, phase by phase from its progress messages."""
    project_id = create_project(
        db, "retrain", texts + unlabelled, labels + [None] * len(unlabelled)
    )
    marks: list[tuple[str, float]] = []
    started = time.perf_counter()
    version_id = train_project(
        db, project_id, progress=lambda f, m: marks.append((m, time.perf_counter()))
    )
    finished = time.perf_counter()
    first = {message: moment for message, moment in reversed(marks)}
    with db.session() as session:
        version = session.get(ModelVersion, version_id)
        assert version is not None
        model = TextModel.from_bytes(version.weights)
        macro_f1 = version.metrics["macro_f1"] if version.metrics else float("nan")
    return {
        "retrain: load + featurizer fit + transform (s)": first["cross-validating"] - started,
        "retrain: 5-fold CV (s)": first["training on all labels"] - first["cross-validating"],
        "retrain: classifier fit (s)": first["saving the model"] - first["training on all labels"],
        "retrain: save version (s)": finished - first["saving the model"],
        "retrain total (s)": finished - started,
        "retrain CV macro-F1": macro_f1,
    }, model


def bench_predict(model: TextModel, texts: list[str]) -> dict[str, float]:
    # Distinct texts (a suffix per copy), so no cache of repeated texts helps.
    pool = [f"{text} #{i // len(texts)}" for i, text in enumerate(texts * 4)]
    model.predict_proba(pool[:100])
    started = time.perf_counter()
    for start in range(0, len(pool), 2000):
        model.predict_proba(pool[start : start + 2000])
    seconds = time.perf_counter() - started
    return {"predict (tweets/s, distinct texts)": len(pool) / seconds}


def bench_partial_fit(model: TextModel, texts: list[str], labels: list[str]) -> dict[str, float]:
    latencies = []
    for text, label in zip(texts[:500], labels[:500], strict=True):
        started = time.perf_counter()
        model.partial_fit([text], [label])
        latencies.append((time.perf_counter() - started) * 1000)
    return {
        "partial_fit p50 (ms)": statistics.median(latencies),
        "partial_fit p95 (ms)": percentile(latencies, 95),
    }


def create_project(db: Database, name: str, texts: list[str], labels: list[str | None]) -> int:
    with db.session() as session:
        project = Project(
            name=name,
            labels=[Label(name=n, key=str(i + 1), position=i) for i, n in enumerate(LABELS)],
        )
        session.add(project)
        session.flush()
        project_id = project.id
        label_ids = {label.name: label.id for label in project.labels}
    rows = [
        {
            "project_id": project_id,
            "text": text,
            "text_hash": hashlib.sha1(text.encode()).hexdigest(),
            "position": i,
            "label_id": label_ids[label] if label is not None else None,
        }
        for i, (text, label) in enumerate(zip(texts, labels, strict=True))
    ]
    with db.session() as session:
        session.execute(Item.__table__.insert(), rows)
    return project_id


def bench_scoring(
    db: Database, model: TextModel, texts: list[str], pool_size: int
) -> dict[str, float]:
    pool = [texts[i % len(texts)] for i in range(pool_size)]
    project_id = create_project(db, "pool", pool, [None] * pool_size)
    started = time.perf_counter()
    score_project(db, project_id, model=model)
    seconds = time.perf_counter() - started
    return {f"score {pool_size} items (s, {len(texts)} distinct texts)": seconds}


def bench_default_scoring(
    db: Database, texts: list[str], labels: list[str], pool_size: int, folder: Path
) -> dict[str, float]:
    """Score a pool of distinct texts with the default model and the default strategy.

    Every text gets a random unit vector in a fresh embedding cache first: embedding 100,000
    texts with e5 takes over an hour on 2 cores, and the time to score depends on the vectors'
    size, not on their values.
    """
    # A distinct tag per text gives the pool as many new words as texts, as a real stream has.
    pool = [f"{texts[i % len(texts)]} #t{i}" for i in range(pool_size)]
    recipe = get_recipe(DEFAULT_RECIPE)
    params = {**recipe.featurizer_params, "cache_dir": str(folder / "embeddings")}
    recipe = dataclasses.replace(recipe, featurizer_params=params)
    backend = recipe.featurizer_params.get("backend", DEFAULT_BACKEND)
    key = f"{backend}:{recipe.featurizer_params.get('model') or DEFAULT_MODELS[backend]}"
    cache = EmbeddingCache(folder / "embeddings")
    rng = np.random.default_rng(0)
    everything = texts + pool
    for start in range(0, len(everything), 20_000):
        chunk = everything[start : start + 20_000]
        vectors = rng.normal(size=(len(chunk), EMBEDDING_SIZE)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        cache.put_many(key, [text_sha1(text) for text in chunk], vectors)
    model = recipe.fit_model(LABELS, texts, labels, unlabelled_texts=pool)
    project_id = create_project(db, "default-pool", pool, [None] * pool_size)
    with db.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        project.model_name, project.strategy_name = DEFAULT_RECIPE, DEFAULT_STRATEGY
    started = time.perf_counter()
    model.predict_proba(pool)
    predict_seconds = time.perf_counter() - started
    # The train job scores with the model it just fitted. A score job, after a strategy
    # change, reads the model back from the database, without the fit's word cache.
    started = time.perf_counter()
    score_project(db, project_id, model=model)
    seconds = time.perf_counter() - started
    stored = TextModel.from_bytes(model.to_bytes())
    started = time.perf_counter()
    score_project(db, project_id, model=stored)
    stored_seconds = time.perf_counter() - started
    return {
        f"default model ({DEFAULT_RECIPE}): predict {pool_size} distinct texts, one process (s)": (
            predict_seconds
        ),
        f"default model: score {pool_size} distinct items with {DEFAULT_STRATEGY}, "
        "after training (s)": seconds,
        f"default model: score {pool_size} distinct items, model read back (s)": stored_seconds,
    }


def bench_predict_file(model: TextModel, texts: list[str], folder: Path) -> dict[str, float]:
    source = folder / "tweets.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        for i in range(100_000):
            writer.writerow([i, f"{texts[i % len(texts)]} #{i // len(texts)}"])
    results = {}
    for workers in (1, 2):
        stats = predict_file(model, source, folder / "out.csv", workers=workers)
        results[f"predict_file 100000 rows, {workers} worker(s) (rows/s)"] = stats.rows_per_second
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=100_000, help="items in the scoring pool")
    args = parser.parse_args()
    texts, labels, unlabelled = load_tweets()
    with tempfile.TemporaryDirectory() as folder:
        db = Database(f"sqlite:///{folder}/bench.db")
        db.upgrade()
        results, model = bench_retrain(db, texts, labels, unlabelled)
        results.update(bench_predict(model, texts))
        results.update(bench_predict_file(model, texts, Path(folder)))
        results.update(bench_scoring(db, model, texts, args.pool))
        results.update(bench_default_scoring(db, texts, labels, args.pool, Path(folder)))
        results.update(bench_partial_fit(model, texts, labels))
        db.dispose()
    # Other processes on a shared machine slow every figure; the load average shows how much.
    results["load average, 1 min, at the end"] = os.getloadavg()[0]
    width = max(map(len, results))
    print(f"{'measure'.ljust(width)}  value")
    for name, value in results.items():
        print(f"{name.ljust(width)}  {value:,.3f}")


if __name__ == "__main__":
    main()
