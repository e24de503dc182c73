"""Document sync: didOpen/didChange/didClose/didSave, configuration changes and watched files.

Keeps `server.documents` exact (incremental changes, UTF-16 positions), tells the suggester
about keystrokes (debounce) and cursor jumps (prefill), and feeds the index: buffers (coalesced
and delayed so that a typing burst is parsed once), recently edited/viewed regions, and files
changed outside the editor.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.uris import to_fs_path

from context.syntax import EXTENSIONS
from server.features import inline
from server.lsp.documents import scrub_surrogates
from server.settings import read_settings
from server.settings_file import merge

if TYPE_CHECKING:
    from server.lsp.documents import Document
    from server.lsp.server import InfillerServer

log = logging.getLogger(__name__)

# Wait this long after the last change before re-indexing a buffer: one parse per typing burst,
# and the model thread keeps the CPU while the user types.
BUFFER_FEED_DELAY_S = 0.75
# An edit this many lines away from the previous one is a jump: prefill the model cache there.
JUMP_LINES = 32
# The client's notification of where its cursor is outside typing (docs/lsp.md).
CURSOR = "infiller/cursor"
# A cursor that stays this long, with no key typed meanwhile, is where the user may type next: the
# prompt there is read while they look. One passing through (scrolling, a search) is not worth a read.
CURSOR_REST_S = 0.3
WATCH_REGISTRATION_ID = "infiller-watched-files"


class BufferFeeder:
    """Hands the latest text of each changed buffer to the index thread, once per burst."""

    def __init__(self, server: InfillerServer) -> None:
        self.server = server
        self._pending: dict[Path, str] = {}
        self._timers: dict[Path, asyncio.TimerHandle] = {}
        self._lock = threading.Lock()

    def changed(self, path: Path, text: str, *, now: bool = False) -> None:
        with self._lock:
            self._pending[path] = text
        timer = self._timers.pop(path, None)
        if timer is not None:
            timer.cancel()
        if now:
            self._flush(path)
        else:
            self._timers[path] = asyncio.get_running_loop().call_later(BUFFER_FEED_DELAY_S, self._flush, path)

    def _flush(self, path: Path) -> None:
        self._timers.pop(path, None)
        if self.server.closing:
            return  # a burst's timer that fires after shutdown: the index thread is gone
        index = self.server.index
        if index is None:
            return  # fed when the index opens (resend_all)

        def feed() -> None:
            with self._lock:
                text = self._pending.pop(path, None)
            if text is not None:
                index.set_buffer(path, text)

        fut = self.server.index_call(feed)
        fut.add_done_callback(_log_failure)

    def resend_all(self) -> None:
        for doc in list(self.server.documents.docs.values()):
            if doc.path is not None:
                self.changed(doc.path, doc.text, now=True)


def _log_failure(f: asyncio.Future[Any]) -> None:
    if not f.cancelled() and f.exception() is not None:
        log.warning("index update failed: %r", f.exception())


def watch_glob() -> str:
    exts = sorted({ext.lstrip(".") for ext in EXTENSIONS})
    return "**/*.{" + ",".join(exts) + "}"


async def register_watchers(server: InfillerServer) -> None:
    """Ask the client for didChangeWatchedFiles on source files (when it can register dynamically)."""
    workspace = server.client_capabilities.workspace if server.client_capabilities else None
    watched = workspace.did_change_watched_files if workspace else None
    if not (watched and watched.dynamic_registration):
        return
    options = types.DidChangeWatchedFilesRegistrationOptions(
        watchers=[types.FileSystemWatcher(glob_pattern=watch_glob())]
    )
    registration = types.Registration(
        id=WATCH_REGISTRATION_ID, method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES, register_options=options
    )
    try:
        await server.client_register_capability_async(types.RegistrationParams(registrations=[registration]))
    except Exception as exc:
        log.info("client refused file watching: %s", exc)


async def pull_configuration(server: InfillerServer) -> None:
    """Ask the client for our section (clients that send `settings: null` on change)."""
    workspace = server.client_capabilities.workspace if server.client_capabilities else None
    if not (workspace and workspace.configuration):
        return
    try:
        result = await server.workspace_configuration_async(
            types.ConfigurationParams(items=[types.ConfigurationItem(section="infiller")])
        )
    except Exception as exc:
        log.info("workspace/configuration failed: %s", exc)
        return
    if result and result[0] is not None:
        apply_configuration(server, result[0])


def apply_configuration(server: InfillerServer, raw: object) -> None:
    settings, errors = read_settings(merge(raw, server.workspace_settings, change=True), server.settings)
    server.apply_settings(settings, errors)


def _notify_changed(server: InfillerServer, doc: Document) -> None:
    for hook in server.on_document_changed:
        try:
            hook(server, doc)
        except Exception:
            log.exception("document hook failed")


def cursor_of(params: Any) -> tuple[str, int] | None:
    """The uri and line of an `infiller/cursor` notification's params; None when malformed."""
    document, position = getattr(params, "textDocument", None), getattr(params, "position", None)
    uri, line = getattr(document, "uri", None), getattr(position, "line", None)
    if not isinstance(uri, str) or not isinstance(line, int) or isinstance(line, bool) or line < 0:
        return None
    return uri, line


