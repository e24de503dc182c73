"""The replayed code: function bodies from pinned sdists, npm packages and Debian packages of Go and
Rust sources, fetched at run time.

Each region is the body of one named function after its docstring (the user has written the
signature and the docstring and now types the code); in JavaScript, TypeScript and the other brace
languages, from the first statement to the last, the closing brace already in the file. The
workspace the engines see is a copy of each package's source tree with every region removed from
the files on disk, so neither the repository index nor a ring of recently seen chunks can read the
answer.
"""

from __future__ import annotations

import ast
import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tree_sitter import Node

from bench.sdist import fetch_deb, fetch_sdist
from context.syntax import get_parser, language_for_path
from server.eval.repo import PINNED_NPM, fetch_npm


@dataclass(frozen=True)
class RegionSpec:
    sdist: str  # name==version (a PyPI sdist), npm:name@version (an npm tarball) or deb:name=version
    package: str  # the source folder inside it that becomes the workspace folder ("." for its root)
    module: str  # path of the file inside `package`
    function: str  # the function whose body is typed (the first definition of that name)

    @property
    def name(self) -> str:
        """The distribution's name: `more-itertools`, `rxjs`, `@trpc/server`, `librust-semver-dev`."""
        npm = PINNED_NPM.match(self.sdist) or PINNED_DEB.match(self.sdist)
        return npm.group(1) if npm else self.sdist.split("==")[0]

    @property
    def folder(self) -> str:
        """The workspace folder the package's sources are copied to: an sdist's package, an npm
        package's name (its source folder is most often `src`, the same in every package), a Debian
        package's name without the packaging words (`librust-semver-dev`: `semver`)."""
        if PINNED_DEB.match(self.sdist):
            return re.sub(r"^(golang-github-|golang-|librust-)|-dev$", "", self.name)
        return self.name.rsplit("/", 1)[-1] if PINNED_NPM.match(self.sdist) else self.package

    @property
    def id(self) -> str:
        return f"{self.name}:{self.module}:{self.function}"


# A Debian package of a Go module's or a Rust crate's sources, `deb:librust-semver-dev=1.0.14-1`
# (no epoch: its colon would split the region's fields).
PINNED_DEB = re.compile(r"^deb:([a-z0-9][a-z0-9.+-]*)=([0-9][A-Za-z0-9.+~-]*)$")


# Four styles: iterator plumbing with doctests (more-itertools), old-style utilities (boltons), typed
# modern code (sqlglot), string building (pygments). 1,700-1,800 characters in all, so one engine's
# replay of one model takes ~6-8 minutes.
REGIONS = (
    RegionSpec("more-itertools==10.3.0", "more_itertools", "more.py", "sliced"),
    RegionSpec("boltons==24.0.0", "boltons", "strutils.py", "parse_int_list"),
    RegionSpec("sqlglot==25.1.0", "sqlglot", "helper.py", "tsort"),
    RegionSpec("pygments==2.18.0", "pygments", "util.py", "format_lines"),
)


def parse_regions(text: str) -> tuple[RegionSpec, ...]:
    """`name==version:package:module:function`, `npm:name@version:package:module:function` or
    `deb:name=version:package:module:function`, comma-separated (other files than REGIONS: a check
    on code the levers were not tuned on)."""
    specs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        fields = item.split(":")
        if fields[0] in ("npm", "deb") and len(fields) > 1:
            fields[:2] = [f"{fields[0]}:{fields[1]}"]
        pinned = "==" in fields[0] or PINNED_NPM.match(fields[0]) or PINNED_DEB.match(fields[0])
        if len(fields) != 4 or not pinned or not all(fields):
            raise ValueError(
                f"region {item!r}: expected name==version:package:module:function, "
                "npm:name@version:package:module:function or deb:name=version:package:module:function"
            )
        specs.append(RegionSpec(*fields))
    return tuple(specs)


@dataclass(frozen=True)
class Region:
    spec: RegionSpec
    path: Path  # the file in the workspace
    original: str  # the whole file as published
    start: int  # offset in `original` where typing starts (after the first line's indentation)
    text: str  # what the user types (the body, from its first non-blank character, no final newline)


@dataclass(frozen=True)
class Function:
    """A function a region can be made of: its typed body is source[start:end]."""

    name: str
    start: int
    end: int
    statements: int  # in the body, a docstring counted
    documented: bool  # a docstring (Python) or a comment right before the definition (other languages)


def functions(source: str, path: str | Path) -> list[Function]:
    """Every function of a module with a body of its own lines, in the order body_span searches them."""
    if Path(path).suffix == ".py":
        return _python_functions(source)
    language = language_for_path(path)
    if language is None:
        raise ValueError(f"{path}: not a language infiller completes")
    return _brace_functions(source, language)


def body_span(source: str, function: str, path: str | Path = "module.py") -> tuple[int, int]:
    """[start, end) offsets of `function`'s body (after a Python docstring): start at the first
    statement's first character, end before the newline that ends its last statement's line. In a
    brace language the closing brace's line stays in the file (the editor had closed the block)."""
    for found in functions(source, path):
        if found.name == function:
            return found.start, found.end
    raise ValueError(f"{path}: no function {function!r} with a body of its own lines")


