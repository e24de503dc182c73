"""The sandbox runs real pytest processes on a throwaway copy of a workspace; the verdict comes
from a results stream checked against pytest's exit status; without isolation it refuses.

The escapes it contains are in tests/test_sandbox_escapes.py."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
from lsprotocol import types

import server.actions.sandbox as sandbox_module
from server.actions.sandbox import Sandbox, SandboxUnavailable, isolation_available, read_results, sandbox_env
from tests.actions_client import Editor, plain

DATA = Path(__file__).parent / "data" / "actions"
needs_isolation = pytest.mark.skipif(
    not isolation_available()[0], reason=f"no sandbox on this machine: {isolation_available()[1]}"
)


@pytest.fixture
def fixbug(tmp_path: Path) -> Path:
    root = tmp_path / "fixbug"
    shutil.copytree(DATA / "fixbug", root)
    return root


@needs_isolation
def test_per_test_outcomes_with_the_failure_message(fixbug: Path) -> None:
    with Sandbox(fixbug) as sandbox:
        run = sandbox.run_pytest({}, ["tests/test_intervals.py"])
    assert sorted(run.passed()) == ["test_merge_empty", "test_merge_overlapping"]
    [failure] = run.failed()
    assert failure.name == "test_merge_touching_intervals"
    assert "[(1, 4), (4, 5)] == [(1, 5)]" in failure.message
    assert not run.collection_error


@needs_isolation
def test_overlay_is_tested_and_the_workspace_is_never_touched(fixbug: Path) -> None:
    original = (fixbug / "intervals.py").read_text()
    fixed = original.replace("start < result[-1][1]", "start <= result[-1][1]")
    new_test = "from intervals import merge\n\n\ndef test_new():\n    assert merge([(1, 1)]) == [(1, 1)]\n"
    with Sandbox(fixbug) as sandbox:
        run = sandbox.run_pytest({"intervals.py": fixed, "tests/test_new.py": new_test}, ["tests"])
        assert len(run.passed()) == 4 and not run.failed()
        # Each run restores the copy: the overlay does not leak into the next run.
        again = sandbox.run_pytest({}, ["tests"])
        assert len(again.failed()) == 1 and "test_new" not in again.outcomes
    assert (fixbug / "intervals.py").read_text() == original
    assert not (fixbug / "tests" / "test_new.py").exists()


@needs_isolation
def test_a_broken_test_file_is_a_collection_error(fixbug: Path) -> None:
    with Sandbox(fixbug) as sandbox:
        run = sandbox.run_pytest({"tests/test_bad.py": "import no_such_module_here\n"}, ["tests/test_bad.py"])
    assert run.collection_error
    assert "no_such_module_here" in "\n".join(run.collection_errors)


@needs_isolation
def test_a_hanging_test_is_killed_at_the_timeout(fixbug: Path) -> None:
    hang = "import time\n\n\ndef test_hang():\n    time.sleep(60)\n"
    with Sandbox(fixbug, timeout_s=2) as sandbox:
        run = sandbox.run_pytest({"tests/test_hang.py": hang}, ["tests/test_hang.py"])
    assert run.timed_out
    assert run.duration_s < 20


@needs_isolation
def test_with_a_time_per_test_an_endless_test_fails_alone(fixbug: Path) -> None:
    # The 1.5B's tests of an endless generator: `list(iterate(...))` ran until the whole run was
    # killed, and the tests beside it lost their verdicts. A loop inside a C function
    # (`sum(repeat(1))`) never returns to the interpreter, so its alarm cannot stop it: CI's
    # `list(count())` ran 20 s until memory ran out.
    tests = (
        "import itertools\n\n\n"
        "def test_endless():\n    assert list(itertools.count()) == [0, 1, 2]\n\n\n"
        "def test_c_spin():\n    assert sum(itertools.repeat(1)) == 3\n\n\n"
        "def test_spin():\n    while True:\n        pass\n\n\n"
        "def test_fine():\n    assert sum([1, 2]) == 3\n"
    )
    with Sandbox(fixbug, timeout_s=60) as sandbox:
        run = sandbox.run_pytest({"tests/test_gen.py": tests}, ["tests/test_gen.py"], test_timeout_s=1)
    assert not run.timed_out and not run.distrust
    assert run.passed() == ["test_fine"]
    failed = {f.name: f.message for f in run.failed()}
    assert set(failed) == {"test_endless", "test_c_spin", "test_spin"}
    assert "the test ran past 1 s" in failed["test_spin"]
    assert "stopped from outside" in failed["test_c_spin"]
    # A list growing without end fails by the time limit or by the memory limit, whichever first.
    assert "ran past 1 s" in failed["test_endless"] or "MemoryError" in failed["test_endless"]


@needs_isolation
def test_a_file_of_tests_that_never_stop_ends_as_a_timed_out_run(fixbug: Path) -> None:
    endless = "".join(
        f"def test_c_spin_{i}():\n    assert sum(itertools.repeat(1)) == 3\n\n\n" for i in range(5)
    )
    with Sandbox(fixbug, timeout_s=60) as sandbox:
        run = sandbox.run_pytest(
            {"tests/test_gen.py": "import itertools\n\n\n" + endless}, ["tests/test_gen.py"], test_timeout_s=1
        )
    # Each repeat drops one test; past the bound the run counts as killed, and nothing passes.
    assert run.timed_out
    assert not run.passed()


@needs_isolation
def test_the_environment_is_an_allowlist_and_the_copy_is_importable(
    fixbug: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_not_for_tests")
    probe = (
        "import os\n\nfrom intervals import merge\n\n\ndef test_env():\n"
        "    assert 'HTTPS_PROXY' not in os.environ and 'GITHUB_TOKEN' not in os.environ\n"
        "    assert os.environ['PYTHONDONTWRITEBYTECODE'] == '1'\n"
    )
    with Sandbox(fixbug) as sandbox:
        run = sandbox.run_pytest({"tests/test_env.py": probe}, ["tests/test_env.py"])
    assert run.passed() == ["test_env"], run.output
    base = {
        "ALL_PROXY": "x",
        "PATH": "/opt/mine",
        "PYTHONPATH": "/elsewhere",
        "LANG": "C.UTF-8",
        "AWS_KEY": "k",
    }
    env = sandbox_env(base, fixbug, seen_as="/run/sandbox/fixbug", python="/venv/bin/python")
    assert "ALL_PROXY" not in env and "AWS_KEY" not in env and env["LANG"] == "C.UTF-8"
    assert env["PATH"].split(":")[0] == "/venv/bin" and "/opt/mine" not in env["PATH"]
    assert env["PYTHONPATH"].split(":")[0] == "/run/sandbox/fixbug"
    assert env["HOME"] == "/tmp/home"


@needs_isolation
def test_vcs_and_environment_folders_are_not_copied(fixbug: Path) -> None:
    (fixbug / ".git").mkdir()
    (fixbug / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (fixbug / ".venv" / "lib").mkdir(parents=True)
    with Sandbox(fixbug) as sandbox:
        assert (sandbox.root / "intervals.py").is_file()
        assert not (sandbox.root / ".git").exists()
        assert not (sandbox.root / ".venv").exists()
    assert not sandbox.root.exists()  # removed on exit


def _stream(*records: dict[str, object]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def _test(nodeid: str, outcome: str, when: str = "call", text: str = "") -> dict[str, object]:
    return {"kind": "test", "nodeid": nodeid, "when": when, "outcome": outcome, "text": text, "short": ""}


FINISH_0 = {"kind": "finish", "exitstatus": 0}
FINISH_1 = {"kind": "finish", "exitstatus": 1}


def test_results_name_class_methods_and_parametrised_cases_and_leave_out_skips() -> None:
    stream = _stream(
        _test("tests/test_x.py::TestStack::test_push", "passed"),
        _test("tests/test_x.py::test_sq[2-4]", "passed"),
        _test("tests/test_x.py::test_sq[3-10]", "failed", text="assert 9 == 10"),
        _test("tests/test_x.py::test_skip", "skipped", when="setup"),
        _test("tests/test_x.py::test_teardown", "passed"),
        _test("tests/test_x.py::test_teardown", "failed", when="teardown", text="fixture broke"),
        FINISH_1,
    )
    outcomes, collection, distrust = read_results(stream, 1, timed_out=False)
    assert outcomes["TestStack.test_push"].passed and outcomes["test_sq[2-4]"].passed
    assert not outcomes["test_sq[3-10]"].passed and outcomes["test_sq[3-10]"].message == "assert 9 == 10"
    assert not outcomes["test_teardown"].passed and "test_skip" not in outcomes
    assert collection == [] and distrust == ""


def test_a_forged_pass_never_hides_a_real_failure() -> None:
    forged = _test("t.py::test_a", "passed")
    outcomes, _, _ = read_results(
        _stream(forged, _test("t.py::test_a", "failed", text="boom"), FINISH_1), 1, timed_out=False
    )
    assert not outcomes["test_a"].passed and outcomes["test_a"].message == "boom"


@pytest.mark.parametrize(
    ("records", "returncode", "timed_out", "why"),
    [
        ([_test("t.py::test_a", "passed"), FINISH_0], 0, True, "timed out"),
        ([_test("t.py::test_a", "passed")], 0, False, "did not finish"),
        ([_test("t.py::test_a", "passed"), FINISH_0], 1, False, "disagree"),
        ([_test("t.py::test_a", "passed"), FINISH_1], 1, False, "no test reported a failure"),
        ([_test("t.py::test_a", "passed"), {"kind": "finish", "exitstatus": 5}], 5, False, "no tests"),
    ],
)
def test_passes_count_only_when_the_run_is_consistent(
    records: list[dict[str, object]], returncode: int, timed_out: bool, why: str
) -> None:
    outcomes, _, distrust = read_results(_stream(*records), returncode, timed_out=timed_out)
    assert why in distrust
    assert not outcomes["test_a"].passed and outcomes["test_a"].message == distrust


def test_data_pytest_did_not_write_spoils_the_stream() -> None:
    stream = _stream(_test("t.py::test_a", "passed"), FINISH_0) + b"<testsuite/>\n"
    outcomes, _, distrust = read_results(stream, 0, timed_out=False)
    assert "did not write" in distrust and not outcomes["test_a"].passed
    _, _, clean = read_results(_stream(_test("t.py::test_a", "passed"), FINISH_0), 0, timed_out=False)
    assert clean == ""


def test_without_isolation_it_refuses_unless_unsafe_runs_are_allowed(
    fixbug: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox_module, "isolation_available", lambda: (False, "bubblewrap is not installed"))
    with pytest.raises(SandboxUnavailable, match="bubblewrap is not installed.*allowUnsafeExecution"):
        Sandbox(fixbug)
    with Sandbox(fixbug, allow_unsafe=True) as sandbox:
        assert not sandbox.isolated
        run = sandbox.run_pytest({}, ["tests/test_intervals.py"])
    assert sorted(run.passed()) == ["test_merge_empty", "test_merge_overlapping"], run.output


def _fake_bwrap(folder: Path) -> None:
    """A bwrap that cannot create namespaces (as where user namespaces are disabled)."""
    folder.mkdir()
    script = folder / "bwrap"
    script.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    script.chmod(0o755)


@pytest.mark.parametrize("allow_unsafe", [False, True])
def test_the_code_action_says_why_it_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allow_unsafe: bool
) -> None:
    root = tmp_path / "ws"
    shutil.copytree(DATA / "textkit", root)
    _fake_bwrap(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    editor = Editor(root, tmp_path / "state")

    async def main() -> None:
        await editor.start(
            "--fake-engine", "tests.actions_fakes:fast", options={"allowUnsafeExecution": allow_unsafe}
        )
        try:
            await editor.wait_model()
            uri = editor.open(root / "textkit" / "slug.py")
            line = editor.texts[uri].splitlines().index('def slugify(title: str, sep: str = "-") -> str:')
            at = types.Position(line=line + 2, character=4)
            actions = await editor.code_actions(uri, types.Range(start=at, end=at))
            [action] = [a for a in actions if "Generate tests for `slugify`" in a.title]
            result = plain(await editor.run(action))
            if allow_unsafe:
                assert result["applied"] is True, result
            else:
                assert "allowUnsafeExecution" in result["error"]
                [message] = [m for m in editor.messages if "refusing" in m]
                assert "bubblewrap cannot create a sandbox here" in message and "Permission denied" in message
                assert not (root / "tests" / "test_slug.py").exists()
        finally:
            await editor.stop()

    asyncio.run(asyncio.wait_for(main(), 90))


@needs_isolation
def test_a_project_environment_without_pytest_gets_infillers_and_is_told(fixbug: Path) -> None:
    # A real virtual environment with neither pytest nor coverage (nor pip): the project's own.
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fixbug / ".venv")], check=True)
    python = fixbug / ".venv" / "bin" / "python"
    assert sandbox_module.missing_tools(str(python)) == ["pytest", "coverage"]
    with Sandbox(fixbug) as sandbox:
        assert sandbox.python == str(python)  # the project's interpreter, not infiller's
        assert sandbox.notes == [
            f"pytest and coverage provided by infiller: the project's environment ({python}) lacks them"
        ]
        probe = (
            "import sys\n\n\ndef test_where():\n"
            "    assert sys.prefix.endswith('.venv')\n"
            "    assert sys.path[-1] == '/run/infiller-tools'\n"
        )
        run = sandbox.run_pytest(
            {"tests/test_probe.py": probe},
            ["tests/test_intervals.py", "tests/test_probe.py"],
            coverage=["intervals.py"],
        )
    assert sorted(run.passed()) == ["test_merge_empty", "test_merge_overlapping", "test_where"]
    assert [f.name for f in run.failed()] == ["test_merge_touching_intervals"]
    # coverage (lent too) measured the module per test: the empty input never enters the loop.
    assert run.arcs["intervals.py"] and run.test_arcs["test_merge_overlapping"]
    assert len(run.test_arcs["test_merge_empty"]) < len(run.test_arcs["test_merge_overlapping"])


@needs_isolation
def test_each_test_is_credited_with_its_own_arcs_even_where_one_name_begins_another(tmp_path: Path) -> None:
    # more-itertools' iterate (bench actions-9): `test_4` was credited with the arcs of
    # `test_494` (coverage reads query contexts as regular expressions, matched anywhere), so the
    # one test that reached the `except` handler was dropped as adding nothing.
    shutil.copy(DATA / "endless" / "stop.py", tmp_path / "stop.py")
    tests = (
        "import itertools\n\nfrom stop import iterate\n\n\n"
        "def test_4():\n    assert list(itertools.islice(iterate(abs, 1), 3)) == [1, 1, 1]\n\n\n"
        "def test_494():\n"
        "    def stop(x):\n        raise StopIteration\n\n"
        "    assert list(iterate(stop, 1)) == [1]\n"
    )
    with Sandbox(tmp_path) as sandbox:
        run = sandbox.run_pytest({"tests/test_gen.py": tests}, ["tests/test_gen.py"], coverage=["stop.py"])
    assert run.passed() == ["test_4", "test_494"]
    handler = {(5, 6), (6, 7)}
    assert handler <= run.test_arcs["test_494"]
    assert not handler & run.test_arcs["test_4"]


@needs_isolation
def test_a_project_environment_with_pytest_is_used_as_it_is(fixbug: Path) -> None:
    site = fixbug / ".venv" / "lib" / "python3.11" / "site-packages"
    (site / "pytest").mkdir(parents=True)
    (site / "coverage").mkdir()
    assert sandbox_module.missing_tools(str(fixbug / ".venv" / "bin" / "python")) == []
