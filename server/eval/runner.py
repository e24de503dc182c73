"""Running the cases: every configuration on the same masked cursor, one case at a time.

Each case masks its file in the scratch copy (no leakage), then runs every configuration with a
fresh KV cache and retrieval history, then (optionally) runs the covering tests on each distinct
completion. A case's records are appended to the JSONL file together, so a run cut short (the
`--minutes` bound, Ctrl-C) resumes at the next case with the same cases and pairs intact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from context.masking import DEFAULT_PER_FILE, Mask, sample_masks
from server.completion import Completer, Prompt
from server.eval.configs import EvalConfig
from server.eval.execute import Coverage, Executor
from server.eval.metrics import edit_similarity, exact_match, identifier_f1, normalize
from server.eval.repo import Workspace
from server.model.runtime import Backend
from server.request import CompletionContext

log = logging.getLogger(__name__)

RECORDS_FILE = "cases.jsonl"
RUN_FILE = "run.json"
# Parameters that decide which cases a run holds: a resumed run must have the same.
CASE_PARAMETERS = ("repo", "n", "levels", "seed", "per_file", "sample", "languages")
# What a run folder written before a parameter existed had (every earlier run was Python's).
LEGACY_PARAMETERS: dict[str, Any] = {"languages": ["python"]}


@dataclass
class Record:
    """One configuration's completion of one case, scored (one JSONL line)."""

    model: str
    config: str
    key: str
    level: str
    path: str
    line: int
    column: int
    target: str
    prediction: str
    exact: bool
    edit_similarity: float
    identifier_f1: float
    prompt_tokens: int
    context_tokens: int
    total_ms: float
    prompt_ms: float
    retrieval_ms: float
    # The same prompt as an earlier configuration of this case: its completion (and latency) reused.
    reused_from: str = ""
    # Executable correctness: covered = the file has covering tests; usable = they discriminate
    # (pass on the original, fail without the target); passed is None when not usable or not run.
    covered: bool = False
    usable: bool = False
    passed: bool | None = None
    sample: int = 0
    # Which infiller made it (RunOptions.code_version): a resumed run can hold records of several.
    infiller: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class RunOptions:
    repo: str
    models: list[str]
    configs: dict[str, EvalConfig]
    levels: list[str]
    n: int
    seed: int
    out: Path
    minutes: float | None = None
    threads: int = 0  # 0: the self-test's choice, as the editor's model gets
    execute: bool = True
    test_timeout_s: float = 60.0
    per_file: int | None = None
    sample: int = 0  # 0: the main sample; 1: the tuning check's second, disjoint sample
    exclude: frozenset[str] = field(default_factory=frozenset)
    # Resume only the cases that have a record (fill in a configuration added later, or records
    # left out to run again after a change); start no new one.
    started_only: bool = False
    # The languages whose files give cases (server/eval/repo.py: default, the repository's main one).
    languages: list[str] = field(default_factory=lambda: ["python"])
    # The code this process runs, taken when it started (a commit made while a run goes on is not
    # the code that made its records); stamped on each record.
    code_version: str = ""

    def case_parameters(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "n": self.n,
            "levels": list(self.levels),
            "seed": self.seed,
            "per_file": self.per_file,
            "sample": self.sample,
            "languages": list(self.languages),
            # Which cases were left out (--exclude-cases) changes the sample: a digest, so that a
            # run is not resumed with another set; absent when none were, as in earlier runs. The
            # tuning check's exclusions are the first sample's cases, which grow while that sample
            # is resumed: its own seed keeps it apart instead.
            **({"excluded": _digest(self.exclude)} if self.exclude and not self.sample else {}),
        }


