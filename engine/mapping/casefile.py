"""Case files in the IZ Gateway format: many messages, each line followed by FHIRPath assertions.

    # a comment
    MSH|^~\\&|TEST|MOCK|\\          <- a line ending in a backslash continues on the next line
        DEST|DAPP|20240618083101-0400||RSP^K11^RSP_K11|RESULT-01|P|2.5.1
        @MessageHeader.count() = 1 // one message header
    MSA|AA|QUERY-01
        @MessageHeader.response.code.exists($this='ok')

A message starts at every unindented line that begins like the file's first message (its first
four characters, `MSH|` in HL7 v2 files); its other unindented lines are its segments, joined with
CR. Indented lines starting with `@` are assertions about the message's FHIR output, with an
optional `// comment` (outside quotes); lines starting with `#` or `//` are comments.
`load_cases` only reads the file: it knows no protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Assertion", "Case", "load_cases"]


@dataclass(frozen=True, slots=True)
class Assertion:
    """One `@expression // comment`, with the line it starts on."""

    expression: str
    comment: str
    line: int


@dataclass(slots=True)
class Case:
    """One message (segments joined with CR) and the assertions written under it."""

    line: int
    segments: list[str] = field(default_factory=list)
    assertions: list[Assertion] = field(default_factory=list)

    @property
    def message(self) -> bytes:
        return "".join(f"{segment}\r" for segment in self.segments).encode("utf-8")


def _logical_lines(text: str) -> list[tuple[int, str, bool]]:
    """(first line number, text, indented) with backslash continuations joined."""
    out: list[tuple[int, str, bool]] = []
    pending: tuple[int, str, bool] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if pending is not None:
            start, joined, indented = pending
            line, pending = joined + line.lstrip(), None
            number, raw = start, (" " if indented else "") + line
        if line.endswith("\\") and not line.lstrip().startswith("//"):
            # A `// comment` line ends where it ends: its backslash is text (often a quoted
            # segment that was continued), not a continuation onto the next assertion.
            pending = (number, line[:-1], raw[:1] in (" ", "\t"))
            continue
        out.append((number, line, raw[:1] in (" ", "\t")))
    if pending is not None:
        out.append(pending)
    return out


def _strip_comment(text: str) -> tuple[str, str]:
    """Split `expr // comment` at the first `//` outside single or double quotes."""
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif text.startswith("//", i):
            return text[:i].strip(), text[i + 2 :].strip()
        i += 1
    return text.strip(), ""


def load_cases(text: str) -> list[Case]:
    """Every message of a case file with its assertions, in file order."""
    cases: list[Case] = []
    start = ""
    for number, line, indented in _logical_lines(text):
        body = line.strip()
        if not body or body.startswith("#") or body.startswith("//"):
            continue
        if body.startswith("@"):
            if cases:
                expression, comment = _strip_comment(body[1:])
                cases[-1].assertions.append(Assertion(expression, comment, number))
            continue
        if not start:
            start = body[:4]
        if body.startswith(start) and not indented:
            cases.append(Case(number))
        if cases:
            cases[-1].segments.append(body)
    return cases
