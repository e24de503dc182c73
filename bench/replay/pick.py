"""Pick a replay region from a package by rule, not by reading it: a check on unseen code.

    python -m bench.replay.pick networkx==3.3 docutils==0.21.2 --seed heldout-1

For each sdist: every function with a docstring, at least MIN_STATEMENTS statements and a body
(after the docstring) of MIN_CHARS-MAX_CHARS characters, outside tests, whose name is defined once
in its module; one of them drawn with the seed. Prints the `--regions` argument of
bench.replay_typing.
"""

from __future__ import annotations

import argparse
import ast
import random
import sys
from pathlib import Path

from bench.replay.corpus import RegionSpec, body_span
from bench.sdist import fetch_sdist

WORK = Path(__file__).resolve().parents[1] / "work"
# About a sentence to a short paragraph of code: the standard regions are 330-523 characters.
MIN_CHARS, MAX_CHARS = 300, 550
# Statements in the function, its docstring one of them.
MIN_STATEMENTS = 3


def candidates(tree: Path, package: str) -> list[tuple[str, str]]:
    """(module, function) pairs the rule allows, in a stable order."""
    base = tree / package if (tree / package).is_dir() else tree / "src" / package
    found = []
    for path in sorted(base.rglob("*.py")):
        module = path.relative_to(base).as_posix()
        if "test" in module:
            continue
        source = path.read_text(encoding="utf-8", errors="replace")
        try:
            parsed = ast.parse(source)
        except SyntaxError:
            continue
        functions = [n for n in ast.walk(parsed) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        names = [f.name for f in functions]
        for f in functions:
            if names.count(f.name) != 1 or not ast.get_docstring(f) or len(f.body) < MIN_STATEMENTS:
                continue
            start, end = body_span(source, f.name)
            if MIN_CHARS <= end - start <= MAX_CHARS:
                found.append((module, f.name))
    return found


def pick(sdist: str, seed: str) -> RegionSpec:
    name = sdist.split("==")[0]
    package = name.replace("-", "_").lower()
    tree = fetch_sdist(sdist, WORK)
    found = candidates(tree, package)
    if not found:
        raise SystemExit(f"{sdist}: no function fits the rule")
    module, function = random.Random(seed).choice(found)
    return RegionSpec(sdist, package, module, function)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sdists", nargs="+", help="name==version")
    parser.add_argument("--seed", default="heldout-1")
    args = parser.parse_args()
    specs = [pick(s, args.seed) for s in args.sdists]
    print(",".join(f"{s.sdist}:{s.package}:{s.module}:{s.function}" for s in specs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
