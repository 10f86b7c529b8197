"""Map the columns of an import file to an item's text, external id, label and metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labelandlearn.errors import ImportFormatError, ValidationError
from labelandlearn.export.labelled import FORMULA_PREFIXES
from labelandlearn.ingest.readers import Record

MAX_KNOWN_LABELS_SHOWN = 20
# Length of items.external_id in the schema.
MAX_EXTERNAL_ID_CHARS = 200


@dataclass(frozen=True)
class ColumnMapping:
    """Which columns hold the text, the optional external id and the optional existing label.

    ``label_map`` maps values of the label column to label names, for example
    ``{"-1": "negative", "0": "useless", "1": "positive"}``; values that are label names
    themselves need no entry. A value mapped to "" imports its rows without a label.
    """

    text_column: str
    id_column: str | None = None
    label_column: str | None = None
    label_map: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "text_column": self.text_column,
            "id_column": self.id_column,
            "label_column": self.label_column,
            "label_map": dict(self.label_map) if self.label_map else None,
        }


@dataclass(frozen=True)
class MappedRow:
    line: int
    text: str
    external_id: str | None
    label_id: int | None
    meta: dict[str, str | None]


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason}


def canonical_number(value: str) -> str | None:
    """Return ``"1"`` for ``"1.0"`` or ``" 1 "``; None when the value is not an integer."""
    try:
        number = float(value)
    except ValueError:
        return None
    if number.is_integer():
        return str(int(number))
    return None


class RowMapper:
    """A ColumnMapping checked against a file's columns and a project's labels."""

    def __init__(self, mapping: ColumnMapping, columns: list[str], labels: dict[str, int]) -> None:
        self.mapping = mapping
        self._labels = labels
        self._labels_folded = {name.casefold(): label_id for name, label_id in labels.items()}
        self._check_columns(columns)
        self._unlabelled: set[str] = set()
        self._label_map = self._resolve_label_map()
        self._used = {mapping.text_column, mapping.id_column, mapping.label_column}

    def _check_columns(self, columns: list[str]) -> None:
        found = ", ".join(columns) or "none"
        options = (
            ("text", self.mapping.text_column),
            ("id", self.mapping.id_column),
            ("label", self.mapping.label_column),
        )
        for role, column in options:
            if column is not None and column not in columns:
                raise ImportFormatError(
                    f"{role} column {column!r} not found; the file's columns are: {found}. "
                    f"Pass the right name as {role}_column (--{role}-column in the CLI)."
                )

    def _known_labels(self) -> str:
        names = list(self._labels)
        shown = ", ".join(names[:MAX_KNOWN_LABELS_SHOWN])
        if len(names) > MAX_KNOWN_LABELS_SHOWN:
            shown += f" and {len(names) - MAX_KNOWN_LABELS_SHOWN} more"
        return shown or "none"

    def _resolve_label_map(self) -> dict[str, int]:
        resolved: dict[str, int] = {}
        for value, name in (self.mapping.label_map or {}).items():
            if not name.strip():
                self._unlabelled.add(str(value).strip())
                continue
            label_id = self._labels.get(name)
            if label_id is None:
                raise ValidationError(
                    f"label map sends {value!r} to {name!r}, which is not a label of this "
                    f"project; the labels are: {self._known_labels()}."
                )
            resolved[str(value).strip()] = label_id
        return resolved

    def label_id_for(self, value: str) -> int | None:
        """Return the label id of a label-column value, or None when it names no label."""
        value = value.strip()
        candidates = [value]
        # Our CSV export writes a label such as "-1" as "'-1" against spreadsheet formulas.
        if len(value) > 1 and value[0] == "'" and value[1:].startswith(FORMULA_PREFIXES):
            candidates.append(value[1:])
        for candidate in candidates:
            if candidate in self._label_map:
                return self._label_map[candidate]
            number = canonical_number(candidate)
            if number is not None and number in self._label_map:
                return self._label_map[number]
            if candidate in self._labels:
                return self._labels[candidate]
            folded = self._labels_folded.get(candidate.casefold())
            if folded is not None:
                return folded
        return None

    def _maps_to_no_label(self, value: str) -> bool:
        value = value.strip()
        return value in self._unlabelled or canonical_number(value) in self._unlabelled

    def map(self, record: Record) -> MappedRow | RowError:
        if record.error is not None:
            return RowError(record.line, record.error)
        values = record.values
        text = values.get(self.mapping.text_column)
        if text is None or not text.strip():
            return RowError(record.line, f"text column {self.mapping.text_column!r} is empty")

        label_id = None
        if self.mapping.label_column is not None:
            raw_label = values.get(self.mapping.label_column) or ""
            if raw_label.strip() and not self._maps_to_no_label(raw_label):
                label_id = self.label_id_for(raw_label)
                if label_id is None:
                    return RowError(record.line, self._unknown_label_reason(raw_label))

        external_id = None
        if self.mapping.id_column is not None:
            external_id = values.get(self.mapping.id_column)
            if external_id is not None and len(external_id) > MAX_EXTERNAL_ID_CHARS:
                return RowError(
                    record.line,
                    f"id in column {self.mapping.id_column!r} is longer than "
                    f"{MAX_EXTERNAL_ID_CHARS} characters",
                )

        # JSON records may hold keys that the sniffed column list missed, so read them all.
        meta = {column: value for column, value in values.items() if column not in self._used}
        return MappedRow(record.line, text, external_id, label_id, meta)

    def _unknown_label_reason(self, value: str) -> str:
        mapped = ", ".join(repr(key) for key in self._label_map)
        reason = (
            f"label {value!r} in column {self.mapping.label_column!r} is not a label of this "
            f"project (labels: {self._known_labels()})"
        )
        if mapped:
            reason += f" and not in the label map (values: {mapped})"
        return reason
