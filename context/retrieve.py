"""Cross-file context for a cursor: candidate chunks from several sources, fused, within a budget.

Sources (each can be switched off for ablation):
- definitions: what the names near the cursor resolve to through the current file's imports
  (for `obj.attr`, the class of `obj` where it can be inferred), in compact form;
- similar: sliding windows of other files ranked by BM25, re-ranked by identifier Jaccard;
- recent: recently edited / viewed regions of other files;
- repomap: PageRank-central definitions, a low-priority filler;
- usages: lines elsewhere that use the names the current file imports, most like the cursor's
  own line and neighbourhood first (how this codebase calls what the file imports).
Chunks are ordered for the model's prefix cache: chunks kept from the previous retrieval stay in
their order, new ones go last (nearest the cursor); an unchanged retrieval returns the same list.
"""

from __future__ import annotations

import bisect
import builtins
import hashlib
import itertools
import keyword
import logging
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter as ts

from context.budget import CHUNK_OVERHEAD_TOKENS, Candidate, Filled, fill
from context.extract import identifiers, one_line
from context.imports import (
    ImportBinding,
    Target,
    find_symbol,
    import_statements,
    python_bindings,
    resolve_chain,
)
from context.index import Index, Symbol
from context.name_counts import NameCounts, starts_a_name
from context.repomap import RepoMap
from context.syntax import get_language, language_for_path, parse

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("definitions", "similar", "recent", "repomap", "usages")
# Chosen by the cross-file ablation (bench/eval_crossfile.py, docs/context.md): similar windows and
# the repo map measured no gain with the small models while costing tokens and latency. Usage
# lines cost ~30-80 tokens and gained where a codebase repeats its own idioms (boltons: 10 of 16
# exact against 5) and lost nothing on the development packages (58 of 90 both; `infiller eval`,
# README).
DEFAULT_SOURCES: tuple[str, ...] = ("definitions", "recent", "usages")
# Keep it modest: the prompt is re-read on every cache miss and small models drown in context.
DEFAULT_BUDGET = 384

# Rank fusion: priority = weight / (RRF_K + rank). Definitions are what helps; the rest fills.
# Usage lines fill what definitions leave: under a tight budget the definition of the name about to
# be used matters more than an example of its use.
SOURCE_WEIGHTS = {"definitions": 1.0, "recent": 0.5, "similar": 0.4, "usages": 0.3, "repomap": 0.15}
# Small k: the top items of a source dominate its tail (reciprocal rank fusion, Cormack et al. use 60
# for long lists; ours are a handful of items).
RRF_K = 2.0
# A chunk chosen last time gets this multiplier: tiny score changes must not reshuffle the prompt.
STICKY_BONUS = 1.25

# Names near the cursor: lines looked at before and after it.
NEAR_LINES_BEFORE = 40
NEAR_LINES_AFTER = 8
# A name's weight decays with distance from the cursor line: w = 1 / (1 + d / DISTANCE_SCALE).
DISTANCE_SCALE = 6.0
# Lines after the cursor count less: the user is writing what comes before them.
AFTER_CURSOR_WEIGHT = 0.5
# The dotted name being typed at the cursor says most about what is needed right now.
CURSOR_CHAIN_BONUS = 4.0
# Imported names not used near the cursor may still be about to be used (the cursor sits before a use).
IMPORTED_UNUSED_WEIGHT = 0.08
# Uses elsewhere in the file counted for an imported name (beyond this it is simply "common").
MAX_COUNTED_USES = 5
# An import with no use anywhere in the buffer is pending: code is imported to be used, so its first
# use is likely the code being written (the import was just added, or the use was just deleted).
# Weighed like a name used on the line above the cursor; it is still listed as one cheap line.
PENDING_IMPORT_WEIGHT = 1.0
# A pending module import (`from . import sessions`): each of its first public members gets this
# share of the weight (the module says where to look, not which member).
PENDING_MEMBER_SHARE = 0.5
# After `raise ` / `except `, imported exception classes are the likely next name.
RAISE_CUE_RE = re.compile(r"\b(?:raise|except)\s+(?:\(?\s*)?[\w.]*$")
EXCEPTION_NAME_RE = re.compile(r"(?:Error|Exception|Warning|Exit|Abort)$")
RAISE_CUE_BOOST = 4.0
# Entries per outline chunk: more are seldom read by a small model and cost tokens.
OUTLINE_MAX_ENTRIES = 12
# A class without `__init__` (enum, NamedTuple, dataclass, attrs) is built from its class-level
# fields: the outline lists up to this many of them, as they appear in the compact form.
OUTLINE_MAX_FIELDS = 6
FIELD_LINE_RE = re.compile(r"^(\s+)[A-Za-z_]\w*\s*(?::[^=]|:$|=)")
# Names resolved by global name lookup rather than through imports are guesses: weigh them down.
GLOBAL_LOOKUP_WEIGHT = 0.3
# A name defined in more files than this is too ambiguous for a global lookup.
MAX_GLOBAL_DEFINITIONS = 3
# At most this many definition candidates are resolved per request (latency bound).
MAX_DEFINITION_CANDIDATES = 24
# Definitions scoring below this (imported, not used near the cursor) are shown as one-line
# signatures grouped per file: cheap enough to list many, which is what a cursor before a use needs.
OUTLINE_BELOW = 0.15
# Only the best few names get their full compact form; the rest join the one-line outline. Breadth
# beats depth here: a cursor before a use needs the right name more than one class's every member.
MAX_FULL_SNIPPETS = 3
# Outline chunks have no single span: this sentinel line keeps them out of span de-duplication.
OUTLINE_LINE = -1
# Members of an imported module listed because the file uses them elsewhere (`setters.NO_OP`).
MAX_MODULE_MEMBERS_USED = 6
# Buffers whose name counts are kept (the files being switched between; each holds its text).
COUNTED_BUFFERS = 4
# Members listed when the cursor is right after `module.` or `obj.` with nothing typed yet.
MAX_MEMBERS_AT_DOT = 6

