"""The registry mapping file (`mappings/registry/<registry>-<version>.yaml`) as pydantic models:
what an analyst may write, with a description per key (docs/registry.md is the reference).

`pathways.registry.mapping` compiles a checked file into what the builder runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "BlockSpec",
    "FieldSpec",
    "IntervalCheckSpec",
    "MappingFileSpec",
    "SourceSpec",
    "SubBlockSpec",
    "TemplateSpec",
    "TransformSpec",
]

FieldType = Literal["string", "strings", "int", "decimal", "datetime", "date", "list"]
Pick = Literal["first", "last", "min", "max", "all"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    """Where a value comes from: exactly one of the keys below."""

    fhirpath: str | None = Field(
        None,
        description="FHIRPath over the case's resources. Starting with a resource type "
        "(`Observation.where(...)`), it is evaluated on each resource of that type, in time "
        "order, and the resource that gave the value is the field's source; in a list item it "
        "is relative to the item's resource (`effectiveDateTime`).",
    )
    node: str | None = Field(None, description="A time-node key (config/pathways/catalogue.yaml).")
    fact: str | None = Field(
        None, description="A case fact (config/pathways/facts.yaml) or `arrival_mode`."
    )
    score: str | None = Field(
        None,
        description="A score Observation of the case: its code in the score CodeSystem "
        "(`killip`, `grace-inhospital`) or `system|code`; the value is its total.",
    )
    indicator: str | None = Field(
        None,
        description="`standard/indicator` (`cpc-recert/cpc.d2w`): the case's interval in whole "
        "minutes (config/pathways/<center>/).",
    )
    param: str | None = Field(
        None,
        description="A value the caller passes (settings, never the repo): `hospital_id`.",
    )
    value: str | int | float | None = Field(None, description="A constant.")
    derive: str | None = Field(
        None,
        description="An expression of the safe expression language over the fields above it "
        "(`iif(exists(TreatmentInfo.ECGS), '1', '0')`).",
    )
    pick: Pick = Field(
        "first",
        description="Of several values (resources in time order): first, last, min, max, or "
        "all (a list, for multi-select fields joined with `join`).",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> SourceSpec:
        kinds = [k for k in _SOURCE_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of {', '.join(_SOURCE_KINDS)} (found {len(kinds)})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in _SOURCE_KINDS if getattr(self, k) is not None)


_SOURCE_KINDS = ("fhirpath", "node", "fact", "score", "indicator", "param", "value", "derive")


class TransformSpec(_Strict):
    """How a source value becomes the registry's value (before its code table)."""

    format: str | None = Field(
        None,
        description="Datetime pattern (yyyy MM dd HH mm ss and literal text) in the file's "
        "time zone, never with an offset; the file's `datetime_format` by default.",
    )
    join: str | None = Field(None, description='Join a multi-select\'s codes with this ("|").')
    max_items: int | None = Field(None, ge=1, description="Keep at most this many list items.")
    age_at: str | None = Field(
        None, description="A birth date becomes whole years at this time node (`door`)."
    )
    days_until: str | None = Field(
        None, description="An instant becomes whole calendar days until this time node."
    )
    round: int | None = Field(None, ge=0, le=6, description="Round a number to these places.")
    present: bool = Field(
        False,
        description="The value is `true` when the source gives anything (a time node that was "
        "captured becomes a yes through the code table); nothing otherwise, so `default` says "
        "what an absence means.",
    )


