"""The arrows of DESIGN.md hold: which package may import which, no reaching into another
package's `_private` modules, a docstring on every module, `__all__` lists that tell the truth,
and every input error has its HL7 ERR-3 code."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters import hl7v2
from engine import errors

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "adapters", "fhir_store", "pathways", "devices")
# The top-level packages of this repository (DESIGN.md, "Layout"), for the `_private` rule.
FIRST_PARTY = frozenset({*PACKAGES, "devices", "pathways", "console"})
# What each package must never import: the arrows point inward (DESIGN.md, "Rules of the house").
FORBIDDEN = {
    "engine": {
        "adapters": "engine/ knows no protocol: it finds adapters through entry points",
        "fhir_store": "engine/ knows no FHIR store: it finds routers through entry points",
        "pathways": "engine/ knows no clinical concept: it finds subscribers through entry points",
    },
    "fhir_store": {
        "engine": "fhir_store/ runs alone: it knows nothing of channels or the engine",
        "adapters": "fhir_store/ runs alone: it knows nothing of HL7 v2 or adapters",
        "pathways": "fhir_store/ runs alone: the pathways are a subscriber outside it",
    },
    "pathways": {
        "adapters": "pathways/ reads FHIR and writes through channels, never through a protocol",
    },
    "devices": {
        "adapters": "devices/ is called by the channels' adapters, never the other way round",
        "pathways": "devices/ reads signals; pathways decide what a reading means for a case",
    },
}


@dataclass(frozen=True, slots=True)
class Module:
    path: Path  # relative to ROOT
    name: str  # dotted: engine.mapping.expression
    package: str  # the top-level package: engine
    is_package: bool  # an __init__.py
    tree: ast.Module


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the absolute module imported from (relative imports resolved)
    names: tuple[str, ...]  # for `from X import a, b`: ("a", "b"); for `import X`: ()
    line: int


def _modules() -> list[Module]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            parts = list(relative.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            tree = ast.parse(path.read_bytes(), filename=str(relative))
            found.append(Module(relative, ".".join(parts), package, is_package, tree))
    return found


MODULES = _modules()


def _imports(module: Module) -> Iterator[Import]:
    """Every import in the module, at any depth: top level, in functions, under TYPE_CHECKING."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            yield Import(_absolute(module, node.module, node.level), names, node.lineno)


def _absolute(module: Module, target: str | None, level: int) -> str:
    if level == 0:
        return target or ""
    base = module.name.split(".")
    if not module.is_package:
        base.pop()  # a module's relative imports start from its package
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _where(module: Module, line: int) -> str:
    return f"{module.path}:{line}"


def test_modules_are_found() -> None:
    assert {m.package for m in MODULES} == set(PACKAGES)
    assert any(m.name == "adapters.mllp" for m in MODULES)


def _arrow_violations(modules: list[Module]) -> list[str]:
    violations = []
    for module in modules:
        forbidden = FORBIDDEN.get(module.package, {})
        for imported in _imports(module):
            top = imported.module.split(".")[0]
            if top in forbidden:
                violations.append(
                    f"{_where(module, imported.line)} imports {imported.module}: {forbidden[top]}"
                )
    return violations


def _private_violations(modules: list[Module]) -> list[str]:
    violations = []
    for module in modules:
        for imported in _imports(module):
            parts = imported.module.split(".")
            if parts[0] == module.package or parts[0] not in FIRST_PARTY:
                continue
            private = [p for p in parts[1:] if _is_private(p)]
            private += [n for n in imported.names if _is_private(n)]
            if private:
                violations.append(
                    f"{_where(module, imported.line)} imports {', '.join(private)} from "
                    f"{imported.module}: other packages may use public names only"
                )
    return violations


def test_imports_point_inward() -> None:
    violations = _arrow_violations(MODULES)
    assert not violations, "\n".join(violations)


def test_no_module_imports_another_packages_private_modules() -> None:
    violations = _private_violations(MODULES)
    assert not violations, "\n".join(violations)


def _module(path: str, source: str) -> Module:
    parts = path.removesuffix(".py").split("/")
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return Module(Path(path), ".".join(parts), parts[0], is_package, ast.parse(source))


def test_the_checks_catch_what_they_are_for() -> None:
    """The rules above on made-up modules, so a green run means something."""
    engine = _module(
        "engine/mapping/thing.py",
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from fhir_store import FhirStore\n"
        "def f() -> None:\n    import adapters.mllp\n"
        "from ..errors import ConfigError\n",
    )
    store = _module("fhir_store/_x.py", "from engine.errors import ConfigError\n")
    adapter = _module(
        "adapters/thing.py",
        "from fhir_store._storage import x\n"
        "from fhir_store import _bundle, FhirStore\n"
        "from engine.mapping._hidden import y\n"
        "from adapters._own import z\n"
        "from . import _sibling\n",
    )
    assert _absolute(engine, "errors", 2) == "engine.errors"
    assert _arrow_violations([engine, store, adapter]) == [
        "engine/mapping/thing.py:3 imports fhir_store: " + FORBIDDEN["engine"]["fhir_store"],
        "engine/mapping/thing.py:5 imports adapters.mllp: " + FORBIDDEN["engine"]["adapters"],
        "fhir_store/_x.py:1 imports engine.errors: " + FORBIDDEN["fhir_store"]["engine"],
    ]
    assert [v.split(": ")[0] for v in _private_violations([engine, store, adapter])] == [
        "adapters/thing.py:1 imports _storage from fhir_store._storage",
        "adapters/thing.py:2 imports _bundle from fhir_store",
        "adapters/thing.py:3 imports _hidden from engine.mapping._hidden",
    ]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: str(m.path))
