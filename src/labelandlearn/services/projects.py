"""Create, update, read and delete projects and their labels, with every rule checked."""

from __future__ import annotations

import logging
import re
import shutil
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from labelandlearn.errors import ConflictError, NotFoundError, ValidationError
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import (
    DEFAULT_MODEL,
    DEFAULT_STRATEGY,
    Answer,
    Item,
    Job,
    Label,
    Project,
    iso_utc,
)

logger = logging.getLogger(__name__)

MIN_LABELS = 2
# Project descriptions show on the project pages and in every project list.
MAX_DESCRIPTION = 10_000
# Unicode's explicit direction embeddings, overrides and isolates.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
MAX_LABELS = 50
# Keys that the labelling screen uses itself; a label may not take them.
RESERVED_KEYS = {" ": "Space skips the item", "?": "? opens the keyboard help"}
DEFAULT_COLORS = [
    "#d62728", "#7f7f7f", "#2ca02c", "#1f77b4", "#ff7f0e",
    "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
]  # fmt: skip
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass
class LabelSpec:
    """A label as a user defines it; ``id`` is set when an existing label is edited."""

    name: str
    key: str | None = None
    color: str | None = None
    id: int | None = None


@dataclass
class ProjectSpec:
    name: str
    labels: list[LabelSpec]
    description: str = ""
    text_column: str = "text"
    id_column: str | None = None
    label_column: str | None = None
    model_name: str = DEFAULT_MODEL
    strategy_name: str = DEFAULT_STRATEGY
    retrain_every: int = 50
    overlap: int = 1
    lease_seconds: int = 1800
    train_on_single_answers: bool = True


def _model_names() -> list[str]:
    from labelandlearn.learning.base import recipe_names

    return recipe_names()


def missing_extra(model_name: str) -> str | None:
    """Return why ``model_name`` cannot train here (a neural network without PyTorch), or None."""
    import importlib.util

    from labelandlearn.learning.base import get_recipe

    if get_recipe(model_name).classifier != "mlp" or importlib.util.find_spec("torch"):
        return None
    from labelandlearn.learning.neural import NN_EXTRA

    return (
        f"is a neural network, which needs PyTorch; run {NN_EXTRA} or choose a linear model"
    )


def _strategy_names() -> list[str]:
    from labelandlearn.learning.strategies import strategy_names

    return strategy_names()


def normalise_labels(specs: list[LabelSpec]) -> list[LabelSpec]:
    """Check label names, keys and colours, fill in missing keys and colours, and return them.

    Raises ValidationError naming the offending label and what to change.
    """
    if not MIN_LABELS <= len(specs) <= MAX_LABELS:
        raise ValidationError(
            f"a project needs {MIN_LABELS} to {MAX_LABELS} labels, got {len(specs)}"
        )
    names: set[str] = set()
    keys: dict[str, str] = {}
    result: list[LabelSpec] = []
    for position, spec in enumerate(specs, start=1):
        name = (spec.name or "").strip()
        if not name:
            raise ValidationError(f"label {position} has an empty name; give every label a name")
        if len(name) > 100:
            raise ValidationError(f"label name {name[:40]!r}... is longer than 100 characters")
        _check_printable(f"label name {name[:40]!r}", name)
        if name.casefold() in names:
            raise ValidationError(f"label name {name!r} is used twice; label names must differ")
        names.add(name.casefold())
        key = spec.key if spec.key not in (None, "") else None
        if key is not None:
            if len(key) != 1 or not key.isprintable():
                raise ValidationError(
                    f"key {key!r} of label {name!r} must be one printable character"
                )
            if key in RESERVED_KEYS:
                raise ValidationError(
                    f"key {key!r} of label {name!r} is taken by the labelling screen "
                    f"({RESERVED_KEYS[key]}); choose another key"
                )
            if key.casefold() in keys:
                raise ValidationError(
                    f"key {key!r} of label {name!r} is already the key of label "
                    f"{keys[key.casefold()]!r}; every label needs its own key"
                )
            keys[key.casefold()] = name
        color = spec.color or None
        if color is not None and not _COLOR.match(color):
            raise ValidationError(f"colour {color!r} of label {name!r} is not of the form #rrggbb")
        result.append(LabelSpec(name=name, key=key, color=color, id=spec.id))

    free_keys = (str(digit) for digit in [*range(1, 10), 0] if str(digit) not in keys)
    free_letters = (c for c in "abcdefghijklmnopqrstuvwxyz" if c not in keys)
    for index, spec in enumerate(result):
        if spec.key is None:
            spec.key = next(free_keys, None) or next(free_letters)
            keys[spec.key] = spec.name
        if spec.color is None:
            spec.color = DEFAULT_COLORS[index % len(DEFAULT_COLORS)]
    return result


