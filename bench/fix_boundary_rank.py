"""Where Fix this's one-token candidates put the exact repair of each bench mutant, without the model.

For every function `bench.actions_bench` draws under the given seeds, its first kept mutant (the
one the bench's Fix this gets) is run against the oracle tests in the sandbox once, as Fix this
runs its baseline; the failures give the evidence and the order of suspect lines exactly as in
`server.actions.fix`. Then, for several caps on candidates per line and in all, the report counts
the mutants whose exact repair (the candidate text equal to the original module) is among the
candidates verified before any generation. A policy is a question of
order, and this answers it in minutes where the bench takes one model-bound hour per seed.

    python -m bench.fix_boundary_rank --seeds actions-1,actions-2 [--tag T]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.actions_bench import RESULTS, _workspace, choose
from server.actions import fix as F
from server.actions.sandbox import Sandbox
from server.actions.textedit import split_lines

# Policies compared: candidates per line (on a line a traceback implicates, on any other line),
# and candidates verified in all before any generation.
POLICIES = ((6, 6, 12), (4, 4, 8), (4, 2, 8), (4, 4, 12), (8, 8, 16), (6, 6, 24))


@dataclass
class Case:
    seed: str
    function: str
    mutant: str
    evidence: str
    implicated: list[int]
    # Per suspect line in Fix this's order: the line, and whether each of its candidates (in the
    # mutator's order) restores the original.
    lines: list[tuple[int, list[bool]]]


def collect(seed: str) -> list[Case]:
    cases = []
    for fn, kept in choose(12, seed):
        mutant = kept[0]
        original = (Path(fn.source_root) / fn.module_path).read_text()
        with tempfile.TemporaryDirectory(prefix="boundary-rank-") as tmp:
            root = _workspace(fn, Path(tmp))
            (root / "tests").mkdir()
            (root / "tests" / "test_oracle.py").write_text(fn.oracle)
            (root / fn.module_path).write_text(mutant.text)
            lines = split_lines(mutant.text)
            block = F.enclosing_block(lines, fn.start_line - 1)
            if block is None:
                continue
            with Sandbox(root) as sandbox:
                baseline = F.TestContext(sandbox, fn.module_path, ["tests/test_oracle.py"], None).run(
                    mutant.text
                )
        failures = "\n".join(o.message for o in baseline.failed()) if baseline else ""
        evidence = F.read_evidence(failures, fn.module_path, block, lines)
        order = F.suspects(lines, block, evidence)
        per_line = [
            (i, [m.text == original for m in F.mutants(mutant.text, i + 1, i + 1, repair=True)])
            for i in order
        ]
        cases.append(
            Case(
                seed,
                f"{fn.module}.{fn.name}",
                f"line {mutant.line}: {mutant.description}",
                evidence.describe(),
                list(evidence.lines),
                per_line,
            )
        )
    return cases


def rank(case: Case, implicated_cap: int, other_cap: int, limit: int) -> int | None:
    """The 0-based place of the exact repair among the verified candidates, or None."""
    place = 0
    for line, restores in case.lines:
        for ok in restores[: implicated_cap if line in case.implicated else other_cap]:
            if place >= limit:
                return None
            if ok:
                return place
            place += 1
    return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="actions-1,actions-2,actions-3,actions-4,actions-5,actions-6")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    cases = [c for seed in args.seeds.split(",") for c in collect(seed.strip())]
    reachable = sum(any(any(r) for _, r in c.lines) for c in cases)
    rows = []
    for implicated_cap, other_cap, limit in POLICIES:
        places = [p for c in cases if (p := rank(c, implicated_cap, other_cap, limit)) is not None]
        rows.append(
            {
                "per_line": f"{implicated_cap} implicated / {other_cap} other",
                "limit": limit,
                "found": len(places),
                "mean_place": round(statistics.mean(places) + 1, 2) if places else None,
            }
        )
    now = F.MAX_BOUNDARY_PER_LINE
    report = {
        "command": "python -m bench.fix_boundary_rank " + " ".join(sys.argv[1:]),
        "cases": len(cases),
        "reachable_by_one_token_of_a_suspect_line": reachable,
        "limit": F.MAX_BOUNDARY_CANDIDATES,
        "current": f"{now} implicated / {now} other",
        "policies": rows,
        "records": [asdict(c) for c in cases],
    }
    stem = "fix_boundary_rank" + (f"_{args.tag}" if args.tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        "# Fix this: the exact repair among the one-token candidates (no model)",
        "",
        f"`{report['command']}`: {len(cases)} mutants (the first kept one of each function the bench draws); "
        f"{reachable} can be repaired by a one-token change of a suspect line at all; "
        f"in use: {report['current']}, "
        f"{F.MAX_BOUNDARY_CANDIDATES} candidates verified before any generation.",
        "",
        "| candidates per line | before any generation | exact repair among them | mean place |",
        "|---|---:|---:|---:|",
        *(
            f"| {r['per_line']} | {r['limit']} | {r['found']} of {len(cases)} | {r['mean_place']} |"
            for r in rows
        ),
        "",
    ]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
