"""Import statements and their resolution to workspace files.

Python is resolved statically (relative and absolute imports, `import a.b as c`, re-exports through
`__init__.py`, star imports); jedi is the fallback for what static analysis cannot see (the type of
`obj` in `obj.attr`). Other languages get relative-path resolution of their import strings.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import tree_sitter as ts

log = logging.getLogger(__name__)

# Re-export chains longer than this are almost always cycles (`from . import *` both ways).
MAX_REEXPORT_DEPTH = 6
# Extensions tried, in order, for a JS/TS import string without one.
SCRIPT_EXTENSIONS = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".d.ts")


@dataclass(frozen=True)
class ImportBinding:
    """One name bound by an import statement.

    `import a.b.c` binds local `a` (module "a.b.c", name None); `import a.b as c` binds `c`;
    `from ..m import n as k` binds `k` (level 2, module "m", name "n"); `from m import *` has
    local and name "*". For non-Python languages `module` is the raw import string and local is None.
    """

    local: str | None
    module: str
    name: str | None
    level: int
    line: int


@dataclass(frozen=True)
class Target:
    """What a name resolves to: a module (symbol None) or a top-level symbol of a file."""

    path: str
    symbol: str | None = None


class ModuleGraph(Protocol):
    """The slice of the index that resolution needs (implemented by `context.index.Index`)."""

    def module_of(self, path: str) -> tuple[str | None, bool]:
        """(dotted module name, is_package) of a workspace file."""
        ...

    def file_for_module(self, module: str) -> str | None: ...

    def bindings(self, path: str) -> Sequence[ImportBinding]: ...

    def has_top_level(self, path: str, name: str) -> bool: ...


# ---------------------------------------------------------------------------------------------
# Extraction (tree-sitter nodes -> bindings)


def statement_end(text: str, start: int) -> int:
    """End of the (possibly parenthesised or backslash-continued) statement starting at `start`."""
    end = text.find("\n", start)
    end = len(text) if end < 0 else end
    line = text[start:end]
    if "(" in line and ")" not in line:
        close = text.find(")", end)
        return len(text) if close < 0 else close + 1
    while line.endswith("\\") and end < len(text):
        next_end = text.find("\n", end + 1)
        next_end = len(text) if next_end < 0 else next_end
        line, end = text[end + 1 : next_end], next_end
    return end


def import_statements(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each import statement of `text`, indented ones too, in order: the start of
    its line and `statement_end`.

    Found with str.find (C speed) rather than a MULTILINE regex, which tries every position of a
    large buffer on every keystroke."""
    last_end, position = 0, 0
    while True:
        position = text.find("import", position)
        if position < 0:
            return
        line_start = text.rfind("\n", 0, position) + 1
        head = text[line_start:position].lstrip(" \t")
        position += len("import")
        if line_start < last_end or not (head == "" or (head.startswith("from ") and head.endswith(" "))):
            continue
        end = statement_end(text, line_start)
        yield line_start, end
        last_end = position = end


# A whole import statement, not a line that only starts like one (`important = 1`).
_IMPORT_STATEMENT_RE = re.compile(r"(?:import[ \t]+[\w.]|from[ \t]+[\w.]+[ \t]+import\b)")


def import_header(text: str, max_chars: int) -> str:
    """The module-level import statements of `text` (Python), in order, one after another, with
    `from __future__` left out; whole statements only, up to `max_chars` characters."""
    out: list[str] = []
    used = 0
    for start, end in import_statements(text):
        statement = text[start:end]
        if not _IMPORT_STATEMENT_RE.match(statement) or statement.startswith("from __future__"):
            continue  # indented (in a function or a `try:`), or not an import at all
        if used + len(statement) + 1 > max_chars:
            break
        out.append(statement)
        used += len(statement) + 1
    return "\n".join(out)


