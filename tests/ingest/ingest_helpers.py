"""Helpers of the import tests: a project with the three labels of the Ethereum tweets.

A conftest.py here would be imported as ``conftest`` and hide the top-level one.
"""

from __future__ import annotations

from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Label, Project


def create_project(db: Database, name: str = "tweets") -> int:
    with db.session() as session:
        project = Project(
            name=name,
            labels=[
                Label(name="negative", key="1", position=0),
                Label(name="useless", key="2", position=1),
                Label(name="positive", key="3", position=2),
            ],
        )
        session.add(project)
        session.flush()
        return project.id
