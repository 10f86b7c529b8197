"""Importing per-annotator answers onto imported items, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from team_helpers import import_items, make_project, small_project, write_csv

from labelandlearn.errors import ImportFormatError, ValidationError
from labelandlearn.ingest.importer import import_file
from labelandlearn.ingest.mapping import ColumnMapping
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Item, Label, User
from labelandlearn.team.annotations import import_annotations
from labelandlearn.team.stats import team_stats
from shared_data import dataset_path

HEADER = ["row_id", "annotator_id", "label"]


def _items_by_position(db: Database, project_id: int) -> list[Item]:
    with db.session() as session:
        return list(
            session.scalars(
                select(Item).where(Item.project_id == project_id).order_by(Item.position)
            )
        )


def _label_ids(db: Database, project_id: int) -> dict[str, int]:
    with db.session() as session:
        rows = session.execute(select(Label.name, Label.id).where(Label.project_id == project_id))
        return {name: label_id for name, label_id in rows}


def _count(db: Database, model: type) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _one_item_project(db: Database, tmp_path: Path) -> int:
    project_id = make_project(db, "one item", ["a", "b", "c"])
    import_items(db, project_id, write_csv(tmp_path / "main.csv", ["text"], [["one"]]))
    return project_id


def test_import_sets_majority_and_waits_on_ties(db: Database, tmp_path: Path) -> None:
    project_id = small_project(db, tmp_path)
    path = write_csv(
        tmp_path / "long.csv",
        HEADER,
        [
            [0, "ann1", "a"], [0, "ann2", "a"], [0, "ann3", "b"],  # majority a
            [1, "ann1", "a"], [1, "ann2", "b"],  # tie
            [2, "ann3", "c"],  # single answer
        ],
    )  # fmt: skip

    report = import_annotations(db, project_id, path)

    assert report.rows_read == 6
    assert report.answers_created == 6
    assert report.users_created == 3
    assert report.items_answered == 3
    assert report.items_labelled == 2
    assert report.items_tied == 1
    assert report.rows_with_errors == 0
    labels = _label_ids(db, project_id)
    items = _items_by_position(db, project_id)
    assert [item.label_id for item in items] == [labels["a"], None, labels["c"], None]
    assert [item.done for item in items] == [True, True, True, False]
    with db.session() as session:
        sources = set(session.scalars(select(Answer.source)))
        users = session.scalars(select(User).order_by(User.username)).all()
    assert sources == {"import"}
    assert [user.username for user in users] == ["ann1", "ann2", "ann3"]
    assert all(user.password_hash is None for user in users)


def test_import_reports_bad_rows(db: Database, tmp_path: Path) -> None:
    project_id = small_project(db, tmp_path)
    path = write_csv(
        tmp_path / "long.csv",
        HEADER,
        [
            [0, "ann1", "a"],
            [9, "ann1", "a"],  # line 3: no such row
            ["x", "ann1", "a"],  # line 4: not a row number
            [1, "", "a"],  # line 5: no annotator
            [1, "ann1", "zzz"],  # line 6: unknown label
            [0, "ann1", "b"],  # line 7: repeats (row 0, ann1)
        ],
    )

    report = import_annotations(db, project_id, path)

    assert report.answers_created == 1
    assert report.rows_with_errors == 5
    assert [error["line"] for error in report.row_errors] == [3, 4, 5, 6, 7]
    assert "matches no item" in report.row_errors[0]["reason"]
    assert "annotator_id" in report.row_errors[2]["reason"]
    assert "labels are: a, b, c" in report.row_errors[3]["reason"]
    assert "kept the first" in report.row_errors[4]["reason"]


def test_import_twice_keeps_stored_answers(db: Database, tmp_path: Path) -> None:
    project_id = small_project(db, tmp_path)
    first = write_csv(tmp_path / "first.csv", HEADER, [[0, "ann1", "a"]])
    second = write_csv(tmp_path / "second.csv", HEADER, [[0, "ann1", "b"], [1, "ann1", "b"]])
    import_annotations(db, project_id, first)

    report = import_annotations(db, project_id, second)

    assert report.answers_created == 1
    assert report.users_created == 0
    assert "already answered" in report.row_errors[0]["reason"]
    assert report.row_errors[0]["line"] == 2
    items = _items_by_position(db, project_id)
    assert items[0].label_id == _label_ids(db, project_id)["a"]


def test_import_with_nothing_usable_writes_nothing(db: Database, tmp_path: Path) -> None:
    project_id = small_project(db, tmp_path)
    path = write_csv(tmp_path / "long.csv", HEADER, [[0, "ann1", "nope"], [7, "ann2", "a"]])

    with pytest.raises(ImportFormatError, match="none of the 2 rows.*line 2"):
        import_annotations(db, project_id, path)

    assert _count(db, User) == 0
    assert _count(db, Answer) == 0


def test_import_empty_file_is_rejected(sqlite_db: Database, tmp_path: Path) -> None:
    db = sqlite_db
    project_id = _one_item_project(db, tmp_path)
    path = write_csv(tmp_path / "long.csv", HEADER, [])
    with pytest.raises(ImportFormatError, match="no data rows"):
        import_annotations(db, project_id, path)


def test_import_missing_column_lists_columns(sqlite_db: Database, tmp_path: Path) -> None:
    db = sqlite_db
    project_id = _one_item_project(db, tmp_path)
    path = write_csv(tmp_path / "long.csv", ["row", "annotator_id", "label"], [[0, "a", "a"]])
    with pytest.raises(ImportFormatError, match="no column row_id; columns found: row, "):
        import_annotations(db, project_id, path)


def test_import_label_map(db: Database, tmp_path: Path) -> None:
    project_id = small_project(db, tmp_path)
    path = write_csv(tmp_path / "long.csv", HEADER, [[0, "ann1", "1"], [0, "ann2", "1"]])
    report = import_annotations(db, project_id, path, label_map={"1": "b"})
    assert report.answers_created == 2
    assert _items_by_position(db, project_id)[0].label_id == _label_ids(db, project_id)["b"]


def test_import_label_map_to_unknown_label(sqlite_db: Database, tmp_path: Path) -> None:
    db = sqlite_db
    project_id = _one_item_project(db, tmp_path)
    path = write_csv(tmp_path / "long.csv", HEADER, [[0, "ann1", "1"]])
    with pytest.raises(ValidationError, match="'1' to 'x', which is not a label"):
        import_annotations(db, project_id, path, label_map={"1": "x"})


def test_import_matches_external_ids(db: Database, tmp_path: Path) -> None:
    project_id = make_project(db, "ids", ["a", "b"])
    main = write_csv(tmp_path / "main.csv", ["id", "text"], [["t-7", "seven"], ["t-9", "nine"]])
    import_file(db, project_id, main, None, ColumnMapping(text_column="text", id_column="id"))
    path = write_csv(tmp_path / "long.csv", HEADER, [["t-9", "ann1", "b"]])

    report = import_annotations(db, project_id, path, match_on="external_id")

    assert report.answers_created == 1
    items = _items_by_position(db, project_id)
    assert items[1].label_id == _label_ids(db, project_id)["b"]
    assert items[0].label_id is None


def test_import_rejects_file_with_dropped_rows(db: Database, tmp_path: Path) -> None:
    project_id = make_project(db, "gaps", ["a", "b"])
    # The empty text makes the importer skip data row 1.
    main = write_csv(
        tmp_path / "main.csv", ["text", "note"], [["one", "x"], ["", "y"], ["three", "z"]]
    )
    import_file(db, project_id, main, None, ColumnMapping(text_column="text"))
    path = write_csv(tmp_path / "long.csv", HEADER, [[2, "ann1", "a"]])
    with pytest.raises(ValidationError, match="imported 2 of 3 rows.*external_id"):
        import_annotations(db, project_id, path)


def test_import_needs_dataset_choice(db: Database, tmp_path: Path) -> None:
    project_id = make_project(db, "two files", ["a", "b"])
    import_items(db, project_id, write_csv(tmp_path / "x.csv", ["text"], [["one"]]))
    second = import_items(db, project_id, write_csv(tmp_path / "y.csv", ["text"], [["two"]]))
    path = write_csv(tmp_path / "long.csv", HEADER, [[0, "ann1", "b"]])

    with pytest.raises(ValidationError, match="several imported files"):
        import_annotations(db, project_id, path)
    import_annotations(db, project_id, path, dataset_id=second)

    items = _items_by_position(db, project_id)
    assert [item.label_id is not None for item in items] == [False, True]


def test_hs_brexit_import_figures(db: Database) -> None:
    main = dataset_path("hs-brexit", "hs_brexit.csv")
    annotations = dataset_path("hs-brexit", "hs_brexit_annotations_long.csv")
    project_id = make_project(db, "hs-brexit", ["hate", "not_hate"], overlap=6)
    import_items(db, project_id, main)

    report = import_annotations(db, project_id, annotations)
    stats = team_stats(db, project_id)

    assert report.answers_created == 6720
    assert report.users_created == 6
    assert report.items_answered == 1120
    assert report.items_labelled + report.items_tied == 1120
    assert stats.cohen.pairs == 15
    assert stats.cohen.mean == pytest.approx(0.347, abs=5e-4)
    assert stats.cohen.min == pytest.approx(0.199, abs=5e-4)
    assert stats.cohen.max == pytest.approx(0.665, abs=5e-4)
    assert stats.fleiss.kappa == pytest.approx(0.347, abs=5e-4)
    assert stats.fleiss.equal_raters


def test_md_agreement_import_alpha(sqlite_db: Database) -> None:
    # SQLite only, to keep the suite fast; the hs-brexit test covers PostgreSQL.
    db = sqlite_db
    main = dataset_path("md-agreement", "md_agreement.csv")
    annotations = dataset_path("md-agreement", "md_agreement_annotations_long.csv")
    project_id = make_project(db, "md-agreement", ["not_offensive", "offensive"], overlap=5)
    import_items(db, project_id, main)

    report = import_annotations(db, project_id, annotations)
    stats = team_stats(db, project_id)

    # One annotator appears twice on one item in the file; the repeat is reported.
    assert report.rows_read == 53765
    assert report.answers_created == 53764
    assert report.rows_with_errors == 1
    assert report.users_created == 819
    assert len(stats.annotators) == 819
    assert stats.alpha.alpha == pytest.approx(0.359, abs=5e-4)
