"""The shared round loop of the code actions: caps, stopping at the first final verdict,
feedback to the strategy, one readable line per candidate. Pure: no model, no sandbox."""

from __future__ import annotations

from server.actions.rounds import Budget, Constant, Proposal, Verdict, run_rounds
from server.model.runtime import CancelToken


class Scripted:
    """A model strategy: one generation per round, remembering why the last one was rejected."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.feedback: list[str] = []
        self.calls = 0

    def propose(self, round_no: int) -> list[Proposal]:
        return [Proposal(f"rewrite {round_no}", self.make)]

    def make(self) -> str:
        self.calls += 1
        return self.answers.pop(0)

    def rejected(self, proposal: Proposal, text: str, verdict: Verdict) -> None:
        self.feedback.append(f"{proposal.origin}: {verdict.reason}")


def _verify(text: str) -> Verdict:
    if text == "good":
        return Verdict(True, checks=["parses", "3/3 related tests pass"], cause_verified=True)
    return Verdict(False, f"breaks test_a: assert {text!r} == 'good'")


def test_stops_at_the_first_final_candidate_and_never_calls_the_model() -> None:
    model = Scripted(["good"])
    cheap = Constant([("line 3 `<` -> `<=`", "bad"), ("line 3 `<` -> `>`", "good"), ("line 4 x", "bad")])
    found = run_rounds(
        lambda r: [cheap, model], _verify, budget=Budget(2, 10, 2), final=lambda v: v.cause_verified,
        cancel=CancelToken(),
    )  # fmt: skip
    assert [a.origin for a in found.accepted] == ["line 3 `<` -> `>`"]
    assert found.tried == [
        "✗ line 3 `<` -> `<=`: breaks test_a",
        "✓ line 3 `<` -> `>`: parses, 3/3 related tests pass",
    ]
    assert model.calls == 0 and found.generations == 0 and found.candidates == 2


def test_a_rejection_is_fed_back_and_round_two_verifies() -> None:
    model = Scripted(["bad", "good"])
    progress: list[str] = []
    found = run_rounds(
        lambda r: [model], _verify, budget=Budget(2, 10, 4), final=lambda v: v.ok, cancel=CancelToken(),
        progress=lambda message, pct: progress.append(message),
    )  # fmt: skip
    assert model.feedback == ["rewrite 1: breaks test_a: assert 'bad' == 'good'"]
    assert found.rounds == 2 and found.tried[-1].startswith("✓ rewrite 2")
    assert progress == ["trying rewrite 1", "trying rewrite 2 (last: ✗ rewrite 1: breaks test_a)"]


def test_caps_end_the_search_and_say_which() -> None:
    model = Scripted(["bad"] * 10)
    cheap = Constant([(f"line {i}", "bad") for i in range(6)])
    # The generation cap skips model proposals but lets cheap ones run.
    found = run_rounds(
        lambda r: [model, cheap], _verify, budget=Budget(3, 100, 1), final=lambda v: v.ok,
        cancel=CancelToken(),
    )  # fmt: skip
    assert model.calls == 1 and found.generations == 1 and found.candidates == 7
    assert found.accepted == [] and found.stopped == ""
    # The candidate cap stops everything, mid-round.
    found = run_rounds(
        lambda r: [cheap, model], _verify, budget=Budget(3, 4, 5), final=lambda v: v.ok,
        cancel=CancelToken(),
    )  # fmt: skip
    assert found.candidates == 4 and len(found.tried) == 4
    assert found.stopped == "the cap of 4 candidates was reached"


class Branching:
    """One generation and the answers to its prompt that start otherwise (None: no such start)."""

    def __init__(self, branches: list[str | None]) -> None:
        self.branches = branches

    def propose(self, round_no: int) -> list[Proposal]:
        first = [Proposal("re-infill line 5", lambda: "bad")]
        return first + [
            Proposal(f"re-infill line 5, start {i + 2}", lambda text=text: text, branch=True)
            for i, text in enumerate(self.branches)
        ]

    def rejected(self, proposal: Proposal, text: str, verdict: Verdict) -> None:
        return None


def test_answers_branching_from_a_read_prompt_cost_no_generation_and_a_missing_one_no_line() -> None:
    found = run_rounds(
        lambda r: [Branching([None, "worse", "good"])] if r == 1 else [],
        _verify, budget=Budget(2, 10, 1), final=lambda v: v.cause_verified, cancel=CancelToken(),
    )  # fmt: skip
    # The generation cap (1) is reached by the first answer; its branches are still tried.
    assert [line.split(":")[0] for line in found.tried] == [
        "✗ re-infill line 5",
        "✗ re-infill line 5, start 3",
        "✓ re-infill line 5, start 4",
    ]
    assert found.generations == 1 and found.candidates == 3
