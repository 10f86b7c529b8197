"""``labelandlearn import``, ``train``, ``export``, ``export-model`` and ``predict``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from labelandlearn.cli.common import (
    cli_state,
    count,
    fail,
    print_json,
    progress_bar,
    stderr,
    stdout,
)
from labelandlearn.errors import NotFoundError, ValidationError
from labelandlearn.services.projects import find_project
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import ModelVersion

if TYPE_CHECKING:
    from labelandlearn.ingest.importer import ImportReport

ROW_ERRORS_SHOWN = 20

ProjectArgument = Annotated[str, typer.Argument(help="Project id or name.")]
InputFile = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="File to read.")
]


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)
    app.command("train")(train)
    app.command("embed")(embed)
    app.command("export")(export)
    app.command("export-model")(export_model)
    app.command("predict")(predict)


def _project_id(ctx: typer.Context, project: str) -> int:
    with cli_state(ctx).db().session() as session:
        return find_project(session, project).id


def parse_label_map(raw: str | None) -> dict[str, str] | None:
    """Parse ``-1=negative,0=useless,1=positive`` into a dict of file value to label name."""
    if raw is None or not raw.strip():
        return None
    result: dict[str, str] = {}
    for part in raw.split(","):
        value, separator, name = part.partition("=")
        if not separator or not value.strip() or not name.strip():
            raise ValidationError(
                f"label map entry {part!r} is not VALUE=LABEL; write for example "
                "-1=negative,0=useless,1=positive"
            )
        if value.strip() in result:
            raise ValidationError(f"label map names value {value.strip()!r} twice")
        result[value.strip()] = name.strip()
    return result


def import_command(
    ctx: typer.Context,
    project: ProjectArgument,
    file: InputFile,
    text_column: Annotated[
        str | None, typer.Option(help="Column with the text. Default: the project's setting.")
    ] = None,
    id_column: Annotated[
        str | None, typer.Option(help="Column with an external id. Default: the project's.")
    ] = None,
    label_column: Annotated[
        str | None,
        typer.Option(help="Column with existing labels. Default: the project's setting."),
    ] = None,
    label_map: Annotated[
        str | None,
        typer.Option(
            help="Map label column values to label names, as VALUE=LABEL,... for example "
            "-1=negative,0=useless,1=positive. Values that are label names need no entry."
        ),
    ] = None,
    duplicates: Annotated[
        str,
        typer.Option(help="Rows whose exact text is already in the project: skip or keep."),
    ] = "skip",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Import a CSV, TSV, JSON, JSON Lines, Parquet or Excel file into a project.

    Rows with problems are skipped and listed with their line numbers. A file that cannot be
    imported at all (empty, binary, missing text column) imports nothing and exits with 2.
    """
    from labelandlearn.ingest.importer import import_file
    from labelandlearn.ingest.mapping import ColumnMapping

    db = cli_state(ctx).db()
    with db.session() as session:
        found = find_project(session, project)
        project_id = found.id
        mapping = ColumnMapping(
            text_column=text_column or found.text_column,
            id_column=_column_or_none(id_column, found.id_column),
            label_column=_column_or_none(label_column, found.label_column),
            label_map=parse_label_map(label_map),
        )
    if duplicates not in ("skip", "keep"):
        fail(f"--duplicates must be skip or keep, got {duplicates!r}", code=2)
    with progress_bar(f"Importing {file.name}") as update:
        report = import_file(
            db,
            project_id,
            file,
            file.name,
            mapping,
            duplicates=duplicates,  # type: ignore[arg-type]
            progress=update,
        )
    scored = 0
    if report.rows_imported > report.rows_labelled:
        # The new items join the queue ranked by the project's strategy and current model.
        from labelandlearn.learning.scoring import score_project

        with progress_bar("Scoring the unlabelled items") as update:
            scored = score_project(db, project_id, progress=update, wait_for_vectors=True)
    if as_json:
        print_json({**report.as_dict(), "items_scored": scored})
    else:
        print_import_report(report)
        if scored:
            stdout.print(f"scored {scored} unlabelled items for the queue", markup=False)


def _column_or_none(option: str | None, default: str | None) -> str | None:
    # An explicit empty option clears the project's column for this import.
    if option is None:
        return default
    return option.strip() or None


