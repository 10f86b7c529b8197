"""TF-IDF and hashing featurizers on word and character n-grams.

Both featurizers analyse texts the same way. Word n-grams come from the tokens of scikit-learn's
default token pattern (two or more word characters) on lower-cased text. Character n-grams are taken
inside each whitespace-separated word padded with one space on each side, as scikit-learn's
``char_wb`` analyzer does. On the same settings the features equal those of two
``TfidfVectorizer`` objects side by side, each L2-normalised on its own, so each block
contributes equally to a row whatever its n-gram count.

Speed: TF-IDF with word 1-grams or 1- and 2-grams (the default) works word by word. Tokens never
span whitespace, so each distinct whitespace-separated word is tokenised and split into
character n-grams once, and its token and character columns are stored. A batch is then a list
of word numbers; token sequences, bigrams (looked up as pairs of unigram columns) and counts are
computed in numpy, without building n-gram strings. Other word ranges and the hashing featurizer
reduce a batch to "units" (word n-grams and words): a sparse (texts x units) count matrix times a
sparse (units x columns) matrix gives the counts in compiled code. Batches of up to
``_SMALL_BATCH`` texts, such as the single text whose prediction picks the next item to label,
skip the sparse products: each occurrence's column is keyed by its row and np.unique counts
the keys.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from sklearn.utils import murmurhash3_32

from labelandlearn.errors import ValidationError
from labelandlearn.learning.base import (
    ArrayState,
    Featurizer,
    decode_strings,
    encode_strings,
    register_featurizer,
)

logger = logging.getLogger(__name__)

# Maps terms to their columns, -1 for a term outside the vocabulary. It takes a whole list so
# that the per-term work runs in one list comprehension instead of one function call per term.
TermColumns = Callable[[list[str]], list[int]]

_TOKEN_RE = re.compile(r"(?u)\b\w\w+\b")
# Bounds the per-word cache of a long-lived featurizer on an endless stream of new words.
_MAX_CACHED_WORDS = 500_000
# Fits on up to this many texts keep each text's word rows for the transform that follows
# (about 20 bytes per word occurrence plus a dictionary entry per text).
_MAX_REMEMBERED_TEXTS = 2_000_000
# Below this many fitted texts ``min_df`` is not applied: most terms of a handful of texts occur
# once, and dropping them would leave almost no features.
_MIN_DOCS_FOR_MIN_DF = 100
# Texts analysed per block while fitting, which bounds the memory of the count matrices.
_FIT_BATCH = 5_000
_EMPTY_COLUMNS = np.zeros(0, dtype=np.int32)
# Up to this many texts, transform counts n-gram columns by sorting row-and-column keys. For
# one text (the next item to label) that took about a quarter of the time of the sparse matrix
# products (hashing 253 to 72 us, TF-IDF 349 to 92 us, SMS spam texts, 2 shared CPUs). Larger
# batches keep the products, because sorting every occurrence scales worse.
_SMALL_BATCH = 64
# TF-IDF values of the word-level analyser. Float32 halves the bytes of each entry's value, and
# predicting is bound by memory: 100,000 tweets took 1.32 s against 1.46 s in float64.
TFIDF_DTYPE = np.float32
# From this many new words at once, their character n-grams are looked up in numpy. Building
# the look-up index of a 300,000-term vocabulary takes about 0.1 s, which one new word in a
# labelling request should not pay.
_VECTOR_MIN_WORDS = 2_000


def _check_range(name: str, value: Sequence[int]) -> tuple[int, int]:
    low, high = (int(v) for v in value)
    if not 1 <= low <= high:
        raise ValidationError(f"{name} must be (low, high) with 1 <= low <= high, got {value}")
    return low, high


def word_ngrams(lowered: str, low: int, high: int) -> list[str]:
    """Return the word n-grams of an already lower-cased text, n from ``low`` to ``high``."""
    tokens = _TOKEN_RE.findall(lowered)
    if low == 1 and high == 1:
        return tokens
    if low == 1 and high == 2:
        tokens.extend(map(" ".join, zip(tokens, tokens[1:], strict=False)))
        return tokens
    grams: list[str] = []
    for n in range(low, high + 1):
        if n == 1:
            grams.extend(tokens)
        else:
            grams.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return grams


def char_ngrams(word: str, low: int, high: int) -> list[str]:
    """Return the character n-grams of ``" word "``; a padded word no longer than ``low`` is one
    n-gram."""
    padded = f" {word} "
    length = len(padded)
    if length <= low:
        return [padded]
    grams: list[str] = []
    for n in range(low, min(high, length) + 1):
        grams.extend(padded[i : i + n] for i in range(length - n + 1))
    return grams


# --------------------------------------------------------------------------- batch analysis


def _unit_matrix(units_per_text: list[list[str]]) -> tuple[sp.csr_matrix, list[str]]:
    """Number the distinct units of a batch; return (texts x units counts, units in order)."""
    # dict.fromkeys, zip and map loop in C, several times faster than a comprehension here.
    flat = list(chain.from_iterable(units_per_text))
    index = dict(zip(dict.fromkeys(flat), range(len(flat)), strict=False))
    indices = np.fromiter(map(index.__getitem__, flat), dtype=np.int32, count=len(flat))
    indptr = np.zeros(len(units_per_text) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, units_per_text), dtype=np.int64), out=indptr[1:])
    data = np.ones(len(indices), dtype=np.float64)
    matrix = sp.csr_matrix((data, indices, indptr), shape=(len(units_per_text), len(index)))
    return matrix, list(index)


def _columns_matrix(columns: list[np.ndarray], n_columns: int) -> sp.csr_matrix:
    """Stack per-unit column arrays as a (units x columns) matrix of ones."""
    lengths = np.fromiter((len(c) for c in columns), dtype=np.int64, count=len(columns))
    indptr = np.zeros(len(columns) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.concatenate(columns) if columns else _EMPTY_COLUMNS
    data = np.ones(len(indices), dtype=np.float64)
    return sp.csr_matrix((data, indices, indptr), shape=(len(columns), n_columns))


def _single_columns_matrix(columns: np.ndarray, n_columns: int) -> sp.csr_matrix:
    """Return a (units x columns) matrix with a one at each unit's column; -1 means none."""
    known = columns >= 0
    indptr = np.zeros(len(columns) + 1, dtype=np.int64)
    np.cumsum(known, out=indptr[1:])
    indices = columns[known].astype(np.int32)
    data = np.ones(len(indices), dtype=np.float64)
    return sp.csr_matrix((data, indices, indptr), shape=(len(columns), n_columns))


@dataclass
class _Batch:
    """Units of one batch of texts: word n-grams and whitespace-separated words."""

    gram_counts: sp.csr_matrix
    grams: list[str]
    word_counts: sp.csr_matrix
    words: list[str]


