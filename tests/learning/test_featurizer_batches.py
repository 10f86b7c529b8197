"""The small-batch and large-batch transform paths of the featurizers give the same rows."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from learning_helpers import corpus

from conftest import POSTGRES_URL
from labelandlearn.learning import featurizers
from labelandlearn.learning.base import make_featurizer
from labelandlearn.storage import db as storage_db
from labelandlearn.storage.db import Database

TEXTS = corpus(per_class=30)[0] + ["", "   ", "émoji 🚀 ETH!!", "a"]
# TF-IDF values are float32; paths that add a row's terms in another order differ in the
# last bits (about 6e-8 of a value).
TOLERANCE = 1e-6


@pytest.mark.parametrize("name", ["tfidf", "hashing"])
def test_one_text_rows_match_full_batch(name: str) -> None:
    featurizer = make_featurizer(name).fit(TEXTS)
    full = sp.csr_matrix(featurizer.transform(TEXTS))
    assert len(TEXTS) > 64
    for index, text in enumerate(TEXTS):
        single = sp.csr_matrix(featurizer.transform([text]))
        assert single.shape == (1, full.shape[1])
        assert abs(single - full[index]).max() <= TOLERANCE, text
    middle = sp.csr_matrix(featurizer.transform(TEXTS[:65]))
    assert abs(middle - full[:65]).max() <= TOLERANCE


def _restored(featurizer: object) -> object:
    """A copy of a fitted featurizer built from its state, so it has no cache of words."""
    config, arrays = featurizer.get_state()  # type: ignore[attr-defined]
    return type(featurizer).from_state(config, arrays)  # type: ignore[attr-defined]


def test_fitted_texts_match_restored_featurizer() -> None:
    featurizer = make_featurizer("tfidf").fit(TEXTS)
    restored = _restored(featurizer)
    # Fitted texts in another order, repeated, then a batch with one text never fitted.
    shuffled = list(reversed(TEXTS)) + TEXTS[:10]
    assert abs(featurizer.transform(shuffled) - restored.transform(shuffled)).max() <= TOLERANCE
    mixed = [*TEXTS[:70], "a text the fit never saw, with new words"]
    assert abs(featurizer.transform(mixed) - restored.transform(mixed)).max() <= TOLERANCE


def test_transform_after_cache_cleared_in_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With a tiny word cache the fit clears it between batches and renumbers the words, so
    # the word rows of the first batches must not be reused.
    monkeypatch.setattr(featurizers, "_MAX_CACHED_WORDS", 50)
    monkeypatch.setattr(featurizers, "_FIT_BATCH", 20)
    featurizer = make_featurizer("tfidf").fit(TEXTS)
    restored = _restored(featurizer)
    assert abs(featurizer.transform(TEXTS) - restored.transform(TEXTS)).max() <= TOLERANCE


def test_postgres_reconnects_after_backend_killed(
    postgres_reachable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not postgres_reachable:
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is not reachable")
    monkeypatch.setattr(storage_db, "PING_AFTER_IDLE_S", 0.0)
    database_url = POSTGRES_URL
    database = Database(database_url)
    try:
        with database.engine.connect() as connection:
            pid = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        killer = sa.create_engine(database_url)
        with killer.begin() as connection:
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        killer.dispose()
        with database.engine.connect() as connection:
            assert connection.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        database.dispose()


def test_fit_on_non_str_texts_keeps_no_rows() -> None:
    # 1, 1.0 and True are equal keys with different strings, so such fits keep no rows.
    texts: list[object] = [*TEXTS, 1.0, ["a", "list"]]
    featurizer = make_featurizer("tfidf").fit(texts)  # type: ignore[arg-type]
    assert not featurizer.analysed(TEXTS)
    restored = _restored(featurizer)
    batch = [*TEXTS, 1]
    assert abs(featurizer.transform(batch) - restored.transform(batch)).max() <= TOLERANCE


def test_restored_new_words_numpy_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every word of a restored featurizer is new, so a large batch takes the numpy look-up.
    monkeypatch.setattr(featurizers, "_VECTOR_MIN_WORDS", 1)
    for char_range in ([3, 4], [2, 4], [1, 1], [4, 4]):
        featurizer = make_featurizer("tfidf", char_ngram_range=char_range).fit(TEXTS)
        batch = [*TEXTS, "ΑΣ words 𝐁𝐔𝐘 never fitted", "x"]
        expected = featurizer.transform(batch)
        restored = _restored(featurizer)
        assert abs(expected - restored.transform(batch)).max() <= TOLERANCE, char_range


# Letters from several scripts, one outside the Basic Multilingual Plane, and a space.
_WORD_CHARACTERS = "abcαβ€й1_'𝐁"
_words = st.lists(st.text(alphabet=_WORD_CHARACTERS, min_size=1, max_size=7), max_size=40)


@settings(max_examples=60, deadline=None)
@given(
    vocabulary_words=_words,
    words=_words,
    char_range=st.sampled_from([(1, 1), (1, 4), (2, 4), (3, 4), (4, 4), (3, 3)]),
)
def test_numpy_char_ngrams_match_python(
    vocabulary_words: list[str], words: list[str], char_range: tuple[int, int]
) -> None:
    low, high = char_range
    terms = {
        gram for word in vocabulary_words for gram in featurizers.char_ngrams(word, *char_range)
    }
    vocabulary = {term: 7 + column for column, term in enumerate(sorted(terms))}
    index = featurizers._CharGramIndex(vocabulary, char_range)
    assert index.usable
    if not words:
        return
    counts, columns = index.word_columns(words)
    assert counts.sum() == len(columns)
    ends = np.cumsum(counts)
    for number, word in enumerate(words):
        found = columns[ends[number] - counts[number] : ends[number]].tolist()
        grams = featurizers.char_ngrams(word, low, high)
        expected = [vocabulary[gram] for gram in grams if gram in vocabulary]
        assert Counter(found) == Counter(expected), word


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.integers(0, 2**63 - 1), unique=True), other=st.lists(st.integers(0, 2**63 - 1))
)
def test_key_table_finds_each_key(keys: list[int], other: list[int]) -> None:
    values = np.arange(len(keys), dtype=np.int64) * 3
    table = featurizers._KeyTable(np.asarray(keys, dtype=np.uint64), values)
    assert table.get(np.asarray(keys, dtype=np.uint64)).tolist() == values.tolist()
    position = {key: value for key, value in zip(keys, values.tolist(), strict=True)}
    expected = [position.get(key, -1) for key in other]
    assert table.get(np.asarray(other, dtype=np.uint64)).tolist() == expected


_texts = st.lists(
    st.text(alphabet="aΑΣσς İ\tb\n\ufdd0\u00a0x", max_size=12), min_size=65, max_size=90
)


@settings(max_examples=40, deadline=None)
@given(texts=_texts)
def test_joined_split_matches_split_per_text(texts: list[str]) -> None:
    batch = featurizers._split_words(texts)
    words = [text.lower().split() for text in texts]
    assert batch.n_texts == len(texts)
    got: list[list[str]] = [[] for _ in texts]
    for row, number in zip(batch.text_of.tolist(), batch.occurrences.tolist(), strict=True):
        got[row].append(batch.words[number])
    assert got == words
    assert len(set(batch.words)) == len(batch.words)
