"""Shared fixtures: the cursor marker, and skipping real-model tests when the model is not pulled."""

from __future__ import annotations

import os

import pytest

CURSOR = "█"
TEST_MODEL = "qwen2.5-coder-0.5b"


def split_cursor(source: str) -> tuple[str, str]:
    """Text before and after the single cursor marker."""
    assert source.count(CURSOR) == 1, "exactly one cursor marker expected"
    prefix, suffix = source.split(CURSOR)
    return prefix, suffix


def model_available(name: str = TEST_MODEL) -> bool:
    from server.model import registry

    try:
        spec = registry.load_registry().get(name)
        registry.resolve(spec)
    except registry.ModelError:
        return False
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    have_model = model_available()
    slow = os.environ.get("INFILLER_SLOW") == "1"
    for item in items:
        if "model" in item.keywords and not have_model:
            item.add_marker(
                pytest.mark.skip(reason=f"{TEST_MODEL} not pulled: run `infiller models pull {TEST_MODEL}`")
            )
        if "slow" in item.keywords and not slow:
            item.add_marker(pytest.mark.skip(reason="opt-in: set INFILLER_SLOW=1"))
