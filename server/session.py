"""The session core: what every door (language server, daemon, command line) shares, with no transport.

A Session owns the model backend and the one thread it runs on, the workspace indexes and the
completers built over them, the suggester (server/suggest.py: which answer a request gets) and
the statistics. Doors translate their protocol into calls on it
and back: the language server's handlers, the daemon's HTTP handlers and `infiller complete`
hold no model, index or completion state of their own.

Long work reports through `Progress` (the language server shows `$/progress`, the command line a
bar). Blocking methods (`load_model`, `open_index`) run on the caller's thread; `start_model`
and `open_root` queue them on the model thread and the index thread and return futures.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from server.completion import Completer, CompletionSettings
from server.model.runtime import Backend, CancelToken
from server.model.worker import ModelWorker
from server.settings_file import FILE_NAME, context_over, describe, load_workspace_settings
from server.stats import Stats
from server.suggest import Suggester

if TYPE_CHECKING:
    from context.index import Index

log = logging.getLogger(__name__)

T = TypeVar("T")

# Workspaces one session indexes at most: beyond it, requests for new roots get no repository context.
MAX_ROOTS = 8


Progress = Callable[[str, int, int], None]
"""Where long work reports: `(phase, done, total)`, as the model registry's downloads do."""


ModelEvent = Callable[[str, str], None]
"""on_model_event(kind, message): the model process "died", was "restarted", or the session "gave-up"."""


@dataclass
class ModelChoice:
    """Which model, and where it runs: `backend` None or "local" is llama.cpp in a child process."""

    model: str | None = None
    threads: int = 0
    backend: str | None = None
    api_key_env: str | None = None


def default_loader(choice: ModelChoice, progress: Progress | None, on_event: ModelEvent | None) -> Backend:
    """The registry model (it must be pulled), locally in its own process or on a remote server."""
    from server.model.loader import load_runtime

    return load_runtime(
        choice.model,
        n_threads=choice.threads or None,
        report=progress,
        on_event=on_event,
        backend=choice.backend,
        api_key_env=choice.api_key_env,
    )


Loader = Callable[[ModelChoice, "Progress | None", "ModelEvent | None"], Backend]


