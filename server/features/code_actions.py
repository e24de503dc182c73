"""Code actions: "Generate tests for `f`" and "Fix this", verified before anything is applied.

`textDocument/codeAction` answers at once with cheap actions that each carry a Command
(`infiller.generateTests`, `infiller.fix`); choosing one runs `workspace/executeCommand`, which
does the heavy generate + verify work in a thread (the model through the server's single
worker, tests in the sandbox) under a cancellable work-done progress, then delivers the result
with `workspace/applyEdit`. Commands rather than codeAction/resolve because a resolve must
return the edit in its own response: a minute of generation would hang the client's menu with
no progress and no cancel, while executeCommand + applyEdit + $/progress works the same in
Neovim and VS Code. Verified fixes that were not applied stay on offer as ordinary code
actions (with their edit) for that document version.

Edits use `documentChanges` with the document version read at the start, so a client refuses
an edit computed for text the user has changed since. The server does not rely on that: clients
without `documentChanges` get unversioned `changes`, so right before sending any edit it checks
itself that the text the edit was computed on is still there (`EditBasis.stale`: the open
buffer's version and text, or the file on disk when it is not open) and refuses a stale edit. A
command also refuses to start when the document moved past the version its action was offered
for. Edits to an open document always carry its real version; `version: null` is sent only for a
file that is not open in the editor, which the spec defines as exactly that case.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import converters, types
from pygls.uris import from_fs_path

from server.actions.fix import MAX_CANDIDATES, Candidate, FixRequest, FixResult, Problem, fix
from server.actions.sandbox import Sandbox, isolation_available
from server.actions.testgen import (
    GenerateTestsRequest,
    GenerateTestsResult,
    NewTestsEdit,
    find_target,
    generate_tests,
    new_tests_edit,
    rename_clashes,
)
from server.lsp.documents import column_from_utf16, utf16_len
from server.lsp.progress import WorkDone

# Imported at run time: pygls resolves the command handlers' annotations to inject the server.
from server.lsp.server import InfillerServer
from server.model.chat import worker_first_tokens, worker_generator
from server.model.runtime import Cancelled, CancelToken
from server.workspace import find_root

if TYPE_CHECKING:
    from server.lsp.documents import Document, Documents

log = logging.getLogger(__name__)

COMMAND_GENERATE_TESTS = "infiller.generateTests"
COMMAND_FIX = "infiller.fix"
# Cancels the running actions of one document ({uri}). $/cancelRequest cannot: pygls runs a
# command's coroutine apart from the executeCommand request that a client would cancel.
COMMAND_CANCEL = "infiller.cancelActions"
TITLE_PREFIX = "infiller: "
# Kinds we offer; "refactor" rather than "source" so VS Code lists test generation in the
# lightbulb menu and not only under "Source Action...".
KIND_GENERATE_TESTS = types.CodeActionKind.Refactor.value + ".generateTests"
KIND_FIX = types.CodeActionKind.QuickFix.value
# Edit by instruction (server/features/edit_selection.py).
KIND_EDIT = types.CodeActionKind.RefactorRewrite.value + ".instruction"
# Languages the actions support (tests are pytest; fixes need a Python sandbox to run tests,
# but syntax fixes work for every tree-sitter language).
TEST_LANGUAGES = frozenset({"python"})
# Verified candidates remembered per document for the code-action menu.
MAX_OFFERED_CANDIDATES = 5

_converter = converters.get_converter()


# ---------------------------------------------------------------------------------------------
# Arguments carried by the commands (plain JSON on the wire)


@dataclass
class TestArgs:
    uri: str
    line: int
    version: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"uri": self.uri, "line": self.line, "version": self.version}

    @classmethod
    def from_json(cls, raw: Any) -> TestArgs:
        if not isinstance(raw, dict) or "uri" not in raw or "line" not in raw:
            raise ValueError(f"{COMMAND_GENERATE_TESTS} expects {{uri, line}}, got {raw!r}")
        return cls(str(raw["uri"]), int(raw["line"]), raw.get("version"))


@dataclass
class FixArgs:
    uri: str
    range: types.Range
    version: int | None = None
    diagnostic: types.Diagnostic | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "version": self.version,
            "range": _converter.unstructure(self.range),
            "diagnostic": _converter.unstructure(self.diagnostic) if self.diagnostic else None,
        }

    @classmethod
    def from_json(cls, raw: Any) -> FixArgs:
        if not isinstance(raw, dict) or "uri" not in raw or "range" not in raw:
            raise ValueError(f"{COMMAND_FIX} expects {{uri, range, diagnostic?}}, got {raw!r}")
        diagnostic = raw.get("diagnostic")
        return cls(
            str(raw["uri"]),
            _converter.structure(raw["range"], types.Range),
            raw.get("version"),
            _converter.structure(diagnostic, types.Diagnostic) if diagnostic else None,
        )


# ---------------------------------------------------------------------------------------------
# The cheap part: which actions to offer


@dataclass
class Offered:
    """Verified fixes not applied yet, valid for one document version."""

    version: int | None
    range: types.Range
    edits: list[tuple[str, types.WorkspaceEdit]]


@dataclass
class ActionState:
    offered: dict[str, Offered] = field(default_factory=dict)
    running: dict[str, CancelToken] = field(default_factory=dict)


@dataclass(frozen=True)
class EditBasis:
    """What an edit was computed on: an open document at `version`, or a file as it was on disk."""

    uri: str
    path: Path | None
    text: str | None  # None: the file did not exist
    version: int | None  # the open document's version; None: the file was not open

    def stale(self, documents: Documents) -> tuple[str | None, int | None]:
        """(why the edit must not be sent, or None; the version to send it with, None when not open)."""
        name = self.uri.rsplit("/", 1)[-1]
        doc = documents.get(self.uri) or (documents.find_path(self.path) if self.path else None)
        if self.version is not None:
            if doc is None:
                return f"{name} was closed", None
            if doc.version != self.version or doc.text != self.text:
                return f"{name} changed (version {self.version}, now {doc.version})", None
            return None, doc.version
        if doc is not None:  # opened since: its buffer is what the edit will land in
            if doc.text != (self.text or ""):
                return f"{name} was opened and changed", None
            return None, doc.version
        try:
            disk = _disk_text(self.path) if self.path is not None else self.text
        except ValueError as exc:
            return str(exc), None
        if disk != self.text:
            return f"{name} changed on disk", None
        return None, None


def _disk_text(path: Path) -> str | None:
    """A file's text, None when it does not exist; ValueError (shown to the user) when unreadable."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path.name}: {exc}") from exc