def python_bindings(node: ts.Node, source: bytes | None = None) -> list[ImportBinding]:
    """Bindings of one `import_statement` / `import_from_statement` node.

    Pass the parsed `source` when the tree came from a read callback (`parse(..., timeout_s=...)`):
    such trees fetch `node.text` through the callback, which is slow.
    """

    def _text(node: ts.Node | None) -> str:
        return _node_text(node, source)

    line = node.start_point.row
    out: list[ImportBinding] = []
    if node.type == "import_statement":
        for child in node.children_by_field_name("name"):
            if child.type == "aliased_import":
                module = _text(child.child_by_field_name("name"))
                alias = _text(child.child_by_field_name("alias"))
                out.append(ImportBinding(alias, module, None, 0, line))
            else:
                module = _text(child)
                out.append(ImportBinding(module.split(".")[0], module, None, 0, line))
        return out
    module_node = node.child_by_field_name("module_name")
    level, module = 0, ""
    if module_node is not None:
        if module_node.type == "relative_import":
            for part in module_node.children:
                if part.type == "import_prefix":
                    level = len(_text(part).strip())
                elif part.type == "dotted_name":
                    module = _text(part)
        else:
            module = _text(module_node)
    if any(c.type == "wildcard_import" for c in node.children):
        return [ImportBinding("*", module, "*", level, line)]
    for child in node.children_by_field_name("name"):
        if child.type == "aliased_import":
            name = _text(child.child_by_field_name("name"))
            alias = _text(child.child_by_field_name("alias"))
            out.append(ImportBinding(alias, module, name, level, line))
        else:
            name = _text(child)
            out.append(ImportBinding(name, module, name, level, line))
    return out


def _node_text(node: ts.Node | None, source: bytes | None) -> str:
    if node is None:
        return ""
    if source is not None:
        return source[node.start_byte : node.end_byte].decode("utf-8", "replace")
    return (node.text or b"").decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# Python module names


def python_module_name(path: str, is_package_dir: set[str]) -> tuple[str, bool]:
    """Dotted module name of a file given which directories hold an `__init__.py`.

    Climbs while the parent directory is a package, so `src/pkg/sub/m.py` is `pkg.sub.m` when
    `src/pkg` and `src/pkg/sub` are packages; a file outside any package is its stem.
    """
    directory, filename = posixpath.split(path)
    stem = filename.rsplit(".", 1)[0]
    is_package = stem == "__init__"
    parts: list[str] = [] if is_package else [stem]
    while directory and directory in is_package_dir:
        directory, name = posixpath.split(directory)
        parts.append(name)
    if not parts:  # an __init__.py at the workspace root
        return "", True
    return ".".join(reversed(parts)), is_package


def absolute_module(binding: ImportBinding, importer_module: str | None, importer_is_package: bool) -> str:
    """The absolute dotted module a binding imports from (`from ..a import b` -> "pkg.a")."""
    if binding.level == 0:
        return binding.module
    parts = (importer_module or "").split(".") if importer_module else []
    if not importer_is_package and parts:
        parts = parts[:-1]
    drop = binding.level - 1
    if drop:
        parts = parts[:-drop] if drop <= len(parts) else []
    if binding.module:
        parts.append(binding.module)
    return ".".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------------
# Resolution


def resolve_binding(graph: ModuleGraph, importer: str, binding: ImportBinding) -> Target | None:
    """Where one binding points: a module file, or a symbol in a file (re-exports followed)."""
    module, is_package = graph.module_of(importer)
    base = absolute_module(binding, module, is_package)
    if binding.name is None:
        # `import a.b.c` binds `a`: the target is the top package; `as c` binds the full module.
        top = base if binding.local != base.split(".")[0] or "." not in base else base.split(".")[0]
        path = graph.file_for_module(top)
        return Target(path) if path else None
    submodule = graph.file_for_module(f"{base}.{binding.name}" if base else binding.name)
    if submodule:
        return Target(submodule)
    path = graph.file_for_module(base)
    if path is None:
        return None
    return find_symbol(graph, path, binding.name) or Target(path, binding.name)


