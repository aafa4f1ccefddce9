"""Structural validation of resources with the `fhir.resources` models, on every write.

`fhir.resources` 8.x ships R5 (default), R4B and STU3 models but no R4 ones, so resources are
checked against R4B (4.3), the closest: R4 types that R4B dropped (MedicinalProduct*,
EffectEvidenceSynthesis, RiskEvidenceSynthesis, SubstanceSpecification, ...) are not checked.
The parsed JSON is validated as it is (`model_validate`), with the model looked up once per
type; it costs a few tenths of a millisecond per resource (bench/fhir_validation_cost.py).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError

from fhir_store.errors import InvalidResource

__all__ = ["structure_issues", "validate_structure"]


def validate_structure(resource: dict[str, Any]) -> None:
    """Raise InvalidResource (422) naming the element paths that break the R4B structure."""
    issues = structure_issues(resource, limit=10)
    if issues:
        reasons = "; ".join(f"{path}: {reason}" for path, reason in issues)
        raise InvalidResource(
            f"the resource does not match the FHIR structure ({reasons})",
            expression=[path for path, _ in issues],
            status=422,
            code="structure",
        )


def structure_issues(resource: dict[str, Any], *, limit: int = 100) -> list[tuple[str, str]]:
    """The (element path, reason) of each way the resource breaks the R4B structure."""
    resource_type = str(resource.get("resourceType"))
    model = _model(resource_type)
    if model is None:
        return []
    try:
        model.model_validate(resource)
    except ValidationError as error:
        issues = error.errors(include_input=False, include_url=False)[:limit]
        return [
            (_path(resource_type, issue["loc"]), issue["msg"].removeprefix("Value error, "))
            for issue in issues
        ]
    return []


@cache
def _model(resource_type: str) -> type[BaseModel] | None:
    from fhir.resources.R4B import get_fhir_model_class  # slow import: only when validating

    try:
        model: type[BaseModel] = get_fhir_model_class(resource_type)
    except ValueError:
        return None  # an R4 type without an R4B model
    return model


def _path(resource_type: str, location: tuple[int | str, ...]) -> str:
    path = resource_type
    for part in location:
        path = f"{path}[{part}]" if isinstance(part, int) else f"{path}.{part}"
    return path
