"""The daemon's HTTP doors (aiohttp): parse the client's request, make one core call, format the reply.

Middleware does what every endpoint shares: the bearer token (all but /health), error replies in
llama.cpp's/OpenAI's JSON shape, body-size limits (413), and the per-endpoint request and latency
metrics. Handlers never wait on the model in the event loop: they await the core's futures, and a
client that disconnects (aiohttp cancels its handler, see `handler_cancellation` in `serve`)
cancels its generation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from aiohttp import web

from server.daemon import protocol
from server.daemon.core import Busy, Core, NotReady
from server.daemon.metrics import CONTENT_TYPE, Metrics
from server.daemon.protocol import Answer, FimQuery, ProtocolError, TooLarge
from server.daemon.security import authorized
from server.model.runtime import CancelToken
from server.request import CompletionContext

log = logging.getLogger(__name__)

T = TypeVar("T")

# Request bodies: llama.vim sends 256 prefix lines, 64 suffix lines and up to 16 ring chunks of
# 64 lines (~150 KB of code at most); 2 MiB leaves room and still bounds what is parsed.
DEFAULT_MAX_BODY_BYTES = 2 << 20
# Prompt text (or token ids) accepted per request; windows cut it far shorter, this bounds the
# tokenizing work a single request can ask for.
DEFAULT_MAX_PROMPT_CHARS = 1 << 20
# The CLI's request waits this long for a workspace it names to be indexed.
INDEX_WAIT_S = 120.0
# Seconds a client refused with 503 is asked to wait.
RETRY_AFTER_S = 1

CORE: web.AppKey[Core] = web.AppKey("core", Core)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
TOKEN: web.AppKey[str] = web.AppKey("token", str)  # "" when none is required
MAX_PROMPT: web.AppKey[int] = web.AppKey("max_prompt", int)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(protocol.error_json(status, message), status=status, headers=headers)


def _endpoint(request: web.Request) -> str:
    """The route's pattern (bounded label values for metrics), "unmatched" for 404s."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Auth, error shapes, and metrics around every handler."""
    metrics = request.app[METRICS]
    endpoint = _endpoint(request)
    start = time.perf_counter()
    status = 500
    try:
        if request.path != "/health" and not authorized(
            request.headers.get("Authorization"), request.app[TOKEN] or None
        ):
            response: web.StreamResponse = _error(
                401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )
        else:
            response = await handler(request)
        status = response.status
        return response
    except web.HTTPRequestEntityTooLarge as exc:
        status = 413
        return _error(413, f"the request body is larger than this daemon accepts ({exc.text})")
    except web.HTTPException as exc:
        status = exc.status
        return _error(exc.status, exc.reason)
    except ProtocolError as exc:
        status = 400
        return _error(400, str(exc))
    except TooLarge as exc:
        status = 413
        return _error(413, str(exc))
    except Busy as exc:
        status = 503
        return _error(503, str(exc), {"Retry-After": str(RETRY_AFTER_S)})
    except NotReady as exc:
        status = 503
        return _error(503, f"the model is not ready: {exc}", {"Retry-After": str(RETRY_AFTER_S)})
    except asyncio.CancelledError:
        status = 499  # the client closed the connection (nginx's convention)
        raise
    except Exception as exc:
        log.exception("%s failed", endpoint)
        return _error(500, f"{type(exc).__name__}: {exc}")
    finally:
        metrics.requests.labels(endpoint, str(status)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


async def _json(request: web.Request) -> object:
    try:
        return await request.json()
    except web.HTTPException:
        raise
    except ValueError:
        raise ProtocolError("the request body is not valid JSON") from None


async def _run(request: web.Request, job: Callable[[CancelToken], T]) -> T:
    """Run a job on the model thread; if the client goes away meanwhile, cancel it."""
    core = request.app[CORE]
    future, token = core.submit(job)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        _cancel(request, token, "disconnect")
        raise


def _cancel(request: web.Request, token: CancelToken, reason: str) -> None:
    if not token.cancelled:
        token.cancel(reason)
        request.app[METRICS].cancellations.labels(reason).inc()


# --- streaming ---------------------------------------------------------------------------------


async def _stream(
    request: web.Request,
    job: Callable[[CancelToken, Callable[[str], None] | None], Answer],
    chunk: Callable[[str], bytes],
    final: Callable[[Answer], list[bytes]],
) -> web.StreamResponse:
    """Server-sent events: each piece as `chunk(piece)` while it is generated, then `final(answer)`."""
    core = request.app[CORE]
    loop = asyncio.get_running_loop()
    # Pieces come from the model thread in order; None (queued when the job ends) closes the stream.
    pieces: asyncio.Queue[str | None] = asyncio.Queue()

    def put(piece: str | None) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, piece)

    future, token = core.submit(lambda t: job(t, put))
    future.add_done_callback(lambda _f: put(None))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    try:
        await response.prepare(request)
        while (piece := await pieces.get()) is not None:
            await response.write(chunk(piece))
        answer = await asyncio.wrap_future(future)
        for event in final(answer):
            await response.write(event)
        await response.write_eof()
    except (asyncio.CancelledError, ConnectionResetError):
        _cancel(request, token, "disconnect")
        raise
    return response