def _python_functions(source: str) -> list[Function]:
    offsets = [0]
    for line in source.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and len(body) > 1:
            body = body[1:]
        first = body[0]
        end_line = node.end_lineno or first.lineno
        start = offsets[first.lineno - 1] + first.col_offset
        end = offsets[end_line] - 1  # the last line's newline stays in the file
        documented = ast.get_docstring(node) is not None
        found.append(Function(node.name, start, end, len(node.body), documented))
    return found


# Definitions whose body a user types, and the nodes naming an unnamed function assigned to a name.
FUNCTION_NODES = frozenset(
    {
        "function_declaration",
        "generator_function_declaration",
        "function_expression",
        "arrow_function",
        "method_definition",
        "method_declaration",
        "function_definition",
        "function_item",
    }
)
NAMING_PARENTS = {"variable_declarator": "name", "pair": "key", "assignment_expression": "left"}
BLOCKS = frozenset({"statement_block", "block", "compound_statement", "constructor_body"})
COMMENTS = frozenset({"comment", "line_comment", "block_comment"})
# Wrappers between a definition and the comment documenting it (`export function`, `const f = ...`).
DECLARATION_WRAPPERS = frozenset({"export_statement", "lexical_declaration", "variable_declaration"})


def _brace_functions(source: str, language: str) -> list[Function]:
    data = source.encode("utf-8")
    tree = get_parser(language).parse(data)

    def chars(byte: int) -> int:
        return len(data[:byte].decode("utf-8"))

    found = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(reversed(node.children))
        if node.type not in FUNCTION_NODES:
            continue
        name, body = _function_name(node), node.child_by_field_name("body")
        if name is None or body is None or body.type not in BLOCKS:
            continue
        inner = body.named_children
        if len(inner) == 1 and inner[0].type == "statement_list":  # Go
            inner = inner[0].named_children
        statements = [child for child in inner if child.type not in COMMENTS]
        if not statements or statements[-1].end_point[0] == body.end_point[0]:
            continue  # an empty body, or one ending on its closing brace's line
        end = data.find(b"\n", statements[-1].end_byte)
        found.append(
            Function(name, chars(statements[0].start_byte), chars(end), len(statements), _documented(node))
        )
    return found


def _function_name(node: Node) -> str | None:
    named = node.child_by_field_name("name")
    if named is None and node.parent is not None and node.parent.type in NAMING_PARENTS:
        named = node.parent.child_by_field_name(NAMING_PARENTS[node.parent.type])
    return None if named is None or named.text is None else named.text.decode("utf-8", "replace")


def _documented(node: Node) -> bool:
    """A comment right before the definition (or the declaration wrapping it): JSDoc, `//` lines."""
    while node.parent is not None and (
        node.parent.type in DECLARATION_WRAPPERS or node.parent.type in NAMING_PARENTS
    ):
        node = node.parent
    before = node.prev_sibling
    return before is not None and before.type in COMMENTS and before.end_point[0] >= node.start_point[0] - 1


def prepare(work: Path, specs: tuple[RegionSpec, ...] = REGIONS) -> tuple[Path, list[Region]]:
    """Fetch the sdists, build the workspace (regions removed on disk) and return it with the regions."""
    # Other regions get their own workspace: the index sees only the packages typed in this run.
    root = work / "replay_typing" if specs == REGIONS else work / f"replay_typing-{_tag(specs)}"
    regions: list[Region] = []
    edited: dict[Path, str] = {}
    for spec in specs:
        if any(r.spec.sdist == spec.sdist and r.spec.module == spec.module for r in regions):
            raise ValueError(f"one region per file: {spec.id}")  # offsets stay those of the original
        tree = fetch_tree(spec.sdist, work)
        source_dir = tree / spec.package
        if not source_dir.is_dir():
            source_dir = tree / "src" / spec.package
        target_dir = root / spec.folder
        if not target_dir.is_dir():
            shutil.copytree(source_dir, target_dir)
        original = (source_dir / spec.module).read_text(encoding="utf-8")
        start, end = body_span(original, spec.function, spec.module)
        path = target_dir / spec.module
        regions.append(Region(spec, path, original, start, original[start:end]))
        current = edited.get(path, original)
        edited[path] = current.replace(original[start:end], "", 1)
    for path, text in edited.items():
        path.write_text(text, encoding="utf-8")
    return root, regions


def fetch_tree(sdist: str, work: Path) -> Path:
    """The unpacked sdist or npm tarball, or a Debian package's module or crate (fetched once into `work`)."""
    npm = PINNED_NPM.match(sdist)
    if npm:
        return fetch_npm(npm.group(1), npm.group(2), work)
    return fetch_deb(sdist, work) if PINNED_DEB.match(sdist) else fetch_sdist(sdist, work)


def _tag(specs: tuple[RegionSpec, ...]) -> str:
    return hashlib.sha1("\n".join(s.id + s.sdist for s in specs).encode()).hexdigest()[:10]