def print_import_report(report: ImportReport) -> None:
    """Print the summary of an import and its first row errors."""
    rate = report.rows_read / report.seconds if report.seconds else 0.0
    stdout.print(
        f"{report.filename}: {report.file_format}, encoding {report.encoding or 'n/a'}; "
        f"read {count(report.rows_read, 'row')} in {report.seconds:.1f} s "
        f"({rate:,.0f} rows/s)",
        markup=False,
    )
    stdout.print(
        f"imported {count(report.rows_imported, 'item')} ({report.rows_labelled:,} with a "
        f"label); {count(report.rows_with_errors, 'row')} with errors; duplicates skipped "
        f"{report.duplicates_skipped:,}, kept {report.duplicates_kept:,}",
        markup=False,
    )
    for error in report.row_errors[:ROW_ERRORS_SHOWN]:
        stdout.print(f"  line {error['line']}: {error['reason']}", markup=False)
    hidden = report.rows_with_errors - min(len(report.row_errors), ROW_ERRORS_SHOWN)
    if hidden > 0:
        stdout.print(f"  ... and {count(hidden, 'more row')} with errors (--json lists up to 1000)")


def train(
    ctx: typer.Context,
    project: ProjectArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Train the project's model on all labelled items and print cross-validated metrics.

    The unlabelled items are then rescored, so the next items asked follow the new model.
    """
    db = cli_state(ctx).db()
    project_id = _project_id(ctx, project)
    version_id = train_and_score(db, project_id, "Training")
    summary = model_version_summary(db, version_id)
    if as_json:
        print_json(summary)
    else:
        print_metrics(summary)
        _hint_pending_embeddings(summary, project)


def _hint_pending_embeddings(summary: dict[str, Any], project: str) -> None:
    note = (summary.get("metrics") or {}).get("embeddings")
    if isinstance(note, dict) and note.get("status") == "pending":
        stdout.print(
            f"this version used TF-IDF alone: {note.get('missing')} texts have no "
            f"{note.get('model')} embedding yet; run `labelandlearn embed {project}` (or start "
            "the server, which embeds in the background) and train again",
            markup=False,
        )


def embed(ctx: typer.Context, project: ProjectArgument) -> None:
    """Compute the sentence embeddings that the project's model uses, for every item.

    Vectors go to the embedding cache in the data folder, so each text is embedded once; the
    next training uses them. e5-small embeds about 20 texts per second on 2 cores.
    """
    from labelandlearn.learning.embeddings import count_missing, precompute_embeddings
    from labelandlearn.learning.project_embeddings import project_embedding_spec, project_texts

    db = cli_state(ctx).db()
    project_id = _project_id(ctx, project)
    spec = project_embedding_spec(db, project_id)
    if spec is None:
        stdout.print(f"project {project}'s model uses no embeddings; nothing to do", markup=False)
        return
    texts = project_texts(db, project_id)
    missing = count_missing(texts, spec.backend, spec.model, spec.folder)
    if missing:
        with progress_bar(f"Embedding {missing} texts with {spec.model}") as update:
            precompute_embeddings(
                texts, spec.backend, spec.model, cache_folder=spec.folder, progress=update
            )
    stdout.print(f"{len(texts)} texts have a {spec.model} embedding ({missing} new)", markup=False)


def train_and_score(db: Database, project_id: int, description: str) -> int:
    """Train the project's model, rescore its unlabelled items, and return the version id.

    These are the steps of the background ``train`` job, run here in the foreground.
    """
    from labelandlearn.learning.scoring import score_project
    from labelandlearn.learning.training import train_project_model

    with progress_bar(description) as update:
        version_id, model = train_project_model(
            db, project_id, lambda fraction, message: update(0.8 * fraction, message)
        )
        score_project(
            db,
            project_id,
            model=model,
            progress=lambda fraction, message: update(0.8 + 0.2 * fraction, message),
        )
    return version_id


def model_version_summary(db: Database, version_id: int) -> dict[str, Any]:
    """Return a stored model version's number, model, label count, timing and metrics."""
    with db.session() as session:
        version = session.get(ModelVersion, version_id)
        if version is None:
            raise NotFoundError(f"model version {version_id} not found")
        return {
            "id": version.id,
            "version": version.version,
            "model_name": version.model_name,
            "n_labels": version.n_labels,
            "class_counts": version.class_counts,
            "training_seconds": version.training_seconds,
            "auto_choice": ((version.params or {}).get("auto") or {}).get("chosen"),
            "metrics": version.metrics or {},
        }


def print_metrics(summary: dict[str, Any]) -> None:
    """Print a model version's cross-validated metrics as a short report and a table."""
    metrics = summary.get("metrics") or {}
    model = summary["model_name"]
    if summary.get("auto_choice"):
        model = f"{model}, chose {summary['auto_choice']}"
    head = [f"model version {summary['version']} ({model})"]
    if summary.get("n_labels") is not None:
        head.append(f"{summary['n_labels']} labels")
    if summary.get("training_seconds") is not None:
        head.append(f"trained in {summary['training_seconds']:.2f} s")
    stdout.print(", ".join(head), markup=False)
    if not metrics:
        stdout.print("no cross-validated metrics (too few labels per class for the folds)")
        return
    folds = metrics.get("n_splits")
    stdout.print(
        f"cross-validated{f' ({folds} folds)' if folds else ''}: "
        f"accuracy {_number(metrics.get('accuracy'))}, macro-F1 {_number(metrics.get('macro_f1'))}",
        markup=False,
    )
    per_class = metrics.get("per_class") or {}
    if per_class:
        table = Table("label", "precision", "recall", "F1", "support")
        for name, values in per_class.items():
            table.add_row(
                str(name),
                _number(values.get("precision")),
                _number(values.get("recall")),
                _number(values.get("f1")),
                str(values.get("support", "")),
            )
        stdout.print(table)


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "n/a"


def export(
    ctx: typer.Context,
    project: ProjectArgument,
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    format_: Annotated[
        str, typer.Option("--format", help="csv or jsonl. Default: from the output suffix.")
    ] = "",
) -> None:
    """Export the labelled items with their original columns, label, labeller and time."""
    from labelandlearn.export import export_labelled

    chosen = format_ or _format_from_suffix(output)
    db = cli_state(ctx).db()
    project_id = _project_id(ctx, project)
    with progress_bar(f"Exporting to {output.name}") as update:
        count = export_labelled(db, project_id, output, chosen, progress=update)
    stdout.print(f"wrote {count} labelled items to {output}", markup=False)


def _format_from_suffix(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("csv", "jsonl"):
        return suffix
    raise ValidationError(f"cannot tell the format of {path.name!r}; pass --format csv or jsonl")


def export_model(
    ctx: typer.Context,
    project: ProjectArgument,
    output: Annotated[Path, typer.Option("--output", "-o", help="Model file to write.")],
) -> None:
    """Write the project's current model as one file that 'labelandlearn predict' loads."""
    db = cli_state(ctx).db()
    with db.session() as session:
        found = find_project(session, project)
        if found.current_model_id is None:
            raise NotFoundError(
                f"project {found.name!r} has no trained model yet; run 'labelandlearn train "
                f"{found.id}' first"
            )
        version = session.get(ModelVersion, found.current_model_id)
        assert version is not None  # the foreign key keeps current_model_id valid
        number, weights = version.version, version.weights
    # The stored weights are the model file format itself (TextModel.to_bytes).
    output.write_bytes(weights)
    stdout.print(f"wrote model version {number} to {output}", markup=False)


def predict(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Argument(help="A model file from export-model, or a project id or name.")
    ],
    input_file: InputFile,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="File to write: JSON Lines for .jsonl, CSV otherwise."),
    ],
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", help="Write only rows predicted as this label (repeatable)."),
    ] = None,
    text_column: Annotated[str, typer.Option(help="Column of INPUT with the text.")] = "text",
    batch_size: Annotated[int, typer.Option(min=1, help="Rows predicted at a time.")] = 2000,
) -> None:
    """Predict a label and class probabilities for every row of a CSV or JSON Lines file."""
    from labelandlearn.learning.predict import predict_file, resolve_model

    state = cli_state(ctx)
    # A model file needs no database, so none is created for it.
    db = None if Path(model).is_file() else state.db()
    loaded = resolve_model(db, model)
    if getattr(loaded.featurizer, "use_embeddings_", False):
        # NOTE: texts without a cached vector are embedded here, and their vectors are cached
        # in the data folder, so a large file of new texts is slow and grows that cache.
        stdout.print(
            "this model embeds each new text with e5, about 20 texts per second on 2 cores; "
            "for fast filtering of large files use a model without embeddings (tfidf-linear)",
            markup=False,
        )
    with progress_bar(f"Predicting {input_file.name}") as update:
        stats = predict_file(
            loaded,
            input_file,
            output,
            text_column=text_column,
            keep=set(keep) if keep else None,
            batch_size=batch_size,
            progress=update,
        )
    counts = ", ".join(f"{label} {count}" for label, count in stats.label_counts.items())
    stdout.print(
        f"predicted {stats.rows_read} rows in {stats.seconds:.1f} s "
        f"({stats.rows_per_second:,.0f} rows/s): {counts}; wrote {stats.rows_written} rows "
        f"to {output}",
        markup=False,
    )
    if stats.empty_texts:
        stderr.print(
            f"warning: {stats.empty_texts} rows have an empty text in column {text_column!r}; "
            "their predictions come from no words at all",
            markup=False,
        )
