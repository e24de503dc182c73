"""The language server survives its model: `kill -9` of the model process, over real stdio, real 0.5B.

What an editor user would notice: the editor is told (window/showMessage naming the cause), the
server keeps answering, the document typed so far is intact, and the next completion is served
by a restarted model process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.lsp.client import LanguageClient

from tests.conftest import TEST_MODEL

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parent.parent
LOAD_TIMEOUT_S = 120
ANSWER_TIMEOUT_S = 60


def _model_processes(server_pid: int) -> list[int]:
    """Children of the server that run the model process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == server_pid and b"server.model.process" in cmdline:
            found.append(int(entry.name))
    return found


async def _session(root: Path, state: Path) -> dict[str, Any]:
    client = LanguageClient("infiller-crash", "0")
    messages: list[str] = []

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def create(ls: Any, params: Any) -> None:
        return None

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def show(ls: Any, params: types.ShowMessageParams) -> None:
        messages.append(params.message)

    env = {**os.environ, "INFILLER_STATE_DIR": str(state)}
    await client.start_io(
        sys.executable, "-m", "server", "serve", "--model", TEST_MODEL, env=env, cwd=str(REPO)
    )
    server_pid = client._server.pid  # type: ignore[attr-defined]
    await client.initialize_async(
        types.InitializeParams(
            process_id=os.getpid(),
            root_uri=root.as_uri(),
            capabilities=types.ClientCapabilities(
                window=types.WindowClientCapabilities(work_done_progress=True)
            ),
            initialization_options={"infiller": {"model": TEST_MODEL}},
        )
    )
    client.initialized(types.InitializedParams())
    path = root / "geometry.py"
    text = (
        "def area_of_square(side):\n    return side * side\n\n\n"
        "def area_of_rectangle(width, height):\n    return "
    )
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        )
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOAD_TIMEOUT_S

    async def stats() -> Any:
        result = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="infiller.stats")
        )
        return result._asdict() if hasattr(result, "_asdict") else result

    async def loaded_model() -> Any:
        return (await stats())["model"]

    while not _model_processes(server_pid) or await loaded_model() is None:
        assert loop.time() < deadline, "model did not load"
        await asyncio.sleep(0.2)

    async def inline(line: int, col: int) -> str | None:
        result = await client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line, col),
                context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
            )
        )
        items = result.items if isinstance(result, types.InlineCompletionList) else (result or [])
        return items[0].insert_text if items else None  # type: ignore[return-value]

    (worker,) = _model_processes(server_pid)
    # Kill the model process while a request is being answered.
    pending = asyncio.ensure_future(inline(5, len("    return ")))
    await asyncio.sleep(0.3)
    os.kill(worker, signal.SIGKILL)
    during = await asyncio.wait_for(pending, ANSWER_TIMEOUT_S)
    # The user keeps typing: the document state must survive the crash.
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(types.Position(5, 11), types.Position(5, 11)), text="width"
                )
            ],
        )
    )
    after = await asyncio.wait_for(inline(5, len("    return width")), ANSWER_TIMEOUT_S)
    workers_after = _model_processes(server_pid)
    restarts = (await stats())["model_restarts"]
    server_alive = client._server.returncode is None  # type: ignore[attr-defined]
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return {
        "during": during,
        "after": after,
        "messages": messages,
        "worker": worker,
        "workers_after": workers_after,
        "server_alive": server_alive,
        "restarts": restarts,
    }


def test_killing_the_model_process_is_survived_and_reported(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    result = asyncio.run(asyncio.wait_for(_session(root, tmp_path / "state"), 240))
    assert result["server_alive"], result
    assert any("model process" in m and "SIGKILL" in m for m in result["messages"]), result
    # Served by a new model process, continuing the text typed after the crash.
    assert result["workers_after"] and result["worker"] not in result["workers_after"], result
    assert result["after"] is not None and "height" in result["after"], result
    assert result["restarts"] == 1, result  # and the statistics count the restart
