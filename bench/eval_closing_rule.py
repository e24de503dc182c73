"""What the bracket rule (f18ed4e) changed in finished `infiller eval` runs, without the model.

A line completion used to get every bracket it left open closed; now not where the lines below
close it (`Plan.closed_below`: a call whose arguments already follow). That is the only
difference, so the old answer of each record is its new one plus those closers, exactly, and one
run scores both rules on the same answers. Prints counts per configuration and the default's
paired wins, and with `--cases` the cases that changed (not for a report package: that would be
reading its cases).

    python -m bench.eval_closing_rule bench/work/eval/runs/SUITE [--cases]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from context.syntax import language_for_path
from server.eval.configs import DEFAULT, choose
from server.eval.metrics import exact_match, sign_test
from server.eval.repo import Workspace, resolve_repo
from server.eval.runner import RECORDS_FILE, RUN_FILE, RunOptions, load_records, sample_cases
from server.model.postprocess import close_brackets, plan_completion


def old_answer(prediction: str, prefix: str, suffix: str, language: str) -> str:
    """The answer the old rule showed: the brackets left open closed where the lines below close them."""
    plan = plan_completion(prefix, suffix, language)
    return close_brackets(prediction) if plan.closed_below else prediction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", type=Path, help="bench/work/eval/runs/SUITE (one folder per repository)")
    parser.add_argument("--cases", action="store_true", help="print the cases whose answer changed")
    parser.add_argument("--work", type=Path, default=Path("/tmp/infiller-closing-rule"))
    args = parser.parse_args()
    now: dict[str, dict[str, bool]] = defaultdict(dict)
    old: dict[str, dict[str, bool]] = defaultdict(dict)
    for out in sorted(p for p in args.suite.iterdir() if (p / RUN_FILE).is_file()):
        run = json.loads((out / RUN_FILE).read_text())
        records: dict[str, dict[str, str]] = defaultdict(dict)
        for record in load_records(out / RECORDS_FILE):
            records[record.key][record.config] = record.prediction
        name = out.name
        source = resolve_repo(run["repo"], args.work / "src")
        workspace = Workspace(source, args.work / name / "scratch", args.work / name / "index.sqlite")
        options = RunOptions(
            repo=run["repo"],
            models=[],
            configs=choose([DEFAULT]),
            levels=run["levels"],
            n=run["n"],
            seed=run["seed"],
            out=args.work / name,
            per_file=run["per_file"],
            sample=run["sample"],
        )
        try:
            for mask in sample_cases(workspace, options):
                text = workspace.read(mask.path) or ""
                language = language_for_path(mask.path) or ""
                for config, prediction in records.get(mask.key, {}).items():
                    before = old_answer(prediction, text[: mask.start], text[mask.end :], language)
                    now[config][mask.key] = exact_match(prediction, mask.target)
                    old[config][mask.key] = exact_match(before, mask.target)
                    if args.cases and before != prediction:
                        print(f"{mask.key} {config}: {prediction!r} (was {before!r})")
        finally:
            workspace.close()
    keys = set.intersection(*(set(v) for v in now.values())) if now else set()
    print(f"{len(keys)} cases")
    for config in now:
        a, b = sum(now[config][k] for k in keys), sum(old[config][k] for k in keys)
        line = f"{config}: exact {a} now, {b} with the old rule"
        if config != DEFAULT and DEFAULT in now:
            for label, table in (("now", now), ("old rule", old)):
                won = sum(table[DEFAULT][k] and not table[config][k] for k in keys)
                lost = sum(table[config][k] and not table[DEFAULT][k] for k in keys)
                line += f"; {label}: default {won} / {lost} (p = {sign_test(won, lost):.2f})"
        print(line)


if __name__ == "__main__":
    main()
