"""Languages and tree-sitter parsers: file extension -> grammar, cached per language.

Grammars come from per-language wheels (tree-sitter-python, ...), never downloaded at run time.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import tree_sitter as ts


@dataclass(frozen=True)
class LanguageInfo:
    name: str
    module: str
    function: str = "language"
    comment: str = "#"
    # Lines ending with one of these open an indented block (decides multi-line completions).
    block_openers: tuple[str, ...] = ("{",)


# Python's triple quotes: a string that may go over lines.
TRIPLE_QUOTES = ('"""', "'''")

LANGUAGES: dict[str, LanguageInfo] = {
    "python": LanguageInfo("python", "tree_sitter_python", block_openers=(":",)),
    "javascript": LanguageInfo("javascript", "tree_sitter_javascript", comment="//"),
    "typescript": LanguageInfo("typescript", "tree_sitter_typescript", "language_typescript", comment="//"),
    "tsx": LanguageInfo("tsx", "tree_sitter_typescript", "language_tsx", comment="//"),
    "go": LanguageInfo("go", "tree_sitter_go", comment="//"),
    "rust": LanguageInfo("rust", "tree_sitter_rust", comment="//"),
    "java": LanguageInfo("java", "tree_sitter_java", comment="//"),
    "c": LanguageInfo("c", "tree_sitter_c", comment="//"),
    "cpp": LanguageInfo("cpp", "tree_sitter_cpp", comment="//"),
}

EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".hxx": "cpp",
}

# LSP languageId -> our language name, for buffers whose path has no telling extension.
LANGUAGE_IDS: dict[str, str] = {
    "python": "python",
    "javascript": "javascript",
    "javascriptreact": "javascript",
    "typescript": "typescript",
    "typescriptreact": "tsx",
    "go": "go",
    "rust": "rust",
    "java": "java",
    "c": "c",
    "cpp": "cpp",
}


def language_for_path(path: str | Path) -> str | None:
    """Our language name for a file, by extension; None for unsupported files."""
    return EXTENSIONS.get(Path(path).suffix.lower())


@cache
def get_language(name: str) -> ts.Language:
    info = LANGUAGES[name]
    module = importlib.import_module(info.module)
    return ts.Language(getattr(module, info.function)())


_local = threading.local()


def get_parser(name: str) -> ts.Parser:
    """A parser for the language, one per thread (tree-sitter parsers are not thread-safe)."""
    parsers: dict[str, ts.Parser] = _local.__dict__.setdefault("parsers", {})
    parser = parsers.get(name)
    if parser is None:
        parser = parsers[name] = ts.Parser(get_language(name))
    return parser


# Bytes handed to tree-sitter per read callback (the callback form is what allows a timeout).
READ_CHUNK_BYTES = 1 << 16


class ParseTimeout(Exception):
    """tree-sitter gave up after the time limit (see `parse`)."""


def parse(
    name: str, source: bytes, timeout_s: float | None = None, old_tree: ts.Tree | None = None
) -> ts.Tree:
    """Parse `source`; with `timeout_s`, raise ParseTimeout instead of running longer.

    With `old_tree` (already `edit()`ed to match `source`), tree-sitter re-parses only what the
    edit touched.

    The limit exists for grammar pathologies: tree-sitter-python's scanner is quadratic on long
    runs of indented comment lines (2,000 lines take ~1.6 s, 8,000 lines ~13 s).
    """
    parser = get_parser(name)
    if timeout_s is None:
        # py-tree-sitter refuses an explicit None for old_tree.
        return parser.parse(source) if old_tree is None else parser.parse(source, old_tree)
    deadline = time.monotonic() + timeout_s

    def read(byte: int, _point: ts.Point) -> bytes:
        return source[byte : byte + READ_CHUNK_BYTES]

    def give_up(*_: object) -> bool:
        return time.monotonic() > deadline

    try:
        if old_tree is None:
            return parser.parse(read, progress_callback=give_up)
        return parser.parse(read, old_tree, progress_callback=give_up)
    except ValueError:  # what py-tree-sitter raises when the progress callback cancels
        parser.reset()
        raise ParseTimeout(f"{name} parse exceeded {timeout_s:.1f} s ({len(source)} bytes)") from None


def code(text: str, marker: str = "") -> Iterator[tuple[int, str]]:
    """The code of `text`: (offset, character) for each character outside string literals, and
    (offset, `marker`) where a line comment starts (the comment itself is skipped; no marker, no
    comments). A quote other than Python's triple quotes and JavaScript's backtick ends at its
    line, so an apostrophe in a comment (`# don't`) does not turn the lines after it into a string."""
    quote = ""
    i, end = 0, len(text)
    while i < end:
        if quote:
            if text[i] == "\n" and len(quote) == 1 and quote != "`":
                quote = ""
            elif text.startswith(quote, i) and (i == 0 or text[i - 1] != "\\"):
                i += len(quote)
                quote = ""
                continue
            i += 1
            continue
        if marker and text.startswith(marker, i):
            yield i, marker
            newline = text.find("\n", i)
            i = end if newline < 0 else newline
            continue
        ch = text[i]
        if ch in "\"'`":
            quote = text[i : i + 3] if text.startswith(TRIPLE_QUOTES, i) else ch
            i += len(quote)
            continue
        yield i, ch
        i += 1


def code_before_comment(line: str, marker: str) -> str:
    """`line` up to its line comment (`marker`, e.g. "#" or "//") where one starts outside a string
    literal; the whole line when there is none or no marker is given."""
    if not marker or marker not in line:
        return line
    return next((line[:i] for i, ch in code(line, marker) if ch == marker), line)