def _wanted(kind: str, only: list[str] | None) -> bool:
    return not only or any(kind == o or kind.startswith(o + ".") for o in only)


def _overlaps(a: types.Range, b: types.Range) -> bool:
    return (a.start.line, a.start.character) <= (b.end.line, b.end.character) and (
        b.start.line,
        b.start.character,
    ) <= (a.end.line, a.end.character)


def _same_lines(a: types.Range, b: types.Range) -> bool:
    return a.start.line <= b.end.line and b.start.line <= a.end.line


def code_actions_for(
    doc_text: str,
    language: str | None,
    uri: str,
    version: int | None,
    params_range: types.Range,
    context: types.CodeActionContext,
    offered: Offered | None = None,
) -> list[types.CodeAction]:
    """The actions for a codeAction request (pure: no model, no I/O)."""
    only = (
        [k.value if isinstance(k, types.CodeActionKind) else str(k) for k in context.only]
        if context.only
        else None
    )
    actions: list[types.CodeAction] = []
    if offered is not None and offered.version == version and _overlaps(offered.range, params_range):
        for i, (title, edit) in enumerate(offered.edits):
            actions.append(types.CodeAction(title=title, kind=KIND_FIX, edit=edit, is_preferred=i == 0))
    if language is None:
        return [a for a in actions if _wanted(KIND_FIX, only)]
    if _wanted(KIND_FIX, only) and not actions:
        # Clients already send the diagnostics at the cursor (Neovim: of its whole line); keep
        # those on the requested lines.
        diagnostics = [d for d in context.diagnostics if _same_lines(d.range, params_range)]
        for d in diagnostics:
            args = FixArgs(uri, d.range, version, d)
            title = f"{TITLE_PREFIX}Fix this ({_short(d.message)})"
            actions.append(
                types.CodeAction(
                    title=title,
                    kind=KIND_FIX,
                    diagnostics=[d],
                    command=types.Command(title=title, command=COMMAND_FIX, arguments=[args.to_json()]),
                )
            )
        if not diagnostics and params_range.start != params_range.end:
            args = FixArgs(uri, params_range, version, None)
            title = f"{TITLE_PREFIX}Fix this"
            actions.append(
                types.CodeAction(
                    title=title,
                    kind=KIND_FIX,
                    command=types.Command(title=title, command=COMMAND_FIX, arguments=[args.to_json()]),
                )
            )
    if params_range.start != params_range.end and _wanted(KIND_EDIT, only):
        from server.features.edit_selection import edit_action  # it imports this module

        actions.append(edit_action(uri, version, params_range))
    if language in TEST_LANGUAGES and _wanted(KIND_GENERATE_TESTS, only):
        target = find_target(doc_text, params_range.start.line)
        if target is not None:
            title = f"{TITLE_PREFIX}Generate tests for `{target.name}`"
            test_args = TestArgs(uri, params_range.start.line, version)
            actions.append(
                types.CodeAction(
                    title=title,
                    kind=KIND_GENERATE_TESTS,
                    command=types.Command(
                        title=title, command=COMMAND_GENERATE_TESTS, arguments=[test_args.to_json()]
                    ),
                )
            )
    return actions


