"""Edit by instruction: the pipeline with a scripted model and real test runs in the sandbox, the
LSP command over real stdio (scripted model, and the real 0.5B model), and Neovim headless."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from server.actions.edit import EditRequest, edit_selection, splice
from server.features.edit_selection import CLIENT_COMMAND_PROMPT, COMMAND_EDIT, KIND_EDIT
from server.model.chat import runtime_generator
from server.model.fake import FakeEngine
from server.model.runtime import Runtime
from tests.actions_client import Editor, plain
from tests.conftest import TEST_MODEL
from tests.edit_fakes import REWRITES

DATA = Path(__file__).parent / "data" / "actions"
SCENARIO_TIMEOUT_S = 90
MODEL_TIMEOUT_S = 600


@pytest.fixture
def fixbug(tmp_path: Path) -> Path:
    root = tmp_path / "fixbug"
    shutil.copytree(DATA / "fixbug", root)
    return root


def _merge_request(root: Path, instruction: str) -> EditRequest:
    path = root / "intervals.py"
    text = path.read_text()
    start = text.splitlines().index("def merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:")
    return EditRequest(path, text, "python", start, start + 9, instruction, root)


def _scripted(first: str, after_rejection: str = "```\n") -> Runtime:
    """Answers by the prompt: a second round's prompt shows the rejected attempt."""
    return Runtime(
        FakeEngine(lambda prompt: after_rejection if "This attempt was rejected" in prompt else first)
    )


def test_splice_puts_the_answer_at_the_selections_indentation() -> None:
    lines = ["class C:\n", "    def f(self):\n", "        return 1\n", "x = 2\n"]
    answer = "```python\ndef f(self) -> int:\n    return 1\n```"
    assert splice(lines, 1, 3, answer, "python") == (
        "class C:\n    def f(self) -> int:\n        return 1\nx = 2\n"
    )


def test_a_rewrite_keeping_the_related_tests_is_offered_as_a_minimal_diff(fixbug: Path) -> None:
    request = _merge_request(fixbug, "handle None")
    result = edit_selection(request, runtime_generator(_scripted(REWRITES["handle None"])))
    assert result.edit is not None and result.text is not None
    # The related test file ran before and after: the one failing test fails as before, none broke.
    assert result.related_tests == ["tests/test_intervals.py"]
    assert result.checks == ["parses", "2/3 related tests pass"]
    assert result.tried == ["✓ rewrite 1: parses, 2/3 related tests pass"]
    assert "+    if intervals is None:\n+        return []\n" in result.diff
    assert result.diff.count("\n-") == 1  # only the signature line changed besides the guard
    ns: dict[str, Any] = {}
    exec(result.text, ns)
    assert ns["merge"](None) == [] and ns["merge"]([(1, 3), (2, 6)]) == [(1, 6)]


def test_a_rewrite_breaking_a_test_is_rejected_and_the_reason_fed_back(fixbug: Path) -> None:
    broken = REWRITES["handle None"].replace("result.append((start, end))", "result.append((start, start))")
    prompts: list[str] = []

    def script(prompt: str) -> str:
        prompts.append(prompt)
        return REWRITES["handle None"] if "This attempt was rejected" in prompt else broken

    result = edit_selection(
        _merge_request(fixbug, "handle None"), runtime_generator(Runtime(FakeEngine(script)))
    )
    assert result.tried[0].startswith("✗ rewrite 1: breaks test_merge_overlapping")
    assert result.tried[1] == "✓ rewrite 2: parses, 2/3 related tests pass"
    assert "breaks test_merge_overlapping" in prompts[-1]
    assert result.edit is not None and "result.append((start, end))" in (result.text or "")


def test_nothing_is_offered_when_no_rewrite_verifies(fixbug: Path) -> None:
    bad = "def merge(intervals:\n    return [\n```\n"
    result = edit_selection(_merge_request(fixbug, "handle None"), runtime_generator(_scripted(bad)))
    assert result.edit is None and result.text is None and result.diff == ""
    assert result.tried[0].startswith("✗ rewrite 1: does not parse")
    assert result.tried[1] == "✗ rewrite 2: no change"
    assert result.summary == "no rewrite passed verification (2 tried)"


# ---------------------------------------------------------------------------------------------
# Over stdio


def _rng(l1: int, c1: int, l2: int, c2: int) -> types.Range:
    return types.Range(start=types.Position(line=l1, character=c1), end=types.Position(line=l2, character=c2))