def _check_printable(field: str, value: str) -> None:
    """Raise ValidationError when ``value`` contains a control character (NUL, an escape code)
    or a direction override, because either makes a name render unlike the text it contains."""
    bad = next((c for c in value if unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS), None)
    if bad is not None:
        raise ValidationError(f"{field} contains the control character U+{ord(bad):04X}; remove it")


def _check_settings(spec: ProjectSpec) -> None:
    name = spec.name.strip()
    if not name:
        raise ValidationError("project name is empty; give the project a name")
    if len(name) > 200:
        raise ValidationError("project name is longer than 200 characters")
    _check_printable(f"project name {name[:40]!r}", name)
    if len(spec.description) > MAX_DESCRIPTION:
        raise ValidationError(
            f"description has {len(spec.description)} characters; keep it under {MAX_DESCRIPTION}"
        )
    if not spec.text_column.strip():
        raise ValidationError("text column is empty; name the column that holds the text")
    if spec.model_name not in _model_names():
        raise ValidationError(
            f"unknown model {spec.model_name!r}; choose one of: {', '.join(_model_names())}"
        )
    missing = missing_extra(spec.model_name)
    if missing:
        raise ValidationError(f"model {spec.model_name!r} {missing}")
    if spec.strategy_name not in _strategy_names():
        raise ValidationError(
            f"unknown query strategy {spec.strategy_name!r}; "
            f"choose one of: {', '.join(_strategy_names())}"
        )
    if not 1 <= spec.overlap <= 50:
        raise ValidationError(f"overlap must be between 1 and 50 annotators, got {spec.overlap}")
    if not 10 <= spec.lease_seconds <= 7 * 24 * 3600:
        raise ValidationError(
            f"the lease time must be between 10 seconds and 7 days (604800 seconds), got "
            f"{spec.lease_seconds} seconds"
        )
    if not 1 <= spec.retrain_every <= 100_000:
        raise ValidationError(
            f"the retrain interval must be between 1 and 100000 answers, got {spec.retrain_every}"
        )


