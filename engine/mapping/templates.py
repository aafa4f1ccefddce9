"""Template files: named, reusable pieces of mapping for a segment or a datatype (CX, XPN, XAD...).

    # mappings/hl7v2/templates/datatypes.yaml
    description: HL7 v2 datatypes to FHIR datatypes
    templates:
      cx_identifier:
        description: CX (PID-3, MRG-1) to Identifier
        param: cx                 # the body reads the field it is given as cx, cx.1, cx.4.1
        body:
          value: ${cx.1}
          system: ${concat('urn:oid:', cx.4.2)}

A mapping lists the files it uses (`templates: [templates/datatypes.yaml]`) and calls a template
with `template: cx_identifier` and `from: PID-3`. Loading here checks the file's structure only;
each use is compiled by the mapping compiler with the parameter bound to its `from` path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.mapping.yamlfile import KeyPath, PositionMap, format_key, load_yaml

__all__ = ["TemplateDef", "load_template_file"]

_FILE_KEYS = {"description", "templates"}
_TEMPLATE_KEYS = {"description", "param", "body"}


@dataclass(frozen=True, slots=True)
class TemplateDef:
    """One named template as written: its parameter name and body, with where it came from."""

    name: str
    file: str
    param: str
    body: Any
    positions: PositionMap
    key: KeyPath  # ("templates", name): where the template sits in its file


def load_template_file(path: Path, *, display_name: str | None = None) -> dict[str, TemplateDef]:
    """Read a template file; ConfigError (file:line key) for unknown keys or a missing body."""
    file = display_name if display_name is not None else str(path)
    data, positions = load_yaml(path, display_name=file)

    def error(message: str, key: KeyPath) -> ConfigError:
        line = next((positions[key[:end]] for end in range(len(key), -1, -1)
                     if key[:end] in positions), None)  # fmt: skip
        return ConfigError(message, file=file, line=line, key=format_key(key) or None)

    if not isinstance(data, dict) or not isinstance(data.get("templates"), dict):
        raise error("a template file has `templates:` naming one or more templates", ())
    for key in data:
        if key not in _FILE_KEYS:
            raise error(f"unknown key (expected {', '.join(sorted(_FILE_KEYS))})", (key,))
    templates: dict[str, TemplateDef] = {}
    for name, spec in data["templates"].items():
        where: KeyPath = ("templates", name)
        if not isinstance(spec, dict):
            raise error("a template is a set of keys: param, body, description", where)
        for key in spec:
            if key not in _TEMPLATE_KEYS:
                raise error(
                    f"unknown key (expected {', '.join(sorted(_TEMPLATE_KEYS))})", where + (key,)
                )
        if "body" not in spec:
            raise error("needs a `body`: what the template produces", where)
        param = spec.get("param")
        if not isinstance(param, str):
            raise error("needs a `param`: the name the body uses for its field, e.g. cx", where)
        templates[name] = TemplateDef(name, file, param, spec["body"], positions, where)
    return templates
