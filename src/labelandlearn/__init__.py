"""Label and Learn: label short texts in a browser while a classifier learns from every answer."""

__version__ = "0.1.0"