def test_every_module_opens_with_a_docstring(module: Module) -> None:
    docstring = ast.get_docstring(module.tree)
    assert docstring and docstring.strip(), f"{module.path}: the first statement is no docstring"


def _declared_all(tree: ast.Module) -> tuple[list[str], int] | None:
    """The names in a top-level `__all__ = [...]` (or tuple) and its line; None without one."""
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            assert isinstance(value, ast.List | ast.Tuple), "__all__ must be a literal list"
            names = []
            for element in value.elts:
                assert isinstance(element, ast.Constant) and isinstance(element.value, str)
                names.append(element.value)
            return names, node.lineno
    return None


def _top_level_names(body: list[ast.stmt]) -> set[str]:
    """Names a module binds at import time, looking into top-level `if` and `try` blocks."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.If):
            names |= _top_level_names(node.body) | _top_level_names(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                names |= _top_level_names(block)
            for handler in node.handlers:
                names |= _top_level_names(handler.body)
    return names


MODULES_WITH_ALL = [m for m in MODULES if _declared_all(m.tree) is not None]


@pytest.mark.parametrize("module", MODULES_WITH_ALL, ids=lambda m: str(m.path))
def test_all_lists_only_names_the_module_defines(module: Module) -> None:
    declared = _declared_all(module.tree)
    assert declared is not None
    names, line = declared
    defined = _top_level_names(module.tree.body)
    folder = (ROOT / module.path).parent
    missing = [
        n
        for n in names
        if n not in defined
        and not (module.is_package and ((folder / f"{n}.py").is_file() or (folder / n).is_dir()))
    ]
    assert not missing, f"{module.path}:{line} __all__ names what it does not define: {missing}"
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"{module.path}:{line} __all__ lists twice: {duplicates}"


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_all_exports_names_that_really_exist(package: str) -> None:
    imported = importlib.import_module(package)
    exported = getattr(imported, "__all__", None)
    if exported is None:
        pytest.skip(f"{package}/__init__.py has no __all__")
    missing = [name for name in exported if not hasattr(imported, name)]
    assert not missing, f"{package}/__init__.py __all__ names what is not there: {missing}"


# --- every input error has an ERR-3 code (HL7 table 0357) ----------------------------------------

TABLE_0357 = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "104": "Value too long",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}


def _family(cls: type[errors.InputError]) -> Iterator[type[errors.InputError]]:
    """The class and all its subclasses, at any depth."""
    yield cls
    for sub in cls.__subclasses__():
        yield from _family(sub)


INPUT_ERRORS: list[type[errors.InputError]] = sorted(
    {
        cls
        for cls in _family(errors.InputError)
        if cls.__module__ == errors.__name__ or cls.__module__.startswith(hl7v2.__name__)
    },
    key=lambda cls: f"{cls.__module__}.{cls.__name__}",
)


def _instance(cls: type[errors.InputError]) -> errors.InputError:
    if issubclass(cls, errors.DecodeError):
        return cls("bytes are not valid", charset="gb18030", offset=12, location="PID-5")
    return cls("something is wrong", location="PID-7")


def test_input_errors_are_found_in_both_modules() -> None:
    modules = {cls.__module__.split("._")[0] for cls in INPUT_ERRORS}
    assert modules == {"engine.errors", "adapters.hl7v2"}, modules


@pytest.mark.parametrize("cls", INPUT_ERRORS, ids=lambda cls: cls.__qualname__)
def test_every_input_error_maps_to_an_err3_code(cls: type[errors.InputError]) -> None:
    code, text = hl7v2.error_code(_instance(cls))
    assert code in TABLE_0357, f"{cls.__qualname__}: {code} is not in HL7 table 0357"
    assert text == TABLE_0357[code], f"{cls.__qualname__}: ERR-3.2 {text!r} for {code}"
    if cls is not errors.InputError:
        # 207 is the fallback for errors nobody mapped: a known kind of input error needs its own.
        assert code != "207", f"{cls.__qualname__} falls back to 207 (application internal error)"
    documented = re.search(r"ERR-3 (\d+)", cls.__doc__ or "")
    if documented:
        assert code == documented.group(1), (
            f"{cls.__qualname__}: the docstring says ERR-3 {documented.group(1)}, "
            f"error_code() gives {code}"
        )


def test_every_test_file_is_under_the_suites_testpaths() -> None:
    # pyproject.toml lists the test folders slowest first (for the workers' scheduling); a test
    # file outside them would silently never run.
    import tomllib

    paths = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"][
        "ini_options"
    ]["testpaths"]
    outside = [
        str(file.relative_to(ROOT))
        for file in (ROOT / "tests").rglob("test_*.py")
        if not any(file.relative_to(ROOT).as_posix().startswith(path) for path in paths)
    ]
    assert outside == []
