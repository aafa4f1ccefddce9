"""Alembic migrations of the UWB tables (`devices.uwb.schema.migrate`)."""
