"""Inline completions (`textDocument/inlineCompletion`) and the `textDocument/completion` fallback.

The handlers are thin: they turn the document and position into one `CompletionContext`, ask the
session's suggester (server/suggest.py) and wrap its answer in LSP types. What only an editor
knows stays here: whether the document's language is on, and buffers too large to complete in.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types

from server.lsp.documents import MAX_DOCUMENT_CHARS, Document, cursor_at, utf16_len
from server.request import CompletionContext
from server.suggest import Answer

if TYPE_CHECKING:
    from server.lsp.server import InfillerServer

log = logging.getLogger(__name__)

ACCEPT_COMMAND = "infiller.accepted"
# Sort text that puts the fallback item first among a client's other completion items.
FIRST_SORT_TEXT = "\u0000"
# An identifier fragment right before the cursor (replaced by the fallback completion item).
WORD_BEFORE_CURSOR = re.compile(r"[\w$]+$")


def context_at(server: InfillerServer, doc: Document, line: int, column: int) -> CompletionContext:
    """The completion context of a document at a 0-based (line, code-point column)."""
    return CompletionContext.at(
        doc.path or _untitled(doc.uri),
        doc.text,
        line,
        column,
        uri=doc.uri,
        language=doc.language,
        root=server.root,
    )


def _untitled(uri: str) -> Path:
    """A stand-in path for documents without one (untitled buffers): only its name is used."""
    return Path(uri.rsplit("/", 1)[-1] or "untitled")


async def suggest(
    server: InfillerServer, uri: str, position: types.Position, *, explicit: bool = False
) -> Answer:
    """The suggestion for an LSP position, or the reason there is none."""
    suggester = server.session.suggester
    doc = server.documents.get(uri)
    if doc is None:
        return suggester.decline("unknown-document")
    if not server.settings.language_enabled(doc.language, doc.language_id):
        return suggester.decline("disabled" if not server.settings.enable else "language-disabled")
    if doc.too_large:
        # Even splitting the buffer per keystroke costs; the model could see a sliver of it anyway.
        if not doc.told_too_large:
            doc.told_too_large = True
            server.log(
                f"{uri.rsplit('/', 1)[-1]}: {len(doc.text):,} characters is over the "
                f"{MAX_DOCUMENT_CHARS:,} limit for completions; none are offered in it"
            )
        return suggester.decline("document-too-large")
    line, column = cursor_at(doc.text, position)
    doc.last_line = line
    return await suggester.suggest(context_at(server, doc, line, column), explicit=explicit)


def prefill(server: InfillerServer, doc: Document, line: int, *, whole_chunks: bool = False) -> bool:
    """Read the prompt for the end of `line` into the model's cache (a file opened, a jump, the
    cursor resting there; `whole_chunks`: see Suggester.prefill). False: nothing to read there."""
    if doc.too_large or not server.settings.language_enabled(doc.language, doc.language_id):
        return False
    lines = doc.text.split("\n")
    if line >= len(lines):
        return False
    at = context_at(server, doc, line, len(lines[line]))
    return server.session.suggester.prefill(at, whole_chunks=whole_chunks)


# --- LSP wrapping ----------------------------------------------------------------------------


def inline_items(answer: Answer, position: types.Position) -> types.InlineCompletionList:
    if not answer.text:
        return types.InlineCompletionList(items=[])
    item = types.InlineCompletionItem(
        insert_text=answer.text,
        range=types.Range(start=position, end=_replaced_end(answer, position)),
        command=types.Command(
            title="infiller: accepted", command=ACCEPT_COMMAND, arguments=[answer.stats_id, len(answer.text)]
        ),
    )
    return types.InlineCompletionList(items=[item])


def _replaced_end(answer: Answer, position: types.Position) -> types.Position:
    """The end of what the answer replaces: the closers the editor put after the cursor that it
    writes itself (ASCII: their UTF-16 length is their length); the cursor when it replaces none."""
    return types.Position(line=position.line, character=position.character + answer.replaces)


def completion_items(answer: Answer, doc: Document, position: types.Position) -> types.CompletionList:
    """One item, the suggestion, replacing the word before the cursor so that client filtering keeps it."""
    if not answer.text:
        return types.CompletionList(is_incomplete=True, items=[])
    line, column = cursor_at(doc.text, position)
    line_text = doc.text.split("\n")[line][:column]
    match = WORD_BEFORE_CURSOR.search(line_text)
    word = match.group(0) if match else ""
    start = types.Position(line=position.line, character=position.character - utf16_len(word))
    new_text = word + answer.text
    first_line = new_text.split("\n", 1)[0].strip() or new_text.strip().split("\n", 1)[0]
    item = types.CompletionItem(
        label=first_line[:80] or new_text[:80],
        kind=types.CompletionItemKind.Text,
        detail="infiller",
        documentation=types.MarkupContent(kind=types.MarkupKind.Markdown, value=f"```\n{new_text}\n```"),
        sort_text=FIRST_SORT_TEXT,
        filter_text=new_text,
        preselect=True,
        text_edit=types.TextEdit(
            range=types.Range(start=start, end=_replaced_end(answer, position)), new_text=new_text
        ),
        insert_text_format=types.InsertTextFormat.PlainText,
        command=types.Command(
            title="infiller: accepted", command=ACCEPT_COMMAND, arguments=[answer.stats_id, len(answer.text)]
        ),
    )
    return types.CompletionList(is_incomplete=True, items=[item])


def register(server: InfillerServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: InfillerServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        explicit = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        answer = await suggest(ls, params.text_document.uri, params.position, explicit=explicit)
        return inline_items(answer, params.position)

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[".", "("]))
    async def completion(ls: InfillerServer, params: types.CompletionParams) -> types.CompletionList:
        if ls.inline_client:
            # The suggestion is shown as ghost text already. Offered in the completion menu too, it
            # would be asked for twice per key (VS Code asks both as the user types) and open a
            # menu whose item, an early part of the suggestion, Tab takes instead of the ghost text.
            return types.CompletionList(is_incomplete=False, items=[])
        explicit = (
            params.context is not None and params.context.trigger_kind == types.CompletionTriggerKind.Invoked
        )
        answer = await suggest(ls, params.text_document.uri, params.position, explicit=explicit)
        doc = ls.documents.get(params.text_document.uri)
        if doc is None:
            return types.CompletionList(is_incomplete=True, items=[])
        return completion_items(answer, doc, params.position)