def _short(message: str, limit: int = 60) -> str:
    first = " ".join(message.split())
    return first if len(first) <= limit else first[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Edits


def _supports_document_changes(server: InfillerServer) -> tuple[bool, bool]:
    """(documentChanges, CreateFile) support of the client."""
    caps = server.client_capabilities
    edit = caps.workspace.workspace_edit if caps and caps.workspace else None
    if edit is None:
        return False, False
    create = bool(edit.resource_operations and types.ResourceOperationKind.Create in edit.resource_operations)
    return bool(edit.document_changes), create


def _end_position(text: str) -> types.Position:
    lines = text.split("\n")
    return types.Position(line=len(lines) - 1, character=utf16_len(lines[-1]))


def line_range_edit(text: str, start: int, end: int, new_text: str) -> types.TextEdit:
    """A TextEdit replacing whole lines [start, end) of text (also when the last has no newline)."""
    lines = text.split("\n")
    if end < len(lines):
        return types.TextEdit(
            range=types.Range(
                start=types.Position(line=start, character=0), end=types.Position(line=end, character=0)
            ),
            new_text=new_text,
        )
    # The edit reaches a final line without newline: end there, without adding one.
    return types.TextEdit(
        range=types.Range(start=types.Position(line=start, character=0), end=_end_position(text)),
        new_text=new_text[:-1] if new_text.endswith("\n") else new_text,
    )


def fix_workspace_edit(
    uri: str, version: int | None, text: str, candidate: Candidate, *, document_changes: bool = True
) -> types.WorkspaceEdit:
    edit = line_range_edit(text, candidate.edit.start, candidate.edit.end, candidate.edit.new_text)
    if not document_changes:
        return types.WorkspaceEdit(changes={uri: [edit]})
    ident = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
    return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(text_document=ident, edits=[edit])])