class _Analyzer:
    """Splits texts into units and caches the character n-gram columns of each word."""

    def __init__(self, word_range: tuple[int, int], char_range: tuple[int, int]) -> None:
        self.word_range = word_range
        self.char_range = char_range
        self._word_columns: dict[str, np.ndarray] = {}

    def clear_cache(self) -> None:
        self._word_columns = {}

    def analyse(self, texts: Sequence[str]) -> _Batch:
        lowered = [str(text).lower() for text in texts]
        low, high = self.word_range
        gram_counts, grams = _unit_matrix([word_ngrams(text, low, high) for text in lowered])
        word_counts, words = _unit_matrix(list(map(str.split, lowered)))
        return _Batch(gram_counts, grams, word_counts, words)

    def word_columns(self, words: list[str], char_columns: TermColumns) -> list[np.ndarray]:
        """Return the character n-gram columns of each word, from the cache where possible."""
        cache = self._word_columns
        if len(cache) > _MAX_CACHED_WORDS:
            cache.clear()
        result = []
        low, high = self.char_range
        for word in words:
            columns = cache.get(word)
            if columns is None:
                found = np.array(char_columns(char_ngrams(word, low, high)), dtype=np.int32)
                columns = found[found >= 0]
                cache[word] = columns
            result.append(columns)
        return result

    def remap_cache(self, new_columns: np.ndarray) -> None:
        """Translate cached columns through ``new_columns`` (old column -> new, -1 drops)."""
        for word, columns in self._word_columns.items():
            mapped = new_columns[columns]
            self._word_columns[word] = mapped[mapped >= 0]


def _weight(
    counts: sp.csr_matrix, idf: np.ndarray | None, sublinear_tf: bool, second_block: int
) -> sp.csr_matrix:
    """Apply tf (log-scaled when ``sublinear_tf``) times idf, then L2-normalise each row's
    two blocks, columns below ``second_block`` and the rest, separately."""
    data = counts.data
    if sublinear_tf:
        np.log(data, out=data)
        data += 1.0
    if idf is not None:
        data *= idf[counts.indices]
    n_rows = counts.shape[0]
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(counts.indptr))
    keys = rows * 2 + (counts.indices >= second_block)
    norms = np.sqrt(np.bincount(keys, weights=data * data, minlength=2 * n_rows))
    norms[norms == 0.0] = 1.0
    data /= norms[keys]
    return counts


def _weight_block(counts: sp.csr_matrix, idf: np.ndarray, sublinear_tf: bool) -> sp.csr_matrix:
    """Apply tf (log-scaled when ``sublinear_tf``) times idf to one block, then L2-normalise
    its rows. Every pass runs over the entries in storage order, which took a fifth of the
    time of ``_weight``'s per-entry row keys on unsorted columns."""
    data = counts.data
    if sublinear_tf:
        np.log(data, out=data)
        data += 1.0
    data *= idf[counts.indices]
    squares = sp.csr_matrix((data * data, counts.indices, counts.indptr), shape=counts.shape)
    norms = np.sqrt(squares @ np.ones(counts.shape[1], dtype=data.dtype))
    norms[norms == 0.0] = 1.0
    data /= np.repeat(norms, np.diff(counts.indptr))
    return counts


def _counts(
    analyzer: _Analyzer,
    texts: Sequence[str],
    gram_columns_of: TermColumns,
    char_columns_of: TermColumns,
    n_gram_columns: int,
    n_char_columns: int,
) -> sp.csr_matrix:
    """Return (texts x columns) term counts: word n-gram columns first, then character ones.

    ``char_columns_of`` must already add ``n_gram_columns`` to its columns.
    """
    batch = analyzer.analyse(texts)
    n_columns = n_gram_columns + n_char_columns
    gram_columns = np.array(gram_columns_of(batch.grams), dtype=np.int64)
    units = sp.vstack(
        [
            _single_columns_matrix(gram_columns, n_columns),
            _columns_matrix(analyzer.word_columns(batch.words, char_columns_of), n_columns),
        ],
        format="csr",
    )
    texts_by_units = sp.hstack([batch.gram_counts, batch.word_counts], format="csr")
    # Multiply in a compact column space: scipy's product allocates work arrays as long as the
    # column count, which costs milliseconds per call at 2 x 2**20 hashed columns. The
    # product's rows can come out with their columns unsorted.
    used, compact = np.unique(units.indices, return_inverse=True)
    compact_units = sp.csr_matrix(
        (units.data, compact.astype(np.int32), units.indptr), shape=(units.shape[0], len(used))
    )
    product = texts_by_units @ compact_units
    counts: sp.csr_matrix = sp.csr_matrix(
        (product.data, used[product.indices], product.indptr), shape=(len(texts), n_columns)
    )
    return counts


def _row_lengths(lists: list[list[str]] | list[np.ndarray]) -> np.ndarray:
    return np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))


def _keyed_counts(
    keys: np.ndarray, n_rows: int, n_columns: int, dtype: type = np.float64
) -> sp.csr_matrix:
    """Count ``row * n_columns + column`` keys into a (rows x columns) matrix.

    np.unique sorts the keys, so each row's columns come out ascending. No work array spans
    all columns, as one does in a sparse matrix product.
    """
    unique, counts = np.unique(keys, return_counts=True)
    rows, columns = np.divmod(unique, n_columns)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    data: np.ndarray = counts.astype(dtype)
    return sp.csr_matrix((data, columns.astype(np.int32), indptr), shape=(n_rows, n_columns))


def _hashed_counts(
    analyzer: _Analyzer,
    texts: Sequence[str],
    gram_columns_of: TermColumns,
    char_columns_of: TermColumns,
    n_columns: int,
) -> sp.csr_matrix:
    """Return (texts x columns) counts of hashed word and character n-gram columns.

    Gives the same matrix as ``_counts`` with the same column functions. Each occurrence's
    column is keyed by its row and the keys are counted once, so one text costs a few numpy
    calls instead of building, stacking and multiplying four sparse matrices.
    """
    lowered = [str(text).lower() for text in texts]
    n_texts = len(lowered)
    low, high = analyzer.word_range
    grams_per_text = [word_ngrams(text, low, high) for text in lowered]
    words_per_text = list(map(str.split, lowered))
    flat_grams = list(chain.from_iterable(grams_per_text))
    # Each distinct n-gram is hashed once per batch.
    index = dict(zip(dict.fromkeys(flat_grams), range(len(flat_grams)), strict=False))
    distinct = np.array(gram_columns_of(list(index)), dtype=np.int64)
    gram_ids = np.fromiter(
        map(index.__getitem__, flat_grams), dtype=np.int64, count=len(flat_grams)
    )
    text_rows = np.arange(n_texts, dtype=np.int64)
    gram_rows = np.repeat(text_rows, _row_lengths(grams_per_text))
    char_arrays = analyzer.word_columns(list(chain.from_iterable(words_per_text)), char_columns_of)
    char_columns = np.concatenate(char_arrays) if char_arrays else _EMPTY_COLUMNS
    char_rows = np.repeat(
        np.repeat(text_rows, _row_lengths(words_per_text)), _row_lengths(char_arrays)
    )
    keys = np.concatenate(
        [
            gram_rows * n_columns + distinct[gram_ids],
            char_rows * n_columns + char_columns.astype(np.int64),
        ]
    )
    return _keyed_counts(keys, n_texts, n_columns)


# --------------------------------------------------------------------------- TF-IDF


class _GrowingVocabulary:
    """A term-to-column dict that gives each new term the next column (used while fitting)."""

    def __init__(self) -> None:
        self.terms: dict[str, int] = {}

    def __call__(self, terms: list[str]) -> list[int]:
        known = self.terms
        fresh = [term for term in dict.fromkeys(terms) if term not in known]
        known.update(zip(fresh, range(len(known), len(known) + len(fresh)), strict=True))
        return list(map(known.__getitem__, terms))


