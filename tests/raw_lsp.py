"""The server over real stdio with hand-made frames: broken ones included, which pygls's client cannot send.

Every wait is short and checks that the server process is still alive, so a test whose server
died fails at once with the tail of its log instead of sitting in a long timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# A request the server leaves unanswered this long is hung (the scripted model answers in ms).
REQUEST_TIMEOUT_S = 10.0


class ServerDied(AssertionError):
    pass


class RawServer:
    """`infiller serve` with a scripted model; frames in and out by hand."""

    def __init__(self, tmp_path: Path, engine: str = "fast") -> None:
        self.state = tmp_path / "state"
        self.state.mkdir(parents=True, exist_ok=True)
        self.log_path = self.state / "server.log"
        env = {**os.environ, "INFILLER_STATE_DIR": str(self.state)}
        self._stderr = (self.state / "stderr.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--fake-engine", f"tests.lsp_fakes:{engine}",
             "--log-file", str(self.log_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, cwd=str(REPO), env=env,
        )  # fmt: skip
        self._write_lock = threading.Lock()
        self._responses: dict[Any, dict[str, Any]] = {}
        self._arrived = threading.Condition()
        self.notifications: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._next_id = 1000
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    # --- output -----------------------------------------------------------------------------

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    with self._arrived:
                        self._arrived.notify_all()
                    return
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                elif line in (b"\r\n", b"\n") and length is not None:
                    break
            message = json.loads(out.read(length))
            if "method" in message and "id" in message:
                # A request from the server (registerCapability, progress): a client answers it.
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            elif "method" in message:
                self.notifications.put(message)
            else:
                with self._arrived:
                    self._responses[message.get("id")] = message
                    self._arrived.notify_all()

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log, and of its stderr (where a crash's traceback goes)."""
        out = []
        for path in (self.log_path, self.state / "stderr.log"):
            with contextlib.suppress(OSError):
                out.append(path.read_text(encoding="utf-8", errors="replace")[-chars:])
        return "\n".join(out) or "(no log)"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def response(self, msg_id: Any, timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        """The response to `msg_id`; fails at once if the server dies, after `timeout` if it is silent."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while msg_id not in self._responses:
                if not self.alive():
                    raise ServerDied(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no response to {msg_id!r} in {timeout} s:\n{self.log_tail()}")
                self._arrived.wait(min(left, 0.1))
            return self._responses.pop(msg_id)

    # --- input ------------------------------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        with self._write_lock:
            try:
                stdin.write(data)
                stdin.flush()
            except BrokenPipeError as exc:
                raise ServerDied(f"server gone:\n{self.log_tail()}") from exc

    @staticmethod
    def frame(body: bytes, length: int | None = None) -> bytes:
        return b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length) + body

    def send(self, message: Any) -> None:
        self.send_bytes(self.frame(json.dumps(message).encode()))

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def request(self, method: str, params: Any = None, timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        """Send a request and return its response message (with `result` or `error`)."""
        msg_id = self.new_id()
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return self.response(msg_id, timeout)

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    # --- LSP conveniences -------------------------------------------------------------------

    def initialize(self, root: Path) -> dict[str, Any]:
        reply = self.request(
            "initialize", {"processId": os.getpid(), "rootUri": root.as_uri(), "capabilities": {}}
        )
        assert "result" in reply, reply
        self.notify("initialized", {})
        return reply

    def stats(self) -> dict[str, Any]:
        reply = self.request("workspace/executeCommand", {"command": "infiller.stats", "arguments": []})
        assert "result" in reply, reply
        result: dict[str, Any] = reply["result"]
        return result

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["model"] is not None and stats["index_ready"]:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"model or index not ready: {stats}")
            time.sleep(0.05)

    def open(self, uri: str, text: str, version: int = 1) -> None:
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "python", "version": version, "text": text}},
        )

    def inline(
        self, uri: str, line: int, character: int, timeout: float = REQUEST_TIMEOUT_S
    ) -> dict[str, Any]:
        return self.request(
            "textDocument/inlineCompletion",
            {
                "textDocument": {"uri": uri},
                "position": {"line": line, "character": character},
                "context": {"triggerKind": 1},
            },
            timeout,
        )

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def close(self) -> None:
        try:
            if self.alive():
                msg_id = self.new_id()
                self.send({"jsonrpc": "2.0", "id": msg_id, "method": "shutdown", "params": None})
                self.response(msg_id, timeout=5)
                self.notify("exit")
                self.proc.wait(timeout=5)
        except (AssertionError, subprocess.TimeoutExpired, OSError):
            pass
        finally:
            if self.alive():
                self.proc.kill()
                self.proc.wait(timeout=5)
            for stream in (self.proc.stdin, self.proc.stdout, self._stderr):
                if stream is not None:
                    stream.close()
