"""The engines' processes: an HTTP server the replay starts and stops (ServerProcess), and what
the operating system says about them (Linux /proc): peak memory and CPU time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

# How often a starting server is asked whether it is ready.
READY_POLL_S = 0.2
# How long a server gets to exit once asked to, before it is killed.
STOP_WAIT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerProcess:
    """An HTTP server on a free loopback port, started and stopped by the replay; `/health` says
    when it is ready (`ready` reads its JSON answer)."""

    name = "server"

    def __init__(self, log: Path | None, start_timeout_s: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command: list[str] = []
        self.log = log
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    def ready(self, health: Any) -> bool:
        return True

    async def start(self, env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
        """Start it and wait until it is ready; seconds it took."""
        started = time.perf_counter()
        out = self.log.open("wb") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            self.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, env=env
        )
        async with aiohttp.ClientSession() as session:
            while time.perf_counter() - started < self.start_timeout_s:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode} (see {self.log})")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url + "/health") as r:
                        if r.status == 200 and self.ready(await r.json(content_type=None)):
                            return time.perf_counter() - started
                await asyncio.sleep(READY_POLL_S)
        raise TimeoutError(f"{self.name} did not become ready")

    def pids(self) -> dict[str, int]:
        """The processes to measure: by default the server is also the model."""
        if self.proc is None:
            return {}
        return {"server": self.proc.pid, "model": self.proc.pid}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_TICK = os.sysconf("SC_CLK_TCK")


def children_matching(pid: int, needle: str) -> list[int]:
    """Direct children of `pid` whose command line contains `needle`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        if ppid == pid and needle in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (the resident set's high-water mark) of `pid` in MiB, None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time `pid` has used so far, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine() -> dict[str, object]:
    """CPU model, core count and memory of this machine."""
    info: dict[str, object] = {"cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return info
