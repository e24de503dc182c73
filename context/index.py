"""The workspace index: tree-sitter facts of every source file, persisted in SQLite.

One database per workspace in the user cache dir (WAL mode, schema version; a corrupt or old
database is rebuilt, never a crash: `PRAGMA quick_check` on open finds damaged pages behind a
valid header). A restart re-parses only files whose content changed; unsaved editor buffers
override disk; watchdog picks up edits made outside the editor. The index is used from two
threads (LSP event loop + model worker): every SQLite access holds one lock. Several processes
may index one workspace at once (the server and `infiller index`): writes take the database's
write lock up front (BEGIN IMMEDIATE), wait for it (busy timeout), and find file rows by path
inside the transaction, so neither trips over rows the other just wrote.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import posixpath
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from context.extract import FileFacts, extract
from context.imports import ImportBinding, python_module_name, resolve_script_import
from context.incremental import BufferFacts
from context.recent import RecentRegions
from context.syntax import ParseTimeout, language_for_path
from context.walk import (
    WalkOptions,
    is_binary_or_huge,
    is_candidate,
    read_source,
    stat_source,
    workspace_files,
)

log = logging.getLogger(__name__)

# Bump when the tables or the extracted facts change: old databases are rebuilt from scratch.
SCHEMA_VERSION = 7
# Files written per transaction during a refresh: bounds the WAL size and the progress granularity.
BATCH_FILES = 256
# Import bindings of recently asked files kept in memory (retrieval asks the same few files per keystroke).
BINDINGS_CACHE_SIZE = 512
# Buffers up to this size (~2,000 lines) re-index synchronously in a few milliseconds.
SYNC_BUFFER_CHARS = 80_000
# Larger buffers re-index once typing pauses this long.
BUFFER_DEBOUNCE_S = 0.2
# Watchdog events arrive in bursts (save = write + rename + chmod): coalesce them.
WATCH_DEBOUNCE_S = 0.25
# Below this many changed files, spawning worker processes costs more than it saves.
PARALLEL_MIN_FILES = 200
# Files per worker task: large enough to amortise pickling, small enough to balance the load.
PARALLEL_CHUNK_FILES = 16
# More workers than this contend on the single SQLite writer rather than help.
MAX_WORKERS = 4
# Similar-window queries use only the rarest identifiers: common ones cost the most and discriminate least.
WINDOW_QUERY_TERMS = 8
# Prefix of the stored hash of a file indexed from an editor buffer (without windows/references).
BUFFER_HASH_MARK = "buffer:"
# A hash short enough to store cheaply, long enough that collisions never happen in one workspace.
HASH_BYTES = 16
# How long a writer waits for another process's transaction (a refresh batch takes well under this).
BUSY_TIMEOUT_S = 30.0
# Pause between attempts to open a database another indexer is creating (see _connect).
CONNECT_RETRY_S = 0.05
# SQLite's result codes for a damaged file: only these make the index rebuild from scratch (a
# busy database belongs to another indexer and must never be deleted).
CORRUPT_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files(
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    lang TEXT NOT NULL,
    module TEXT,
    is_package INTEGER NOT NULL DEFAULT 0,
    hash TEXT NOT NULL,
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    lines INTEGER NOT NULL
);
CREATE INDEX files_module ON files(module);
CREATE TABLE symbols(
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    parent TEXT,
    top_level INTEGER NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    signature TEXT NOT NULL,
    doc TEXT NOT NULL,
    snippet TEXT NOT NULL
);
CREATE INDEX symbols_name ON symbols(name);
CREATE INDEX symbols_file ON symbols(file_id);
CREATE TABLE imports(
    file_id INTEGER NOT NULL,
    local TEXT,
    module TEXT NOT NULL,
    name TEXT,
    level INTEGER NOT NULL,
    line INTEGER NOT NULL
);
CREATE INDEX imports_file ON imports(file_id);
CREATE TABLE refs(file_id INTEGER NOT NULL, name TEXT NOT NULL, count INTEGER NOT NULL);
CREATE INDEX refs_file ON refs(file_id);
CREATE TABLE windows(id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL, start_line INTEGER NOT NULL,
                     end_line INTEGER NOT NULL);
CREATE INDEX windows_file ON windows(file_id);
CREATE VIRTUAL TABLE windows_fts USING fts5(idents, tokenize = "unicode61 tokenchars '_'");
"""


@dataclass(frozen=True)
class RefreshStats:
    files: int
    symbols: int
    parsed: int  # files (re)parsed by this refresh
    removed: int
    elapsed_s: float
    db_bytes: int


