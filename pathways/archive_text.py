"""The patient archive as text for a clinician or QC nurse: sections, an aligned timeline with
its intervals, Chinese labels, and what is missing. The JSON (`pathways.archive`) is the source.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_archive"]

NONE = "—"
TIMELINE_COLUMNS = (
    "时间 time", "节点 node", "距上一节点", "距入门 door", "距FMC", "距发病 onset", "来源 source",
)  # fmt: skip


def render_archive(archive: Mapping[str, Any]) -> str:
    """The whole archive, one section after another."""
    lines: list[str] = []
    _header(lines, archive)
    _emergency(lines, archive["emergency"])
    _diagnosis(lines, archive["diagnosis"])
    _treatment(lines, archive["treatment"])
    _outcome(lines, archive["outcome"])
    _timeline(lines, archive["timeline"])
    _scores(lines, archive["scores"])
    _missing(lines, archive["missing"])
    return "\n".join(lines) + "\n"


def _header(lines: list[str], archive: Mapping[str, Any]) -> None:
    case = archive["case"]
    lines.append(
        f"病例档案 Case {case['resource']}  {case['center_label'] or ''} {case['center'] or '?'}"
        f"  status {case['status'] or '?'}"
    )
    patient = archive["patient"]
    if patient is None:
        lines.append(f"患者 Patient: {NONE} (not in the store)")
    else:
        ids = ", ".join(str(i["value"]) for i in patient["identifiers"])
        lines.append(
            f"患者 Patient: {patient['name'] or NONE}  {patient['gender'] or ''}  "
            f"born {patient['birth_date'] or NONE}  ({patient['resource']}"
            + (f"; {ids})" if ids else ")")
        )
    lines.append(f"病例期间 Period: {case['start'] or NONE} → {case['end'] or 'open'}")
    if case["facts"]:
        facts = "  ".join(f"{name}={_text(value)}" for name, value in case["facts"].items())
        lines.append(f"病例事实 Facts: {facts}")


def _emergency(lines: list[str], emergency: Mapping[str, Any]) -> None:
    _title(lines, "急救信息 Emergency")
    mode = emergency["arrival_mode"]
    label = emergency["arrival_mode_label"]
    lines.append(f"来院方式 Arrival: {label or NONE} ({mode or 'unknown'})")
    prehospital = emergency["prehospital"]
    if prehospital["visits"] or prehospital["nodes"]:
        lines.append("院前 Prehospital (120):")
        for node in prehospital["nodes"]:
            lines.append(f"  {node['time']}  {node['label'] or node['key']} ({node['key']})")
        _rows(lines, [[v["time"], v["name"], v["value"]] for v in prehospital["vitals"]], "  ")
        for ecg in prehospital["ecgs"]:
            lines.append(f"  ECG {ecg['acquired'] or NONE}: {ecg['reading'] or NONE}")
    lines.append("就诊 Visits:")
    for visit in emergency["visits"]:
        where = " → ".join(str(p["location"]) for p in visit["locations"] if p["location"])
        lines.append(
            f"  {visit['class'] or '?':4} {visit['start'] or NONE} → {visit['end'] or 'open'}"
            f"  {visit['status'] or ''}  {where}".rstrip()
        )
    if not emergency["visits"]:
        lines.append(f"  {NONE}")
    lines.append("生命体征 Vitals (first · last · lowest · highest, n):")
    _rows(
        lines,
        [
            [
                v["name"],
                _reading(v["first"]),
                _reading(v["last"]),
                v["lowest"]["value"] if v["lowest"] else NONE,
                v["highest"]["value"] if v["highest"] else NONE,
                f"n={v['count']}",
            ]
            for v in emergency["vitals"]
        ],
        "  ",
    )
    lines.append("心电图 ECGs:")
    for ecg in emergency["ecgs"]:
        lines.append(
            f"  acquired {ecg['acquired'] or NONE}  signed {ecg['signed'] or NONE}"
            f"  {ecg['reading'] or NONE}"
        )
        if ecg["conclusions"]:
            lines.append(f"    conclusions: {'; '.join(ecg['conclusions'])}")
        if ecg["measurements"]:
            shown = ", ".join(f"{m['name']} {m['value']}" for m in ecg["measurements"])
            lines.append(f"    measurements: {shown}")
    if not emergency["ecgs"]:
        lines.append(f"  {NONE}")
    lines.append("检验 Labs (collected · reported):")
    _rows(
        lines,
        [
            [lab["collected"], lab["reported"], lab["name"], lab["value"], lab["flag"] or ""]
            for lab in emergency["labs"]
        ],
        "  ",
    )
    lines.append("影像 Imaging (started · reported):")
    _rows(
        lines,
        [
            [i["started"], i["reported"], i["modality"] or "", i["name"], i["conclusion"]]
            for i in emergency["imaging"]
        ],
        "  ",
    )


def _diagnosis(lines: list[str], diagnosis: Mapping[str, Any]) -> None:
    _title(lines, "诊断 Diagnosis")
    lines.append(f"病例诊断 Case diagnosis: {diagnosis['case_diagnosis'] or NONE}")
    _rows(
        lines,
        [
            [c["recorded"], c["name"], (c["code"] or {}).get("code"), c["verification"]]
            for c in diagnosis["conditions"]
        ],
        "  ",
    )


def _treatment(lines: list[str], treatment: Mapping[str, Any]) -> None:
    _title(lines, "治疗 Treatment")
    lines.append(f"再灌注 Reperfusion: {treatment['reperfusion'] or NONE}")
    lines.append("操作 Procedures:")
    _rows(
        lines,
        [[p["start"], p["end"], p["name"], p["status"]] for p in treatment["procedures"]],
        "  ",
    )
    lines.append("用药 Drugs given:")
    _rows(
        lines,
        [
            [m["time"], m["name"], m["dose"], m["route"], m["status"]]
            for m in treatment["medications"]
        ],
        "  ",
    )


def _outcome(lines: list[str], outcome: Mapping[str, Any]) -> None:
    _title(lines, "转归 Outcome")
    disposition = outcome["disposition"]
    lines.append(f"病例状态 Case status: {outcome['case_status'] or NONE}")
    lines.append(f"出院 Discharge: {outcome['discharge_time'] or NONE}")
    if disposition:
        lines.append(f"去向 Disposition: {disposition['display'] or disposition['code']}")
    died = "yes " + (outcome["death_time"] or "") if outcome["died"] else "no"
    lines.append(f"死亡 Died: {died.strip()}")


def _timeline(lines: list[str], timeline: Mapping[str, Any]) -> None:
    _title(lines, "时间轴 Timeline")
    rows: list[list[Any]] = [list(TIMELINE_COLUMNS)]
    notes: list[tuple[int, str]] = []
    for node in timeline["nodes"]:
        rows.append(
            [
                node["time"],
                f"{node['label'] or ''} {node['key']}".strip(),
                _span(node["since_previous"]),
                _span(node["from_door"]),
                _span(node["from_fmc"]),
                _span(node["from_onset"]),
                ", ".join(node["sources"]) or "",
            ]
        )
        for other in node["other_sources"]:
            notes.append(
                (
                    len(rows) - 1,
                    f"    other source {other['source'] or '?'}: {other['time']} "
                    f"({_span(other['difference'])} from the node)",
                )
            )
    if len(rows) == 1:
        lines.append(f"  {NONE} (no authoritative time node)")
    else:
        table = _table(rows)
        for number, line in enumerate(table):
            lines.append("  " + line)
            lines += [note for row, note in notes if row == number]
    for pending in timeline["unresolved"]:
        times = ", ".join(f"{c['source'] or '?'} {c['time']}" for c in pending["candidates"])
        lines.append(f"  unresolved {pending['label'] or ''} {pending['key']}: {times}")
    lines.append(f"  (labels from {timeline['labels_from']})")


def _scores(lines: list[str], scores: Sequence[Mapping[str, Any]]) -> None:
    _title(lines, "评分 Scores")
    for score in scores:
        total = score["total"] if score["total"] is not None else score["absent_reason"] or NONE
        extra = "  ".join(
            part for part in (score["band"], score["phase"], score["version"]) if part
        )
        lines.append(f"  {score['time'] or NONE}  {score['name']}: {total}  {extra}".rstrip())
        if score["items"]:
            items = ", ".join(
                f"{i['name'] or i['code']} {i['answer'] if i['answer'] is not None else ''}".strip()
                for i in score["items"]
            )
            lines.append(f"    items: {items}")
    if not scores:
        lines.append(f"  {NONE}")


def _missing(lines: list[str], missing: Sequence[Mapping[str, str]]) -> None:
    _title(lines, "缺项 Missing")
    for gap in missing:
        lines.append(f"  {gap['item']}: {gap['reason']}")
    if not missing:
        lines.append("  nothing expected is missing")


def _title(lines: list[str], title: str) -> None:
    lines += ["", f"== {title} =="]


def _rows(lines: list[str], rows: Sequence[Sequence[Any]], indent: str) -> None:
    if not rows:
        lines.append(f"{indent}{NONE}")
        return
    lines += [indent + line for line in _table(rows)]


def _table(rows: Sequence[Sequence[Any]]) -> list[str]:
    """Rows as columns padded to the widest cell; Chinese characters count as two columns."""
    cells = [[_text(cell) for cell in row] for row in rows]
    columns = max(len(row) for row in cells)
    widths = [max(_width(row[i]) for row in cells if i < len(row)) for i in range(columns)]
    return [
        "  ".join(_pad(cell, widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells
    ]


def _text(value: Any) -> str:
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _span(interval: Mapping[str, Any] | None) -> str:
    return str(interval["display"]) if interval else NONE


def _reading(reading: Mapping[str, Any] | None) -> str:
    if not reading:
        return NONE
    time = str(reading["time"] or "")[11:16]  # hh:mm of the shown instant
    return f"{reading['value'] or NONE} @{time}" if time else str(reading["value"] or NONE)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))
