"""Facts of an editor buffer kept current edit by edit, without re-reading the whole file.

tree-sitter re-parses only the edited region (the previous tree is `edit()`ed and handed back to
the parser), and only the top-level statements whose text changed are queried again: the facts
of every other statement are reused, moved by the number of lines the edit added or removed.
A keystroke in a 9,000-line file then costs what the statement around it costs.
"""

from __future__ import annotations

import bisect
import hashlib
import threading
from dataclasses import dataclass, replace

import tree_sitter as ts

from context.extract import PARSE_TIMEOUT_S, Definition, FileFacts, collect
from context.imports import ImportBinding
from context.syntax import parse

# Comments attach to the statement after them (JS/Go/Rust docs are preceding comments), so a
# changed comment re-extracts the definition it documents.
COMMENT_TYPES = frozenset({"comment", "line_comment", "block_comment"})


@dataclass(frozen=True)
class _Piece:
    """What one top-level statement (with its leading comments) contributed, at `row`."""

    row: int
    definitions: tuple[Definition, ...]
    imports: tuple[ImportBinding, ...]


@dataclass(frozen=True)
class _Edit:
    start_byte: int
    old_end_byte: int
    new_end_byte: int
    start_point: tuple[int, int]
    old_end_point: tuple[int, int]
    new_end_point: tuple[int, int]

    def apply(self, tree: ts.Tree) -> ts.Tree:
        """`tree`, edited in place to match the new text (tree-sitter then re-parses only this span)."""
        tree.edit(
            start_byte=self.start_byte,
            old_end_byte=self.old_end_byte,
            new_end_byte=self.new_end_byte,
            start_point=self.start_point,
            old_end_point=self.old_end_point,
            new_end_point=self.new_end_point,
        )
        return tree


class BufferFacts:
    """Definitions and imports of one buffer (no references or windows: those wait for a save)."""

    def __init__(self, language: str) -> None:
        self.language = language
        self._source = b""
        self._tree: ts.Tree | None = None
        self._pieces: dict[tuple[int, bytes], _Piece] = {}
        self._lock = threading.Lock()
        # Top-level statements queried / reused by the last update (for tests and benchmarks).
        self.extracted = 0
        self.reused = 0

    def update(self, source: bytes) -> FileFacts:
        """Facts of `source`, the buffer's new full text. Raises ParseTimeout like `extract`."""
        with self._lock:
            old_tree = None
            if self._tree is not None:
                edit = _edit_between(self._source, source)
                if edit is not None:
                    old_tree = edit.apply(self._tree)
            try:
                tree = parse(self.language, source, timeout_s=PARSE_TIMEOUT_S, old_tree=old_tree)
            except Exception:
                self._tree, self._source, self._pieces = None, b"", {}
                raise
            statements = _statements(tree.root_node)
            keys = [
                (
                    node.start_point.column,
                    hashlib.blake2b(source[start : node.end_byte], digest_size=16).digest(),
                )
                for start, node in statements
            ]
            pieces = {k: self._pieces[k] for k in keys if k in self._pieces}
            fresh = self._extract(
                source, tree, statements, [i for i, k in enumerate(keys) if k not in pieces]
            )
            self.extracted, self.reused = len(fresh), len(statements) - len(fresh)
            for i, piece in fresh.items():
                pieces.setdefault(keys[i], piece)
            facts = FileFacts(lines=source.count(b"\n") + 1)
            for key, (_, node) in zip(keys, statements, strict=True):
                piece = pieces[key]
                shift = node.start_point.row - piece.row
                if shift:
                    facts.definitions.extend(
                        replace(d, start_line=d.start_line + shift, end_line=d.end_line + shift)
                        for d in piece.definitions
                    )
                    facts.imports.extend(replace(b, line=b.line + shift) for b in piece.imports)
                else:
                    facts.definitions.extend(piece.definitions)
                    facts.imports.extend(piece.imports)
            self._source, self._tree, self._pieces = source, tree, pieces
            return facts

    def _extract(
        self, source: bytes, tree: ts.Tree, statements: list[tuple[int, ts.Node]], wanted: list[int]
    ) -> dict[int, _Piece]:
        """Pieces of the `wanted` statements (indexes into `statements`), from one query run.

        One run over the span from the first to the last wanted statement, not one per
        statement: a module-anchored pattern makes each run walk the top level, so per-statement
        runs would be quadratic on a first update of a long file.
        """
        if not wanted:
            return {}
        part = FileFacts()
        span = (statements[wanted[0]][0], statements[wanted[-1]][1].end_byte)
        # The byte range keeps patterns anchored at the root (Python's module-level constants)
        # working while only the span's matches come back.
        collect(self.language, source, tree.root_node, part, references=False, byte_range=span)
        rows = [node.start_point.row for _, node in statements]
        found: dict[int, tuple[list[Definition], list[ImportBinding]]] = {i: ([], []) for i in wanted}
        for d in part.definitions:
            owner = found.get(bisect.bisect_right(rows, d.start_line) - 1)
            if owner is not None:  # otherwise a reused statement inside the span: already known
                owner[0].append(d)
        for b in part.imports:
            owner = found.get(bisect.bisect_right(rows, b.line) - 1)
            if owner is not None:
                owner[1].append(b)
        return {i: _Piece(rows[i], tuple(defs), tuple(imps)) for i, (defs, imps) in found.items()}


