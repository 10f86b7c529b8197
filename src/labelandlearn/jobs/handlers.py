"""Imports the modules that register job handlers (import, export, train, score)."""

from __future__ import annotations

import labelandlearn.export.jobs  # noqa: F401
import labelandlearn.ingest.jobs  # noqa: F401
import labelandlearn.learning.jobs  # noqa: F401
