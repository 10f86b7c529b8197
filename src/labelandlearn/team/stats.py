"""Team figures of a project from its stored answers: agreement and annotator speed.

Agreement uses every labelled answer with source ``labeller`` or ``import`` that belongs to a
user; skips, reviews and imported labels without an annotator (a file's label column) are
left out. Speed uses labeller answers only, skips included, because imported answers carry
no timing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from labelandlearn.errors import NotFoundError, ValidationError
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Label, Project, User
from labelandlearn.team.agreement import (
    FleissKappa,
    KrippendorffAlpha,
    PairwiseKappa,
    Ratings,
    fleiss_kappa,
    krippendorff_alpha,
    majority_agreement,
    pairwise_cohen_kappa,
)

logger = logging.getLogger(__name__)

# Answers further apart than this belong to separate working sessions; the pause between
# them does not count as labelling time.
SESSION_GAP_SECONDS = 600.0
AGREEMENT_SOURCES = ("labeller", "import")


@dataclass(frozen=True)
class Speed:
    """Labelling speed of one annotator over their active time.

    ``active_seconds`` adds up each session's span from first to last answer, plus the time
    of each session's first answer (its ``duration_ms``, else the median seconds per answer).
    """

    answers: int
    sessions: int
    active_seconds: float
    answers_per_hour: float | None
    median_seconds: float | None


def answer_speed(
    timestamps: NDArray[np.float64],
    durations: NDArray[np.float64],
    *,
    session_gap: float = SESSION_GAP_SECONDS,
) -> Speed:
    """Compute speed from sorted answer times (seconds) and their durations (seconds or NaN).

    An answer takes its measured duration when present, else the time since the previous
    answer of the same session. A session's first answer without a duration has no seconds
    of its own.
    """
    times = np.asarray(timestamps, dtype=np.float64)
    measured = np.asarray(durations, dtype=np.float64)
    if times.shape != measured.shape:
        raise ValidationError(
            f"{times.size} timestamps but {measured.size} durations; pass one per answer"
        )
    if times.size == 0:
        return Speed(0, 0, 0.0, None, None)
    if np.any(np.diff(times) < 0):
        raise ValidationError("answer timestamps are not sorted; sort them oldest first")

    gaps = np.diff(times)
    starts = np.concatenate([[True], gaps > session_gap])
    previous_gap = np.concatenate([[np.nan], gaps])
    seconds = np.where(~np.isnan(measured), measured, np.where(starts, np.nan, previous_gap))
    known = seconds[~np.isnan(seconds)]
    median = float(np.median(known)) if known.size else None

    in_session = gaps[gaps <= session_gap].sum()
    first = measured[starts]
    first_seconds = np.where(np.isnan(first), median if median is not None else 0.0, first)
    active = float(in_session + first_seconds.sum())
    per_hour = times.size / active * 3600.0 if active > 0 else None
    return Speed(
        answers=int(times.size),
        sessions=int(starts.sum()),
        active_seconds=active,
        answers_per_hour=per_hour,
        median_seconds=median,
    )


@dataclass
class AnnotatorStats:
    user_id: int
    username: str
    labelled: int
    majority_agreement: float | None
    majority_compared: int
    majority_ties: int
    speed: Speed


@dataclass
class TeamStats:
    """Agreement and speed figures of one project; matrices follow ``annotators``' order."""

    project_id: int
    labels: list[str]
    annotators: list[AnnotatorStats]
    items_with_answers: int
    cohen: PairwiseKappa
    fleiss: FleissKappa
    alpha: KrippendorffAlpha

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as JSON-ready values; NaN becomes None."""
        names = [annotator.username for annotator in self.annotators]
        pairs = []
        for a, b in zip(*np.triu_indices(len(names), k=1), strict=True):
            kappa = self.cohen.kappa[a, b]
            if not math.isnan(kappa):
                pairs.append(
                    {
                        "a": names[a],
                        "b": names[b],
                        "kappa": float(kappa),
                        "shared": int(self.cohen.shared[a, b]),
                    }
                )
        return {
            "project_id": self.project_id,
            "labels": self.labels,
            "items_with_answers": self.items_with_answers,
            "cohen_kappa": {
                "pairs": self.cohen.pairs,
                "mean": self.cohen.mean,
                "min": self.cohen.min,
                "max": self.cohen.max,
                "by_pair": pairs,
            },
            "fleiss_kappa": {
                "kappa": self.fleiss.kappa,
                "per_label": dict(zip(self.labels, self.fleiss.per_label, strict=True)),
                "items": self.fleiss.items,
                "raters_min": self.fleiss.raters_min,
                "raters_max": self.fleiss.raters_max,
                "equal_raters": self.fleiss.equal_raters,
            },
            "krippendorff_alpha": {
                "alpha": self.alpha.alpha,
                "per_label": dict(zip(self.labels, self.alpha.per_label, strict=True)),
                "items": self.alpha.items,
                "ratings": self.alpha.ratings,
            },
            "annotators": [_annotator_dict(annotator) for annotator in self.annotators],
        }


def _annotator_dict(annotator: AnnotatorStats) -> dict[str, Any]:
    return {
        "user_id": annotator.user_id,
        "username": annotator.username,
        "labelled": annotator.labelled,
        "majority_agreement": annotator.majority_agreement,
        "majority_compared": annotator.majority_compared,
        "majority_ties": annotator.majority_ties,
        "answers_timed": annotator.speed.answers,
        "sessions": annotator.speed.sessions,
        "active_hours": annotator.speed.active_seconds / 3600.0,
        "answers_per_hour": annotator.speed.answers_per_hour,
        "median_seconds_per_answer": annotator.speed.median_seconds,
    }


def team_stats(
    db: Database,
    project_id: int,
    *,
    min_shared: int = 1,
    session_gap: float = SESSION_GAP_SECONDS,
) -> TeamStats:
    """Compute the project's agreement and per-annotator figures from its stored answers.

    ``min_shared`` is the fewest items a pair of annotators must share for its Cohen's kappa.
    """
    with db.session() as session:
        if session.get(Project, project_id) is None:
            raise NotFoundError(f"project {project_id} not found")
        labels = [
            (label_id, name)
            for label_id, name in session.execute(
                select(Label.id, Label.name)
                .where(Label.project_id == project_id)
                .order_by(Label.position, Label.id)
            )
        ]
        votes = session.execute(
            select(Answer.item_id, Answer.user_id, Answer.label_id).where(
                Answer.project_id == project_id,
                Answer.source.in_(AGREEMENT_SOURCES),
                Answer.label_id.is_not(None),
                Answer.user_id.is_not(None),
            )
        ).all()
        timed = session.execute(
            select(Answer.user_id, Answer.created_at, Answer.duration_ms)
            .where(
                Answer.project_id == project_id,
                Answer.source == "labeller",
                Answer.user_id.is_not(None),
            )
            .order_by(Answer.user_id, Answer.created_at)
        ).all()
        user_ids = sorted({row.user_id for row in votes} | {row.user_id for row in timed})
        usernames = _usernames(session, user_ids)

    ratings, items = _ratings(votes, user_ids, [label_id for label_id, _ in labels])
    speeds = _speeds(timed, session_gap)
    majority = majority_agreement(ratings)
    labelled = np.bincount(ratings.annotator, minlength=len(user_ids))
    annotators = [
        AnnotatorStats(
            user_id=user_id,
            username=usernames.get(user_id, str(user_id)),
            labelled=int(labelled[index]),
            majority_agreement=None
            if math.isnan(majority.rate[index])
            else float(majority.rate[index]),
            majority_compared=int(majority.compared[index]),
            majority_ties=int(majority.ties[index]),
            speed=speeds.get(user_id, Speed(0, 0, 0.0, None, None)),
        )
        for index, user_id in enumerate(user_ids)
    ]
    return TeamStats(
        project_id=project_id,
        labels=[name for _, name in labels],
        annotators=annotators,
        items_with_answers=items,
        cohen=pairwise_cohen_kappa(ratings, min_shared=min_shared),
        fleiss=fleiss_kappa(ratings),
        alpha=krippendorff_alpha(ratings),
    )


def _usernames(session: Any, user_ids: list[int]) -> dict[int, str]:
    names: dict[int, str] = {}
    for start in range(0, len(user_ids), 2000):
        chunk = user_ids[start : start + 2000]
        rows = session.execute(select(User.id, User.username).where(User.id.in_(chunk)))
        names.update({user_id: username for user_id, username in rows})
    return names


def _ratings(
    votes: Sequence[Any], user_ids: list[int], label_ids: list[int]
) -> tuple[Ratings, int]:
    """Return the votes as ratings with dense codes, and the number of items they cover."""
    user_code = {user_id: index for index, user_id in enumerate(user_ids)}
    label_code = {label_id: index for index, label_id in enumerate(label_ids)}
    raw_items = np.array([row.item_id for row in votes], dtype=np.int64)
    item_ids, item_codes = np.unique(raw_items, return_inverse=True)
    ratings = Ratings.from_codes(
        item_codes.astype(np.int64),
        np.array([user_code[row.user_id] for row in votes], dtype=np.int64),
        np.array([label_code[row.label_id] for row in votes], dtype=np.int64),
        n_items=int(item_ids.size),
        n_annotators=len(user_ids),
        n_labels=len(label_ids),
    )
    return ratings, int(item_ids.size)


def _speeds(timed: Sequence[Any], session_gap: float) -> dict[int, Speed]:
    by_user: dict[int, list[tuple[datetime, int | None]]] = {}
    for row in timed:
        by_user.setdefault(row.user_id, []).append((row.created_at, row.duration_ms))
    speeds = {}
    for user_id, answers in by_user.items():
        times = np.array([created.timestamp() for created, _ in answers], dtype=np.float64)
        durations = np.array(
            [np.nan if duration is None else duration / 1000.0 for _, duration in answers],
            dtype=np.float64,
        )
        speeds[user_id] = answer_speed(times, durations, session_gap=session_gap)
    return speeds
