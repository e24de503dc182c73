"""End to end over stdio with the real 0.5B: typing into a body the way VS Code does it.

VS Code replaces a selection with the first key, auto-closes `(` to `()` with the cursor between,
asks for an inline completion after every key (cancelling the previous request) and asks again when
the server says a suggestion grew. The required tests see what its opt-in browser test
(tests/test_vscode_e2e.py) sees: after `return sum(`, the summed areas of the rectangles, with the
definition of Rectangle.area from another file of the workspace, and no space inside the bracket.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.lsp.client import LanguageClient

from tests.conftest import TEST_MODEL

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "tests" / "data" / "nvim" / "shapes"
LINE = 12  # 0-based: `    return 0.0  # TODO` in total_area(rects)
REPLACED = "return 0.0  # TODO"
TYPED = "return sum("
KEY_DELAY_S = 0.06  # a quick typist, as in the browser test
CLOSED = ")"  # what VS Code put after the cursor
# Model load plus a cold prompt on a 2-core CPU, with room to spare.
ANSWER_TIMEOUT_S = 120


async def _type_and_wait(root: Path, state: Path) -> dict[str, Any]:
    client = LanguageClient("infiller-autoclose", "0")
    updated = asyncio.Event()

    @client.feature("infiller/suggestionUpdated")
    def suggestion_updated(ls: Any, params: Any) -> None:
        updated.set()

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def create(ls: Any, params: Any) -> None:
        return None

    await client.start_io(
        sys.executable,
        "-m",
        "server",
        "serve",
        "--model",
        TEST_MODEL,
        "--log-file",
        str(state / "server.log"),
        env={**os.environ, "INFILLER_STATE_DIR": str(state)},
        cwd=str(REPO),
    )
    await client.initialize_async(
        types.InitializeParams(
            process_id=os.getpid(),
            root_uri=root.as_uri(),
            capabilities=types.ClientCapabilities(experimental={"infillerSuggestionUpdates": True}),
            initialization_options={"infiller": {"model": TEST_MODEL}},
        )
    )
    client.initialized(types.InitializedParams())
    path = root / "shapes" / "report.py"
    uri = path.as_uri()
    opened = types.TextDocumentItem(uri=uri, language_id="python", version=1, text=path.read_text())
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=opened))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ANSWER_TIMEOUT_S
    stats = types.ExecuteCommandParams(command="infiller.stats")
    while (await client.workspace_execute_command_async(stats))["model"] is None:
        assert loop.time() < deadline, "the model did not load"
        await asyncio.sleep(0.2)

    version = 1

    def change(start: int, end: int, text: str) -> None:
        nonlocal version
        version += 1
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(types.Position(LINE, start), types.Position(LINE, end)), text=text
                    )
                ],
            )
        )

    async def inline(col: int) -> str | None:
        try:
            result = await client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=types.Position(LINE, col),
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Automatic
                    ),
                )
            )
        except asyncio.CancelledError:
            return None
        items = result.items if isinstance(result, types.InlineCompletionList) else (result or [])
        if not items:
            return None
        item = items[0]
        # The cursor's line after the cursor once the suggestion's first line is taken: an item that
        # types over the editor's `)` has it in its range (the text replaces it); any other goes
        # before it.
        replaces = item.range is not None and item.range.end.character > item.range.start.character
        first = str(item.insert_text).split("\n", 1)[0]
        return first if replaces else first + CLOSED

    indent = 4
    pending: asyncio.Task[str | None] | None = None
    for n, key in enumerate(TYPED):
        if n == 0:
            change(indent, indent + len(REPLACED), key)  # the first key replaces the selection
        else:
            change(indent + n, indent + n, "()" if key == "(" else key)  # VS Code closes the bracket
        if pending is not None:
            pending.cancel()
        pending = asyncio.ensure_future(inline(indent + n + 1))
        await asyncio.sleep(KEY_DELAY_S)
    col = indent + len(TYPED)
    assert pending is not None
    answer = await asyncio.wait_for(pending, ANSWER_TIMEOUT_S)
    shown = [answer]
    while not _completes_sum(answer):
        assert loop.time() < deadline + ANSWER_TIMEOUT_S, shown
        if answer is not None:
            # Its first words came early: the server says when the whole line is there.
            await asyncio.wait_for(updated.wait(), ANSWER_TIMEOUT_S)
            updated.clear()
        else:
            await asyncio.sleep(0.2)
        answer = await asyncio.wait_for(inline(col), ANSWER_TIMEOUT_S)
        shown.append(answer)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return {"shown": shown, "final": answer}


def _completes_sum(line: str | None) -> bool:
    """`sum(` + the rest of the line once the suggestion is taken (the `)` in it) is a complete expression."""
    if not line:
        return False
    try:
        compile(f"sum({line}", "<suggestion>", "eval")
    except SyntaxError:
        return False
    return True


def test_typing_with_an_auto_closed_bracket_gets_the_cross_file_completion(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    shutil.copytree(PROJECT, root)
    state = tmp_path / "state"
    state.mkdir()
    result = asyncio.run(_type_and_wait(root, state))
    final = result["final"]
    assert _completes_sum(final), result
    assert "area()" in final, result
    assert not final.startswith(" "), result