def _statements(root: ts.Node) -> list[tuple[int, ts.Node]]:
    """Top-level statements with the byte where their leading comments start."""
    out: list[tuple[int, ts.Node]] = []
    pending: int | None = None
    for child in root.children:
        if child.type in COMMENT_TYPES:
            pending = child.start_byte if pending is None else pending
            continue
        out.append((child.start_byte if pending is None else pending, child))
        pending = None
    return out


class IncrementalTree:
    """The syntax tree of a text that changes a little between calls (a buffer, keystroke by
    keystroke): each call re-parses only the span changed since the previous one. Thread-safe; a
    returned tree is never edited afterwards (the next call edits a copy)."""

    def __init__(self, language: str) -> None:
        self.language = language
        self._source = b""
        self._tree: ts.Tree | None = None
        self._lock = threading.Lock()

    def parse(self, source: bytes) -> ts.Tree:
        with self._lock:
            old_tree = None
            if self._tree is not None:
                edit = _edit_between(self._source, source)
                if edit is None:
                    return self._tree
                old_tree = edit.apply(self._tree.copy())
            tree = parse(self.language, source, old_tree=old_tree)
            self._source, self._tree = source, tree
            return tree


def _edit_between(old: bytes, new: bytes) -> _Edit | None:
    """The single replaced span turning `old` into `new` (None when they are equal)."""
    if old == new:
        return None
    limit = min(len(old), len(new))
    start = 0
    # Compare in blocks first: a per-byte Python loop over a 400 KB buffer would cost milliseconds.
    block = 4096
    while start + block <= limit and old[start : start + block] == new[start : start + block]:
        start += block
    while start < limit and old[start] == new[start]:
        start += 1
    tail = 0
    limit -= start
    while (
        tail + block <= limit
        and old[len(old) - tail - block : len(old) - tail] == new[len(new) - tail - block : len(new) - tail]
    ):
        tail += block
    while tail < limit and old[len(old) - tail - 1] == new[len(new) - tail - 1]:
        tail += 1
    old_end, new_end = len(old) - tail, len(new) - tail
    return _Edit(start, old_end, new_end, _point(old, start), _point(old, old_end), _point(new, new_end))


def _point(source: bytes, byte: int) -> tuple[int, int]:
    row = source.count(b"\n", 0, byte)
    return row, byte - (source.rfind(b"\n", 0, byte) + 1)
