"""The small-batch and large-batch transform paths of the featurizers give the same rows."""

from __future__ import annotations

import pytest
import scipy.sparse as sp
import sqlalchemy as sa
from learning_helpers import corpus

from conftest import POSTGRES_URL
from labelandlearn.learning import featurizers
from labelandlearn.learning.base import make_featurizer
from labelandlearn.storage import db as storage_db
from labelandlearn.storage.db import Database

TEXTS = corpus(per_class=30)[0] + ["", "   ", "émoji 🚀 ETH!!", "a"]


@pytest.mark.parametrize("name", ["tfidf", "hashing"])
def test_one_text_rows_match_full_batch(name: str) -> None:
    featurizer = make_featurizer(name).fit(TEXTS)
    full = sp.csr_matrix(featurizer.transform(TEXTS))
    assert len(TEXTS) > 64
    for index, text in enumerate(TEXTS):
        single = sp.csr_matrix(featurizer.transform([text]))
        assert single.shape == (1, full.shape[1])
        assert abs(single - full[index]).max() <= 1e-12, text
    middle = sp.csr_matrix(featurizer.transform(TEXTS[:65]))
    assert abs(middle - full[:65]).max() <= 1e-12


def _restored(featurizer: object) -> object:
    """A copy of a fitted featurizer built from its state, so it has no cache of words."""
    config, arrays = featurizer.get_state()  # type: ignore[attr-defined]
    return type(featurizer).from_state(config, arrays)  # type: ignore[attr-defined]


def test_fitted_texts_match_restored_featurizer() -> None:
    featurizer = make_featurizer("tfidf").fit(TEXTS)
    restored = _restored(featurizer)
    # Fitted texts in another order, repeated, then a batch with one text never fitted.
    shuffled = list(reversed(TEXTS)) + TEXTS[:10]
    assert abs(featurizer.transform(shuffled) - restored.transform(shuffled)).max() <= 1e-12
    mixed = [*TEXTS[:70], "a text the fit never saw, with new words"]
    assert abs(featurizer.transform(mixed) - restored.transform(mixed)).max() <= 1e-12


def test_transform_after_cache_cleared_in_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With a tiny word cache the fit clears it between batches and renumbers the words, so
    # the word rows of the first batches must not be reused.
    monkeypatch.setattr(featurizers, "_MAX_CACHED_WORDS", 50)
    monkeypatch.setattr(featurizers, "_FIT_BATCH", 20)
    featurizer = make_featurizer("tfidf").fit(TEXTS)
    restored = _restored(featurizer)
    assert abs(featurizer.transform(TEXTS) - restored.transform(TEXTS)).max() <= 1e-12


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
    assert abs(featurizer.transform(batch) - restored.transform(batch)).max() <= 1e-12
