"""Domain exceptions. The web layer maps each to one HTTP status and one JSON error shape."""

from __future__ import annotations


class LabelAndLearnError(Exception):
    """Base class of every error that carries a message meant for the user."""

    http_status = 400

    def __init__(self, message: str, *, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class NotFoundError(LabelAndLearnError):
    """A project, item, model, job or file that does not exist."""

    http_status = 404


class ConflictError(LabelAndLearnError):
    """A write that clashes with what is stored (duplicate name, stale answer)."""

    http_status = 409


class ValidationError(LabelAndLearnError):
    """Input that breaks a rule of the product: a bad label name, a key clash."""

    http_status = 422


class ImportFormatError(LabelAndLearnError):
    """A file that cannot be imported as a whole: empty, binary, wrong type, missing column."""

    http_status = 422


class UploadTooLargeError(LabelAndLearnError):
    """An upload over the configured size limit."""

    http_status = 413


class NotEnoughLabelsError(LabelAndLearnError):
    """Training asked for with too few labels, or with a class that has no examples."""

    http_status = 409


class MissingExtraError(LabelAndLearnError):
    """An optional dependency is not installed; the message names the install command."""

    http_status = 501