def _document_frequencies(
    analyzer: _Analyzer, texts: Sequence[str]
) -> tuple[_GrowingVocabulary, np.ndarray, _GrowingVocabulary, np.ndarray]:
    """Count in how many texts each word and character n-gram occurs."""
    grams, chars = _GrowingVocabulary(), _GrowingVocabulary()
    gram_df = np.zeros(0, dtype=np.int64)
    char_df = np.zeros(0, dtype=np.int64)
    analyzer.clear_cache()
    for start in range(0, len(texts), _FIT_BATCH):
        batch = analyzer.analyse(texts[start : start + _FIT_BATCH])
        gram_columns = np.array(grams(batch.grams), dtype=np.int64)
        word_columns = analyzer.word_columns(batch.words, chars)
        gram_matrix = batch.gram_counts @ _single_columns_matrix(gram_columns, len(grams.terms))
        char_matrix = batch.word_counts @ _columns_matrix(word_columns, len(chars.terms))
        # A matrix product has no duplicate entries in a row, so counting column indices
        # counts texts.
        gram_df = _add_counts(gram_df, gram_matrix.indices, len(grams.terms))
        char_df = _add_counts(char_df, char_matrix.indices, len(chars.terms))
    return grams, gram_df, chars, char_df


def _add_counts(totals: np.ndarray, indices: np.ndarray, size: int) -> np.ndarray:
    counts = np.bincount(indices, minlength=size)
    counts[: len(totals)] += totals
    return counts


def _select_terms(
    vocabulary: _GrowingVocabulary, df: np.ndarray, min_df: int, max_features: int | None
) -> np.ndarray:
    """Return the fitting columns of the terms to keep, ascending: terms in at least ``min_df``
    texts, at most the ``max_features`` most frequent."""
    keep = np.flatnonzero(df >= min_df)
    if max_features is not None and len(keep) > max_features:
        # Stable sort: among equally frequent terms, the one seen first wins.
        order = np.argsort(-df[keep], kind="stable")[:max_features]
        keep = np.sort(keep[order])
    return keep


def _terms_at(vocabulary: _GrowingVocabulary, columns: np.ndarray) -> list[str]:
    by_column = list(vocabulary.terms)
    return [by_column[i] for i in columns]


def _idf(df: np.ndarray, n_documents: int) -> np.ndarray:
    """Smoothed inverse document frequency, as scikit-learn's ``TfidfTransformer`` computes it."""
    return np.log((1.0 + n_documents) / (1.0 + df)) + 1.0


# --------------------------------------------------------------------------- word-level path

# Bigram key of two unigram columns (or token ids): first * _PAIR_BASE + second, in int64.
_PAIR_BASE = np.int64(2**31)
# Joins a batch's texts so that one split() call splits them all. The separator word is a
# Unicode noncharacter, which texts should not contain. A batch that contains it is split text
# by text.
_SEPARATOR_WORD = "\ufdd0"
_TEXT_SEPARATOR = f" {_SEPARATOR_WORD} "


@dataclass
class _WordBatch:
    """A batch of texts as occurrences of distinct whitespace-separated words."""

    occurrences: np.ndarray  # distinct-word id of each word occurrence, text by text
    text_of: np.ndarray  # text row of each occurrence
    words: list[str]  # distinct words, by id
    n_texts: int


def _split_words(texts: Sequence[str]) -> _WordBatch:
    if len(texts) > _SMALL_BATCH and all(type(text) is str for text in texts):
        joined = _TEXT_SEPARATOR.join(texts)
        if joined.count(_SEPARATOR_WORD) == len(texts) - 1:
            return _split_joined(joined.lower(), len(texts))
    split = [str(text).lower().split() for text in texts]
    flat = list(chain.from_iterable(split))
    index = dict(zip(dict.fromkeys(flat), range(len(flat)), strict=False))
    occurrences = np.fromiter(map(index.__getitem__, flat), dtype=np.int64, count=len(flat))
    lengths = np.fromiter(map(len, split), dtype=np.int64, count=len(split))
    text_of = np.repeat(np.arange(len(split), dtype=np.int64), lengths)
    return _WordBatch(occurrences, text_of, list(index), len(split))


def _split_joined(lowered: str, n_texts: int) -> _WordBatch:
    """Split texts joined by ``_TEXT_SEPARATOR`` (and lower-cased) in one call.

    One ``lower`` and one ``split`` for a batch took about half the time of one per text.
    Lower-casing the joined texts gives each text what lower-casing it alone gives: the one
    context-dependent rule, the final sigma, looks only as far as the nearest space.
    """
    flat = lowered.split()
    index = dict(zip(dict.fromkeys(flat), range(len(flat)), strict=False))
    numbers = np.fromiter(map(index.__getitem__, flat), dtype=np.int64, count=len(flat))
    separator = index.get(_SEPARATOR_WORD, -1)
    is_separator = numbers == separator
    text_of = np.cumsum(is_separator)[~is_separator]
    occurrences = numbers[~is_separator]
    words = list(index)
    if separator >= 0:
        occurrences -= occurrences > separator
        del words[separator]
    return _WordBatch(occurrences, text_of, words, n_texts)


def _expand(
    occurrences: np.ndarray, text_of: np.ndarray, store: _Ragged
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the stored rows of the word occurrences; return (values, text rows)."""
    indptr, values = store
    lengths = np.diff(indptr)[occurrences]
    ends = np.cumsum(lengths)
    offsets = np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64)
    offsets -= np.repeat(ends - lengths, lengths)
    positions = np.repeat(indptr[:-1][occurrences], lengths) + offsets
    return values[positions], np.repeat(text_of, lengths)


def _char_counts(
    occurrences: np.ndarray, text_of: np.ndarray, store: _Ragged, n_texts: int, n_columns: int
) -> sp.csr_matrix:
    """Return (texts x columns) counts of the stored character columns of the occurrences."""
    indptr, values = store
    n_words = len(indptr) - 1
    data = np.ones(len(occurrences), dtype=np.float64)
    words = sp.csr_matrix((data, (text_of, occurrences)), shape=(n_texts, n_words))
    units = sp.csr_matrix(
        (np.ones(len(values), dtype=np.float64), values, indptr), shape=(n_words, n_columns)
    )
    counts: sp.csr_matrix = words @ units
    return counts


def _bigram_keys(sequence: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (keys, rows) of consecutive known tokens of the same text."""
    first, second = sequence[:-1], sequence[1:]
    valid = (rows[:-1] == rows[1:]) & (first >= 0) & (second >= 0)
    return first[valid] * _PAIR_BASE + second[valid], rows[1:][valid]


# (indptr, values) of rows of int64 values, as in a CSR matrix.
_Ragged = tuple[np.ndarray, np.ndarray]


class _RaggedStore:
    """Rows of int64 values appended in blocks: a growing CSR-like (indptr, values) pair."""

    def __init__(self) -> None:
        self.indptr = np.zeros(1024, dtype=np.int64)
        self.values = np.zeros(16_384, dtype=np.int64)
        self.n_rows = 0

    @property
    def n_values(self) -> int:
        return int(self.indptr[self.n_rows])

    def append(self, lengths: np.ndarray, values: np.ndarray) -> None:
        """Append one row per entry of ``lengths``, taking the values in order."""
        first, last = self.n_rows + 1, self.n_rows + len(lengths) + 1
        start = self.n_values
        self.indptr = _grown(self.indptr, last)
        self.values = _grown(self.values, start + len(values))
        np.cumsum(lengths, out=self.indptr[first:last])
        self.indptr[first:last] += start
        self.values[start : start + len(values)] = values
        self.n_rows += len(lengths)

    def view(self) -> _Ragged:
        return self.indptr[: self.n_rows + 1], self.values[: self.n_values]

    def replace(self, indptr: np.ndarray, values: np.ndarray) -> None:
        self.indptr, self.values = indptr.copy(), values.copy()
        self.n_rows = len(indptr) - 1


def _lengths(lists: list[list[str]]) -> np.ndarray:
    return np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))