# Similar windows: query = identifiers of the lines before the cursor.
SIMILAR_QUERY_LINES = 12
# BM25 candidates fetched, then re-ranked by Jaccard; windows kept.
SIMILAR_FETCH = 24
SIMILAR_KEEP = 4
# Windows sharing fewer identifiers than this with the query are noise.
SIMILAR_MIN_JACCARD = 0.08

RECENT_KEEP = 4
REPOMAP_KEEP = 3

# Usage lines: a definition says what a name takes; a use shows what this codebase passes it
# (`_MISSING = make_sentinel(var_name='_MISSING')` in nine modules of boltons). One line each,
# grouped per file. Imported names looked up per request (most used around the cursor first):
USAGE_NAMES = 8
# Windows fetched per name (those sharing the cursor's rarest names first), lines kept in all.
USAGE_FETCH = 12
USAGE_KEEP = 6
# The lines around the cursor whose names rank the uses.
USAGE_CONTEXT_BEFORE = 6
USAGE_CONTEXT_AFTER = 3
# A longer line is a data table or a message, not a use worth its tokens.
USAGE_MAX_CHARS = 160
# The current file's own uses count only beyond the in-file window's reach (1,536 tokens are
# roughly 150 lines of Python above the cursor; the suffix window at most 12 lines below).
USAGE_NEAR_ABOVE = 160
USAGE_NEAR_BELOW = 24
# Tokens just before the name that equal the end of the cursor's line (`default=`, `X = `), counted
# up to this many: the strongest sign that a use is the one being written.
USAGE_MAX_LEAD = 4
# A use must share this much (lead share + share of its names found around the cursor): one
# token of the lead does (`X = make_sentinel(...)` for `Y = `).
USAGE_MIN_SCORE = 0.2
# The same line in several places is a convention; each repeat adds this, up to USAGE_MAX_REPEATS.
USAGE_REPEAT_BONUS = 0.1
USAGE_MAX_REPEATS = 3
# Other files whose lines are kept between requests (those the uses were found in).
MEMO_FILES = 64
USAGE_TOKEN_RE = re.compile(r"\w+|[^\w\s]")

IDENT_CHAIN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
CURSOR_CHAIN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\.?)$")
# `name = Cls(...)` / `name: Cls = ...` / `name: Optional[Cls]` (parameters included).
ASSIGN_CALL_RE = re.compile(
    r"^\s*([A-Za-z_]\w*)\s*(?::\s*[\w.\[\], ]+)?=\s*(?:await\s+)?([A-Za-z_][\w.]*)\s*\("
)
ANNOTATION_RE = re.compile(r"\b([A-Za-z_]\w*)\s*:\s*(?:Optional\[)?([A-Za-z_][\w.]*)")
# Names a Python buffer binds itself: no cross-file lookup for those.
LOCAL_BINDING_RE = re.compile(
    r"(?:\b(?:def|class|as|for|global|nonlocal)\s+([A-Za-z_]\w*))|(?:^\s*([A-Za-z_]\w*)\s*(?::[^=\n]*)?=[^=])",
    re.MULTILINE,
)
# The member named after `module.` in the buffer (`setters.NO_OP`): see _attributes_used.
ATTRIBUTE_RE = re.compile(r"[A-Za-z_]\w*")
CLASS_LINE_RE = re.compile(r"^(\s*)class\s+\w+\s*(?:\(([^)]*)\))?\s*:")

PYTHON_IMPORT_QUERY = "(import_statement) @import (import_from_statement) @import"


@dataclass(frozen=True)
class Chunk:
    """A piece of another file shown to the model before the current file."""

    path: str  # posix, relative to the workspace root
    text: str  # always ends with a newline
    source: str  # one of SOURCES
    score: float  # fused priority (higher = more important)
    tokens: int  # count_tokens(text)
    start_line: int  # 0-based, inclusive; OUTLINE_LINE for an outline, which has no one span
    end_line: int  # 0-based, inclusive

    @property
    def lines(self) -> list[int] | None:
        return _span(self.start_line, self.end_line)


def _span(start_line: int, end_line: int) -> list[int] | None:
    """1-based inclusive line span for reports; None for an outline of several definitions."""
    return None if start_line < 0 else [start_line + 1, end_line + 1]


@dataclass
class RetrievalResult:
    chunks: list[Chunk]
    elapsed_ms: float
    candidates: int  # considered before the budget
    budget: int = 0
    used_tokens: int = 0  # sum(tokens + per-chunk header overhead) <= budget
    overhead_tokens: int = CHUNK_OVERHEAD_TOKENS  # minimum charged per chunk
    reused: bool = False  # inputs unchanged: the previous list was returned as is
    names: list[str] = field(default_factory=list)  # names near the cursor, best first
    source_ms: dict[str, float] = field(default_factory=dict)
    dropped: list[dict[str, Any]] = field(default_factory=list)  # candidates that did not fit

    def as_json(self) -> dict[str, Any]:
        return {
            "elapsed_ms": round(self.elapsed_ms, 3),
            "candidates": self.candidates,
            "budget": self.budget,
            "used_tokens": self.used_tokens,
            "reused": self.reused,
            "names": self.names,
            "source_ms": {k: round(v, 3) for k, v in self.source_ms.items()},
            "chunks": [
                {
                    "path": c.path,
                    "source": c.source,
                    "score": round(c.score, 5),
                    "tokens": c.tokens,
                    "lines": c.lines,
                    "text": c.text,
                }
                for c in self.chunks
            ],
            "dropped": self.dropped,
        }


@dataclass(frozen=True)
class _Scored:
    """A source's candidate before fusion."""

    path: str
    text: str
    score: float
    start_line: int
    end_line: int


