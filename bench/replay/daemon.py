"""`infiller daemon` as the server behind llama.vim's client in the typing replay (`--daemon`).

The client is the peer's (bench/peer/llamavim_client.py: llama.vim's logic and its `/infill`
requests, unchanged); only the server differs. So a llama.vim user who points the plugin at
`infiller daemon` instead of `llama-server` is measured on the same keystrokes as the peer.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.replay.procs import ServerProcess, children_matching

REPO = Path(__file__).resolve().parents[2]
# Loading the model and indexing the replay's workspace, on a busy 2-core machine.
START_TIMEOUT_S = 600.0


class DaemonServer(ServerProcess):
    """`infiller daemon` on loopback over the replay's workspace, with its own state directory."""

    name = "infiller daemon"

    def __init__(self, model: str, threads: int, workspace: Path, log: Path | None = None):
        super().__init__(log, START_TIMEOUT_S)
        self.command = [
            sys.executable, "-m", "server", "daemon",
            "--port", str(self.port),
            "--root", str(workspace),
            "--model", model,
            "--threads", str(threads),
        ]  # fmt: skip
        self.state = Path(tempfile.mkdtemp(prefix="infiller-replay-daemon-"))

    def ready(self, health: Any) -> bool:
        """The model is loaded (200) and no workspace is still being indexed."""
        return isinstance(health, dict) and not health.get("indexing")

    async def start(self, env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
        env = {**os.environ, "INFILLER_STATE_DIR": str(self.state), **(env or {})}
        return await super().start(env, cwd or REPO)

    def pids(self) -> dict[str, int]:
        """The daemon, and its model process."""
        if self.proc is None:
            return {}
        pids = {"server": self.proc.pid}
        model = children_matching(self.proc.pid, "server.model.process")
        if model:
            pids["model"] = model[0]
        return pids
