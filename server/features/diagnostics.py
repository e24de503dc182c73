"""Syntax diagnostics published by the server itself, so "Fix this" has something to act on.

Tree-sitter ERROR and MISSING nodes become `textDocument/publishDiagnostics` (source
"infiller"), debounced per document after changes. For Python, the compiler's own message
(precise position, "'(' was never closed") replaces tree-sitter's coarse ERROR span, and a
file Python accepts gets no syntax diagnostic even where the grammar lags the language.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lsprotocol import types

from server.actions.verify import MAX_SYNTAX_ISSUES, python_syntax_error_at, syntax_issues
from server.lsp.documents import utf16_len

if TYPE_CHECKING:
    from server.lsp.documents import Document
    from server.lsp.server import InfillerServer

log = logging.getLogger(__name__)

SOURCE = "infiller"
# Wait for a pause in typing: a half-typed line is not an error worth a red squiggle yet.
DIAGNOSTICS_DELAY_S = 0.6
# Files bigger than this are parsed off the event loop (a parse of ~1 MB takes tens of ms).
PARSE_ON_LOOP_MAX_CHARS = 200_000


@dataclass(frozen=True)
class Span:
    """0-based line and code-point column range with a message."""

    start_line: int
    start_column: int
    end_line: int
    end_column: int
    message: str


def _cp_column(line_text: str, byte_column: int) -> int:
    return len(line_text.encode("utf-8")[:byte_column].decode("utf-8", errors="ignore"))


def syntax_spans(language: str, text: str) -> list[Span]:
    """Syntax errors of a buffer, positions in code points (pure: the unit tests' entry point)."""
    lines = text.split("\n")

    def line(i: int) -> str:
        return lines[i] if 0 <= i < len(lines) else ""

    if language == "python":
        compiled = python_syntax_error_at(text)
        if compiled is None:
            return []
        msg, lineno, col, end_lineno, end_col = compiled
        spans = [Span(lineno, col, end_lineno, end_col, f"SyntaxError: {msg}")]
        # Tree-sitter's MISSING nodes name exactly what is absent; Python stops at its first error.
        for issue in syntax_issues(language, text):
            if issue.missing and issue.start.line != lineno:
                c = _cp_column(line(issue.start.line), issue.start.byte_column)
                spans.append(Span(issue.start.line, c, issue.start.line, c, f"syntax error: {issue.message}"))
        return spans[:MAX_SYNTAX_ISSUES]
    out = []
    for issue in syntax_issues(language, text):
        start_col = _cp_column(line(issue.start.line), issue.start.byte_column)
        if issue.end.line == issue.start.line:
            end_line, end_col = issue.end.line, _cp_column(line(issue.end.line), issue.end.byte_column)
        else:
            # A multi-line ERROR node would paint a whole function red: mark its first line only.
            end_line, end_col = issue.start.line, len(line(issue.start.line).rstrip("\r"))
        out.append(Span(issue.start.line, start_col, end_line, end_col, f"syntax error: {issue.message}"))
    return out


def to_diagnostic(span: Span, text: str) -> types.Diagnostic:
    lines = text.split("\n")

    def pos(line: int, column: int) -> types.Position:
        if line >= len(lines):
            return types.Position(line=max(0, len(lines) - 1), character=utf16_len(lines[-1]) if lines else 0)
        return types.Position(line=line, character=utf16_len(lines[line][:column]))

    return types.Diagnostic(
        range=types.Range(
            start=pos(span.start_line, span.start_column), end=pos(span.end_line, span.end_column)
        ),
        message=span.message,
        severity=types.DiagnosticSeverity.Error,
        source=SOURCE,
        code="syntax",
    )


def syntax_diagnostics(language: str | None, text: str) -> list[types.Diagnostic]:
    if language is None:
        return []
    return [to_diagnostic(s, text) for s in syntax_spans(language, text)]


class SyntaxPublisher:
    """Debounced per-URI publishing; the newest text wins, stale results are never sent."""

    def __init__(self, server: InfillerServer, delay_s: float = DIAGNOSTICS_DELAY_S) -> None:
        self.server = server
        self.delay_s = delay_s
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._published: set[str] = set()
        self.published_count = 0

    def schedule(self, uri: str, *, now: bool = False) -> None:
        timer = self._timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
        loop = asyncio.get_running_loop()
        if now:
            self._timers[uri] = loop.call_soon(self._fire, uri)  # type: ignore[assignment]
        else:
            self._timers[uri] = loop.call_later(self.delay_s, self._fire, uri)

    def _fire(self, uri: str) -> None:
        self._timers.pop(uri, None)
        doc = self.server.documents.get(uri)
        if doc is None:
            return
        if doc.too_large:
            self.clear(uri)  # compiling megabytes would hold the interpreter for seconds
            return
        if len(doc.text) <= PARSE_ON_LOOP_MAX_CHARS:
            self._publish(doc, doc.version, syntax_diagnostics(doc.language, doc.text))
            return
        text, version, language = doc.text, doc.version, doc.language
        future = asyncio.get_running_loop().run_in_executor(None, syntax_diagnostics, language, text)
        future.add_done_callback(lambda f: self._done(uri, version, f))

    def _done(self, uri: str, version: int | None, future: asyncio.Future[list[types.Diagnostic]]) -> None:
        if future.cancelled() or future.exception() is not None:
            log.warning(
                "syntax diagnostics failed for %s: %r",
                uri,
                None if future.cancelled() else future.exception(),
            )
            return
        doc = self.server.documents.get(uri)
        if doc is not None:
            self._publish(doc, version, future.result())

    def _publish(self, doc: Document, version: int | None, diagnostics: list[types.Diagnostic]) -> None:
        if doc.version != version:
            return  # the text changed meanwhile; the newer change has its own timer
        if not diagnostics and doc.uri not in self._published:
            return  # nothing to say and nothing to clear
        if diagnostics:
            self._published.add(doc.uri)
        else:
            self._published.discard(doc.uri)
        self.published_count += 1
        self.server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=doc.uri, diagnostics=diagnostics, version=version)
        )

    def clear(self, uri: str) -> None:
        timer = self._timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
        if uri in self._published:
            self._published.discard(uri)
            self.server.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, diagnostics=[])
            )


def register(server: InfillerServer) -> None:
    publisher = SyntaxPublisher(server)
    server.syntax_publisher = publisher  # type: ignore[attr-defined]
    server.on_document_changed.append(lambda ls, doc: publisher.schedule(doc.uri))
    server.on_document_closed.append(lambda ls, uri: publisher.clear(uri))


__all__ = [
    "SOURCE",
    "Span",
    "SyntaxPublisher",
    "register",
    "syntax_diagnostics",
    "syntax_spans",
    "to_diagnostic",
]
