"""The model in its own process: a supervised llama.cpp worker behind the Backend protocol.

llama.cpp is native code: on some CPUs it dies with a segmentation fault (AMX without the
kernel's tile state), it can run out of memory, and a user can `kill -9` it. None of that may
take the language server down. The parent keeps the vocabulary (tokenizing and counting stay
local and fast) and talks to a child that holds the weights over a socket pair:

    parent -> child   ("generate", tokens, max_tokens, heal) | ("prefill", tokens) | ("reset",)
                      | ("bench", prompt_tokens, gen_tokens) | ("exit",)
    child  -> parent  ("tick",)          between prompt chunks and before each token
                      ("text", piece)    each decoded piece
                      ("done", result) | ("cancelled", reason) | ("error", message)

The parent answers every "tick" and "text" with "go", "stop" (post-processing is done) or a
cancellation reason, so cancellation reaches the child between prompt chunks and tokens with
one local round trip (tens of microseconds against tens of milliseconds per token), and the
child never generates past what the editor wants. A prompt chunk is one llama.cpp decode of up
to 128 tokens (0.5-0.9 s for the 1.5B on 2 cores): a request that superseded a background read
waited that long for the model. So the parent also raises a flag in a byte both processes map,
which llama.cpp's abort callback reads while it computes: the chunk stops within one layer,
and llama.cpp drops the part it had cached. The child's stdout is the parent's stderr:
native code printing to stdout must never corrupt the language server's JSON-RPC stream.

A child that dies mid-request raises ModelProcessDied at once (no timeout to wait out); the
next request starts a new child after a backoff, and `on_event` tells the editor.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import mmap
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from server.model.llamacpp import EngineConfig, LlamaVocab
from server.model.registry import ModelSpec
from server.model.runtime import (
    DEFAULT_N_CTX,
    Cancelled,
    CancelToken,
    GenerationStats,
    OnText,
    Runtime,
)
from server.model.templates import FimTemplate

log = logging.getLogger(__name__)

# Longest silence from a busy child before it is declared hung: a 128-token prompt chunk on the
# 1.5B takes ~1-3 s on 2 busy cores; 120 s is far past any healthy chunk or token.
HUNG_AFTER_S = 120.0
# Loading reads the weights (1.1 GB for the 1.5B) from disk on a cold cache.
LOAD_TIMEOUT_S = 300.0
# While the child works, how often the parent looks at the request's cancel token to raise the
# abort flag: a cancelled read stops within about this long (plus one layer of the model).
ABORT_POLL_S = 0.01
# Restart backoff after a crash: 0.5 s, doubling, at most 30 s; after this many deaths in a row
# with no request served in between, give up and say so instead of crash-looping.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
MAX_CONSECUTIVE_DEATHS = 4

Event = Callable[[str, str], None]
"""on_event(kind, message): kind is "died", "restarted" or "gave-up"."""


class ModelProcessDied(RuntimeError):
    """The model process ended during a request (crash, out of memory, killed)."""


def describe_exit(code: int | None) -> str:
    """'killed by SIGSEGV (segmentation fault)' / 'exited with status 3' for a child's return code."""
    if code is None:
        return "is unresponsive"
    if code < 0:
        try:
            sig = signal.Signals(-code)
            return f"was killed by {sig.name} ({signal.strsignal(sig) or sig.name})"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class ModelProcess:
    """One child process holding one model in one configuration; not thread-safe (callers lock)."""

    def __init__(self, path: Path, family: str, config: EngineConfig, n_ctx: int) -> None:
        parent_sock, child_sock = socket.socketpair()
        self._conn = Connection(os.dup(parent_sock.fileno()))
        parent_sock.close()
        child_fd = child_sock.fileno()
        # The abort flag: one byte of an unlinked file that both processes map.
        with tempfile.TemporaryFile() as flag_file:
            flag_file.write(b"\0")
            flag_file.flush()
            self._abort = mmap.mmap(flag_file.fileno(), 1)
            flag_fd = os.dup(flag_file.fileno())
        command = [
            sys.executable,
            "-m",
            "server.model.process",
            "--fd",
            str(child_fd),
            "--model",
            str(path),
            "--family",
            family,
            "--n-ctx",
            str(n_ctx),
            "--threads",
            str(config.threads),
            "--extra-bufts",
            "1" if config.extra_bufts else "0",
            "--small-batch",
            str(config.small_batch),
            "--abort-fd",
            str(flag_fd),
        ]
        try:
            self.proc = subprocess.Popen(
                command,
                pass_fds=(child_fd, flag_fd),
                stdin=subprocess.DEVNULL,
                stdout=sys.stderr.fileno() if _has_fileno(sys.stderr) else subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            os.close(flag_fd)
        child_sock.close()
        self.config = config
        self.n_ctx = n_ctx
        reply = self._receive(LOAD_TIMEOUT_S)
        if reply[0] != "ready":
            self.kill()
            raise RuntimeError(f"the model process failed to load: {reply[1] if len(reply) > 1 else reply}")
        self.n_ctx = int(reply[1]["n_ctx"])

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def reap(self) -> str:
        """Why the (dead) child ended, its resources released."""
        return str(self._died())

    def _died(self) -> ModelProcessDied:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = None
        self._conn.close()
        return ModelProcessDied(f"the model process {describe_exit(code)}")

    def _receive(self, timeout: float, cancel: CancelToken | None = None) -> tuple[Any, ...]:
        """The child's next message; meanwhile a cancelled `cancel` raises the abort flag."""
        try:
            deadline = time.monotonic() + timeout
            step = ABORT_POLL_S if cancel is not None else timeout
            while not self._conn.poll(step):
                if cancel is not None and self._abort[0] == 0 and _interrupts(cancel):
                    self._abort[0] = 1
                if time.monotonic() >= deadline:
                    self.kill()
                    raise ModelProcessDied(
                        f"the model process was unresponsive for {timeout:.0f} s and was stopped"
                    )
            message: tuple[Any, ...] = self._conn.recv()
            return message
        except (EOFError, OSError):
            raise self._died() from None

    def _send(self, message: tuple[Any, ...] | str) -> None:
        try:
            self._conn.send(message)
        except (BrokenPipeError, ConnectionResetError, OSError):
            raise self._died() from None

    def call(
        self, request: tuple[Any, ...], *, on_text: OnText | None = None, cancel: CancelToken | None = None
    ) -> Any:
        """Send one request and serve its ticks and text until it finishes; returns its result."""
        self._abort[0] = 0
        self._send(request)
        while True:
            message = self._receive(HUNG_AFTER_S, cancel)
            kind = message[0]
            if kind == "tick":
                self._send(_cancelled(cancel) or "go")
            elif kind == "text":
                if reason := _cancelled(cancel):
                    self._send(reason)
                else:
                    self._send("go" if on_text is None or on_text(message[1]) else "stop")
            elif kind == "done":
                return message[1]
            elif kind == "cancelled":
                raise Cancelled(_cancelled(cancel) or message[1], *message[2:])
            else:
                raise RuntimeError(f"the model process failed: {message[1]}")

    def close(self) -> None:
        if self.alive:
            try:
                self._conn.send(("exit",))
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self._conn.close()
        self._abort.close()

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
            self.proc.wait()


def _cancelled(cancel: CancelToken | None) -> str | None:
    """The cancellation reason, or None while the request stands (composite tokens included)."""
    if cancel is None:
        return None
    try:
        cancel.check()
    except Cancelled as exc:
        return str(exc) or "cancelled"
    return None


def _interrupts(cancel: CancelToken) -> bool:
    """Whether `cancel` stops its request inside the prompt chunk being read (see CancelToken)."""
    return not cancel.whole_chunks and _cancelled(cancel) is not None


def _has_fileno(stream: Any) -> bool:
    try:
        stream.fileno()
        return True
    except (AttributeError, OSError, ValueError):
        return False


def _stats(result: dict[str, Any]) -> GenerationStats:
    return GenerationStats(**result)


class ProcessRuntime:
    """The Backend that runs a registry model in a supervised child process."""

    def __init__(
        self,
        spec: ModelSpec,
        path: Path,
        config: EngineConfig,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        on_event: Event | None = None,
    ) -> None:
        self.spec: ModelSpec | None = spec
        self.path = path
        self.config = config
        self.on_event = on_event
        self._vocab = LlamaVocab(path, spec.family)
        self._n_ctx = min(n_ctx, spec.context_length)
        self.lock = threading.Lock()
        self.restarts = 0
        self._deaths = 0  # in a row, reset by every request served
        self._process: ModelProcess | None = ModelProcess(path, spec.family, config, self._n_ctx)
        self._n_ctx = self._process.n_ctx

    # --- Backend ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else self._vocab.name

    @property
    def template(self) -> FimTemplate:
        return self._vocab.template

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def pid(self) -> int | None:
        return self._process.proc.pid if self._process is not None and self._process.alive else None

    def tokenize(self, text: str) -> list[int]:
        return self._vocab.tokenize(text)

    def count_tokens(self, text: str) -> int:
        return len(self._vocab.tokenize(text)) if text else 0

    def reset(self) -> None:
        self._call(("reset",))

    def prefill(self, tokens: Sequence[int], cancel: CancelToken | None = None) -> GenerationStats:
        return _stats(self._call(("prefill", list(tokens)), cancel=cancel))

    def generate(
        self,
        prompt: Sequence[int],
        *,
        max_tokens: int,
        on_text: OnText,
        cancel: CancelToken | None = None,
        heal: str = "",
    ) -> GenerationStats:
        request = ("generate", list(prompt), max_tokens, heal)
        return _stats(self._call(request, on_text=on_text, cancel=cancel))

    def first_tokens(
        self, prompt: Sequence[int], k: int, cancel: CancelToken | None = None
    ) -> list[tuple[str, float]]:
        likeliest: list[tuple[str, float]] = self._call(("first_tokens", list(prompt), k), cancel=cancel)
        return likeliest

    def close(self) -> None:
        with self.lock:
            if self._process is not None:
                self._process.close()
                self._process = None
        self._vocab.close()

    # --- supervision -----------------------------------------------------------------------

    def _call(
        self, request: tuple[Any, ...], *, on_text: OnText | None = None, cancel: CancelToken | None = None
    ) -> Any:
        with self.lock:
            process = self._ensure_process(cancel)
            try:
                result = process.call(request, on_text=on_text, cancel=cancel)
            except ModelProcessDied as exc:
                self._process = None
                self._deaths += 1
                message = f"{self.name}: {exc}; restarting it for the next request"
                log.error("%s", message)
                self._emit("died", message)
                raise
            self._deaths = 0
            return result

    def _ensure_process(self, cancel: CancelToken | None) -> ModelProcess:
        if self._process is not None and self._process.alive:
            return self._process
        if self._process is not None:  # died between requests
            message = f"{self.name}: {self._process.reap()}; restarting it"
            log.error("%s", message)
            self._emit("died", message)
            self._process = None
            self._deaths += 1
        if self._deaths >= MAX_CONSECUTIVE_DEATHS:
            message = (
                f"{self.name}: the model process died {self._deaths} times in a row; "
                "giving up (run `infiller doctor` to see why)"
            )
            self._emit("gave-up", message)
            raise ModelProcessDied(message)
        if self._deaths:
            _sleep(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self._deaths - 1)), cancel)
        assert self.spec is not None
        self._process = ModelProcess(self.path, self.spec.family, self.config, self._n_ctx)
        if self._deaths:
            self.restarts += 1
            self._emit("restarted", f"{self.name}: model process restarted")
        return self._process

    def _emit(self, kind: str, message: str) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, message)
            except Exception:  # a listener's failure must not hide the model's
                log.exception("model event listener failed")


