"""Alembic revisions of the engine tables."""
