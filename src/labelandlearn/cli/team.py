"""``labelandlearn import-annotations`` and ``labelandlearn team``: many annotators per item."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from labelandlearn.cli.common import cli_state, fail, print_json, stdout
from labelandlearn.cli.data import InputFile, ProjectArgument, parse_label_map
from labelandlearn.services.projects import find_project


def register(app: typer.Typer) -> None:
    app.command("import-annotations")(import_annotations_command)
    app.command("team")(team_command)


def import_annotations_command(
    ctx: typer.Context,
    project: ProjectArgument,
    file: InputFile,
    match_on: Annotated[
        str,
        typer.Option(
            help="How row_id finds the item: row (0-based data row of the file imported "
            "first) or external_id (the item's id column)."
        ),
    ] = "row",
    label_map: Annotated[
        str | None,
        typer.Option(help="Map label values to label names, as VALUE=LABEL,..."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Import answers of many annotators in long format (row_id, annotator_id, label).

    Each annotator becomes a user without a password; each item's training label becomes
    the majority of its answers, and ties wait for review. Nothing is written when the file
    cannot be imported.
    """
    from labelandlearn.team.annotations import import_annotations

    if match_on not in ("row", "external_id"):
        fail(f"--match-on must be row or external_id, got {match_on!r}", code=2)
    db = cli_state(ctx).db()
    with db.session() as session:
        project_id = find_project(session, project).id
    report = import_annotations(
        db,
        project_id,
        Path(file),
        match_on=match_on,  # type: ignore[arg-type]
        label_map=parse_label_map(label_map),
    )
    if as_json:
        print_json(dataclasses.asdict(report))
        return
    stdout.print(
        f"{report.answers_created} answers by {report.annotators} annotators on "
        f"{report.items_answered} items; {report.items_labelled} items labelled, "
        f"{report.items_tied} tied (waiting for review); {report.rows_with_errors} rows "
        "with errors",
        markup=False,
    )
    for error in report.row_errors:
        stdout.print(f"  line {error['line']}: {error['reason']}", markup=False)


def team_command(
    ctx: typer.Context,
    project: ProjectArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print every figure as JSON.")] = False,
) -> None:
    """Print the agreement between annotators: Cohen's and Fleiss' kappa, Krippendorff's alpha."""
    from labelandlearn.team.stats import team_stats

    db = cli_state(ctx).db()
    with db.session() as session:
        project_id = find_project(session, project).id
    stats = team_stats(db, project_id).as_dict()
    if as_json:
        print_json(stats)
        return
    cohen = stats["cohen_kappa"]
    stdout.print(
        f"items with answers: {stats['items_with_answers']}\n"
        f"mean pairwise Cohen's kappa: {_figure(cohen['mean'])} "
        f"(min {_figure(cohen['min'])}, max {_figure(cohen['max'])}, {cohen['pairs']} pairs)\n"
        f"Fleiss' kappa: {_figure(stats['fleiss_kappa']['kappa'])}\n"
        f"Krippendorff's alpha: {_figure(stats['krippendorff_alpha']['alpha'])}",
        markup=False,
    )


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
