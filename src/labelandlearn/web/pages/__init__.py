"""Server-rendered pages, one blueprint per area."""

from __future__ import annotations

from flask import Flask


def register_pages(app: Flask) -> None:
    from labelandlearn.web.pages import dashboard, filters, imports, labelling, projects

    for module in (projects, dashboard, imports, labelling):
        app.register_blueprint(module.bp)
    filters.register_filters(app)
