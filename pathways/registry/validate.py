"""Local validation of a registry record, mirroring the platform's (registries.md C.3): required
and conditionally required fields, type, length, decimals, code domain, range, list caps, the
time order of the file's chains, intervals that must match their recomputation, and sub-blocks
that must match their selector. Messages in the platform's `块:消息;` style."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pathways.registry.conditions import holds
from pathways.registry.mapping import RegistryField, RegistryMapping, load_registry_mapping
from pathways.registry.record import RegistryProblem, RegistryRecord, Severity

__all__ = ["parse_local", "validate_record"]


def validate_record(
    record: RegistryRecord, mapping: RegistryMapping | None = None
) -> list[RegistryProblem]:
    """Every problem the platform would reject the record for, in the mapping's field order,
    then the cross-field ones. An empty list means ready to upload."""
    mapping = mapping or load_registry_mapping(Path(record.mapping_file))
    check = _Check(mapping, record)
    for spec in mapping.fields:
        check.field(spec)
    check.time_order()
    check.intervals()
    check.sub_blocks()
    return check.problems


def parse_local(text: Any, mapping: RegistryMapping) -> datetime | None:
    """A record datetime (`2024-03-05T08:51:12`, local, no offset) as an aware instant."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, mapping.datetime_pattern).replace(tzinfo=mapping.zone)
    except ValueError:
        return None


