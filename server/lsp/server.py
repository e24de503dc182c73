"""The infiller language server: state shared by the feature modules, lifecycle, and `build_server`.

`InfillerServer` holds what every feature needs; feature modules (server/features/*.py) each
expose `register(server)` and keep their handlers thin. Stable attributes for feature modules:

- `server.settings`   -- `Settings` (server/settings.py), replaced on didChangeConfiguration.
- `server.stats`      -- `Stats` (server/stats.py), local statistics.
- `server.worker`     -- the `ModelWorker`: the only thread that touches the model. Submit jobs with
                         `server.run_model(job, supersede=...)` and await the result; never call the
                         model from the event loop.
- `server.completer`  -- the `Completer` once the model is loaded (`server.completer_ready()`), else None.
- `server.runtime`    -- its `Runtime` (tokenizer, template, chat-free generation), or None.
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
import concurrent.futures
import contextlib
import importlib
import importlib.util
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from lsprotocol import types
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from server import __version__
from server.lsp.documents import Document, Documents
from server.lsp.protocol import InfillerProtocol, guess_id
from server.lsp.transport import BlockingStreamReader, FrameReader, ReadSome
from server.model.runtime import CancelToken, Runtime
from server.model.worker import ModelWorker
from server.settings import Settings
from server.stats import Stats
from server.stats import load as load_stats

if TYPE_CHECKING:
    from context.index import Index
    from server.completion import Completer

log = logging.getLogger(__name__)

T = TypeVar("T")

EngineFactory = Callable[[str | None], Runtime]
"""Builds the model runtime for a registry model name (None: the default); runs on the model thread."""

# Feature modules registered by build_server, in order; missing optional ones are skipped so
# that features developed separately never block each other.
FEATURE_MODULES = ("sync", "inline", "stats", "code_actions", "diagnostics")
OPTIONAL_FEATURES = frozenset({"code_actions", "diagnostics"})


def default_engine_factory(model: str | None, threads: int = 0) -> Runtime:
    """The registry model (it must be pulled) on llama.cpp; threads 0: the runtime's default."""
    from server.model.loader import load_runtime

    return load_runtime(model, n_threads=threads or None)


class InfillerServer(LanguageServer):
    """The language server and the state its features share (see the module docstring)."""

    def __init__(self, engine_factory: EngineFactory | None = None) -> None:
        super().__init__("infiller", __version__, protocol_cls=InfillerProtocol)
        self.engine_factory: EngineFactory = engine_factory or (
            lambda model: default_engine_factory(model, self.settings.threads)
        )
        self.settings = Settings()
        self.stats: Stats = load_stats()
        self.worker = ModelWorker()
        self.runtime: Runtime | None = None
        self.completer: Completer | None = None
        self.model_error: str | None = None
        self.loaded_model: str | None = None
        self.default_model: str | None = None  # `infiller serve --model`, used when settings name none
        self.index: Index | None = None
        self.index_ready = False
        self.root: Path | None = None
        self.documents = Documents()
        self._index_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="infiller-index"
        )
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

    # --- state -----------------------------------------------------------------------------

    def completer_ready(self) -> bool:
        """True once a model is loaded and completions can run."""
        return self.completer is not None

    def rebuild_completer(self) -> None:
        """(Re)create the Completer from the current runtime, index and settings (cheap)."""
        if self.runtime is None:
            self.completer = None
            return
        from server.completion import Completer

        self.completer = Completer(
            self.runtime,
            root=self.root,
            index=self.index,
            settings=self.settings.completion_settings(),
        )

    # --- running work off the event loop --------------------------------------------------

    def run_model(
        self, job: Callable[[CancelToken], T], *, supersede: bool = True
    ) -> tuple[asyncio.Future[T], CancelToken]:
        """Queue a job on the model thread; await the returned future (never block on it)."""
        future, token = self.worker.submit(job, supersede=supersede)
        return asyncio.wrap_future(future), token

    def index_call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run index work on the index thread (SQLite writes and tree-sitter parses stay off the loop)."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._index_pool, fn, *args)

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

    def apply_settings(self, settings: Settings, errors: list[str]) -> None:
        """Adopt new settings: report problems, reload the model if it changed."""
        for message in errors:
            self.show(message)
        old = self.settings
        self.settings = settings
        reload = settings.model != old.model or settings.threads != old.threads
        # A load already started (finished, failed or still running) must restart with the new
        # model: otherwise a change sent while the first load runs would be lost.
        if reload and self._model_task is not None:
            self.start_model()
        else:
            self.rebuild_completer()

    def start_model(self) -> None:
        from server.features.progress import load_model

        if self._model_task is not None and not self._model_task.done():
            self._model_task.cancel()
        self._model_task = asyncio.ensure_future(load_model(self, self.settings.model or self.default_model))

    def start_index(self) -> None:
        from server.features.progress import build_index

        if self.root is not None:
            self.spawn(build_index(self, self.root))

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
        if self.index is not None:
            index = self.index
            self.index = None
            self._index_pool.submit(index.close)
        self._index_pool.shutdown(wait=False)


def _register_lifecycle(server: InfillerServer) -> None:
    @server.feature(types.INITIALIZE)
    def initialize(ls: InfillerServer, params: types.InitializeParams) -> None:
        from server.settings import read_settings

        ls.set_root(params)
        settings, errors = read_settings(params.initialization_options)
        ls.settings = settings
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

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: InfillerServer, params: None) -> None:
        ls.close()

    @server.feature(types.EXIT)
    def exit_(ls: InfillerServer, params: None) -> None:
        ls.closing = True  # an exit without shutdown: stop talking before the pipe closes


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
