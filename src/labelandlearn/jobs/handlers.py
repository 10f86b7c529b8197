"""Imports the modules that register job handlers (import, train, score, export)."""

from __future__ import annotations