class _Check:
    def __init__(self, mapping: RegistryMapping, record: RegistryRecord) -> None:
        self.mapping = mapping
        self.record = record
        self.payload = record.payload
        self.problems: list[RegistryProblem] = []

    def add(
        self,
        spec: RegistryField,
        where: str,
        label: str,
        text: str,
        kind: str,
        severity: Severity = "error",
    ) -> None:
        block_label = self.mapping.block_labels.get(spec.block, spec.block)
        trace = self.record.traces.get(spec.key)
        if trace is not None and trace.sources and kind != "required":
            source = ", ".join(trace.sources)
        else:
            source = spec.fill
        self.problems.append(
            RegistryProblem(
                block=spec.block,
                field=where,
                message=f"{block_label}:{label}{text};",
                source=source,
                severity=severity,
                kind=kind,
            )
        )

    def field(self, spec: RegistryField) -> None:
        value = self.payload.get(spec.block, {}).get(spec.name)
        applies = all(holds(c, self.payload) for c in spec.when)
        if _absent(value):
            if applies and self.required(spec, None):
                self.add(spec, spec.name, spec.label, "必填", "required")
            return
        self.value(spec, value, spec.name, spec.label)
        if spec.spec.type == "list" and isinstance(value, list):
            self.items(spec, value)

    def required(self, spec: RegistryField, item: Any) -> bool:
        if spec.spec.required:
            return True
        return spec.required_when is not None and holds(spec.required_when, self.payload, item)

    def items(self, spec: RegistryField, items: list[Any]) -> None:
        cap = spec.spec.transform.max_items if spec.spec.transform else None
        if cap is not None and len(items) > cap:
            self.add(spec, spec.name, spec.label, f"最多{cap}条", "list")
        for number, item in enumerate(items, 1):
            if not isinstance(item, Mapping):
                self.add(
                    spec, f"{spec.name}[{number}]", spec.label, f"第{number}条应为对象", "type"
                )
                continue
            for sub in spec.items:
                where = f"{spec.name}[{number}].{sub.name}"
                label = f"{spec.label}第{number}条{sub.label}"
                value = item.get(sub.name)
                if _absent(value):
                    applies = all(holds(c, self.payload, item) for c in sub.when)
                    if applies and self.required(sub, item):
                        self.add(sub, where, label, "必填", "required")
                    continue
                self.value(sub, value, where, label)

    def value(self, spec: RegistryField, value: Any, where: str, label: str) -> None:
        field_spec = spec.spec
        kind = field_spec.type
        if kind == "list":
            if not isinstance(value, list):
                self.add(spec, where, label, "应为列表", "type")
            return
        if kind == "strings":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                self.add(spec, where, label, "应为文本列表", "type")
            return
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                self.add(spec, where, label, "应为整数", "type")
                return
        elif kind == "decimal":
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.add(spec, where, label, "应为数字", "type")
                return
            places = field_spec.decimals
            if places is not None and _places(value) > places:
                self.add(spec, where, label, f"最多保留{places}位小数", "decimals")
        elif kind in ("datetime", "date"):
            pattern = self.mapping.datetime_pattern if kind == "datetime" else None
            pattern = pattern or self.mapping.date_pattern
            if not isinstance(value, str) or not _matches(value, pattern):
                shown = "yyyy-MM-ddTHH:mm:ss" if kind == "datetime" else "yyyy-MM-dd"
                self.add(spec, where, label, f"时间格式应为{shown}(北京时间,不带时区)", "type")
                return
        elif not isinstance(value, str):
            self.add(spec, where, label, "应为文本", "type")
            return
        if kind in ("int", "decimal"):
            number = float(value)
            low, high = field_spec.min, field_spec.max
            if (low is not None and number < low) or (high is not None and number > high):
                self.add(spec, where, label, f"应在{_num(low)}到{_num(high)}之间", "range")
        if field_spec.length is not None and len(str(value)) > field_spec.length:
            self.add(spec, where, label, f"长度不能超过{field_spec.length}", "length")
        if spec.domain is not None:
            codes = str(value).split("|") if field_spec.multi else [str(value)]
            wrong = [code for code in codes if code not in spec.domain]
            if wrong:
                allowed = ",".join(sorted(spec.domain, key=_code_order))
                self.add(
                    spec, where, label, f"的值{'|'.join(wrong)}不在值域内({allowed})", "values"
                )

    # -- cross-field ------------------------------------------------------------------------

    def instant(self, key: str) -> datetime | None:
        """The instant of a datetime field; `Block.LIST.FIELD`: its earliest item's."""
        parts = key.split(".")
        value = self.payload.get(parts[0], {}).get(parts[1])
        if len(parts) == 3:
            items = value if isinstance(value, list) else []
            found = [
                parse_local(i.get(parts[2]), self.mapping) for i in items if isinstance(i, Mapping)
            ]
            known = [f for f in found if f is not None]
            return min(known) if known else None
        return parse_local(value, self.mapping)

    def time_order(self) -> None:
        reported: set[tuple[str, str]] = set()
        for chain in self.mapping.time_order:
            present = [(key, self.instant(key)) for key in chain]
            known = [(key, at) for key, at in present if at is not None]
            for index, (later_key, later) in enumerate(known):
                for earlier_key, earlier in known[:index]:
                    if later < earlier and (earlier_key, later_key) not in reported:
                        reported.add((earlier_key, later_key))
                        self.order_problem(earlier_key, later_key)

    def order_problem(self, earlier_key: str, later_key: str) -> None:
        later = self.mapping.field(later_key)
        earlier = self.mapping.field(earlier_key)
        assert later is not None and earlier is not None
        where = later_key.split(".", 1)[1]
        self.add(later, where, later.label, f"不能早于{earlier.label}", "order")

    def intervals(self) -> None:
        for check in self.mapping.interval_checks:
            spec = self.mapping.field(check.field)
            assert spec is not None
            value = self.payload.get(spec.block, {}).get(spec.name)
            if _absent(value):
                continue
            starts = [at for key in check.start if (at := self.instant(key)) is not None]
            ends = [at for key in check.end if (at := self.instant(key)) is not None]
            if not starts or not ends:
                continue
            minutes = int((min(ends) - starts[0]).total_seconds() // 60)
            try:
                given = Decimal(str(value))
            except InvalidOperation:
                given = None
            if given is None or given != minutes:
                text = f"应为{minutes}分钟(按{check.label}的起止时间重新计算)"
                self.add(spec, spec.name, spec.label, text, "interval")

    def sub_blocks(self) -> None:
        for sub in self.mapping.sub_blocks:
            selector = self.mapping.field(sub.selector)
            assert selector is not None
            chosen = self.payload.get(selector.block, {}).get(selector.name)
            own = sub.prefixes.get(str(chosen)) if chosen is not None else None
            others = [p for p in sub.prefixes.values() if p != own]
            for name in self.payload.get(sub.block, {}):
                if own is not None and name.startswith(own):
                    continue
                if any(name.startswith(prefix) for prefix in others):
                    spec = self.mapping.field(f"{sub.block}.{name}")
                    if spec is None:
                        continue
                    text = f"与{selector.label}({chosen})不符,不应填写"
                    self.add(spec, name, spec.label, text, "sub_block")


def _absent(value: Any) -> bool:
    return value is None or value == "" or value == []


def _places(value: float | int) -> int:
    exponent = Decimal(str(value)).normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _matches(text: str, pattern: str) -> bool:
    try:
        datetime.strptime(text, pattern)  # noqa: DTZ007 - only the shape is checked
    except ValueError:
        return False
    return True


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def _code_order(code: str) -> tuple[int, str]:
    return (int(code), code) if code.isdigit() else (10**6, code)
