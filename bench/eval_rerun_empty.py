"""Copy an `infiller eval` suite's run folders without the records whose prediction is empty.

Resuming the copy (`bench.eval_repos --run --suite <copy> ...`) then runs only those cases again:
how a change that can only alter empty answers moves a finished evaluation, at the cost of those
cases alone (bench/results/eval/open-line.md).

    python -m bench.eval_rerun_empty bench/work/eval/runs/SUITE bench/work/eval/runs/SUITE-rerun
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("source", type=Path, help="a suite's run folder (one folder per repository)")
    parser.add_argument("copy", type=Path, help="where the copy goes (replaced)")
    args = parser.parse_args()
    if args.copy.exists():
        shutil.rmtree(args.copy)
    shutil.copytree(args.source, args.copy, ignore=shutil.ignore_patterns("scratch", "index.sqlite*"))
    for cases in sorted(args.copy.glob("*/cases.jsonl")):
        rows = [json.loads(line) for line in cases.read_text("utf-8").splitlines() if line.strip()]
        empty = {(r["model"], r["config"], r["key"]) for r in rows if not r["prediction"].strip()}
        # A record copied from an empty one (the same prompt) runs again with it.
        keep = [
            r
            for r in rows
            if r["prediction"].strip() and (r["model"], r.get("reused_from"), r["key"]) not in empty
        ]
        cases.write_text("".join(json.dumps(r) + "\n" for r in keep), "utf-8")
        print(f"{cases}: {len(rows) - len(keep)} of {len(rows)} records left out")


if __name__ == "__main__":
    main()