@dataclass
class Session:
    """Model, indexes, completers: the state a completion needs, whichever door asked."""

    completion: CompletionSettings = field(default_factory=CompletionSettings)
    loader: Loader = default_loader
    on_model_event: ModelEvent | None = None
    backend: Backend | None = None
    model_name: str | None = None
    model_error: str | None = None
    worker: ModelWorker = field(default_factory=ModelWorker)
    stats: Stats = field(default_factory=Stats)
    # A newer completion request cancels the older one's generation (one editor), or not (a
    # daemon serving several clients).
    supersede: bool = True

    def __post_init__(self) -> None:
        self.suggester = Suggester(self, supersede=self.supersede)
        self._lock = threading.Lock()
        self._index_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="infiller-index"
        )
        self._indexes: dict[Path, Index | None] = {}
        self._index_ready: dict[Path, concurrent.futures.Future[Index]] = {}
        self._completers: dict[tuple[Path | None, int, int | None], Completer] = {}
        self.closed = False

    # --- the model ---------------------------------------------------------------------------

    def load_model(self, choice: ModelChoice, progress: Progress | None = None) -> Backend:
        """Load (or replace) the model; blocking. Failures leave `model_error` set and re-raise."""
        self.drop_model()
        try:
            backend = self.loader(choice, progress, self._model_event)
        except Exception as exc:
            self.model_error = str(exc) if exc.args else type(exc).__name__
            raise
        with self._lock:
            self.backend = backend
            self.model_name = backend.name
            self.model_error = None
            self._completers.clear()
        return backend

    def start_model(
        self, choice: ModelChoice, progress: Progress | None = None
    ) -> concurrent.futures.Future[Backend]:
        """Queue `load_model` on the model thread: nothing supersedes it, completions wait it out."""
        future, _ = self.worker.submit(lambda _token: self.load_model(choice, progress), supersede=False)
        return future

    def drop_model(self) -> None:
        with self._lock:
            backend, self.backend, self.model_name = self.backend, None, None
            self._completers.clear()
        close = getattr(backend, "close", None)
        if callable(close):
            close()

    def _model_event(self, kind: str, message: str) -> None:
        if self.on_model_event is not None:
            self.on_model_event(kind, message)

    @property
    def restarts(self) -> int:
        """How often the model process was restarted after dying (0 for in-process and remote models)."""
        return int(getattr(self.backend, "restarts", 0) or 0)

    def submit(
        self,
        job: Callable[[CancelToken], T],
        *,
        supersede: bool = True,
        label: str = "job",
        whole_chunks: bool = False,
    ) -> tuple[concurrent.futures.Future[T], CancelToken]:
        """Queue a job on the model thread (supersede: cancel every earlier one; `label`: its name
        in the DEBUG log; `whole_chunks`: see CancelToken)."""
        return self.worker.submit(job, supersede=supersede, label=label, whole_chunks=whole_chunks)

    # --- workspaces --------------------------------------------------------------------------

    def open_index(
        self,
        root: Path,
        progress: Progress | None = None,
        *,
        watch: bool = True,
        on_open: Callable[[Index], None] | None = None,
    ) -> Index:
        """Open (completions may use it at once: `on_open`) and refresh the index of `root`; blocking."""
        from context.index import Index

        root = root.resolve()
        index = Index.open(root)
        with self._lock:
            self._indexes[root] = index
            self._completers.clear()
        if on_open is not None:
            on_open(index)
        stats = index.refresh((lambda done, total: progress("index", done, total)) if progress else None)
        log.info("indexed %s: %s", root, stats)
        if watch:
            index.start_watching()
        return index

    def open_root(
        self, root: Path, progress: Progress | None = None
    ) -> concurrent.futures.Future[Index] | None:
        """Index a workspace on the index thread, once; None when MAX_ROOTS are open already."""
        root = root.resolve()
        with self._lock:
            if root in self._index_ready:
                return self._index_ready[root]
            if len(self._index_ready) >= MAX_ROOTS:
                log.warning("not indexing %s: already %d workspaces", root, MAX_ROOTS)
                return None
            self._indexes[root] = None
            future: concurrent.futures.Future[Index] = concurrent.futures.Future()
            self._index_ready[root] = future

        def work() -> None:
            try:
                future.set_result(self.open_index(root, progress))
            except BaseException as exc:
                log.error("indexing %s failed: %s", root, exc)
                future.set_exception(exc)

        # Its own thread: a long first refresh must not hold up index_call's short jobs.
        threading.Thread(target=work, name="infiller-indexer", daemon=True).start()
        return future

    def index_call(self, fn: Callable[..., T], *args: object) -> concurrent.futures.Future[T]:
        """Run short index work (a buffer's re-index) on the one thread that writes the index."""
        return self._index_pool.submit(fn, *args)

    def index_for(self, root: Path | None) -> Index | None:
        """The index of `root` if it is open (it may still be refreshing)."""
        if root is None:
            return None
        with self._lock:
            return self._indexes.get(root.resolve())

    def roots(self) -> list[Path]:
        with self._lock:
            return list(self._index_ready)

    def indexing(self) -> int:
        """How many workspaces are still being indexed (opened, first refresh not done)."""
        with self._lock:
            return sum(not ready.done() for ready in self._index_ready.values())

    def ready_indexes(self) -> list[tuple[Path, Index]]:
        with self._lock:
            return [(r, i) for r, i in self._indexes.items() if i is not None]

    # --- completion ----------------------------------------------------------------------------

    def set_completion(self, settings: CompletionSettings) -> None:
        with self._lock:
            self.completion = settings
            self._completers.clear()

    def completer(self, root: Path | None, *, context: bool = True) -> Completer | None:
        """The completer for a workspace (None before the model is loaded); cheap, cached."""
        with self._lock:
            backend = self.backend
            if backend is None:
                return None
            index = self._indexes.get(root.resolve()) if (root is not None and context) else None
            # A settings file written (or removed) since is read again: its time is in the key.
            key = (root, id(index) if index is not None else 0, _settings_file_time(root))
            found = self._completers.get(key)
            if found is None:
                workspace = load_workspace_settings(root)
                settings = context_over(self.completion, workspace)
                if workspace is not None:
                    log.info("workspace settings in force for %s: %s", root, describe(workspace))
                found = Completer(backend, root=root, index=index, settings=settings)
                self._completers[key] = found
            return found

    # --- end -----------------------------------------------------------------------------------

    def close(self) -> None:
        self.closed = True
        self.worker.shutdown()
        self._index_pool.shutdown(wait=False, cancel_futures=True)
        for _, index in self.ready_indexes():
            index.close()
        self.drop_model()


def _settings_file_time(root: Path | None) -> int | None:
    """When the root's settings file last changed (None: there is none)."""
    if root is None:
        return None
    try:
        return (root / FILE_NAME).stat().st_mtime_ns
    except OSError:
        return None
