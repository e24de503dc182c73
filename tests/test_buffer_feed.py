"""The buffer feeder: a typing burst reaches the index once, and never after shutdown."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from server.features import sync


class _Server:
    """What the feeder uses of the language server: the index, the index thread, the closing flag."""

    def __init__(self) -> None:
        self.closing = False
        self.index = object()
        self.calls: list[Any] = []

    def index_call(self, fn: Any) -> asyncio.Future[None]:
        self.calls.append(fn)
        done: Future[None] = Future()
        done.set_result(None)
        return asyncio.wrap_future(done)


def test_a_burst_is_fed_once_and_a_timer_firing_after_shutdown_feeds_nothing() -> None:
    server = _Server()
    feeder = sync.BufferFeeder(server)  # type: ignore[arg-type]
    path = Path("/work/m.py")

    async def scenario() -> None:
        for text in ("a", "ab", "abc"):
            feeder.changed(path, text)
        await asyncio.sleep(sync.BUFFER_FEED_DELAY_S * 2)
        assert len(server.calls) == 1  # the burst, once
        feeder.changed(path, "abcd")
        server.closing = True  # shutdown comes before the burst's timer fires
        await asyncio.sleep(sync.BUFFER_FEED_DELAY_S * 2)
        assert len(server.calls) == 1

    asyncio.run(scenario())
