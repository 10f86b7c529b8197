"""Server-rendered pages, one blueprint per area."""

from __future__ import annotations

from flask import Flask


def register_pages(app: Flask) -> None:
    from labelandlearn.web.pages import projects

    app.register_blueprint(projects.bp)
