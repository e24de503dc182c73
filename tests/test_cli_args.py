"""Numbers on the command line that cannot mean anything are refused by argparse, naming the
option, before any model loads, index opens or port binds (they used to run silently with a
clamped value, or end in a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli import main

SOURCE = "a.py:1:1"


@pytest.mark.parametrize(
    ("command", "bad"),
    [
        (["daemon"], ["--port", "-1"]),
        (["daemon"], ["--port", "70000"]),
        (["daemon"], ["--threads", "-2"]),
        (["daemon"], ["--max-queue", "-1"]),
        (["daemon"], ["--max-body-bytes", "0"]),
        (["daemon"], ["--max-prompt-chars", "-5"]),
        (["complete", SOURCE], ["--repeat", "0"]),
        (["context", SOURCE], ["--budget", "-5"]),
        (["eval", "."], ["--threads", "-1"]),
        (["eval", "."], ["--threads", "two"]),
    ],
)
def test_numbers_that_mean_nothing_are_refused_naming_the_option(
    command: list[str], bad: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([*command, *bad])
    assert stopped.value.code == 2
    assert f"argument {bad[0]}: expected" in capsys.readouterr().err


def test_a_zero_context_budget_says_retrieval_is_off_with_or_without_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.py").write_text("import os\n\nx = os.path\n")
    monkeypatch.chdir(tmp_path)
    # Without the model, 0 had quietly become the default budget and shown a full retrieval.
    for extra in (["--no-model"], []):
        assert main(["context", SOURCE, "--budget", "0", *extra]) == 1
        assert "retrieval is disabled (context budget 0)" in capsys.readouterr().err
