"""Alembic migrations of the device clock tables (history in `clock_alembic_version`)."""
