"""infiller as VS Code drives it: the real server over stdio (pygls's LanguageClient).

Every edit is a didChange and an automatic inlineCompletion request; a request still pending when
the next edit comes is cancelled with $/cancelRequest (as VS Code does). Opening a file is didOpen
and an invoked request at the cursor. Accepting runs the item's `infiller.accepted` command. The
client announces that it asks again on `infiller/suggestionUpdated` (a suggestion shown early
grew), as the VS Code and Neovim clients do, and says where the cursor is after every edit
(`infiller/cursor`), as VS Code's selection changes make the extension do. With `menu`, an edit that
ends in a word character or a trigger character also asks for completion items, as VS Code's
quick suggestions do beside the inline ones (the previous such request is cancelled; the menu's
items are not taken).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from bench.replay.accept import Take
from bench.replay.procs import children_matching
from server.lsp.server import SUGGESTION_UPDATED, SUGGESTION_UPDATES

REPO = Path(__file__).resolve().parents[2]
# Longest wait for the model to load and the workspace index to be built before typing starts.
READY_TIMEOUT_S = 600.0
READY_POLL_S = 0.2
# The languageId VS Code sends for a file, by extension.
LANGUAGE_IDS = {
    ".py": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascriptreact",
    ".ts": "typescript",
    ".mts": "typescript",
    ".tsx": "typescriptreact",
    ".go": "go",
    ".rs": "rust",
}
# The notification the VS Code extension sends on every selection change (clients/vscode): named
# here as the extension names it, so that the driver also runs against a server without it.
CURSOR = "infiller/cursor"
# The characters infiller's completion provider names as triggers (server/features/inline.py).
MENU_TRIGGERS = ".("
# At the end, how long pending requests get to come back after they are cancelled.
STOP_WAIT_S = 30.0


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def position_of(text: str, offset: int) -> types.Position:
    head = text[:offset]
    line = head.count("\n")
    return types.Position(line=line, character=utf16(head[head.rfind("\n") + 1 :]))


def _ignore(ls: Any, params: Any) -> None:
    """Notifications an editor would display; the replay has no use for them."""


def _plain(value: Any) -> Any:
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class InfillerDriver:
    label = "infiller"

    def __init__(
        self,
        model: str,
        threads: int,
        show: Callable[[int, str, Any, int], None],
        settings: str = "{}",
        *,
        updates: bool = True,
        cursor: bool = True,
        menu: bool = False,
    ):
        self.model = model
        self.announce_updates = updates  # False: a client that does not ask again (no early answers)
        # VS Code's selection changes: infiller/cursor after every edit and at open (False: none).
        self.cursor = cursor
        self.menu = menu  # VS Code's completion requests as the user types (textDocument/completion)
        self.menu_requests = 0
        self._menu_pending: asyncio.Future[Any] | None = None
        self.threads = threads
        self.settings = json.loads(settings)
        self._show = show
        self.client = LanguageClient("infiller-replay", "0")
        self.state = Path(tempfile.mkdtemp(prefix="infiller-replay-"))
        self.requests = 0
        self.client_cancels = 0
        self.errors = 0
        self.ready_s: float | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._uri = ""
        self._now: tuple[int, str, int] | None = None  # the document as last sent: version, text, cursor
        self.updates = 0  # infiller/suggestionUpdated notifications (each answered with a new request)
        self._stderr: asyncio.Task[None] | None = None

    async def start(self, workspace: Path) -> None:
        client = self.client

        @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def create(ls: Any, params: Any) -> None:
            return None

        @client.feature(SUGGESTION_UPDATED)
        def updated(ls: Any, params: Any) -> None:
            # As the VS Code client does: a suggestion shown early grew; ask again where the cursor is.
            self.updates += 1
            uri = params.get("uri") if isinstance(params, dict) else getattr(params, "uri", None)
            if uri == self._uri and self._now is not None:
                self._request(*self._now, types.InlineCompletionTriggerKind.Automatic)

        for method in (
            types.PROGRESS,
            types.WINDOW_LOG_MESSAGE,
            types.WINDOW_SHOW_MESSAGE,
            types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS,
        ):
            client.feature(method)(_ignore)
        env = {**os.environ, "INFILLER_STATE_DIR": str(self.state)}
        started = time.perf_counter()
        await client.start_io(
            sys.executable,
            "-m",
            "server",
            "serve",
            "--model",
            self.model,
            "--log-file",
            str(self.state / "server.log"),
            env=env,
            cwd=str(REPO),
        )
        # pygls's client pipes the server's stderr and never reads it: drain it so the server cannot block.
        self._stderr = asyncio.ensure_future(self._drain(self.state / "server.stderr"))
        options = {**self.settings, "model": self.model, "threads": self.threads}
        await client.initialize_async(
            types.InitializeParams(
                process_id=os.getpid(),
                root_uri=workspace.as_uri(),
                capabilities=types.ClientCapabilities(
                    experimental={SUGGESTION_UPDATES: True} if self.announce_updates else None,
                    window=types.WindowClientCapabilities(work_done_progress=True),
                    text_document=types.TextDocumentClientCapabilities(
                        inline_completion=types.InlineCompletionClientCapabilities()
                    ),
                ),
                initialization_options={"infiller": options},
            )
        )
        client.initialized(types.InitializedParams())
        deadline = started + READY_TIMEOUT_S
        while time.perf_counter() < deadline:
            stats = await self.stats()
            if stats["model"] is not None and stats["index_ready"]:
                break
            await asyncio.sleep(READY_POLL_S)
        else:
            raise TimeoutError("infiller did not load its model and index in time")
        self.ready_s = round(time.perf_counter() - started, 1)

    async def stats(self) -> dict[str, Any]:
        result = await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="infiller.stats")
        )
        return _plain(result)

    async def open(self, path: Path, text: str, version: int, cursor: int) -> None:
        self._uri = path.as_uri()
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=self._uri,
                    language_id=LANGUAGE_IDS.get(path.suffix, "plaintext"),
                    version=version,
                    text=text,
                )
            )
        )
        self._now = (version, text, cursor)
        self._cursor(text, cursor)
        self._request(version, text, cursor, types.InlineCompletionTriggerKind.Invoked)

    def change(self, version: int, text: str, cursor: int, at: int, insert: str, removed: int = 0) -> None:
        if insert:  # else only the cursor moved: VS Code asks for a suggestion there all the same
            pos = position_of(text, at)
            # What was removed is closers on the cursor's line (ASCII: one UTF-16 unit each).
            end = types.Position(pos.line, pos.character + removed)
            self.client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=self._uri, version=version),
                    content_changes=[
                        types.TextDocumentContentChangePartial(range=types.Range(pos, end), text=insert)
                    ],
                )
            )
        self._now = (version, text, cursor)
        self._cursor(text, cursor)
        self._request(version, text, cursor, types.InlineCompletionTriggerKind.Automatic)
        if self.menu and insert and (insert[-1].isalnum() or insert[-1] in MENU_TRIGGERS + "_"):
            self._menu(text, cursor, insert[-1])

    def _menu(self, text: str, cursor: int, typed: str) -> None:
        """VS Code's quick suggestions (triggerKind Invoked) or a trigger character's request."""
        self._cancel_menu()
        self.menu_requests += 1
        trigger = typed in MENU_TRIGGERS
        params = types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=self._uri),
            position=position_of(text, cursor),
            context=types.CompletionContext(
                trigger_kind=types.CompletionTriggerKind.TriggerCharacter
                if trigger
                else types.CompletionTriggerKind.Invoked,
                trigger_character=typed if trigger else None,
            ),
        )
        fut = self.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_COMPLETION, params, msg_id=f"menu-{self.menu_requests}"
        )
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # answered or cancelled: read
        self._menu_pending = fut

    def _cancel_menu(self) -> asyncio.Future[Any] | None:
        """Cancel the completion request still pending, as VS Code does on the next key; it is returned."""
        pending = self._menu_pending
        if pending is not None and not pending.done():
            msg_id = f"menu-{self.menu_requests}"
            self.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
        return pending

    def _cursor(self, text: str, cursor: int) -> None:
        """As VS Code's extension does on every selection change (the edit moved the cursor)."""
        if self.cursor:
            position = position_of(text, cursor)
            params = {
                "textDocument": {"uri": self._uri},
                "position": {"line": position.line, "character": position.character},
            }
            self.client.protocol.notify(CURSOR, params)

    def _request(
        self, version: int, text: str, cursor: int, trigger: types.InlineCompletionTriggerKind
    ) -> None:
        for msg_id, fut in list(self._pending.items()):
            if not fut.done():
                self.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
                self.client_cancels += 1
        self._pending.clear()
        self.requests += 1
        msg_id = f"replay-{self.requests}"
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=self._uri),
            position=position_of(text, cursor),
            context=types.InlineCompletionContext(trigger_kind=trigger),
        )
        fut = self.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id
        )
        self._pending[msg_id] = fut
        task = asyncio.ensure_future(self._answer(fut, version))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, fut: asyncio.Future[Any], version: int) -> None:
        try:
            answer = await fut
        except Exception as exc:
            if "cancel" not in str(exc).lower():
                self.errors += 1
            return
        items = answer.items if isinstance(answer, types.InlineCompletionList) else (answer or [])
        if items and items[0].insert_text:
            item = items[0]
            token = list(item.command.arguments or []) if item.command else None
            # A range past the cursor: the closers the editor put there, which the text replaces.
            rng = item.range
            replaces = (
                rng.end.character - rng.start.character if rng and rng.end.line == rng.start.line else 0
            )
            self._show(version, str(item.insert_text), token, replaces)

    async def accepted(self, token: Any, take: Take) -> None:
        if token:
            await self.client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="infiller.accepted", arguments=[token[0], len(take.text)])
            )

    async def close(self, path: Path) -> None:
        self.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=path.as_uri()))
        )

    def pids(self) -> dict[str, int]:
        process = self.client._server
        if process is None:
            return {}
        pids = {"server": process.pid}
        model = children_matching(process.pid, "server.model.process")
        if model:
            pids["model"] = model[0]
        return pids

    async def stop(self) -> dict[str, Any]:
        # Cancel what is pending the way an editor does and let the answers come back (cancelling the
        # futures here would make pygls fail on the late responses).
        for msg_id, fut in list(self._pending.items()):
            if not fut.done():
                self.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
        menu = self._cancel_menu()
        waits = [*self._tasks, *([menu] if menu is not None else [])]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), STOP_WAIT_S)
        stats = await self.stats()
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()
        if self._stderr is not None:
            self._stderr.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr
        return {
            "requests": self.requests,
            "cancellations": self.client_cancels,
            "errors": self.errors,
            "ready_s": self.ready_s,
            "updates": self.updates,
            "menu_requests": self.menu_requests,
            "server_stats": {
                k: stats.get(k)
                for k in (
                    "requests",
                    "shown",
                    "accepted",
                    "cancelled",
                    "cancel_rate",
                    "cache_hit_rate",
                    "served_by",
                    "model_latency_ms",
                    "no_suggestion",
                    "typed_through",
                )
            },
            "log": str(self.state / "server.log"),
        }

    async def _drain(self, path: Path) -> None:
        process = self.client._server
        if process is None or process.stderr is None:
            return
        with path.open("wb") as out:
            while chunk := await process.stderr.read(65536):
                out.write(chunk)
