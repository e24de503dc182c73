"""Loading a registry model into a Runtime (kept apart so that importing the runtime stays cheap)."""

from __future__ import annotations

from server.model.registry import load_registry, resolve
from server.model.runtime import DEFAULT_N_CTX, Runtime, load_engine


def load_runtime(
    model: str | None = None, *, n_ctx: int = DEFAULT_N_CTX, n_threads: int | None = None
) -> Runtime:
    """The named (or default) model, which must be pulled; raises ModelError with the fix otherwise."""
    spec = load_registry().get(model)
    path = resolve(spec)
    return Runtime(load_engine(spec, path, n_ctx=n_ctx, n_threads=n_threads), spec)
