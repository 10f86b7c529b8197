"""Database ids in URLs: the ``int`` converter bounded to what the database columns hold."""

from __future__ import annotations

from typing import Any

from werkzeug.routing import IntegerConverter, Map

# The largest value of a 64-bit signed integer column (SQLite INTEGER, PostgreSQL BIGINT).
MAX_ID = 2**63 - 1


class IdConverter(IntegerConverter):
    """``int`` in URL rules, at most MAX_ID: a larger number matches no route, so it gets 404.

    Without the bound, SQLite's driver raised OverflowError while binding the number, so the
    request failed with 500.
    """

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(url_map, *args, **kwargs)