@dataclass(frozen=True)
class Symbol:
    path: str
    name: str
    kind: str
    parent: str | None
    top_level: bool
    start_line: int
    end_line: int
    signature: str
    doc: str
    snippet: str


@dataclass(frozen=True)
class Window:
    path: str
    start_line: int
    end_line: int
    idents: str
    bm25: float


def default_db_path(root: Path) -> Path:
    """<user cache>/infiller/index/<hash of root>.sqlite"""
    import platformdirs  # deferred: only needed when no explicit path is given

    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return Path(platformdirs.user_cache_dir("infiller")) / "index" / f"{digest}.sqlite"


class Index:
    """A workspace index. Create with `Index.open(root)`; call `refresh()` to (re)build."""

    def __init__(self, root: Path, db_path: Path, conn: sqlite3.Connection, options: WalkOptions) -> None:
        self.root = root
        self.db_path = db_path
        self.options = options
        self.recent = RecentRegions()
        self._conn = conn
        self._lock = threading.RLock()
        self._buffers: dict[str, str] = {}
        # Parse trees of open buffers: a keystroke re-extracts only the statement it touched.
        self._buffer_facts: dict[str, BufferFacts] = {}
        self._file_ids: dict[str, int] = {}
        self._modules: dict[str, str] = {}  # dotted module -> path
        self._module_of: dict[str, tuple[str | None, bool]] = {}
        self._bindings: dict[str, list[ImportBinding]] = {}
        self._generation = 0
        self._file_generation: dict[str, int] = {}
        self._observer: Any = None
        self._pending: set[str] = set()
        self._pending_timer: threading.Timer | None = None
        self._pending_buffers: set[str] = set()
        self._buffer_timer: threading.Timer | None = None
        self._load_maps()

    # -----------------------------------------------------------------------------------------
    # Opening

    @classmethod
    def open(cls, root: Path, db_path: Path | None = None, options: WalkOptions | None = None) -> Index:
        """Open (or create) the database of `root`; rebuilds it when corrupt or of an older schema."""
        root = Path(root).resolve()
        db_path = Path(db_path) if db_path is not None else default_db_path(root)
        db_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = _connect(db_path)
        except sqlite3.DatabaseError as exc:
            if not _is_corrupt(exc):
                raise
            log.warning("index database %s is damaged (%s); rebuilding it", db_path, exc)
            _remove_db(db_path)
            conn = _connect(db_path)
        return cls(root, db_path, conn, options or WalkOptions())

    def close(self) -> None:
        self.stop_watching()
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -----------------------------------------------------------------------------------------
    # Paths

    def rel(self, path: Path | str) -> str | None:
        """Posix path relative to the root, or None when outside the workspace."""
        p = Path(path)
        if not p.is_absolute():
            return p.as_posix()
        try:
            return p.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return None

    def read_text(self, rel: str) -> str | None:
        """Current content of a workspace file: the editor buffer when open, else disk."""
        with self._lock:
            buffered = self._buffers.get(rel)
        if buffered is not None:
            return buffered
        read = read_source(self.root, rel, self.options.max_file_bytes)
        return read[0].decode("utf-8", "replace") if read is not None else None

    @property
    def generation(self) -> int:
        """Increases whenever any file's indexed facts change."""
        return self._generation

    def generation_excluding(self, rel: str) -> int:
        """The last generation that changed a file other than `rel` (the file being typed in)."""
        with self._lock:
            return max((g for p, g in self._file_generation.items() if p != rel), default=0)

    # -----------------------------------------------------------------------------------------
    # Building

    def refresh(self, progress: Callable[[int, int], None] | None = None) -> RefreshStats:
        """Bring the index up to date with disk; re-parses only files whose content changed."""
        start = time.perf_counter()
        files = workspace_files(self.root, self.options)
        package_dirs = {posixpath.dirname(f) for f in files if posixpath.basename(f) == "__init__.py"}
        with self._lock:
            known = {
                row[0]: (row[1], row[2], row[3], row[4])
                for row in self._conn.execute("SELECT path, id, mtime_ns, size, hash FROM files")
            }
        present = set(files)
        removed = [p for p in known if p not in present]
        with self._lock, self._conn:
            for path in removed:
                self._delete_file(known[path][0])
        total = len(files)
        work: list[tuple[str, bytes, int, int]] = []
        touched: list[tuple[int, int, str]] = []
        for rel in files:
            if rel in self._buffers:
                continue  # the editor's buffer is authoritative while open
            stat = stat_source(self.root, rel, self.options.max_file_bytes)
            if stat is None:
                continue
            old = known.get(rel)
            if old is not None and old[1] == stat.st_mtime_ns and old[2] == stat.st_size:
                continue
            read = read_source(self.root, rel, self.options.max_file_bytes)
            if read is None:
                continue
            data, stat = read
            if is_binary_or_huge(data, self.options):
                continue
            if old is not None and old[3] == _hash(data):
                touched.append((stat.st_mtime_ns, stat.st_size, rel))
                continue
            work.append((rel, data, stat.st_mtime_ns, stat.st_size))
        with self._lock, self._conn:
            self._conn.executemany("UPDATE files SET mtime_ns=?, size=? WHERE path=?", touched)
        unchanged = total - len(work)
        if progress is not None:
            progress(unchanged, total)
        results = _extract_all([(rel, data) for rel, data, _, _ in work])
        for batch_start in range(0, len(work), BATCH_FILES):
            batch = work[batch_start : batch_start + BATCH_FILES]
            facts = [next(results) for _ in batch]
            with self._lock, self._conn:
                for (rel, data, mtime, size), fact in zip(batch, facts, strict=True):
                    module, is_package = self._module_for(rel, package_dirs)
                    self._write_file(rel, _hash(data), mtime, size, fact, module, is_package)
            if progress is not None:
                progress(unchanged + batch_start + len(batch), total)
        parsed = len(work)
        self._update_modules(files, package_dirs)
        if parsed or removed:
            self._bump("")
        if progress is not None and total == 0:
            progress(0, 0)
        return self._stats(parsed, len(removed), time.perf_counter() - start)

    def stats(self) -> RefreshStats:
        return self._stats(0, 0, 0.0)

    def reindex_file(self, rel: str) -> bool:
        """Re-index one file from its buffer or disk (deleting it when gone). True when facts changed."""
        text = self._buffers.get(rel)
        if text is not None:
            data = text.encode("utf-8", "surrogatepass")
            mtime, size = 0, len(data)
        else:
            read = read_source(self.root, rel, self.options.max_file_bytes)
            if read is None:
                return self._forget(rel)
            data, stat = read
            if is_binary_or_huge(data, self.options) or not is_candidate(rel, self.options):
                return self._forget(rel)
            mtime, size = stat.st_mtime_ns, stat.st_size
        # Buffers change per keystroke: similarity windows and reference counts (costly, and used
        # only by non-default sources) are refreshed when the buffer is saved or dropped. A
        # buffer's hash carries a marker so that the disk version of the same text re-indexes fully.
        buffered = text is not None
        digest = BUFFER_HASH_MARK + _hash(data) if buffered else _hash(data)
        with self._lock:
            row = self._conn.execute("SELECT hash FROM files WHERE path=?", (rel,)).fetchone()
        if row is not None and row[0] == digest:
            return False
        fact = self._extract_buffer(rel, data) if buffered else _extract_one((rel, data))
        is_new = rel not in self._file_ids
        with self._lock, self._conn:
            module, is_package = self._module_for(rel, None)
            self._write_file(rel, digest, mtime, size, fact, module, is_package, keep_derived=buffered)
            if module is not None:
                self._modules.setdefault(module, rel)
            self._module_of[rel] = (module, is_package)
        if is_new and rel.endswith("__init__.py"):
            self._update_modules(list(self._file_ids), None)
        self._bump(rel)
        return True

    def _extract_buffer(self, rel: str, data: bytes) -> FileFacts:
        language = language_for_path(rel)
        if language is None:
            return FileFacts()
        with self._lock:
            facts = self._buffer_facts.get(rel)
            if facts is None:
                facts = self._buffer_facts[rel] = BufferFacts(language)
        return _guarded(rel, facts.update, data)

    def set_buffer(self, path: Path | str, text: str) -> None:
        """An unsaved editor buffer overrides the disk content of `path`.

        Re-indexed now when small (milliseconds); a large buffer is re-indexed once typing pauses
        for BUFFER_DEBOUNCE_S, so a keystroke in a 9,000-line file never blocks the caller.
        """
        rel = self.rel(path)
        if rel is None or language_for_path(rel) is None:
            return
        if len(text) > self.options.max_file_bytes:
            # Generated or data, as on disk: parsing megabytes per keystroke would stall the index.
            log.info("not indexing the buffer of %s: %d characters", rel, len(text))
            self.drop_buffer(rel)
            return
        with self._lock:
            self._buffers[rel] = text
        if len(text) <= SYNC_BUFFER_CHARS:
            self.reindex_file(rel)
            return
        with self._lock:
            self._pending_buffers.add(rel)
            if self._buffer_timer is not None:
                self._buffer_timer.cancel()
            self._buffer_timer = threading.Timer(BUFFER_DEBOUNCE_S, self.flush_buffers)
            self._buffer_timer.daemon = True
            self._buffer_timer.start()

    def flush_buffers(self) -> None:
        """Re-index large buffers whose re-index was deferred (called by the debounce timer)."""
        with self._lock:
            pending, self._pending_buffers = sorted(self._pending_buffers), set()
            self._buffer_timer = None
        for rel in pending:
            if rel in self._buffers:
                self.reindex_file(rel)

    def drop_buffer(self, path: Path | str) -> None:
        """Back to disk content (the editor closed the buffer)."""
        rel = self.rel(path)
        if rel is None:
            return
        with self._lock:
            had = self._buffers.pop(rel, None) is not None
            self._buffer_facts.pop(rel, None)
            self._pending_buffers.discard(rel)
        if had:
            self.reindex_file(rel)

    def note_edit(self, path: Path | str, line: int) -> None:
        rel = self.rel(path)
        if rel is not None:
            self.recent.note(rel, line, "edit")

    def note_view(self, path: Path | str, line: int) -> None:
        rel = self.rel(path)
        if rel is not None:
            self.recent.note(rel, line, "view")

    # -----------------------------------------------------------------------------------------
    # Watching

    def start_watching(self) -> None:
        """Re-index files changed outside the editor (git checkout, formatter, other tools)."""
        if self._observer is not None:
            return
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        index = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory or event.event_type in ("opened", "closed_no_write"):
                    return
                for raw in (event.src_path, getattr(event, "dest_path", "")):
                    if raw:
                        index._queue(raw if isinstance(raw, str) else raw.decode())

        observer = Observer()
        observer.schedule(Handler(), str(self.root), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop_watching(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=2)
        for timer in (self._pending_timer, self._buffer_timer):
            if timer is not None:
                timer.cancel()
        self._pending_timer = self._buffer_timer = None

    def _queue(self, raw: str) -> None:
        rel = self.rel(raw)
        if rel is None or not is_candidate(rel, self.options):
            return
        with self._lock:
            self._pending.add(rel)
            if self._pending_timer is None:
                self._pending_timer = threading.Timer(WATCH_DEBOUNCE_S, self._flush_pending)
                self._pending_timer.daemon = True
                self._pending_timer.start()

    def _flush_pending(self) -> None:
        with self._lock:
            pending, self._pending = sorted(self._pending), set()
            self._pending_timer = None
        for rel in pending:
            if rel in self._buffers:
                continue
            try:
                self.reindex_file(rel)
            except sqlite3.Error:
                log.exception("re-indexing %s after a file event failed", rel)

    # -----------------------------------------------------------------------------------------
    # Queries (used by imports resolution, retrieval and the repo map)

    def files(self) -> list[str]:
        with self._lock:
            return sorted(self._file_ids)

    def language_of(self, rel: str) -> str | None:
        return language_for_path(rel)

    def module_of(self, path: str) -> tuple[str | None, bool]:
        with self._lock:
            known = self._module_of.get(path)
        if known is not None:
            return known
        return self._module_for(path, None)

    def file_for_module(self, module: str) -> str | None:
        with self._lock:
            return self._modules.get(module)

    def bindings(self, path: str) -> Sequence[ImportBinding]:
        with self._lock:
            cached = self._bindings.get(path)
            if cached is not None:
                return cached
            file_id = self._file_ids.get(path)
            rows = (
                self._conn.execute(
                    "SELECT local, module, name, level, line FROM imports WHERE file_id=? ORDER BY rowid",
                    (file_id,),
                ).fetchall()
                if file_id is not None
                else []
            )
            out = [ImportBinding(*row) for row in rows]
            if len(self._bindings) >= BINDINGS_CACHE_SIZE:
                self._bindings.clear()
            self._bindings[path] = out
            return out

    def resolved_imports(self, path: str) -> list[str]:
        """Workspace files that a non-Python file imports (relative JS/TS paths, C includes)."""
        exists = set(self.files())
        out = []
        for binding in self.bindings(path):
            if binding.local is None:
                resolved = resolve_script_import(path, binding.module, exists)
                if resolved is not None and resolved != path:
                    out.append(resolved)
        return out

    def has_top_level(self, path: str, name: str) -> bool:
        with self._lock:
            file_id = self._file_ids.get(path)
            if file_id is None:
                return False
            row = self._conn.execute(
                "SELECT 1 FROM symbols WHERE name=? AND file_id=? AND top_level=1 LIMIT 1", (name, file_id)
            ).fetchone()
        return row is not None

    def symbols(self, path: str, name: str | None = None, parent: str | None = None) -> list[Symbol]:
        """Definitions of a file, optionally by name and/or owning class, in source order."""
        sql = _SYMBOL_SELECT + " WHERE s.file_id=?"
        args: list[Any] = []
        with self._lock:
            file_id = self._file_ids.get(path)
            if file_id is None:
                return []
            args.append(file_id)
            if name is not None:
                sql += " AND s.name=?"
                args.append(name)
            if parent is not None:
                sql += " AND s.parent=?"
                args.append(parent)
            rows = self._conn.execute(sql + " ORDER BY s.start_line", args).fetchall()
        return [_symbol(r) for r in rows]

    def definitions_named(self, name: str, limit: int = 20) -> list[Symbol]:
        """Every definition of `name` in the workspace (language-agnostic fallback lookup)."""
        with self._lock:
            rows = self._conn.execute(
                _SYMBOL_SELECT + " WHERE s.name=? ORDER BY f.path, s.start_line LIMIT ?", (name, limit)
            ).fetchall()
        return [_symbol(r) for r in rows]

    def search_windows(self, idents: Iterable[str], limit: int, exclude: str | None = None) -> list[Window]:
        """Windows sharing identifiers with `idents`, best BM25 first (FTS5)."""
        terms = _fts_terms(idents)
        if not terms:
            return []
        with self._lock:
            rarest = _rarest(self._term_docs(terms), terms)
            if not rarest:
                return []
            rows = self._match_windows(" OR ".join(f'"{term}"' for term in rarest), limit, exclude)
        return [Window(*r[1:]) for r in rows if r[1] != exclude][:limit]

    def windows_using(
        self, names: Sequence[str], context: Iterable[str], limit: int, exclude: str | None = None
    ) -> dict[str, list[Window]]:
        """Per name, windows containing it, those sharing the most of `context` first (FTS5).

        A name used in hundreds of windows (`nx` in networkx) is only useful where its use looks
        like the cursor's: the context's rarest terms rank, the name filters; windows with the name
        alone fill up what is left. One vocabulary lookup serves every name.
        """
        wanted = {n: n.lower() for n in names if _fts_terms([n.lower()])}
        found: dict[str, list[Window]] = {n: [] for n in names}
        if not wanted:
            return found
        context_terms = _fts_terms(context)
        with self._lock:
            docs = self._term_docs(context_terms | set(wanted.values()))
            for name, term in wanted.items():
                if term not in docs:
                    continue
                queries = []
                if terms := _rarest(docs, context_terms - {term}):
                    either = " OR ".join(f'"{t}"' for t in terms)
                    queries.append(f'"{term}" AND ({either})')
                queries.append(f'"{term}"')
                rows: list[Any] = []
                seen: set[int] = set()
                for query in queries:
                    for row in self._match_windows(query, limit, exclude):
                        if row[0] not in seen and row[1] != exclude:
                            seen.add(row[0])
                            rows.append(row[1:])
                    if len(rows) >= limit:
                        break
                found[name] = [Window(*r) for r in rows[:limit]]
        return found

    def _term_docs(self, terms: Collection[str]) -> dict[str, int]:
        """How many windows hold each of `terms` (those in no window are absent). Under the lock."""
        asked = sorted(terms)
        return dict(
            self._conn.execute(
                f"SELECT term, doc FROM temp.windows_vocab WHERE term IN ({','.join('?' * len(asked))})",
                asked,
            ).fetchall()
        )

    def _match_windows(self, query: str, limit: int, exclude: str | None) -> list[Any]:
        """(id, path, start_line, end_line, idents, score) of windows matching an FTS5 query, best
        BM25 first; twice `limit` when the caller drops `exclude`'s windows. Under the lock."""
        return self._conn.execute(
            "SELECT w.id, f.path, w.start_line, w.end_line, windows_fts.idents, "
            "bm25(windows_fts) AS score FROM windows_fts "
            "JOIN windows w ON w.id = windows_fts.rowid JOIN files f ON f.id = w.file_id "
            "WHERE windows_fts MATCH ? ORDER BY score LIMIT ?",
            (query, limit + (limit if exclude else 0)),
        ).fetchall()

    def graph_rows(self) -> tuple[list[tuple[str, str, str, str, int]], list[tuple[str, str, int]]]:
        """(definitions: path, name, kind, signature, start_line; references: path, name, count)."""
        with self._lock:
            defs = self._conn.execute(
                "SELECT f.path, s.name, s.kind, s.signature, s.start_line FROM symbols s "
                "JOIN files f ON f.id = s.file_id WHERE s.top_level=1 OR s.kind='method'"
            ).fetchall()
            refs = self._conn.execute(
                "SELECT f.path, r.name, r.count FROM refs r JOIN files f ON f.id = r.file_id"
            ).fetchall()
        return defs, refs

    # -----------------------------------------------------------------------------------------
    # Internals

    def _extract(self, rel: str, data: bytes) -> FileFacts:
        return _extract_one((rel, data))

    def _write_file(
        self,
        rel: str,
        digest: str,
        mtime: int,
        size: int,
        facts: FileFacts,
        module: str | None,
        is_package: bool,
        *,
        keep_derived: bool = False,
    ) -> None:
        """Replace every row of one file (caller holds the lock and the transaction)."""
        conn = self._conn
        # By path, not by the id remembered here: another indexer may have added or replaced the row.
        # The UPDATE opens the (immediate) transaction, so the row cannot change before the commit.
        updated = conn.execute(
            "UPDATE files SET hash=?, mtime_ns=?, size=?, lines=?, module=?, is_package=? WHERE path=?",
            (digest, mtime, size, facts.lines, module, int(is_package), rel),
        ).rowcount
        if updated:
            file_id = int(conn.execute("SELECT id FROM files WHERE path=?", (rel,)).fetchone()[0])
            self._delete_rows(file_id, keep_derived=keep_derived)
            self._file_ids[rel] = file_id
        else:
            cur = conn.execute(
                "INSERT INTO files(path, lang, module, is_package, hash, mtime_ns, size, lines) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rel,
                    language_for_path(rel) or "",
                    module,
                    int(is_package),
                    digest,
                    mtime,
                    size,
                    facts.lines,
                ),
            )
            file_id = int(cur.lastrowid or 0)
            self._file_ids[rel] = file_id
        conn.executemany(
            "INSERT INTO symbols(file_id, name, kind, parent, top_level, start_line, end_line, "
            "signature, doc, snippet) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    file_id,
                    d.name,
                    d.kind,
                    d.parent,
                    int(d.top_level),
                    d.start_line,
                    d.end_line,
                    d.signature,
                    d.doc,
                    d.snippet,
                )
                for d in facts.definitions
            ],
        )
        conn.executemany(
            "INSERT INTO imports(file_id, local, module, name, level, line) VALUES (?, ?, ?, ?, ?, ?)",
            [(file_id, b.local, b.module, b.name, b.level, b.line) for b in facts.imports],
        )
        conn.executemany(
            "INSERT INTO refs(file_id, name, count) VALUES (?, ?, ?)",
            [(file_id, name, count) for name, count in facts.references.items()],
        )
        if facts.windows:
            first = self._next_window_id()
            ids = range(first, first + len(facts.windows))
            conn.executemany(
                "INSERT INTO windows(id, file_id, start_line, end_line) VALUES (?, ?, ?, ?)",
                [(i, file_id, w[0], w[1]) for i, w in zip(ids, facts.windows, strict=True)],
            )
            conn.executemany(
                "INSERT INTO windows_fts(rowid, idents) VALUES (?, ?)",
                [(i, w[2]) for i, w in zip(ids, facts.windows, strict=True)],
            )
        self._bindings.pop(rel, None)

    def _next_window_id(self) -> int:
        # Read inside the write transaction (not cached): another indexer may have added windows.
        row = self._conn.execute("SELECT MAX(id) FROM windows").fetchone()
        return int(row[0] or 0) + 1

    def _delete_rows(self, file_id: int, *, keep_derived: bool = False) -> None:
        conn = self._conn
        conn.execute("DELETE FROM symbols WHERE file_id=?", (file_id,))
        conn.execute("DELETE FROM imports WHERE file_id=?", (file_id,))
        if keep_derived:
            return
        conn.execute("DELETE FROM refs WHERE file_id=?", (file_id,))
        conn.execute(
            "DELETE FROM windows_fts WHERE rowid IN (SELECT id FROM windows WHERE file_id=?)", (file_id,)
        )
        conn.execute("DELETE FROM windows WHERE file_id=?", (file_id,))

    def _delete_file(self, file_id: int) -> None:
        self._delete_rows(file_id)
        self._conn.execute("DELETE FROM files WHERE id=?", (file_id,))
        for rel, fid in list(self._file_ids.items()):
            if fid == file_id:
                del self._file_ids[rel]
                self._bindings.pop(rel, None)
                module, _ = self._module_of.pop(rel, (None, False))
                if module is not None and self._modules.get(module) == rel:
                    del self._modules[module]

    def _forget(self, rel: str) -> bool:
        with self._lock, self._conn:
            file_id = self._file_ids.get(rel)
            if file_id is None:
                return False
            self._delete_file(file_id)
        self._bump(rel)
        return True

    def _module_for(self, rel: str, package_dirs: set[str] | None) -> tuple[str | None, bool]:
        if language_for_path(rel) != "python":
            return None, False
        if package_dirs is None:
            package_dirs = self._package_dirs_on_disk(rel)
        return python_module_name(rel.removesuffix("i") if rel.endswith(".pyi") else rel, package_dirs)

    def _package_dirs_on_disk(self, rel: str) -> set[str]:
        out: set[str] = set()
        directory = posixpath.dirname(rel)
        while directory:
            if (
                f"{directory}/__init__.py" in self._file_ids
                or (self.root / directory / "__init__.py").exists()
            ):
                out.add(directory)
            else:
                break
            directory = posixpath.dirname(directory)
        return out

    def _update_modules(self, files: Sequence[str], package_dirs: set[str] | None) -> None:
        """Recompute dotted module names (they depend on which directories are packages)."""
        if package_dirs is None:
            package_dirs = {posixpath.dirname(f) for f in files if posixpath.basename(f) == "__init__.py"}
        with self._lock, self._conn:
            changed = []
            for rel in files:
                if language_for_path(rel) != "python" or rel not in self._file_ids:
                    continue
                module, is_package = self._module_for(rel, package_dirs)
                if self._module_of.get(rel) != (module, is_package):
                    changed.append((module, int(is_package), rel))
                    self._module_of[rel] = (module, is_package)
            self._conn.executemany("UPDATE files SET module=?, is_package=? WHERE path=?", changed)
            self._rebuild_module_map()

    def _rebuild_module_map(self) -> None:
        modules: dict[str, str] = {}
        # Sorted so that, when two roots define one module (src/ and tests/), the choice is stable;
        # .py wins over .pyi for the same module because stubs sort after sources.
        for rel in sorted(self._module_of):
            module, _ = self._module_of[rel]
            if module is not None and module not in modules:
                modules[module] = rel
        self._modules = modules

    def _load_maps(self) -> None:
        with self._lock:
            rows = self._conn.execute("SELECT path, id, module, is_package FROM files").fetchall()
        self._file_ids = {r[0]: r[1] for r in rows}
        self._module_of = {r[0]: (r[2], bool(r[3])) for r in rows if r[0].endswith((".py", ".pyi"))}
        self._rebuild_module_map()

    def _bump(self, rel: str) -> None:
        with self._lock:
            self._generation += 1
            self._file_generation[rel] = self._generation

    def _stats(self, parsed: int, removed: int, elapsed: float) -> RefreshStats:
        with self._lock:
            files = self._conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]
            symbols = self._conn.execute("SELECT COUNT(*) FROM symbols").fetchone()[0]
        db_bytes = sum(p.stat().st_size for p in (self.db_path, Path(f"{self.db_path}-wal")) if p.exists())
        return RefreshStats(files, symbols, parsed, removed, elapsed, db_bytes)


