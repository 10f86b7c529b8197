"""Team figures from stored answers: speed, agreement inputs and the SVG plots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from team_helpers import add_answer, make_user, project_ids, small_project

from labelandlearn.errors import NotFoundError, ValidationError
from labelandlearn.storage.db import Database
from labelandlearn.team.plots import annotator_bars_svg, kappa_heatmap_svg
from labelandlearn.team.stats import answer_speed, team_stats

NAN = np.nan


def test_answer_speed_from_gaps() -> None:
    # Sessions [0, 30, 70] and [1000, 1020]; gaps 30, 40, 20 give a median of 30 s, and
    # each session's first answer is counted at that median: 90 + 2 * 30 = 150 s.
    speed = answer_speed(np.array([0.0, 30, 70, 1000, 1020]), np.full(5, NAN))
    assert speed.sessions == 2
    assert speed.median_seconds == pytest.approx(30.0)
    assert speed.active_seconds == pytest.approx(150.0)
    assert speed.answers_per_hour == pytest.approx(5 / 150 * 3600)


def test_answer_speed_prefers_durations() -> None:
    # Seconds per answer 10, 30, 40, 5, 20; the first answers take 10 and 5 s.
    durations = np.array([10.0, NAN, NAN, 5.0, NAN])
    speed = answer_speed(np.array([0.0, 30, 70, 1000, 1020]), durations)
    assert speed.median_seconds == pytest.approx(20.0)
    assert speed.active_seconds == pytest.approx(105.0)
    assert speed.answers_per_hour == pytest.approx(5 / 105 * 3600)


def test_answer_speed_single_answer_has_no_rate() -> None:
    speed = answer_speed(np.array([5.0]), np.array([NAN]))
    assert speed.answers_per_hour is None
    assert speed.median_seconds is None
    assert answer_speed(np.array([]), np.array([])).answers == 0


def test_answer_speed_rejects_unsorted() -> None:
    with pytest.raises(ValidationError, match="not sorted"):
        answer_speed(np.array([5.0, 1.0]), np.array([NAN, NAN]))


def _answers_for_stats(db: Database, project_id: int) -> list[int]:
    items, labels = project_ids(db, project_id)
    users = [make_user(db, name) for name in ("ann", "bob", "cat")]
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    plan = [
        # (item, user, label, seconds after start)
        (0, 0, "a", 0), (1, 0, "b", 20), (2, 0, "a", 60), (3, 0, "c", 3600),
        (0, 1, "a", 10), (1, 1, "b", 40), (2, 1, "b", 70),
        (0, 2, "a", 5), (1, 2, "a", 15), (2, 2, "b", 25),
    ]  # fmt: skip
    for item, user, label, seconds in plan:
        add_answer(
            db, project_id, items[item], users[user], labels[label],
            created_at=start + timedelta(seconds=seconds),
        )  # fmt: skip
    # Left out of agreement: a skip, an answer without a user, and a review.
    add_answer(db, project_id, items[3], users[1], None, created_at=start + timedelta(seconds=80))
    add_answer(db, project_id, items[3], None, labels["a"], source="import")
    reviewer = make_user(db, "rev")
    add_answer(db, project_id, items[3], reviewer, labels["b"], source="review")
    return users


def test_team_stats_from_answers(db: Database, tmp_path: Path) -> None:
    project_id = small_project(db, tmp_path)
    users = _answers_for_stats(db, project_id)

    stats = team_stats(db, project_id)

    assert stats.labels == ["a", "b", "c"]
    assert [annotator.username for annotator in stats.annotators] == ["ann", "bob", "cat"]
    assert [annotator.user_id for annotator in stats.annotators] == users
    assert [annotator.labelled for annotator in stats.annotators] == [4, 3, 3]
    assert stats.items_with_answers == 4
    # Items 0-2 carry three ratings each; item 3 has one rating and no pair.
    assert stats.fleiss.items == 3
    assert stats.alpha.ratings == 9
    # ann vs bob on items 0-2: a/a, b/b, a/b.
    assert stats.cohen.shared[0, 1] == 3
    assert stats.cohen.kappa[0, 1] == pytest.approx(0.4)

    ann, bob, cat = stats.annotators
    # ann: item 0 others a,a (agree), item 1 others b,a (tie), item 2 others b,b (disagree).
    assert (ann.majority_compared, ann.majority_ties) == (2, 1)
    assert ann.majority_agreement == pytest.approx(0.5)
    # ann's answers at 0, 20, 60 s form one session; the one at 3600 s starts another.
    assert ann.speed.sessions == 2
    assert ann.speed.median_seconds == pytest.approx(30.0)
    assert ann.speed.answers_per_hour == pytest.approx(4 / (60 + 2 * 30) * 3600)
    # bob's skip counts as work: answers at 10, 40, 70, 80 s.
    assert bob.speed.answers == 4
    assert bob.speed.median_seconds == pytest.approx(30.0)
    # cat: item 0 agrees, item 1 disagrees, item 2 sees a tie (ann a, bob b).
    assert (cat.majority_compared, cat.majority_ties) == (2, 1)
    assert cat.majority_agreement == pytest.approx(0.5)

    data = stats.as_dict()
    assert data["fleiss_kappa"]["per_label"].keys() == {"a", "b", "c"}
    assert data["cohen_kappa"]["by_pair"][0]["a"] == "ann"
    assert data["annotators"][0]["answers_per_hour"] == pytest.approx(120.0)


def test_team_stats_empty_project(db: Database, tmp_path: Path) -> None:
    project_id = small_project(db, tmp_path)
    stats = team_stats(db, project_id)
    assert stats.annotators == []
    assert stats.cohen.mean is None
    assert stats.fleiss.kappa is None
    assert stats.alpha.alpha is None
    assert b"No annotator pairs yet" in kappa_heatmap_svg(stats)
    assert annotator_bars_svg(stats).startswith(b"<?xml")


def test_team_stats_unknown_project(sqlite_db: Database) -> None:
    with pytest.raises(NotFoundError, match="project 424242 not found"):
        team_stats(sqlite_db, 424242)


def test_team_plots_are_svg(sqlite_db: Database, tmp_path_factory: pytest.TempPathFactory) -> None:
    from team_helpers import import_items, make_project, write_csv

    folder = tmp_path_factory.mktemp("plots")
    project_id = make_project(sqlite_db, "plots", ["a", "b", "c"])
    import_items(
        sqlite_db, project_id, write_csv(folder / "m.csv", ["text"], [[f"t{i}"] for i in range(4)])
    )
    _answers_for_stats(sqlite_db, project_id)
    stats = team_stats(sqlite_db, project_id)

    heatmap = kappa_heatmap_svg(stats)
    bars = annotator_bars_svg(stats)

    assert heatmap.startswith(b"<?xml")
    assert b"<svg" in heatmap
    assert b"bob" in heatmap
    assert b"0.40" in heatmap
    assert b"answers per hour" in bars
    assert b"cat" in bars
    assert kappa_heatmap_svg(stats) == heatmap
    assert b"most active" in kappa_heatmap_svg(stats, max_annotators=2)
