"""Alembic migrations of the engine tables."""
