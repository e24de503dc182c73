"""Open documents as the server sees them, with LSP positions converted exactly.

LSP positions count UTF-16 code units on lines ended by `\\n` (a `\\r` before it belongs to
the line ending); Python strings index code points. pygls's own store splits lines with
`str.splitlines`, which also breaks on form feeds and U+2028 and so disagrees with editors on
files containing them; this store is the authoritative text for completions.

Text from the client may hold lone surrogates (JSON allows `"\\ud800"`); they are replaced by
U+FFFD as they arrive. Both are one UTF-16 unit, so positions stay exact, and everything
downstream (the index, other documents' prompts, the tokenizer) only ever sees valid Unicode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path

from context.syntax import LANGUAGE_IDS, language_for_path

# Above this a buffer is generated code or data (the index's MAX_FILE_BYTES draws the same line for
# files): completions decline at once, and it is neither indexed nor checked for syntax errors.
MAX_DOCUMENT_CHARS = 1_000_000
# A surrogate code point in a str is always a lone one (JSON decoding joins valid pairs).
_SURROGATE = re.compile("[\ud800-\udfff]")


def scrub_surrogates(text: str) -> str:
    """text with lone surrogates replaced by U+FFFD (same UTF-16 length: positions are unchanged)."""
    if _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub("\ufffd", text)


def utf16_len(text: str) -> int:
    """UTF-16 code units of text (astral characters such as emoji count two)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def column_from_utf16(line: str, character: int) -> int:
    """Code-point column of a UTF-16 offset into line; clamped to the line (without its `\\r`)."""
    if line.endswith("\r"):
        line = line[:-1]
    units = 0
    for index, ch in enumerate(line):
        if units >= character:
            return index
        units += 2 if ord(ch) > 0xFFFF else 1
    return len(line)


def utf16_from_column(line: str, column: int) -> int:
    return utf16_len(line[:column])


def offset_at(text: str, position: types.Position) -> int:
    """Code-point offset into text of an LSP position; past-the-end lines clamp to the end."""
    start = 0
    for _ in range(position.line):
        newline = text.find("\n", start)
        if newline < 0:
            return len(text)
        start = newline + 1
    end = text.find("\n", start)
    line = text[start:] if end < 0 else text[start:end]
    return start + column_from_utf16(line, position.character)


def cursor_at(text: str, position: types.Position) -> tuple[int, int]:
    """(line, code-point column) of an LSP position, both 0-based, as CompletionContext wants."""
    lines = text.split("\n")
    if position.line < 0:
        return 0, 0
    if position.line >= len(lines):
        return len(lines) - 1, len(lines[-1])
    return position.line, column_from_utf16(lines[position.line], position.character)


def position_of(text: str, offset: int) -> types.Position:
    """The LSP position of a code-point offset."""
    head = text[:offset]
    line = head.count("\n")
    line_start = head.rfind("\n") + 1
    return types.Position(line=line, character=utf16_len(head[line_start:]))


def apply_change(text: str, change: types.TextDocumentContentChangeEvent) -> str:
    """The text after one didChange event (incremental with a range, or the full text)."""
    if isinstance(change, types.TextDocumentContentChangePartial):
        start = offset_at(text, change.range.start)
        end = max(start, offset_at(text, change.range.end))
        return text[:start] + scrub_surrogates(change.text) + text[end:]
    return scrub_surrogates(change.text)


@dataclass
class Document:
    uri: str
    text: str
    version: int | None
    language_id: str
    path: Path | None
    # Line of the last edit or completion request, where the user works: a change far from it is
    # a cursor jump (prefill the new spot); the cursor resting on it needs no prefill.
    last_line: int | None = None
    # The user was told once that this buffer is too large for completions.
    told_too_large: bool = False

    @property
    def too_large(self) -> bool:
        """Above MAX_DOCUMENT_CHARS: no completions, index or syntax diagnostics for it."""
        return len(self.text) > MAX_DOCUMENT_CHARS

    @property
    def language(self) -> str | None:
        """Our language name (tree-sitter grammar), from the path or the client's languageId."""
        by_path = language_for_path(self.path) if self.path else None
        return by_path or LANGUAGE_IDS.get(self.language_id)


@dataclass
class Documents:
    """uri -> Document for every document the client opened."""

    docs: dict[str, Document] = field(default_factory=dict)

    def open(self, item: types.TextDocumentItem) -> Document:
        path = to_fs_path(item.uri)
        text = scrub_surrogates(item.text)
        doc = Document(item.uri, text, item.version, item.language_id, Path(path) if path else None)
        self.docs[item.uri] = doc
        return doc

    def change(self, params: types.DidChangeTextDocumentParams) -> tuple[Document, int | None] | None:
        """Apply the changes; returns the document and the line of the last edit."""
        doc = self.docs.get(params.text_document.uri)
        if doc is None:
            return None
        line: int | None = None
        for change in params.content_changes:
            doc.text = apply_change(doc.text, change)
            if isinstance(change, types.TextDocumentContentChangePartial):
                line = change.range.start.line + change.text.count("\n")
        doc.version = params.text_document.version
        return doc, line

    def close(self, uri: str) -> Document | None:
        return self.docs.pop(uri, None)

    def get(self, uri: str) -> Document | None:
        return self.docs.get(uri)

    def find_path(self, path: Path) -> Document | None:
        """The open document of a file, whatever the spelling of its URI (encoding, links)."""
        try:
            wanted = path.resolve()
            return next(
                (d for d in self.docs.values() if d.path is not None and d.path.resolve() == wanted), None
            )
        except OSError:
            return None
