"""`infiller eval --tune`: the context configuration that does best on this repository.

The rule: most executable passes (where the repository's tests can tell), then most exact
matches, among configurations whose mean prompt is no longer than the default's (quality bought
with a longer prompt is paid on every keystroke). The default wins ties: a change must earn it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.eval.configs import DEFAULT, EvalConfig
from server.eval.report import Summary

# Mean prompt tokens may exceed the default's by this much and still count as "no more": the
# default's own prompt varies by a few tokens with what retrieval found.
PROMPT_TOKENS_SLACK = 1.02


@dataclass(frozen=True)
class Choice:
    config: str
    default: Summary
    chosen: Summary
    considered: int

    @property
    def changed(self) -> bool:
        return self.config != DEFAULT


def _score(s: Summary) -> tuple[float, float]:
    return (s.executable or 0.0, s.exact_match)


def writable(config: EvalConfig) -> bool:
    """Whether settings can express it: the classic cursor-line layout is a model trait, two
    passes are the `refine` setting (left to the user), and the oracle reads the answer."""
    return config.cursor_line_in_middle and not config.iterate and not config.oracle


def choose_config(summaries: Sequence[Summary], model: str, candidates: Sequence[str]) -> Choice:
    """The winning configuration of `model`'s summaries among `candidates` (the default when
    nothing beats it)."""
    rows = {
        s.config: s for s in summaries if s.model == model and (s.config in candidates or s.config == DEFAULT)
    }
    default = rows[DEFAULT]
    allowed = [s for s in rows.values() if s.prompt_tokens <= default.prompt_tokens * PROMPT_TOKENS_SLACK]
    best = default
    for s in allowed:
        if _score(s) > _score(best):
            best = s
    return Choice(best.config, default, best, len(allowed))


def context_settings(config: EvalConfig) -> dict[str, Any]:
    """The `[settings.context]` table (camelCase keys of server/settings.py) for a configuration.

    `refine` is left out: `--tune` never tries it, and writing it off would override a user who
    turned it on."""
    return {
        "sources": list(config.sources),
        "budgetTokens": config.context_tokens if config.sources else 0,
        "prefixTokens": config.prefix_tokens,
        "suffixTokens": config.suffix_tokens,
        "importsAboveWindow": config.imports_above_window,
    }
