"""`infiller eval [REPO]`: completion quality on a repository, side by side per configuration.

Prints the summary table; writes the per-case JSONL, report.md, summary.json and chart.png
under --out. With --tune, also writes the winning context configuration to the repository's
`.infiller.toml` and checks the gain on a second, disjoint sample.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from server.cli.common import fail, non_negative_int, positive_float, positive_int

# Tuning splits --minutes: most of it for choosing, the rest for checking the choice.
TUNE_CHECK_SHARE = 0.35
# The second sample's seed is offset from the first's (and its cases excluded from it).
CHECK_SEED_OFFSET = 1000
DEFAULT_CASES = 24


def register(sub: argparse._SubParsersAction) -> None:
    from context.masking import LEVELS

    p = sub.add_parser("eval", help="measure completion quality on a repository (and --tune to it)")
    p.add_argument(
        "repo",
        nargs="?",
        default=".",
        help="a folder, a pinned sdist like boltons==24.1.0 or npm package like npm:zod@3.23.8 (default: .)",
    )
    p.add_argument(
        "--model", action="append", help="registry model (repeat for several; default: the registry's)"
    )
    p.add_argument(
        "--n", type=positive_int, default=DEFAULT_CASES, help="cases, spread over levels and files"
    )
    p.add_argument("--levels", default=",".join(LEVELS), help="comma-separated (default: all)")
    p.add_argument(
        "--languages",
        help="comma-separated languages whose files give cases, or `all` (default: the repository's "
        "main language by bytes)",
    )
    p.add_argument("--configs", help="comma-separated configurations (default: all standard ones)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--minutes", type=positive_float, help="stop starting new cases after this long")
    p.add_argument(
        "--started-only",
        action="store_true",
        help="resume only cases already started (a configuration added, records left out)",
    )
    p.add_argument(
        "--exclude-cases",
        action="append",
        default=[],
        metavar="RUN",
        help="leave out every case of an earlier run (its --out folder or cases.jsonl): a fresh sample",
    )
    p.add_argument("--out", help="results folder (default: <user cache>/infiller/eval/runs/<repo>)")
    p.add_argument(
        "--threads", type=non_negative_int, default=0, help="model threads (default: the self-test's choice)"
    )
    p.add_argument("--no-exec", action="store_true", help="skip running the covering tests")
    p.add_argument("--test-timeout", type=positive_float, default=60.0, help="seconds per pytest run")
    p.add_argument(
        "--per-file", type=positive_int, help="cases per file at most (default: 3, more on tiny repos)"
    )
    p.add_argument("--tune", action="store_true", help="choose and write the best context configuration")
    p.add_argument("--no-chart", action="store_true")
    p.set_defaults(func=cmd_eval)


def _cache_dir(kind: str) -> Path:
    """Fetched sdists ("src") and runs ("runs"): outside the repository, whose index and test
    runs must not see a second copy of it."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("infiller")) / "eval" / kind


