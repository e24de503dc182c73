"""The one generate → verify → feed-back loop that Fix this and edit-by-instruction share.

An action hands the loop a plan (its strategies per round, in the order the evidence chose) and
a verifier. Each round asks every strategy for its proposals (a readable origin and a way to make the
candidate: a constant for the no-model ones, a generation for the others), makes and verifies
them one at a time, tells the strategy why a candidate was rejected (so its next round can show
the model), and stops at the first candidate the action calls final. Everything is bounded:
rounds (gains stop after 2-3: the Debugging Decay Index, "How Many Tries"), candidates verified
(each is a sandbox run) and model generations (each is seconds on a laptop CPU). One readable
line per candidate tried goes to the progress report and into the result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from server.model.chat import ProgressFn, no_progress
from server.model.runtime import CancelToken

log = logging.getLogger(__name__)

# Characters of a rejection reason kept on a candidate's line.
MAX_TRIED_CHARS = 110
# Progress percentages the loop spans (the caller reports the set-up before, "done" after).
FIRST_PCT = 10
LAST_PCT = 95


@dataclass
class Verdict:
    """Whether a candidate is kept, and what was checked (or why it was rejected)."""

    ok: bool
    reason: str = ""
    checks: list[str] = field(default_factory=list)
    cause_verified: bool = False
    tests_passed: int = 0


@dataclass(frozen=True)
class Proposal:
    """One candidate to try: `make` returns the whole new text, or None for no usable answer."""

    origin: str  # readable: "line 8 `<` -> `<=`", "re-infill line 8", "rewrite"
    make: Callable[[], str | None]
    uses_model: bool = True
    # Another answer to the prompt the proposal before it had the model read (one that starts
    # with a less likely first token): it costs its own tokens only, so it does not count among
    # the generations, and one that does not exist (no such token likely enough) leaves no line.
    branch: bool = False


class Strategy(Protocol):
    """A source of candidates: what to try in a round, and what to learn from a rejection."""

    def propose(self, round_no: int) -> list[Proposal]: ...

    def rejected(self, proposal: Proposal, text: str, verdict: Verdict) -> None: ...


class Constant:
    """Candidates known up front (no model): tried in one round (`in_round`, the first unless
    said otherwise); rejections teach nothing."""

    def __init__(self, candidates: Sequence[tuple[str, str]], in_round: int = 1) -> None:
        self.candidates = list(candidates)
        self.in_round = in_round

    def propose(self, round_no: int) -> list[Proposal]:
        if round_no != self.in_round:
            return []
        return [Proposal(origin, _const(text), uses_model=False) for origin, text in self.candidates]

    def rejected(self, proposal: Proposal, text: str, verdict: Verdict) -> None:
        return None


@dataclass(frozen=True)
class Budget:
    """The loop's hard caps: past any of them no further candidate is made."""

    rounds: int
    candidates: int  # verified (one sandbox run each)
    generations: int  # model calls
    seconds: float = float("inf")  # no new candidate starts after this much wall time


@dataclass
class Accepted:
    origin: str
    text: str
    verdict: Verdict


@dataclass
class RoundsResult:
    accepted: list[Accepted]
    tried: list[str]  # one readable line per candidate tried, in order
    rejected: list[tuple[str, str]]  # (origin, reason)
    rounds: int
    generations: int
    candidates: int
    model_s: float
    verify_s: float
    stopped: str = ""  # why the search ended early ("" when it ran its course or found one)


def tried_line(origin: str, verdict: Verdict) -> str:
    """`✓ line 8 `<` -> `<=`: 3/3 related tests pass` / `✗ rewrite: breaks test_a`."""
    if verdict.ok:
        return f"✓ {origin}: {', '.join(verdict.checks)}"
    reason = (verdict.reason or "no change").split("\n", 1)[0]
    reason = reason.split(": ", 1)[0] if reason.startswith(("breaks ", "tests still fail")) else reason
    if len(reason) > MAX_TRIED_CHARS:
        reason = reason[: MAX_TRIED_CHARS - 1] + "…"
    return f"✗ {origin}: {reason}"


def run_rounds(
    plan: Callable[[int], Sequence[Strategy]],
    verify: Callable[[str], Verdict],
    *,
    budget: Budget,
    final: Callable[[Verdict], bool],
    cancel: CancelToken,
    progress: ProgressFn = no_progress,
    skip: Callable[[str], bool] = lambda text: False,
) -> RoundsResult:
    """Try the proposals of `plan(round_no)`'s strategies, in that order, round by round, until
    a candidate's verdict is `final` or a cap is hit.

    `skip(text)`: a candidate not worth a verification (already verified, say) is passed over
    without a line. Raises Cancelled when cancelled."""
    started = time.perf_counter()
    out = RoundsResult([], [], [], 0, 0, 0, 0.0, 0.0)
    for round_no in range(1, budget.rounds + 1):
        proposals = [p for s in plan(round_no) for p in _tagged(s, round_no)]
        if not proposals:
            break
        out.rounds = round_no
        for i, (strategy, proposal) in enumerate(proposals):
            cancel.check()
            if out.candidates >= budget.candidates:
                out.stopped = f"the cap of {budget.candidates} candidates was reached"
            elif proposal.uses_model and not proposal.branch and out.generations >= budget.generations:
                continue  # cheaper proposals may still fit
            elif time.perf_counter() - started > budget.seconds:
                out.stopped = f"the time budget of {budget.seconds:.0f} s was spent"
            if out.stopped:
                return out
            pct = FIRST_PCT + int(
                (LAST_PCT - FIRST_PCT) * ((round_no - 1) + i / len(proposals)) / budget.rounds
            )
            last = f" (last: {out.tried[-1]})" if out.tried else ""
            progress(f"trying {proposal.origin}{last}", pct)
            t0 = time.perf_counter()
            try:
                text = proposal.make()
            except ValueError as exc:  # e.g. a prompt the context window cannot hold
                log.warning("candidate %s not made: %s", proposal.origin, exc)
                text = None
            if proposal.uses_model:
                out.generations += not proposal.branch
                out.model_s += time.perf_counter() - t0
            if text is None and proposal.branch:
                continue
            if text is None:
                out.rejected.append((proposal.origin, "no answer"))
                out.tried.append(f"✗ {proposal.origin}: no answer")
                continue
            if skip(text):
                continue
            cancel.check()
            t0 = time.perf_counter()
            verdict = verify(text)
            out.verify_s += time.perf_counter() - t0
            out.candidates += 1
            line = tried_line(proposal.origin, verdict)
            out.tried.append(line)
            log.info("candidate %s", line)
            if not verdict.ok:
                out.rejected.append((proposal.origin, verdict.reason or "no change"))
                strategy.rejected(proposal, text, verdict)
                continue
            out.accepted.append(Accepted(proposal.origin, text, verdict))
            if final(verdict):
                return out
    return out


def _tagged(strategy: Strategy, round_no: int) -> list[tuple[Strategy, Proposal]]:
    return [(strategy, p) for p in strategy.propose(round_no)]


def _const(text: str) -> Callable[[], str | None]:
    return lambda: text


__all__ = [
    "Accepted",
    "Budget",
    "Constant",
    "Proposal",
    "RoundsResult",
    "Strategy",
    "Verdict",
    "run_rounds",
    "tried_line",
]
