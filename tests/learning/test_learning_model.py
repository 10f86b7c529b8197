"""TextModel, registries, recipes and the model file format."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from learning_helpers import LABELS, corpus
from sklearn.feature_extraction.text import TfidfVectorizer

from labelandlearn.errors import ValidationError
from labelandlearn.learning import base as learning_base
from labelandlearn.learning.base import (
    ModelFileError,
    TextModel,
    get_classifier_class,
    get_featurizer_class,
    get_recipe,
)
from labelandlearn.learning.featurizers import HashingFeaturizer, TfidfFeaturizer


@pytest.fixture(scope="module")
def fitted_model() -> TextModel:
    texts, labels = corpus()
    return get_recipe("tfidf-linear").fit_model(
        LABELS, texts, labels, unlabelled_texts=["more text"]
    )


def test_unknown_names_list_allowed() -> None:
    with pytest.raises(ValidationError, match=r"unknown featurizer 'nope'; allowed: .*tfidf"):
        get_featurizer_class("nope")
    with pytest.raises(ValidationError, match=r"unknown classifier 'nope'; allowed: .*linear"):
        get_classifier_class("nope")
    with pytest.raises(ValidationError, match=r"unknown model 'nope'; allowed: .*tfidf-linear"):
        get_recipe("nope")


def test_proba_columns_follow_labels(fitted_model: TextModel) -> None:
    proba = fitted_model.predict_proba(["price rally moon ethereum", "follow for giveaway"])
    assert proba.shape == (2, 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert fitted_model.predict(["price rally moon ethereum"]) == ["positive"]
    assert fitted_model.predict(["follow for giveaway click link"]) == ["useless"]


def test_absent_class_gets_zero_column() -> None:
    texts, labels = corpus()
    keep = [i for i, label in enumerate(labels) if label != "negative"]
    model = get_recipe("tfidf-linear").fit_model(
        LABELS, [texts[i] for i in keep], [labels[i] for i in keep]
    )
    proba = model.predict_proba(["price rally moon"])
    assert proba.shape == (1, 3)
    assert proba[0, 0] == 0.0
    assert proba[0, 1:].sum() == pytest.approx(1.0)


def test_save_load_identical_proba(fitted_model: TextModel, tmp_path: Path) -> None:
    texts, _ = corpus()
    path = fitted_model.save(tmp_path / "model.llmodel")
    loaded = TextModel.load(path)
    assert loaded.labels == LABELS
    assert loaded.params["recipe"] == "tfidf-linear"
    np.testing.assert_array_equal(loaded.predict_proba(texts), fitted_model.predict_proba(texts))


def test_model_file_has_no_pickle(fitted_model: TextModel) -> None:
    with zipfile.ZipFile(io.BytesIO(fitted_model.to_bytes())) as archive:
        assert sorted(archive.namelist()) == ["arrays.npz", "model.json"]
        document = json.loads(archive.read("model.json"))
        with np.load(io.BytesIO(archive.read("arrays.npz")), allow_pickle=False) as arrays:
            assert all(arrays[key].dtype != object for key in arrays.files)
    assert document["format_version"] == 1
    assert document["featurizer"]["name"] == "tfidf"
    assert "scikit-learn" in document["library_versions"]


def test_from_bytes_rejects_non_zip() -> None:
    with pytest.raises(ModelFileError, match="not a zip archive"):
        TextModel.from_bytes(b"\x80\x04 this is a pickle, not a model")


def test_from_bytes_rejects_zip_without_model_json() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("other.txt", "hello")
    with pytest.raises(ModelFileError, match="lacks model.json"):
        TextModel.from_bytes(buffer.getvalue())


def test_from_bytes_rejects_foreign_json() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model.json", json.dumps({"format": "something-else"}))
        archive.writestr("arrays.npz", b"")
    with pytest.raises(ModelFileError, match="lacks format"):
        TextModel.from_bytes(buffer.getvalue())


def test_from_bytes_rejects_pickled_arrays(fitted_model: TextModel) -> None:
    arrays = io.BytesIO()
    np.save(arrays, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w") as archive:
        archive.writestr("featurizer.word_terms.npy", arrays.getvalue())
    with zipfile.ZipFile(io.BytesIO(fitted_model.to_bytes())) as original:
        document = original.read("model.json")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model.json", document)
        archive.writestr("arrays.npz", npz.getvalue())
    with pytest.raises(ModelFileError, match="unreadable arrays"):
        TextModel.from_bytes(buffer.getvalue())


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        TextModel.load(tmp_path / "missing.llmodel")


def test_partial_fit_changes_predictions(fitted_model: TextModel) -> None:
    model = TextModel.from_bytes(fitted_model.to_bytes())
    text = "completely new words zebra quartz ethereum"
    before = model.predict_proba([text])
    for _ in range(5):
        model.partial_fit([text], ["negative"])
    after = model.predict_proba([text])
    assert after[0, 0] > before[0, 0] + 0.05


def test_partial_fit_cold_start_with_hashing() -> None:
    model = get_recipe("hashing-linear").build(LABELS)
    assert not model.is_fitted
    model.partial_fit(["price rally moon"], ["positive"])
    model.partial_fit(["scam hack lost funds"], ["negative"])
    proba = model.predict_proba(["price rally moon"])
    assert proba.shape == (1, 3)
    assert proba[0].argmax() == 2


def test_partial_fit_unfitted_tfidf_explains() -> None:
    model = get_recipe("tfidf-linear").build(LABELS)
    with pytest.raises(ValidationError, match="not fitted"):
        model.partial_fit(["text"], ["positive"])


def test_unknown_label_name_rejected(fitted_model: TextModel) -> None:
    with pytest.raises(ValidationError, match="unknown label 'spam'"):
        fitted_model.encode_labels(["spam"])


def test_tfidf_matches_scikit_learn() -> None:
    texts, _ = corpus()
    texts = texts + ["Ünïcode   tabs\tand\nnew lines, punctuation!!", "a b c", ""]
    ours = TfidfFeaturizer(word_ngram_range=(1, 2), char_ngram_range=(2, 4), min_df=1).fit(texts)
    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(texts)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True).fit(texts)
    matrix = ours.transform(texts).toarray()
    word_order = [words.vocabulary_[term] for term in ours.word_vocabulary_]
    char_order = [chars.vocabulary_[term] for term in ours.char_vocabulary_]
    assert sorted(ours.word_vocabulary_) == sorted(words.vocabulary_)
    assert sorted(ours.char_vocabulary_) == sorted(chars.vocabulary_)
    n_words = len(word_order)
    # Ours are float32 values, scikit-learn's float64.
    expected_words = words.transform(texts).toarray()[:, word_order]
    expected_chars = chars.transform(texts).toarray()[:, char_order]
    np.testing.assert_allclose(matrix[:, :n_words], expected_words, rtol=1e-6)
    np.testing.assert_allclose(matrix[:, n_words:], expected_chars, rtol=1e-6)


def test_tfidf_large_batch_equals_single_texts() -> None:
    """Large batches count through sparse products and single texts through sorted keys.
    Both paths give the same rows, also for unknown words, empty texts and a cold word cache."""
    texts, _ = corpus(per_class=30)
    featurizer = TfidfFeaturizer(min_df=1).fit(texts[:40])
    batch = texts + ["", "zzzz qqqq", "ethereum ethereum ethereum price", "Ünïcode  tabs\tok"]
    assert len(batch) > 64
    config, arrays = featurizer.get_state()
    cold = TfidfFeaturizer.from_state(config, arrays)
    for model in (featurizer, cold):
        together = model.transform(batch).toarray()
        alone = np.vstack([model.transform([text]).toarray() for text in batch])
        # Float32 values, summed in another order on each path.
        np.testing.assert_allclose(together, alone, atol=1e-6)
    norms = np.linalg.norm(together[:, : len(featurizer.word_vocabulary_)], axis=1)
    assert norms[len(texts)] == 0.0
    assert norms[0] == pytest.approx(1.0)


def test_tfidf_state_round_trip() -> None:
    texts, _ = corpus()
    featurizer = TfidfFeaturizer().fit(texts)
    config, arrays = featurizer.get_state()
    restored = TfidfFeaturizer.from_state(json.loads(json.dumps(config)), arrays)
    assert (restored.transform(texts) != featurizer.transform(texts)).nnz == 0


def test_hashing_is_stateless_and_stable() -> None:
    first = HashingFeaturizer(n_features=2**12).transform(["ethereum price rally"])
    second = HashingFeaturizer(n_features=2**12).transform(["ethereum price rally"])
    assert first.shape == (1, 2**13)
    assert (first != second).nnz == 0
    assert np.linalg.norm(first.toarray()) == pytest.approx(np.sqrt(2))


def test_predict_proba_in_steps_matches_one_step(
    fitted_model: TextModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [f"{text} {number}" for number, text in enumerate(corpus()[0])]
    whole = fitted_model.predict_proba(texts)
    monkeypatch.setattr(learning_base, "PREDICT_BATCH", 7)
    stepped = fitted_model.predict_proba(texts)
    assert stepped.shape == (len(texts), len(LABELS))
    assert np.allclose(stepped, whole, atol=1e-12)
