"""Work-done progress (`$/progress`): one bar per long job, reported from any thread.

Loading the model, indexing the workspace and the code actions all run off the event loop;
their reports are marshalled onto the loop and throttled to changes. A bar made with a
CancelToken is cancellable: the client's window/workDoneProgress/cancel fires the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from lsprotocol import types

from server.model.runtime import CancelToken

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
    """One server-initiated progress bar; `report` and `count` may be called from any thread."""

    def __init__(self, server: InfillerServer, title: str, cancel: CancelToken | None = None) -> None:
        self.server = server
        self.title = title
        self.cancel = cancel
        self.token = f"infiller-{uuid.uuid4().hex[:12]}"
        self.enabled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last: tuple[str | None, int | None] | None = None
        self._lock = threading.Lock()

    async def begin(self, message: str | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        caps = self.server.client_capabilities
        if caps is not None and caps.window is not None and caps.window.work_done_progress:
            try:
                await asyncio.wait_for(self.server.work_done_progress.create_async(self.token), timeout=5)
                self.enabled = True
            except Exception as exc:  # the client refused or never answered: go on without a bar
                log.info("no progress bar for %r: %s", self.title, exc)
        if self.enabled:
            self.server.work_done_progress.begin(
                self.token,
                types.WorkDoneProgressBegin(
                    title=self.title, message=message, percentage=0, cancellable=self.cancel is not None
                ),
            )
            cancel = self.cancel
            # pygls cancels this future on window/workDoneProgress/cancel.
            future = self.server.work_done_progress.tokens.get(self.token)
            if cancel is not None and future is not None:
                future.add_done_callback(
                    lambda f: cancel.cancel("cancelled by the user") if f.cancelled() else None
                )
        self.server.log(f"{self.title}: started")

    def report(self, message: str | None, percentage: int | None) -> None:
        """A step of the work (thread-safe; repeated reports are sent once)."""
        if percentage is not None:
            percentage = max(0, min(100, percentage))
        with self._lock:
            if not self.enabled or self._loop is None or (message, percentage) == self._last:
                return
            self._last = (message, percentage)
        value = types.WorkDoneProgressReport(message=message, percentage=percentage)
        with contextlib.suppress(RuntimeError):  # the loop closed under a running job
            self._loop.call_soon_threadsafe(self._send, value)

    def count(self, done: int, total: int, unit: str) -> None:
        """`done` of `total` units, as a whole percentage (thread-safe)."""
        self.report(f"{done}/{total} {unit}", 100 if total <= 0 else int(100 * done / total))

    def _send(self, value: types.WorkDoneProgressReport) -> None:
        if not self.server.closing:
            self.server.work_done_progress.report(self.token, value)

    def end(self, message: str) -> None:
        if self.enabled and not self.server.closing:
            self.server.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
            self.server.work_done_progress.tokens.pop(self.token, None)
        self.server.log(f"{self.title}: {message}")