def find_symbol(graph: ModuleGraph, path: str, name: str, depth: int = 0) -> Target | None:
    """The definition of top-level `name` as seen from module `path`, following re-exports."""
    if depth > MAX_REEXPORT_DEPTH:
        return None
    if graph.has_top_level(path, name):
        return Target(path, name)
    stars: list[ImportBinding] = []
    for binding in graph.bindings(path):
        if binding.local == name:
            target = resolve_binding(graph, path, binding)
            if target is None:
                return None
            if target.symbol is None or target.path == path:
                return target
            return find_symbol(graph, target.path, target.symbol, depth + 1) or target
        if binding.local == "*":
            stars.append(binding)
    module, is_package = graph.module_of(path)
    if is_package:
        # `pkg.name` may be a submodule that nothing imported explicitly.
        sub = graph.file_for_module(f"{module}.{name}" if module else name)
        if sub:
            return Target(sub)
    for binding in stars:
        star_path = graph.file_for_module(absolute_module(binding, module, is_package))
        if star_path and star_path != path:
            found = find_symbol(graph, star_path, name, depth + 1)
            if found:
                return found
    return None


def resolve_chain(
    graph: ModuleGraph, importer: str, bindings: Sequence[ImportBinding], chain: Sequence[str]
) -> tuple[Target, int] | None:
    """Resolve a dotted use such as `mod.sub.func` or `Cls.method` through the importer's bindings.

    Returns the target and how many parts of the chain it consumed: `Cls.method` resolves to the
    class with 1 consumed, and the caller looks up `method` among the class's members.
    """
    if not chain:
        return None
    target: Target | None = None
    consumed = 1
    for binding in bindings:
        if binding.local != chain[0]:
            continue
        dotted = binding.name is None and binding.module.startswith(chain[0] + ".")
        if dotted and binding.local != binding.module:
            # `import a.b.c` then `a.b.c.f`: jump straight to the longest imported module prefix.
            parts = binding.module.split(".")
            if list(chain[: len(parts)]) == parts:
                path = graph.file_for_module(binding.module)
                if path:
                    target, consumed = Target(path), len(parts)
                    break
        target = resolve_binding(graph, importer, binding)
        break
    if target is None:
        return None
    for attr in chain[consumed:]:
        if target.symbol is not None:
            break  # attributes of a class are the class's business: the caller shows the class
        found = find_symbol(graph, target.path, attr)
        if found is None:
            break
        target = found
        consumed += 1
    return target, consumed


def resolve_script_import(importer: str, source: str, exists: set[str]) -> str | None:
    """A relative JS/TS/C import string (`./util`, `"foo.h"`) -> workspace path, if present."""
    base = posixpath.dirname(importer)
    if not source.startswith("."):
        # C includes are relative to the including file first; module specifiers are packages.
        candidate = posixpath.normpath(posixpath.join(base, source))
        return candidate if candidate in exists else None
    candidate = posixpath.normpath(posixpath.join(base, source))
    if candidate in exists:
        return candidate
    for ext in SCRIPT_EXTENSIONS:
        if candidate + ext in exists:
            return candidate + ext
        index = posixpath.join(candidate, "index" + ext)
        if index in exists:
            return index
    return None


# ---------------------------------------------------------------------------------------------
# jedi fallback


def jedi_infer_definitions(
    root: Path, path: Path, text: str, line: int, column: int
) -> list[tuple[Path, int]]:
    """Files and 0-based lines of what the expression at (line, column) evaluates to, via jedi.

    Used only when static resolution fails (e.g. `obj.` where obj comes from a call's return
    value). Slow on first use (jedi builds its caches), so callers guard it.
    """
    try:
        import jedi  # deferred: jedi costs ~100 ms to import and most retrievals never need it

        script = jedi.Script(text, path=str(path), project=jedi.Project(str(root)))
        names = script.infer(line + 1, column)
    except Exception:  # jedi raises on syntax it cannot follow; retrieval must never fail on it
        log.debug("jedi inference failed at %s:%d:%d", path, line, column, exc_info=True)
        return []
    out: list[tuple[Path, int]] = []
    for name in names:
        if name.module_path is not None and name.line is not None:
            out.append((Path(name.module_path), name.line - 1))
    return out