def _fts_terms(words: Iterable[str]) -> set[str]:
    """`words` as FTS5 terms: lower-cased identifiers (anything else would break a query)."""
    return {w.lower() for w in words if w.replace("_", "a").isalnum()}


def _rarest(docs: dict[str, int], terms: Iterable[str]) -> list[str]:
    """The WINDOW_QUERY_TERMS rarest of `terms` found in some window: they say most."""
    return sorted((t for t in terms if t in docs), key=lambda t: (docs[t], t))[:WINDOW_QUERY_TERMS]


def _extract_one(job: tuple[str, bytes]) -> FileFacts:
    rel, data = job
    language = language_for_path(rel)
    if language is None:
        return FileFacts()
    return _guarded(rel, partial(extract, language), data)


def _guarded(rel: str, run: Callable[[bytes], FileFacts], data: bytes) -> FileFacts:
    """`run(data)`, or no facts when the parse times out or the grammar fails on this one file."""
    try:
        return run(data)
    except ParseTimeout as exc:
        log.warning("indexing %s without definitions: %s", rel, exc)
    except Exception:  # a grammar crash on one odd file must not stop the index (or the editor)
        log.exception("extracting %s failed", rel)
    return FileFacts()


def _extract_all(jobs: list[tuple[str, bytes]]) -> Iterator[FileFacts]:
    """Facts of many files in order; in worker processes when there are enough to pay for them.

    Forks when this process has a single thread (CLI, benchmarks); spawns otherwise, since forking
    a threaded process (the LSP server) can deadlock the child on a lock another thread held. The
    caller writes SQLite while the workers parse, so the two overlap.
    """
    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    if len(jobs) < PARALLEL_MIN_FILES or workers < 2:
        yield from map(_extract_one, jobs)
        return
    method = "fork" if threading.active_count() == 1 and os.name == "posix" else "spawn"
    done = 0
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method)) as pool:
            for facts in pool.map(_extract_one, jobs, chunksize=PARALLEL_CHUNK_FILES):
                done += 1
                yield facts
    except BrokenProcessPool:
        # Spawned workers re-import __main__; a script without a main guard breaks them.
        log.warning("index worker processes failed; extracting the remaining files serially")
        yield from map(_extract_one, jobs[done:])


