"""The evaluation runner on the tiny sample repository with a scripted model: no leakage, resume,
the time bound, reused prompts. (tests/test_eval_e2e.py runs the real model through the CLI.)"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from server.eval.configs import EvalConfig, choose
from server.eval.repo import Workspace
from server.eval.runner import RECORDS_FILE, Record, RunOptions, load_records, run
from server.eval.tune import writable
from server.model.fake import FakeEngine
from server.model.runtime import Backend, Runtime

TINY = Path(__file__).parent / "data" / "eval" / "tinyrepo"


class Scripted:
    """A loader whose model answers `x` and notes what the scratch copy held at each prompt."""

    def __init__(self, workspace: Workspace, answer: str = "x") -> None:
        self.workspace = workspace
        self.answer = answer
        self.loads = 0
        self.prompts: list[str] = []
        self.scratch_seen: dict[str, str] = {}

    def __call__(self, model: str, threads: int) -> Backend:
        self.loads += 1

        def script(prompt: str) -> str:
            self.prompts.append(prompt)
            for rel in ("tinypkg/shapes.py", "tinypkg/units.py"):
                self.scratch_seen.setdefault(rel, (self.workspace.root / rel).read_text())
            return self.answer

        return Runtime(FakeEngine(script))


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    ws = Workspace(TINY.resolve(), tmp_path / "scratch", tmp_path / "index.sqlite")
    yield ws  # type: ignore[misc]
    ws.close()


def options(out: Path, **over: object) -> RunOptions:
    base = dict(
        repo="tiny",
        models=["fake"],
        configs=choose(["no context", "all sources"]),
        levels=["statement", "function"],
        n=4,
        seed=5,
        out=out,
        execute=False,
    )
    base.update(over)
    return RunOptions(**base)  # type: ignore[arg-type]


def test_the_masked_target_is_nowhere_the_model_or_index_can_see(
    workspace: Workspace, tmp_path: Path
) -> None:
    loader = Scripted(workspace)
    records = run(workspace, options(tmp_path / "out", n=1, levels=["statement"]), loader=loader)
    assert len({r.key for r in records}) == 1
    record = records[0]
    original = (TINY / record.path).read_text()
    # While the model ran, the scratch copy held the file without its target...
    assert loader.scratch_seen[record.path] != original
    assert record.target not in loader.scratch_seen[record.path].split("\n")[record.line]
    # ... and afterwards it is restored, index included.
    assert (workspace.root / record.path).read_text() == original
    assert not any(record.target in p.split("<|fim_middle|>")[0].split("\n")[-1] for p in loader.prompts)


def test_a_finished_run_resumes_with_nothing_to_do(workspace: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "out"
    loader = Scripted(workspace)
    first = run(workspace, options(out), loader=loader)
    assert len({r.key for r in first}) == 4 and len(first) == 4 * 3  # 2 configurations + the default
    calls = len(loader.prompts)
    again = run(workspace, options(out), loader=loader)
    assert len(again) == len(first) and len(loader.prompts) == calls and loader.loads == 1
    # A run cut in the middle of its last case: that case (and only it) runs again.
    lines = (out / RECORDS_FILE).read_text().splitlines()
    last = json.loads(lines[-1])["key"]
    kept = [ln for ln in lines if json.loads(ln)["key"] != last]
    (out / RECORDS_FILE).write_text("\n".join(kept) + "\n" + lines[-1][:20])  # and a torn line
    resumed = run(workspace, options(out), loader=loader)
    assert len(resumed) == len(first)
    assert {r.key for r in load_records(out / RECORDS_FILE)} == {r.key for r in first}


def test_started_only_reruns_records_left_out_and_starts_no_new_case(
    workspace: Workspace, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    loader = Scripted(workspace)
    first = run(workspace, options(out), loader=loader)
    # Two cases done, one record of the second left out to run again (as bench/eval_rerun.py does).
    keys = sorted({r.key for r in first})[:2]
    kept = [r for r in first if r.key in keys][:-1]
    (out / RECORDS_FILE).write_text("".join(json.dumps(asdict(r)) + "\n" for r in kept))
    calls = len(loader.prompts)
    again = run(workspace, options(out, started_only=True), loader=loader)
    assert {r.key for r in again} == set(keys) and len(again) == len(kept) + 1
    assert len(loader.prompts) > calls  # the record left out ran again; the other two cases did not
    assert len(load_records(out / RECORDS_FILE)) == len(kept) + 1


def test_other_cases_are_refused_in_the_same_folder(workspace: Workspace, tmp_path: Path) -> None:
    run(workspace, options(tmp_path / "out", n=1), loader=Scripted(workspace))
    with pytest.raises(ValueError, match="seed"):
        run(workspace, options(tmp_path / "out", n=1, seed=6), loader=Scripted(workspace))


def test_the_time_bound_stops_before_the_next_case(workspace: Workspace, tmp_path: Path) -> None:
    loader = Scripted(workspace)
    assert run(workspace, options(tmp_path / "out", minutes=1e-9), loader=loader) == []
    assert loader.prompts == []


def test_identical_prompts_are_generated_once(workspace: Workspace, tmp_path: Path) -> None:
    loader = Scripted(workspace)
    configs = {**choose(["no context"]), "same window": EvalConfig("same window")}
    records = run(workspace, options(tmp_path / "out", configs=configs, n=2), loader=loader)
    copies = [r for r in records if r.config == "same window"]
    assert len(copies) == 2 and all(r.reused_from == "no context" for r in copies)
    assert not any(r.reused_from for r in records if r.config != "same window")


def test_a_relative_out_folder_builds_the_same_prompts_as_an_absolute_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `infiller eval ... --out runs/x` (a relative path): the index read the completed file's
    # relative path as its own, did not recognise the file as itself, and retrieval offered its
    # own windows as context (pygments: 40% of the similar-window answers came back empty, the
    # same cases with an absolute --out did not).
    prompts = {}
    for mode in ("absolute", "relative"):
        here = tmp_path / mode
        here.mkdir()
        monkeypatch.chdir(here)
        base = here if mode == "absolute" else Path(".")
        ws = Workspace(TINY.resolve(), base / "scratch", base / "index.sqlite")
        try:
            loader = Scripted(ws)
            run(ws, options(base / "out", n=4, configs=choose(["similar"])), loader=loader)
        finally:
            ws.close()
        prompts[mode] = loader.prompts
    assert prompts["absolute"] and prompts["relative"] == prompts["absolute"]


def _pairs(records: list[Record]) -> dict[str, dict[str, Record]]:
    """Records by case, then by configuration; every case has both of a two-configuration run."""
    by_key: dict[str, dict[str, Record]] = {}
    for record in records:
        by_key.setdefault(record.key, {})[record.config] = record
    assert by_key and all(len(pair) == 2 for pair in by_key.values())
    return by_key


def test_the_iterative_configuration_pays_for_a_second_pass_only_where_one_ran(
    workspace: Workspace, tmp_path: Path
) -> None:
    # An answer that names units' function: its body is not in the outline the first prompt shows.
    loader = Scripted(workspace, answer="inches_to_cm(width)")
    records = run(workspace, options(tmp_path / "out", configs=choose(["default iterative"])), loader=loader)
    by_key = _pairs(records)
    ran = 0
    for pair in by_key.values():
        once, twice = pair["default"], pair["default iterative"]
        if twice.prompt_tokens == once.prompt_tokens:
            assert twice.total_ms == once.total_ms  # the draft changed no prompt: one pass
        else:
            ran += 1
            assert twice.prompt_tokens > once.prompt_tokens and twice.total_ms >= once.total_ms
    assert ran > 0


def test_the_oracle_retrieves_what_the_hidden_answer_names_and_tune_never_writes_it(
    workspace: Workspace, tmp_path: Path
) -> None:
    loader = Scripted(workspace)
    configs = choose(["default oracle"])
    records = run(
        workspace, options(tmp_path / "out", configs=configs, levels=["crossfile"], n=6), loader=loader
    )
    by_key = _pairs(records)
    # The answers name functions of another module: reading them, retrieval shows more of that
    # module than the default finds from the code around the cursor.
    assert any(
        pair["default oracle"].prompt_tokens != pair["default"].prompt_tokens for pair in by_key.values()
    )
    # (That a draft changes the context and not the file's text: tests/test_refine.py.)
    assert not writable(configs["default oracle"]) and writable(configs["default"])


def test_a_fresh_sample_leaves_out_an_earlier_runs_cases_and_keeps_its_own_folder(
    workspace: Workspace, tmp_path: Path
) -> None:
    first = run(workspace, options(tmp_path / "first", n=3), loader=Scripted(workspace))
    seen = frozenset(r.key for r in first)
    fresh = options(tmp_path / "fresh", n=3, exclude=seen)
    second = run(workspace, fresh, loader=Scripted(workspace))
    assert second and not {r.key for r in second} & seen
    # The same folder with another set left out is another sample: refused, not mixed.
    with pytest.raises(ValueError, match="excluded"):
        run(workspace, options(tmp_path / "fresh", n=3), loader=Scripted(workspace))


def test_excluding_a_run_that_holds_no_cases_is_an_error(tmp_path: Path) -> None:
    from server.cli.eval import _excluded_keys

    with pytest.raises(ValueError, match="no case records"):
        _excluded_keys([tmp_path / "mistyped"])


def test_the_report_names_the_code_that_made_its_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import server.cli.eval as cli
    from server.cli import main
    from server.eval import runner

    monkeypatch.setattr(runner, "default_loader", lambda model, threads: Runtime(FakeEngine(lambda p: "x")))
    out = tmp_path / "out"
    argv = ["eval", str(TINY.resolve()), "--levels", "statement", "--n", "2", "--no-exec", "--no-chart"]
    argv += ["--model", "qwen2.5-coder-0.5b", "--out", str(out)]
    # The version is the one the run started with: a commit made while it runs did not make them.
    versions = iter(["commit aaaaaaa", "commit bbbbbbb"])
    monkeypatch.setattr(cli, "_code_version", lambda: next(versions))
    assert main([*argv, "--configs", "no context"]) == 0
    assert "infiller commit aaaaaaa." in (out / "report.md").read_text()
    # Resumed by other code with a configuration added: both are named, with their shares.
    assert main([*argv, "--configs", "no context,similar"]) == 0
    header = (out / "report.md").read_text().split("\n\n")[2]
    assert header.startswith("infiller commit aaaaaaa (4 records), commit bbbbbbb (2 records).")
    assert {r.infiller for r in load_records(out / RECORDS_FILE)} == {"commit aaaaaaa", "commit bbbbbbb"}


def test_a_repository_without_cases_is_a_clear_error_not_an_empty_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.cli import main

    repo = tmp_path / "docs-only"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "conf.py").write_text("project = 'x'\n")
    out = tmp_path / "out"
    assert main(["eval", str(repo), "--no-exec", "--no-chart", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no case to evaluate" in err and "0 python file(s) outside tests and docs" in err
    assert not (out / "report.md").exists()


def test_a_pinned_package_pip_cannot_fetch_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.cli import main

    # Real pip, kept off the network: it fails as it does for a version that does not exist.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["eval", "nosuchpkg-zzqx==1.0", "--no-exec", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "nosuchpkg-zzqx==1.0: pip could not download its sdist" in err
    assert "No matching distribution" in err and "Traceback" not in err


def test_a_run_that_found_no_case_leaves_its_folder_usable(workspace: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    empty = Workspace(tmp_path / "empty", tmp_path / "empty-scratch", tmp_path / "empty.sqlite")
    try:
        with pytest.raises(ValueError, match="no case to evaluate"):
            run(empty, options(out, seed=9), loader=Scripted(empty))
    finally:
        empty.close()
    # The same folder then takes another run: no "holds a run of other cases".
    assert run(workspace, options(out), loader=Scripted(workspace))
    # Nor does a folder whose earlier run was stopped before its first case was done.
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "run.json").write_text(json.dumps(options(stopped, n=9).case_parameters()))
    assert run(workspace, options(stopped), loader=Scripted(workspace))


@pytest.mark.parametrize(
    "bad",
    [["--n", "0"], ["--n", "x"], ["--minutes", "-1"], ["--test-timeout", "0"], ["--per-file", "0"]],
)
def test_numbers_out_of_range_are_refused_before_anything_runs(
    bad: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["eval", str(TINY), "--no-exec", "--out", str(tmp_path / "out"), *bad])
    assert stopped.value.code == 2 and f"argument {bad[0]}: expected" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