def _flat_columns(term_columns: TermColumns, lists: list[list[str]]) -> np.ndarray:
    return np.array(term_columns(list(chain.from_iterable(lists))), dtype=np.int64)


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    """Return ``array`` with room for ``size`` entries, doubling its capacity when needed."""
    if size <= len(array):
        return array
    bigger = np.zeros(max(size, 2 * len(array)), dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger


@dataclass
class _Units:
    """Unit matrices of a word-level analyzer (see ``_WordLevelAnalyzer.units``)."""

    n_words: int
    word: sp.csr_matrix
    char: sp.csr_matrix


class _KeyTable:
    """A hash table from uint64 keys to non-negative int64 values, built and read in numpy.

    Open addressing with linear probing at a load of at most 0.4, so most look-ups end at the
    first slot. 135,000 look-ups among 150,000 random keys took 4 ms against 11 ms for a binary
    search of the sorted keys, whose 17 steps mostly miss the CPU caches.
    """

    _MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)

    def __init__(self, keys: np.ndarray, values: np.ndarray) -> None:
        keys = np.asarray(keys).astype(np.uint64)
        bits = max(4, int(np.ceil(np.log2(max(1, len(keys)) / 0.4))))
        self._shift = np.uint64(64 - bits)
        self._mask = np.int64((1 << bits) - 1)
        self._keys = np.zeros(1 << bits, dtype=np.uint64)
        self._values = np.full(1 << bits, -1, dtype=np.int64)
        # Each round places, for every free slot some pending key probes, the first such key;
        # the others move one slot on. A key placed in round r passed r slots that were
        # already taken, so a look-up that walks from the home slot to the first empty one
        # finds it.
        pending = np.arange(len(keys), dtype=np.int64)
        slots = self._home(keys)
        self._rounds = 0
        while len(pending):
            self._rounds += 1
            at = slots[pending]
            free = self._values[at] < 0
            taken_slots, first = np.unique(at[free], return_index=True)
            chosen = pending[free][first]
            self._keys[taken_slots] = keys[chosen]
            self._values[taken_slots] = np.asarray(values)[chosen]
            placed = np.zeros(len(keys), dtype=bool)
            placed[chosen] = True
            pending = pending[~placed[pending]]
            slots[pending] = (slots[pending] + 1) & self._mask

    def _home(self, keys: np.ndarray) -> np.ndarray:
        return ((keys * self._MULTIPLIER) >> self._shift).astype(np.int64)

    def get(self, keys: np.ndarray) -> np.ndarray:
        """Return the value of each key, -1 for a key not in the table."""
        keys = np.asarray(keys).astype(np.uint64)
        found = np.full(len(keys), -1, dtype=np.int64)
        pending = np.arange(len(keys), dtype=np.int64)
        slots = self._home(keys)
        for _ in range(self._rounds):
            values = self._values[slots]
            hit = (values >= 0) & (self._keys[slots] == keys)
            found[pending[hit]] = values[hit]
            more = (values >= 0) & ~hit
            if not more.any():
                break
            pending, keys = pending[more], keys[more]
            slots = (slots[more] + 1) & self._mask
        return found


