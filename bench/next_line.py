"""The hot streak's line: what the model prepares for the Enter after a statement, at the
indentation the editor will give (the hot streak before 2026-12-05) or writing the line's
indentation itself (Completer.complete's `new_line`, since then).

Cases: the last line of a simple statement inside a function of the packages' product code
(`infiller eval`'s case files) with another line of the same function below it, drawn at random
(seed 42); the cursor at the statement's end, the suffix the file after the enclosing function
(the lines below are not typed yet). "editor": the cursor on the next line after the statement's
own indentation (what an editor keeps; a dedent is the user's to make). One prompt per case (no
retrieval; the completer's default layout), the model's cache reset per case: the two prompts
are the same up to the statement's end, and which one is read first alternates between cases. A
case counts when the answer's line, with its indentation, is the line the file has there.

    python -m bench.next_line --per-package 12 --out bench/results/next_line.jsonl
"""

from __future__ import annotations

import ast
import json
import random
import sys
import time
from pathlib import Path

from bench.place_cases import CACHE, model_completer, parse_args
from server.eval.repo import is_case_file, resolve_repo
from server.request import CompletionContext

SEED = 42
COMPOUND = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try, ast.FunctionDef)


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" "))]


def statement_ends(path: Path) -> list[tuple[str, str, str]]:
    """(prefix, suffix, next line) at the end of each simple statement inside a function."""
    text = path.read_text(errors="replace")
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    lines = text.split("\n")
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or fn.end_lineno is None:
            continue
        for node in ast.walk(fn):
            if not isinstance(node, ast.stmt) or isinstance(node, COMPOUND) or node is fn:
                continue
            if isinstance(node, ast.AsyncFunctionDef | ast.ClassDef) or node.end_lineno is None:
                continue
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # a docstring
            end = node.end_lineno  # 1-based: lines[end - 1] is the statement's last line
            below = next((j for j in range(end, fn.end_lineno) if lines[j].strip()), None)
            if below is None or lines[end - 1].rstrip().endswith(("\\", ",")) or "#" in lines[end - 1]:
                continue
            if lines[below].lstrip().startswith(("#", '"', "'", ")", "]", "}")):
                continue
            prefix = "\n".join(lines[:end])
            suffix = "\n" + "\n".join(lines[fn.end_lineno :])
            found.append((prefix, suffix, lines[below].rstrip()))
    return found


def cases(source: Path, per_package: int, rng: random.Random) -> list[tuple[str, str, str, str]]:
    found: list[tuple[str, str, str, str]] = []
    for path in sorted(source.rglob("*.py")):
        rel = str(path.relative_to(source))
        if is_case_file(rel):
            found.extend((rel, *case) for case in statement_ends(path))
    return rng.sample(found, min(per_package, len(found)))


def main() -> int:
    args = parse_args(__doc__, per_package=12, out="next_line.jsonl")
    rng = random.Random(SEED)
    runtime, completer = model_completer(args)
    rows: list[dict[str, object]] = []
    for package in args.packages:
        source = resolve_repo(package, CACHE / "src")
        for rel, prefix, suffix, want in cases(source, args.per_package, rng):
            line = prefix.rsplit("\n", 1)[-1]
            row: dict[str, object] = {"package": package, "path": rel, "line": line, "want": want}
            row["dedent"] = len(_indent(want)) < len(_indent(line))
            editor = CompletionContext(
                "file:///" + rel, prefix + "\n" + _indent(line), suffix, language="python"
            )
            at_end = CompletionContext("file:///" + rel, prefix, suffix, language="python")
            runtime.reset()
            modes = [("editor", editor, False, _indent(line)), ("new_line", at_end, True, "")]
            for label, ctx, new_line, lead in modes if len(rows) % 2 == 0 else modes[::-1]:
                start = time.perf_counter()
                result = completer.complete(ctx, first_line=True, new_line=new_line)
                got = lead + (result.text or "").split("\n", 1)[0] if result.text else ""
                row[label] = got
                row[f"{label}_s"] = round(time.perf_counter() - start, 2)
                row[f"{label}_exact"] = got.rstrip() == want
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    dedents = [r for r in rows if r["dedent"]]
    for label in ("editor", "new_line"):
        exact = sum(bool(r[f"{label}_exact"]) for r in rows)
        back = sum(bool(r[f"{label}_exact"]) for r in dedents)
        empty = sum(not r[label] for r in rows)
        print(
            f"{label}: {exact} of {len(rows)} next lines exactly "
            f"(of the {len(dedents)} that go back a level: {back}); {empty} empty"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
