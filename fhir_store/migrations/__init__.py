"""Alembic migrations of the FHIR store's tables (version table `fhir_alembic_version`)."""
