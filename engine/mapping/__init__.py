"""The mapping language: YAML mapping files that turn one parsed input into one JSON document.

`load_mapping` compiles a file once (ConfigError names file:line key); `Mapping.apply` maps a
`Document` (MappingError names the rule and the input position). See docs/mapping-language.md.
"""

from __future__ import annotations

from engine.mapping.document import Document
from engine.mapping.expression import CompileContext, Scope, compile_expression
from engine.mapping.functions import format_date, format_datetime, make_id
from engine.mapping.mapping import DEFAULT_TIMEZONE, Mapping, load_mapping, parse_timezone
from engine.mapping.tables import CodeTable, TableRow, load_table
from engine.mapping.yamlfile import (
    PositionMap,
    format_key,
    load_yaml,
    validation_error_to_config_error,
    validation_error_to_config_errors,
)

__all__ = [
    "DEFAULT_TIMEZONE",
    "CodeTable",
    "CompileContext",
    "Document",
    "Mapping",
    "PositionMap",
    "Scope",
    "TableRow",
    "compile_expression",
    "format_date",
    "format_datetime",
    "format_key",
    "load_mapping",
    "load_table",
    "load_yaml",
    "make_id",
    "parse_timezone",
    "validation_error_to_config_error",
    "validation_error_to_config_errors",
]
