"""Helpers of the learning tests: small labelled corpora and projects in a database.

A conftest.py here would be imported as ``conftest`` and hide the top-level one.
"""

from __future__ import annotations

import hashlib

import numpy as np
import scipy.sparse as sp

from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Item, Label, Project

LABELS = ["negative", "useless", "positive"]

_PHRASES = {
    "negative": ["price crash dump", "scam hack lost funds", "bearish sell off fear"],
    "useless": ["follow for giveaway", "click link airdrop free", "join telegram group now"],
    "positive": ["price rally moon", "great adoption news", "bullish breakout gains"],
}


def corpus(per_class: int = 20) -> tuple[list[str], list[str]]:
    """Return (texts, label names): ``per_class`` distinct short texts per label."""
    texts, labels = [], []
    for label, phrases in _PHRASES.items():
        for i in range(per_class):
            texts.append(f"{phrases[i % len(phrases)]} ethereum item{i} {label[:3]}{i % 4}")
            labels.append(label)
    return texts, labels


def embedding_blocks(
    n: int, seed: int = 0, noise: float = 0.05
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Return a sparse 20-column block with empty cells, then a dense 8-column block.

    The labels are 3 clusters of the dense block, spread by ``noise`` around their centres.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centres = rng.normal(size=(3, 8))
    dense = centres[y] + noise * rng.normal(size=(n, 8))
    sparse = sp.random(n, 20, density=0.2, random_state=seed, format="csr")
    return sp.hstack([sparse, sp.csr_matrix(dense)], format="csr"), y


def create_project(
    db: Database,
    texts: list[str],
    labels: list[str | None],
    *,
    name: str = "tweets",
    strategy: str = "margin",
) -> int:
    """Create a project with the three labels and one item per text (None = unlabelled)."""
    with db.session() as session:
        project = Project(
            name=name,
            strategy_name=strategy,
            labels=[Label(name=n, key=str(i + 1), position=i) for i, n in enumerate(LABELS)],
        )
        session.add(project)
        session.flush()
        label_ids = {label.name: label.id for label in project.labels}
        for position, (text, label) in enumerate(zip(texts, labels, strict=True)):
            session.add(
                Item(
                    project_id=project.id,
                    text=text,
                    text_hash=hashlib.sha1(text.encode()).hexdigest(),
                    position=position,
                    label_id=label_ids[label] if label is not None else None,
                )
            )
        return project.id
