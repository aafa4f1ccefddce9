"""The fhir.resources R4B model of a resource or data type, by name: the one lookup of the
store's validation, structure check, `_summary` and FHIRPath Patch."""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel

__all__ = ["model_of"]


@lru_cache(maxsize=1024)  # bounded: the type names come from the input, unknown ones too
def model_of(type_name: str) -> type[BaseModel] | None:
    """The R4B model of `type_name` (`Patient`, `HumanName`), or None for a name it has none of
    (an R4 type that R4B dropped, or no type at all)."""
    from fhir.resources.R4B import get_fhir_model_class  # slow import: only when needed

    try:
        model: type[BaseModel] = get_fhir_model_class(type_name)
    except (ValueError, KeyError):
        return None
    return model