def tests_workspace_edit(
    edit: NewTestsEdit,
    existing: str | None,
    version: int | None,
    *,
    document_changes: bool = True,
    uri: str | None = None,
) -> types.WorkspaceEdit:
    """Create the test file (CreateFile + insert) or insert imports and append tests to it.

    `version` is the open document's version (None only when the file is not open: an edit to a
    file on disk); `uri` the open document's own URI, which may be spelt unlike ours.
    """
    uri = uri or from_fs_path(str(edit.path)) or edit.path.as_uri()
    origin = types.Position(line=0, character=0)
    if edit.create:
        text_edits = [types.TextEdit(range=types.Range(start=origin, end=origin), new_text=edit.text)]
        if not document_changes:
            return types.WorkspaceEdit(changes={uri: text_edits})
        ident = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=None)
        return types.WorkspaceEdit(
            document_changes=[
                types.CreateFile(
                    uri=uri, options=types.CreateFileOptions(overwrite=False, ignore_if_exists=True)
                ),
                types.TextDocumentEdit(text_document=ident, edits=text_edits),
            ]
        )
    assert existing is not None
    end = _end_position(existing)
    text_edits = []
    if edit.imports:
        at = types.Position(line=edit.import_line, character=0)
        text_edits.append(types.TextEdit(range=types.Range(start=at, end=at), new_text=edit.imports))
    text_edits.append(types.TextEdit(range=types.Range(start=end, end=end), new_text=edit.text))
    if not document_changes:
        return types.WorkspaceEdit(changes={uri: text_edits})
    ident = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
    return types.WorkspaceEdit(
        document_changes=[types.TextDocumentEdit(text_document=ident, edits=text_edits)]
    )


# ---------------------------------------------------------------------------------------------
# Progress and cancellation


async def _run_cancellable(
    server: InfillerServer,
    title: str,
    key: str,
    work: Callable[[CancelToken, Callable[[str, int], None]], Any],
) -> Any:
    """Run `work(cancel, progress)` in a thread with progress; $/cancelRequest and a progress
    cancel both stop it; a second run for the same key cancels the first."""
    state: ActionState = server.code_action_state  # type: ignore[attr-defined]
    older = state.running.pop(key, None)
    if older is not None:
        older.cancel("superseded by a newer request")
    cancel = CancelToken()
    state.running[key] = cancel
    progress = WorkDone(server, title, cancel)
    await progress.begin()
    outcome = "failed"
    try:
        result = await asyncio.to_thread(work, cancel, progress.report)
        outcome = "done"
        return result
    except asyncio.CancelledError:
        cancel.cancel("request cancelled")
        outcome = "cancelled"
        raise
    except Cancelled as exc:
        outcome = f"cancelled ({exc})"
        raise
    finally:
        progress.end(outcome)
        if state.running.get(key) is cancel:
            state.running.pop(key, None)


def cancel_actions(server: InfillerServer, uri: str) -> list[str]:
    """Cancel every running action (tests, fix, edit) of the document; what was cancelled."""
    state: ActionState = server.code_action_state  # type: ignore[attr-defined]
    stopped = []
    for key in [k for k in state.running if k.split(":", 1)[1] == uri]:
        state.running.pop(key).cancel("cancelled by the user")
        stopped.append(key.split(":", 1)[0])
    return stopped


def _document(server: InfillerServer, uri: str, offered_version: int | None = None) -> Document:
    doc = server.documents.get(uri)
    if doc is None:
        raise ValueError(f"{uri} is not open")
    if doc.path is None:
        raise ValueError(f"{uri} is not a file")
    if offered_version is not None and doc.version != offered_version:
        # Its line and range point into text that is gone.
        raise ValueError(
            f"{uri.rsplit('/', 1)[-1]} changed since the action was offered "
            f"(version {offered_version}, now {doc.version}); ask for it again"
        )
    return doc


def _root_for(server: InfillerServer, path: Path) -> Path:
    if server.root is not None and path.resolve().is_relative_to(server.root.resolve()):
        return server.root
    return find_root(path)


def _sandbox_factory(server: InfillerServer) -> Callable[[Path], Sandbox]:
    """Sandboxes as the settings allow: without isolation they refuse unless unsafe runs are allowed."""
    return functools.partial(Sandbox, allow_unsafe=server.settings.allow_unsafe_execution)


