"""Alembic migrations of the registry upload workflow's tables."""
