"""The default model on the real Ethereum tweets, 5-fold cross-validated."""

from __future__ import annotations

import csv

import pytest

from labelandlearn.learning.evaluation import cross_validate
from shared_data import dataset_path

RATING_NAMES = {"-1": "negative", "0": "useless", "1": "positive"}


def _tweets() -> tuple[list[str], list[str]]:
    path = dataset_path("ethereum-tweets", "labelled.csv")
    texts, ratings, seen = [], [], set()
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["text"] in seen:
                continue
            seen.add(row["text"])
            texts.append(row["text"])
            ratings.append(RATING_NAMES[row["rating"]])
    return texts, ratings


@pytest.mark.slow
def test_default_model_reaches_macro_f1_bars() -> None:
    texts, ratings = _tweets()
    three_class = cross_validate(
        "tfidf-linear", texts, ratings, label_names=["negative", "useless", "positive"]
    )
    useful = ["useless" if r == "useless" else "useful" for r in ratings]
    two_class = cross_validate("tfidf-linear", texts, useful, label_names=["useless", "useful"])
    assert three_class["n_labels"] == len(texts) > 5000
    assert three_class["macro_f1"] >= 0.66, three_class["macro_f1"]
    assert two_class["macro_f1"] >= 0.80, two_class["macro_f1"]
