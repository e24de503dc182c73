"""Loading a registry model into a Backend (kept apart so that importing the runtime stays cheap).

By default the model runs in a supervised process (`server.model.process`) in the configuration
the machine's self-test chose (`server.model.selftest`); `in_process` keeps it in this process,
for benchmarks that measure what the process boundary costs. A `backend` URL (the setting, or a
`models.toml` entry's `backend = "http://…"`) puts the model on a server instead
(`server.model.remote`); the registry model then only names the prompt template and vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from server.model.process import Event, ProcessRuntime
from server.model.registry import ModelError, ModelSpec, load_registry, resolve
from server.model.runtime import DEFAULT_N_CTX, Backend, Runtime
from server.model.selftest import Report, configure


def load_runtime(
    model: str | None = None,
    *,
    n_ctx: int = DEFAULT_N_CTX,
    n_threads: int | None = None,
    report: Report | None = None,
    on_event: Event | None = None,
    in_process: bool = False,
    backend: str | None = None,
    api_key_env: str | None = None,
) -> Backend:
    """The named (or default) model, which must be pulled; raises ModelError with the fix otherwise.

    With `backend` (or the entry's own) naming a server, the model runs there (RemoteBackend).
    """
    spec = load_registry().get(model)
    target = backend if is_remote(backend) else spec.backend
    if target and is_remote(target):
        return _remote(spec, target, api_key_env)
    path = resolve(spec)
    config = configure(spec, path, threads=n_threads, report=report)
    if in_process:
        from server.model.llamacpp import LlamaEngine

        engine = LlamaEngine(path, spec.family, n_ctx=min(n_ctx, spec.context_length), config=config)
        return Runtime(engine, spec)
    return ProcessRuntime(spec, path, config, n_ctx=n_ctx, on_event=on_event)


Kind = Literal["llama-server", "openai"]


@dataclass(frozen=True)
class BackendTarget:
    """Where a remote model lives: its kind, base URL and the environment variable of its key."""

    kind: Kind
    base_url: str
    api_key_env: str | None = None

    def describe(self) -> str:
        return f"{self.kind} at {self.base_url}"


def is_remote(backend: str | None) -> bool:
    """True when a backend setting names a server rather than "local"."""
    return bool(backend) and str(backend).strip().lower() not in ("", "local")


def parse_backend(spec: str, api_key_env: str | None = None) -> BackendTarget:
    """A `backend` setting as a target; raises ValueError naming the accepted forms."""
    text = spec.strip()
    kind: Kind = "llama-server"
    scheme, sep, rest = text.partition("+")
    if sep and scheme.lower() in ("openai", "llama", "llamacpp"):
        kind = "openai" if scheme.lower() == "openai" else "llama-server"
        text = rest
    if not re.match(r"^https?://[^/\s]+", text, re.IGNORECASE):
        raise ValueError(
            f'backend {spec!r} is not a server URL: use "local", "http://host:port" (llama-server) '
            'or "openai+http://host:port/v1" (an OpenAI-compatible completion server)'
        )
    return BackendTarget(kind, text.rstrip("/"), api_key_env or None)


def _remote(spec: ModelSpec, target: str, api_key_env: str | None) -> Backend:
    from server.model.remote import RemoteError, connect

    try:
        parsed = parse_backend(target, api_key_env)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    try:
        vocab_path = resolve(spec) if spec.file else None
    except ModelError:
        vocab_path = None  # not pulled: the server tokenizes, or counts are estimated
    try:
        return connect(parsed, spec, vocab_path=vocab_path)
    except RemoteError as exc:
        raise ModelError(str(exc)) from None