def get_project(session: Session, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFoundError(f"project {project_id} not found")
    return project


def find_project(session: Session, name_or_id: str) -> Project:
    """Return the project whose id or exact name is ``name_or_id``."""
    if name_or_id.isdigit():
        project = session.get(Project, int(name_or_id))
        if project is not None:
            return project
    project = session.scalar(select(Project).where(Project.name == name_or_id))
    if project is None:
        raise NotFoundError(
            f"project {name_or_id!r} not found; 'labelandlearn projects list' shows them"
        )
    return project


def _ensure_unique_name(session: Session, name: str, project_id: int | None = None) -> None:
    query = select(Project.id).where(Project.name == name)
    if project_id is not None:
        query = query.where(Project.id != project_id)
    if session.scalar(query) is not None:
        raise ConflictError(f"a project named {name!r} already exists; choose another name")


def create_project(db: Database, spec: ProjectSpec) -> int:
    _check_settings(spec)
    labels = normalise_labels(spec.labels)
    with db.session() as session:
        _ensure_unique_name(session, spec.name.strip())
        project = Project(
            name=spec.name.strip(),
            description=spec.description.strip(),
            text_column=spec.text_column.strip(),
            id_column=(spec.id_column or "").strip() or None,
            label_column=(spec.label_column or "").strip() or None,
            model_name=spec.model_name,
            strategy_name=spec.strategy_name,
            retrain_every=spec.retrain_every,
            overlap=spec.overlap,
            lease_seconds=spec.lease_seconds,
            train_on_single_answers=spec.train_on_single_answers,
            labels=[
                Label(name=label.name, key=label.key, color=label.color, position=index)
                for index, label in enumerate(labels)
            ],
        )
        session.add(project)
        session.flush()
        logger.info("project %s created with %d labels", project.id, len(labels))
        return project.id


def update_project(db: Database, project_id: int, spec: ProjectSpec) -> bool:
    """Apply ``spec``: labels with an id are edited, new ones added, missing ones deleted.

    A label that has answers cannot be deleted, so no answer is lost by an edit. Return
    whether the query strategy changed, in which case the caller rescores the unlabelled
    items (a score job), so that the queue follows the new strategy before the next retrain.
    """
    _check_settings(spec)
    labels = normalise_labels(spec.labels)
    with db.session() as session:
        project = get_project(session, project_id)
        _ensure_unique_name(session, spec.name.strip(), project_id)
        project.name = spec.name.strip()
        project.description = spec.description.strip()
        project.text_column = spec.text_column.strip()
        project.id_column = (spec.id_column or "").strip() or None
        project.label_column = (spec.label_column or "").strip() or None
        project.model_name = spec.model_name
        strategy_changed = project.strategy_name != spec.strategy_name
        project.strategy_name = spec.strategy_name
        project.retrain_every = spec.retrain_every
        overlap_changed = project.overlap != spec.overlap
        project.overlap = spec.overlap
        project.lease_seconds = spec.lease_seconds
        project.train_on_single_answers = spec.train_on_single_answers
        if overlap_changed:
            session.execute(
                update(Item)
                .where(
                    Item.project_id == project_id,
                    Item.reviewed.is_(False),
                    ~exists().where(Answer.item_id == Item.id, Answer.source == "import"),
                )
                .values(done=Item.n_answers >= spec.overlap)
            )

        existing = {label.id: label for label in project.labels}
        kept_ids = {label.id for label in labels if label.id is not None}
        unknown = kept_ids - set(existing)
        if unknown:
            raise NotFoundError(f"label ids {sorted(unknown)} are not labels of this project")
        for label_id in set(existing) - kept_ids:
            used = session.scalar(
                select(func.count()).select_from(Answer).where(Answer.label_id == label_id)
            )
            if used:
                raise ConflictError(
                    f"label {existing[label_id].name!r} has {used} answers and cannot be "
                    "deleted; rename it instead"
                )
            session.delete(existing[label_id])
        session.flush()
        # Park edited labels on temporary keys and names so that swapping two keys or
        # names does not trip the unique constraints half-way.
        for label in labels:
            if label.id is not None:
                row = existing[label.id]
                row.key = f"~{label.id}"
                row.name = f"~{label.id}~{row.name}"
        session.flush()
        for position, label in enumerate(labels):
            if label.id is None:
                session.add(
                    Label(
                        project_id=project.id,
                        name=label.name,
                        key=label.key,
                        color=label.color,
                        position=position,
                    )
                )
            else:
                row = existing[label.id]
                row.name, row.key, row.color, row.position = (
                    label.name,
                    label.key or row.key,
                    label.color or row.color,
                    position,
                )
        logger.info("project %s updated", project_id)
    return strategy_changed


def delete_project(db: Database, project_id: int, data_dir: Path | None = None) -> None:
    """Delete the project with its rows; with ``data_dir``, also its uploads and exports.

    Files go after the commit, so a failed delete keeps them. SQLite can give a new project
    the id of a deleted one, and the uploads folder is named by that id, so leaving it would
    hand the old uploads to the new project.
    """
    with db.session() as session:
        project = get_project(session, project_id)
        exports = session.scalars(
            select(Job.result).where(Job.project_id == project_id, Job.kind == "export")
        ).all()
        project.current_model_id = None
        session.flush()
        session.delete(project)
    if data_dir is not None:
        _delete_files(Path(data_dir), project_id, exports)
    logger.info("project %s deleted", project_id)


def _delete_files(data_dir: Path, project_id: int, exports: Sequence[Any]) -> None:
    shutil.rmtree(data_dir / "uploads" / str(project_id), ignore_errors=True)
    export_folder = (data_dir / "exports").resolve()
    for result in exports:
        path = Path(str((result or {}).get("path", ""))).resolve()
        # Only files inside the data folder's exports: a job row names the file it wrote.
        if path.parent == export_folder:
            path.unlink(missing_ok=True)


def project_summary(session: Session, project: Project) -> dict[str, Any]:
    """Return the project's settings, labels and item counts as plain data."""
    total = session.scalar(
        select(func.count()).select_from(Item).where(Item.project_id == project.id)
    )
    labelled = session.scalar(
        select(func.count())
        .select_from(Item)
        .where(Item.project_id == project.id, Item.label_id.is_not(None))
    )
    return {
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "text_column": project.text_column,
        "id_column": project.id_column,
        "label_column": project.label_column,
        "model_name": project.model_name,
        "strategy_name": project.strategy_name,
        "retrain_every": project.retrain_every,
        "overlap": project.overlap,
        "lease_seconds": project.lease_seconds,
        "train_on_single_answers": project.train_on_single_answers,
        "current_model_id": project.current_model_id,
        "labels": [
            {"id": label.id, "name": label.name, "key": label.key, "color": label.color}
            for label in project.labels
        ],
        "items_total": total or 0,
        "items_labelled": labelled or 0,
        "created_at": iso_utc(project.created_at) if project.created_at else None,
    }