def _code_version() -> str:
    """Which infiller made the numbers: the checkout's commit (with `+changes` when the tree has
    uncommitted ones), else the installed version. A report without it cannot be reproduced."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    here = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        commit = dirty = ""
    if commit:
        return f"commit {commit}{'+changes' if dirty else ''}"
    try:
        return f"version {version('infiller')}"
    except PackageNotFoundError:
        return "version unknown"


def _made_by(records: Any, running: str) -> str:
    """The infiller versions that made the records, most records first; just `running` when it
    made them all. Records written before records were stamped show as "unrecorded"."""
    from collections import Counter

    made = Counter(r.infiller or "unrecorded" for r in records)
    if not made or set(made) == {running}:
        return running
    return ", ".join(f"{version} ({n} records)" for version, n in made.most_common())


def _machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in load],
    }


def cmd_eval(args: argparse.Namespace) -> int:
    from context.masking import LEVELS
    from server.eval import configs as cfg
    from server.eval.repo import Workspace, resolve_repo
    from server.eval.runner import RunOptions
    from server.model.registry import ModelError, load_registry

    levels = [lv.strip() for lv in args.levels.split(",") if lv.strip()]
    bad = [lv for lv in levels if lv not in LEVELS]
    if not levels:
        return fail(f"--levels names no level (known: {', '.join(LEVELS)})")
    if bad:
        return fail(f"unknown level(s) {', '.join(bad)} (known: {', '.join(LEVELS)})")
    try:
        configs = cfg.choose(
            [c.strip() for c in args.configs.split(",")] if args.configs else None, args.tune
        )
    except ValueError as exc:
        return fail(str(exc))
    try:
        models = [load_registry().get(m).name for m in (args.model or [None])]
        source = resolve_repo(args.repo, _cache_dir("src"))
    except (ModelError, FileNotFoundError, OSError) as exc:
        return fail(str(exc))
    try:
        exclude = _excluded_keys([Path(p) for p in args.exclude_cases])
    except ValueError as exc:
        return fail(str(exc))
    try:
        languages = _languages(args.languages)
    except ValueError as exc:
        return fail(str(exc))
    out = Path(args.out) if args.out else _cache_dir("runs") / source.name
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return fail(f"--out {out}: cannot be a results folder ({exc.strerror or exc})")
    minutes = args.minutes
    check_minutes = None
    if args.tune and minutes:
        check_minutes = minutes * TUNE_CHECK_SHARE
        minutes -= check_minutes
    options = RunOptions(
        code_version=_code_version(),
        repo=args.repo,
        models=models,
        configs=configs,
        levels=levels,
        n=args.n,
        seed=args.seed,
        out=out,
        minutes=minutes,
        threads=args.threads,
        execute=not args.no_exec,
        test_timeout_s=args.test_timeout,
        per_file=args.per_file,
        started_only=args.started_only,
        exclude=exclude,
    )
    print(f"infiller eval: {source} -> {out}", file=sys.stderr)
    workspace = Workspace(source, out / "scratch", out / "index.sqlite", languages)
    options.languages = list(workspace.languages)
    try:
        summaries, records = _run(workspace, options, args, "cases")
        if summaries is None:
            return 1
        _report(out, options, summaries, records, source, args)
        if args.tune:
            return _tune(workspace, options, summaries, records, source, args, check_minutes)
    finally:
        workspace.close()
    return 0


def _languages(spec: str | None) -> list[str] | None:
    """--languages: None (the repository's main language), every supported one, or those named."""
    from context.syntax import LANGUAGES

    if spec is None:
        return None
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if names == ["all"]:
        return list(LANGUAGES)
    bad = [n for n in names if n not in LANGUAGES]
    if not names or bad:
        raise ValueError(
            f"--languages: {'unknown ' + ', '.join(bad) if bad else 'none named'} "
            f"(known: {', '.join(LANGUAGES)}, or all)"
        )
    return names


def _excluded_keys(runs: list[Path]) -> frozenset[str]:
    """The case keys of earlier runs (a run folder or its records file); ValueError when one
    holds no records, since a mistyped path would silently exclude nothing."""
    from server.eval.runner import RECORDS_FILE, load_records

    keys: set[str] = set()
    for run in runs:
        path = run / RECORDS_FILE if run.is_dir() else run
        records = load_records(path)
        if not records:
            raise ValueError(f"--exclude-cases {run}: no case records there")
        keys.update(r.key for r in records)
    return frozenset(keys)


def _run(workspace: Any, options: Any, args: argparse.Namespace, label: str) -> tuple[Any, Any]:
    from tqdm import tqdm

    from server.eval.report import summarize
    from server.eval.runner import run
    from server.model.registry import ModelError

    tty = sys.stderr.isatty()
    bar = tqdm(total=0, desc=label, unit="case", file=sys.stderr, disable=not tty)

    def progress(done: int, total: int, what: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(what[-50:], refresh=True)
        if not tty and what:  # a log, not a bar, when stderr is a file
            print(f"{label} {done}/{total} {time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)

    try:
        records = run(workspace, options, progress=progress)
    except (ValueError, ModelError) as exc:
        bar.close()
        fail(str(exc))
        return None, None
    bar.close()
    return summarize(records, list(options.configs)), records


def _report(
    out: Path, options: Any, summaries: Any, records: Any, source: Path, args: argparse.Namespace
) -> None:
    from server.eval.chart import ChartUnavailable, write_chart
    from server.eval.report import table

    body = table(summaries, records, executed=options.execute)
    meta = {
        "repo": options.repo,
        "source": str(source),
        "models": options.models,
        "levels": options.levels,
        "languages": options.languages,
        "n": options.n,
        "seed": options.seed,
        "configs": {name: c.describe() for name, c in options.configs.items()},
        "command": "infiller eval " + " ".join(sys.argv[2:]),
        "machine": _machine(),
        "infiller": _made_by(records, options.code_version),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    configs = "\n".join(f"- `{name}`: {desc}" for name, desc in meta["configs"].items())
    machine = meta["machine"]
    header = (
        f"# infiller eval: {options.repo}\n\n"
        f"Command: `{meta['command']}`\n\n"
        f"infiller {meta['infiller']}. Models {', '.join(options.models)}; "
        f"languages {', '.join(options.languages)}; levels {', '.join(options.levels)}; seed {options.seed}; "
        f"{machine['cpus']} CPUs, load average {machine['load_average']} at the end; {meta['finished']}.\n\n"
        f"Configurations:\n\n{configs}\n\n"
    )
    (out / "report.md").write_text(header + body, "utf-8")
    (out / "summary.json").write_text(
        json.dumps({"meta": meta, "summaries": [asdict(s) for s in summaries]}, indent=1), "utf-8"
    )
    print(body)
    if not args.no_chart and summaries:
        models = list(dict.fromkeys(s.model for s in summaries))
        try:
            for number, model in enumerate(models):
                # The first model's chart is chart.png; further models' are named after them.
                name = "chart.png" if number == 0 else f"chart-{model}.png"
                path = write_chart(summaries, out / name, f"infiller eval: {options.repo}", model)
                print(f"chart: {path}", file=sys.stderr)
        except ChartUnavailable as exc:
            print(f"(no chart: {exc})", file=sys.stderr)
    print(f"report: {out / 'report.md'}; cases: {out / 'cases.jsonl'}", file=sys.stderr)


def _tune(
    workspace: Any,
    options: Any,
    summaries: Any,
    records: Any,
    source: Path,
    args: argparse.Namespace,
    check_minutes: float | None,
) -> int:
    from dataclasses import replace

    from server.eval.configs import DEFAULT
    from server.eval.report import paired, table
    from server.eval.tune import choose_config, context_settings, writable
    from server.settings_file import write_workspace_settings

    model = options.models[0]
    candidates = [name for name, c in options.configs.items() if writable(c)]
    choice = choose_config(summaries, model, candidates)
    first, default = choice.chosen, choice.default
    if not choice.changed:
        # Writing the defaults would pin them: later changes of infiller's defaults would not apply.
        print(
            f"tune: nothing beat {DEFAULT} ({default.exact_match:.1%} exact, executable "
            f"{_pct(default.executable)}, {default.prompt_tokens:.0f} prompt tokens, {default.cases} cases) "
            f"among {choice.considered - 1} other configuration(s) at no more than its prompt length; "
            "no settings written",
            file=sys.stderr,
        )
        return 0
    print(
        f"tune: {choice.config} ({first.exact_match:.1%} exact, executable {_pct(first.executable)}, "
        f"{first.prompt_tokens:.0f} prompt tokens) vs {DEFAULT} ({default.exact_match:.1%}, "
        f"{_pct(default.executable)}, {default.prompt_tokens:.0f}) on {first.cases} cases",
        file=sys.stderr,
    )
    check = replace(
        options,
        configs={DEFAULT: options.configs[DEFAULT], choice.config: options.configs[choice.config]},
        out=options.out / "check",
        seed=options.seed + CHECK_SEED_OFFSET,
        minutes=check_minutes,
        sample=1,
        # The first sample's cases and whatever the user left out (--exclude-cases) too.
        exclude=options.exclude | frozenset(r.key for r in records),
        started_only=False,
    )
    check_summaries, check_records = _run(workspace, check, args, "check")
    if check_summaries is None:
        return 1
    check_report = table(check_summaries, check_records, executed=options.execute)
    print(check_report)
    (options.out / "check" / "report.md").write_text(check_report, "utf-8")
    rows = {s.config: s for s in check_summaries if s.model == model}
    if DEFAULT not in rows or choice.config not in rows:
        # A lead on one sample is what a second sample so often takes back (pygments, docutils):
        # settings are written only once they have held on cases they were not chosen on.
        print(
            f"tune: no case of the second sample finished (the repository has no cases left, or "
            f"--minutes ran out); {choice.config} is unchecked, no settings written",
            file=sys.stderr,
        )
        return 0
    pair = paired(check_records, model, DEFAULT, choice.config)
    a, b = rows[DEFAULT], rows[choice.config]
    check_text = (
        f"second sample ({b.cases} other cases, seed {check.seed}): exact {b.exact_match:.1%} vs "
        f"{a.exact_match:.1%} ({b.exact_match - a.exact_match:+.1%}), executable "
        f"{_pct(b.executable)} vs {_pct(a.executable)}; only one right: {pair.only_this} vs "
        f"{pair.only_default}, sign test p={pair.p:.2f}"
    )
    if _key(b) < _key(a):
        print(
            f"tune: {choice.config} lost to {DEFAULT} on the second sample ({check_text}); "
            "no settings written",
            file=sys.stderr,
        )
        return 0
    reason = (
        f"infiller eval --tune, {model}, {time.strftime('%Y-%m-%d')}: {choice.config} "
        f"({first.exact_match:.1%} exact, executable {_pct(first.executable)}) over {DEFAULT} "
        f"({choice.default.exact_match:.1%}, {_pct(choice.default.executable)}) on {first.cases} cases; "
        + check_text
    )
    path = write_workspace_settings(
        source,
        context_settings(options.configs[choice.config]),
        reason,
        header=f"Written by `infiller eval --tune` ({options.out}). Delete this file to return to the "
        "defaults.",
    )
    print(f"tune: wrote {path}\n  {reason}", file=sys.stderr)
    return 0


def _key(summary: Any) -> tuple[float, float]:
    return (summary.executable or 0.0, summary.exact_match)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"