# --- handlers ----------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    core = request.app[CORE]
    if core.status == "ready":
        # `indexing`: workspaces whose first index is not built yet (answers come without their context).
        return web.json_response(
            {"status": "ok", "model": core.model_name, "indexing": core.session.indexing()}
        )
    message = "Loading model" if core.status == "loading" else f"the model failed to load: {core.error}"
    return _error(503, message)


async def metrics_endpoint(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def models(request: web.Request) -> web.Response:
    return web.json_response(protocol.models_json(request.app[CORE].model_name))


async def props(request: web.Request) -> web.Response:
    """The part of llama-server's /props clients read (context size, slots)."""
    core = request.app[CORE]
    n_ctx = core.backend.n_ctx if core.backend is not None else 0
    return web.json_response(
        {"default_generation_settings": {"n_ctx": n_ctx}, "total_slots": 1, "model_path": core.model_name}
    )


async def tokenize(request: web.Request) -> web.Response:
    body = await _json(request)
    if not isinstance(body, dict) or not isinstance(body.get("content"), str):
        raise ProtocolError("'content' must be a string")
    content: str = body["content"]
    if len(content) > request.app[MAX_PROMPT]:
        raise TooLarge(f"'content' has {len(content):,} characters")
    core = request.app[CORE]
    tokens = await asyncio.get_running_loop().run_in_executor(None, core.tokenize, content)
    return web.json_response({"tokens": tokens})


async def infill(request: web.Request) -> web.StreamResponse:
    query, options = protocol.parse_infill(await _json(request), request.app[MAX_PROMPT])
    answer = await _fim(request, query)
    reply = protocol.select_fields(protocol.completion_json(answer), options.response_fields)
    if options.stream:
        return await _events(request, [protocol.sse(reply)])
    return web.json_response(reply)


async def _fim(request: web.Request, query: FimQuery) -> Answer:
    """A FIM answer: typed through an earlier one when the client's text allows, else from the model."""
    core = request.app[CORE]
    core.arrived()
    answer = core.typed_through(query)
    if answer is None:
        answer = await _run(request, lambda t: core.fim(query, t))
        core.remember(query, answer)
    core.grow()
    return answer


async def _events(request: web.Request, events: list[bytes]) -> web.StreamResponse:
    """A server-sent-events reply whose events are all known (FIM answers are post-processed whole)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for event in events:
        await response.write(event)
    await response.write_eof()
    return response


async def completion(request: web.Request) -> web.StreamResponse:
    query, stream = protocol.parse_completion(await _json(request), request.app[MAX_PROMPT])
    core = request.app[CORE]
    if stream:

        def final(answer: Answer) -> list[bytes]:
            return [protocol.sse({**protocol.completion_json(answer), "content": ""})]

        return await _stream(
            request,
            lambda t, emit: core.raw(query, t, emit),
            lambda piece: protocol.sse(protocol.completion_chunk(piece)),
            final,
        )
    answer = await _run(request, lambda t: core.raw(query, t))
    return web.json_response(protocol.completion_json(answer))


async def openai_completions(request: web.Request) -> web.StreamResponse:
    query, options = protocol.parse_openai(await _json(request), request.app[MAX_PROMPT])
    core = request.app[CORE]
    ident, created = protocol.new_id("cmpl"), int(time.time())

    def final(answer: Answer, text_sent: bool) -> list[bytes]:
        events = []
        if not text_sent and answer.text:
            events.append(protocol.sse(protocol.openai_chunk(answer.text, answer.model, ident, created)))
        last = protocol.openai_chunk("", answer.model, ident, created, answer.finish_reason)
        last["usage"] = protocol.usage(answer)
        events += [protocol.sse(last), protocol.sse("[DONE]")]
        return events

    if isinstance(query, FimQuery):
        # With a suffix: fill in the middle as /infill does (typed-through, the growing prompt); a
        # post-processed answer is sent once decided, so a stream carries it in one chunk.
        answer = await _fim(request, query)
        if options.stream:
            return await _events(request, final(answer, text_sent=False))
        return web.json_response(protocol.openai_completion(answer, ident, created))
    raw = query
    if options.stream:
        return await _stream(
            request,
            lambda t, emit: core.raw(raw, t, emit),
            lambda piece: protocol.sse(protocol.openai_chunk(piece, core.model_name, ident, created)),
            lambda answer: final(answer, text_sent=True),
        )
    answer = await _run(request, lambda t: core.raw(raw, t))
    return web.json_response(protocol.openai_completion(answer, ident, created))


async def fim_completions(request: web.Request) -> web.StreamResponse:
    query, options = protocol.parse_fim(await _json(request), request.app[MAX_PROMPT])
    ident, created = protocol.new_id("fim"), int(time.time())
    answer = await _fim(request, query)
    if options.stream:
        events = (
            [protocol.sse(protocol.fim_chunk(answer.text, answer.model, ident, created))]
            if answer.text
            else []
        )
        events.append(
            protocol.sse(protocol.fim_chunk("", answer.model, ident, created, answer.finish_reason))
        )
        events.append(protocol.sse("[DONE]"))
        return await _events(request, events)
    return web.json_response(protocol.fim_completion(answer, ident, created))


async def native_complete(request: web.Request) -> web.Response:
    """`infiller complete` through the daemon: the same CompletionResult JSON as in-process."""
    body = await _json(request)
    if not isinstance(body, dict):
        raise ProtocolError("the request body must be a JSON object")
    try:
        path = Path(str(body["path"]))
        text = str(body["text"])
        line, column = int(body["line"]), int(body["column"])
    except (KeyError, TypeError, ValueError):
        raise ProtocolError("expected {path, text, line, column}") from None
    if len(text) > request.app[MAX_PROMPT]:
        raise TooLarge(f"the file has {len(text):,} characters")
    core = request.app[CORE]
    context = bool(body.get("context", True))
    root = Path(str(body["root"])).resolve() if body.get("root") else core.root_for(path)
    if root is not None and context:
        ready = core.open_root(root)
        if ready is not None:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(ready)), INDEX_WAIT_S)
    cli_request = CompletionContext.at(path, text, line, column)
    reset = bool(body.get("reset_cache", False))
    result = await _run(
        request, lambda t: core.complete(cli_request, root, t, context=context, reset_cache=reset)
    )
    return web.json_response(result.as_json())


def build_app(
    core: Core, metrics: Metrics, *, token: str | None, max_body_bytes: int, max_prompt_chars: int
) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=max_body_bytes)
    app[CORE] = core
    app[METRICS] = metrics
    app[TOKEN] = token or ""
    app[MAX_PROMPT] = max_prompt_chars
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/models", models)
    app.router.add_get("/props", props)
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/infill", infill)
    app.router.add_post("/completion", completion)
    app.router.add_post("/completions", completion)
    app.router.add_post("/v1/completions", openai_completions)
    app.router.add_post("/fim/completions", fim_completions)
    app.router.add_post("/v1/fim/completions", fim_completions)
    app.router.add_post("/infiller/complete", native_complete)
    return app


async def serve(
    core: Core,
    metrics: Metrics,
    *,
    host: str,
    port: int,
    token: str | None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Listen until `stop` is set; the model loads while we listen (/health answers 503 until then)."""
    app = build_app(
        core, metrics, token=token, max_body_bytes=max_body_bytes, max_prompt_chars=max_prompt_chars
    )
    # handler_cancellation: a client that disconnects cancels its handler, hence its generation.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    core.start()
    if ready is not None:
        address = runner.addresses[0]
        ready(f"http://{_host_text(address[0])}:{address[1]}")
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
        await asyncio.get_running_loop().run_in_executor(None, core.close)


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host
