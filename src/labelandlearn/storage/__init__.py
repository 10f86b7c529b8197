"""Database models, engine and sessions, and Alembic migrations."""
