"""Copy an `infiller eval` suite's run folders without the records a change can alter.

Resuming the copy (`bench.eval_repos --run --started-only --suite <copy> ...`, the suite's own
options otherwise; without `--started-only` where a drop leaves out every record of a case, as
`closers` does for block and function cases, and then a run the time bound cut short also goes
on with cases it never started: compare on the cases both hold) then runs only those cases again,
with the same command and report as the whole evaluation, at the cost of those cases alone:
how a change that alters some prompts moves a finished evaluation.

- `--drop empty`: records whose prediction is empty (a change that can only alter empty answers;
  bench/results/eval/open-line.md);
- `--drop class-header`: records whose cursor line is a class header being typed, in every
  configuration but the classic layout's, whose prompt has always been that (context/anchor.py);
- `--drop closers`: the block and function cases (a closing line under a block the answer opened
  is kept since 2026-12-05), and line cases whose answer ends with a closer where the lines
  below close the call (the closer is now looked for 400 lines down, not 40).

    python -m bench.eval_rerun bench/work/eval/runs/SUITE bench/work/eval/runs/SUITE-rerun --drop empty
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from pathlib import Path

from context.anchor import CLASS_HEADER
from context.syntax import language_for_path
from server.eval.configs import tune_candidates
from server.model.postprocess import CLOSERS, plan_completion


def _empty(record: dict, source: Path) -> bool:
    return not record["prediction"].strip()


def _class_header(record: dict, source: Path) -> bool:
    if not tune_candidates()[record["config"]].cursor_line_in_middle:
        return False
    line = (source / record["path"]).read_text("utf-8").split("\n")[record["line"]]
    return bool(CLASS_HEADER.match(line[: record["column"]]))


def _closers(record: dict, source: Path) -> bool:
    if record["level"] in ("block", "function"):
        return True
    if not record["prediction"].rstrip().endswith(tuple(CLOSERS)):
        return False
    text = (source / record["path"]).read_text("utf-8")
    lines = text.split("\n")
    start = sum(len(line) + 1 for line in lines[: record["line"]]) + record["column"]
    prefix, suffix = text[:start], text[start + len(record["target"]) :]
    return plan_completion(prefix, suffix, language_for_path(record["path"])).closed_below


DROPS: dict[str, Callable[[dict, Path], bool]] = {
    "empty": _empty,
    "class-header": _class_header,
    "closers": _closers,
}


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("source", type=Path, help="a suite's run folder (one folder per repository)")
    parser.add_argument("copy", type=Path, help="where the copy goes (replaced)")
    parser.add_argument("--drop", choices=sorted(DROPS), default="empty", help="which records run again")
    args = parser.parse_args()
    drop = DROPS[args.drop]
    if args.copy.exists():
        shutil.rmtree(args.copy)
    shutil.copytree(args.source, args.copy, ignore=shutil.ignore_patterns("scratch", "index.sqlite*"))
    for cases in sorted(args.copy.glob("*/cases.jsonl")):
        # The repository as the run read it: its scratch copy holds every file unmasked between cases.
        [source] = (args.source / cases.parent.name / "scratch").iterdir()
        rows = [json.loads(line) for line in cases.read_text("utf-8").splitlines() if line.strip()]
        dropped = {(r["model"], r["config"], r["key"]) for r in rows if drop(r, source)}
        # A record copied from a dropped one (the same prompt) runs again with it.
        keep = [
            r
            for r in rows
            if (r["model"], r["config"], r["key"]) not in dropped
            and (r["model"], r.get("reused_from"), r["key"]) not in dropped
        ]
        cases.write_text("".join(json.dumps(r) + "\n" for r in keep), "utf-8")
        print(f"{cases}: {len(rows) - len(keep)} of {len(rows)} records left out")


if __name__ == "__main__":
    main()
