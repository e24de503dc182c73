"""The model worker: one thread owns the model, one job in flight, superseded jobs dropped.

The LSP event loop never waits on the model: it submits a job and awaits the future. A newer
job cancels the one running (between prompt chunks or tokens) and any still queued, so a stale
request never holds the model.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from server.model.runtime import Cancelled, CancelToken

log = logging.getLogger(__name__)

T = TypeVar("T")


class ModelWorker:
    """A single-thread executor with supersede-on-submit."""

    def __init__(self, name: str = "infiller-model") -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._live: list[CancelToken] = []
        self._ids = itertools.count(1)
        self.cancelled = 0

    def submit(
        self,
        job: Callable[[CancelToken], T],
        *,
        supersede: bool = True,
        token: CancelToken | None = None,
        label: str = "job",
        whole_chunks: bool = False,
    ) -> tuple[concurrent.futures.Future[T], CancelToken]:
        """Queue job(token); with supersede, cancel every earlier job first. `label` names the job
        in the DEBUG log (what it waited behind, how it ended): latency diagnosis. `whole_chunks`:
        the new token's (see CancelToken)."""
        token = token or CancelToken(whole_chunks=whole_chunks)
        name = f"{label}#{next(self._ids)}"
        queued = time.perf_counter()
        with self._lock:
            if supersede:
                for older in self._live:
                    if not older.cancelled:
                        older.cancel("superseded")
                        self.cancelled += 1
                self._live.clear()
            self._live.append(token)

        def run() -> T:
            started = time.perf_counter()
            outcome = "failed"
            try:
                token.check()  # dropped while queued: never touches the model
                log.debug("model job %s: started after %.0f ms queued", name, _ms(queued, started))
                result = job(token)
                outcome = "done"
                return result
            except Cancelled as exc:
                outcome = str(exc)
                raise
            finally:
                with self._lock:
                    if token in self._live:
                        self._live.remove(token)
                log.debug("model job %s: %s after %.0f ms", name, outcome, _ms(started, time.perf_counter()))

        return self._pool.submit(run), token

    @property
    def idle(self) -> bool:
        """Nothing queued or running that is still wanted (a superseded job may finish its batch)."""
        with self._lock:
            return not self._live

    def cancel_all(self, reason: str = "cancelled") -> None:
        with self._lock:
            for token in self._live:
                token.cancel(reason)

    def shutdown(self) -> None:
        self.cancel_all("shutdown")
        self._pool.shutdown(wait=True, cancel_futures=True)


def _ms(start: float, end: float) -> float:
    return (end - start) * 1000


__all__ = ["CancelToken", "Cancelled", "ModelWorker"]