def _sleep(seconds: float, cancel: CancelToken | None) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if cancel is not None:
            cancel.check()
        time.sleep(min(0.05, left))


# --- the child -------------------------------------------------------------------------------

# Code read and written in the speed self-test: ordinary Python, so the measured speed is the
# speed of the prompts the model really sees.
BENCH_TEXT = '''
def parse_header(line: str, *, strict: bool = False) -> tuple[str, str]:
    """Split an HTTP header line into its name and value."""
    name, sep, value = line.partition(":")
    if not sep:
        if strict:
            raise ValueError(f"not a header: {line!r}")
        return line.strip(), ""
    return name.strip().lower(), value.strip()


class Headers(dict):
    def add(self, line: str) -> None:
        name, value = parse_header(line)
        if name in self:
            self[name] = f"{self[name]}, {value}"
        else:
            self[name] = value
'''


class _Link(CancelToken):
    """The child's view of the parent: each check and each piece is a round trip for its verdict."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self._conn = conn

    def _ask(self, message: tuple[Any, ...]) -> str:
        self._conn.send(message)
        reply: str = self._conn.recv()
        return reply

    def check(self) -> None:
        reply = self._ask(("tick",))
        if reply != "go":
            raise Cancelled(reply)

    def on_text(self, piece: str) -> bool:
        reply = self._ask(("text", piece))
        if reply not in ("go", "stop"):
            raise Cancelled(reply)
        return reply == "go"


# The batch size below the cliff the self-test looks for (see EngineConfig.small_batch).
SMALL_BATCH = 7


def _bench(runtime: Runtime, prompt_tokens: int, gen_tokens: int) -> dict[str, float]:
    """Prompt reading and generation speed (tokens/s), from a cold cache."""
    engine = runtime.engine
    text = BENCH_TEXT
    tokens = engine.tokenize(text)
    while len(tokens) < prompt_tokens:
        text += BENCH_TEXT
        tokens = engine.tokenize(text)
    prompt_s = float("inf")
    for _ in range(2):  # the best of two: the first read also pays one-time warm-up costs
        runtime.reset()
        start = time.perf_counter()
        engine.eval(tokens[:prompt_tokens])
        prompt_s = min(prompt_s, time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(gen_tokens):
        engine.eval([engine.argmax()])
    gen_s = time.perf_counter() - start
    # The small-batch cliff: a read of SMALL_BATCH + 1 tokens against one of SMALL_BATCH, after
    # the prompt (best of two each).
    base = len(engine.cached_tokens())
    cost: dict[int, float] = {}
    for n in (SMALL_BATCH, SMALL_BATCH + 1) * 2:
        start = time.perf_counter()
        engine.eval(tokens[:n])
        cost[n] = min(cost.get(n, float("inf")), time.perf_counter() - start)
        engine.truncate(base)
    runtime.reset()
    return {
        "prompt_tps": prompt_tokens / prompt_s,
        "gen_tps": gen_tokens / gen_s,
        "small_batch_ratio": cost[SMALL_BATCH + 1] / cost[SMALL_BATCH],
    }


def _serve(conn: Connection, runtime: Runtime) -> None:
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone: so are we
        op = request[0]
        if op == "exit":
            return
        link = _Link(conn)
        try:
            if op == "generate":
                result: Any = dataclasses.asdict(
                    runtime.generate(
                        request[1], max_tokens=request[2], on_text=link.on_text, cancel=link, heal=request[3]
                    )
                )
            elif op == "prefill":
                result = dataclasses.asdict(runtime.prefill(request[1], link))
            elif op == "first_tokens":
                result = runtime.first_tokens(request[1], request[2], link)
            elif op == "reset":
                runtime.reset()
                result = None
            elif op == "bench":
                result = _bench(runtime, request[1], request[2])
            else:
                raise ValueError(f"unknown request {op!r}")
        except Cancelled as exc:
            conn.send(("cancelled", str(exc), exc.progress))
            continue
        except (EOFError, OSError):
            return
        except Exception as exc:
            log.exception("model request %s failed", op)
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            continue
        conn.send(("done", result))


# Fault injection for tests: reproduces, on any machine, what CPUs that advertise AMX without the
# kernel's tile state do (the process dies of SIGSEGV on its first decode with repacking on), so the
# self-test's recovery is tested end to end where no such CPU is at hand.
FAULT_ENV = "INFILLER_FAULT_REPACKING_SEGV"


def _segfault(tokens: Sequence[int]) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def child_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.model.process")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--family", required=True)
    parser.add_argument("--n-ctx", type=int, default=DEFAULT_N_CTX)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--extra-bufts", type=int, choices=(0, 1), default=1)
    parser.add_argument("--small-batch", type=int, default=0)
    parser.add_argument("--abort-fd", type=int, default=-1, help="the parent's abort flag (one byte)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=int(os.environ.get("INFILLER_LOG_LEVEL", logging.WARNING)),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s model-process: %(message)s",
    )
    conn = Connection(args.fd)
    from server.model.llamacpp import LlamaEngine

    try:
        config = EngineConfig(
            threads=args.threads, extra_bufts=bool(args.extra_bufts), small_batch=args.small_batch
        )
        abort = mmap.mmap(args.abort_fd, 1) if args.abort_fd >= 0 else None
        engine = LlamaEngine(args.model, args.family, n_ctx=args.n_ctx, config=config, abort=abort)
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return 1
    if os.environ.get(FAULT_ENV) == "1" and config.extra_bufts:
        engine.eval = _segfault  # type: ignore[method-assign]
    conn.send(("ready", {"n_ctx": engine.n_ctx}))
    _serve(conn, Runtime(engine))
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
