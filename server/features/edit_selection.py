"""Edit by instruction over LSP: the `infiller.editSelection` command.

The code-action menu offers "Edit selection by instruction…" on a non-empty selection with the
client-side command `infiller.promptEdit` (LSP has no request for free text: the editor asks the
user for the instruction, then sends `infiller.editSelection` with it). The server rewrites and
verifies under a cancellable progress (`server/actions/edit.py`), then either

- returns the diff and the WorkspaceEdit without applying (`preview: true`; Neovim shows the diff
  and applies on the user's yes), or
- sends `workspace/applyEdit` with a change annotation that needs confirmation (VS Code shows it
  in its refactor preview, where the user accepts or discards it).

Either way the edit carries the document version read at the start and is refused when stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lsprotocol import converters, types

from server.actions.edit import EditRequest, EditResult, edit_selection
from server.features import code_actions as ca
from server.lsp.documents import column_from_utf16
from server.lsp.server import InfillerServer
from server.model.chat import worker_generator
from server.model.runtime import CancelToken

COMMAND_EDIT = "infiller.editSelection"
# Handled by the editor (it asks for the instruction, then sends COMMAND_EDIT).
CLIENT_COMMAND_PROMPT = "infiller.promptEdit"
KIND_EDIT = ca.KIND_EDIT
ANNOTATION = "infiller.edit"

_converter = converters.get_converter()


@dataclass
class EditArgs:
    uri: str
    range: types.Range
    instruction: str
    version: int | None = None
    preview: bool = False

    @classmethod
    def from_json(cls, raw: Any) -> EditArgs:
        if not isinstance(raw, dict) or not {"uri", "range", "instruction"} <= raw.keys():
            raise ValueError(
                f"{COMMAND_EDIT} expects {{uri, range, instruction, version?, preview?}}, got {raw!r}"
            )
        return cls(
            str(raw["uri"]),
            _converter.structure(raw["range"], types.Range),
            str(raw["instruction"]),
            raw.get("version"),
            bool(raw.get("preview", False)),
        )


def edit_action(uri: str, version: int | None, selection: types.Range) -> types.CodeAction:
    """The menu entry for a selection: the editor prompts for the instruction."""
    title = f"{ca.TITLE_PREFIX}Edit selection by instruction…"
    args = {"uri": uri, "version": version, "range": _converter.unstructure(selection)}
    return types.CodeAction(
        title=title,
        kind=KIND_EDIT,
        command=types.Command(title=title, command=CLIENT_COMMAND_PROMPT, arguments=[args]),
    )


def _lines(text: str, selection: types.Range) -> tuple[int, int]:
    """0-based [start, end) lines of a selection; one ending at column 0 leaves that line out."""
    end = selection.end.line + 1
    if selection.end.line > selection.start.line:
        lines = text.split("\n")
        line = lines[selection.end.line] if selection.end.line < len(lines) else ""
        if column_from_utf16(line, selection.end.character) == 0:
            end -= 1
    return selection.start.line, end


def edit_workspace_edit(
    uri: str, version: int | None, text: str, result: EditResult, instruction: str
) -> types.WorkspaceEdit:
    """One versioned text edit, annotated as needing the user's confirmation."""
    assert result.edit is not None
    edit = ca.line_range_edit(text, result.edit.start, result.edit.end, result.edit.new_text)
    annotated = types.AnnotatedTextEdit(range=edit.range, new_text=edit.new_text, annotation_id=ANNOTATION)
    ident = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
    annotation = types.ChangeAnnotation(
        label=f"infiller: {instruction.strip()[:80]}",
        needs_confirmation=True,
        description=result.summary,
    )
    return types.WorkspaceEdit(
        document_changes=[types.TextDocumentEdit(text_document=ident, edits=[annotated])],
        change_annotations={ANNOTATION: annotation},
    )


async def run_edit(server: InfillerServer, args: EditArgs) -> dict[str, Any]:
    doc = ca._document(server, args.uri, args.version)
    runtime = ca._runtime(server)
    assert doc.path is not None
    if doc.language is None:
        raise ValueError(f"no grammar for {doc.uri}")
    text, version, path = doc.text, doc.version, doc.path
    start, end = _lines(text, args.range)
    request = EditRequest(path, text, doc.language, start, end, args.instruction, ca._root_for(server, path))
    sandbox_factory = ca._sandbox_factory(server)

    def work(cancel: CancelToken, progress: Any) -> EditResult:
        generate = worker_generator(server.worker, runtime, cancel)
        return edit_selection(
            request, generate, cancel=cancel, progress=progress, sandbox_factory=sandbox_factory
        )

    title = f"infiller: {args.instruction.strip()[:40]}"
    result: EditResult = await ca._run_cancellable(server, title, f"edit:{args.uri}", work)
    answer: dict[str, Any] = {
        "summary": result.summary,
        "tried": result.tried,
        "relatedTests": result.related_tests,
        "rounds": result.rounds,
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
        "notes": result.notes,
        "diff": result.diff,
        "applied": False,
    }
    tried = "".join(f"\n{line}" for line in result.tried) + "".join(f"\n({n})" for n in result.notes)
    if result.edit is None:
        server.show(result.summary + tried)
        return answer
    basis = ca.EditBasis(args.uri, path, text, version)
    stale, _ = basis.stale(server.documents)
    if stale is not None:
        server.show(f"the rewrite was not offered: {stale} while it was computed; ask again")
        answer["stale"] = stale
        return answer
    edit = edit_workspace_edit(args.uri, version, text, result, args.instruction)
    if args.preview:
        answer["edit"] = _converter.unstructure(edit)
        return answer
    applied = await server.workspace_apply_edit_async(
        types.ApplyWorkspaceEditParams(edit=edit, label=f"infiller: {args.instruction.strip()[:80]}")
    )
    answer["applied"] = bool(applied.applied)
    if applied.applied:
        server.show(result.summary + tried, types.MessageType.Info)
    else:
        server.show(f"the rewrite was not applied ({applied.failure_reason or 'declined'})")
    return answer


def register(server: InfillerServer) -> None:
    @server.command(COMMAND_EDIT)
    async def edit_command(ls: InfillerServer, *args: Any) -> dict[str, Any] | None:
        return await ca._guarded(ls, "edit", run_edit(ls, EditArgs.from_json(args[0] if args else None)))


__all__ = [
    "CLIENT_COMMAND_PROMPT",
    "COMMAND_EDIT",
    "EditArgs",
    "edit_action",
    "edit_workspace_edit",
    "register",
]
