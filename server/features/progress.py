"""Work-done progress (`$/progress`) for the long jobs: loading the model and indexing the workspace.

Both run off the event loop (the model thread, a background thread); progress reports from
those threads are marshalled onto the loop, throttled to whole-percent steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from lsprotocol import types

from server.model.process import ProcessRuntime
from server.model.registry import ModelError

if TYPE_CHECKING:
    from server.lsp.server import InfillerServer

log = logging.getLogger(__name__)

T = TypeVar("T")


def run_in_daemon_thread(fn: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Run fn on its own daemon thread: a long refresh never holds up the process's exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)  # type: ignore[arg-type]

    def target() -> None:
        try:
            value = fn()
        except BaseException as exc:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                loop.call_soon_threadsafe(settle, None, exc)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, value, None)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


class WorkDone:
    """One server-initiated progress bar; `report_threadsafe` may be called from any thread."""

    def __init__(self, server: InfillerServer, title: str) -> None:
        self.server = server
        self.title = title
        self.token = f"infiller-{uuid.uuid4().hex[:12]}"
        self.enabled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_pct = -1
        self._lock = threading.Lock()

    async def begin(self, message: str | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        window = self.server.client_capabilities.window if self.server.client_capabilities else None
        if window is not None and window.work_done_progress:
            try:
                await asyncio.wait_for(self.server.work_done_progress.create_async(self.token), timeout=5)
                self.enabled = True
            except Exception as exc:  # the client refused or never answered: go on without a bar
                log.info("no progress bar for %r: %s", self.title, exc)
        if self.enabled:
            self.server.work_done_progress.begin(
                self.token, types.WorkDoneProgressBegin(title=self.title, message=message, percentage=0)
            )
        self.server.log(f"{self.title}: started")

    def report(self, message: str | None, percentage: int | None) -> None:
        if self.enabled and not self.server.closing:
            self.server.work_done_progress.report(
                self.token, types.WorkDoneProgressReport(message=message, percentage=percentage)
            )

    def report_threadsafe(self, done: int, total: int, unit: str = "files") -> None:
        """A `(done, total)` callback for worker threads (the index's refresh)."""
        pct = 100 if total <= 0 else min(100, int(100 * done / total))
        with self._lock:
            if pct == self._last_pct:
                return
            self._last_pct = pct
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed under a running refresh
                self._loop.call_soon_threadsafe(self.report, f"{done}/{total} {unit}", pct)

    def end(self, message: str) -> None:
        if self.enabled and not self.server.closing:
            self.server.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
        self.server.log(f"{self.title}: {message}")


def _model_name(model: str | None) -> str:
    from server.model.registry import load_registry

    try:
        return load_registry().get(model).name
    except ModelError:
        return model or "default model"


async def load_model(server: InfillerServer, model: str | None) -> None:
    """Load `model` on the model thread with a progress bar; completions say "model-loading" meanwhile."""
    name = await asyncio.get_running_loop().run_in_executor(None, _model_name, model)
    progress = WorkDone(server, f"infiller: loading {name}")
    await progress.begin()
    # Nothing may supersede the load job: completions need a completer, so they wait it out.
    server.completer = None
    if isinstance(server.runtime, ProcessRuntime):
        server.runtime.close()
    server.runtime = None
    server.model_error = None
    # First use on a machine measures which llama.cpp configuration runs and is fastest.
    server.load_report = lambda _phase, done, total: progress.report_threadsafe(
        done, total, "configurations measured (first use on this machine)"
    )
    future, _ = server.run_model(lambda _token: server.engine_factory(model), supersede=False)
    try:
        runtime = await future
    except asyncio.CancelledError:
        progress.end("cancelled")
        raise
    except ModelError as exc:
        server.model_error = str(exc)
        server.show(str(exc), types.MessageType.Error)
        progress.end("failed")
        return
    except Exception as exc:
        log.exception("loading %s failed", name)
        server.model_error = f"could not load {name}: {exc}"
        server.show(server.model_error, types.MessageType.Error)
        progress.end("failed")
        return
    finally:
        server.load_report = None
    if isinstance(runtime, ProcessRuntime):
        loop = asyncio.get_running_loop()

        def on_event(kind: str, message: str) -> None:
            loop.call_soon_threadsafe(_model_event, server, kind, message)

        runtime.on_event = on_event
    server.runtime = runtime
    server.loaded_model = name
    server.rebuild_completer()
    progress.end(f"{name} ready")
    for hook in server.on_model_loaded:
        hook(server)


def _model_event(server: InfillerServer, kind: str, message: str) -> None:
    """The model process died, was restarted, or keeps dying: the user hears of it."""
    if kind == "restarted":
        server.log(message, types.MessageType.Info)
    else:
        server.show(message, types.MessageType.Error)


async def build_index(server: InfillerServer, root: Path) -> None:
    """Open the index at once (completions use whatever it holds), then refresh it with progress."""
    loop = asyncio.get_running_loop()
    progress = WorkDone(server, "infiller: indexing")
    await progress.begin(str(root))

    def adopt(index: object) -> None:
        server.index = index  # type: ignore[assignment]
        server.rebuild_completer()
        for hook in server.on_index_opened:
            hook(server)

    def work() -> str:
        from context.index import Index

        index = Index.open(root)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(adopt, index)
        stats = index.refresh(progress.report_threadsafe)
        index.start_watching()
        return str(getattr(stats, "files", "")) or "done"

    try:
        summary = await run_in_daemon_thread(work, "infiller-indexer")
    except Exception as exc:
        log.exception("indexing %s failed", root)
        server.show(f"indexing {root} failed: {exc}; completions use the current file only")
        progress.end("failed")
        return
    server.index_ready = True
    progress.end(f"indexed ({summary} files)" if summary.isdigit() else "indexed")