class Retriever:
    """Retrieval for one index. Thread-safe: one retrieval at a time (they are milliseconds)."""

    def __init__(
        self, index: Index, sources: Collection[str] = DEFAULT_SOURCES, *, use_jedi: bool = False
    ) -> None:
        unknown = set(sources) - set(SOURCES)
        if unknown:
            raise ValueError(f"unknown retrieval sources {sorted(unknown)}; known: {SOURCES}")
        self.index = index
        self.sources = tuple(s for s in SOURCES if s in sources)
        self.use_jedi = use_jedi
        self.repomap = RepoMap(index)
        self._lock = threading.Lock()
        self._last_key: tuple[Any, ...] | None = None
        self._last: RetrievalResult | None = None
        self._order: list[tuple[str, int, int]] = []
        self._token_cache: dict[str, int] = {}
        self._token_fn: Callable[[str], int] | None = None
        self._imports_cache: tuple[str, list[ImportBinding]] | None = None
        self._memo_stamp: tuple[str, int, str] | None = None
        self._memo_resolve: dict[tuple[str, tuple[str, ...]], tuple[Target, int] | None] = {}
        self._memo_symbols: dict[tuple[str, str, str | None], list[Symbol]] = {}
        self._memo_top: dict[str, set[str]] = {}
        self._memo_outline: dict[tuple[Symbol, ...], str] = {}
        self._memo_lines: dict[str, list[str]] = {}
        self._memo_bases: tuple[int, list[str]] | None = None
        # Uses of the imported names per buffer, carried from keystroke to keystroke.
        self._name_counts: dict[str, NameCounts] = {}

    # -----------------------------------------------------------------------------------------

    def retrieve(
        self,
        path: Path,
        text: str,
        line: int,
        column: int,
        budget: int,
        count_tokens: Callable[[str], int],
    ) -> RetrievalResult:
        """Context chunks for a cursor (0-based line, code-point column) within `budget` tokens."""
        start = time.perf_counter()
        with self._lock:
            rel = self.index.rel(path) or Path(path).name
            language = language_for_path(rel)
            lines = text.split("\n")
            line = max(0, min(line, len(lines) - 1))
            bindings = self._buffer_bindings(text, language)
            self._refresh_memos(rel, self._imports_cache[0] if self._imports_cache and bindings else "")
            near = _near_names(lines, line, column, bindings)
            key = (
                rel,
                budget,
                self.sources,
                tuple(sorted(near.weights)),
                near.cursor_chain,
                tuple(bindings),
                self.index.generation_excluding(rel),
                self.index.recent.regions(exclude=rel)[:RECENT_KEEP] if "recent" in self.sources else (),
                line if "similar" in self.sources else None,
                (line, near.lead) if "usages" in self.sources else None,
            )
            if key == self._last_key and self._last is not None:
                return _replace_timing(self._last, start, reused=True)
            counter = self._counter(count_tokens)
            per_source: dict[str, list[_Scored]] = {}
            source_ms: dict[str, float] = {}
            for source in self.sources:
                t0 = time.perf_counter()
                if source == "definitions":
                    per_source[source] = self._definitions(rel, language, text, lines, line, bindings, near)
                elif source == "similar":
                    per_source[source] = self._similar(rel, lines, line, column)
                elif source == "recent":
                    per_source[source] = self._recent(rel)
                elif source == "repomap":
                    per_source[source] = self._repomap(rel, bindings)
                elif source == "usages":
                    per_source[source] = self._usages(rel, text, lines, line, bindings, near)
                source_ms[source] = (time.perf_counter() - t0) * 1000
            candidates = self._fuse(per_source)
            filled = fill(candidates, budget, counter)
            chunks = self._order_chunks(filled)
            chosen = {f.candidate.key for f in filled}
            result = RetrievalResult(
                chunks=chunks,
                elapsed_ms=(time.perf_counter() - start) * 1000,
                candidates=len(candidates),
                budget=budget,
                used_tokens=sum(f.tokens + f.overhead for f in filled),
                names=near.ranked(),
                source_ms=source_ms,
                dropped=[
                    {"path": c.path, "source": c.source, "lines": _span(c.start_line, c.end_line)}
                    for c in candidates
                    if c.key not in chosen
                ],
            )
            self._last_key, self._last = key, result
            return result

    def reset(self) -> None:
        """Forget the previous result (the next retrieval orders chunks from scratch)."""
        with self._lock:
            self._last_key, self._last, self._order = None, None, []

    # -----------------------------------------------------------------------------------------
    # Sources

    def _definitions(
        self,
        rel: str,
        language: str | None,
        text: str,
        lines: list[str],
        line: int,
        bindings: list[ImportBinding],
        near: _Near,
    ) -> list[_Scored]:
        scores: dict[tuple[str, str, str | None], float] = defaultdict(float)
        python = language == "python"
        imported = {b.local for b in bindings if b.local}
        types = _local_types(lines, line) if python else {}
        local_names = self._local_names(rel, lines, line) if python else set()

        def may_live_elsewhere(chain: str) -> bool:
            head = chain.split(".")[0]
            if "." in chain or head in imported or chain == near.cursor_chain.rstrip("."):
                return True  # the cursor's own chain: a local's type may still be inferred
            return head not in _BUILTINS and head not in local_names

        # Locals and builtins never resolve to another file: they must not crowd the imported
        # names out of the candidates looked up.
        chains = [kv for kv in near.top(len(near.weights)) if may_live_elsewhere(kv[0])]
        looked_up: set[str] = set()
        for chain, weight in chains[:MAX_DEFINITION_CANDIDATES]:
            parts = chain.split(".")
            looked_up.add(parts[0])
            at_dot = near.cursor_chain.endswith(".") and chain == near.cursor_chain.rstrip(".")
            if not python:
                for part in parts:
                    self._resolve_global(rel, part, weight / len(parts), scores, language)
            elif parts[0] in imported:
                self._resolve_python(rel, bindings, parts, weight, scores, at_dot)
            elif parts[0] == "self":
                if len(parts) > 1:
                    self._resolve_self(rel, bindings, lines, line, parts[1], weight, scores)
            elif len(parts) > 1 or at_dot:
                inferred = types.get(parts[0])
                if inferred and inferred.split(".")[0] in imported:
                    attr = parts[1] if len(parts) > 1 else None
                    self._resolve_python(rel, bindings, inferred.split("."), weight, scores, False, attr)
                elif self.use_jedi and at_dot:
                    self._resolve_jedi(rel, text, lines, line, parts, weight, scores)
            elif parts[0] not in _BUILTINS and parts[0] not in local_names:
                self._resolve_global(rel, parts[0], weight, scores, language)
        near_keys = set(scores)
        unused: dict[tuple[str, str, str | None], float] = defaultdict(float)
        if python:
            raising = RAISE_CUE_RE.search(near.line_prefix) is not None
            counts = self._counts_of(rel, text)
            pending = _pending_imports(rel, text, bindings, counts)
            for binding in bindings:
                local = binding.local
                if local and local not in looked_up and local != "*":
                    if local in pending:
                        weight = PENDING_IMPORT_WEIGHT
                    else:
                        # A name used often elsewhere in the file is likely to be used here too.
                        uses = min(counts.occurrences(local) - 1, MAX_COUNTED_USES)
                        weight = IMPORTED_UNUSED_WEIGHT * (1 + uses)
                    if raising and EXCEPTION_NAME_RE.search(local):
                        weight *= RAISE_CUE_BOOST
                    self._resolve_python(rel, bindings, [local], weight, unused, False)
                    self._module_members_used(rel, bindings, local, text, unused, local in pending)
            for key, score in unused.items():
                scores[key] += score
        unused_keys = set(unused) - near_keys
        out: list[_Scored] = []
        outline: dict[str, list[tuple[Symbol, float]]] = defaultdict(list)
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1], kv[0][2] or ""))
        for (path, name, parent), score in ranked:
            if path == rel:
                continue
            for symbol in self._symbols(path, name, parent):
                # Names only imported (not used near the cursor) are listed, never expanded.
                if (
                    (path, name, parent) not in unused_keys
                    and score >= OUTLINE_BELOW
                    and len(out) < MAX_FULL_SNIPPETS
                ):
                    out.append(_Scored(path, symbol.snippet, score, symbol.start_line, symbol.end_line))
                else:
                    outline[path].append((symbol, score))
        taken = {(s.path, s.start_line) for s in out}
        for path, entries in outline.items():
            # Imported but not used near the cursor: one line each, grouped per file (one header).
            # Best first (source order among equals): a truncated outline loses the least likely.
            entries = sorted(
                (e for e in entries if (path, e[0].start_line) not in taken),
                key=lambda e: (-e[1], e[0].start_line),
            )[:OUTLINE_MAX_ENTRIES]
            if entries:
                text = self._outline(tuple(symbol for symbol, _ in entries))
                # Its best entry, not the sum: a long list of maybe-used names must not outrank
                # the one name the cursor's neighbourhood actually uses.
                out.append(
                    _Scored(path, text, max(score for _, score in entries), OUTLINE_LINE, OUTLINE_LINE)
                )
        return _best_first(out)

    def _outline(self, symbols: tuple[Symbol, ...]) -> str:
        """One line per symbol, methods indented under their class, classes with their constructor.

        Memoised until another file changes (outlines are of other files): a cursor's outlines
        mostly repeat the previous cursor's, and each costs an index query per class.
        """
        text = self._memo_outline.get(symbols)
        if text is None:
            text = self._memo_outline[symbols] = self._build_outline(symbols)
        return text

    def _build_outline(self, symbols: tuple[Symbol, ...]) -> str:
        lines: list[str] = []
        owner: str | None = None
        methods_of = {s.parent for s in symbols if s.kind == "method"}
        for symbol in symbols:
            head = one_line(symbol.signature)
            if symbol.kind == "method" and symbol.parent:
                if owner != symbol.parent:
                    lines.append(f"class {symbol.parent}:")
                    owner = symbol.parent
                lines.append(f"    {head} ...")
            elif symbol.kind == "class":
                lines.append(head)
                owner = symbol.name
                init = self.index.symbols(symbol.path, name="__init__", parent=symbol.name)
                if init:
                    lines.append(f"    {one_line(init[0].signature)} ...")
                elif fields := _class_fields(symbol.snippet):
                    lines.extend(f"    {one_line(field.strip())}" for field in fields)
                elif symbol.name not in methods_of:
                    lines[-1] += " ..."  # nothing to list under it: one line, not two
            else:
                owner = None
                lines.append(head + (" ..." if head.endswith(":") else ""))
        return "\n".join(lines) + "\n"

    def _resolve_python(
        self,
        rel: str,
        bindings: list[ImportBinding],
        parts: list[str],
        weight: float,
        scores: dict[tuple[str, str, str | None], float],
        at_dot: bool,
        attr: str | None = None,
    ) -> None:
        resolved = self._resolve(rel, bindings, parts)
        if resolved is None:
            return
        target, consumed = resolved
        if target.symbol is None:
            if at_dot:  # `module.` with nothing typed: its first public members
                for symbol in self._module_members(target.path):
                    scores[(target.path, symbol.name, None)] += weight / MAX_MEMBERS_AT_DOT
            return
        scores[(target.path, target.symbol, None)] += weight
        # `Cls.method` or `obj.method` with obj of class Cls: the method itself, most specific.
        member = attr if attr is not None else (parts[consumed] if consumed < len(parts) else None)
        if member:
            scores[(target.path, member, target.symbol)] += weight * 1.5

    def _module_members_used(
        self,
        rel: str,
        bindings: list[ImportBinding],
        local: str,
        text: str,
        scores: dict[tuple[str, str, str | None], float],
        pending: bool = False,
    ) -> None:
        """An imported module (`from . import setters`): the members this file uses from it.

        `setters.NO_OP` used a hundred lines up is the best guess for what follows `setters.`
        here, and those uses are often outside the prefix window. A module not used yet at all
        lists its first public members instead.
        """
        resolved = self._resolve(rel, bindings, [local])
        if resolved is None or resolved[0].symbol is not None:
            return
        if pending:
            for symbol in self._module_members(resolved[0].path):
                scores[(resolved[0].path, symbol.name, None)] += PENDING_IMPORT_WEIGHT * PENDING_MEMBER_SHARE
            return
        uses = Counter(_attributes_used(text, local))
        for member, count in uses.most_common(MAX_MODULE_MEMBERS_USED):
            weight = IMPORTED_UNUSED_WEIGHT * (1 + min(count, MAX_COUNTED_USES))
            scores[(resolved[0].path, member, None)] += weight

    def _resolve_self(
        self,
        rel: str,
        bindings: list[ImportBinding],
        lines: list[str],
        line: int,
        attr: str,
        weight: float,
        scores: dict[tuple[str, str, str | None], float],
    ) -> None:
        """`self.attr` inside a class whose bases are imported: the base's member `attr`."""
        for base in self._bases(lines, line):
            resolved = self._resolve(rel, bindings, base.split("."))
            if resolved is not None and resolved[0].symbol is not None:
                scores[(resolved[0].path, attr, resolved[0].symbol)] += weight

    def _resolve_global(
        self,
        rel: str,
        name: str,
        weight: float,
        scores: dict[tuple[str, str, str | None], float],
        language: str | None,
    ) -> None:
        """Name lookup across the workspace, for languages (or names) import resolution cannot reach."""
        if len(name) < 3:
            return
        definitions = [
            d for d in self.index.definitions_named(name, MAX_GLOBAL_DEFINITIONS + 2) if d.path != rel
        ]
        if not definitions or len({d.path for d in definitions}) > MAX_GLOBAL_DEFINITIONS:
            return
        if language == "python":
            # Bare Python names reach other files only through imports; a global hit on a method
            # or a nested name is a coincidence of spelling.
            definitions = [d for d in definitions if d.top_level]
        imported = set(self.index.resolved_imports(rel)) if language != "python" else set()
        for d in definitions:
            factor = 1.0 if d.path in imported else GLOBAL_LOOKUP_WEIGHT
            scores[(d.path, d.name, d.parent)] += weight * factor

    def _resolve_jedi(
        self,
        rel: str,
        text: str,
        lines: list[str],
        line: int,
        parts: list[str],
        weight: float,
        scores: dict[tuple[str, str, str | None], float],
    ) -> None:
        from context.imports import jedi_infer_definitions

        column = lines[line].rfind(parts[0])
        if column < 0:
            return
        for path, def_line in jedi_infer_definitions(
            self.index.root, self.index.root / rel, text, line, column + 1
        ):
            target_rel = self.index.rel(path)
            if target_rel is None or target_rel == rel:
                continue
            for symbol in self.index.symbols(target_rel):
                if symbol.kind == "class" and symbol.start_line <= def_line <= symbol.end_line:
                    scores[(target_rel, symbol.name, None)] += weight

    def _similar(self, rel: str, lines: list[str], line: int, column: int) -> list[_Scored]:
        query_lines = [*lines[max(0, line - SIMILAR_QUERY_LINES) : line], lines[line][:column]]
        query = identifiers("\n".join(query_lines))
        if not query:
            return []
        out = []
        for window in self.index.search_windows(query, SIMILAR_FETCH, exclude=rel):
            idents = set(window.idents.split())
            jaccard = len(query & idents) / len(query | idents)
            if jaccard < SIMILAR_MIN_JACCARD:
                continue
            text = self._lines(window.path, window.start_line, window.end_line)
            if text:
                out.append(_Scored(window.path, text, jaccard, window.start_line, window.end_line))
        return _best_first(out)[:SIMILAR_KEEP]

    def _recent(self, rel: str) -> list[_Scored]:
        out = []
        for region in self.index.recent.regions(exclude=rel)[:RECENT_KEEP]:
            text = self._lines(region.path, region.start_line, region.end_line)
            if text:
                end = region.start_line + text.count("\n") - 1
                out.append(_Scored(region.path, text, region.score, region.start_line, end))
        return out

    def _repomap(self, rel: str, bindings: list[ImportBinding]) -> list[_Scored]:
        focus = set()
        for binding in bindings:
            if binding.local and binding.local != "*":
                resolved = self._resolve(rel, bindings, [binding.local])
                if resolved is not None:
                    focus.add(resolved[0].path)
        return [
            _Scored(e.path, e.text, e.score, e.start_line, e.end_line)
            for e in self.repomap.entries(exclude=rel, focus=focus)[:REPOMAP_KEEP]
        ]

    def _usages(
        self,
        rel: str,
        text: str,
        lines: list[str],
        line: int,
        bindings: list[ImportBinding],
        near: _Near,
    ) -> list[_Scored]:
        counts = self._counts_of(rel, text)
        names = {
            b.local: near.weights.get(b.local, 0.0) + min(counts.occurrences(b.local), MAX_COUNTED_USES)
            for b in bindings
            if b.local and b.local != "*" and self._resolve(rel, bindings, [b.local]) is not None
        }
        if not names:
            return []
        chosen = sorted(names, key=lambda n: (-names[n], n))[:USAGE_NAMES]
        around = lines[max(0, line - USAGE_CONTEXT_BEFORE) : line + 1 + USAGE_CONTEXT_AFTER]
        context = identifiers("\n".join(around))
        cue = _UsageCue(USAGE_TOKEN_RE.findall(near.lead), context)
        found = _UseTally()

        def consider(path: str, number: int, raw: str, name: str) -> None:
            use = raw.strip()
            if not use or len(use) > USAGE_MAX_CHARS or use.startswith(("#", "import ", "from ")):
                return
            at = _use_of(use, name)
            if at < 0 or use[:at].rstrip().endswith(("def", "class")):
                return
            score = cue.score(use, at, name)
            if score >= USAGE_MIN_SCORE:
                found.add(use, score, path, number)

        for name, windows in self.index.windows_using(chosen, context, USAGE_FETCH, exclude=rel).items():
            seen: set[tuple[str, int]] = set()  # windows overlap by half
            for window in windows:
                other = self._file_lines(window.path)
                for number in range(window.start_line, min(window.end_line + 1, len(other))):
                    if name in other[number] and (window.path, number) not in seen:
                        seen.add((window.path, number))
                        consider(window.path, number, other[number], name)
        # The current file's own uses beyond the window's reach: found with str.find, not a loop
        # over every line (a keystroke in a 9,000-line file).
        for first, last in ((0, line - USAGE_NEAR_ABOVE), (line + USAGE_NEAR_BELOW + 1, len(lines))):
            if first >= last:
                continue
            region = "\n".join(lines[first:last])
            starts = list(itertools.accumulate((len(x) + 1 for x in lines[first:last]), initial=0))
            for name in chosen:
                at = region.find(name)
                while at >= 0:
                    number = bisect.bisect_right(starts, at) - 1
                    consider(rel, first + number, lines[first + number], name)
                    at = region.find(name, starts[number + 1]) if number + 1 < len(starts) else -1
        per_path: dict[str, list[tuple[int, str, float]]] = defaultdict(list)
        for use, score, (path, number) in found.best(USAGE_KEEP):
            per_path[path].append((number, use, score))
        return _best_first(
            _Scored(
                path,
                "".join(use + "\n" for _, use, _ in sorted(uses)),
                max(u[2] for u in uses),
                OUTLINE_LINE,
                OUTLINE_LINE,
            )
            for path, uses in per_path.items()
        )

    # -----------------------------------------------------------------------------------------
    # Fusion and ordering

    def _fuse(self, per_source: dict[str, list[_Scored]]) -> list[Candidate]:
        previous = set(self._order)
        fused: dict[tuple[str, int, int], Candidate] = {}
        for source, items in per_source.items():
            weight = SOURCE_WEIGHTS[source]
            for rank, item in enumerate(items):
                key = (item.path, item.start_line, item.end_line)
                priority = weight / (RRF_K + rank)
                if key in previous:
                    priority *= STICKY_BONUS
                old = fused.get(key)
                if old is None or old.priority < priority:
                    fused[key] = Candidate(
                        key,
                        item.path,
                        item.text,
                        source,
                        item.score,
                        priority,
                        item.start_line,
                        item.end_line,
                    )
        # Overlapping spans of one file: keep the higher-priority one (a method inside its class).
        kept: list[Candidate] = []
        spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for cand in sorted(fused.values(), key=lambda c: (-c.priority, c.key)):
            if cand.start_line >= 0 and any(
                s <= cand.end_line and cand.start_line <= e for s, e in spans[cand.path]
            ):
                continue
            spans[cand.path].append((cand.start_line, cand.end_line))
            kept.append(cand)
        return kept

    def _order_chunks(self, filled: list[Filled]) -> list[Chunk]:
        """Previous chunks keep their relative order; new ones follow, lowest priority first.

        The model's prefix cache survives as long as the leading chunks are unchanged, and the
        most important chunk ends up nearest the cursor.
        """
        by_key = {f.candidate.key: f for f in filled}
        kept = [k for k in self._order if k in by_key]
        new = sorted(
            (f for f in filled if f.candidate.key not in set(kept)),
            key=lambda f: (f.candidate.priority, f.candidate.path, f.candidate.start_line),
        )
        order = kept + [f.candidate.key for f in new]
        self._order = order
        return [
            Chunk(
                path=f.candidate.path,
                text=f.text,
                source=f.candidate.source,
                score=f.candidate.priority,
                tokens=f.tokens,
                start_line=f.candidate.start_line,
                end_line=f.candidate.start_line + f.text.count("\n") - 1
                if f.truncated
                else f.candidate.end_line,
            )
            for f in (by_key[k] for k in order)
        ]

    # -----------------------------------------------------------------------------------------
    # Helpers

    def _counter(self, count_tokens: Callable[[str], int]) -> Callable[[str], int]:
        """count_tokens memoised: chunk texts repeat across keystrokes."""
        if count_tokens is not self._token_fn:
            self._token_fn, self._token_cache = count_tokens, {}
        cache = self._token_cache

        def counted(text: str) -> int:
            value = cache.get(text)
            if value is None:
                if len(cache) > 4096:
                    cache.clear()
                value = cache[text] = count_tokens(text)
            return value

        return counted

    def _buffer_bindings(self, text: str, language: str | None) -> list[ImportBinding]:
        """Import bindings of the buffer being edited (parsed here: it may be newer than the index)."""
        if language != "python":
            return []
        region = _import_region(text)
        digest = hashlib.blake2b(region.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        if self._imports_cache is not None and self._imports_cache[0] == digest:
            return self._imports_cache[1]
        tree = parse("python", region.encode("utf-8", "surrogatepass"))
        query = _import_query()
        out: list[ImportBinding] = []
        for _, nodes in sorted(ts.QueryCursor(query).captures(tree.root_node).items()):
            for node in sorted(nodes, key=lambda n: n.start_byte):
                out.extend(python_bindings(node))
        out.sort(key=lambda b: (b.line, b.local or ""))
        self._imports_cache = (digest, out)
        return out

    def _resolve(
        self, rel: str, bindings: list[ImportBinding], parts: Sequence[str]
    ) -> tuple[Target, int] | None:
        """resolve_chain, memoised until another file changes (typing here changes nothing there)."""
        key = (rel, tuple(parts))
        if key not in self._memo_resolve:
            self._memo_resolve[key] = resolve_chain(self.index, rel, bindings, parts)
        return self._memo_resolve[key]

    def _bases(self, lines: list[str], line: int) -> list[str]:
        if self._memo_bases is None or self._memo_bases[0] != line:
            self._memo_bases = (line, _enclosing_bases(lines, line))
        return self._memo_bases[1]

    def _local_names(self, rel: str, lines: list[str], line: int) -> set[str]:
        """Names the current buffer binds: its indexed top-level names plus bindings near the cursor."""
        top = self._memo_top.get(rel)
        if top is None:
            top = self._memo_top[rel] = {s.name for s in self.index.symbols(rel) if s.top_level}
        first = max(0, line - NEAR_LINES_BEFORE * 3)
        window = "\n".join(lines[first : line + NEAR_LINES_AFTER + 1])
        return top | {a or b for a, b in LOCAL_BINDING_RE.findall(window)}

    def _refresh_memos(self, rel: str, bindings_digest: str) -> None:
        """Drop memoised lookups when another file was re-indexed or the buffer's imports changed."""
        stamp = (rel, self.index.generation_excluding(rel), bindings_digest)
        if stamp != self._memo_stamp:
            self._memo_stamp = stamp
            self._memo_resolve, self._memo_symbols, self._memo_top = {}, {}, {}
            self._memo_outline, self._memo_lines = {}, {}
        self._memo_bases = None

    def _counts_of(self, rel: str, text: str) -> NameCounts:
        """The name counts of buffer `rel`, brought up to date with `text`."""
        counts = self._name_counts.pop(rel, None) or NameCounts()
        counts.update(text)
        self._name_counts[rel] = counts  # most recently used last
        while len(self._name_counts) > COUNTED_BUFFERS:
            del self._name_counts[next(iter(self._name_counts))]
        return counts

    def _symbols(self, path: str, name: str, parent: str | None) -> list[Symbol]:
        key = (path, name, parent)
        cached = self._memo_symbols.get(key)
        if cached is None:
            cached = self._memo_symbols[key] = self._lookup_symbols(path, name, parent)
        return cached

    def _lookup_symbols(self, path: str, name: str, parent: str | None) -> list[Symbol]:
        symbols = self.index.symbols(path, name=name, parent=parent)
        if parent is None:
            symbols = [s for s in symbols if s.top_level] or symbols[:1]
        return symbols[:1]

    def _module_members(self, path: str) -> list[Symbol]:
        members = [s for s in self.index.symbols(path) if s.top_level and not s.name.startswith("_")]
        return members[:MAX_MEMBERS_AT_DOT]

    def _file_lines(self, path: str) -> list[str]:
        """Another file's lines, memoised until another file changes (uses are read from a few)."""
        lines = self._memo_lines.get(path)
        if lines is None:
            if len(self._memo_lines) >= MEMO_FILES:
                self._memo_lines.clear()
            lines = self._memo_lines[path] = (self.index.read_text(path) or "").split("\n")
        return lines

    def _lines(self, path: str, start: int, end: int) -> str:
        """Lines of another file (similar windows, recent regions: never the buffer's own file,
        whose memo would go stale as the user types)."""
        piece = "\n".join(self._file_lines(path)[start : end + 1]).rstrip()
        return piece + "\n" if piece else ""


# ---------------------------------------------------------------------------------------------


@dataclass
class _Near:
    weights: dict[str, float]
    cursor_chain: str
    line_prefix: str  # the cursor line up to the cursor

    def top(self, limit: int) -> list[tuple[str, float]]:
        return sorted(self.weights.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]

    def ranked(self) -> list[str]:
        return [name for name, _ in self.top(MAX_DEFINITION_CANDIDATES)]

    @property
    def lead(self) -> str:
        """The cursor line up to the name being typed: `X = make_se` looks for what `X = ` does,
        and usage lines do not change with every letter of a name."""
        return self.line_prefix[: len(self.line_prefix) - len(self.cursor_chain)]


def _near_names(lines: list[str], line: int, column: int, bindings: Sequence[ImportBinding]) -> _Near:
    """Dotted names around the cursor, weighted by closeness; import lines themselves excluded."""
    import_lines = {b.line for b in bindings}
    weights: dict[str, float] = defaultdict(float)
    first = max(0, line - NEAR_LINES_BEFORE)
    last = min(len(lines) - 1, line + NEAR_LINES_AFTER)
    prose = _docstring_lines(lines, first, last)
    for number in range(first, last + 1):
        if number in import_lines or number in prose:
            continue
        text = lines[number]
        if number == line:
            text = text[:column] + " " + text[column:]
        stripped = text.lstrip()
        if stripped.startswith(("#", "//", "import ", "from ")):
            continue
        distance = abs(number - line)
        weight = 1.0 / (1.0 + distance / DISTANCE_SCALE)
        if number > line:
            weight *= AFTER_CURSOR_WEIGHT
        for found in IDENT_CHAIN_RE.finditer(_strip_strings(text)):
            weights[found.group(0)] += weight
    cursor = lines[line][:column] if line < len(lines) else ""
    at_cursor = CURSOR_CHAIN_RE.search(cursor)
    cursor_chain = at_cursor.group(1) if at_cursor else ""
    if cursor_chain:
        weights[cursor_chain.rstrip(".")] += CURSOR_CHAIN_BONUS
    for word in _KEYWORDS:
        weights.pop(word, None)
    return _Near(dict(weights), cursor_chain, cursor)


class _UseTally:
    """Uses found, by stripped line: the best-scoring place of each and every place it was seen.

    A line holding two of the chosen names is considered once per name: counting places, not
    sightings, keeps that from passing for a repeat (a convention seen in several places)."""

    def __init__(self) -> None:
        self._best: dict[str, tuple[float, str, int]] = {}  # use -> score, path, line
        self._places: dict[str, set[tuple[str, int]]] = defaultdict(set)

    def add(self, use: str, score: float, path: str, number: int) -> None:
        self._places[use].add((path, number))
        old = self._best.get(use)
        if old is None or (score, path, number) > old:
            self._best[use] = (score, path, number)

    def score(self, use: str) -> float:
        """The best place's score plus the bonus for the other places the line was seen in."""
        repeats = len(self._places[use]) - 1
        return self._best[use][0] + USAGE_REPEAT_BONUS * min(repeats, USAGE_MAX_REPEATS)

    def best(self, keep: int) -> list[tuple[str, float, tuple[str, int]]]:
        """The `keep` best uses, highest score first: (use, score, (path, line))."""
        scored = sorted(((self.score(u), u) for u in self._best), key=lambda su: (-su[0], su[1]))
        return [(use, score, self._best[use][1:]) for score, use in scored[:keep]]


@dataclass(frozen=True)
class _UsageCue:
    """What a use of an imported name is compared with: the cursor line's tokens and nearby names."""

    lead: list[str]  # tokens of the cursor line up to the cursor
    context: set[str]  # identifiers of the lines around the cursor

    def score(self, use: str, at: int, name: str) -> float:
        """Share of the cursor line's last tokens found just before the name, plus the share of
        the use's other names found around the cursor (0..2)."""
        before = USAGE_TOKEN_RE.findall(use[:at])
        matched = 0
        while (
            matched < min(USAGE_MAX_LEAD, len(before), len(self.lead))
            and before[-1 - matched] == self.lead[-1 - matched]
        ):
            matched += 1
        names = identifiers(use) - {name}
        shared = len(names & self.context) / len(names) if names else 0.0
        return matched / USAGE_MAX_LEAD + shared


def _use_of(line: str, name: str) -> int:
    """Offset of the first use of `name` in `line` as a name of its own (not `x.name`, not a word
    of a string such as `__all__ = ["name"]`), or -1."""
    start = 0
    while (at := line.find(name, start)) >= 0:
        end = at + len(name)
        if (at == 0 or not (line[at - 1].isalnum() or line[at - 1] in "_.\"'")) and (
            end == len(line) or not (line[end].isalnum() or line[end] == "_")
        ):
            return at
        start = end
    return -1


def _class_fields(snippet: str) -> list[str]:
    """The class-level field lines of a class's compact form (`RED = 1`, `name: str = ""`)."""
    body = [text for text in snippet.split("\n")[1:] if text.strip()]
    if not body:
        return []
    indent = body[0][: len(body[0]) - len(body[0].lstrip())]  # the class body's, not a method's
    fields: list[str] = []
    for text in body:
        found = FIELD_LINE_RE.match(text)
        if found is not None and found.group(1) == indent:
            fields.append(text)
            if len(fields) == OUTLINE_MAX_FIELDS:
                break
    return fields


def _pending_imports(
    rel: str, text: str, bindings: Sequence[ImportBinding], counts: NameCounts | None = None
) -> set[str]:
    """Names bound by an import of the buffer and not used anywhere else in it.

    A package's `__init__.py` imports to re-export, not to use: nothing there is pending.
    `counts` are the buffer's (kept across requests); without them the names are counted afresh.
    """
    if rel.rsplit("/", 1)[-1] == "__init__.py":
        return set()
    if counts is None:
        counts = NameCounts()
        counts.update(text)
    return {b.local for b in bindings if b.local and b.local != "*" and counts.whole_uses(b.local) <= 1}


def _attributes_used(text: str, module: str) -> Iterator[str]:
    """The attributes of `module.attr` uses in `text`, in order, as `module\\.(\\w+)` would find them.

    str.find (memchr speed) for `module.`, filtered in Python: a lookbehind pattern has no literal
    prefix and steps through every position of the buffer, and even a literal prefix is searched
    by the regex engine several times slower than by str.find.
    """
    prefix = module + "."
    start = text.find(prefix)
    while start >= 0:
        found = ATTRIBUTE_RE.match(text, start + len(prefix))
        if found is None:  # `module.(`: the regex would go on from the next character
            start = text.find(prefix, start + 1)
            continue
        if starts_a_name(text, start):
            yield found.group(0)
        start = text.find(prefix, found.end())


def _docstring_lines(lines: list[str], first: int, last: int) -> set[int]:
    """Lines in `first..last` inside or opening a triple-quoted string: prose, not names to fetch.

    Counts triple quotes from the top of the buffer (fast: one C-level count); mixed quote
    styles are rare enough not to track separately.
    """
    before = "\n".join(lines[:first])
    inside = (before.count('"""') + before.count("'''")) % 2 == 1
    out: set[int] = set()
    for number in range(first, last + 1):
        quotes = lines[number].count('"""') + lines[number].count("'''")
        if inside or quotes:
            out.add(number)
        if quotes % 2:
            inside = not inside
    return out


# Keywords (and soft ones) never name a definition worth fetching.
_KEYWORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | {"self", "cls"}
_BUILTINS = frozenset(dir(builtins))
_STRING_RE = re.compile(r"(\"[^\"\n]*\"|'[^'\n]*')")


def _strip_strings(text: str) -> str:
    return _STRING_RE.sub('""', text)


def _import_region(text: str) -> str:
    """Only the buffer's import statements, at their original lines: a tiny parse, a stable cache key."""
    out: list[str] = []
    row, last_end = 0, 0
    for start, end in import_statements(text):
        start_row = row + text.count("\n", last_end, start)
        statement = text[start:end].lstrip(" \t")  # function-level imports parse as module-level ones
        out.append("\n" * (start_row - row) + statement)
        row = start_row + statement.count("\n")
        last_end = end
    return "".join(out)


_QUERY_CACHE: dict[str, ts.Query] = {}


def _import_query() -> ts.Query:
    query = _QUERY_CACHE.get("python")
    if query is None:
        query = _QUERY_CACHE["python"] = ts.Query(get_language("python"), PYTHON_IMPORT_QUERY)
    return query


def _local_types(lines: list[str], line: int) -> dict[str, str]:
    """Static guesses of locals' classes above the cursor: `x = Cls(...)`, `x: Cls`; nearest wins."""
    out: dict[str, str] = {}
    for number in range(max(0, line - NEAR_LINES_BEFORE * 3), line + 1):
        text = lines[number]
        if "=" in text:
            match = ASSIGN_CALL_RE.search(text)
            if match:
                out[match.group(1)] = match.group(2)
        if ":" in text:
            for match in ANNOTATION_RE.finditer(text):
                out[match.group(1)] = match.group(2)
    return out


def _enclosing_bases(lines: list[str], line: int) -> list[str]:
    """Base classes of the class enclosing `line` (by indentation)."""
    current = lines[line]
    indent = len(current) - len(current.lstrip()) if current.strip() else 10_000
    for number in range(line - 1, -1, -1):
        text = lines[number]
        if not text.strip():
            continue
        level = len(text) - len(text.lstrip())
        if level < indent:
            match = CLASS_LINE_RE.match(text)
            if match:
                bases = match.group(2) or ""
                return [b.strip() for b in bases.split(",") if b.strip() and "=" not in b]
            indent = level
            if level == 0:
                break
    return []


def _best_first(items: Iterable[_Scored]) -> list[_Scored]:
    return sorted(items, key=lambda s: (-s.score, s.path, s.start_line))


def _replace_timing(result: RetrievalResult, start: float, *, reused: bool) -> RetrievalResult:
    return RetrievalResult(
        chunks=result.chunks,
        elapsed_ms=(time.perf_counter() - start) * 1000,
        candidates=result.candidates,
        budget=result.budget,
        used_tokens=result.used_tokens,
        overhead_tokens=result.overhead_tokens,
        reused=reused,
        names=result.names,
        source_ms=result.source_ms,
        dropped=result.dropped,
    )


__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_SOURCES",
    "SOURCES",
    "Chunk",
    "RetrievalResult",
    "Retriever",
    "find_symbol",
]