def _run(
    tmp_path: Path,
    serve_args: list[str],
    body: Any,
    timeout: float = SCENARIO_TIMEOUT_S,
    options: dict[str, Any] | None = None,
) -> None:
    root = tmp_path / "ws"
    shutil.copytree(DATA / "fixbug", root)
    editor = Editor(root, tmp_path / "state")

    async def main() -> None:
        await editor.start(*serve_args, options=options)
        try:
            await editor.wait_model(timeout)
            await body(editor)
        finally:
            await editor.stop()

    asyncio.run(asyncio.wait_for(main(), timeout))


async def _execute(ed: Editor, args: dict[str, Any]) -> Any:
    params = types.ExecuteCommandParams(command=COMMAND_EDIT, arguments=[args])
    return plain(await ed.client.workspace_execute_command_async(params))


def test_over_stdio_the_edit_is_offered_and_applied_with_confirmation(tmp_path: Path) -> None:
    async def body(ed: Editor) -> None:
        uri = ed.open(ed.root / "intervals.py")
        start = (
            ed.texts[uri]
            .splitlines()
            .index("def merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:")
        )
        selection = _rng(start, 0, start + 9, 0)
        actions = await ed.code_actions(uri, selection)
        [action] = [a for a in actions if a.kind == KIND_EDIT]
        assert action.title == "infiller: Edit selection by instruction…"
        assert action.command is not None and action.command.command == CLIENT_COMMAND_PROMPT
        args = dict(action.command.arguments[0])  # type: ignore[index]
        # The editor asked the user; it sends the instruction with the action's arguments.
        preview = await _execute(ed, {**args, "instruction": "handle None", "preview": True})
        assert preview["summary"] == "rewrite verified: parses, 2/3 related tests pass"
        assert "+    if intervals is None:" in preview["diff"] and ed.applied == []
        assert preview["edit"]["changeAnnotations"]["infiller.edit"]["needsConfirmation"] is True
        answer = await _execute(ed, {**args, "instruction": "handle None"})
        assert answer["applied"] is True
        [edit] = ed.applied
        [change] = edit.document_changes or []
        assert isinstance(change, types.TextDocumentEdit) and change.text_document.version == 1
        [text_edit] = change.edits
        assert isinstance(text_edit, types.AnnotatedTextEdit) and text_edit.annotation_id == "infiller.edit"
        assert edit.change_annotations is not None
        assert edit.change_annotations["infiller.edit"].needs_confirmation is True
        assert "if intervals is None:" in ed.texts[uri]
        assert any("rewrite verified: parses, 2/3 related tests pass\n✓ rewrite 1" in m for m in ed.messages)
        # An instruction the model cannot follow: nothing applied, the tried lines are shown.
        none = await _execute(ed, {**args, "version": 2, "instruction": "make it quantum"})
        assert none["applied"] is False and none["tried"] == [
            "✗ rewrite 1: no change",
            "✗ rewrite 2: no change",
        ]

    _run(tmp_path, ["--fake-engine", "tests.edit_fakes:fast"], body)


@pytest.mark.model
def test_over_stdio_with_the_real_model_a_verified_rewrite(tmp_path: Path) -> None:
    async def body(ed: Editor) -> None:
        uri = ed.open(ed.root / "intervals.py")
        start = (
            ed.texts[uri]
            .splitlines()
            .index("def merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:")
        )
        args = {
            "uri": uri,
            "version": 1,
            "range": {"start": {"line": start, "character": 0}, "end": {"line": start + 9, "character": 0}},
            "instruction": "return an empty list when intervals is None",
        }
        started = time.monotonic()
        answer = await _execute(ed, args)
        took = time.monotonic() - started
        print(
            f"\nedit by instruction, real model: {took:.0f} s; {answer.get('summary')}; {answer.get('tried')}"
        )
        # The real model's rewrite, whatever it is, was applied only if it verified.
        if answer["applied"]:
            text = ed.texts[uri]
            compile(text, "intervals.py", "exec")
            assert answer["summary"].startswith("rewrite verified: parses")
            ns: dict[str, Any] = {}
            exec(text, ns)
            assert ns["merge"]([(1, 3), (2, 6), (8, 10)]) == [(1, 6), (8, 10)]  # the passing test's case
        else:
            assert ed.applied == [] and answer["tried"] and all(t.startswith("✗") for t in answer["tried"])

    # One thread: the machine is shared (the model's own speed matters less than its neighbours').
    options = {"infiller": {"model": TEST_MODEL, "threads": 1}}
    _run(tmp_path, ["--model", TEST_MODEL], body, MODEL_TIMEOUT_S, options=options)