class CursorRest:
    """Reads the prompt where the cursor rests outside typing (the clients' `infiller/cursor`).

    A cold prompt in a new place takes seconds to read (~450 tokens: 4-7 s for the 1.5B on 2
    cores); the user arriving somewhere looks before typing, and now the model reads meanwhile,
    then grows the prompt while they still look (Suggester.prefill). The line being edited or asked
    at is left alone: the requests there hold its prompt, and a hot streak may be preparing its
    next line (a prefill would drop it).
    """

    def __init__(self) -> None:
        self._timer: asyncio.TimerHandle | None = None
        self._read: tuple[str, int, int | None] | None = None  # (uri, line, version) last read

    def moved(self, ls: InfillerServer, uri: str, line: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(CURSOR_REST_S, self._rested, ls, uri, line)

    def typed(self) -> None:
        """A key: the cursor is where the typing is, which the requests look after."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _rested(self, ls: InfillerServer, uri: str, line: int) -> None:
        self._timer = None
        doc = ls.documents.get(uri)
        if doc is None or line == doc.last_line or (uri, line, doc.version) == self._read:
            return
        since = ls.session.suggester.debounce.since_last_key(uri)
        if since is not None and since < CURSOR_REST_S:
            return
        self._read = (uri, line, doc.version)
        # A chunk stopped half-way is thrown away, and the request that stops it is most likely
        # for this place: with a 1 s look nothing was kept (bench/cursor_rest.py).
        if inline.prefill(ls, doc, line, whole_chunks=True):
            log.info("cursor rests at %s:%d: reading the prompt there", uri.rsplit("/", 1)[-1], line)


def _spawn(server: InfillerServer, coro: Coroutine[Any, Any, None]) -> None:
    server.spawn(coro)


def register(server: InfillerServer) -> None:
    feeder = BufferFeeder(server)
    rest = CursorRest()
    server.on_index_opened.append(lambda ls: feeder.resend_all())
    server.on_initialized.append(lambda ls: _spawn(ls, register_watchers(ls)))

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: InfillerServer, params: types.DidOpenTextDocumentParams) -> None:
        doc = ls.documents.open(params.text_document)
        if doc.path is not None:
            feeder.changed(doc.path, doc.text, now=True)
            if ls.index is not None:
                ls.index.note_view(doc.path, 0)
        # The cursor is unknown: prefill the file's head, where most small files are edited.
        inline.prefill(ls, doc, min(doc.text.count("\n"), JUMP_LINES))
        _notify_changed(ls, doc)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: InfillerServer, params: types.DidChangeTextDocumentParams) -> None:
        changed = ls.documents.change(params)
        if changed is None:
            log.warning("didChange for a document never opened: %s", params.text_document.uri)
            return
        doc, line = changed
        _notify_changed(ls, doc)
        ls.session.suggester.observe(doc.uri)
        rest.typed()
        if doc.path is not None:
            feeder.changed(doc.path, doc.text)
            if line is not None and ls.index is not None:
                ls.index.note_edit(doc.path, line)
        if line is not None:
            jumped = doc.last_line is not None and abs(line - doc.last_line) > JUMP_LINES
            doc.last_line = line
            if jumped:
                inline.prefill(ls, doc, line)

    @server.feature(CURSOR)
    def cursor(ls: InfillerServer, params: Any) -> None:
        where = cursor_of(params)
        if where is None:
            log.warning("%s with malformed params ignored: %.200r", CURSOR, params)
            return
        rest.moved(ls, *where)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: InfillerServer, params: types.DidCloseTextDocumentParams) -> None:
        doc = ls.documents.close(params.text_document.uri)
        if doc is None:
            log.warning("didClose for a document never opened: %s", params.text_document.uri)
            return
        for hook in ls.on_document_closed:
            try:
                hook(ls, params.text_document.uri)
            except Exception:
                log.exception("document hook failed")
        ls.session.suggester.forget(params.text_document.uri)
        if doc.path is not None and ls.index is not None:
            index, path = ls.index, doc.path
            ls.index_call(index.drop_buffer, path).add_done_callback(_log_failure)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: InfillerServer, params: types.DidSaveTextDocumentParams) -> None:
        doc = ls.documents.get(params.text_document.uri)
        if doc is not None and doc.path is not None:
            if params.text is not None and params.text != doc.text:
                log.warning("saved text differs from the synced buffer of %s; adopting it", doc.uri)
                doc.text = scrub_surrogates(params.text)
            feeder.changed(doc.path, doc.text, now=True)
        if doc is not None:
            _notify_changed(ls, doc)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched(ls: InfillerServer, params: types.DidChangeWatchedFilesParams) -> None:
        index = ls.index
        if index is None:
            return
        for change in params.changes:
            path = to_fs_path(change.uri)
            rel = index.rel(path) if path else None
            if rel is not None:
                ls.index_call(index.reindex_file, rel).add_done_callback(_log_failure)

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: InfillerServer, params: types.DidChangeConfigurationParams) -> None:
        if params.settings:
            apply_configuration(ls, params.settings)
        else:
            ls.spawn(pull_configuration(ls))
