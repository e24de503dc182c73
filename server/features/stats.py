"""Statistics over LSP: the `infiller.stats` command, acceptance tracking and periodic saving.

Acceptance arrives as the `infiller.accepted` command (the inline item's command, run by the
client when the user accepts) and, from clients that forward them, the notifications
`infiller/didShowCompletion` and `infiller/didPartiallyAcceptCompletion` (`{id, acceptedLength}`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from server.features.inline import ACCEPT_COMMAND
from server.lsp.server import InfillerServer  # at run time: pygls resolves command annotations

log = logging.getLogger(__name__)

STATS_COMMAND = "infiller.stats"
DID_SHOW = "infiller/didShowCompletion"
DID_PARTIALLY_ACCEPT = "infiller/didPartiallyAcceptCompletion"
# Statistics are written at most this often (and on shutdown): a crash loses a minute at most.
SAVE_INTERVAL_S = 60.0


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def _save_periodically(server: InfillerServer) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(SAVE_INTERVAL_S)
        try:
            await loop.run_in_executor(None, server.stats.save)
        except OSError as exc:
            log.warning("could not save statistics: %s", exc)


def _start_saving(server: InfillerServer) -> None:
    server.spawn(_save_periodically(server))


def register(server: InfillerServer) -> None:
    server.on_initialized.append(_start_saving)

    @server.command(STATS_COMMAND)
    def stats_command(ls: InfillerServer, *args: Any) -> dict[str, Any]:
        """The statistics summary (the same JSON as `infiller stats --json`)."""
        summary = ls.stats.summary()
        summary["model"] = ls.loaded_model
        summary["index_ready"] = ls.index_ready
        summary["model_restarts"] = ls.session.restarts
        return summary

    @server.command(ACCEPT_COMMAND)
    def accepted(ls: InfillerServer, *args: Any) -> None:
        sid = _int(args[0]) if args else None
        chars = _int(args[1]) if len(args) > 1 else None
        if sid is not None:
            ls.session.suggester.accepted(sid, chars)

    @server.feature(DID_SHOW)
    def did_show(ls: InfillerServer, params: Any) -> None:
        log.debug("client showed suggestion %s", getattr(params, "id", None))

    @server.feature(DID_PARTIALLY_ACCEPT)
    def did_partially_accept(ls: InfillerServer, params: Any) -> None:
        sid = _int(getattr(params, "id", None))
        chars = _int(getattr(params, "acceptedLength", None))
        if sid is not None:
            ls.stats.record_partial(sid, chars or 0)