# ---------------------------------------------------------------------------------------------
# Neovim, headless


@pytest.fixture
def nvim_editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from tests import test_nvim_e2e as nv

    if nv.NVIM is None:
        pytest.skip("Neovim >= 0.10 not found")
    monkeypatch.setattr(nv, "INIT", nv.DATA / "edit_init.lua")
    setup = nv.fake_setup("fast", tmp_path)
    setup["cmd"][setup["cmd"].index("tests.nvim_fakes:fast")] = "tests.edit_fakes:fast"
    (tmp_path / "state").mkdir(exist_ok=True)
    ed = nv.Editor(tmp_path, setup, "geometry.py")
    try:
        yield ed
    finally:
        ed.close()


def _wait(ed: Any, check: Any, what: str, timeout: float = SCENARIO_TIMEOUT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = ed.call("edit_state")
        if check(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {state}\n{ed.log_tail()}")
        time.sleep(0.2)


def test_neovim_edit_command_shows_the_diff_and_applies_on_apply(nvim_editor: Any) -> None:
    ed = nvim_editor
    lines = ed.buffer()
    first = lines.index("    def area(self) -> float:", lines.index("class Circle:")) + 1
    for _ in range(SCENARIO_TIMEOUT_S):  # the model loads in the background after start-up
        ed.call("reset_records")
        ed.keys(f"<Esc>:{first},{first + 1}InfillerEdit reject a negative radius<CR>")
        state = _wait(
            ed,
            lambda s: s["edited"] is not None or any("still loading" in m for m in s["messages"]),
            "the diff to be answered",
        )
        if state["edited"] is not None:
            break
        time.sleep(1)
    [select] = state["selects"]
    assert select["items"] == ["Apply", "Discard"] and select["filetype"] == "diff"
    assert "+        if self.radius < 0:" in select["diff"]
    assert select["prompt"].startswith("infiller: rewrite verified: parses, no related tests to run")
    assert state["edited"] is True and state["windows"] == 1  # the diff split is closed
    after = ed.buffer()
    assert after[first - 1 : first + 3] == [
        "    def area(self) -> float:",
        "        if self.radius < 0:",
        '            raise ValueError("negative radius")',
        "        return 3.141592653589793 * self.radius**2",
    ]
    # Discard leaves the buffer as it is.
    ed.call("set_choice", "Discard")
    ed.keys(f"<Esc>:{first},{first + 3}InfillerEdit reject a negative radius<CR>")
    state = _wait(
        ed, lambda s: s["edited"] is not None or any("no rewrite" in m for m in s["messages"]), "an answer"
    )
    assert ed.buffer() == after


def test_neovim_edit_cancel_stops_the_running_edit(nvim_editor: Any) -> None:
    ed = nvim_editor
    lines = ed.buffer()
    first = lines.index("    def area(self) -> float:", lines.index("class Circle:")) + 1
    log = ed.state_dir / "server.log"
    for _ in range(SCENARIO_TIMEOUT_S):  # the model loads in the background after start-up
        # Only this attempt's messages: an earlier "still loading" would keep the loop retrying,
        # each new edit superseding the last, until the time ran out.
        ed.call("reset_records")
        ed.keys(f"<Esc>:{first},{first + 1}InfillerEdit take your time<CR>")
        # The fake writes its long answer at 20 tokens/s: the edit runs for tens of seconds.
        time.sleep(1.5)
        if not any("still loading" in m for m in ed.call("edit_state")["messages"]):
            break
    assert "infiller: take your time" in log.read_text()  # its progress began
    before = len(ed.call("edit_state")["notes"])
    ed.keys("<Esc>:InfillerCancel<CR>")
    # The server stopped the generation well before the answer would have been written (its
    # progress ended as cancelled), the edit's answer says so, and nothing was offered or changed.
    # (Only notes after the cancel: a superseded attempt's "edit cancelled" is not this one's.)
    _wait(ed, lambda s: "infiller: edit cancelled" in s["notes"][before:], "the cancel to be confirmed", 5)
    assert "infiller: take your time: cancelled (cancelled by the user)" in log.read_text(), ed.log_tail()
    time.sleep(1)
    state = ed.call("edit_state")
    assert state["selects"] == [] and state["edited"] is None and ed.buffer() == lines
    ed.keys("<Esc>:InfillerCancel<CR>")
    _wait(ed, lambda s: "infiller: nothing is running for this buffer" in s["notes"], "the second cancel", 5)
