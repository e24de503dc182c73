"""The replayed code: function bodies from pinned sdists of different styles, fetched at run time.

Each region is the body of one named function after its docstring (the user has written the
signature and the docstring and now types the code). The workspace the engines see is a copy of each
package's source tree with every region removed from the files on disk, so neither the repository
index nor a ring of recently seen chunks can read the answer.
"""

from __future__ import annotations

import ast
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.sdist import fetch_sdist


@dataclass(frozen=True)
class RegionSpec:
    sdist: str  # name==version
    package: str  # the source tree inside the sdist that becomes the workspace folder
    module: str  # path of the file inside `package`
    function: str  # the function whose body is typed (the first definition of that name)

    @property
    def id(self) -> str:
        return f"{self.sdist.split('==')[0]}:{self.module}:{self.function}"


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
    """`name==version:package:module:function`, comma-separated (other files than REGIONS: a check
    on code the levers were not tuned on)."""
    specs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        fields = item.split(":")
        if len(fields) != 4 or "==" not in fields[0] or not all(fields):
            raise ValueError(f"region {item!r}: expected name==version:package:module:function")
        specs.append(RegionSpec(*fields))
    return tuple(specs)


@dataclass(frozen=True)
class Region:
    spec: RegionSpec
    path: Path  # the file in the workspace
    original: str  # the whole file as published
    start: int  # offset in `original` where typing starts (after the first line's indentation)
    text: str  # what the user types (the body, from its first non-blank character, no final newline)


def body_span(source: str, function: str) -> tuple[int, int]:
    """[start, end) offsets of `function`'s body after its docstring: start at the first statement's
    first character, end before the newline that ends the function's last line."""
    tree = ast.parse(source)
    node = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == function
    )
    body = node.body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and len(body) > 1:
        body = body[1:]
    offsets = [0]
    for line in source.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    first = body[0]
    end_line = node.end_lineno or first.lineno
    start = offsets[first.lineno - 1] + first.col_offset
    end = offsets[end_line] - 1  # the last line's newline stays in the file
    return start, end


def prepare(work: Path, specs: tuple[RegionSpec, ...] = REGIONS) -> tuple[Path, list[Region]]:
    """Fetch the sdists, build the workspace (regions removed on disk) and return it with the regions."""
    # Other regions get their own workspace: the index sees only the packages typed in this run.
    root = work / "replay_typing" if specs == REGIONS else work / f"replay_typing-{_tag(specs)}"
    regions: list[Region] = []
    edited: dict[Path, str] = {}
    for spec in specs:
        if any(r.spec.sdist == spec.sdist and r.spec.module == spec.module for r in regions):
            raise ValueError(f"one region per file: {spec.id}")  # offsets stay those of the original
        tree = fetch_sdist(spec.sdist, work)
        source_dir = tree / spec.package
        if not source_dir.is_dir():
            source_dir = tree / "src" / spec.package
        target_dir = root / spec.package
        if not target_dir.is_dir():
            shutil.copytree(source_dir, target_dir)
        original = (source_dir / spec.module).read_text(encoding="utf-8")
        start, end = body_span(original, spec.function)
        path = target_dir / spec.module
        regions.append(Region(spec, path, original, start, original[start:end]))
        current = edited.get(path, original)
        edited[path] = current.replace(original[start:end], "", 1)
    for path, text in edited.items():
        path.write_text(text, encoding="utf-8")
    return root, regions


def _tag(specs: tuple[RegionSpec, ...]) -> str:
    return hashlib.sha1("\n".join(s.id + s.sdist for s in specs).encode()).hexdigest()[:10]