def _check_isolation() -> None:
    ok, how = isolation_available()
    if ok:
        log.info("sandbox for generated code: %s", how)
    else:
        log.warning("no sandbox for generated code (code actions will refuse to run tests): %s", how)


def _runtime(server: InfillerServer) -> Any:
    if server.runtime is None:
        raise ValueError(server.model_error or "the model is still loading; try again in a moment")
    return server.runtime


# ---------------------------------------------------------------------------------------------
# The heavy part: the commands


async def run_generate_tests(server: InfillerServer, args: TestArgs) -> dict[str, Any]:
    doc = _document(server, args.uri, args.version)
    runtime = _runtime(server)
    assert doc.path is not None
    path, text, line = doc.path, doc.text, args.line
    root = _root_for(server, path)
    request = GenerateTestsRequest(root, path, text, line, index=server.index)
    target = find_target(text, line)
    name = target.name if target else "the function"
    sandbox_factory = _sandbox_factory(server)

    def work(cancel: CancelToken, progress: Callable[[str, int], None]) -> GenerateTestsResult:
        generate = worker_generator(server.worker, runtime, cancel)
        return generate_tests(
            request, generate, cancel=cancel, progress=progress, sandbox_factory=sandbox_factory
        )

    result: GenerateTestsResult = await _run_cancellable(
        server, f"infiller: generating tests for {name}", f"tests:{args.uri}", work
    )
    summary = result.summary()
    answer: dict[str, Any] = {
        "summary": summary,
        "passing": [t.name for t in result.passing],
        "failing": {t.name: t.message for t in result.failing},
        "rounds": result.rounds,
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
        "testFile": str(result.test_path),
        "applied": False,
        "dropped": {name: why for name, why in result.dropped},
        "notes": result.notes,
    }
    if result.quality is not None:
        q = result.quality
        answer["quality"] = {
            "tests": q.tests,
            "branchesCovered": q.branches_covered,
            "branchesTotal": q.branches_total,
            "unit": q.unit,
            "mutantsKilled": q.mutants_killed,
            "mutantsTotal": q.mutants_total,
            "survivors": [f"line {m.line}: {m.description}" for m in q.survivors],
        }
    lent = [n for n in result.notes if "provided by infiller" in n]
    if lent:
        summary += f" ({'; '.join(lent)})"
    if not result.passing and not result.failing:
        server.show(
            f"no usable tests for `{result.target.name}`: {'; '.join(result.notes) or 'none generated'}"
        )
        return answer
    test_uri = from_fs_path(str(result.test_path)) or result.test_path.as_uri()
    # Found by path too: the client may spell the URI of an open file differently from us.
    open_doc = server.documents.get(test_uri) or server.documents.find_path(result.test_path)
    if open_doc is not None:
        basis = EditBasis(open_doc.uri, result.test_path, open_doc.text, open_doc.version)
    else:
        basis = EditBasis(test_uri, result.test_path, _disk_text(result.test_path), None)
    existing = basis.text
    rename_clashes(result, existing)
    file_edit = new_tests_edit(result, existing)
    doc_changes, can_create = _supports_document_changes(server)
    stale, version = basis.stale(server.documents)
    if stale is not None:
        server.show(f"tests for `{result.target.name}` not added: {stale} while they were written")
        answer["stale"] = stale
        return answer
    if file_edit.create and not can_create:
        # A client that cannot create files: write it ourselves (exclusive create: nothing is lost).
        file_edit.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with file_edit.path.open("x", encoding="utf-8") as f:
                f.write(file_edit.text)
        except FileExistsError:
            server.show(
                f"tests for `{result.target.name}` not added: {file_edit.path.name} appeared meanwhile"
            )
            answer["stale"] = f"{file_edit.path.name} appeared meanwhile"
            return answer
        answer["applied"] = True
    else:
        edit = tests_workspace_edit(file_edit, existing, version, document_changes=doc_changes, uri=basis.uri)
        applied = await server.workspace_apply_edit_async(
            types.ApplyWorkspaceEditParams(edit=edit, label=f"infiller: tests for {result.target.name}")
        )
        answer["applied"] = bool(applied.applied)
        if not applied.applied:
            server.show(
                f"the client refused the test file edit: {applied.failure_reason or 'no reason given'}"
            )
            return answer
    if result.failing:
        names = ", ".join(f"`{t.name}`" for t in result.failing)
        server.show(
            f"{summary}. Possible bugs (tests failing against the code): {names}", types.MessageType.Warning
        )
    else:
        server.show(summary, types.MessageType.Info)
    return answer


