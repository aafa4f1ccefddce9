"""The FHIR store's Alembic revisions, oldest first."""
