"""The daemon without the real model: request/response translation, limits, file location, auth,
and the HTTP app in-process over a scripted engine (413, 401, 503 under load, disconnects).

The real-model end-to-end tests are in tests/test_daemon_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from server.completion import Completer
from server.daemon import locate, protocol
from server.daemon.app import build_app
from server.daemon.core import Core, DaemonConfig, Limits, StopScanner
from server.daemon.metrics import Metrics
from server.daemon.security import ConfigError, authorized, is_loopback, resolve_token
from server.model.fake import FakeEngine
from server.model.loader import parse_backend
from server.model.remote import EstimateTokenizer, RemoteBackend, estimate_tokens, parse_event, sse_events
from server.model.runtime import Runtime
from server.model.templates import QWEN
from server.request import CompletionContext

# The request llama.vim (autoload/llama.vim, s:fim) sends, field for field.
LLAMA_VIM_REQUEST: dict[str, Any] = {
    "id_slot": 0,
    "input_prefix": "from pkg import shapes\n\n\ndef total(sides, length):\n",
    "input_suffix": "\n",
    "input_extra": [{"text": "def total(sides, length):\n", "time": 1, "filename": "pkg/report.py"}],
    "prompt": "    return shapes.",
    "n_predict": 128,
    "stop": [],
    "n_indent": 4,
    "top_k": 40,
    "top_p": 0.90,
    "samplers": ["top_k", "top_p", "infill"],
    "stream": False,
    "cache_prompt": True,
    "t_max_prompt_ms": 500,
    "t_max_predict_ms": 1000,
    "response_fields": [
        "content",
        "timings/prompt_n",
        "timings/prompt_ms",
        "timings/prompt_per_token_ms",
        "timings/prompt_per_second",
        "timings/predicted_n",
        "timings/predicted_ms",
        "timings/predicted_per_token_ms",
        "timings/predicted_per_second",
        "truncated",
        "tokens_cached",
    ],
}

SHAPES = '''"""Geometry helpers."""


def scaled_perimeter_of_polygon(sides: int, length: float, factor: float) -> float:
    """Perimeter of a regular polygon, scaled."""
    return sides * length * factor
'''
REPORT = "from pkg import shapes\n\n\ndef total(sides, length):\n    return shapes.\n"


def make_repo(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "shapes.py").write_text(SHAPES)
    (root / "pkg" / "report.py").write_text(REPORT)
    return root


# --- protocol ----------------------------------------------------------------------------------


def test_llama_vim_request_parses_to_a_fim_query() -> None:
    query, options = protocol.parse_infill(LLAMA_VIM_REQUEST, 1 << 20)
    assert query.prefix == LLAMA_VIM_REQUEST["input_prefix"] + "    return shapes."
    assert query.suffix == "\n"
    assert query.extra == (protocol.ExtraChunk("pkg/report.py", "def total(sides, length):\n"),)
    assert (query.max_tokens, query.deadline_ms, query.min_indent, query.stop) == (128, 1000.0, 4, ())
    assert not query.prefill_only and not options.stream
    assert options.response_fields == tuple(LLAMA_VIM_REQUEST["response_fields"])


def test_llama_vim_ring_update_is_a_prefill() -> None:
    # llama.vim's s:ring_update: n_predict 0, empty prefix; it reads nothing back.
    query, options = protocol.parse_infill(
        {
            "input_prefix": "",
            "input_suffix": "",
            "input_extra": [],
            "prompt": "",
            "n_predict": 0,
            "response_fields": [""],
        },
        1000,
    )
    assert query.prefill_only
    assert protocol.select_fields({"content": "x"}, options.response_fields) == {}


def test_response_fields_are_flat_paths_as_llama_cpp_answers_them() -> None:
    answer = protocol.Answer(
        text="abc",
        model="m",
        prompt_tokens=10,
        reused_tokens=4,
        generated_tokens=3,
        prompt_ms=12.0,
        generation_ms=30.0,
    )
    reply = protocol.select_fields(protocol.completion_json(answer), LLAMA_VIM_REQUEST["response_fields"])
    assert reply["content"] == "abc"
    assert reply["timings/prompt_n"] == 6 and reply["timings/predicted_n"] == 3
    assert reply["timings/predicted_per_token_ms"] == 10.0
    assert reply["tokens_cached"] == 13 and reply["truncated"] is False
    assert "timings" not in reply


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({"input_prefix": 3}, "'input_prefix' must be a string"),
        ({"n_predict": "many"}, "'n_predict' must be an integer"),
        ({"input_extra": [1]}, "'input_extra' items"),
        ({"stop": [1]}, "'stop'"),
    ],
)
def test_malformed_infill_requests_say_what_is_wrong(body: object, message: str) -> None:
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.parse_infill(body, 1000)


def test_oversized_prompts_are_refused() -> None:
    with pytest.raises(protocol.TooLarge):
        protocol.parse_infill({"input_prefix": "x" * 600, "input_suffix": "y" * 600}, 1000)
    with pytest.raises(protocol.TooLarge):
        protocol.parse_completion({"prompt": list(range(2000))}, 1000)


def test_openai_request_with_suffix_is_fill_in_the_middle() -> None:
    query, options = protocol.parse_openai(
        {"model": "m", "prompt": ["def f():\n    "], "suffix": "\n", "max_tokens": 20, "stream": True}, 1000
    )
    assert (
        isinstance(query, protocol.FimQuery) and query.prefix == "def f():\n    " and query.max_tokens == 20
    )
    assert options.stream
    plain, _ = protocol.parse_openai({"prompt": "1, 2,"}, 1000)
    assert isinstance(plain, protocol.RawQuery)
    assert plain.max_tokens == protocol.OPENAI_DEFAULT_MAX_TOKENS


def test_continue_fim_request_and_its_chunks() -> None:
    # Continue's OpenAI adapter (fimStream): these fields, stream true, reads choices[0].delta.content.
    body = {
        "model": "m",
        "prompt": "a = ",
        "suffix": "\n",
        "max_tokens": 64,
        "temperature": 0.01,
        "top_p": None,
        "frequency_penalty": None,
        "presence_penalty": None,
        "stop": ["\n\n"],
        "stream": True,
    }
    query, options = protocol.parse_fim(body, 1000)
    assert (query.prefix, query.suffix, query.max_tokens, query.stop, options.stream) == (
        "a = ",
        "\n",
        64,
        ("\n\n",),
        True,
    )
    chunk = protocol.fim_chunk("1", "m", "id", 0)
    assert chunk["choices"][0]["delta"]["content"] == "1"


# --- limits and stop strings -------------------------------------------------------------------


def test_deadline_ends_at_a_new_line_after_the_time_is_up() -> None:
    now = [0.0]
    limits = Limits(deadline_ms=100, clock=lambda: now[0])
    assert limits("x = 1")  # the clock starts at the first piece
    now[0] = 0.5
    assert limits("x = 1 + 2")  # over time, but mid-line: keep going
    assert not limits("x = 1 + 2\n")


def test_n_indent_cuts_the_first_line_indented_less() -> None:
    limits = Limits(min_indent=4)
    assert limits("a\n        b\n    c")
    assert not limits("a\n    b\nc")
    assert limits.cut("a\n    b\nc = 1\n") == ("a\n    b", "")


def test_stop_strings_cut_and_are_reported() -> None:
    limits = Limits(stop=["<END>"])
    assert not limits("abc<END>")
    assert limits.cut("abc<END>def") == ("abc", "<END>")


def test_stop_scanner_never_streams_part_of_a_stop_string() -> None:
    sent: list[str] = []
    scanner = StopScanner(["STOP"], sent.append)
    for piece in ["ab", "cS", "TO"]:
        assert scanner.feed(piece)
    assert "".join(sent) == "abc"  # "STO" may still become "STOP": held back
    assert not scanner.feed("P and more")
    assert scanner.text == "abc" and scanner.word == "STOP" and "".join(sent) == "abc"


# --- locating the current file -----------------------------------------------------------------


def test_the_file_whose_lines_end_the_prefix_is_chosen() -> None:
    prefix = "import os\n\n\ndef load(path):\n    with open(path) as fh:\n        data = fh.read()\n    ret"
    tail = locate.tail_lines(prefix)
    assert tail == ["data = fh.read()", "with open(path) as fh:", "def load(path):", "import os"]
    candidates = {
        "a.py": "import os\n\ndef other():\n    pass\n",
        "b.py": "import os\n\n\ndef load(path):\n"
        "    with open(path) as fh:\n        data = fh.read()\n    return data\n",
    }
    assert locate.best_match(tail, candidates) == "b.py"
    assert locate.best_match(tail, {"a.py": candidates["a.py"]}) is None


def test_client_file_names_match_indexed_paths() -> None:
    files = ["pkg/report.py", "pkg/shapes.py", "other/report.py"]
    assert locate.names_matching("pkg/report.py", files) == ["pkg/report.py"]
    assert locate.names_matching("report.py", files) == ["pkg/report.py", "other/report.py"]
    assert locate.names_matching("/home/me/proj/pkg/shapes.py", files) == ["pkg/shapes.py"]


def test_the_prefix_window_is_placed_in_the_file_to_recover_its_head() -> None:
    text = "import os\nimport sys\n\n" + "".join(f"x{i} = {i}\n" for i in range(10))
    window = "".join(f"x{i} = {i}\n" for i in range(5, 10)) + "y = "
    assert locate.head_before(text, window) == "import os\nimport sys\n\n" + "".join(
        f"x{i} = {i}\n" for i in range(5)
    )
    assert locate.head_before(text, "unrelated\nlines\nhere\nz = ") == ""


# --- security ----------------------------------------------------------------------------------


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.com"))


def test_off_loopback_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFILLER_DAEMON_TOKEN", raising=False)
    assert resolve_token("127.0.0.1", None) is None
    with pytest.raises(ConfigError, match="INFILLER_DAEMON_TOKEN"):
        resolve_token("0.0.0.0", None)
    with pytest.raises(ConfigError, match="MY_TOKEN"):
        resolve_token("0.0.0.0", "MY_TOKEN")
    monkeypatch.setenv("MY_TOKEN", "s3cret")
    assert resolve_token("0.0.0.0", "MY_TOKEN") == "s3cret"


def test_bearer_token_check() -> None:
    assert authorized(None, None)
    assert authorized("Bearer s3cret", "s3cret") and authorized("bearer s3cret", "s3cret")
    assert not authorized(None, "s3cret")
    assert not authorized("Bearer s3cre", "s3cret")
    assert not authorized("Basic s3cret", "s3cret")


# --- remote backend pieces ---------------------------------------------------------------------


def test_backend_setting_forms() -> None:
    assert parse_backend("http://gpu:8080/").kind == "llama-server"
    target = parse_backend("openai+https://api.example/v1", "KEY")
    assert (target.kind, target.base_url, target.api_key_env) == ("openai", "https://api.example/v1", "KEY")
    with pytest.raises(ValueError, match="not a server URL"):
        parse_backend("gpu:8080")


def test_sse_events_and_both_servers_events() -> None:
    lines = iter(['data: {"content": "a", "stop": false}', "", ": comment", "data: [DONE]", ""])
    events = list(sse_events(lines))
    assert events == ['{"content": "a", "stop": false}', "[DONE]"]
    final = parse_event(
        "llama-server",
        json.dumps({"content": "", "stop": True, "stop_type": "limit", "timings": {"prompt_n": 3}}),
    )
    assert final.final and final.stop_reason == "max-tokens" and final.timings == {"prompt_n": 3}
    piece = parse_event("openai", json.dumps({"choices": [{"text": "x", "finish_reason": None}]}))
    assert piece.text == "x" and not piece.final
    assert parse_event("openai", "[DONE]").final


def test_estimate_tokenizer_round_trips_and_over_counts() -> None:
    tok = EstimateTokenizer(QWEN.special_tokens())
    text = "<|fim_prefix|>def f(x):\n    return x  # ✓\n<|fim_suffix|>\n<|fim_middle|>"
    assert tok.detokenize(tok.tokenize(text)) == text
    engine = FakeEngine(lambda _p: "")  # one token per byte: the most a real vocabulary could need
    source = "def scaled_perimeter_of_polygon(sides, length):\n    return sides * length\n"
    assert estimate_tokens(source) >= len(source.encode()) // 2
    assert estimate_tokens(source) < len(engine.tokenize(source))


# --- the app in-process, over a scripted engine ------------------------------------------------


@asynccontextmanager
async def daemon(
    script: Callable[[str], str],
    *,
    delay_s: float = 0.0,
    token: str | None = None,
    max_queue: int = 8,
    roots: tuple[Path, ...] = (),
    max_body_bytes: int = 1 << 20,
    max_prompt_chars: int = 1 << 19,
    load_gate: threading.Event | None = None,
) -> AsyncIterator[tuple[str, Core, Metrics]]:
    def load() -> Runtime:
        if load_gate is not None:
            load_gate.wait(10)
        return Runtime(FakeEngine(script, delay_s=delay_s))

    metrics = Metrics()
    core = Core(DaemonConfig(roots=roots, max_queue=max_queue), metrics, load=load)
    app = build_app(
        core, metrics, token=token, max_body_bytes=max_body_bytes, max_prompt_chars=max_prompt_chars
    )
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    loaded = core.start()
    if load_gate is None:
        await asyncio.wrap_future(loaded)
        for root in roots:
            ready = core.open_root(root)
            assert ready is not None
            await asyncio.wrap_future(ready)
    try:
        yield f"http://{host}:{port}", core, metrics
    finally:
        if load_gate is not None:
            load_gate.set()
        await runner.cleanup()
        await asyncio.get_running_loop().run_in_executor(None, core.close)


def _metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def grown(client: httpx.AsyncClient, request: dict[str, Any], deadline_s: float = 10.0) -> int:
    """Ask as llama.vim's ring update does when the user is idle (`n_predict` 0: read the prompt,
    generate nothing) until the prompt at that place stops growing; its size in tokens."""
    idle = {**request, "n_predict": 0, "response_fields": None}
    sizes: list[int] = []
    deadline = time.monotonic() + deadline_s
    while len(sizes) < 2 or sizes[-1] != sizes[-2]:
        assert time.monotonic() < deadline, f"the prompt kept growing: {sizes}"
        sizes.append((await client.post("/infill", json=idle)).json()["tokens_evaluated"])
        await asyncio.sleep(0.6)  # a pause (growth waits for one: GROW_QUIET_S)
    return sizes[-1]


def test_a_new_place_is_answered_from_a_small_prompt_that_grows_while_the_client_is_idle(
    tmp_path: Path,
) -> None:
    """As in the language server: the first answer at a new place comes from a cold prompt (the
    1.5B reads ~2,000 tokens for the full one, 18 s on 2 cores, before its first word), which grows
    to the full one while no request comes."""
    repo = make_repo(tmp_path / "repo")
    (repo / "pkg" / "report.py").write_text(REPORT + "".join(f"\n\n# note {i}" for i in range(150)))

    async def main() -> None:
        async with (
            daemon(lambda _p: "x", roots=(repo,)) as (url, _core, _m),
            httpx.AsyncClient(base_url=url) as client,
        ):
            request = {**LLAMA_VIM_REQUEST, "response_fields": None}
            request["input_suffix"] = "".join(f"\n\n# note {i}" for i in range(150))
            cold = (await client.post("/infill", json=request)).json()["tokens_evaluated"]
            full = await grown(client, request)
            assert cold < full, (cold, full)

    asyncio.run(main())


def test_llama_vim_request_gets_the_other_files_definition(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")

    def script(prompt: str) -> str:
        # The scripted model answers with what the prompt lets it know.
        return (
            "scaled_perimeter_of_polygon(sides, length, 1.0)"
            if "def scaled_perimeter" in prompt
            else "guess()"
        )

    async def main() -> None:
        async with (
            daemon(script, roots=(repo,)) as (url, _core, _m),
            httpx.AsyncClient(base_url=url) as client,
        ):
            # The fake model's tokens are characters: its cold prompt has no room for the definition.
            await grown(client, LLAMA_VIM_REQUEST)
            full = (await client.post("/infill", json={**LLAMA_VIM_REQUEST, "response_fields": None})).json()
            assert full["content"] == "scaled_perimeter_of_polygon(sides, length, 1.0)"
            assert full["infiller"]["file"] == str(repo / "pkg" / "report.py")
            assert "pkg/shapes.py" in full["infiller"]["context"]
            reply = await client.post("/infill", json=LLAMA_VIM_REQUEST)
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body["content"] == "scaled_perimeter_of_polygon(sides, length, 1.0)"
            assert set(body) == set(LLAMA_VIM_REQUEST["response_fields"])

    asyncio.run(main())


def test_a_repositorys_tuned_settings_file_applies_to_the_daemon_too(tmp_path: Path) -> None:
    """`infiller eval --tune` writes `.infiller.toml`; a llama.vim user gets its settings too,
    and a change to the file applies from the next request, with no restart."""
    repo = make_repo(tmp_path / "repo")
    settings = repo / ".infiller.toml"
    settings.write_text('[why]\nreason = "tuned"\n\n[settings.context]\nbudgetTokens = 0\n')

    def script(prompt: str) -> str:
        return "from_definition()" if "def scaled_perimeter" in prompt else "guess()"

    async def main() -> None:
        async with (
            daemon(script, roots=(repo,)) as (url, _core, _m),
            httpx.AsyncClient(base_url=url) as client,
        ):
            request = {**LLAMA_VIM_REQUEST, "response_fields": None}
            off = (await client.post("/infill", json=request)).json()
            assert (off["content"], off["infiller"]["context"]) == ("guess()", [])
            settings.write_text('[settings.context]\nsources = ["definitions"]\n')
            # Another line below: not an answer being typed through, which would come from memory.
            request["input_suffix"] = "\n\n"
            await grown(client, request)  # the fake model's cold prompt has no room for the definition
            on = (await client.post("/infill", json=request)).json()
            assert on["content"] == "from_definition()" and "pkg/shapes.py" in on["infiller"]["context"]

    asyncio.run(main())


def test_a_client_typing_through_an_answer_gets_the_rest_without_the_model(tmp_path: Path) -> None:
    """llama.vim asks again after each key: typing what was suggested is answered from the cache."""
    repo = make_repo(tmp_path / "repo")
    prompts: list[str] = []

    def script(prompt: str) -> str:
        prompts.append(prompt)
        return "scaled_perimeter_of_polygon(sides, length, 1.0)"

    async def main() -> None:
        async with (
            daemon(script, roots=(repo,)) as (url, _core, _m),
            httpx.AsyncClient(base_url=url) as client,
        ):
            first = (await client.post("/infill", json={**LLAMA_VIM_REQUEST, "response_fields": None})).json()
            assert first["content"] == "scaled_perimeter_of_polygon(sides, length, 1.0)"
            asked = len(prompts)
            typed = {**LLAMA_VIM_REQUEST, "prompt": LLAMA_VIM_REQUEST["prompt"] + "scaled_", "stream": True}
            reply = await client.post("/infill", json=typed)
            assert reply.status_code == 200, reply.text
            event = json.loads(reply.text.split("data: ", 1)[1])
            assert event["content"] == "perimeter_of_polygon(sides, length, 1.0)"
            assert len(prompts) == asked, "the typed-through request reached the model"
            # Typed against the suggestion: the model is asked again.
            other = {**LLAMA_VIM_REQUEST, "prompt": LLAMA_VIM_REQUEST["prompt"] + "area("}
            assert (await client.post("/infill", json=other)).status_code == 200
            assert len(prompts) > asked
            metrics = (await client.get("/metrics")).text
            assert _metric(metrics, "infiller_typed_through_total") == 1

    asyncio.run(main())


def test_a_bracket_the_editor_closed_is_not_in_the_prompt_nor_doubled_in_the_answer(tmp_path: Path) -> None:
    """llama.vscode sends VS Code's auto-closed `)` as the start of `input_suffix`: the model reads
    the same prompt as without it (the KV cache and the typed-through cache stay those of the line
    being typed), and the answer stops before the `)` that is already there."""
    repo = make_repo(tmp_path / "repo")
    call = "    return shapes.scaled_perimeter_of_polygon("

    async def prompt_and_answer(suffix: str) -> tuple[str, str]:
        prompts: list[str] = []

        def script(prompt: str) -> str:
            prompts.append(prompt)
            return "sides, length, 1.0)"

        request = {**LLAMA_VIM_REQUEST, "prompt": call, "input_suffix": suffix, "response_fields": None}
        async with (
            daemon(script, roots=(repo,)) as (url, _core, _m),
            httpx.AsyncClient(base_url=url) as client,
        ):
            answer = (await client.post("/infill", json=request)).json()["content"]
        return prompts[-1], answer  # the whole prompt, after its parts were read

    async def main() -> None:
        plain_prompt, plain_answer = await prompt_and_answer("\n")
        closed_prompt, closed_answer = await prompt_and_answer(")\n")
        assert plain_answer == "sides, length, 1.0)"
        assert closed_answer == "sides, length, 1.0"
        assert closed_prompt == plain_prompt

    asyncio.run(main())


def test_health_says_how_many_workspaces_are_still_being_indexed(tmp_path: Path) -> None:
    """A client (the typing replay) can wait for the index as well as for the model."""
    first, second = make_repo(tmp_path / "first"), make_repo(tmp_path / "second")
    gate = threading.Event()

    async def main() -> None:
        async with (
            daemon(lambda _p: "x", roots=(first,)) as (url, core, _m),
            httpx.AsyncClient(base_url=url) as client,
        ):
            assert (await client.get("/health")).json() == {"status": "ok", "model": "fake", "indexing": 0}
            opening = core.session.open_index

            def held(root: Path, *args: Any, **kwargs: Any) -> Any:
                gate.wait(10)
                return opening(root, *args, **kwargs)

            core.session.open_index = held  # type: ignore[method-assign]
            ready = core.open_root(second)
            assert ready is not None
            health = await client.get("/health")
            assert health.status_code == 200 and health.json()["indexing"] == 1
            gate.set()
            await asyncio.wrap_future(ready)
            assert (await client.get("/health")).json()["indexing"] == 0

    asyncio.run(main())


def test_health_is_503_while_loading_and_auth_guards_the_rest() -> None:
    gate = threading.Event()

    async def main() -> None:
        async with (
            daemon(lambda _p: "x", token="s3cret", load_gate=gate) as (url, core, _m),
            httpx.AsyncClient(base_url=url) as client,
        ):
            loading = await client.get("/health")
            assert loading.status_code == 503 and loading.json()["error"]["message"] == "Loading model"
            assert (await client.get("/v1/models")).status_code == 401
            gate.set()
            for _ in range(100):
                if core.status == "ready":
                    break
                await asyncio.sleep(0.02)
            assert (await client.get("/health")).status_code == 200
            authed = await client.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
            assert authed.status_code == 200 and authed.json()["data"][0]["id"] == "fake"
            wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401

    asyncio.run(main())


def test_oversized_bodies_and_prompts_get_413() -> None:
    async def main() -> None:
        async with (
            daemon(lambda _p: "x", max_body_bytes=10_000, max_prompt_chars=1000) as (url, _c, _m),
            httpx.AsyncClient(base_url=url) as client,
        ):
            big = await client.post("/infill", content=b'{"input_prefix": "' + b"x" * 20_000 + b'"}')
            assert big.status_code == 413 and big.json()["error"]["code"] == 413
            long_prompt = await client.post("/v1/completions", json={"prompt": "y" * 5000})
            assert long_prompt.status_code == 413
            bad = await client.post("/completion", content=b"{not json")
            assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]

    asyncio.run(main())


def test_overload_gets_clear_503s_and_everything_else_is_served() -> None:
    async def main() -> None:
        async with (
            daemon(lambda _p: "abcdefgh", delay_s=0.01, max_queue=2) as (url, _core, _m),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            replies = await asyncio.gather(
                *(client.post("/completion", json={"prompt": f"p{i}", "n_predict": 8}) for i in range(12))
            )
            statuses = sorted(r.status_code for r in replies)
            assert set(statuses) == {200, 503}, statuses
            assert statuses.count(200) >= 3
            busy = next(r for r in replies if r.status_code == 503)
            assert busy.headers["Retry-After"] == "1" and "busy" in busy.json()["error"]["message"]
            assert all(r.json()["content"] == "abcdefgh" for r in replies if r.status_code == 200)
            metrics = (await client.get("/metrics")).text
            assert _metric(
                metrics, "infiller_requests_total", endpoint="/completion", status="503"
            ) == statuses.count(503)
            assert _metric(metrics, "infiller_queue_depth") == 0

    asyncio.run(main())


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_twenty_clients_two_hundred_requests_no_errors_no_leaks() -> None:
    """The bounded load test: only intended 503s, no leaked threads, flat memory."""
    clients, per_client = 20, 10

    async def main() -> None:
        async with (
            daemon(lambda p: "x" * (len(p) % 7 + 1), delay_s=0.0005, max_queue=8) as (url, _core, _m),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):

            async def one_client(n: int) -> list[int]:
                statuses = []
                for i in range(per_client):
                    body = {
                        "input_prefix": f"def f{n}_{i}(x):\n",
                        "input_suffix": "\n",
                        "prompt": "    return ",
                    }
                    reply = await client.post("/infill", json=body)
                    assert reply.status_code in (200, 503), reply.text
                    statuses.append(reply.status_code)
                return statuses

            await asyncio.gather(*(one_client(n) for n in range(clients)))  # warm-up
            threads, rss = threading.active_count(), _rss_mb()
            statuses = [
                s for run in await asyncio.gather(*(one_client(n) for n in range(clients))) for s in run
            ]
            assert len(statuses) == clients * per_client
            assert statuses.count(200) >= clients, statuses  # the queue serves, it does not only refuse
            assert threading.active_count() <= threads + 2
            assert _rss_mb() - rss < 32, (rss, _rss_mb())
            metrics = (await client.get("/metrics")).text
            assert _metric(metrics, "infiller_queue_depth") == 0

    asyncio.run(main())


def test_a_client_that_disconnects_cancels_its_generation() -> None:
    async def main() -> None:
        # 0.2 s per token: 200 tokens would hold the model for 40 s.
        async with (
            daemon(lambda _p: "z" * 200, delay_s=0.2) as (url, _core, _m),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            task = asyncio.ensure_future(
                client.post("/completion", json={"prompt": "long", "n_predict": 200})
            )
            await asyncio.sleep(0.5)
            task.cancel()
            start = time.monotonic()
            text = ""
            while time.monotonic() - start < 5:
                text = (await client.get("/metrics")).text
                if _metric(text, "infiller_cancellations_total", reason="disconnect") >= 1:
                    break
                await asyncio.sleep(0.05)
            assert _metric(text, "infiller_cancellations_total", reason="disconnect") == 1
            # The model is free again at once: a short request is served well before 40 s.
            quick = await client.post("/completion", json={"prompt": "q", "n_predict": 1})
            assert quick.status_code == 200 and time.monotonic() - start < 5

    asyncio.run(main())


def test_metrics_are_prometheus_text() -> None:
    async def main() -> None:
        async with daemon(lambda _p: "ok") as (url, _c, _m), httpx.AsyncClient(base_url=url) as client:
            await client.post("/completion", json={"prompt": "hello", "n_predict": 4})
            await client.post("/completion", json={"prompt": "hello", "n_predict": 4})
            reply = await client.get("/metrics")
            assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            families = {f.name: f for f in text_string_to_metric_families(reply.text)}
            for name in (
                "infiller_requests",
                "infiller_request_duration_seconds",
                "infiller_generated_tokens",
                "infiller_prompt_cache_hits",
                "infiller_cancellations",
                "infiller_queue_depth",
                "infiller_model_worker_restarts",
                "process_resident_memory_bytes",
            ):
                assert name in families, name
            assert _metric(reply.text, "infiller_generated_tokens_total") == 4
            assert _metric(reply.text, "infiller_prompt_cache_hits_total") == 1  # the second reused the first

    asyncio.run(main())


@contextmanager
def daemon_in_thread(script: Callable[[str], str]) -> Iterator[str]:
    """The in-process daemon on its own event loop thread, for synchronous clients."""
    started = threading.Event()
    stop: list[Callable[[], None]] = []
    url: list[str] = []

    def run() -> None:
        async def main() -> None:
            async with daemon(script) as (address, _c, _m):
                url.append(address)
                done = asyncio.Event()
                loop = asyncio.get_running_loop()
                stop.append(lambda: loop.call_soon_threadsafe(done.set))
                started.set()
                await done.wait()

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield url[0]
    finally:
        stop[0]()
        thread.join(10)


def test_completer_on_a_remote_backend_matches_in_process() -> None:
    def script(prompt: str) -> str:
        return "fib(n - 1) + fib(n - 2)\nprint('more')" if "return " in prompt else "?"

    text = "def fib(n):\n    if n < 2:\n        return n\n    return \n"
    request = CompletionContext.at(Path("/tmp/fib.py"), text, 3, 11)
    local = Completer(Runtime(FakeEngine(script))).complete(request)
    with daemon_in_thread(script) as url:
        for target in (url, f"openai+{url}/v1"):
            remote = RemoteBackend(parse_backend(target), template=QWEN)
            result = Completer(remote).complete(request)
            remote.close()
            assert (
                (result.text, result.reason)
                == (local.text, local.reason)
                == ("fib(n - 1) + fib(n - 2)", "line-end")
            )


def test_a_served_registry_model_needs_no_weights(tmp_path: Path) -> None:
    from server.model.registry import load_registry

    toml = tmp_path / "models.toml"
    toml.write_text(
        'default = "gpu"\n[[model]]\nname = "gpu"\nfamily = "qwen"\nbackend = "http://gpu-box:8080"\n',
        encoding="utf-8",
    )
    spec = load_registry(toml).get("gpu")
    assert (spec.backend, spec.file, spec.context_length) == ("http://gpu-box:8080", "", 4096)


def test_a_remote_answer_loses_the_healed_text_it_begins_with() -> None:
    from server.model.remote import _StripLeading

    seen: list[str] = []
    strip = _StripLeading(" su", lambda p: seen.append(p) is None)
    for piece in [" ", "sum", "(values)"]:
        strip(piece)
    assert "".join(seen) == "m(values)"
    seen.clear()
    other = _StripLeading(" ", lambda p: seen.append(p) is None)
    other("fibonacci(n - 2)")  # the server did not write the space: nothing is dropped
    assert seen == ["fibonacci(n - 2)"]


def test_a_remote_answer_asked_to_start_on_the_next_line_loses_what_it_wrote_on_the_cursors() -> None:
    """A header's body (or the hot streak's next line) is asked for with a healed new line, which a
    server cannot enforce: a comment it writes on the header's line is dropped, the body kept."""
    from server.model.remote import _StripLeading

    seen: list[str] = []
    strip = _StripLeading("\n", lambda p: seen.append(p) is None)
    for piece in ["  #", " type: ignore", "\n        return", " 0\n"]:
        strip(piece)
    assert "".join(seen) == "        return 0\n"
    seen.clear()
    obeyed = _StripLeading("\n", lambda p: seen.append(p) is None)
    for piece in ["\n    ", "return 0"]:
        obeyed(piece)
    assert "".join(seen) == "    return 0"


