"""Fixtures of the pathways tests: the FHIR store's migrated database and store (SQLite and
PostgreSQL), shared with the store's own tests."""

from __future__ import annotations

from tests.fhir_store.conftest import database, store

__all__ = ["database", "store"]