def _digest(keys: frozenset[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode("utf-8")).hexdigest()[:16]


Loader = Callable[[str, int], Backend]


def default_loader(model: str, threads: int) -> Backend:
    """The registry model in this process: an evaluation runs one request at a time and must not
    be stopped by the editor's hang watchdog when a niced run on busy cores reads a long prompt
    for minutes."""
    from server.model.loader import load_runtime

    return load_runtime(model, n_threads=threads or None, in_process=True)


def load_records(path: Path) -> list[Record]:
    """Records of earlier runs; a torn last line (a killed run) is ignored."""
    records: list[Record] = []
    if not path.is_file():
        return records
    for line in path.read_text("utf-8").splitlines():
        try:
            records.append(Record.from_json(json.loads(line)))
        except (json.JSONDecodeError, TypeError):
            log.warning("%s: skipped an unreadable line", path)
    return records


def check_resume(out: Path, options: RunOptions) -> None:
    """Refuse to mix cases of different samples in one output folder."""
    run_file = out / RUN_FILE
    wanted = options.case_parameters()
    records = out / RECORDS_FILE
    # A folder whose run never finished a case holds nothing to mix with: it is started afresh.
    if run_file.is_file() and records.is_file() and records.stat().st_size:
        saved = {**LEGACY_PARAMETERS, **json.loads(run_file.read_text("utf-8"))}
        differs = {
            k: (saved.get(k), wanted.get(k)) for k in {*saved, *wanted} if saved.get(k) != wanted.get(k)
        }
        if differs:
            detail = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in differs.items())
            raise ValueError(f"{out} holds a run of other cases ({detail}); use another --out")
    out.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(wanted, indent=1), "utf-8")


