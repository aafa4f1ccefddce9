"""The safe expression language inside `${ ... }`: a hand-written tokenizer and recursive-descent
parser, compiled once at load time into closures over a `Scope`.

There is no `eval`, no attribute access and no way to name anything outside the fixed function
table; expressions are bounded in length and nesting. Grammar (lowest precedence first):

    or      := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | compare
    compare := default (('=='|'!='|'<'|'<='|'>'|'>=') default | 'not'? 'in' default)?
    default := primary ('??' primary)*
    primary := literal | path | name | name '(' args ')' | '(' or ')' | '[' args ']'
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from engine.errors import ConfigError, MappingError
from engine.mapping.document import Document
from engine.mapping.functions import (
    VALUE_FUNCTIONS,
    ValueProblem,
    format_datetime,
    is_empty,
)
from engine.mapping.tables import CodeTable

__all__ = [
    "MAX_EXPRESSION_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "Call",
    "CompileContext",
    "Evaluator",
    "ListNode",
    "Node",
    "PathNode",
    "Scope",
    "compile_expression",
    "compile_node",
    "is_truthy",
    "parse_expression",
]

MAX_EXPRESSION_LENGTH = 4000
MAX_EXPRESSION_DEPTH = 32

_TOKEN = re.compile(
    r"""
     (?P<ws>\s+)
    |(?P<hl7>[A-Z][A-Z0-9]{2}(?:\[\d+\])?(?:-\d+(?:\[\d+\])?(?:\.\d+){0,2})?)(?![A-Za-z0-9_.\[\-])
    |(?P<json>[$@](?:\.[^\s.\[\]()'",=!<>?]+|\[(?:-?\d+|'(?:[^'\\]|\\.)*')\])*)
    |(?P<num>-?\d+(?:\.\d+)?)(?![A-Za-z0-9_.])
    |(?P<str>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
    |(?P<param>[a-z_][a-z0-9_]*(?:\.\d+){1,2})(?![A-Za-z0-9_.])
    |(?P<name>[a-z_][A-Za-z0-9_]*)
    |(?P<op>\?\?|==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}
_COMPARE = {"==", "!=", "<", "<=", ">", ">="}

Evaluator = Callable[["Scope"], Any]


class Scope:
    """What an expression sees while one input is mapped: the current document, names, zone."""

    __slots__ = ("document", "names", "position", "refs", "trail", "zone")

    def __init__(
        self,
        document: Document,
        names: dict[str, Any],
        zone: tzinfo,
        refs: dict[str, Any],
        trail: str = "",
        position: int = 0,
    ) -> None:
        self.document = document
        self.names = names
        self.zone = zone
        self.refs = refs
        self.trail = trail
        self.position = position


@dataclass(frozen=True)
class CompileContext:
    """Where an expression sits (for errors) and what it may refer to."""

    file: str = "<expression>"
    line: int | None = None
    rule: str = ""
    names: frozenset[str] = frozenset()
    tables: Mapping[str, CodeTable] = field(default_factory=dict)
    refs: frozenset[str] = frozenset()
    # Names bound to a bare path (`let: {dob: "${PID-7}"}`): errors then name that position.
    name_paths: Mapping[str, str] = field(default_factory=dict)
    # A template's parameter and the input path it stands for (`cx` → `PID-3`): `cx.4.1`
    # is then the path `PID-3.4.1`.
    path_params: Mapping[str, str] = field(default_factory=dict)
    # Called for a table name that is not loaded yet; returns it or raises ConfigError.
    table_loader: Callable[[str], CodeTable] | None = None

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, line=self.line, key=self.rule or None)


# --- syntax tree --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """Base of the syntax tree; `column` is 1-based within the expression."""

    column: int


@dataclass(frozen=True, slots=True)
class Literal(Node):
    value: Any


@dataclass(frozen=True, slots=True)
class PathNode(Node):
    path: str


@dataclass(frozen=True, slots=True)
class Name(Node):
    name: str


@dataclass(frozen=True, slots=True)
class ListNode(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Call(Node):
    function: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    column: int


def _tokenize(source: str, ctx: CompileContext) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None or match.end() == pos:
            raise ctx.error(f"unexpected character at column {pos + 1} of the expression")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Token(kind, match.group(), pos + 1))
        pos = match.end()
    tokens.append(_Token("end", "", len(source) + 1))
    return tokens


def _unquote(text: str) -> str:
    body = text[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class _Parser:
    def __init__(self, source: str, ctx: CompileContext) -> None:
        self.ctx = ctx
        self.tokens = _tokenize(source, ctx)
        self.index = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at(self, text: str) -> bool:
        token = self.tokens[self.index]
        return token.kind in ("op", "name") and token.text == text

    def expect(self, text: str) -> _Token:
        if not self.at(text):
            raise self.unexpected(f"expected '{text}'")
        return self.take()

    def unexpected(self, what: str) -> ConfigError:
        token = self.token
        found = "the end" if token.kind == "end" else f"'{token.text[:20]}'"
        return self.ctx.error(f"{what} at column {token.column} of the expression, found {found}")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_EXPRESSION_DEPTH:
            raise self.ctx.error(f"expression nested deeper than {MAX_EXPRESSION_DEPTH} levels")

    def parse(self) -> Node:
        if self.token.kind == "end":
            raise self.ctx.error("empty expression")
        node = self.parse_or()
        if self.token.kind != "end":
            raise self.unexpected("expected an operator or the end")
        return node

    def parse_or(self) -> Node:
        self.enter()
        node = self.parse_and()
        while self.at("or"):
            column = self.take().column
            node = Binary(column, "or", node, self.parse_and())
        self.depth -= 1
        return node

    def parse_and(self) -> Node:
        node = self.parse_not()
        while self.at("and"):
            column = self.take().column
            node = Binary(column, "and", node, self.parse_not())
        return node

    def parse_not(self) -> Node:
        if self.at("not"):
            column = self.take().column
            self.enter()
            operand = self.parse_not()
            self.depth -= 1
            return Unary(column, "not", operand)
        return self.parse_compare()

    def parse_compare(self) -> Node:
        node = self.parse_default()
        token = self.token
        if token.kind == "op" and token.text in _COMPARE:
            self.take()
            return Binary(token.column, token.text, node, self.parse_default())
        if self.at("in"):
            self.take()
            return Binary(token.column, "in", node, self.parse_default())
        if self.at("not") and self.tokens[self.index + 1].text == "in":
            self.take()
            self.take()
            return Unary(
                token.column, "not", Binary(token.column, "in", node, self.parse_default())
            )
        return node

    def parse_default(self) -> Node:
        node = self.parse_primary()
        while self.at("??"):
            column = self.take().column
            node = Binary(column, "??", node, self.parse_primary())
        return node

    def parse_primary(self) -> Node:
        token = self.take()
        kind = token.kind
        if kind == "hl7" or kind == "json":
            return PathNode(token.column, token.text)
        if kind == "param":
            return self.param_path(token)
        if kind == "num":
            number = float(token.text) if "." in token.text else int(token.text)
            return Literal(token.column, number)
        if kind == "str":
            return Literal(token.column, _unquote(token.text))
        if kind == "name":
            word = token.text
            if word == "true":
                return Literal(token.column, True)
            if word == "false":
                return Literal(token.column, False)
            if word == "null":
                return Literal(token.column, None)
            if word in _KEYWORDS:
                self.index -= 1
                raise self.unexpected("expected a value")
            if self.at("("):
                self.take()
                args = self.parse_items(")")
                return Call(token.column, word, args)
            if word in self.ctx.path_params:
                return PathNode(token.column, self.ctx.path_params[word])
            return Name(token.column, word)
        if kind == "op" and token.text == "(":
            node = self.parse_or()
            self.expect(")")
            return node
        if kind == "op" and token.text == "[":
            return ListNode(token.column, self.parse_items("]"))
        self.index -= 1
        raise self.unexpected("expected a value")

    def param_path(self, token: _Token) -> PathNode:
        """`cx.4.1` in a template: the path its parameter stands for, plus the components."""
        name, _, suffix = token.text.partition(".")
        base = self.ctx.path_params.get(name)
        if base is None:
            raise self.ctx.error(
                f"'{token.text}' at column {token.column}: only a template's parameter can be "
                "followed by .component"
            )
        path = f"{base}.{suffix}"
        match = _TOKEN.fullmatch(path)
        if match is None or match.lastgroup not in ("hl7", "json"):
            raise self.ctx.error(
                f"'{token.text}' at column {token.column} would read {path}, which is not a "
                f"path: the template is given {base}; give it a field, not a component"
            )
        return PathNode(token.column, path)

    def parse_items(self, close: str) -> tuple[Node, ...]:
        self.enter()
        items: list[Node] = []
        if not self.at(close):
            items.append(self.parse_or())
            while self.at(","):
                self.take()
                items.append(self.parse_or())
        self.expect(close)
        self.depth -= 1
        return tuple(items)


def parse_expression(source: str, ctx: CompileContext | None = None) -> Node:
    """Parse one expression (the text between `${` and `}`); ConfigError on any syntax error."""
    context = ctx or CompileContext()
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise context.error(f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
    return _Parser(source, context).parse()


def compile_expression(source: str, ctx: CompileContext | None = None) -> Evaluator:
    """Parse and compile one expression into a function of a Scope."""
    context = ctx or CompileContext()
    return compile_node(parse_expression(source, context), context)


# --- runtime helpers ----------------------------------------------------------------------------


def is_truthy(value: Any) -> bool:
    """Conditions: null, false, empty text, empty list and empty object are false; all else true."""
    return value is not None and value is not False and not is_empty(value)


def _fail(ctx: CompileContext, scope: Scope, message: str, location: str = "") -> MappingError:
    if scope.trail:
        location = f"{location} in {scope.trail}" if location else scope.trail
    return MappingError(message, mapping=ctx.file, rule=ctx.rule, location=location)


def _coerce_pair(left: Any, right: Any) -> tuple[Any, Any]:
    """Text read from an input compares with a number literal as a number."""
    lt, rt = type(left), type(right)
    if lt is str and rt in (int, float):
        try:
            return float(left), right
        except ValueError:
            return left, right
    if rt is str and lt in (int, float):
        try:
            return left, float(right)
        except ValueError:
            return left, right
    return left, right


def _equal(left: Any, right: Any) -> bool:
    left, right = _coerce_pair(left, right)
    if type(left) is bool or type(right) is bool:
        return left is right
    return bool(left == right)


# --- compiler -----------------------------------------------------------------------------------


def _location(node: Node, ctx: CompileContext) -> str:
    if isinstance(node, PathNode):
        return node.path
    if (
        isinstance(node, Binary)
        and node.op == "??"
        or (isinstance(node, Call) and node.function == "coalesce")
    ):
        # `OBX-14.1 ?? OBR-7.1`: the value came from one of these fields; name them all.
        sides = (node.left, node.right) if isinstance(node, Binary) else node.args
        return " ?? ".join(where for side in sides if (where := _location(side, ctx)))
    if isinstance(node, Name):
        return ctx.name_paths.get(node.name, "")
    if isinstance(node, Call) and node.function == "field" and node.args:
        arg = node.args[0]
        if isinstance(arg, Literal) and isinstance(arg.value, str):
            return arg.value
    return ""


def compile_node(node: Node, ctx: CompileContext) -> Evaluator:
    """Compile a parsed node; unknown names, functions and tables are ConfigErrors here."""
    if isinstance(node, Literal):
        value = node.value
        return lambda scope: value
    if isinstance(node, PathNode):
        path = node.path
        return lambda scope: scope.document.get(path)
    if isinstance(node, Name):
        name = node.name
        if name not in ctx.names:
            raise ctx.error(f"unknown name '{name}' at column {node.column} of the expression")
        return lambda scope: scope.names.get(name)
    if isinstance(node, ListNode):
        items = [compile_node(item, ctx) for item in node.items]
        return lambda scope: [item(scope) for item in items]
    if isinstance(node, Unary):
        operand = compile_node(node.operand, ctx)
        return lambda scope: not is_truthy(operand(scope))
    if isinstance(node, Binary):
        return _compile_binary(node, ctx)
    if isinstance(node, Call):
        return _compile_call(node, ctx)
    raise ctx.error("unsupported expression")  # pragma: no cover - the parser makes no other node


def _compile_binary(node: Binary, ctx: CompileContext) -> Evaluator:
    left = compile_node(node.left, ctx)
    right = compile_node(node.right, ctx)
    op = node.op
    if op == "or":
        return lambda scope: is_truthy(left(scope)) or is_truthy(right(scope))
    if op == "and":
        return lambda scope: is_truthy(left(scope)) and is_truthy(right(scope))
    if op == "??":

        def default(scope: Scope) -> Any:
            value = left(scope)
            return right(scope) if is_empty(value) else value

        return default
    if op == "==":
        return lambda scope: _equal(left(scope), right(scope))
    if op == "!=":
        return lambda scope: not _equal(left(scope), right(scope))
    if op == "in":

        def contained(scope: Scope) -> bool:
            value = left(scope)
            pool = right(scope)
            if value is None or pool is None:
                return False
            if isinstance(pool, list):
                return any(_equal(value, item) for item in pool)
            if type(pool) is str and type(value) is str:
                return value in pool
            raise _fail(ctx, scope, "'in' needs a list or text on its right")

        return contained
    compare: Callable[[Any, Any], Any] = {
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
    }[op]
    where = _location(node.left, ctx) or _location(node.right, ctx)

    def ordered(scope: Scope) -> bool:
        a, b = _coerce_pair(left(scope), right(scope))
        if a is None or b is None:
            return False
        ta, tb = type(a), type(b)
        if (ta is str) != (tb is str) or ta in (list, dict, bool) or tb in (list, dict, bool):
            raise _fail(ctx, scope, f"cannot order these values with '{op}'", where)
        return bool(compare(a, b))

    return ordered


_SPECIAL = {
    "all": (1, 1),
    "field": (1, 1),
    "iif": (2, 3),
    "coalesce": (1, None),
    "datetime": (1, 1),
    "instant": (1, 1),
    "lookup": (2, 3),
    "lookup_display": (2, 3),
    "lookup_system": (2, 3),
    "coding": (2, 2),
    "ref": (1, 1),
    "position": (0, 0),
}


def _compile_call(node: Call, ctx: CompileContext) -> Evaluator:
    name = node.function
    spec = VALUE_FUNCTIONS.get(name)
    bounds = (spec[0], spec[1]) if spec is not None else _SPECIAL.get(name)
    if bounds is None:
        if name == "group":
            raise ctx.error("group(...) is written as `each: group(OBR, [OBX, NTE])` only")
        raise ctx.error(f"unknown function '{name}'")
    low, high = bounds
    count = len(node.args)
    if count < low or (high is not None and count > high):
        expected = str(low) if low == high else f"{low} to {high}" if high else f"at least {low}"
        raise ctx.error(f"{name}() takes {expected} arguments, got {count}")
    if name in ("all", "field"):
        return _compile_path_function(node, ctx)
    if name in ("count", "exists", "empty") and isinstance(node.args[0], PathNode):
        return _compile_path_test(name, node.args[0].path)
    if name in ("lookup", "lookup_display", "lookup_system", "coding"):
        return _compile_lookup(node, ctx)
    if name == "ref":
        arg = node.args[0]
        if not isinstance(arg, Literal) or not isinstance(arg.value, str):
            raise ctx.error("ref() takes the name of a resource in quotes")
        target = arg.value
        if target not in ctx.refs:
            known = ", ".join(sorted(ctx.refs)) or "none"
            raise ctx.error(
                f"ref('{target}') names no resource declared above it (declared: {known})"
            )
        return lambda scope: scope.refs.get(target)
    if name == "position":
        return lambda scope: scope.position or None
    args = [compile_node(arg, ctx) for arg in node.args]
    locations = [_location(arg, ctx) for arg in node.args]
    if name == "iif":
        condition, then = args[0], args[1]
        otherwise = args[2] if len(args) > 2 else (lambda scope: None)
        return lambda scope: then(scope) if is_truthy(condition(scope)) else otherwise(scope)
    if name == "coalesce":

        def first_present(scope: Scope) -> Any:
            for arg in args:
                value = arg(scope)
                if not is_empty(value):
                    return value
            return None

        return first_present
    if name in ("datetime", "instant"):
        instant = name == "instant"
        arg0 = args[0]

        def moment(scope: Scope) -> Any:
            try:
                return format_datetime(arg0(scope), scope.zone, instant=instant)
            except ValueProblem as problem:
                raise _fail(ctx, scope, f"{name}(): {problem.reason}", locations[0]) from None

        return moment
    assert spec is not None
    function = spec[2]
    return _wrap(function, args, locations, name, ctx)


def _wrap(
    function: Callable[..., Any],
    args: list[Evaluator],
    locations: list[str],
    name: str,
    ctx: CompileContext,
) -> Evaluator:
    def problem(scope: Scope, exc: ValueProblem) -> MappingError:
        index = exc.argument
        where = locations[index] if index is not None and index < len(locations) else ""
        return _fail(ctx, scope, f"{name}(): {exc.reason}", where)

    if len(args) == 1:
        (a0,) = args

        def call1(scope: Scope) -> Any:
            try:
                return function(a0(scope))
            except ValueProblem as exc:
                raise problem(scope, exc) from None

        return call1
    if len(args) == 2:
        a0, a1 = args

        def call2(scope: Scope) -> Any:
            try:
                return function(a0(scope), a1(scope))
            except ValueProblem as exc:
                raise problem(scope, exc) from None

        return call2

    def call(scope: Scope) -> Any:
        try:
            return function(*[arg(scope) for arg in args])
        except ValueProblem as exc:
            raise problem(scope, exc) from None

    return call


def _compile_path_function(node: Call, ctx: CompileContext) -> Evaluator:
    arg = node.args[0]
    if isinstance(arg, PathNode):
        path = arg.path
    elif node.function == "field" and isinstance(arg, Literal) and isinstance(arg.value, str):
        path = arg.value
        if not path.strip():
            raise ctx.error("field() needs a non-empty path")
    else:
        raise ctx.error(
            f"{node.function}() takes a path such as PID-3.1 or $.id"
            + (" in quotes" if node.function == "field" else "")
        )
    if node.function == "all":
        return lambda scope: scope.document.all(path) or None
    return lambda scope: scope.document.get(path)


def _compile_path_test(name: str, path: str) -> Evaluator:
    """count/exists/empty on a bare path also see segments and repetitions (`count(OBX)`)."""
    if name == "count":
        return lambda scope: len(scope.document.each(path))

    def present(scope: Scope) -> bool:
        document = scope.document
        if document.get(path) is not None:
            return True
        try:
            return len(document.each(path)) > 0
        except MappingError:
            # each() refuses paths it cannot iterate (a component): with no value, it is absent.
            return False

    if name == "exists":
        return present
    return lambda scope: not present(scope)


def _compile_lookup(node: Call, ctx: CompileContext) -> Evaluator:
    table_arg = node.args[0]
    if not isinstance(table_arg, Literal) or not isinstance(table_arg.value, str):
        raise ctx.error(f"{node.function}() takes the table name in quotes as its first argument")
    table_name = table_arg.value
    table = ctx.tables.get(table_name)
    if table is None:
        if ctx.table_loader is None:
            raise ctx.error(f"unknown table '{table_name}'")
        table = ctx.table_loader(table_name)
    code_of = compile_node(node.args[1], ctx)
    default_of = compile_node(node.args[2], ctx) if len(node.args) > 2 else (lambda scope: None)
    location = _location(node.args[1], ctx)
    column = {"lookup": "target", "lookup_display": "display", "lookup_system": "system"}.get(
        node.function, ""
    )
    rows = table.rows

    def code_text(scope: Scope) -> str | None:
        code = code_of(scope)
        if code is None or type(code) is str:
            return code
        if type(code) in (int, float):
            return str(code)
        raise _fail(ctx, scope, f"{node.function}(): the code must be text", location)

    if node.function == "coding":

        def coding(scope: Scope) -> Any:
            code = code_text(scope)
            row = rows.get(code.strip()) if code else None
            if row is None:
                return None
            out = {"system": row.system, "code": row.target, "display": row.display}
            return {k: v for k, v in out.items() if v} or None

        return coding

    def lookup(scope: Scope) -> Any:
        code = code_text(scope)
        if not code:
            return None
        row = rows.get(code.strip())
        if row is None:
            return default_of(scope)
        return getattr(row, column) or None

    return lookup
