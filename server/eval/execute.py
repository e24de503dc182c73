"""Executable correctness: put a completion back and run the tests that cover its file.

Runs in the code actions' sandbox (server/actions/sandbox.py: bubblewrap, no network, limits).
A case counts only where its tests discriminate: they pass on the unmodified copy (the baseline,
so already-failing or environment-dependent tests never count) and at least one of them fails
when the target is simply left out. A completion then passes when every baseline-passing test
still passes with it in place.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from context.masking import Mask
from server.actions.sandbox import RunResult, Sandbox

log = logging.getLogger(__name__)

# A covering test file of a library usually runs in seconds; a run beyond this is hanging.
DEFAULT_TEST_TIMEOUT_S = 60.0


@dataclass
class Coverage:
    """What the covering tests of one case can tell: `usable` when they discriminate."""

    tests: list[str]
    baseline_passed: set[str] = field(default_factory=set)
    removal_fails: bool = False

    @property
    def usable(self) -> bool:
        return bool(self.baseline_passed) and self.removal_fails


class Executor:
    """One sandbox copy of the repository for a whole run; baselines cached per test set."""

    def __init__(self, source: Path, timeout_s: float = DEFAULT_TEST_TIMEOUT_S) -> None:
        self.sandbox = Sandbox(source, timeout_s=timeout_s)
        self._baselines: dict[tuple[str, ...], set[str]] = {}
        self.runs = 0

    def close(self) -> None:
        self.sandbox.close()

    def _run(self, files: dict[str, str], tests: Sequence[str]) -> RunResult:
        self.runs += 1
        return self.sandbox.run_pytest(files, list(tests), extra_args=["-x", "-p", "no:randomly"])

    def _baseline(self, tests: Sequence[str]) -> set[str]:
        key = tuple(tests)
        if key not in self._baselines:
            # Without -x: every test that passes on the unmodified copy is wanted.
            self.runs += 1
            result = self.sandbox.run_pytest({}, list(tests), extra_args=["-p", "no:randomly"])
            passed = set() if result.timed_out or result.collection_error else set(result.passed())
            log.info("baseline %s: %d tests pass", " ".join(tests), len(passed))
            self._baselines[key] = passed
        return self._baselines[key]

    def coverage(self, mask: Mask, text: str, tests: Sequence[str]) -> Coverage:
        """Baseline and removal check for one case (two pytest runs at most, the first cached)."""
        cover = Coverage(list(tests))
        if not tests:
            return cover
        cover.baseline_passed = self._baseline(tests)
        if cover.baseline_passed:
            cover.removal_fails = not self._passes(cover, mask, text, "")
        return cover

    def passes(self, cover: Coverage, mask: Mask, text: str, completion: str) -> bool:
        """Whether the baseline-passing tests all pass with `completion` in place of the target."""
        return self._passes(cover, mask, text, completion)

    def _passes(self, cover: Coverage, mask: Mask, text: str, completion: str) -> bool:
        filled = text[: mask.start] + completion + text[mask.end :]
        result = self._run({mask.path: filled}, cover.tests)
        if result.timed_out or result.collection_error:
            return False
        passed = set(result.passed())
        failed = {o.name for o in result.failed()}
        # -x stops at the first failure: a baseline test that did not run after it is not a pass.
        return not (failed & cover.baseline_passed) and cover.baseline_passed <= passed
