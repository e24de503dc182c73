"""What the model answers at the end of a block header inside a function body being typed
(`    if value < low:|`): left free, and with its first token forced to be a new line (what the
completer does since 5e60679, Plan.opens_block).

Cases: `if`/`elif`/`else`/`for`/`while`/`with`/`try`/`except`/`finally` header lines inside a
function of the packages' product code (`infiller eval`'s case files), drawn at random (seed
41); the cursor at the header's end, the suffix the file after the enclosing function (the body
below is not typed yet).
One prompt per case (no retrieval; the completer's default layout), the model's cache reset per
case, both answers through the completer's post-processing for that plan.

    python -m bench.header_end --per-package 10 --out bench/results/header_end.jsonl
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from pathlib import Path

from bench.place_cases import CACHE, model_completer, parse_args
from server.completion import Completer
from server.eval.repo import is_case_file, resolve_repo
from server.model.postprocess import StreamFilter
from server.model.runtime import Backend
from server.request import CompletionContext

SEED = 41
HEADER = re.compile(r"^(\s+)(if|elif|else|for|while|with|try|except|finally)\b.*:\s*$")
DEF = re.compile(r"\s*(async )?def ")
# The block mode's token limit is the completer's; this is enough for the body's first lines.
MAX_TOKENS = 48


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def headers(source: Path, per_package: int, rng: random.Random) -> list[tuple[str, str, str, str]]:
    """(path, prefix, suffix, the body's first line) for `per_package` headers of `source`."""
    found = []
    for path in sorted(source.rglob("*.py")):
        rel = str(path.relative_to(source))
        if not is_case_file(rel):
            continue
        lines = path.read_text(errors="replace").split("\n")
        for i, line in enumerate(lines[:-1]):
            below = lines[i + 1]
            if not HEADER.match(line) or "#" in line or not below.strip() or _indent(below) <= _indent(line):
                continue
            outer = [
                j for j in range(i - 1, -1, -1) if DEF.match(lines[j]) and _indent(lines[j]) < _indent(line)
            ]
            if not outer:
                continue
            end = next(
                (
                    j
                    for j in range(i + 1, len(lines))
                    if lines[j].strip() and _indent(lines[j]) <= _indent(lines[outer[0]])
                ),
                len(lines),
            )
            found.append((rel, "\n".join(lines[: i + 1]), "\n" + "\n".join(lines[end:]), below.strip()))
    return rng.sample(found, min(per_package, len(found)))


def answer(runtime: Backend, completer: Completer, ctx: CompletionContext, lead: str) -> str:
    """The post-processed answer with the generation's first text forced to be `lead`."""
    prompt = completer.build_prompt(ctx)
    runtime.reset()
    pieces: list[str] = []
    runtime.generate(
        prompt.tokens,
        max_tokens=MAX_TOKENS,
        on_text=lambda p: pieces.append(p) is None,
        heal=prompt.heal + lead,
    )
    filt = StreamFilter(prompt.plan)
    for piece in [lead, *pieces]:
        if piece and not filt.feed(piece):
            break
    return filt.finish(cut_off=False).text or ""


def first_code_line(text: str) -> str:
    return next((line.strip() for line in text.split("\n") if line.strip()), "")


def main() -> int:
    args = parse_args(__doc__, per_package=10, out="header_end.jsonl")
    rng = random.Random(SEED)
    runtime, completer = model_completer(args)
    rows = []
    for package in args.packages:
        source = resolve_repo(package, CACHE / "src")
        for rel, prefix, suffix, want in headers(source, args.per_package, rng):
            ctx = CompletionContext("file:///" + rel, prefix, suffix, path=Path(rel), language="python")
            row: dict[str, object] = {"package": package, "path": rel, "header": prefix.rsplit("\n", 1)[-1]}
            row["want"] = want
            for label, lead in (("free", ""), ("new_line", "\n")):
                start = time.perf_counter()
                text = answer(runtime, completer, ctx, lead)
                row[label] = text
                row[f"{label}_s"] = round(time.perf_counter() - start, 2)
                # What a user takes with Tab: the answer's first line of code, as shown.
                row[f"{label}_exact"] = text.startswith("\n") and first_code_line(text) == want
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    free = [str(r["free"]) for r in rows]
    print(
        f"{len(rows)} headers. Left free: {sum(t.startswith(chr(10)) for t in free)} answers start on the "
        f"next line, {sum(t.lstrip(' ').startswith('#') for t in free)} with a comment on the header's "
        f"line, {sum(not t for t in free)} empty. The body's first line exactly, on the next line: "
        f"free {sum(bool(r['free_exact']) for r in rows)}, new line forced "
        f"{sum(bool(r['new_line_exact']) for r in rows)}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
