"""Calls a lost return expression may have been, without the model.

A function that returns `None` where a value was expected often lost a call of a helper with its
own names: `return pull_all(array, values)` (pydash's `pull_all_by`), `return break_units(s,
breakables)` (uniseg's `line_break_units`, bench actions-29). The helper is defined in the module
or imported from another module of the workspace, and its parameters are named like the names the
function holds at the return. This module proposes those calls; the related tests decide.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass
from pathlib import Path

# Calls proposed per lost expression: each costs one test run (1-2 s).
MAX_CALL_CANDIDATES = 3
# Workspace modules read for the signatures of imported helpers.
MAX_IMPORTED_MODULES = 8


@dataclass(frozen=True)
class Signature:
    name: str  # as the module calls it
    required: tuple[str, ...]  # positional parameters without a default, in order (not self/cls)
    required_keywords: tuple[str, ...] = ()  # keyword-only parameters without a default
    optional: tuple[str, ...] = ()  # parameters with a default that may be passed by keyword

    @property
    def needed(self) -> tuple[str, ...]:
        return (*self.required, *self.required_keywords)


def _signature(name: str, node: ast.FunctionDef | ast.AsyncFunctionDef) -> Signature:
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    first_default = len(positional) - len(args.defaults)
    plain = [a.arg for a in positional[:first_default]]
    if plain and plain[0] in ("self", "cls"):
        plain = plain[1:]
    # A defaulted positional-only parameter cannot be passed by keyword: it is left to its default.
    position_only = {a.arg for a in args.posonlyargs}
    defaulted = [a.arg for a in positional[first_default:] if a.arg not in position_only]
    keyword_only = list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    return Signature(
        name,
        tuple(plain),
        tuple(a.arg for a, d in keyword_only if d is None),
        (*defaulted, *(a.arg for a, d in keyword_only if d is not None)),
    )


def _top_functions(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def _module_file(root: Path, path: Path, module: str | None, level: int) -> Path | None:
    """The workspace file of an imported module (relative or absolute, flat or src/ layout)."""
    parts = module.split(".") if module else []
    if level:
        base = path.parent
        for _ in range(level - 1):
            base = base.parent
        bases = [base]
    else:
        bases = [root, root / "src"]
    for base in bases:
        for candidate in (base.joinpath(*parts).with_suffix(".py"), base.joinpath(*parts, "__init__.py")):
            if parts and candidate.is_file() and candidate.resolve().is_relative_to(root.resolve()):
                return candidate
    return None


def helpers(tree: ast.Module, root: Path | None, path: Path, own: str) -> list[Signature]:
    """Signatures of the functions the module defines at its top level and of the functions it
    imports by name from other modules of the workspace (not `own`)."""
    out = [_signature(name, node) for name, node in _top_functions(tree).items() if name != own]
    if root is None:
        return out
    read = 0
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or read >= MAX_IMPORTED_MODULES:
            continue
        source = _module_file(root, path, node.module, node.level)
        if source is None:
            continue
        read += 1
        try:
            defined = _top_functions(ast.parse(source.read_text(encoding="utf-8")))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for alias in node.names:
            if alias.name in defined and (alias.asname or alias.name) != own:
                out.append(_signature(alias.asname or alias.name, defined[alias.name]))
    return out


# Scopes of their own: the names they bind are not the function's at its return.
_INNER_SCOPES = (
    ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
    ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
)  # fmt: skip


def _own_scope(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.AST]:
    """The function's nodes outside the scopes nested in it (comprehensions, lambdas, defs)."""
    out: list[ast.AST] = []
    pending: list[ast.AST] = list(function.body)
    while pending:
        node = pending.pop()
        out.append(node)
        if not isinstance(node, _INNER_SCOPES):
            pending.extend(ast.iter_child_nodes(node))
    return out


def held_names(function: ast.FunctionDef | ast.AsyncFunctionDef, before_line: int) -> list[str]:
    """The names the function holds before a line (1-based): its parameters and what it assigned,
    the latest assigned first."""
    args = function.args
    params = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]
    params += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    stored = sorted(
        (n.lineno, n.id)
        for n in _own_scope(function)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store) and n.lineno < before_line
    )
    latest = list(dict.fromkeys(name for _, name in reversed(stored)))
    return [*latest, *(p for p in params if p not in latest and p not in ("self", "cls"))]


def lost_calls(text: str, line: int, root: Path | None, path: Path) -> list[str]:
    """Expressions for the lost value of the return on `line` (0-based): calls of helpers whose
    every required parameter is a name the function holds there, passed by position (keyword-only
    ones and defaulted ones so named, by keyword), the likeliest first: more of the function's names used,
    the latest assigned among them, a helper's name more like the function's."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    around = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.lineno - 1 < line < (n.end_lineno or 0)
    ]
    function = max(around, key=lambda n: n.lineno, default=None)  # the innermost
    if function is None:
        return []
    held = held_names(function, line + 1)
    rank = {name: i for i, name in enumerate(held)}
    scored: list[tuple[tuple[int, int, float], str]] = []
    for helper in helpers(tree, root, path, function.name):
        if not helper.needed or not all(p in rank for p in helper.needed):
            continue
        keywords = [*helper.required_keywords, *(p for p in helper.optional if p in rank)]
        args = [*helper.required, *(f"{p}={p}" for p in keywords)]
        used = [*helper.required, *keywords]
        likeness = difflib.SequenceMatcher(None, helper.name, function.name).ratio()
        key = (-len(helper.needed), min(rank[p] for p in used), -likeness)
        scored.append((key, f"{helper.name}({', '.join(args)})"))
    return [call for _, call in sorted(scored)[:MAX_CALL_CANDIDATES]]


__all__ = ["MAX_CALL_CANDIDATES", "Signature", "held_names", "helpers", "lost_calls"]
