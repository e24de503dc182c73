"""An editor stand-in for the code-action tests: pygls's client over real stdio, which answers
`workspace/applyEdit` the way an editor does (refusing stale versions) and writes the result to disk."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import cattrs
from lsprotocol import types
from pygls.lsp.client import LanguageClient
from pygls.protocol import default_converter
from pygls.uris import to_fs_path

REPO = Path(__file__).resolve().parent.parent


def utf16_offset(text: str, position: types.Position) -> int:
    """Code-point offset of an LSP position, computed independently of the server's code."""
    lines = text.split("\n")
    head = sum(len(ln) + 1 for ln in lines[: position.line])
    line = lines[position.line] if position.line < len(lines) else ""
    units = 0
    for i, ch in enumerate(line):
        if units >= position.character:
            return head + i
        units += len(ch.encode("utf-16-le")) // 2
    return head + len(line)


def apply_text_edits(text: str, edits: list[types.TextEdit]) -> str:
    spans = sorted(
        ((utf16_offset(text, e.range.start), utf16_offset(text, e.range.end), e.new_text) for e in edits),
        reverse=True,
    )
    for start, end, new in spans:
        text = text[:start] + new + text[end:]
    return text


def _converter() -> cattrs.Converter:
    """pygls's converter, except that a CodeAction carrying a Command is not taken for a Command
    (lsprotocol decides by the mere presence of a "command" key; editors check its type)."""
    converter = default_converter()

    def command_or_action(obj: Any, _: type) -> types.Command | types.CodeAction:
        if isinstance(obj.get("command"), str):
            return converter.structure(obj, types.Command)
        return converter.structure(obj, types.CodeAction)

    converter.register_structure_hook(types.Command | types.CodeAction, command_or_action)  # type: ignore[arg-type]
    return converter