def test_first_token_probabilities_are_read_from_every_server_reply_shape() -> None:
    from server.model.remote import top_token_probabilities

    new_llama = {"completion_probabilities": [{"token": "pull", "logprob": -0.1, "top_logprobs": [
        {"token": "pull", "logprob": -0.1}, {"token": "values", "logprob": -2.5}]}]}  # fmt: skip
    old_llama = {"completion_probabilities": [{"content": "pull", "probs": [
        {"tok_str": "values", "prob": 0.1}, {"tok_str": "pull", "prob": 0.8}]}]}  # fmt: skip
    openai = {"choices": [{"text": "pull", "logprobs": {"top_logprobs": [{"values": -2.5, "pull": -0.1}]}}]}
    for reply in (new_llama, old_llama, openai):
        pairs = top_token_probabilities(reply)
        assert [text for text, _ in pairs] == ["pull", "values"], reply
        assert 0 < pairs[1][1] < pairs[0][1] <= 1
    assert top_token_probabilities({"content": "pull"}) == [] == top_token_probabilities([1])


def test_a_server_that_gives_no_probabilities_offers_no_other_starts() -> None:
    # Fix this then tries greedy answers only: no error, no invented alternatives.
    with daemon_in_thread(lambda prompt: "fib(n - 1)") as url:
        for target in (url, f"openai+{url}/v1"):
            remote = RemoteBackend(parse_backend(target), template=QWEN)
            try:
                assert remote.first_tokens(remote.tokenize("def fib(n):\n    return "), 3) == []
            finally:
                remote.close()