class FieldSpec(_Strict):
    """One target field of the registry record (or of a list item)."""

    target: str = Field(
        description="`Block.FIELD` exactly as the spec spells it (list items: `FIELD`)."
    )
    label: str = Field(description="The spec's 中文 label: the platform's messages use it.")
    type: FieldType = Field(
        description="string, strings (a list of text), int, decimal, datetime, date or list "
        "(of items)."
    )
    length: int | None = Field(None, ge=1, description="Maximum characters (varchar(N)).")
    decimals: int | None = Field(None, ge=0, le=6, description="Decimal places of a decimal.")
    min: float | None = Field(None, description="Smallest allowed number.")
    max: float | None = Field(None, description="Largest allowed number.")
    values: list[str] | None = Field(
        None, description="The allowed codes (the enumeration's domain)."
    )
    enum_map: dict[str, str] | None = Field(
        None,
        description='Local value → registry code (booleans are written `"true"`/`"false"`).',
    )
    table: str | None = Field(
        None, description="A CSV code table in mappings/registry/tables/ (code,target,display)."
    )
    multi: bool = Field(False, description="A multi-select: several codes joined with `|`.")
    source: SourceSpec | None = Field(
        None, description="Where the value comes from; none: entered by registry staff."
    )
    default: str | int | float | None = Field(
        None,
        description="Sent when the source gives nothing (a flag recorded only when it is "
        "true, such as give_up_treatment); the trace says `default`.",
    )
    transform: TransformSpec | None = None
    when: str | None = Field(
        None,
        description="Condition: the field is sent only when it holds (the arrival-mode and "
        "diagnosis blocks).",
    )
    required: bool = Field(False, description="Always required (必填).")
    required_when: str | None = Field(
        None, description="Condition under which the field is required (条件必填)."
    )
    each: str | None = Field(
        None, description="List fields: FHIRPath choosing one resource per list item."
    )
    items: list[FieldSpec] | None = Field(None, description="List fields: the item's fields.")
    fill: str | None = Field(
        None,
        description="For staff: what FHIR data (or entry) fills the field, when the "
        "source alone does not say it.",
    )
    header: str | None = Field(
        None,
        description="File templates: the column's header text when it is not the label "
        "(the official template's exact text).",
    )
    note: str = Field("", description="Why the field is mapped this way (spec traps, [U]).")

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if self.type == "list" and not self.items:
            raise ValueError("a list field needs `items`")
        if self.type != "list" and (self.items or self.each):
            raise ValueError("`items` and `each` are for list fields only")
        if self.enum_map is not None and self.table is not None:
            raise ValueError("give `enum_map` or `table`, not both")
        if self.decimals is not None and self.type != "decimal":
            raise ValueError("`decimals` is for decimal fields only")
        return self


class BlockSpec(_Strict):
    """One block of the record (`RegisterInfo`, `FirstAIDInfo` ...)."""

    label: str = Field(description="The block's 中文 name as the platform's errors write it.")
    when: str | None = Field(
        None, description="Condition: the block's fields are sent only when it holds."
    )


class IntervalCheckSpec(_Strict):
    """A field that must equal the interval between two others (DTWOB_TIME = D2W)."""

    field: str = Field(description="The `Block.FIELD` holding the interval.")
    start: list[str] = Field(description="Fields of the start instant; the first present counts.")
    end: list[str] = Field(description="Fields of the end instant; the earliest present counts.")
    unit: Literal["minutes"] = "minutes"
    label: str = Field(description="The interval's name in messages (门-导丝时间).")


class SubBlockSpec(_Strict):
    """Fields whose prefix belongs to one value of a selector (the diagnosis sub-blocks)."""

    block: str = Field(description="The block holding the sub-blocks.")
    selector: str = Field(description="The `Block.FIELD` choosing the sub-block.")
    prefixes: dict[str, str] = Field(description="Selector code → field-name prefix (`STEMI_`).")


class TemplateSpec(_Strict):
    """A registry without an API: the file staff import by hand (registries.md B.4). Its
    columns are the fields, in file order, one row per case."""

    name: str = Field(description="The file name's stem (`wso-indicators`): month or case added.")
    title: str = Field(description="The template's name as the registry calls it.")
    formats: list[Literal["csv", "xlsx"]] = Field(
        default=["csv", "xlsx"], description="The formats the registry imports."
    )
    sheet: str = Field("Sheet1", max_length=31, description="XLSX: the worksheet's name.")
    header: Literal["label", "key"] = Field(
        "label",
        description="The header row's text: each column's `header` or label (中文), or its key "
        "(the field name, `case_id`).",
    )


class MappingFileSpec(_Strict):
    """A registry mapping file: header, blocks, fields, cross-field rules."""

    registry: str = Field(description="The registry's short name (`cpc`).")
    mapping_version: str = Field(description="This file's version; every upload records it.")
    spec: str = Field(description="The registry specification the file implements.")
    spec_version: str = Field(description="That specification's version.")
    center: Literal["chest_pain", "stroke", "trauma"]
    timezone: str = Field("+08:00", description="Zone of the registry's local times.")
    datetime_format: str = Field(
        "yyyy-MM-ddTHH:mm:ss", description="Default pattern of datetime fields."
    )
    date_format: str = Field("yyyy-MM-dd", description="Default pattern of date fields.")
    blocks: dict[str, BlockSpec]
    fields: list[FieldSpec]
    time_order: list[list[str]] = Field(
        default_factory=list,
        description="Chains of datetime fields in the order their instants must be "
        "(`Block.LIST.FIELD` is the earliest item's).",
    )
    interval_checks: list[IntervalCheckSpec] = Field(default_factory=list)
    sub_blocks: list[SubBlockSpec] = Field(default_factory=list)
    template: TemplateSpec | None = Field(
        None,
        description="A file-template registry (no API): the fields are its columns, in order.",
    )
