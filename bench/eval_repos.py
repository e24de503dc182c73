"""`infiller eval` on pinned repositories the project does not tune on, combined into one report.

    .venv/bin/python -m bench.eval_repos --run --minutes 10      # run (resumable), then collect
    .venv/bin/python -m bench.eval_repos                         # collect finished runs only

Runs go to bench/work/eval/runs/<name>/ (scratch copies, indexes, JSONL: never committed); the
reports, charts and the combined table go to bench/results/eval/. Each run is the product's own
command, so rerunning the same command resumes it with more cases.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "bench" / "work" / "eval" / "runs"
RESULTS = REPO / "bench" / "results" / "eval"
# Pinned, pure Python, shipping their tests in the sdist; none of them is a development or report
# package of bench/eval_crossfile.py, and nothing in infiller was tuned on them.
REPOS: tuple[str, ...] = ("more-itertools==10.5.0", "networkx==3.4.2", "boltons==24.1.0")


def name_of(spec: str) -> str:
    return spec.split("==")[0]


def run(spec: str, model: str, n: int, minutes: float, tune: bool) -> None:
    out = RUNS / name_of(spec)
    cmd = [str(REPO / ".venv" / "bin" / "infiller"), "eval", spec, "--model", model, "--n", str(n)]
    cmd += ["--minutes", str(minutes), "--threads", "1", "--out", str(out)]
    if tune:
        cmd.append("--tune")
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(["nice", "-n", "19", *cmd], check=False)


def collect() -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [
        "# infiller eval on repositories infiller was not tuned on",
        "",
        "Produced by `python -m bench.eval_repos` (each repository: `infiller eval <sdist> ...`, the "
        "exact command in its report). Exact match / executable correctness over the cases every "
        "configuration finished; executable counts only cases whose covering tests pass on the "
        "original and fail without the target (their number in parentheses).",
        "",
        "| repository | configuration | cases | exact match | edit sim. | identifier F1 | executable (cases) "
        "| prompt tokens | mean ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    machines = []
    for spec in REPOS:
        out = RUNS / name_of(spec)
        summary = out / "summary.json"
        if not summary.is_file():
            continue
        data = json.loads(summary.read_text())
        for s in data["summaries"]:
            ex = "–" if s["executable"] is None else f"{s['executable']:.1%}"
            lines.append(
                f"| {spec} | {s['config']} | {s['cases']} | {s['exact_match']:.1%} | "
                f"{s['edit_similarity']:.3f} | {s['identifier_f1']:.3f} | {ex} ({s['executable_cases']}) | "
                f"{s['prompt_tokens']:.0f} | {s['total_ms_mean']:.0f} |"
            )
        meta = data["meta"]
        machine = meta["machine"]
        load = ", ".join(str(x) for x in machine["load_average"])
        levels = ", ".join(f"{lv} {n}" for lv, (n, _, _) in data["summaries"][0]["per_level"].items())
        name = name_of(spec)
        machines.append(
            f"- {spec} ({levels}): `{meta['command']}`; {machine['cpus']} CPUs, {machine['platform']}, "
            f"load average {load} at the end; finished {meta['finished']}; report [{name}.md]({name}.md), "
            f"chart [{name}.png]({name}.png)"
        )
        shutil.copy(out / "report.md", RESULTS / f"{name}.md")
        shutil.copy(out / "cases.jsonl", RESULTS / f"{name}.jsonl")  # every case, for re-scoring
        if (out / "chart.png").is_file():
            shutil.copy(out / "chart.png", RESULTS / f"{name}.png")
        if (out / "check" / "report.md").is_file():
            shutil.copy(out / "check" / "report.md", RESULTS / f"{name}-tune-check.md")
    lines += ["", "Runs (cases per level, command, machine, load average at the end):", "", *machines, ""]
    lines += [
        f"![{name_of(spec)}]({name_of(spec)}.png)"
        for spec in REPOS
        if (RESULTS / f"{name_of(spec)}.png").is_file()
    ]
    lines.append("")
    load = os.getloadavg()
    lines.append(f"Collected {time.strftime('%Y-%m-%d %H:%M %Z')}, load average now {load[0]:.2f}.")
    text = "\n".join(lines) + "\n"
    (RESULTS / "README.md").write_text(text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true", help="run (or resume) the evaluations first")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--minutes", type=float, default=10.0, help="per repository")
    parser.add_argument("--tune", default="boltons==24.1.0", help="the repository run with --tune")
    args = parser.parse_args()
    if args.run:
        for spec in REPOS:
            run(spec, args.model, args.n, args.minutes, spec == args.tune)
    print(collect())
    return 0


if __name__ == "__main__":
    sys.exit(main())
