"""Parameters that select the same values share index rows (`_search_params.rows_of`).

`phonetic` has the rows of `name` (both `Patient.name`), and `Encounter.patient`
(`subject.where(resolve() is Patient)`) the rows of `subject` that refer to a Patient: the
store no longer writes the copies, and its searches read the shared rows. The upgrade deletes
the copies already stored (with a pure copy's modifier rows, `code:text`, `code:identifier`);
the downgrade writes them again from the rows that hold them.

The list is the specification's R4 parameters that share, as `_search_params` found them when
this migration was written (custom parameters never share).

Revision ID: f0008
Revises: f0007
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f0008"
down_revision: str | None = "f0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (resource type, parameter, the parameter whose rows hold it, only references to, its type)
SHARED: tuple[tuple[str, str, str, str | None, str], ...] = (
    ("Account", "patient", "subject", "Patient", "reference"),
    ("Appointment", "location", "actor", "Location", "reference"),
    ("Appointment", "patient", "actor", "Patient", "reference"),
    ("Appointment", "practitioner", "actor", "Practitioner", "reference"),
    ("AppointmentResponse", "location", "actor", "Location", "reference"),
    ("AppointmentResponse", "patient", "actor", "Patient", "reference"),
    ("AppointmentResponse", "practitioner", "actor", "Practitioner", "reference"),
    ("Basic", "patient", "subject", "Patient", "reference"),
    ("Bundle", "message", "composition", None, "reference"),
    ("CapabilityStatement", "version", "fhirversion", None, "token"),
    ("CarePlan", "patient", "subject", "Patient", "reference"),
    ("CareTeam", "patient", "subject", "Patient", "reference"),
    ("ChargeItem", "patient", "subject", "Patient", "reference"),
    ("ClinicalImpression", "patient", "subject", "Patient", "reference"),
    ("CodeSystem", "url", "system", None, "uri"),
    ("Communication", "patient", "subject", "Patient", "reference"),
    ("CommunicationRequest", "patient", "subject", "Patient", "reference"),
    ("Composition", "patient", "subject", "Patient", "reference"),
    ("Condition", "patient", "subject", "Patient", "reference"),
    ("Contract", "patient", "subject", "Patient", "reference"),
    ("Coverage", "patient", "beneficiary", None, "reference"),
    ("DeviceRequest", "patient", "subject", "Patient", "reference"),
    ("DeviceUseStatement", "subject", "patient", None, "reference"),
    ("DiagnosticReport", "patient", "subject", "Patient", "reference"),
    ("DocumentManifest", "patient", "subject", "Patient", "reference"),
    ("DocumentReference", "patient", "subject", "Patient", "reference"),
    ("Encounter", "patient", "subject", "Patient", "reference"),
    ("Encounter", "practitioner", "participant", "Practitioner", "reference"),
    ("EnrollmentRequest", "subject", "patient", None, "reference"),
    ("Flag", "patient", "subject", "Patient", "reference"),
    ("Goal", "patient", "subject", "Patient", "reference"),
    ("GuidanceResponse", "patient", "subject", "Patient", "reference"),
    ("ImagingStudy", "patient", "subject", "Patient", "reference"),
    ("Invoice", "patient", "subject", "Patient", "reference"),
    ("Linkage", "source", "item", None, "reference"),
    ("List", "patient", "subject", "Patient", "reference"),
    ("MeasureReport", "patient", "subject", "Patient", "reference"),
    ("Media", "patient", "subject", "Patient", "reference"),
    ("MedicationAdministration", "patient", "subject", "Patient", "reference"),
    ("MedicationDispense", "patient", "subject", "Patient", "reference"),
    ("MedicationRequest", "patient", "subject", "Patient", "reference"),
    ("MedicationStatement", "patient", "subject", "Patient", "reference"),
    ("Observation", "patient", "subject", "Patient", "reference"),
    ("Patient", "phonetic", "name", None, "string"),
    ("Person", "patient", "link", "Patient", "reference"),
    ("Person", "phonetic", "name", None, "string"),
    ("Person", "practitioner", "link", "Practitioner", "reference"),
    ("Person", "relatedperson", "link", "RelatedPerson", "reference"),
    ("Practitioner", "phonetic", "name", None, "string"),
    ("Procedure", "patient", "subject", "Patient", "reference"),
    ("Provenance", "patient", "target", "Patient", "reference"),
    ("QuestionnaireResponse", "patient", "subject", "Patient", "reference"),
    ("RelatedPerson", "phonetic", "name", None, "string"),
    ("RequestGroup", "patient", "subject", "Patient", "reference"),
    ("ResearchSubject", "patient", "individual", None, "reference"),
    ("RiskAssessment", "patient", "subject", "Patient", "reference"),
    ("ServiceRequest", "patient", "subject", "Patient", "reference"),
    ("Specimen", "patient", "subject", "Patient", "reference"),
    ("Task", "patient", "subject", "Patient", "reference"),
)
# Per parameter type: its index table and the columns of a value.
_TABLES = {
    "reference": ("fhir_reference_index", "target_type, target_id"),
    "string": ("fhir_string_index", "normal, exact"),
    "token": ("fhir_token_index", "system, value"),
    "uri": ("fhir_uri_index", "value"),
}
_MODIFIERS = ("text", "of-type", "identifier")  # the token rows of `code:modifier`


def upgrade() -> None:
    """Delete the rows that the shared rows now stand for."""
    for resource_type, code, _, target, kind in SHARED:
        table, _ = _TABLES[kind]
        _delete(table, resource_type, [code])
        if target is None:  # a copy's modifier rows are the holder's too
            _delete("fhir_token_index", resource_type, [f"{code}:{m}" for m in _MODIFIERS])


def downgrade() -> None:
    """Write the copies again from the rows that hold them."""
    for resource_type, code, holder, target, kind in SHARED:
        table, columns = _TABLES[kind]
        _copy(table, columns, resource_type, holder, code, target)
        if target is None:
            for modifier in _MODIFIERS:
                _copy(
                    "fhir_token_index",
                    "system, value",
                    resource_type,
                    f"{holder}:{modifier}",
                    f"{code}:{modifier}",
                    None,
                )


def _delete(table: str, resource_type: str, params: list[str]) -> None:
    statement = sa.text(
        f"DELETE FROM {table} WHERE resource_type = :type AND param IN :params"
    ).bindparams(sa.bindparam("params", expanding=True))
    op.get_bind().execute(statement, {"type": resource_type, "params": params})


def _copy(
    table: str, columns: str, resource_type: str, source: str, param: str, target: str | None
) -> None:
    values = {"type": resource_type, "source": source, "param": param}
    only = ""
    if target is not None:  # only the references to that type
        only = " AND target_type = :target"
        values["target"] = target
    op.get_bind().execute(
        sa.text(
            f"INSERT INTO {table} (resource_type, resource_id, resource_key, param, {columns}) "
            f"SELECT resource_type, resource_id, resource_key, :param, {columns} FROM {table} "
            f"WHERE resource_type = :type AND param = :source{only}"
        ),
        values,
    )
