"""Summaries of an evaluation's records: the table, per-level scores and paired comparisons."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from server.eval.configs import DEFAULT
from server.eval.metrics import sign_test
from server.eval.runner import Record


@dataclass
class Summary:
    """One (model, configuration) over the cases every configuration of that model completed."""

    model: str
    config: str
    cases: int
    exact_match: float
    edit_similarity: float
    identifier_f1: float
    executable_cases: int  # cases whose covering tests discriminate
    executable: float | None  # share of those passing with this configuration's completion
    prompt_tokens: float
    total_ms_mean: float
    total_ms_p50: float
    per_level: dict[str, tuple[int, float, float | None]] = field(default_factory=dict)  # n, exact, exec


@dataclass
class Pair:
    """This configuration against the default on the same cases: who alone got which right."""

    model: str
    config: str
    only_default: int
    only_this: int
    p: float
    exec_only_default: int = 0
    exec_only_this: int = 0
    exec_p: float = 1.0


def complete_cases(records: Sequence[Record], model: str, configs: Sequence[str]) -> list[str]:
    """Case keys every configuration has a record for (a run cut short leaves none half-done,
    but a resumed run with more configurations can)."""
    have: dict[str, set[str]] = {}
    for r in records:
        if r.model == model:
            have.setdefault(r.key, set()).add(r.config)
    return [k for k, got in have.items() if set(configs) <= got]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarize(records: Sequence[Record], configs: Sequence[str]) -> list[Summary]:
    models = list(dict.fromkeys(r.model for r in records))
    out = []
    for model in models:
        keys = set(complete_cases(records, model, configs))
        for config in configs:
            rows = [r for r in records if r.model == model and r.config == config and r.key in keys]
            if not rows:
                continue
            usable = [r for r in rows if r.usable and r.passed is not None]
            ms = sorted(r.total_ms for r in rows)
            levels: dict[str, tuple[int, float, float | None]] = {}
            for level in dict.fromkeys(r.level for r in rows):
                at = [r for r in rows if r.level == level]
                at_exec = [r for r in at if r.usable and r.passed is not None]
                levels[level] = (
                    len(at),
                    _mean([float(r.exact) for r in at]),
                    _mean([float(bool(r.passed)) for r in at_exec]) if at_exec else None,
                )
            out.append(
                Summary(
                    model=model,
                    config=config,
                    cases=len(rows),
                    exact_match=_mean([float(r.exact) for r in rows]),
                    edit_similarity=_mean([r.edit_similarity for r in rows]),
                    identifier_f1=_mean([r.identifier_f1 for r in rows]),
                    executable_cases=len(usable),
                    executable=_mean([float(bool(r.passed)) for r in usable]) if usable else None,
                    prompt_tokens=_mean([float(r.prompt_tokens) for r in rows]),
                    total_ms_mean=_mean(ms),
                    total_ms_p50=ms[len(ms) // 2],
                    per_level=levels,
                )
            )
    return out


def paired(records: Sequence[Record], model: str, a: str, b: str) -> Pair:
    """Cases only `a` gets right, only `b` does, and the sign test, for exact match and execution."""
    keys = set(complete_cases(records, model, [a, b]))
    by: dict[tuple[str, str], Record] = {
        (r.config, r.key): r for r in records if r.model == model and r.key in keys
    }
    only_a = sum(by[(a, k)].exact and not by[(b, k)].exact for k in keys)
    only_b = sum(by[(b, k)].exact and not by[(a, k)].exact for k in keys)
    run = [k for k in keys if by[(a, k)].passed is not None and by[(b, k)].passed is not None]
    ex_a = sum(bool(by[(a, k)].passed) and not by[(b, k)].passed for k in run)
    ex_b = sum(bool(by[(b, k)].passed) and not by[(a, k)].passed for k in run)
    return Pair(model, b, only_a, only_b, sign_test(only_a, only_b), ex_a, ex_b, sign_test(ex_a, ex_b))


def coverage_share(records: Sequence[Record]) -> tuple[int, int, int]:
    """Cases in all, cases whose file has covering tests, cases whose tests discriminate."""
    cases: dict[str, Record] = {}
    for r in records:
        cases.setdefault(r.key, r)
    return len(cases), sum(r.covered for r in cases.values()), sum(r.usable for r in cases.values())


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def table(summaries: Sequence[Summary], records: Sequence[Record], *, executed: bool = True) -> str:
    """The markdown report body: the summary, per level, paired with the default (and the share
    of cases with covering tests when the tests were run)."""
    lines = [
        "| model | configuration | cases | exact match | edit sim. | identifier F1 | executable (cases) "
        "| prompt tokens | mean / p50 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.model} | {s.config} | {s.cases} | {s.exact_match:.1%} | {s.edit_similarity:.3f} | "
            f"{s.identifier_f1:.3f} | {_pct(s.executable)} ({s.executable_cases}) | {s.prompt_tokens:.0f} | "
            f"{s.total_ms_mean:.0f} / {s.total_ms_p50:.0f} |"
        )
    levels = list(dict.fromkeys(level for s in summaries for level in s.per_level))
    if levels:
        lines += [
            "",
            "Exact match (executable) by level; cases in the header:",
            "",
            "| model | configuration | "
            + " | ".join(f"{lv} ({summaries[0].per_level.get(lv, (0, 0.0, None))[0]})" for lv in levels)
            + " |",
            "|---|---|" + "---:|" * len(levels),
        ]
        for s in summaries:
            cells = []
            for lv in levels:
                n, exact, ex = s.per_level.get(lv, (0, 0.0, None))
                cells.append(f"{exact:.0%} ({_pct(ex)})" if n else "–")
            lines.append(f"| {s.model} | {s.config} | " + " | ".join(cells) + " |")
    names = list(dict.fromkeys(s.config for s in summaries))
    if DEFAULT in names and len(names) > 1:
        lines += [
            "",
            f"Paired with `{DEFAULT}` (cases only one of the two gets right; two-sided sign test):",
            "",
            f"| model | configuration | exact: only {DEFAULT} | only this | p | executable: only {DEFAULT} "
            "| only this | p |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for model in dict.fromkeys(s.model for s in summaries):
            for name in names:
                if name == DEFAULT:
                    continue
                p = paired(records, model, DEFAULT, name)
                lines.append(
                    f"| {model} | {name} | {p.only_default} | {p.only_this} | {p.p:.2f} | "
                    f"{p.exec_only_default} | {p.exec_only_this} | {p.exec_p:.2f} |"
                )
    total, covered, usable = coverage_share(records)
    if not executed:
        lines += ["", "Executable correctness not measured (--no-exec)."]
    elif total:
        lines += [
            "",
            f"Covering tests: {covered} of {total} cases ({covered / total:.0%}) have a test file that "
            f"covers their file; for {usable} ({usable / total:.0%}) those tests pass on the original and "
            "fail without the target, and only those count for executable correctness.",
        ]
    return "\n".join(lines) + "\n"
