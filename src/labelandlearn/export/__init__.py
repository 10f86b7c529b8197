"""Export of labelled items as CSV or JSON Lines."""

from labelandlearn.export.labelled import EXPORT_FORMATS, export_labelled, neutralise_formula

__all__ = ["EXPORT_FORMATS", "export_labelled", "neutralise_formula"]