class Editor:
    """Open documents with versions; applies the server's edits like an editor would."""

    def __init__(self, root: Path, state: Path) -> None:
        self.root = root
        self.state = state
        self.client = LanguageClient("infiller-action-tests", "0", converter_factory=_converter)
        self.texts: dict[str, str] = {}
        self.versions: dict[str, int] = {}
        self.diagnostics: dict[str, list[types.Diagnostic]] = {}
        self.applied: list[types.WorkspaceEdit] = []
        self.refused: list[str] = []
        self.messages: list[str] = []
        self.progress: list[Any] = []
        client = self.client

        @client.feature(types.WORKSPACE_APPLY_EDIT)
        def apply_edit(ls: Any, params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
            return self._apply(params.edit)

        @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def diagnostics(ls: Any, params: types.PublishDiagnosticsParams) -> None:
            self.diagnostics[params.uri] = list(params.diagnostics)

        @client.feature(types.WINDOW_SHOW_MESSAGE)
        def show(ls: Any, params: types.ShowMessageParams) -> None:
            self.messages.append(params.message)

        @client.feature(types.WINDOW_LOG_MESSAGE)
        def log(ls: Any, params: types.LogMessageParams) -> None:
            pass

        @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def create(ls: Any, params: types.WorkDoneProgressCreateParams) -> None:
            return None

        @client.feature(types.PROGRESS)
        def progress(ls: Any, params: types.ProgressParams) -> None:
            self.progress.append({**plain(params.value), "token": params.token})

        @client.feature(types.CLIENT_REGISTER_CAPABILITY)
        def register(ls: Any, params: types.RegistrationParams) -> None:
            return None

    def _apply(self, edit: types.WorkspaceEdit) -> types.ApplyWorkspaceEditResult:
        for change in edit.document_changes or []:
            if isinstance(change, types.TextDocumentEdit):
                uri = change.text_document.uri
                version = change.text_document.version
                if version is not None and uri in self.versions and version != self.versions[uri]:
                    self.refused.append(uri)
                    return types.ApplyWorkspaceEditResult(
                        applied=False, failure_reason="document version changed"
                    )
        self.applied.append(edit)
        for change in edit.document_changes or []:
            if isinstance(change, types.CreateFile):
                path = Path(to_fs_path(change.uri) or "")
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("")
            elif isinstance(change, types.TextDocumentEdit):
                uri = change.text_document.uri
                path = Path(to_fs_path(uri) or "")
                text = self.texts.get(uri, path.read_text() if path.exists() else "")
                # Annotated edits (confirmation asked) count as accepted: the user said yes.
                edits = [
                    e if isinstance(e, types.TextEdit) else types.TextEdit(range=e.range, new_text=e.new_text)
                    for e in change.edits
                    if isinstance(e, types.TextEdit | types.AnnotatedTextEdit)
                ]
                new = apply_text_edits(text, edits)
                path.write_text(new)
                if uri in self.texts:
                    self.change(uri, new)
        return types.ApplyWorkspaceEditResult(applied=True)

    async def start(self, *serve_args: str, options: dict[str, Any] | None = None) -> None:
        env = {**os.environ, "INFILLER_STATE_DIR": str(self.state)}
        await self.client.start_io(
            sys.executable, "-m", "server", "serve", *serve_args,
            "--log-file", str(self.state / "server.log"), env=env, cwd=str(REPO),
        )  # fmt: skip
        caps = types.ClientCapabilities(
            window=types.WindowClientCapabilities(work_done_progress=True),
            workspace=types.WorkspaceClientCapabilities(
                apply_edit=True,
                workspace_edit=types.WorkspaceEditClientCapabilities(
                    document_changes=True, resource_operations=[types.ResourceOperationKind.Create]
                ),
            ),
            text_document=types.TextDocumentClientCapabilities(
                code_action=types.CodeActionClientCapabilities(
                    code_action_literal_support=types.ClientCodeActionLiteralOptions(
                        code_action_kind=types.ClientCodeActionKindOptions(value_set=["quickfix", "refactor"])
                    )
                ),
                publish_diagnostics=types.PublishDiagnosticsClientCapabilities(version_support=True),
            ),
        )
        await self.client.initialize_async(
            types.InitializeParams(
                process_id=os.getpid(),
                root_uri=self.root.as_uri(),
                capabilities=caps,
                initialization_options=options,
            )
        )
        self.client.initialized(types.InitializedParams())

    async def wait_model(self, timeout: float = 120) -> None:
        """Until the server can run actions (the first codeAction command needs the model)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            stats = await self.client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="infiller.stats")
            )
            model = stats.get("model") if isinstance(stats, dict) else getattr(stats, "model", None)
            if model:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("the model did not load")
            await asyncio.sleep(0.1)

    def open(self, path: Path) -> str:
        uri = path.as_uri()
        self.texts[uri] = path.read_text()
        self.versions[uri] = 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=self.texts[uri]
                )
            )
        )
        return uri

    def change(self, uri: str, text: str) -> None:
        self.texts[uri] = text
        self.versions[uri] += 1
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )

    async def wait_diagnostics(self, uri: str, timeout: float = 10) -> list[types.Diagnostic]:
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.diagnostics.get(uri):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no diagnostics for {uri}")
            await asyncio.sleep(0.05)
        return self.diagnostics[uri]

    async def code_actions(
        self, uri: str, rng: types.Range, diagnostics: list[types.Diagnostic] | None = None
    ) -> list[types.CodeAction]:
        result = await self.client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                range=rng,
                context=types.CodeActionContext(diagnostics=diagnostics or []),
            )
        )
        return [a for a in result or [] if isinstance(a, types.CodeAction)]

    async def run(self, action: types.CodeAction) -> Any:
        assert action.command is not None
        return await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=action.command.command, arguments=action.command.arguments)
        )

    async def stop(self) -> None:
        try:
            await asyncio.wait_for(self.client.shutdown_async(None), timeout=10)
            self.client.exit(None)
        finally:
            await asyncio.wait_for(self.client.stop(), timeout=10)


def plain(value: Any) -> Any:
    """Command results arrive as named tuples from pygls's converter: back to dicts."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
