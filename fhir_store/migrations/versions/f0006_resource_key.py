"""Resources get a number (`fhir_resource.key`); the index tables find a resource's rows by it.

Each index table had an index on (resource_type, resource_id), to replace a resource's rows
when it changes. Most ids are random (hashes of identifiers, uuids), so each new resource's rows
went to a random page of each of those indexes: a page read, changed and written again to the
write-ahead log per resource and index table. On an ADT^A04 load that was a third of the FHIR
write's time and 40% of the bytes written. A number given in creation order puts a new
resource's rows at the end of the index instead, on the page the previous resource used.

The rows already stored get their resource's key; SQLite numbers the resources in the order
of their rowid (the order they were inserted), PostgreSQL in lastUpdated order, and PostgreSQL's
sequence `fhir_resource_key_seq` continues after the last. A search's conditions select
resources by their number too (`key IN (...)`), which PostgreSQL checks per candidate through
the same indexes; SQLite is given planner statistics for it (`_seed_sqlite_statistics`).

Revision ID: f0006
Revises: f0005
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f0006"
down_revision: str | None = "f0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = (
    "fhir_token_index",
    "fhir_string_index",
    "fhir_reference_index",
    "fhir_date_index",
    "fhir_number_index",
    "fhir_quantity_index",
    "fhir_uri_index",
)
_DATE_PROBE = ["param", "low", "high"]  # f0005: a date condition read from the index alone


def upgrade() -> None:
    """Number the resources, give every index row its resource's number, and index that."""
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.add_column("fhir_resource", sa.Column("key", sa.BigInteger, nullable=True))
    if postgresql:
        op.execute(
            "UPDATE fhir_resource SET key = numbered.n FROM (SELECT resource_type, id, "
            "row_number() OVER (ORDER BY last_updated, resource_type, id) AS n "
            "FROM fhir_resource) AS numbered "
            "WHERE fhir_resource.resource_type = numbered.resource_type "
            "AND fhir_resource.id = numbered.id"
        )
        op.execute("CREATE SEQUENCE fhir_resource_key_seq AS bigint")
        op.execute(
            "SELECT setval('fhir_resource_key_seq', coalesce(max(key), 0) + 1, false) "
            "FROM fhir_resource"
        )
    else:
        op.execute("UPDATE fhir_resource SET key = rowid")
    op.create_index("ix_fhir_resource_key", "fhir_resource", ["key"], unique=True)
    if not postgresql:
        _seed_sqlite_statistics()
    for table in _TABLES:
        stem = table.removesuffix("_index")
        op.add_column(table, sa.Column("resource_key", sa.BigInteger, nullable=True))
        op.execute(
            f"UPDATE {table} SET resource_key = (SELECT r.key FROM fhir_resource r "
            f"WHERE r.resource_type = {table}.resource_type AND r.id = {table}.resource_id)"
        )
        op.drop_index(f"ix_{stem}_resource", table_name=table)
        probe = _DATE_PROBE if table == "fhir_date_index" else []
        op.create_index(f"ix_{stem}_resource", table, ["resource_key", *probe])


def _seed_sqlite_statistics() -> None:
    """Tell SQLite's planner the shape of any real store: few resource types, many resources
    each. Without statistics it takes `resource_type = ?` for a selective condition and reads
    every resource of the type, checking each against a search's `key IN (...)`: 30 ms where
    reading by key takes 3 (Observation?subject&code, 100 Synthea patients). An ANALYZE later
    replaces these figures with the real ones, which lead to the same plans."""
    op.execute("ANALYZE fhir_alembic_version")  # a small table: creates sqlite_stat1
    op.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'fhir_resource'")
    op.execute(
        "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES "
        "('fhir_resource', 'sqlite_autoindex_fhir_resource_1', '1000000 50000 1'), "
        "('fhir_resource', 'ix_fhir_resource_key', '1000000 1')"
    )


def downgrade() -> None:
    """Back to the index on (resource_type, resource_id); the numbers are dropped."""
    for table in _TABLES:
        stem = table.removesuffix("_index")
        op.drop_index(f"ix_{stem}_resource", table_name=table)
        probe = _DATE_PROBE if table == "fhir_date_index" else []
        op.create_index(f"ix_{stem}_resource", table, ["resource_type", "resource_id", *probe])
        op.drop_column(table, "resource_key")  # SQLite 3.35 and later drop it in place
    op.drop_index("ix_fhir_resource_key", table_name="fhir_resource")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE fhir_resource_key_seq")
    elif sa.inspect(op.get_bind()).has_table("sqlite_stat1"):
        op.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'fhir_resource'")
    op.drop_column("fhir_resource", "key")
