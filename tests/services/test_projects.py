from __future__ import annotations

import importlib.util

import pytest

from labelandlearn.errors import ConflictError, NotFoundError, ValidationError
from labelandlearn.services.projects import (
    LabelSpec,
    ProjectSpec,
    create_project,
    delete_project,
    get_project,
    normalise_labels,
    update_project,
)
from labelandlearn.storage.db import Database
from labelandlearn.web.pages.projects import model_choices


def spec(
    name: str = "tweets", labels: list[LabelSpec] | None = None, **settings: object
) -> ProjectSpec:
    labels = labels or [LabelSpec("useless"), LabelSpec("useful")]
    return ProjectSpec(name=name, labels=labels, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([LabelSpec("only")], "2 to 50 labels"),
        ([LabelSpec(f"l{i}") for i in range(51)], "2 to 50 labels"),
        ([LabelSpec(""), LabelSpec("b")], "empty name"),
        ([LabelSpec("  "), LabelSpec("b")], "empty name"),
        ([LabelSpec("a"), LabelSpec("A")], "used twice"),
        ([LabelSpec("a", key="1"), LabelSpec("b", key="1")], "already the key"),
        ([LabelSpec("a", key=" "), LabelSpec("b")], "taken by the labelling screen"),
        ([LabelSpec("a", key="ab"), LabelSpec("b")], "one printable character"),
        ([LabelSpec("a", color="red"), LabelSpec("b")], "#rrggbb"),
        ([LabelSpec("a\x00b"), LabelSpec("b")], "control character U\\+0000"),
        ([LabelSpec("evil\u202etxt"), LabelSpec("b")], "control character U\\+202E"),
    ],
)
def test_labels_rejected(labels: list[LabelSpec], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        normalise_labels(labels)


def test_labels_get_free_keys_and_colours() -> None:
    labels = normalise_labels([LabelSpec("a", key="1"), LabelSpec("b"), LabelSpec("c")])
    assert [label.key for label in labels] == ["1", "2", "3"]
    assert all(label.color and label.color.startswith("#") for label in labels)


def test_create_rejects_unknown_model_and_strategy(db: Database) -> None:
    with pytest.raises(ValidationError, match="unknown model 'nope'"):
        create_project(db, spec(model_name="nope"))
    with pytest.raises(ValidationError, match="unknown query strategy 'nope'"):
        create_project(db, spec(strategy_name="nope"))


def test_neural_model_without_torch_names_extra(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "torch" else real_find_spec(name, *args),
    )
    with pytest.raises(ValidationError, match=r"needs PyTorch; run pip install 'labelandlearn\[nn"):
        create_project(db, spec(model_name="embedding-mlp"))
    choices = dict(model_choices())
    assert "Not available here" in choices["tfidf-embedding-mlp"]
    assert "Not available here" not in choices["tfidf-linear"]
    assert create_project(db, spec(model_name="tfidf-linear"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"name": "bad\x00name"}, "control character U\\+0000"),
        ({"name": "tweets", "description": "x" * 10_001}, "description has 10001 characters"),
    ],
)
def test_create_rejects_bad_text(db: Database, settings: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        create_project(db, spec(**settings))


def test_create_rejects_duplicate_name(db: Database) -> None:
    create_project(db, spec())
    with pytest.raises(ConflictError, match="already exists"):
        create_project(db, spec())


def test_update_swaps_label_keys(db: Database) -> None:
    project_id = create_project(db, spec(labels=[LabelSpec("a", key="1"), LabelSpec("b", key="2")]))
    with db.session() as session:
        ids = [label.id for label in get_project(session, project_id).labels]
    swapped = [LabelSpec("a", key="2", id=ids[0]), LabelSpec("b", key="1", id=ids[1])]
    update_project(db, project_id, spec(labels=swapped, overlap=2))
    with db.session() as session:
        project = get_project(session, project_id)
        assert [(label.name, label.key) for label in project.labels] == [("a", "2"), ("b", "1")]
        assert project.overlap == 2


def test_delete_then_404(db: Database) -> None:
    project_id = create_project(db, spec())
    delete_project(db, project_id)
    with pytest.raises(NotFoundError, match=f"project {project_id} not found"):
        with db.session() as session:
            get_project(session, project_id)
