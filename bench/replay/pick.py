"""Pick a replay region from a package by rule, not by reading it: a check on unseen code.

    python -m bench.replay.pick networkx==3.3 docutils==0.21.2 --seed heldout-1
    python -m bench.replay.pick sqlglot==25.1.0 --seed heldout-3 --chars 350-520 --any
    python -m bench.replay.pick npm:rxjs@7.8.1 --package src --seed dev-1
    python -m bench.replay.pick deb:librust-semver-dev=1.0.14-1 --package src --seed dev-1

For each sdist: every function with a docstring (any function with `--any`), at least
`--statements` statements and a body (after the docstring) of `--chars` characters, outside
tests, whose name is defined once in its module; one of them drawn with the seed. An npm package
gives its JavaScript and TypeScript functions (a docstring: a comment right before the definition;
`.d.ts` and minified files left out); a Debian package of a Go module or a Rust crate, the functions
of its Go or Rust files (`_test.go` files and `tests/` left out). Prints the `--regions` argument
of bench.replay_typing.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

from bench.replay.corpus import PINNED_DEB, RegionSpec, fetch_tree, functions
from context.syntax import language_for_path
from server.eval.repo import PINNED_NPM

WORK = Path(__file__).resolve().parents[1] / "work"
# About a sentence to a short paragraph of code: the standard regions are 330-523 characters.
MIN_CHARS, MAX_CHARS = 300, 550
# Statements in the function, its docstring one of them.
MIN_STATEMENTS = 3
# The files an npm package's regions come from (its sources, not its type declarations or bundles).
NPM_SUFFIXES = (".js", ".mjs", ".cjs", ".jsx", ".ts", ".mts", ".tsx")
NPM_SKIPPED = (".d.ts", ".d.mts", ".min.js")
# The languages a Debian package's regions come from.
DEB_LANGUAGES = ("go", "rust")


def candidates(
    tree: Path,
    package: str,
    chars: tuple[int, int] = (MIN_CHARS, MAX_CHARS),
    statements: int = MIN_STATEMENTS,
    docstring: bool = True,
    kind: str = "sdist",
) -> list[tuple[str, str]]:
    """(module, function) pairs the rule allows, in a stable order."""
    base = tree / package if (tree / package).is_dir() else tree / "src" / package
    found = []
    for path in sorted(base.rglob("*")):
        module = path.relative_to(base).as_posix()
        if not _source(path, kind) or "test" in module:
            continue
        source = path.read_text(encoding="utf-8", errors="replace")
        try:
            defined = functions(source, path)
        except SyntaxError:
            continue
        names = [f.name for f in defined]
        for f in defined:
            undocumented = docstring and not f.documented
            if names.count(f.name) != 1 or undocumented or f.statements < statements:
                continue
            if chars[0] <= f.end - f.start <= chars[1]:
                found.append((module, f.name))
    return found


def _source(path: Path, kind: str) -> bool:
    """A file whose functions may be typed: "sdist" Python, "npm" JS or TypeScript, "deb" Go or Rust."""
    if not path.is_file():
        return False
    if kind == "npm":
        return path.name.endswith(NPM_SUFFIXES) and not path.name.endswith(NPM_SKIPPED)
    if kind == "deb":
        return language_for_path(path) in DEB_LANGUAGES
    return path.suffix == ".py"


def pick(sdist: str, seed: str, package: str | None = None, **rule: Any) -> RegionSpec:
    kind = "npm" if PINNED_NPM.match(sdist) else "deb" if PINNED_DEB.match(sdist) else "sdist"
    if package is None:
        package = "." if kind != "sdist" else sdist.split("==")[0].replace("-", "_").lower()
    tree = fetch_tree(sdist, WORK)
    found = candidates(tree, package, kind=kind, **rule)
    if not found:
        raise SystemExit(f"{sdist}: no function fits the rule")
    module, function = random.Random(seed).choice(found)
    return RegionSpec(sdist, package, module, function)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sdists", nargs="+", help="name==version, npm:name@version or deb:name=version")
    parser.add_argument(
        "--package",
        help="the source folder inside each (default: the package's name; an npm tarball's or a Debian "
        "package's root)",
    )
    parser.add_argument("--seed", default="heldout-1")
    parser.add_argument("--chars", type=_span, default=(MIN_CHARS, MAX_CHARS), help="body size, LO-HI")
    parser.add_argument("--statements", type=int, default=MIN_STATEMENTS, help="at least this many")
    parser.add_argument("--any", action="store_true", help="a docstring is not required")
    args = parser.parse_args()
    rule = {"chars": args.chars, "statements": args.statements, "docstring": not args.any}
    specs = [pick(s, args.seed, args.package, **rule) for s in args.sdists]
    print(",".join(f"{s.sdist}:{s.package}:{s.module}:{s.function}" for s in specs))
    return 0


def _span(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        span = (int(low), int(high))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO-HI characters, got {text!r}") from None
    if not 0 < span[0] <= span[1]:
        raise argparse.ArgumentTypeError(f"expected 0 < LO <= HI, got {text!r}")
    return span


if __name__ == "__main__":
    sys.exit(main())
