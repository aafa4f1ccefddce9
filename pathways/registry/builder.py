"""Building a case's registry record from the FHIR store: the archive's gathering of the case's
resources, then every field of the registry mapping evaluated in file order, staff overrides
applied, values encoded the registry's way (codes, `|`, local time without offset, decimals)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fhir_store import FhirStore
from pathways._archive_records import CaseNotFound, CaseRecords, gather_records
from pathways.case_store import StoredCase, load_case
from pathways.indicator_definitions import load_catalogue
from pathways.indicators import evaluate_indicator
from pathways.registry.conditions import holds
from pathways.registry.mapping import (
    RegistryField,
    RegistryMapping,
    registry_mapping,
    strftime_pattern,
)
from pathways.registry.record import FieldTrace, RegistryRecord, UnknownRegistryField
from pathways.shapes import parse_instant
from pathways.timeline import CaseTimeline
from pathways.vocabulary import SCORE_SYSTEM

__all__ = ["build_record", "encode_value", "record_from_resources", "resource_time"]

Resource = dict[str, Any]

# Where a resource says when it happened, first match wins: resources are read in time order.
_WHEN = (
    ("effectiveDateTime",),
    ("effectivePeriod", "start"),
    ("performedDateTime",),
    ("performedPeriod", "start"),
    ("occurrenceDateTime",),
    ("issued",),
    ("recordedDate",),
    ("onsetDateTime",),
    ("authoredOn",),
    ("started",),
    ("period", "start"),
)


async def build_record(
    store: FhirStore,
    case_id: str,
    registry: str = "cpc",
    *,
    overrides: Mapping[str, object] | None = None,
    params: Mapping[str, str] | None = None,
    mapping: RegistryMapping | None = None,
) -> RegistryRecord:
    """The record of `EpisodeOfCare/case_id` for `registry` (a mapping in mappings/registry/).

    `overrides`: staff values by `Block.FIELD` (None removes the field), applied over what the
    FHIR data give; `params`: values from settings (`hospital_id`). CaseNotFound when the case
    does not exist or is another center's; UnknownRegistryField for an override of a field the
    mapping lacks."""
    mapping = mapping or registry_mapping(registry)
    _check_overrides(mapping, overrides or {})
    records = await gather_records(store, case_id, mapping.zone)
    stored = await load_case(store, case_id)
    if stored.timeline.center != mapping.center:
        raise CaseNotFound(
            case_id,
            f"it is a {stored.timeline.center} case, and the {mapping.registry} registry takes "
            f"{mapping.center} cases",
        )
    return record_from_resources(mapping, records, stored, overrides=overrides, params=params)


def record_from_resources(
    mapping: RegistryMapping,
    records: CaseRecords,
    stored: StoredCase,
    *,
    overrides: Mapping[str, object] | None = None,
    params: Mapping[str, str] | None = None,
) -> RegistryRecord:
    """The record from resources already read (the builder's pure part)."""
    overrides = dict(overrides or {})
    _check_overrides(mapping, overrides)
    return _Build(mapping, records, stored, overrides, dict(params or {})).run()


def _check_overrides(mapping: RegistryMapping, overrides: Mapping[str, object]) -> None:
    for key in overrides:
        found = mapping.field(key)
        if found is None or key.count(".") != 1:
            raise UnknownRegistryField(key, mapping.registry)


def resource_time(resource: Mapping[str, Any]) -> datetime | None:
    """When a resource happened (its effective, performed, issued ... time), None if unknown."""
    for path in _WHEN:
        node: Any = resource
        for step in path:
            node = node.get(step) if isinstance(node, Mapping) else None
        instant = parse_instant(node)
        if instant is not None:
            return instant
    return None


def _order(resource: Resource) -> tuple[int, float, str]:
    instant = resource_time(resource)
    return (0 if instant else 1, instant.timestamp() if instant else 0.0, str(resource.get("id")))


def _reference(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


class _Build:
    """One record being built: the resources by type, the payload so far, the traces."""

    def __init__(
        self,
        mapping: RegistryMapping,
        records: CaseRecords,
        stored: StoredCase,
        overrides: dict[str, object],
        params: dict[str, str],
    ) -> None:
        self.mapping = mapping
        self.records = records
        self.timeline: CaseTimeline = stored.timeline
        self.node_refs = stored.node_references
        self.overrides = overrides
        self.params = params
        resources: list[Resource] = [records.case]
        if records.patient is not None:
            resources.append(records.patient)
        # Time nodes are read as `node:` sources; leaving their Observations (candidates too)
        # out of the FHIRPath pool keeps every Observation expression from scanning them.
        resources += records.encounters
        for found in records.clinical.values():
            resources += found
        self.by_type: dict[str, list[Resource]] = {}
        for resource in sorted(resources, key=_order):
            self.by_type.setdefault(str(resource.get("resourceType")), []).append(resource)
        self.bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in resources],
        }
        self.payload: dict[str, dict[str, Any]] = {b: {} for b in mapping.block_labels}
        self.traces: dict[str, FieldTrace] = {}
        self.texts: dict[int, str] = {}

    def run(self) -> RegistryRecord:
        for spec in self.mapping.fields:
            self.one(spec)
        return RegistryRecord(
            registry=self.mapping.registry,
            case_id=str(self.records.case.get("id")),
            mapping_version=self.mapping.mapping_version,
            spec_version=self.mapping.spec_version,
            mapping_file=self.mapping.file,
            payload=self.payload,
            traces=self.traces,
            overrides=dict(self.overrides),
        )

    def one(self, spec: RegistryField) -> None:
        block = self.payload[spec.block]
        if spec.key in self.overrides:
            value = self.overrides[spec.key]
            trace = FieldTrace(spec.key, "override", ("override",), spec.fill)
        elif not all(holds(condition, self.payload) for condition in spec.when):
            return  # not sent: another arrival mode's, diagnosis's or outcome's field
        else:
            value, sources = self.evaluate(spec, None)
            origin = spec.source.kind if spec.source else "none"
            if spec.spec.type == "list":
                origin = "fhirpath"
            if value is None and spec.spec.default is not None:
                value, origin = spec.spec.default, "default"
            trace = FieldTrace(
                spec.key, origin if value is not None else "none", sources, spec.fill
            )
        self.traces[spec.key] = trace
        if value is None or value == "" or value == []:
            block.pop(spec.name, None)
        else:
            block[spec.name] = value

    # -- values ------------------------------------------------------------------------------

    def evaluate(
        self, spec: RegistryField, item: Resource | None, item_payload: Any = None
    ) -> tuple[Any, tuple[str, ...]]:
        """The encoded value of a field and the references of the resources it came from."""
        if spec.spec.type == "list":
            return self.list_value(spec)
        raw, sources = self.raw(spec, item, item_payload)
        return encode_value(spec, raw, self.mapping, self.timeline), sources

    def raw(
        self, spec: RegistryField, item: Resource | None, item_payload: Any
    ) -> tuple[list[Any], tuple[str, ...]]:
        source = spec.source
        if source is None:
            return [], ()
        pick = source.pick
        if spec.fhirpath is not None:
            if item is not None:
                return _picked(spec.fhirpath(item), pick), (_reference(item),)
            if spec.root_type is None:
                return _picked(spec.fhirpath(self.bundle), pick), ("Bundle",)
            found: list[tuple[list[Any], str]] = []
            pool = self.candidates(spec.root_type, spec.precheck)
            for resource in reversed(pool) if pick == "last" else pool:
                values = [v for v in spec.fhirpath(resource) if v is not None and v != ""]
                if values:
                    found.append((values, _reference(resource)))
                    if pick in ("first", "last"):
                        break  # resources are in time order: the rest cannot win
            return _pick_found(found, "first" if pick == "last" else pick)
        if source.node is not None:
            instant = self.timeline.nodes.get(source.node)
            if instant is None:
                return [], ()
            return [instant], (self.node_refs.get(source.node, f"time node {source.node}"),)
        if source.fact is not None:
            fact = (
                self.timeline.arrival_mode
                if source.fact == "arrival_mode"
                else self.timeline.facts.get(source.fact)
            )
            case_ref = f"EpisodeOfCare/{self.timeline.case_id}"
            return ([fact], (case_ref,)) if fact is not None else ([], ())
        if source.score is not None:
            return self.score(source.score, pick)
        if source.indicator is not None:
            return self.indicator(source.indicator)
        if source.param is not None:
            value = self.params.get(source.param)
            return ([value], (f"setting {source.param}",)) if value else ([], ())
        if source.value is not None:
            return [source.value], ()
        assert spec.derive is not None
        derived = spec.derive(self.payload, item_payload)
        return ([derived], ()) if derived is not None and derived != "" else ([], ())

    def candidates(
        self, resource_type: str, precheck: Callable[[str], bool] | None
    ) -> list[Resource]:
        """The resources of a type a FHIRPath may match, in time order (see prefilter)."""
        resources = self.by_type.get(resource_type, [])
        if precheck is None:
            return resources
        return [r for r in resources if precheck(self.text(r))]

    def text(self, resource: Resource) -> str:
        key = id(resource)
        text = self.texts.get(key)
        if text is None:
            text = self.texts[key] = json.dumps(resource, ensure_ascii=False)
        return text

    def score(self, code: str, pick: str) -> tuple[list[Any], tuple[str, ...]]:
        system, _, value = code.rpartition("|")
        system = system or SCORE_SYSTEM
        found = []
        for observation in self.by_type.get("Observation", []):
            codings = (observation.get("code") or {}).get("coding") or []
            if not any(c.get("system") == system and c.get("code") == value for c in codings):
                continue
            total = observation.get("valueInteger")
            if total is None:
                total = (observation.get("valueQuantity") or {}).get("value")
            if total is not None:
                found.append(([total], _reference(observation)))
        return _pick_found(found, pick)

    def indicator(self, name: str) -> tuple[list[Any], tuple[str, ...]]:
        standard_id, _, indicator_id = name.partition("/")
        catalogue = load_catalogue()
        definition = catalogue.standard(self.timeline.center, standard_id).indicator(indicator_id)
        result = evaluate_indicator(self.timeline, definition)
        if result.seconds is None:
            return [], ()
        ends = [c.key for c in (result.start, result.end) if c is not None]
        refs = tuple(self.node_refs.get(k, f"time node {k}") for k in ends)
        return [result.seconds // 60], refs

    def list_value(self, spec: RegistryField) -> tuple[Any, tuple[str, ...]]:
        assert spec.each is not None and spec.each_type is not None
        pool = self.candidates(spec.each_type, spec.each_precheck)
        chosen = [r for r in pool if spec.each(r)]
        transform = spec.spec.transform
        if transform is not None and transform.max_items is not None:
            chosen = chosen[: transform.max_items]  # the first ones by time
        items: list[dict[str, Any]] = []
        for resource in chosen:
            item: dict[str, Any] = {}
            for field in spec.items:
                if not all(holds(c, self.payload, item) for c in field.when):
                    continue
                value, _ = self.evaluate(field, resource, item)
                if value is None:
                    value = field.spec.default
                if value is not None and value != "":
                    item[field.name] = value
            items.append(item)
        return (items or None), tuple(_reference(r) for r in chosen)


def _picked(values: list[Any], pick: str) -> list[Any]:
    values = [v for v in values if v is not None and v != ""]
    if not values:
        return []
    if pick == "all":
        return values
    if pick == "last":
        return [values[-1]]
    if pick in ("min", "max"):
        return [(min if pick == "min" else max)(values)]
    return [values[0]]


def _pick_found(
    found: Sequence[tuple[list[Any], str]], pick: str
) -> tuple[list[Any], tuple[str, ...]]:
    if not found:
        return [], ()
    if pick == "all":
        return [v for values, _ in found for v in values], tuple(ref for _, ref in found)
    if pick in ("min", "max"):
        choose = min if pick == "min" else max
        best = choose(found, key=lambda pair: pair[0][0])
        return [best[0][0]], (best[1],)
    values, ref = found[-1] if pick == "last" else found[0]
    return [values[0]], (ref,)


# -- encoding ------------------------------------------------------------------------------------


def encode_value(
    spec: RegistryField, raw: list[Any], mapping: RegistryMapping, timeline: CaseTimeline
) -> Any:
    """Raw source values as the registry writes them; None when there is nothing to send."""
    if not raw:
        return None
    transform = spec.spec.transform
    if transform is not None and transform.present:
        raw = [True]
    if transform is not None and transform.age_at is not None:
        at = timeline.nodes.get(transform.age_at) or timeline.activation
        raw = [age for v in raw if (age := _age(v, at, mapping)) is not None]
    if transform is not None and transform.days_until is not None:
        end = timeline.nodes.get(transform.days_until)
        raw = [days for v in raw if (days := _days(v, end, mapping)) is not None]
    coded = [_code(spec, v) for v in raw]
    if spec.spec.type == "strings":
        return [_text(v) for v in coded if v is not None and v != ""] or None
    if spec.spec.multi or (spec.source is not None and spec.source.pick == "all"):
        separator = transform.join if transform and transform.join else "|"
        parts = list(dict.fromkeys(str(v) for v in coded if v is not None and v != ""))
        return separator.join(parts) or None
    return _typed(spec, coded[0], mapping)


def _code(spec: RegistryField, value: Any) -> Any:
    if spec.codes is None:
        return value
    key = _text(value)
    return spec.codes.get(key, key)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float | Decimal) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _typed(spec: RegistryField, value: Any, mapping: RegistryMapping) -> Any:
    kind = spec.spec.type
    transform = spec.spec.transform
    if kind in ("datetime", "date"):
        return _moment(value, kind, transform.format if transform else None, mapping)
    if kind == "int":
        number = _number(value)
        return int(number) if number is not None and number.is_integer() else value
    if kind == "decimal":
        number = _number(value)
        if number is None:
            return value
        places = spec.spec.decimals
        if places is None and transform is not None:
            places = transform.round
        if places is None:
            return number
        rounded = float(round(Decimal(str(number)), places))
        return int(rounded) if places == 0 else rounded
    return _text(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _moment(value: Any, kind: str, pattern: str | None, mapping: RegistryMapping) -> Any:
    strftime = strftime_pattern(pattern) if pattern else None
    if kind == "date":
        strftime = strftime or mapping.date_pattern
        if isinstance(value, str) and len(value) == 10:
            try:
                return date.fromisoformat(value).strftime(strftime)
            except ValueError:
                return value
    instant = value if isinstance(value, datetime) else parse_instant(value)
    if instant is None:
        if kind == "datetime" and isinstance(value, str) and len(value) == 10:
            try:  # a bare date (BIRTHDAY) sent in the datetime form, at midnight [U]
                day = date.fromisoformat(value)
            except ValueError:
                return value
            return datetime(day.year, day.month, day.day, tzinfo=mapping.zone).strftime(
                strftime or mapping.datetime_pattern
            )
        return value
    local = instant.astimezone(mapping.zone)
    return local.strftime(
        strftime or (mapping.datetime_pattern if kind == "datetime" else mapping.date_pattern)
    )


def _days(start: Any, end: datetime | None, mapping: RegistryMapping) -> int | None:
    begin = start if isinstance(start, datetime) else parse_instant(start)
    if begin is None or end is None:
        return None
    days = (end.astimezone(mapping.zone).date() - begin.astimezone(mapping.zone).date()).days
    return days if days >= 0 else None


def _age(born: Any, at: datetime | None, mapping: RegistryMapping) -> int | None:
    if at is None or not isinstance(born, str) or len(born) < 10:
        return None
    try:
        birthday = date.fromisoformat(born[:10])
    except ValueError:
        return None
    day = at.astimezone(mapping.zone).date()
    years = day.year - birthday.year - ((day.month, day.day) < (birthday.month, birthday.day))
    return years if years >= 0 else None