class _CharGramIndex:
    """Looks up the columns of the character n-grams of many words at once, in numpy.

    Each character of the vocabulary gets a number from 1 up. An n-gram of up to four
    characters becomes one uint64 key of 16 bits per character, found in a hash table of the
    vocabulary's n-grams of the same length. A character outside the vocabulary numbers 0,
    which no vocabulary key contains, so its n-grams are unknown. A model read back from the
    database meets every word as new: for the 123,745 distinct words of 100,000 tweets this
    took 0.16 to 0.30 s against 0.82 s for ``char_ngrams`` and dictionary look-ups.
    """

    MAX_N = 4
    _BITS = 16

    def __init__(self, columns: Mapping[str, int], char_range: tuple[int, int]) -> None:
        self.low, self.high = char_range
        terms = list(columns)
        self.codes = np.unique(_code_points("".join(terms)))
        self.usable = self.high <= self.MAX_N and len(self.codes) < 2**self._BITS - 1
        # The vocabulary's n-grams by length, keyed as above.
        self._tables: dict[int, _KeyTable] = {}
        if not self.usable:
            return
        lengths = np.fromiter(map(len, terms), dtype=np.int64, count=len(terms))
        values = np.fromiter(columns.values(), dtype=np.int64, count=len(terms))
        for n in range(1, self.high + 1):
            at = np.flatnonzero(lengths == n)
            if len(at) == 0:
                continue
            numbers = self._numbers(_code_points("".join(terms[i] for i in at.tolist())))
            grams = list(numbers.reshape(len(at), n).T)
            self._tables[n] = _KeyTable(self._keys(grams), values[at])

    def _numbers(self, points: np.ndarray) -> np.ndarray:
        """Number code points from 1 in the vocabulary's characters, 0 for any other."""
        at = np.searchsorted(self.codes, points)
        at[at == len(self.codes)] = 0
        found = self.codes[at] == points if len(self.codes) else np.zeros(len(points), bool)
        return np.where(found, at + 1, 0).astype(np.uint64)

    def _keys(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        """Pack equally long arrays of character numbers, first character highest."""
        keys = np.zeros(len(parts[0]), dtype=np.uint64)
        for part in parts:
            keys <<= np.uint64(self._BITS)
            keys |= part
        return keys

    def _lookup(self, n: int, keys: np.ndarray) -> np.ndarray:
        table = self._tables.get(n)
        if table is None:
            return np.full(len(keys), -1, dtype=np.int64)
        return table.get(keys)

    def word_columns(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return (number of known n-grams of each word, their columns word by word), as
        ``char_ngrams`` and the vocabulary would give them."""
        padded_lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words)) + 2
        numbers = self._numbers(_code_points(" " + "  ".join(words) + " "))
        total = len(numbers)
        ends = np.cumsum(padded_lengths)
        word_of = np.repeat(np.arange(len(words), dtype=np.int64), padded_lengths)
        end_of = ends[word_of]
        position = np.arange(total, dtype=np.int64)
        # One slot per position and length, so columns come out grouped by word.
        span = self.high - self.low + 1
        slots = np.full((total, span), -1, dtype=np.int64)
        for offset, n in enumerate(range(self.low, self.high + 1)):
            starts = np.flatnonzero(position + n <= end_of)
            parts = [numbers[starts + k] for k in range(n)]
            slots[starts, offset] = self._lookup(n, self._keys(parts))
        # A padded word no longer than ``low`` characters is one n-gram, the whole of it.
        short = np.flatnonzero(padded_lengths < self.low)
        for length in np.unique(padded_lengths[short]).tolist():
            at = short[padded_lengths[short] == length]
            starts = ends[at] - length
            parts = [numbers[starts + k] for k in range(length)]
            slots[starts, 0] = self._lookup(length, self._keys(parts))
        flat = slots.ravel()
        known = flat >= 0
        counts = np.bincount(np.repeat(word_of, span)[known], minlength=len(words))
        return counts, flat[known]


def _code_points(text: str) -> np.ndarray:
    # surrogatepass keeps a lone surrogate as one code point, as it is one character of a str.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class _VocabularyColumns:
    """The columns of character n-grams in a fitted vocabulary, term by term or, for many new
    words at once, word by word in numpy (``_CharGramIndex``, built on first use)."""

    def __init__(self, vocabulary: dict[str, int], char_range: tuple[int, int]) -> None:
        self.vocabulary = vocabulary
        self.char_range = char_range
        self._index: _CharGramIndex | None = None

    def __call__(self, terms: list[str]) -> list[int]:
        return list(map(self.vocabulary.get, terms, repeat(-1)))

    def of_words(self, words: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
        """Return (known n-grams per word, their columns) for many words, else None."""
        if len(words) < _VECTOR_MIN_WORDS:
            return None
        if self._index is None:
            self._index = _CharGramIndex(self.vocabulary, self.char_range)
        if not self._index.usable:
            return None
        return self._index.word_columns(words)


class _WordLevelAnalyzer:
    """Analyses texts word by word for word 1-grams (and 2-grams) plus character n-grams.

    Tokens never span whitespace, so a text's tokens are the tokens of its whitespace-separated
    words in order, and a bigram is two consecutive tokens of one text. Each distinct word gets
    a row number and is tokenised and split into character n-grams once; its token and
    character columns are stored as rows of two ragged arrays, and counting runs in numpy on
    those columns, without building bigram strings.
    """

    def __init__(self, char_range: tuple[int, int], bigrams: bool) -> None:
        self.char_range = char_range
        self.bigrams = bigrams
        self._lock = threading.RLock()
        # Counts the times the cache was cleared because it was full, which renumbers words.
        self.generation = 0
        self.clear_cache()

    def clear_cache(self) -> None:
        self._rows: dict[str, int] = {}
        self.tokens = _RaggedStore()
        self.chars = _RaggedStore()
        self._units: tuple[tuple[int, int], _Units] | None = None
        # The word rows of each fitting text, kept from the fit. Scoring the unlabelled items
        # right after a fit transforms those same texts, and splitting and numbering their
        # words again took about two thirds of the time of a large transform.
        self._fitted_texts: dict[str, int] = {}
        self._fitted_words: _Ragged | None = None

    def remember_fitted(self, texts: Sequence[str], words: _RaggedStore) -> None:
        """Keep the word rows of the fitting texts (``words`` has one row per text)."""
        # Look-ups compare texts by equality, and 1 == 1.0 == True while their strings
        # differ, so only fits on str texts are kept.
        if len(texts) > _MAX_REMEMBERED_TEXTS or not all(type(text) is str for text in texts):
            return
        with self._lock:
            self._fitted_texts = dict(zip(texts, range(len(texts)), strict=True))
            self._fitted_words = words.view()

    def remembers(self, texts: Sequence[str]) -> bool:
        """Return whether every text of ``texts`` was a fitting text whose rows are kept."""
        with self._lock:
            known = self._fitted_texts
            return self._fitted_words is not None and all(text in known for text in texts)

    def fitted_occurrences(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
        """Return (word row of each word occurrence, text row of each) when every text was
        a fitting text, else None. Rows index the stores as ``number_words`` would."""
        with self._lock:
            if self._fitted_words is None:
                return None
            positions = list(map(self._fitted_texts.get, texts))
            if None in positions:
                return None
            indptr, values = self._fitted_words
        at = np.asarray(positions, dtype=np.int64)
        lengths = indptr[at + 1] - indptr[at]
        ends = np.cumsum(lengths)
        offsets = np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64)
        offsets += np.repeat(indptr[at] - (ends - lengths), lengths)
        text_of = np.repeat(np.arange(len(at), dtype=np.int64), lengths)
        return values[offsets], text_of

    def units(self, n_word_columns: int, n_columns: int) -> _Units:
        """Return the (units x columns) counts from which sparse products build a batch's
        word and character blocks. Units are the stored words, then one unit per word column
        (for bigrams). A word unit contains the word's known token columns in the word matrix
        and its character columns, less ``n_word_columns``, in the character matrix. A bigram
        unit contains a 1 in its column of the word matrix.

        Kept until a word is added or the cache is cleared or remapped. Callers hold the lock,
        so the matrices match the row numbers they got.
        """
        key = (self.tokens.n_rows, n_columns)
        if self._units is not None and self._units[0] == key:
            return self._units[1]
        token_indptr, token_values = self.tokens.view()
        char_indptr, char_values = self.chars.view()
        n_words = len(token_indptr) - 1
        n_units = n_words + n_word_columns
        # Built straight as CSR: the token store is already grouped by word, and going through
        # COO would sort every entry again each time words are added.
        known = token_values >= 0
        known_before = np.zeros(len(known) + 1, dtype=np.int64)
        np.cumsum(known, out=known_before[1:])
        word_indptr = np.concatenate(
            [
                known_before[token_indptr],
                known_before[-1] + np.arange(1, n_word_columns + 1, dtype=np.int64),
            ]
        )
        word_columns = np.concatenate(
            [token_values[known], np.arange(n_word_columns, dtype=np.int64)]
        ).astype(np.int32)
        word_units = sp.csr_matrix(
            (np.ones(len(word_columns), dtype=TFIDF_DTYPE), word_columns, word_indptr),
            shape=(n_units, n_word_columns),
        )
        char_indptr = np.concatenate([char_indptr, np.full(n_word_columns, char_indptr[-1])])
        char_ones = np.ones(len(char_values), dtype=TFIDF_DTYPE)
        char_units = sp.csr_matrix(
            (char_ones, char_values - n_word_columns, char_indptr),
            shape=(n_units, n_columns - n_word_columns),
        )
        units = _Units(n_words, word_units, char_units)
        self._units = (key, units)
        return units

    def number_words(
        self, batch: _WordBatch, token_columns: TermColumns, char_columns: TermColumns
    ) -> tuple[np.ndarray, _Ragged, _Ragged]:
        """Return the stored row of each word occurrence of ``batch``, analysing new words,
        with (indptr, values) views of the token and character stores those rows index."""
        # The lock keeps row numbers and store contents in step when threads share a model.
        with self._lock:
            if len(self._rows) + len(batch.words) > _MAX_CACHED_WORDS:
                self.clear_cache()
                self.generation += 1
            rows = self._rows
            new = [word for word in batch.words if word not in rows]
            if new:
                self._add_words(new, token_columns, char_columns)
                rows.update(zip(new, range(len(rows), len(rows) + len(new)), strict=True))
            numbers = np.fromiter(
                map(rows.__getitem__, batch.words), dtype=np.int64, count=len(batch.words)
            )
            return numbers[batch.occurrences], self.tokens.view(), self.chars.view()

    def number_words_with_units(
        self,
        texts: Sequence[str],
        token_columns: TermColumns,
        char_columns: TermColumns,
        n_word_columns: int,
        n_columns: int,
    ) -> tuple[np.ndarray, np.ndarray, _Ragged, _Units]:
        """Return (word row of each word occurrence, text row of each, the token store, the
        unit matrices of the same rows), from the fit's rows when ``texts`` were fitted."""
        with self._lock:
            fitted = self.fitted_occurrences(texts)
            if fitted is not None:
                return (*fitted, self.tokens.view(), self.units(n_word_columns, n_columns))
        batch = _split_words(texts)
        with self._lock:
            occurrences, token_store, _ = self.number_words(batch, token_columns, char_columns)
            return (
                occurrences,
                batch.text_of,
                token_store,
                self.units(n_word_columns, n_columns),
            )

    def _add_words(
        self, words: list[str], token_columns: TermColumns, char_columns: TermColumns
    ) -> None:
        # One call per kind of term for all new words, so the lookups loop in C.
        tokens = list(map(_TOKEN_RE.findall, words))
        self.tokens.append(_lengths(tokens), _flat_columns(token_columns, tokens))
        if isinstance(char_columns, _VocabularyColumns):
            found = char_columns.of_words(words)
            if found is not None:
                self.chars.append(*found)
                return
        low, high = self.char_range
        grams = [char_ngrams(word, low, high) for word in words]
        columns = _flat_columns(char_columns, grams)
        known = columns >= 0
        word_of = np.repeat(np.arange(len(words), dtype=np.int64), _lengths(grams))
        self.chars.append(np.bincount(word_of[known], minlength=len(words)), columns[known])

    def remap_cache(self, token_map: np.ndarray, char_map: np.ndarray) -> None:
        """Translate stored fitting ids to columns (old id -> column, -1 for a dropped term).

        Unknown tokens stay in the token rows as -1, so no bigram joins the tokens around them.
        """
        indptr, values = self.tokens.view()
        self.tokens.replace(indptr, token_map[values])
        indptr, values = self.chars.view()
        mapped = char_map[values]
        kept = np.zeros(len(mapped) + 1, dtype=np.int64)
        np.cumsum(mapped >= 0, out=kept[1:])
        self.chars.replace(kept[indptr], mapped[mapped >= 0])
        self._units = None


def _unique_pairs(keys: np.ndarray, rows: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (distinct keys, number of distinct rows each key occurs in)."""
    distinct, inverse = np.unique(keys, return_inverse=True)
    seen = np.unique(inverse.astype(np.int64) * n_rows + rows)
    return distinct, np.bincount(seen // n_rows, minlength=len(distinct))


def _merge_counts(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    keys = np.concatenate([keys for keys, _ in parts])
    counts = np.concatenate([counts for _, counts in parts])
    distinct, inverse = np.unique(keys, return_inverse=True)
    return distinct, np.bincount(inverse, weights=counts, minlength=len(distinct)).astype(np.int64)


@dataclass
class _WordFrequencies:
    """Document frequencies from one pass over the fitting texts."""

    tokens: _GrowingVocabulary
    token_df: np.ndarray
    bigram_keys: np.ndarray  # first token id * _PAIR_BASE + second token id, sorted
    bigram_df: np.ndarray
    chars: _GrowingVocabulary
    char_df: np.ndarray


def _word_level_frequencies(analyzer: _WordLevelAnalyzer, texts: Sequence[str]) -> _WordFrequencies:
    tokens, chars = _GrowingVocabulary(), _GrowingVocabulary()
    token_df = np.zeros(0, dtype=np.int64)
    char_df = np.zeros(0, dtype=np.int64)
    bigram_parts = []
    analyzer.clear_cache()
    generation = analyzer.generation
    words_of_texts = _RaggedStore()
    for start in range(0, len(texts), _FIT_BATCH):
        batch = _split_words(texts[start : start + _FIT_BATCH])
        occurrences, token_store, char_store = analyzer.number_words(batch, tokens, chars)
        words_of_texts.append(np.bincount(batch.text_of, minlength=batch.n_texts), occurrences)
        sequence, rows = _expand(occurrences, batch.text_of, token_store)
        seen = np.unique(sequence * batch.n_texts + rows)
        token_df = _add_counts(token_df, seen // batch.n_texts, len(tokens.terms))
        if analyzer.bigrams:
            keys, key_rows = _bigram_keys(sequence, rows)
            bigram_parts.append(_unique_pairs(keys, key_rows, batch.n_texts))
        char_matrix = _char_counts(
            occurrences, batch.text_of, char_store, batch.n_texts, len(chars.terms)
        )
        # A matrix product has no duplicate entries in a row, so counting column indices
        # counts texts.
        char_df = _add_counts(char_df, char_matrix.indices, len(chars.terms))
    bigram_keys, bigram_df = _merge_counts(bigram_parts)
    # A full cache is cleared mid-fit and renumbers the words, so earlier rows would be wrong.
    if analyzer.generation == generation:
        analyzer.remember_fitted(texts, words_of_texts)
    return _WordFrequencies(tokens, token_df, bigram_keys, bigram_df, chars, char_df)


def _select_word_terms(
    frequencies: _WordFrequencies, min_df: int, max_features: int | None
) -> tuple[list[str], np.ndarray]:
    """Return (kept unigram and bigram terms, their document frequencies).

    Among equally frequent terms a unigram wins over a bigram, so a kept bigram's two tokens
    are always kept too (a token occurs in every text its bigrams occur in).
    """
    n_tokens = len(frequencies.token_df)
    df = np.concatenate([frequencies.token_df, frequencies.bigram_df])
    keep = np.flatnonzero(df >= min_df)
    if max_features is not None and len(keep) > max_features:
        order = np.argsort(-df[keep], kind="stable")[:max_features]
        keep = np.sort(keep[order])
    token_terms = list(frequencies.tokens.terms)
    base = int(_PAIR_BASE)
    terms = []
    for position in keep.tolist():
        if position < n_tokens:
            terms.append(token_terms[position])
        else:
            first, second = divmod(int(frequencies.bigram_keys[position - n_tokens]), base)
            terms.append(f"{token_terms[first]} {token_terms[second]}")
    return terms, df[keep]


class _WordGramColumns:
    """Looks up the columns of word unigrams (by token) and bigrams (by unigram columns)."""

    def __init__(self, terms: list[str]) -> None:
        self.unigrams: dict[str, int] = {}
        pairs = []
        for column, term in enumerate(terms):
            first, space, second = term.partition(" ")
            if space:
                pairs.append((first, second, column))
            else:
                self.unigrams[term] = column
        keys, columns = [], []
        for first, second, column in pairs:
            a, b = self.unigrams.get(first), self.unigrams.get(second)
            # A bigram whose tokens are not in the vocabulary can never be counted here.
            if a is not None and b is not None:
                keys.append(a * int(_PAIR_BASE) + b)
                columns.append(column)
        self._pairs = _KeyTable(
            np.asarray(keys, dtype=np.int64), np.asarray(columns, dtype=np.int64)
        )

    def token_columns(self, tokens: list[str]) -> list[int]:
        return list(map(self.unigrams.get, tokens, repeat(-1)))

    def bigram_columns(self, keys: np.ndarray) -> np.ndarray:
        """Return the column of each bigram key, -1 for a bigram outside the vocabulary."""
        return self._pairs.get(keys)


def _word_level_counts(
    analyzer: _WordLevelAnalyzer,
    texts: Sequence[str],
    grams: _WordGramColumns,
    char_columns_of: TermColumns,
    n_word_columns: int,
    n_char_columns: int,
) -> sp.csr_matrix | tuple[sp.csr_matrix, sp.csr_matrix]:
    """Return (texts x columns) term counts, word n-gram columns first, then character ones;
    for more than ``_SMALL_BATCH`` texts, the two blocks as separate matrices.

    ``char_columns_of`` must already add ``n_word_columns`` to its columns.
    """
    n_columns = n_word_columns + n_char_columns
    if len(texts) > _SMALL_BATCH:
        return _word_level_product(
            analyzer, texts, grams, char_columns_of, n_word_columns, n_columns
        )
    batch = _split_words(texts)
    occurrences, token_store, char_store = analyzer.number_words(
        batch, grams.token_columns, char_columns_of
    )
    sequence, rows = _expand(occurrences, batch.text_of, token_store)
    known = sequence >= 0
    gram_rows, gram_columns = [rows[known]], [sequence[known]]
    if analyzer.bigrams:
        keys, key_rows = _bigram_keys(sequence, rows)
        columns = grams.bigram_columns(keys)
        gram_rows.append(key_rows[columns >= 0])
        gram_columns.append(columns[columns >= 0])
    all_rows, all_columns = np.concatenate(gram_rows), np.concatenate(gram_columns)
    char_columns, char_rows = _expand(occurrences, batch.text_of, char_store)
    keys = np.concatenate([all_rows * n_columns + all_columns, char_rows * n_columns])
    keys[len(all_rows) :] += char_columns
    return _keyed_counts(keys, batch.n_texts, n_columns, TFIDF_DTYPE)


def _word_level_product(
    analyzer: _WordLevelAnalyzer,
    texts: Sequence[str],
    grams: _WordGramColumns,
    char_columns_of: TermColumns,
    n_word_columns: int,
    n_columns: int,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Count a large batch as two blocks, (texts x word columns) and (texts x character
    columns), each one sparse product (texts x units) @ (units x columns).

    A text's units are its word occurrences and its bigrams (see ``units``). The blocks are
    built apart because adding a word and a character matrix that span all columns took as
    long as the products (100,000 tweets, 435 entries each). Apart, each block is also weighted
    in sequential passes over its own entries.
    """
    occurrences, text_of, token_store, units = analyzer.number_words_with_units(
        texts, grams.token_columns, char_columns_of, n_word_columns, n_columns
    )
    bigram_rows = bigram_units = np.zeros(0, dtype=np.int64)
    if analyzer.bigrams:
        sequence, rows = _expand(occurrences, text_of, token_store)
        keys, key_rows = _bigram_keys(sequence, rows)
        columns = grams.bigram_columns(keys)
        bigram_rows = key_rows[columns >= 0]
        bigram_units = units.n_words + columns[columns >= 0]
    texts_by_units = _row_ordered_matrix(
        [text_of, bigram_rows], [occurrences, bigram_units], len(texts), units.word.shape[0]
    )
    return texts_by_units @ units.word, texts_by_units @ units.char


def _row_ordered_matrix(
    rows: list[np.ndarray], columns: list[np.ndarray], n_rows: int, n_columns: int
) -> sp.csr_matrix:
    """Return the (rows x columns) matrix with a one per entry, built straight as CSR.

    Each part's rows must be ascending. A row's entries stay unsorted and repeated columns stay
    apart; sparse products add them up all the same. Going through COO instead sorts every
    entry, which took a third of the time of the two products that follow.
    """
    counts = [np.bincount(part, minlength=n_rows) for part in rows]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(sum(counts), out=indptr[1:])
    indices = np.empty(int(indptr[-1]), dtype=np.int32)
    start = indptr[:-1].copy()
    for part_rows, part_columns, part_counts in zip(rows, columns, counts, strict=True):
        if len(part_rows):
            # Entry k of a part goes to its row's next free places, in order.
            first = np.cumsum(part_counts) - part_counts
            rank = np.arange(len(part_rows), dtype=np.int64) - first[part_rows]
            indices[start[part_rows] + rank] = part_columns
        start += part_counts
    data = np.ones(len(indices), dtype=TFIDF_DTYPE)
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_columns))


@register_featurizer("tfidf")
class TfidfFeaturizer(Featurizer):
    """TF-IDF on word n-grams and on character n-grams within words.

    Fitted on all texts of a project, labelled or not. Stores its vocabulary and idf weights as
    arrays, so a model file needs no pickle.
    """

    def __init__(
        self,
        word_ngram_range: Sequence[int] = (1, 2),
        char_ngram_range: Sequence[int] = (2, 4),
        min_df: int = 2,
        max_word_features: int | None = 200_000,
        max_char_features: int | None = 300_000,
        sublinear_tf: bool = True,
    ) -> None:
        self.word_ngram_range = tuple(word_ngram_range)
        self.char_ngram_range = tuple(char_ngram_range)
        self.min_df = min_df
        self.max_word_features = max_word_features
        self.max_char_features = max_char_features
        self.sublinear_tf = sublinear_tf
        word_range = _check_range("word_ngram_range", self.word_ngram_range)
        char_range = _check_range("char_ngram_range", self.char_ngram_range)
        self._analyzer = _Analyzer(word_range, char_range)
        # Word 1-grams, or 1- and 2-grams, take the faster word-level path; other ranges
        # build their n-gram strings.
        self._word_level: _WordLevelAnalyzer | None = None
        if word_range[0] == 1 and word_range[1] <= 2:
            self._word_level = _WordLevelAnalyzer(char_range, bigrams=word_range[1] == 2)

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "word_vocabulary_")

    @property
    def n_features(self) -> int:
        return len(self.word_vocabulary_) + len(self.char_vocabulary_)

    def fit(self, texts: Sequence[str]) -> Self:
        texts = list(texts)
        if not texts:
            raise ValidationError("cannot fit the TF-IDF featurizer on zero texts")
        n = len(texts)
        min_df = self.min_df if n >= _MIN_DOCS_FOR_MIN_DF else 1
        if self._word_level is not None:
            self._fit_word_level(self._word_level, texts, min_df)
            return self
        grams, gram_df, chars, char_df = _document_frequencies(self._analyzer, texts)
        word_keep = _select_terms(grams, gram_df, min_df, self.max_word_features)
        char_keep = _select_terms(chars, char_df, min_df, self.max_char_features)
        word_terms = _terms_at(grams, word_keep)
        char_terms = _terms_at(chars, char_keep)
        self._set_vocabulary(
            word_terms, _idf(gram_df[word_keep], n), char_terms, _idf(char_df[char_keep], n)
        )
        # The cache of word columns from fitting stays valid once translated to the final
        # character columns, which saves recomputing the n-grams of every word in transform.
        new_columns = np.full(len(chars.terms), -1, dtype=np.int32)
        new_columns[char_keep] = np.arange(len(char_keep), dtype=np.int32) + len(word_terms)
        self._analyzer.remap_cache(new_columns)
        logger.debug(
            "tfidf fitted on %d texts: %d word and %d character features",
            n,
            len(word_terms),
            len(char_terms),
        )
        return self

    def _fit_word_level(self, analyzer: _WordLevelAnalyzer, texts: list[str], min_df: int) -> None:
        frequencies = _word_level_frequencies(analyzer, texts)
        word_terms, word_df = _select_word_terms(frequencies, min_df, self.max_word_features)
        chars, char_df = frequencies.chars, frequencies.char_df
        char_keep = _select_terms(chars, char_df, min_df, self.max_char_features)
        char_terms = _terms_at(chars, char_keep)
        n = len(texts)
        self._set_vocabulary(word_terms, _idf(word_df, n), char_terms, _idf(char_df[char_keep], n))
        # Translate the cache from fitting ids to final columns, so that transform does not
        # analyse every word again.
        token_map = np.full(len(frequencies.tokens.terms), -1, dtype=np.int64)
        for column, term in enumerate(word_terms):
            if " " not in term:
                token_map[frequencies.tokens.terms[term]] = column
        char_map = np.full(len(chars.terms), -1, dtype=np.int64)
        char_map[char_keep] = np.arange(len(char_keep), dtype=np.int64) + len(word_terms)
        analyzer.remap_cache(token_map, char_map)
        logger.debug(
            "tfidf fitted on %d texts: %d word and %d character features",
            n,
            len(word_terms),
            len(char_terms),
        )

    def _set_vocabulary(
        self,
        word_terms: list[str],
        word_idf: np.ndarray,
        char_terms: list[str],
        char_idf: np.ndarray,
    ) -> None:
        self.word_vocabulary_ = {term: i for i, term in enumerate(word_terms)}
        offset = len(word_terms)
        # Character columns follow the word columns.
        self.char_vocabulary_ = {term: offset + i for i, term in enumerate(char_terms)}
        self.word_idf_ = np.asarray(word_idf, dtype=np.float64)
        self.char_idf_ = np.asarray(char_idf, dtype=np.float64)
        self._idf = np.concatenate([self.word_idf_, self.char_idf_])
        if self._word_level is not None:
            self._word_grams = _WordGramColumns(word_terms)
            self._char_columns = _VocabularyColumns(
                self.char_vocabulary_, self._word_level.char_range
            )

    def analysed(self, texts: Sequence[str]) -> bool:
        return self._word_level is not None and self._word_level.remembers(texts)

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        blocks = self.transform_blocks(texts)
        if len(blocks) == 1:
            return blocks[0]
        return sp.hstack(blocks, format="csr")

    def transform_blocks(self, texts: Sequence[str]) -> list[sp.csr_matrix]:
        """Return [TF-IDF], or for a large batch [word columns, character columns] apart:
        joining them copies every entry, which a classifier scoring block by block skips."""
        if not self.is_fitted:
            raise ValidationError("the TF-IDF featurizer is not fitted; call fit() first")
        word_get = self.word_vocabulary_.get
        char_get = self.char_vocabulary_.get
        if self._word_level is not None:
            counts = _word_level_counts(
                self._word_level,
                texts,
                self._word_grams,
                self._char_columns,
                len(self.word_vocabulary_),
                len(self.char_vocabulary_),
            )
            if isinstance(counts, tuple):
                word_block, char_block = counts
                return [
                    _weight_block(word_block, self.word_idf_, self.sublinear_tf),
                    _weight_block(char_block, self.char_idf_, self.sublinear_tf),
                ]
            return [_weight(counts, self._idf, self.sublinear_tf, len(self.word_vocabulary_))]
        counts = _counts(
            self._analyzer,
            texts,
            lambda terms: [word_get(term, -1) for term in terms],
            lambda terms: [char_get(term, -1) for term in terms],
            len(self.word_vocabulary_),
            len(self.char_vocabulary_),
        )
        return [_weight(counts, self._idf, self.sublinear_tf, len(self.word_vocabulary_))]

    def get_state(self) -> tuple[dict[str, Any], ArrayState]:
        config = {
            "word_ngram_range": list(self.word_ngram_range),
            "char_ngram_range": list(self.char_ngram_range),
            "min_df": self.min_df,
            "max_word_features": self.max_word_features,
            "max_char_features": self.max_char_features,
            "sublinear_tf": self.sublinear_tf,
            "fitted": self.is_fitted,
        }
        if not self.is_fitted:
            return config, {}
        word_data, word_ends = encode_strings(list(self.word_vocabulary_))
        char_data, char_ends = encode_strings(list(self.char_vocabulary_))
        arrays = {
            "word_terms": word_data,
            "word_term_ends": word_ends,
            "word_idf": self.word_idf_,
            "char_terms": char_data,
            "char_term_ends": char_ends,
            "char_idf": self.char_idf_,
        }
        return config, arrays

    @classmethod
    def from_state(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        params = {k: v for k, v in config.items() if k != "fitted"}
        featurizer = cls(**params)
        if config.get("fitted"):
            word_terms = decode_strings(arrays["word_terms"], arrays["word_term_ends"])
            char_terms = decode_strings(arrays["char_terms"], arrays["char_term_ends"])
            word_idf, char_idf = arrays["word_idf"], arrays["char_idf"]
            if len(word_terms) != len(word_idf) or len(char_terms) != len(char_idf):
                raise ValueError("vocabulary and idf arrays differ in length")
            featurizer._set_vocabulary(word_terms, word_idf, char_terms, char_idf)
        return featurizer


# --------------------------------------------------------------------------- hashing


@register_featurizer("hashing")
class HashingFeaturizer(Featurizer):
    """Stateless word and character n-gram features hashed into fixed columns, for streams.

    Needs no fit and no vocabulary, so it works from the first text of an endless stream; it
    has no idf weighting. Terms are hashed with MurmurHash3 (seed 0), stable across processes.
    Columns: ``n_features`` for word n-grams, then ``n_features`` for character n-grams.
    """

    requires_fit = False

    def __init__(
        self,
        word_ngram_range: Sequence[int] = (1, 2),
        char_ngram_range: Sequence[int] = (2, 4),
        n_features: int = 2**20,
        sublinear_tf: bool = True,
    ) -> None:
        self.word_ngram_range = tuple(word_ngram_range)
        self.char_ngram_range = tuple(char_ngram_range)
        self.n_features = n_features
        self.sublinear_tf = sublinear_tf
        if n_features < 2:
            raise ValidationError(f"n_features must be at least 2, got {n_features}")
        self._analyzer = _Analyzer(
            _check_range("word_ngram_range", self.word_ngram_range),
            _check_range("char_ngram_range", self.char_ngram_range),
        )

    def _word_columns(self, terms: list[str]) -> list[int]:
        size = self.n_features
        return [int(murmurhash3_32(term, seed=0, positive=True)) % size for term in terms]

    def _char_columns(self, terms: list[str]) -> list[int]:
        size = self.n_features
        return [int(murmurhash3_32(term, seed=0, positive=True)) % size + size for term in terms]

    def fit(self, texts: Sequence[str]) -> Self:
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        if len(texts) <= _SMALL_BATCH:
            counts = _hashed_counts(
                self._analyzer, texts, self._word_columns, self._char_columns, 2 * self.n_features
            )
        else:
            counts = _counts(
                self._analyzer,
                texts,
                self._word_columns,
                self._char_columns,
                self.n_features,
                self.n_features,
            )
        return _weight(counts, None, self.sublinear_tf, self.n_features)

    def get_state(self) -> tuple[dict[str, Any], ArrayState]:
        config = {
            "word_ngram_range": list(self.word_ngram_range),
            "char_ngram_range": list(self.char_ngram_range),
            "n_features": self.n_features,
            "sublinear_tf": self.sublinear_tf,
        }
        return config, {}

    @classmethod
    def from_state(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        return cls(**config)
