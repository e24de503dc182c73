"""`infiller eval` on pinned repositories the project does not tune on, combined into one report.

    .venv/bin/python -m bench.eval_repos --run --minutes 10      # run (resumable), then collect
    .venv/bin/python -m bench.eval_repos                         # collect finished runs only
    .venv/bin/python -m bench.eval_repos --run --suite crossfile-1.5b --model qwen2.5-coder-1.5b \
        --repos sqlglot==25.24.5,pygments==2.18.0,docutils==0.21.2 --levels crossfile \
        --configs "plain long FIM,no context,similar,default" --threads 2 --minutes 25
    .venv/bin/python -m bench.eval_repos --run --suite langs-1.5b --model qwen2.5-coder-1.5b \
        --repos npm:rxjs@7.8.1,deb:librust-regex-syntax-dev=0.6.27-1 --tune none --threads 2

Repositories are sdists (`name==version`), npm packages (`npm:name@version`, fetched by `infiller
eval` itself) or Debian packages of Go and Rust sources (`deb:name=version`, fetched here with
`apt-get download`: Debian ships those libraries as source).

Runs go to bench/work/eval/runs/[<suite>/]<name>/ (scratch copies, indexes, JSONL: never committed);
the reports, charts and the combined table go to bench/results/eval/[<suite>/]. Each run is the product's own
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
from dataclasses import dataclass, replace
from pathlib import Path

from bench.sdist import fetch_deb
from server.eval.repo import PINNED_NPM
from server.eval.report import summarize, table
from server.eval.runner import Record, load_records

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "bench" / "work" / "eval" / "runs"
RESULTS = REPO / "bench" / "results" / "eval"
# Pinned, pure Python, shipping their tests in the sdist; none of them is a development or report
# package of bench/eval_crossfile.py, and nothing in infiller was tuned on them.
REPOS: tuple[str, ...] = ("more-itertools==10.5.0", "networkx==3.4.2", "boltons==24.1.0")


def name_of(spec: str) -> str:
    """`boltons==24.1.0` -> boltons; `npm:rxjs@7.8.1` -> rxjs; `deb:librust-semver-dev=1.0.14-1` ->
    librust-semver-dev."""
    npm = PINNED_NPM.match(spec)
    if npm:
        return npm.group(1).replace("/", "+")
    if spec.startswith("deb:"):
        return spec[4:].split("=")[0]
    return spec.split("==")[0]


@dataclass(frozen=True)
class Suite:
    """Which runs one report combines: the repositories and the `infiller eval` options they share."""

    name: str  # "" for the default suite
    repos: tuple[str, ...]
    model: str
    threads: int
    levels: str | None
    configs: str | None
    title: str = "repositories infiller was not tuned on"

    @property
    def runs(self) -> Path:
        return RUNS / self.name if self.name else RUNS

    @property
    def results(self) -> Path:
        return RESULTS / self.name if self.name else RESULTS


def run(suite: Suite, spec: str, n: int, minutes: float, tune: bool, started_only: bool = False) -> None:
    out = suite.runs / name_of(spec)
    # A Debian package (Go, Rust sources) is fetched here; `infiller eval` fetches sdists and npm
    # packages itself.
    repo = str(fetch_deb(spec, RUNS.parent / "src")) if spec.startswith("deb:") else spec
    cmd = [str(REPO / ".venv" / "bin" / "infiller"), "eval", repo, "--model", suite.model, "--n", str(n)]
    cmd += ["--minutes", str(minutes), "--threads", str(suite.threads), "--out", str(out)]
    if suite.levels:
        cmd += ["--levels", suite.levels]
    if suite.configs:
        cmd += ["--configs", suite.configs]
    if tune:
        cmd.append("--tune")
    if started_only:
        cmd.append("--started-only")
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(["nice", "-n", "19", *cmd], check=False)


def pooled(suite: Suite) -> list[str]:
    """All repositories' cases as one sample: the summary and the sign tests against the default
    (one repository's few cases rarely separate two configurations)."""
    records: list[Record] = []
    for spec in suite.repos:
        path = suite.runs / name_of(spec) / "cases.jsonl"
        if (path.parent / "summary.json").is_file():  # finished runs only, as in the table above
            # Keys are unique within a run only: qualify them by repository.
            records += [replace(r, key=f"{name_of(spec)}:{r.key}") for r in load_records(path)]
    configs = list(dict.fromkeys(r.config for r in records))
    if len(suite.repos) < 2 or not records:
        return []
    return [
        "",
        "All repositories pooled (the cases every configuration finished):",
        "",
        table(summarize(records, configs), records).rstrip(),
    ]


def collect(suite: Suite) -> str:
    results = suite.results
    results.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# infiller eval: {suite.title}",
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
    for spec in suite.repos:
        out = suite.runs / name_of(spec)
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
        shutil.copy(out / "report.md", results / f"{name}.md")
        shutil.copy(out / "cases.jsonl", results / f"{name}.jsonl")  # every case, for re-scoring
        if (out / "chart.png").is_file():
            shutil.copy(out / "chart.png", results / f"{name}.png")
        if (out / "check" / "report.md").is_file():
            shutil.copy(out / "check" / "report.md", results / f"{name}-tune-check.md")
    lines += pooled(suite)
    lines += ["", "Runs (cases per level, command, machine, load average at the end):", "", *machines, ""]
    lines += [
        f"![{name_of(spec)}]({name_of(spec)}.png)"
        for spec in suite.repos
        if (results / f"{name_of(spec)}.png").is_file()
    ]
    lines.append("")
    load = os.getloadavg()
    lines.append(f"Collected {time.strftime('%Y-%m-%d %H:%M %Z')}, load average now {load[0]:.2f}.")
    text = "\n".join(lines) + "\n"
    (results / "README.md").write_text(text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true", help="run (or resume) the evaluations first")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--minutes", type=float, default=10.0, help="per repository")
    parser.add_argument("--tune", default="boltons==24.1.0", help="the repository run with --tune")
    parser.add_argument("--suite", default="", help="a name for these runs and their report folder")
    parser.add_argument(
        "--repos",
        help="comma-separated sdists (name==version), npm packages (npm:name@version) or Debian "
        f"packages of Go/Rust sources (deb:name=version) (default: {','.join(REPOS)})",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--levels", help="passed to infiller eval (default: all)")
    parser.add_argument("--configs", help="passed to infiller eval (default: the standard ones)")
    parser.add_argument(
        "--started-only", action="store_true", help="passed to infiller eval (see bench/eval_rerun.py)"
    )
    parser.add_argument(
        "--title", default=Suite.title, help="what the repositories are (e.g. a development set)"
    )
    args = parser.parse_args()
    repos = tuple(args.repos.split(",")) if args.repos else REPOS
    suite = Suite(args.suite, repos, args.model, args.threads, args.levels, args.configs, args.title)
    if args.run:
        for spec in repos:
            run(suite, spec, args.n, args.minutes, spec == args.tune, args.started_only)
    print(collect(suite))
    return 0


if __name__ == "__main__":
    sys.exit(main())