_SYMBOL_SELECT = (
    "SELECT f.path, s.name, s.kind, s.parent, s.top_level, s.start_line, s.end_line, "
    "s.signature, s.doc, s.snippet "
    "FROM symbols s JOIN files f ON f.id = s.file_id"
)


def _symbol(row: Sequence[Any]) -> Symbol:
    return Symbol(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6], row[7], row[8], row[9])


def _hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=HASH_BYTES).hexdigest()


class CorruptIndex(sqlite3.DatabaseError):
    """`PRAGMA quick_check` found damage (the header is fine, some pages are not)."""

    sqlite_errorcode = 11  # SQLITE_CORRUPT


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return not isinstance(exc, sqlite3.OperationalError)
    return code & 0xFF in CORRUPT_CODES


def _connect(db_path: Path) -> sqlite3.Connection:
    """A connection to the index database, set up; retried while another indexer is creating it."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            return _connect_once(db_path)
        except sqlite3.OperationalError as exc:
            # Two indexers opening a new database at once: until one has switched it to WAL, the
            # other's lock upgrade can be refused at once, without the busy timeout (SQLite's
            # deadlock avoidance in rollback-journal mode). Seen once in CI; a retry then finds WAL.
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(CONNECT_RETRY_S)


def _connect_once(db_path: Path) -> sqlite3.Connection:
    # IMMEDIATE: every write transaction takes the write lock when it starts. A deferred one would
    # upgrade a read lock later and fail at once ("database is locked") if another process wrote meanwhile.
    conn = sqlite3.connect(
        str(db_path), timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level="IMMEDIATE"
    )
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if _schema_version(conn) != str(SCHEMA_VERSION):
            _create_schema(conn, db_path)
        else:
            # Damaged pages behind a valid header would otherwise fail mid-retrieval, or never.
            problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise CorruptIndex("quick_check: " + "; ".join(problems))
        # Document frequencies of window identifiers (per connection: fts5vocab tables live in temp).
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.windows_vocab USING fts5vocab(main, windows_fts, 'row')"
        )
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn


def _schema_version(conn: sqlite3.Connection) -> str | None:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "meta" not in tables:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return str(row[0]) if row else None


def _create_schema(conn: sqlite3.Connection, db_path: Path) -> None:
    """Create the tables, replacing an old layout; one process at a time, the others then use it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _schema_version(conn)  # again, under the write lock: another process may have won
        if version != str(SCHEMA_VERSION):
            if version is not None or _table_names(conn):
                log.info("index schema %s != %s; rebuilding %s", version, SCHEMA_VERSION, db_path)
                # Dropped in place rather than deleting the file, which another process may have open.
                for name in _table_names(conn, virtual=True):
                    conn.execute(f'DROP TABLE IF EXISTS "{name}"')
                for name in _table_names(conn):
                    conn.execute(f'DROP TABLE IF EXISTS "{name}"')
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _table_names(conn: sqlite3.Connection, *, virtual: bool = False) -> list[str]:
    sql = "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
    if virtual:
        sql += " AND sql LIKE 'CREATE VIRTUAL TABLE%'"
    return [r[0] for r in conn.execute(sql)]


def _remove_db(db_path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
