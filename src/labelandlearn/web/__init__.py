"""The Flask web application: pages, the JSON API under /api/v1, static files."""

from labelandlearn.web.app import create_app

__all__ = ["create_app"]
