"""``labelandlearn projects list|create|edit|delete``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table
from sqlalchemy import select

from labelandlearn.cli.common import cli_state, print_json, progress_bar, stdout
from labelandlearn.errors import ValidationError
from labelandlearn.services import projects as service
from labelandlearn.storage.models import DEFAULT_MODEL, DEFAULT_STRATEGY, Project

projects_app = typer.Typer(help="List, create, edit and delete projects.", no_args_is_help=True)

LABEL_HELP = (
    "A label as NAME[:KEY[:COLOUR]], for example positive:p:#2ca02c; repeat the option for "
    "each label (2 to 50). KEY is one character; COLOUR is #rrggbb."
)


def parse_label(raw: str) -> service.LabelSpec:
    """Parse ``NAME[:KEY[:COLOUR]]``; raise ValidationError on an empty name or extra parts."""
    parts = raw.split(":")
    if len(parts) > 3:
        raise ValidationError(
            f"label {raw!r} has more than three ':'-separated parts; write NAME[:KEY[:COLOUR]]"
        )
    name = parts[0].strip()
    if not name:
        raise ValidationError(f"label {raw!r} has an empty name; write NAME[:KEY[:COLOUR]]")
    key = parts[1] if len(parts) > 1 and parts[1] != "" else None
    color = parts[2].strip() if len(parts) > 2 and parts[2].strip() else None
    return service.LabelSpec(name=name, key=key, color=color)


def register(app: typer.Typer) -> None:
    app.add_typer(projects_app, name="projects")


@projects_app.command("list")
def list_projects(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the projects with their item counts."""
    db = cli_state(ctx).db()
    with db.session() as session:
        summaries = [
            service.project_summary(session, project)
            for project in session.scalars(select(Project).order_by(Project.name))
        ]
    if as_json:
        print_json(summaries)
        return
    if not summaries:
        stdout.print("No projects yet; create one with 'labelandlearn projects create'.")
        return
    rows = [
        (
            str(summary["id"]),
            summary["name"],
            f"{summary['items_labelled']:,} of {summary['items_total']:,}",
            summary["model_name"],
            summary["strategy_name"],
            ", ".join(label["name"] for label in summary["labels"]),
        )
        for summary in summaries
    ]
    # Names are typed back into commands, so no cell ends in an ellipsis. Ids, counts, model
    # and strategy names keep their width; a narrow terminal wraps the name and the labels.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    headers = ("id", "name", "labelled", "model", "strategy", "labels")
    for position, header in enumerate(headers):
        if header in ("name", "labels"):
            table.add_column(header, overflow="fold", ratio=1)
        else:
            width = max(len(header), *(len(row[position]) for row in rows))
            table.add_column(header, no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(*row)
    stdout.print(table)


@projects_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Project name (unique).")],
    label: Annotated[list[str], typer.Option("--label", help=LABEL_HELP)],
    description: Annotated[str, typer.Option(help="Free text shown on the project page.")] = "",
    text_column: Annotated[str, typer.Option(help="Column of imported files with the text.")] = (
        "text"
    ),
    id_column: Annotated[
        str | None, typer.Option(help="Column with an external item id (optional).")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option(help="Column with an existing label (optional).")
    ] = None,
    model: Annotated[
        str, typer.Option(help="Model recipe name; an unknown name lists the known ones.")
    ] = DEFAULT_MODEL,
    strategy: Annotated[
        str, typer.Option(help="Query strategy: which item to ask next (margin, random, ...).")
    ] = DEFAULT_STRATEGY,
    retrain_every: Annotated[
        int, typer.Option(help="Retrain fully in the background after this many answers.")
    ] = 50,
) -> None:
    """Create a project and print its id."""
    spec = service.ProjectSpec(
        name=name,
        labels=[parse_label(raw) for raw in label],
        description=description,
        text_column=text_column,
        id_column=id_column,
        label_column=label_column,
        model_name=model,
        strategy_name=strategy,
        retrain_every=retrain_every,
    )
    project_id = service.create_project(cli_state(ctx).db(), spec)
    stdout.print(f"created project {project_id} {name!r}", markup=False)


@projects_app.command("edit")
def edit(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    name: Annotated[str | None, typer.Option(help="New project name.")] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            help=LABEL_HELP + " Replaces the label list: labels are matched by name, so a "
            "kept label keeps its answers; a label left out is deleted (refused if it has "
            "answers).",
        ),
    ] = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    text_column: Annotated[str | None, typer.Option(help="Column with the text.")] = None,
    id_column: Annotated[
        str | None, typer.Option(help="Column with the external id; '' clears it.")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option(help="Column with an existing label; '' clears it.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model recipe name.")] = None,
    strategy: Annotated[str | None, typer.Option(help="Query strategy name.")] = None,
    retrain_every: Annotated[
        int | None, typer.Option(help="Retrain fully after this many answers.")
    ] = None,
) -> None:
    """Change a project's settings or labels; options not given stay as they are."""
    db = cli_state(ctx).db()
    with db.session() as session:
        current = service.find_project(session, project)
        project_id = current.id
        existing = {row.name.casefold(): row for row in current.labels}
        if label:
            labels = []
            for raw in label:
                parsed = parse_label(raw)
                row = existing.get(parsed.name.casefold())
                if row is not None:
                    parsed.id = row.id
                    parsed.key = parsed.key or row.key
                    parsed.color = parsed.color or row.color
                labels.append(parsed)
        else:
            labels = [
                service.LabelSpec(name=row.name, key=row.key, color=row.color, id=row.id)
                for row in current.labels
            ]
        spec = service.ProjectSpec(
            name=name if name is not None else current.name,
            labels=labels,
            description=description if description is not None else current.description,
            text_column=text_column if text_column is not None else current.text_column,
            id_column=id_column if id_column is not None else current.id_column,
            label_column=label_column if label_column is not None else current.label_column,
            model_name=model if model is not None else current.model_name,
            strategy_name=strategy if strategy is not None else current.strategy_name,
            retrain_every=retrain_every if retrain_every is not None else current.retrain_every,
        )
    strategy_changed = service.update_project(db, project_id, spec)
    stdout.print(f"updated project {project_id} {spec.name!r}", markup=False)
    if strategy_changed:
        from labelandlearn.learning.scoring import score_project

        with progress_bar(f"Rescoring with {spec.strategy_name}") as update:
            scored = score_project(db, project_id, progress=update, wait_for_vectors=True)
        if scored:
            message = f"rescored {scored} unlabelled items with {spec.strategy_name}"
            stdout.print(message, markup=False)
        else:
            stdout.print(
                "nothing rescored yet: the queue follows the new strategy once the project "
                "has a trained model, unlabelled items and, for a model with embeddings, "
                f"their vectors (labelandlearn embed {project_id})",
                markup=False,
            )


@projects_app.command("delete")
def delete(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a project with its items, answers and models."""
    db = cli_state(ctx).db()
    with db.session() as session:
        found = service.find_project(session, project)
        project_id, project_name = found.id, found.name
        summary = service.project_summary(session, found)
    if not yes:
        items, labelled = summary["items_total"], summary["items_labelled"]
        typer.confirm(
            f"Delete project {project_id} {project_name!r} with {items} "
            f"item{'' if items == 1 else 's'}, {labelled} of them labelled?",
            abort=True,
        )
    service.delete_project(db, project_id, cli_state(ctx).settings.data_dir)
    stdout.print(f"deleted project {project_id} {project_name!r}", markup=False)
