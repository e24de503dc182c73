"""The sandbox runs real pytest processes on a throwaway copy of a workspace."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from server.actions.sandbox import Sandbox, parse_junit, sandbox_env

DATA = Path(__file__).parent / "data" / "actions"


@pytest.fixture
def fixbug(tmp_path: Path) -> Path:
    root = tmp_path / "fixbug"
    shutil.copytree(DATA / "fixbug", root)
    return root


def test_per_test_outcomes_with_the_failure_message(fixbug: Path) -> None:
    with Sandbox(fixbug) as sandbox:
        run = sandbox.run_pytest({}, ["tests/test_intervals.py"])
    assert sorted(run.passed()) == ["test_merge_empty", "test_merge_overlapping"]
    [failure] = run.failed()
    assert failure.name == "test_merge_touching_intervals"
    assert "[(1, 4), (4, 5)] == [(1, 5)]" in failure.message
    assert not run.collection_error


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


def test_a_broken_test_file_is_a_collection_error(fixbug: Path) -> None:
    with Sandbox(fixbug) as sandbox:
        run = sandbox.run_pytest({"tests/test_bad.py": "import no_such_module_here\n"}, ["tests/test_bad.py"])
    assert run.collection_error
    assert "no_such_module_here" in "\n".join(run.collection_errors)


def test_a_hanging_test_is_killed_at_the_timeout(fixbug: Path) -> None:
    hang = "import time\n\n\ndef test_hang():\n    time.sleep(60)\n"
    with Sandbox(fixbug, timeout_s=2) as sandbox:
        run = sandbox.run_pytest({"tests/test_hang.py": hang}, ["tests/test_hang.py"])
    assert run.timed_out
    assert run.duration_s < 20


def test_network_variables_are_removed_and_the_copy_is_importable(
    fixbug: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    probe = (
        "import os\n\n\ndef test_env():\n"
        "    assert 'HTTPS_PROXY' not in os.environ and 'http_proxy' not in os.environ\n"
        "    assert os.environ['NO_PROXY'] == '*'\n"
    )
    with Sandbox(fixbug) as sandbox:
        run = sandbox.run_pytest({"tests/test_env.py": probe}, ["tests/test_env.py"])
    assert run.passed() == ["test_env"], run.output
    env = sandbox_env({"ALL_PROXY": "x", "PATH": "/bin", "PYTHONPATH": "/elsewhere"}, fixbug)
    assert "ALL_PROXY" not in env and env["PATH"] == "/bin"
    assert env["PYTHONPATH"].split(":")[0] == str(fixbug)


def test_vcs_and_environment_folders_are_not_copied(fixbug: Path) -> None:
    (fixbug / ".git").mkdir()
    (fixbug / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (fixbug / ".venv" / "lib").mkdir(parents=True)
    with Sandbox(fixbug) as sandbox:
        assert (sandbox.root / "intervals.py").is_file()
        assert not (sandbox.root / ".git").exists()
        assert not (sandbox.root / ".venv").exists()
    assert not sandbox.root.exists()  # removed on exit


def test_junit_class_methods_and_parametrised_cases() -> None:
    xml = """<testsuites><testsuite>
      <testcase classname="tests.test_x.TestStack" name="test_push"/>
      <testcase classname="tests.test_x" name="test_sq[2-4]"/>
      <testcase classname="tests.test_x" name="test_sq[3-10]">
        <failure message="assert 9 == 10">boom</failure>
      </testcase>
      <testcase classname="tests.test_x" name="test_skip"><skipped/></testcase>
    </testsuite></testsuites>"""
    outcomes, collection = parse_junit(xml)
    assert outcomes["TestStack.test_push"].passed
    assert outcomes["test_sq[2-4]"].passed and not outcomes["test_sq[3-10]"].passed
    assert "test_skip" not in outcomes and collection == []
