"""The `refine` setting: a second pass whose retrieval reads the first answer (server/completion.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.completion import Completer, CompletionSettings
from server.eval.repo import Workspace
from server.model.fake import FakeEngine
from server.model.runtime import Runtime
from server.request import CompletionContext

TINY = Path(__file__).parent / "data" / "eval" / "tinyrepo"
# The body of the name the first answer uses: units' outline alone does not show it.
BODY = "return inches * CM_PER_INCH"
BUFFER = (
    '"""Areas."""\n\nfrom tinypkg import units\n\n\ndef square_cm(side):\n    area = side * side\n    return '
)


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace(TINY.resolve(), tmp_path / "scratch", tmp_path / "index.sqlite")
    yield ws
    ws.close()


def _script(prompt: str) -> str:
    # A model that guesses the unit conversion until it sees how the function is defined.
    return "units.inches_to_cm(area) * units.CM_PER_INCH" if BODY in prompt else "units.inches_to_cm(area)"


def _completer(workspace: Workspace, refine: bool) -> Completer:
    return Completer(
        Runtime(FakeEngine(_script)),
        root=workspace.root,
        index=workspace.index,
        settings=CompletionSettings(refine=refine),
        sources=("definitions",),
    )


def _request(workspace: Workspace) -> CompletionContext:
    path = workspace.root / "tinypkg" / "area.py"
    return CompletionContext(str(path), BUFFER, "\n", path=path, root=workspace.root)


def test_the_second_answer_sees_what_the_first_one_named(workspace: Workspace) -> None:
    request = _request(workspace)
    once = _completer(workspace, refine=False).complete(request)
    assert once.text == "units.inches_to_cm(area)"
    partials: list[str] = []
    twice = _completer(workspace, refine=True).complete(request, on_partial=partials.append)
    assert twice.text == "units.inches_to_cm(area) * units.CM_PER_INCH"
    assert twice.prompt is not None and BODY in twice.prompt.context_text
    # Both passes are paid for, and the editor never saw the draft streamed.
    assert twice.tokens["prompt"] > once.tokens["prompt"] + len(twice.prompt.tokens) // 2
    assert partials and all(p == twice.raw[: len(p)] for p in partials)


def test_a_draft_changes_the_context_and_not_the_file(workspace: Workspace) -> None:
    completer = _completer(workspace, refine=True)
    request = _request(workspace)
    first = completer.build_prompt(request)
    second = completer.build_prompt(request, draft="units.inches_to_cm(area)")
    assert BODY not in first.context_text and BODY in second.context_text
    assert second.text.endswith(first.text[len(first.context_text) :])
    assert "units.inches_to_cm(area)" not in second.text


def test_no_second_pass_when_the_draft_finds_nothing_new(workspace: Workspace) -> None:
    completer = _completer(workspace, refine=True)
    request = _request(workspace)
    first = completer.build_prompt(request)
    assert completer.refine_prompt(request, "", first) is None
    assert completer.refine_prompt(request, "side", first) is None  # a local name: same context
    assert completer.refine_prompt(request, "units.inches_to_cm(area)", first) is not None
