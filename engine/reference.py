"""The analyst reference for channel files, rendered from the pydantic models themselves.

`docs/channel-reference.md` is this module's output (`greenchannel channels reference`), and a
test fails when the two differ, so the reference cannot drift from what the engine accepts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from engine.channels import (
    ChannelFileBase,
    DestinationSpecBase,
    PartitionSpec,
    RetryPolicy,
    TransformerSpec,
)
from engine.plugins import Plugins

__all__ = ["render_reference"]


def _type_name(field: FieldInfo) -> str:
    text = str(field.annotation).replace("typing.", "").replace("NoneType", "None")
    for prefix in ("<class '", "'>"):
        text = text.replace(prefix, "")
    text = text.split(".")[-1] if "[" not in text else text
    return text.replace("|", "\\|")


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return "(see below)"
    if field.default is PydanticUndefined or field.default is None:
        return "—"
    if field.default == "":
        return '`""`'
    return f"`{field.default}`"


def _table(model: type[BaseModel], *, skip: tuple[str, ...] = ()) -> list[str]:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {_type_name(field)} | {_default(field)} | {description} |")
    return lines


def render_reference(plugins: Plugins) -> str:
    """Markdown: the channel file's keys, then each installed connector's."""
    out: list[str] = [
        "# Channel file reference",
        "",
        "Generated from the engine's models by `greenchannel channels reference`; do not edit.",
        "",
        "## Top level",
        "",
        *_table(ChannelFileBase),
        "| `source` | connector | required | Where messages come from (see sources below). |",
        "| `destinations` | list | `[]` | Where messages go, each with its own queue. |",
        "",
        "## `transformer` (channel or destination)",
        "",
        *_table(TransformerSpec),
        "",
        "## `partition`",
        "",
        *_table(PartitionSpec),
        "",
        "## `destinations[]`",
        "",
        *_table(DestinationSpecBase),
        "| `connector` | connector | required | Where to deliver (see destinations below). |",
        "",
        "## `destinations[].retry`",
        "",
        *_table(RetryPolicy),
        "",
    ]
    sections: tuple[tuple[str, dict[str, Any]], ...] = (
        ("Sources", dict(plugins.sources)),
        ("Destinations", dict(plugins.destinations)),
    )
    for title, factories in sections:
        out.append(f"## {title}")
        out.append("")
        for kind, factory in sorted(factories.items()):
            model: Any = factory.config_model
            out.append(f"### `kind: {kind}`")
            out.append("")
            if model.__doc__:
                out.append(" ".join(model.__doc__.split()))
                out.append("")
            out.extend(_table(model, skip=("kind",)))
            out.append("")
    return "\n".join(out).rstrip() + "\n"
