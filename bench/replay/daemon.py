"""`infiller daemon` as the server behind llama.vim's client in the typing replay (`--daemon`).

The client is the peer's (bench/peer/llamavim_client.py: llama.vim's logic and its `/infill`
requests, unchanged); only the server differs. So a llama.vim user who points the plugin at
`infiller daemon` instead of `llama-server` is measured on the same keystrokes as the peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.peer.llamavim_client import free_port
from bench.replay.procs import children_matching

REPO = Path(__file__).resolve().parents[2]
# Loading the model and indexing the replay's workspace, on a busy 2-core machine.
START_TIMEOUT_S = 600.0
POLL_S = 0.2


class DaemonServer:
    """`infiller daemon` on loopback over the replay's workspace, with its own state directory."""

    def __init__(self, model: str, threads: int, workspace: Path, log: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            sys.executable, "-m", "server", "daemon",
            "--port", str(self.port),
            "--root", str(workspace),
            "--model", model,
            "--threads", str(threads),
        ]  # fmt: skip
        self.log = log
        self.state = Path(tempfile.mkdtemp(prefix="infiller-replay-daemon-"))
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> float:
        """Start it and wait until /health says the model is loaded and no workspace is indexing."""
        started = time.perf_counter()
        out = self.log.open("wb") if self.log else subprocess.DEVNULL
        env = {**os.environ, "INFILLER_STATE_DIR": str(self.state)}
        self.proc = subprocess.Popen(
            self.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO, env=env
        )
        async with aiohttp.ClientSession() as session:
            while time.perf_counter() - started < START_TIMEOUT_S:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"infiller daemon exited with {self.proc.returncode} (see {self.log})")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url + "/health") as r:
                        if r.status == 200 and not (await r.json()).get("indexing"):
                            return time.perf_counter() - started
                await asyncio.sleep(POLL_S)
        raise TimeoutError("infiller daemon did not become ready")

    def pids(self) -> dict[str, int]:
        if self.proc is None:
            return {}
        pids = {"server": self.proc.pid}
        model = children_matching(self.proc.pid, "server.model.process")
        if model:
            pids["model"] = model[0]
        return pids

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
