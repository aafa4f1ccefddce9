"""National registry records from center cases: a versioned mapping file per registry
(`mappings/registry/`), a generic builder over the case's FHIR resources, local validation that
mirrors the platform, and the completeness report for registry staff (docs/registry.md).

Registries without an API get a file template (`export_file`: CSV or XLSX, one row per case).

The contract the uploaders call: `build_record(store, case_id, registry="cpc", overrides=...)`
→ `RegistryRecord`, and `validate_record(record)` → `list[RegistryProblem]` (empty: ready).
"""

from __future__ import annotations

from pathways._archive_records import CaseNotFound
from pathways.registry.builder import build_record, record_from_resources
from pathways.registry.checks import check_case, check_cases, checked_records, report_of
from pathways.registry.export import ExportedFile, Incomplete, NotATemplate, export_file
from pathways.registry.mapping import (
    Column,
    RegistryField,
    RegistryMapping,
    load_registry_mapping,
    registry_dir,
    registry_mapping,
)
from pathways.registry.record import (
    FieldTrace,
    RegistryProblem,
    RegistryRecord,
    Severity,
    UnknownRegistryField,
)
from pathways.registry.report import completeness_report, problem_lines
from pathways.registry.validate import validate_record

__all__ = [
    "CaseNotFound",
    "Column",
    "ExportedFile",
    "FieldTrace",
    "Incomplete",
    "NotATemplate",
    "RegistryField",
    "RegistryMapping",
    "RegistryProblem",
    "RegistryRecord",
    "Severity",
    "UnknownRegistryField",
    "build_record",
    "check_case",
    "check_cases",
    "checked_records",
    "completeness_report",
    "export_file",
    "load_registry_mapping",
    "problem_lines",
    "record_from_resources",
    "registry_dir",
    "registry_mapping",
    "report_of",
    "validate_record",
]
