"""Flask-WTF forms of the pages; the services check the product's rules, the forms the shapes."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    ColorField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    IntegerField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from labelandlearn.services.projects import DEFAULT_COLORS, MAX_LABELS, LabelSpec, ProjectSpec
from labelandlearn.storage.models import DEFAULT_MODEL, DEFAULT_STRATEGY


class LabelRowForm(Form):
    """One label row; a plain ``Form`` because the enclosing FlaskForm carries the CSRF token."""

    id = HiddenField()
    name = StringField("Name", validators=[Optional(), Length(max=100)])
    key = StringField("Key", validators=[Optional(), Length(max=1)])
    color = ColorField("Colour", validators=[Optional()])


class ProjectForm(FlaskForm):
    name = StringField("Project name", validators=[DataRequired(), Length(max=200)])
    description = TextAreaField("Description", validators=[Optional()])
    labels = FieldList(FormField(LabelRowForm), min_entries=2, max_entries=MAX_LABELS)
    text_column = StringField(
        "Text column",
        default="text",
        validators=[DataRequired(), Length(max=200)],
        description="The column of your files that holds the text to label.",
    )
    id_column = StringField(
        "ID column (optional)",
        validators=[Optional(), Length(max=200)],
        description="A column with your own id for each row, kept in exports.",
    )
    label_column = StringField(
        "Label column (optional)",
        validators=[Optional(), Length(max=200)],
        description="A column with labels you already have; those rows arrive labelled.",
    )
    model_name = SelectField("Model", default=DEFAULT_MODEL)
    strategy_name = SelectField(
        "Which item to ask next",
        default=DEFAULT_STRATEGY,
        description="Uncertainty strategies ask about the texts the model is least sure of.",
    )
    retrain_every = IntegerField(
        "Retrain every",
        default=50,
        validators=[DataRequired(), NumberRange(min=1, max=100_000)],
        description="Answers between two full retrains in the background.",
    )
    overlap = IntegerField(
        "Annotators per item",
        default=1,
        validators=[DataRequired(), NumberRange(min=1, max=50)],
        description="How many people answer each item; above 1 the team page shows agreement.",
    )
    lease_seconds = IntegerField(
        "Reservation time (seconds)",
        default=1800,
        validators=[DataRequired(), NumberRange(min=10, max=604_800)],
        description="How long an item handed to an annotator stays reserved for them.",
    )
    train_on_single_answers = BooleanField(
        "Train on items with one answer",
        default=True,
        description="With more than one annotator per item, use items that have one answer so far.",
    )
    submit = SubmitField("Save project")

    def set_choices(self, models: list[tuple[str, str]], strategies: list[tuple[str, str]]) -> None:
        self.model_name.choices = models
        self.strategy_name.choices = strategies

    def label_specs(self) -> list[LabelSpec]:
        """Return the filled-in label rows; rows with no name, key or id are ignored."""
        specs = []
        for row in self.labels.entries:
            data: dict[str, Any] = row.form.data
            name = (data.get("name") or "").strip()
            raw_id = (data.get("id") or "").strip()
            if not name and not raw_id:
                continue
            specs.append(
                LabelSpec(
                    name=name,
                    key=(data.get("key") or "").strip() or None,
                    color=data.get("color") or None,
                    id=int(raw_id) if raw_id.isdigit() else None,
                )
            )
        return specs

    def to_spec(self) -> ProjectSpec:
        return ProjectSpec(
            name=self.name.data or "",
            description=self.description.data or "",
            labels=self.label_specs(),
            text_column=self.text_column.data or "",
            id_column=self.id_column.data or None,
            label_column=self.label_column.data or None,
            model_name=self.model_name.data or "",
            strategy_name=self.strategy_name.data or "",
            retrain_every=self.retrain_every.data or 0,
            overlap=self.overlap.data or 1,
            lease_seconds=self.lease_seconds.data or 1800,
            train_on_single_answers=bool(self.train_on_single_answers.data),
        )

    def fill_from_summary(self, summary: dict[str, Any]) -> None:
        """Set the fields from ``services.projects.project_summary`` output, for editing."""
        for name in (
            "name",
            "description",
            "text_column",
            "id_column",
            "label_column",
            "model_name",
            "strategy_name",
            "retrain_every",
            "overlap",
            "lease_seconds",
            "train_on_single_answers",
        ):
            getattr(self, name).data = summary.get(name)
        while self.labels.entries:
            self.labels.pop_entry()
        for label in summary["labels"]:
            self.labels.append_entry(
                {
                    "id": str(label["id"]),
                    "name": label["name"],
                    "key": label["key"],
                    "color": label["color"],
                }
            )


class DeleteForm(FlaskForm):
    submit = SubmitField("Delete the project and all its data")


def default_label_rows(form: ProjectForm) -> None:
    """Give a new project form two empty label rows with distinct default colours."""
    for index, row in enumerate(form.labels.entries):
        if not row.form.color.data:
            row.form.color.data = DEFAULT_COLORS[index % len(DEFAULT_COLORS)]
