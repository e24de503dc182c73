"""Static checks that decide whether a candidate edit is kept: syntax (tree-sitter, and Python's
own compiler for Python) and undefined names (a pyflakes-like scope check built on `symtable`).

Also the source of the server's own syntax diagnostics (server/features/diagnostics.py).
"""

from __future__ import annotations

import ast
import builtins
import re
import symtable
import warnings
from dataclasses import dataclass

import tree_sitter as ts

from context.syntax import parse

# A file with many syntax errors is mid-edit; the first few are what the user can act on.
MAX_SYNTAX_ISSUES = 20
# Error text quoted in a message is cut here (an ERROR node can swallow a whole function).
MAX_QUOTED_CHARS = 40

# Names Python defines in every module namespace besides the builtins.
MODULE_DUNDERS = frozenset(
    {
        "__name__",
        "__file__",
        "__doc__",
        "__spec__",
        "__loader__",
        "__package__",
        "__path__",
        "__builtins__",
        "__annotations__",
        "__dict__",
        "__cached__",
        "__debug__",
    }
)
BUILTIN_NAMES = frozenset(dir(builtins)) | MODULE_DUNDERS


@dataclass(frozen=True)
class Point:
    """A 0-based line and a UTF-8 byte column (tree-sitter's and ast's convention)."""

    line: int
    byte_column: int


@dataclass(frozen=True)
class SyntaxIssue:
    start: Point
    end: Point
    message: str
    missing: bool


@dataclass(frozen=True)
class UndefinedName:
    name: str
    start: Point
    end: Point

    @property
    def message(self) -> str:
        return f"undefined name '{self.name}'"


def _point(p: ts.Point) -> Point:
    return Point(p.row, p.column)


def _quote(text: bytes) -> str:
    s = text.decode("utf-8", errors="replace").strip()
    first = s.split("\n", 1)[0]
    if len(first) > MAX_QUOTED_CHARS or first != s:
        first = first[:MAX_QUOTED_CHARS] + "…"
    return first


def syntax_issues(language: str, text: str, *, limit: int = MAX_SYNTAX_ISSUES) -> list[SyntaxIssue]:
    """ERROR and MISSING nodes of the tree-sitter parse, outermost only, in document order."""
    source = text.encode("utf-8")
    tree = parse(language, source)
    if not tree.root_node.has_error:
        return []
    issues: list[SyntaxIssue] = []
    stack = [tree.root_node]
    while stack and len(issues) < limit:
        node = stack.pop()
        if node.is_missing:
            issues.append(
                SyntaxIssue(_point(node.start_point), _point(node.end_point), f"missing '{node.type}'", True)
            )
            continue
        if node.is_error:
            quoted = _quote(source[node.start_byte : node.end_byte])
            message = f"unexpected '{quoted}'" if quoted else "syntax error"
            issues.append(SyntaxIssue(_point(node.start_point), _point(node.end_point), message, False))
            continue
        if node.has_error:
            stack.extend(reversed(node.children))
    issues.sort(key=lambda i: (i.start.line, i.start.byte_column))
    return issues


