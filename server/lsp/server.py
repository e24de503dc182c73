"""The infiller language server: the LSP door onto the session core, its lifecycle, and `build_server`.

The model, its thread, the index and the completers belong to `server.session`
(server/session.py, shared with the daemon and the CLI); this module adds what only an editor
needs: documents, settings from the client, progress bars, messages, and the hooks features use.
Feature modules (server/features/*.py) each expose `register(server)` and keep their handlers
thin. Stable attributes for feature modules (the model and index ones read the session):

- `server.settings`   -- `Settings` (server/settings.py), replaced on didChangeConfiguration.
- `server.stats`      -- `Stats` (server/stats.py), local statistics.
- `server.worker`     -- the `ModelWorker`: the only thread that touches the model. Submit jobs with
                         `server.run_model(job, supersede=...)` and await the result; never call the
                         model from the event loop.
- `server.session`    -- the `Session` core (model backend, indexes, completers, the suggester).
- `server.completer`  -- the `Completer` once the model is loaded (`server.completer_ready()`), else None.
- `server.runtime`    -- its model `Backend` (tokenizer, template, chat-free generation), or None.
- `server.index`      -- the workspace `Index` once opened (it may still be refreshing: `index_ready`
                         says when the first refresh finished); None without a workspace root.
- `server.root`       -- the workspace root `Path`, or None.
- `server.documents`  -- open documents with exact UTF-16 position handling (server/lsp/documents.py).
- `server.index_call(fn, *args)` -- run index work on the index thread; returns an awaitable.
- `server.log(message)` / `server.show(message, type)` -- window/logMessage and window/showMessage.
- `server.on_initialized` / `on_model_loaded` / `on_index_opened` -- lists of `hook(server)` callbacks.
- `server.on_document_changed` (`hook(server, document)`, after didOpen/didChange/didSave) and
  `server.on_document_closed` (`hook(server, uri)`) -- for features that follow buffers (diagnostics).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from lsprotocol import types
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from server import __version__
from server.lsp.documents import Document, Documents
from server.lsp.progress import WorkDone, run_in_daemon_thread
from server.lsp.protocol import InfillerProtocol, guess_id
from server.lsp.transport import BlockingStreamReader, FrameReader, ReadSome
from server.model.registry import ModelError
from server.model.runtime import Backend, CancelToken
from server.model.worker import ModelWorker
from server.session import Loader, ModelChoice, Session, default_loader
from server.settings import Settings
from server.stats import Stats
from server.stats import load as load_stats
from server.suggest import EARLY_ANSWER_MS

if TYPE_CHECKING:
    from context.index import Index
    from server.completion import Completer
    from server.settings_file import WorkspaceSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# The client capability (under `experimental`) that says the client asks for inline completions
# again on SUGGESTION_UPDATED, and that notification (params: {"uri": ...}); docs/lsp.md.
SUGGESTION_UPDATES = "infillerSuggestionUpdates"
SUGGESTION_UPDATED = "infiller/suggestionUpdated"

EngineFactory = Callable[[str | None], Backend]
"""Builds the model runtime for a registry model name (None: the default); runs on the model thread."""

# Feature modules registered by build_server, in order; missing optional ones are skipped so
# that features developed separately never block each other.
FEATURE_MODULES = ("sync", "inline", "stats", "code_actions", "diagnostics")
OPTIONAL_FEATURES = frozenset({"code_actions", "diagnostics"})


class InfillerServer(LanguageServer):
    """The language server: LSP lifecycle and documents over a transport-free Session."""

    def __init__(self, engine_factory: EngineFactory | None = None) -> None:
        super().__init__("infiller", __version__, protocol_cls=InfillerProtocol)
        self.settings = Settings()
        self.session = Session(
            completion=self.settings.completion_settings(),
            stats=load_stats(),
            loader=_factory_loader(engine_factory) if engine_factory is not None else default_loader,
            on_model_event=self._model_event_threadsafe,
        )
        self.session.suggester.on_update = self._suggestion_updated
        # The client asks for inline completions again when told that a suggestion grew
        # (`infiller/suggestionUpdated`): early answers are then worth showing (server/suggest.py).
        self.suggestion_updates = False
        # The client shows inline completions (LSP 3.18 `textDocument.inlineCompletion`): the
        # `textDocument/completion` fallback then stays empty (server/features/inline.py).
        self.inline_client = False
        self.adopt(self.settings)
        self.default_model: str | None = None  # `infiller serve --model`, used when settings name none
        self.index_ready = False
        self.root: Path | None = None
        # The workspace's `.infiller.toml` (server/settings_file.py), read at initialize.
        self.workspace_settings: WorkspaceSettings | None = None
        self.documents = Documents()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._model_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self.closing = False  # set by shutdown: nothing more is sent to the client
        self.pending_messages: list[str] = []  # settings problems found before the client is ready
        # Hooks for feature modules, called on the event loop with the server.
        self.on_initialized: list[Callable[[InfillerServer], None]] = []
        self.on_model_loaded: list[Callable[[InfillerServer], None]] = []
        self.on_index_opened: list[Callable[[InfillerServer], None]] = []
        # After didOpen/didChange/didSave (the document as now synced) and after didClose (its uri).
        self.on_document_changed: list[Callable[[InfillerServer, Document], None]] = []
        self.on_document_closed: list[Callable[[InfillerServer, str], None]] = []

    # --- transport: our frame reader instead of pygls's (see server/lsp/transport.py) ----------

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Serve JSON-RPC over a pair of byte streams until `exit` or the end of the input."""
        self._stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        reader = BlockingStreamReader(stdin or sys.stdin.buffer)
        try:
            asyncio.run(self.serve_frames(reader.read_some))
        except BrokenPipeError:
            log.error("the client's pipe closed; shutting down")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()

    def start_tcp(self, host: str, port: int) -> None:
        """Serve one client at a time on a TCP socket."""
        self._stop_event = threading.Event()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.protocol.set_writer(writer)
            await self.serve_frames(reader.read)
            self.shutdown()

        async def listen() -> None:
            server = await asyncio.start_server(connection, host, port)
            log.info("serving on %s:%d", host, port)
            async with server:
                await server.serve_forever()

        with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
            asyncio.run(listen())

    async def serve_frames(self, read_some: ReadSome) -> None:
        """Read frames and hand their bodies to the protocol until the stream ends or `exit`."""
        frames = FrameReader(read_some)
        protocol = self.protocol
        assert isinstance(protocol, InfillerProtocol)
        stop = self._stop_event
        while stop is None or not stop.is_set():
            frame = await frames.next()
            if frame is None:
                break
            if frame.problem is not None:
                log.warning("bad frame: %s", frame.problem)
            try:
                if frame.body is not None:
                    protocol.receive(frame.body)
                elif (msg_id := guess_id(frame.head)) is not None:
                    protocol.reply_error(msg_id, types.ErrorCodes.InvalidRequest, frame.problem or "dropped")
            except Exception:  # one message must never end the read loop (the server would go deaf)
                log.exception("a message could not be handled")

    # --- state (the session's, for this workspace) ------------------------------------------

    @property
    def stats(self) -> Stats:
        return self.session.stats

    @property
    def runtime(self) -> Backend | None:
        return self.session.backend

    @property
    def worker(self) -> ModelWorker:
        return self.session.worker

    @property
    def index(self) -> Index | None:
        return self.session.index_for(self.root)

    @property
    def completer(self) -> Completer | None:
        return self.session.completer(self.root)

    @property
    def model_error(self) -> str | None:
        return self.session.model_error

    @property
    def loaded_model(self) -> str | None:
        return self.session.model_name

    def completer_ready(self) -> bool:
        """True once a model is loaded and completions can run."""
        return self.session.backend is not None

    def model_choice(self) -> ModelChoice:
        s = self.settings
        return ModelChoice(s.model or self.default_model, s.threads, s.backend, s.backend_api_key_env)

    # --- running work off the event loop --------------------------------------------------

    def run_model(
        self, job: Callable[[CancelToken], T], *, supersede: bool = True
    ) -> tuple[asyncio.Future[T], CancelToken]:
        """Queue a job on the model thread; await the returned future (never block on it)."""
        future, token = self.session.submit(job, supersede=supersede)
        return asyncio.wrap_future(future), token

    def index_call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run index work on the index thread (SQLite writes and tree-sitter parses stay off the loop)."""
        return asyncio.wrap_future(self.session.index_call(fn, *args))

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        """Run a background coroutine, keeping a reference and logging its failure."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)

        def done(t: asyncio.Future[Any]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("background task failed", exc_info=t.exception())

        task.add_done_callback(done)
        return task

    # --- messages --------------------------------------------------------------------------

    def log(self, message: str, kind: types.MessageType = types.MessageType.Log) -> None:
        log.info("%s", message)
        if self.closing:
            return
        with contextlib.suppress(Exception):  # no client attached (unit tests)
            self.window_log_message(types.LogMessageParams(type=kind, message=message))

    def show(self, message: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        log.warning("%s", message)
        if self.closing:
            return
        with contextlib.suppress(Exception):
            self.window_show_message(types.ShowMessageParams(type=kind, message=f"infiller: {message}"))

    # --- lifecycle ---------------------------------------------------------------------------

    def set_root(self, params: types.InitializeParams) -> None:
        uri = params.root_uri
        if params.workspace_folders:
            uri = params.workspace_folders[0].uri
        if uri is None and params.root_path:
            self.root = Path(params.root_path).resolve()
            return
        path = to_fs_path(uri) if uri else None
        self.root = Path(path).resolve() if path else None

    def adopt(self, settings: Settings) -> None:
        """Make `settings` the ones in force, down to the completer and the suggester."""
        self.settings = settings
        self.session.set_completion(settings.completion_settings())
        knobs = settings.suggest_settings()
        if self.suggestion_updates:
            knobs = replace(knobs, early_answer_ms=EARLY_ANSWER_MS)
        self.session.suggester.apply_settings(knobs)

    def apply_settings(self, settings: Settings, errors: list[str]) -> None:
        """Adopt new settings: report problems, reload the model if it changed."""
        for message in errors:
            self.show(message)
        old = self.settings
        self.adopt(settings)
        reload = (settings.model, settings.threads, settings.backend, settings.backend_api_key_env) != (
            old.model,
            old.threads,
            old.backend,
            old.backend_api_key_env,
        )
        # A load already started (finished, failed or still running) must restart with the new
        # model: otherwise a change sent while the first load runs would be lost.
        if reload and self._model_task is not None:
            self.start_model()

    def start_model(self) -> None:
        if self._model_task is not None and not self._model_task.done():
            self._model_task.cancel()
        self._model_task = asyncio.ensure_future(self.load_model())

    def start_index(self) -> None:
        if self.root is not None:
            self.spawn(self.build_index(self.root))

    async def load_model(self) -> None:
        """Load the chosen model on the model thread with a progress bar; completions say
        "model-loading" meanwhile. The first use on a machine also runs the self-test."""
        self._loop = asyncio.get_running_loop()
        choice = self.model_choice()
        name = await self._loop.run_in_executor(None, _model_name, choice.model)
        progress = WorkDone(self, f"infiller: loading {name}")
        await progress.begin()

        def report(_phase: str, done: int, total: int) -> None:
            progress.count(done, total, "configurations measured (first use on this machine)")

        try:
            backend = await asyncio.wrap_future(self.session.start_model(choice, report))
        except asyncio.CancelledError:
            progress.end("cancelled")
            raise
        except Exception as exc:
            if not isinstance(exc, ModelError):
                log.exception("loading %s failed", name)
            self.show(self.session.model_error or f"could not load {name}: {exc}", types.MessageType.Error)
            progress.end("failed")
            return
        progress.end(f"{backend.name} ready")
        for hook in self.on_model_loaded:
            hook(self)

    async def build_index(self, root: Path) -> None:
        """Open the index at once (completions use whatever it holds), then refresh it with progress."""
        loop = asyncio.get_running_loop()
        progress = WorkDone(self, "infiller: indexing")
        await progress.begin(str(root))

        def opened() -> None:
            for hook in self.on_index_opened:
                hook(self)

        def on_open(_index: Index) -> None:
            loop.call_soon_threadsafe(opened)

        def work() -> int:
            index = self.session.open_index(
                root, lambda _phase, done, total: progress.count(done, total, "files"), on_open=on_open
            )
            return len(index.files())

        try:
            files = await run_in_daemon_thread(work, "infiller-indexer")
        except Exception as exc:
            log.exception("indexing %s failed", root)
            self.show(f"indexing {root} failed: {exc}; completions use the current file only")
            progress.end("failed")
            return
        self.index_ready = True
        progress.end(f"indexed ({files} files)")

    def _suggestion_updated(self, uri: str) -> None:
        """A suggestion shown early is complete: the client asks again and gets all of it."""
        if self.suggestion_updates and not self.closing:
            self.protocol.notify(SUGGESTION_UPDATED, {"uri": uri})

    def _model_event_threadsafe(self, kind: str, message: str) -> None:
        """The model process died, was restarted, or keeps dying (from the model thread)."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._model_event, kind, message)

    def _model_event(self, kind: str, message: str) -> None:
        if kind == "restarted":
            self.log(message, types.MessageType.Info)
        else:
            self.show(message, types.MessageType.Error)

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Errors go to the log; to the client too unless it is gone (no error loop on a closed pipe)."""
        log.error("server error (%s): %s", getattr(source, "__name__", source), error)
        if not self.closing and not isinstance(error, ValueError | BrokenPipeError):
            super().report_server_error(error, source)

    def close(self) -> None:
        """Shutdown: persist statistics, stop the watcher and the model thread."""
        self.closing = True
        try:
            self.stats.save()
        except OSError as exc:
            log.warning("could not save statistics: %s", exc)
        self.worker.cancel_all("shutdown")
        self.session.close()


def _register_lifecycle(server: InfillerServer) -> None:
    @server.feature(types.INITIALIZE)
    def initialize(ls: InfillerServer, params: types.InitializeParams) -> None:
        from server.settings import read_settings
        from server.settings_file import load_workspace_settings, merge

        ls.set_root(params)
        ls.workspace_settings = load_workspace_settings(ls.root)
        settings, errors = read_settings(merge(params.initialization_options, ls.workspace_settings))
        extra = params.capabilities.experimental
        ls.suggestion_updates = isinstance(extra, dict) and extra.get(SUGGESTION_UPDATES) is True
        documents = params.capabilities.text_document
        ls.inline_client = documents is not None and documents.inline_completion is not None
        ls.adopt(settings)
        ls.pending_messages.extend(ls.workspace_settings.problems if ls.workspace_settings else ())
        ls.pending_messages.extend(errors)

    @server.feature(types.INITIALIZED)
    def initialized(ls: InfillerServer, params: types.InitializedParams) -> None:
        for message in ls.pending_messages:
            ls.show(message)
        ls.pending_messages.clear()
        ls.start_model()
        ls.start_index()
        for hook in ls.on_initialized:
            hook(ls)
        ls.log(f"infiller {__version__}: root {ls.root}, settings {ls.settings}")
        if ls.workspace_settings is not None:
            from server.settings_file import describe

            ls.log(f"workspace settings in force: {describe(ls.workspace_settings)}", types.MessageType.Info)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: InfillerServer, params: None) -> None:
        ls.close()

    @server.feature(types.EXIT)
    def exit_(ls: InfillerServer, params: None) -> None:
        ls.closing = True  # an exit without shutdown: stop talking before the pipe closes


def _model_name(model: str | None) -> str:
    from server.model.registry import load_registry

    try:
        return load_registry().get(model).name
    except ModelError:
        return model or "default model"


def _factory_loader(factory: EngineFactory) -> Loader:
    """A session loader from a test's `(model) -> Backend` factory."""
    return lambda choice, _progress, _on_event: factory(choice.model)


def build_server(engine_factory: EngineFactory | None = None) -> InfillerServer:
    """A server with every feature registered; `engine_factory` lets tests inject a fake model."""
    server = InfillerServer(engine_factory)
    _register_lifecycle(server)
    for name in FEATURE_MODULES:
        module_name = f"server.features.{name}"
        if name in OPTIONAL_FEATURES and importlib.util.find_spec(module_name) is None:
            log.info("feature %s not available", name)
            continue
        module = importlib.import_module(module_name)
        module.register(server)
    return server
