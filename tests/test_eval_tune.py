"""`infiller eval --tune` through the command line, with a scripted model whose answers depend on
the prompt: it is right only without retrieved context, so tuning must pick `no context`, check it
on a second sample and write it where the language server reads it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from server.cli import main
from server.eval import runner
from server.model.fake import FakeEngine
from server.model.runtime import Runtime
from server.settings import read_settings
from server.settings_file import load_workspace_settings, merge

TINY = Path(__file__).parent / "data" / "eval" / "tinyrepo"
FILE_SEP = "<|file_sep|>"


def oracle(root: Path) -> runner.Loader:
    """Answers the true target when the prompt holds no retrieved file, a wrong one otherwise."""
    texts = {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*.py")}

    def script(prompt: str) -> str:
        if "<|fim_middle|>" not in prompt:
            return ""  # asked while the prompt is still being read
        if prompt.count(FILE_SEP) > 1:  # the current file's own header is one
            return "wrong_answer()\n"
        above = prompt.split("<|fim_prefix|>")[1].split("<|fim_suffix|>")[0]
        suffix = prompt.split("<|fim_suffix|>")[1].split("<|fim_middle|>")[0]
        head = prompt.split("<|fim_middle|>")[1]
        for text in texts.values():
            for start in [0, *(i + 1 for i, c in enumerate(text) if c == "\n")]:
                # The cursor's line: the lines above end the prefix, the line starts with the head.
                if not text[:start].endswith(above) or not text[start:].startswith(head):
                    continue
                rest = text[start + len(head) :]
                if suffix and suffix in rest:
                    return rest[: rest.index(suffix)] + "\n"  # the healed end, then the target
        return "unknown()\n"

    return lambda model, threads: Runtime(FakeEngine(script))


def tiny_repo(tmp_path: Path) -> Path:
    """A copy of the tiny repository: tuning writes its settings file there."""
    repo = tmp_path / "tinyrepo"
    shutil.copytree(TINY, repo)
    return repo


def tune_argv(repo: Path, out: Path) -> list[str]:
    """`infiller eval --tune` on the tiny repository with `no context` as the one candidate."""
    argv = ["eval", str(repo), "--tune", "--configs", "no context", "--levels", "statement,expression"]
    return [*argv, "--n", "4", "--no-exec", "--no-chart", "--out", str(out), "--model", "qwen2.5-coder-0.5b"]


def test_tune_picks_what_wins_checks_it_and_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, out = tiny_repo(tmp_path), tmp_path / "out"
    monkeypatch.setattr(runner, "default_loader", oracle(repo))
    assert main(tune_argv(repo, out)) == 0
    report = (out / "report.md").read_text()
    assert "not measured (--no-exec)" in report
    # Which code made the numbers (this checkout's commit): a report must be reproducible.
    assert re.search(r"infiller (commit [0-9a-f]{7,}(\+changes)?|version \S+)\.", report)
    assert (out / "check" / "report.md").is_file()
    loaded = load_workspace_settings(repo)
    assert loaded is not None
    assert loaded.settings == {
        "context": {
            "sources": [],
            "budgetTokens": 0,
            "prefixTokens": 1536,
            "suffixTokens": 256,
            "importsAboveWindow": True,
        }
    }
    assert "no context" in loaded.reason and "second sample" in loaded.reason
    settings, errors = read_settings(merge({"infiller": {}}, loaded))
    assert errors == [] and settings.context.budget_tokens == 0


def test_every_configuration_can_be_named_on_the_command_line() -> None:
    # --configs is comma-separated: a name with a comma in it could never be chosen.
    from server.eval.configs import choose, tune_candidates

    names = list(tune_candidates())
    arg = ",".join(names)
    assert list(choose([n.strip() for n in arg.split(",")], tune=True)) == names


def test_the_tuning_check_also_leaves_out_the_cases_the_user_excluded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tiny_repo(tmp_path)
    monkeypatch.setattr(runner, "default_loader", oracle(repo))
    common = ["--levels", "statement,expression", "--no-exec", "--no-chart", "--model", "qwen2.5-coder-0.5b"]
    earlier = tmp_path / "earlier"
    assert (
        main(
            [
                "eval",
                str(repo),
                "--configs",
                "no context",
                "--n",
                "4",
                "--seed",
                "1001",
                "--out",
                str(earlier),
                *common,
            ]
        )
        == 0
    )
    left_out = {r.key for r in runner.load_records(earlier / runner.RECORDS_FILE)}
    assert left_out
    out = tmp_path / "out"
    argv = ["eval", str(repo), "--tune", "--configs", "no context", "--n", "4", "--out", str(out)]
    assert main([*argv, "--exclude-cases", str(earlier), *common]) == 0
    checked = {r.key for r in runner.load_records(out / "check" / runner.RECORDS_FILE)}
    # The check's seed is the first sample's + 1000, the earlier run's: without the user's
    # exclusions it would draw the very cases left out.
    assert checked and not checked & left_out


def test_a_choice_no_second_sample_checked_is_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tiny_repo(tmp_path)
    monkeypatch.setattr(runner, "default_loader", oracle(repo))
    # The second sample finds no case (a small repository whose cases the first took, or
    # --minutes spent before its first case finished).
    first_sample = runner.sample_cases
    monkeypatch.setattr(runner, "sample_cases", lambda w, o: [] if o.sample else first_sample(w, o))
    assert main(tune_argv(repo, tmp_path / "out")) == 0
    err = capsys.readouterr().err
    # The first sample chose `no context`, as in the test above, where the check then wrote it.
    assert "tune: no context (100.0% exact" in err
    assert load_workspace_settings(repo) is None
    assert "unchecked, no settings written" in err


def test_a_tie_keeps_the_defaults_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, out = tiny_repo(tmp_path), tmp_path / "out"
    # Every configuration gets every case wrong alike: nothing earns a change.
    monkeypatch.setattr(runner, "default_loader", lambda m, t: Runtime(FakeEngine(lambda p: "unknown()\n")))
    assert main(tune_argv(repo, out)) == 0
    err = capsys.readouterr().err
    assert "tune: nothing beat default (0.0% exact" in err and "among 1 other configuration(s)" in err
    assert load_workspace_settings(repo) is None and not (out / "check").exists()