def _problem(doc_text: str, args: FixArgs) -> Problem:
    lines = doc_text.split("\n")

    def col(line: int, character: int) -> int:
        return column_from_utf16(lines[line], character) if line < len(lines) else 0

    rng = args.diagnostic.range if args.diagnostic is not None else args.range
    message = args.diagnostic.message if args.diagnostic is not None else ""
    source = args.diagnostic.source if args.diagnostic is not None else None
    return Problem(
        rng.start.line, col(rng.start.line, rng.start.character), rng.end.line,
        col(rng.end.line, rng.end.character), message, source,
    )  # fmt: skip


async def run_fix(server: InfillerServer, args: FixArgs) -> dict[str, Any]:
    doc = _document(server, args.uri, args.version)
    runtime = _runtime(server)
    assert doc.path is not None
    language = doc.language
    if language is None:
        raise ValueError(f"no grammar for {doc.uri}")
    text, version, path = doc.text, doc.version, doc.path
    basis = EditBasis(args.uri, path, text, version)
    request = FixRequest(path, text, language, _problem(text, args), _root_for(server, path))
    sandbox_factory = _sandbox_factory(server)

    def work(cancel: CancelToken, progress: Callable[[str, int], None]) -> FixResult:
        generate = worker_generator(server.worker, runtime, cancel)
        return fix(
            request,
            generate,
            fim_template=runtime.template,
            cancel=cancel,
            progress=progress,
            sandbox_factory=sandbox_factory,
            first_tokens=worker_first_tokens(server.worker, runtime, cancel),
        )

    result: FixResult = await _run_cancellable(server, "infiller: fixing", f"fix:{args.uri}", work)
    answer: dict[str, Any] = {
        "kind": result.kind.value,
        "candidates": [
            {"origin": c.origin, "checks": c.checks, "edit": c.edit.new_text} for c in result.verified
        ],
        "rejected": [f"{origin}: {reason}" for origin, reason in result.rejected],
        "relatedTests": result.related_tests,
        "rounds": result.rounds,
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
        "applied": False,
        "tried": result.tried,
        "evidence": result.evidence,
        "notes": result.notes,
    }
    # One line per candidate tried, in order, under the headline; then how the tests ran.
    tried = "".join(f"\n{line}" for line in result.tried[-MAX_TRIED_SHOWN:])
    if len(result.tried) > MAX_TRIED_SHOWN:
        tried = f"\n({len(result.tried) - MAX_TRIED_SHOWN} earlier candidates not shown)" + tried
    tried += "".join(f"\n({note})" for note in result.notes)
    if not result.verified:
        headline = f"no fix passed verification ({len(result.tried)} candidate(s) tried)"
        server.show(headline + tried)
        return answer
    state: ActionState = server.code_action_state  # type: ignore[attr-defined]
    stale, _ = basis.stale(server.documents)
    if stale is not None:
        # Never sent: without documentChanges the client could not tell, and would apply it blindly.
        state.offered.pop(args.uri, None)
        server.show(f"the verified fix was not applied: {stale} while it was computed; ask again")
        answer["stale"] = stale
        return answer
    doc_changes, _ = _supports_document_changes(server)
    edits = [
        (
            f"{TITLE_PREFIX}Fix: {c.title} ({c.origin})",
            fix_workspace_edit(args.uri, version, text, c, document_changes=doc_changes),
        )
        for c in result.verified[:MAX_OFFERED_CANDIDATES]
    ]
    best_title, best_edit = edits[0]
    applied = await server.workspace_apply_edit_async(
        types.ApplyWorkspaceEditParams(edit=best_edit, label=best_title)
    )
    answer["applied"] = bool(applied.applied)
    if applied.applied:
        # The applied edit bumps the version: alternatives computed for the old text are stale.
        state.offered.pop(args.uri, None)
        best, took = result.verified[0], result.timings["total_s"]
        server.show(
            f"applied a verified fix ({best.origin}): {best.title} in {took:.1f} s{tried}",
            types.MessageType.Info,
        )
    else:
        state.offered[args.uri] = Offered(version, args.range, edits)
        server.show(
            "the verified fix was not applied "
            f"({applied.failure_reason or 'the document changed'}); it stays in the code actions"
        )
    return answer


