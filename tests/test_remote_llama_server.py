"""The remote backend against llama.cpp's own `llama-server`, real 0.5B: the in-process completion.

Opt-in (`INFILLER_SLOW=1`): the server is built from the llama.cpp sources vendored in the pinned
llama-cpp-python sdist by `bench/peer/build_llama_server.sh` (10-15 minutes on 2 cores, once; the
test builds it when missing). Same GGUF, same threads, greedy: the prompt tokens and the shown
completion must equal the in-process model's, and so must the likeliest first tokens (`n_probs`).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.peer.llamavim_client import repacking_runs
from tests.conftest import TEST_MODEL

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "bench" / "peer" / "build_llama_server.sh"
START_TIMEOUT_S = 120
# Same weights and threads; llama-server's own sampler chain and batch sizes may differ slightly.
PROBABILITY_TOLERANCE = 0.02


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-server on the test model (built when missing), its base URL while the module runs."""
    from server.model.registry import load_registry, resolve

    binary = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, check=True).stdout.strip()
    path = resolve(load_registry().get(TEST_MODEL))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp_path_factory.mktemp("llama-server") / "llama-server.log"
    log = log_path.open("wb")
    cmd = [binary, "-m", str(path), "--host", "127.0.0.1", "--port", str(port), "-t", "1", "-c", "4096"]
    if not repacking_runs(TEST_MODEL, path):
        cmd.append("--no-repack")  # a CPU that advertises AMX the VM does not enable: SIGSEGV with it
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert server.poll() is None, log_path.read_text()[-2000:]
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "llama-server did not become healthy"
            time.sleep(0.3)
        yield url
        assert server.poll() is None, log_path.read_text()[-2000:]  # it must not have died
    finally:
        server.terminate()
        server.wait(30)


def test_the_remote_backend_on_llama_server_completes_as_in_process(
    tmp_path: Path, llama_server: str
) -> None:
    from server.completion import Completer
    from server.model.loader import load_runtime
    from server.request import CompletionContext

    text = "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + \n"
    request = CompletionContext.at(tmp_path / "fib.py", text, 3, 30)
    remote = load_runtime(TEST_MODEL, backend=llama_server)
    try:
        over_http = Completer(remote).complete(request)
    finally:
        remote.close()  # type: ignore[attr-defined]
    local = Completer(load_runtime(TEST_MODEL, in_process=True)).complete(request)
    assert over_http.prompt is not None and local.prompt is not None
    assert over_http.prompt.tokens == local.prompt.tokens
    assert over_http.text == local.text == "fibonacci(n - 2)"


def test_llama_servers_likeliest_first_tokens_are_the_in_process_ones(llama_server: str) -> None:
    # Fix this's other answers to a lost expression start with these (`n_probs`): over HTTP they
    # must be the tokens, and nearly the probabilities, the model gives in-process.
    from server.model.loader import load_runtime

    prompt = "<|fim_prefix|>def area(width, height):\n    return <|fim_suffix|>\n<|fim_middle|>"
    remote = load_runtime(TEST_MODEL, backend=llama_server)
    try:
        tokens = remote.tokenize(prompt)
        there = remote.first_tokens(tokens, 4)
    finally:
        remote.close()  # type: ignore[attr-defined]
    local = load_runtime(TEST_MODEL, in_process=True)
    assert local.tokenize(prompt) == tokens
    here = local.first_tokens(tokens, 4)
    assert len(there) == len(here) >= 2, (there, here)
    assert [t for t, _ in there] == [t for t, _ in here], (there, here)
    assert all(abs(p - q) < PROBABILITY_TOLERANCE for (_, p), (_, q) in zip(there, here, strict=True))