def sample_cases(workspace: Workspace, options: RunOptions) -> list[Mask]:
    files = workspace.files()
    per_file = options.per_file or max(DEFAULT_PER_FILE, -(-options.n // max(1, len(files))))
    return sample_masks(
        files,
        workspace.read,
        options.levels,
        options.n,
        seed=options.seed,
        per_file=per_file,
        imported=workspace.imported_elsewhere,
        exclude=options.exclude,
    )


def _prediction(text: str | None, target: str) -> str:
    """What is compared: the first line for a one-line target, the whole completion otherwise."""
    text = text or ""
    return text.split("\n")[0] if "\n" not in target.strip("\n") else text


Progress = Callable[[int, int, str], None]


def run(
    workspace: Workspace,
    options: RunOptions,
    *,
    loader: Loader | None = None,
    progress: Progress | None = None,
) -> list[Record]:
    """Run (or resume) the evaluation; returns every record of this sample, old and new.

    `loader(model, threads)` gives the model backend (default: the registry model, in its process).
    """
    loader = loader or default_loader
    masks = sample_cases(workspace, options)
    if not masks and not options.sample:
        # An empty report would read as a result; the tuning check may find none (cli/eval.py).
        left_out = f", {len(options.exclude)} case(s) left out by --exclude-cases" if options.exclude else ""
        raise ValueError(
            f"{options.repo}: no case to evaluate at level(s) {', '.join(options.levels)} "
            f"({len(workspace.files())} {'/'.join(workspace.languages)} file(s) outside tests and docs"
            f"{left_out})"
        )
    check_resume(options.out, options)
    records_path = options.out / RECORDS_FILE
    records = load_records(records_path)
    done = {(r.model, r.config, r.key) for r in records}
    deadline = time.monotonic() + options.minutes * 60 if options.minutes else None
    executor = Executor(workspace.source, options.test_timeout_s) if options.execute else None
    total = len(masks) * len(options.models)
    finished = sum(
        all((m, c, mask.key) in done for c in options.configs) for m in options.models for mask in masks
    )
    try:
        for model in options.models:
            todo = [m for m in masks if any((model, c, m.key) not in done for c in options.configs)]
            if options.started_only:
                todo = [m for m in todo if any((model, c, m.key) in done for c in options.configs)]
            if not todo:
                continue
            runtime = loader(model, options.threads)
            try:
                completers = {
                    name: Completer(
                        runtime,
                        root=workspace.root,
                        index=workspace.index if config.sources else None,
                        settings=config.completion_settings(),
                        sources=config.sources or None,
                    )
                    for name, config in options.configs.items()
                }
                for mask in todo:
                    if deadline is not None and time.monotonic() > deadline:
                        log.info("--minutes reached: stopping before case %s", mask.key)
                        return records
                    if progress is not None:
                        progress(finished, total, f"{model} {mask.level} {mask.path}:{mask.line + 1}")
                    wanted = [c for c in options.configs if (model, c, mask.key) not in done]
                    new = _run_case(
                        workspace, mask, model, completers, options.configs, wanted, executor, options.sample
                    )
                    with records_path.open("a", encoding="utf-8") as out:
                        for record in new:
                            record.infiller = options.code_version
                            out.write(json.dumps(asdict(record)) + "\n")
                    records.extend(new)
                    finished += 1
            finally:
                close = getattr(runtime, "close", None)
                if close is not None:
                    close()
    finally:
        if executor is not None:
            executor.close()
        if progress is not None:
            progress(finished, total, "")
    return records


def _run_case(
    workspace: Workspace,
    mask: Mask,
    model: str,
    completers: dict[str, Completer],
    configs: dict[str, EvalConfig],
    wanted: Sequence[str],
    executor: Executor | None,
    sample: int,
) -> list[Record]:
    text = workspace.read(mask.path) or ""
    path = workspace.root / mask.path
    request = CompletionContext(
        str(path), text[: mask.start], text[mask.end :], path=path, root=workspace.root
    )
    new: list[Record] = []
    by_prompt: dict[tuple[int, ...], Record] = {}

    def answer(name: str, prompt: Prompt) -> Record:
        earlier = by_prompt.get(tuple(prompt.tokens))
        if earlier is not None:
            # Greedy decoding of the same tokens gives the same completion: not run twice.
            return Record(**{**asdict(earlier), "config": name, "reused_from": earlier.config})
        result = completers[name].complete(request, prompt=prompt, reset_cache=True)
        prediction = _prediction(result.text, mask.target)
        record = Record(
            model=model,
            config=name,
            key=mask.key,
            level=mask.level,
            path=mask.path,
            line=mask.line,
            column=mask.column,
            target=mask.target,
            prediction=prediction,
            exact=exact_match(prediction, mask.target),
            edit_similarity=round(edit_similarity(prediction, mask.target), 4),
            identifier_f1=round(identifier_f1(prediction, mask.target), 4),
            prompt_tokens=len(prompt.tokens),
            context_tokens=int(result.tokens.get("context", 0)),
            total_ms=float(result.timings.get("total_ms", 0.0)),
            prompt_ms=float(result.timings.get("prompt_ms", 0.0)),
            retrieval_ms=float(result.timings.get("retrieval_ms", 0.0)),
            sample=sample,
        )
        by_prompt[tuple(prompt.tokens)] = record
        return record

    with workspace.masked(mask, text):
        for name in wanted:
            completer = completers[name]
            # A fresh retrieval history per case: results must not depend on case order. The
            # retriever is the completer's own (no public handle), as in the cross-file bench.
            retriever = getattr(completer, "_retriever", None)
            if retriever is not None:
                retriever.reset()
            # The oracle's retrieval reads the hidden answer as if typed; its prompt text is the
            # cursor's, like every other configuration's.
            draft = mask.target if configs[name].oracle else None
            prompt = completer.build_prompt(request, draft=draft)
            record = answer(name, prompt)
            if configs[name].iterate:
                # The two passes of the `refine` setting, run here so that the first is the
                # default's answer when their prompts are the same, not generated again.
                # Where the draft changes no prompt there is no second pass, and nothing to pay.
                again = completer.refine_prompt(request, record.prediction, prompt)
                if again is not None:
                    record = _second_pass(record, answer(name, again))
            new.append(record)
    if executor is not None:
        _execute(workspace, mask, text, new, executor)
    return new


def _second_pass(first: Record, second: Record) -> Record:
    """The second answer, charged for both passes: their prompts and their time."""
    return Record(
        **{
            **asdict(second),
            "config": first.config,
            "reused_from": "",
            "prompt_tokens": first.prompt_tokens + second.prompt_tokens,
            "total_ms": first.total_ms + second.total_ms,
            "prompt_ms": first.prompt_ms + second.prompt_ms,
            "retrieval_ms": first.retrieval_ms + second.retrieval_ms,
        }
    )


def _execute(workspace: Workspace, mask: Mask, text: str, records: list[Record], executor: Executor) -> None:
    tests = workspace.covering_tests(mask.path)
    for record in records:
        record.covered = bool(tests)
    if not tests:
        return
    cover: Coverage = executor.coverage(mask, text, tests)
    verdicts: dict[str, bool] = {}
    for record in records:
        record.usable = cover.usable
        if not cover.usable:
            continue
        key = normalize(record.prediction)
        if record.exact:
            record.passed = True  # the original text: it passes by the baseline
        elif key in verdicts:
            record.passed = verdicts[key]
        else:
            # The completion as the editor inserts it, in place of the target.
            completion = record.prediction
            if "\n" not in mask.target and mask.target != mask.target.rstrip():
                completion += mask.target[len(mask.target.rstrip()) :]
            record.passed = verdicts[key] = executor.passes(cover, mask, text, completion)