# Candidate lines shown in the final message (all of them are in the command's answer): as
# many as Fix this may verify, so every one is shown.
MAX_TRIED_SHOWN = MAX_CANDIDATES


def register(server: InfillerServer) -> None:
    state = ActionState()
    # Check the sandbox at start-up (it runs bwrap once, cached) without delaying the server.
    threading.Thread(target=_check_isolation, name="sandbox-check", daemon=True).start()
    server.code_action_state = state  # type: ignore[attr-defined]
    options = types.CodeActionOptions(
        code_action_kinds=[KIND_FIX, KIND_GENERATE_TESTS, KIND_EDIT], resolve_provider=False
    )
    from server.features import edit_selection  # it imports this module

    edit_selection.register(server)

    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION, options)
    def code_action(ls: InfillerServer, params: types.CodeActionParams) -> list[types.CodeAction] | None:
        doc = ls.documents.get(params.text_document.uri)
        if doc is None:
            return None
        offered = state.offered.get(doc.uri)
        return code_actions_for(
            doc.text, doc.language, doc.uri, doc.version, params.range, params.context, offered
        )

    @server.command(COMMAND_GENERATE_TESTS)
    async def generate_tests_command(ls: InfillerServer, *args: Any) -> dict[str, Any] | None:
        return await _guarded(
            ls, "generate tests", run_generate_tests(ls, TestArgs.from_json(args[0] if args else None))
        )

    @server.command(COMMAND_FIX)
    async def fix_command(ls: InfillerServer, *args: Any) -> dict[str, Any] | None:
        return await _guarded(ls, "fix", run_fix(ls, FixArgs.from_json(args[0] if args else None)))

    @server.command(COMMAND_CANCEL)
    def cancel_command(ls: InfillerServer, *args: Any) -> dict[str, Any]:
        raw = args[0] if args else None
        if not isinstance(raw, dict) or not isinstance(raw.get("uri"), str):
            raise ValueError(f"{COMMAND_CANCEL} expects {{uri}}, got {raw!r}")
        return {"cancelled": cancel_actions(ls, raw["uri"])}


async def _guarded(server: InfillerServer, what: str, work: Any) -> dict[str, Any] | None:
    """Turn expected failures into a message for the user instead of a JSON-RPC error."""
    try:
        result: dict[str, Any] = await work
        return result
    except Cancelled as exc:
        server.log(f"{what}: cancelled ({exc})")
        return {"cancelled": True}
    except ValueError as exc:  # SandboxUnavailable included: the refusal says why
        server.show(f"{what}: {exc}")
        return {"error": str(exc)}


__all__ = [
    "COMMAND_CANCEL",
    "COMMAND_FIX",
    "COMMAND_GENERATE_TESTS",
    "EditBasis",
    "FixArgs",
    "TestArgs",
    "code_actions_for",
    "fix_workspace_edit",
    "line_range_edit",
    "register",
    "tests_workspace_edit",
]