def python_syntax_error(text: str, filename: str = "<candidate>") -> str | None:
    """Python's own verdict (catches what tree-sitter tolerates, e.g. `return` outside a function)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes is not an error
            compile(text, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return f"{exc.msg} (line {exc.lineno})"
    except ValueError as exc:  # null bytes
        return str(exc)
    return None


def python_syntax_error_at(text: str) -> tuple[str, int, int, int, int] | None:
    """(message, line, column, end line, end column) of Python's first syntax error; 0-based
    lines, code-point columns (Python reports 1-based code-point offsets for str sources)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(text, "<buffer>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        line = max(0, (exc.lineno or 1) - 1)
        col = max(0, (exc.offset or 1) - 1)
        end_line = max(line, (exc.end_lineno or exc.lineno or 1) - 1)
        end_col = (exc.end_offset or 0) - 1
        if end_line == line and end_col <= col:
            end_col = col + 1
        return exc.msg, line, col, end_line, max(0, end_col)
    except ValueError as exc:
        return str(exc), 0, 0, 0, 0
    return None


def parses_cleanly(language: str, text: str) -> bool:
    """No ERROR or MISSING node; for Python, also compiles."""
    if syntax_issues(language, text, limit=1):
        return False
    return not (language == "python" and python_syntax_error(text) is not None)


def _has_star_import(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in ast.walk(tree))


def _global_names(top: symtable.SymbolTable) -> set[str]:
    names = {
        s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()
    }
    stack = list(top.get_children())
    while stack:
        table = stack.pop()
        stack.extend(table.get_children())
        # `global x; x = ...` inside a function defines a module name too.
        names.update(s.get_name() for s in table.get_symbols() if s.is_declared_global() and s.is_assigned())
    return names


def _unresolved(top: symtable.SymbolTable, defined: set[str]) -> set[str]:
    missing: set[str] = set()
    stack = [top]
    while stack:
        table = stack.pop()
        stack.extend(table.get_children())
        for sym in table.get_symbols():
            if not sym.is_referenced() or not sym.is_global():
                continue
            name = sym.get_name()
            if table.get_type() == "module" and (sym.is_assigned() or sym.is_imported()):
                continue
            if name not in defined and name not in BUILTIN_NAMES:
                missing.add(name)
    return missing


def undefined_names(text: str) -> list[UndefinedName]:
    """Names read somewhere but bound nowhere reachable (module, enclosing scopes, builtins).

    Coarse like pyflakes' first pass: binding order is ignored, and a star import disables it.
    """
    try:
        tree = ast.parse(text)
        top = symtable.symtable(text, "<candidate>", "exec")
    except (SyntaxError, ValueError):
        return []
    if _has_star_import(tree):
        return []
    missing = _unresolved(top, _global_names(top))
    if not missing:
        return []
    found: list[UndefinedName] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in missing:
            end_line = (node.end_lineno or node.lineno) - 1
            end_col = node.end_col_offset if node.end_col_offset is not None else node.col_offset
            found.append(
                UndefinedName(node.id, Point(node.lineno - 1, node.col_offset), Point(end_line, end_col))
            )
    found.sort(key=lambda u: (u.start.line, u.start.byte_column))
    return found


# Undefined-name messages of common sources: pyflakes/ruff F821, pyright/pylance, mypy, Python, pylint.
_UNDEFINED_PATTERNS = (
    re.compile(r"undefined name [`'\"](?P<name>\w+)[`'\"]", re.IGNORECASE),
    re.compile(r"[`'\"](?P<name>\w+)[`'\"] is not defined", re.IGNORECASE),
    re.compile(r"name [`'\"](?P<name>\w+)[`'\"] is not defined", re.IGNORECASE),
    re.compile(r"undefined variable [`'\"](?P<name>\w+)[`'\"]", re.IGNORECASE),
    re.compile(r"cannot find name [`'\"](?P<name>\w+)[`'\"]", re.IGNORECASE),
)
_SYNTAX_WORDS = re.compile(
    r"syntax|unexpected|expected|missing|unterminated|unmatched|unclosed|indent|parse error|invalid",
    re.IGNORECASE,
)


def undefined_name_in(message: str) -> str | None:
    """The name a diagnostic message reports as undefined, if it is that kind of message."""
    for pattern in _UNDEFINED_PATTERNS:
        m = pattern.search(message)
        if m:
            return m.group("name")
    return None


def looks_like_syntax_error(message: str, source: str | None = None) -> bool:
    return source == "infiller" or bool(_SYNTAX_WORDS.search(message))


__all__ = [
    "Point",
    "SyntaxIssue",
    "UndefinedName",
    "looks_like_syntax_error",
    "parses_cleanly",
    "python_syntax_error",
    "python_syntax_error_at",
    "syntax_issues",
    "undefined_name_in",
    "undefined_names",
]
