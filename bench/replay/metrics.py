"""What a replay says: the event log the engine writes and the numbers computed from it (pure).

Pauses are taken from the key model's plan, not from the observed gaps: a pause the user cut short
by accepting a suggestion is still a pause (and a served one); a pause with no suggestion shown
before the user typed on is not served and counts as infinitely slow in the percentiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.replay.keys import PAUSE_S

# "Served" means a suggestion was on screen within this long of the last keystroke.
SERVED_WITHIN_S = 1.0


@dataclass
class Edit:
    """One change the user made: a key, Enter (with auto-indent) or an accepted suggestion."""

    version: int
    at: float
    kind: str  # "key", "enter", "accept"
    chars: int
    # The key model's delay before the user's next key (None: the region ends here).
    planned_gap: float | None = None
    # When the user's next action actually happened (None: none followed in this region).
    next_at: float | None = None
    # What was on screen when the user typed this (not for accepts): "none", a suggestion that
    # does not match what they were typing ("wrong"), or one that does, not yet read ("unread").
    seen: str | None = None


@dataclass
class Show:
    """A non-empty suggestion became visible for document version `version`. `origin`: the index of
    the suggestion this is the rest of (kept on screen while the user typed through it or after a
    partial accept): visible, so it serves latency, but not a new suggestion for the acceptance rate."""

    version: int
    at: float
    text: str
    origin: int | None = None
    # True: the editor kept it on screen (typed through, partly accepted); False: the engine answered.
    kept: bool = False
    # The engine's id for it (infiller: the stats id its accept command carries; None: no id).
    sid: int | None = None


@dataclass
class Accept:
    """The user took `chars` characters of suggestion `show` (index of its original Show) with `kind`."""

    at: float
    show: int
    kind: str
    chars: int
    keys: int


def percentile(samples: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (deterministic, no interpolation); None for no samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def first_shows(shows: Sequence[Show], *, engine_only: bool = False) -> dict[int, Show]:
    """The first suggestion shown for each document version (`engine_only`: answered by the engine,
    not kept on screen by the editor)."""
    first: dict[int, Show] = {}
    for show in shows:
        if engine_only and show.kept:
            continue
        if show.version not in first or show.at < first[show.version].at:
            first[show.version] = show
    return first


def pause_latencies(edits: Sequence[Edit], shows: Sequence[Show]) -> list[float]:
    """Seconds from the last keystroke to a shown suggestion for every planned pause (inf: not served)."""
    first = first_shows(shows)
    out: list[float] = []
    for edit in edits:
        if edit.planned_gap is None or edit.planned_gap < PAUSE_S:
            continue
        end = edit.next_at if edit.next_at is not None else edit.at + edit.planned_gap
        show = first.get(edit.version)
        out.append(show.at - edit.at if show is not None and show.at <= end else math.inf)
    return out


def keystroke_latencies(edits: Sequence[Edit], shows: Sequence[Show]) -> list[float]:
    """Seconds from each edit to the engine's first suggestion for it (edits with none are left out)."""
    first = first_shows(shows, engine_only=True)
    return [first[e.version].at - e.at for e in edits if e.version in first]


def _ms(x: float | None) -> float | None:
    return None if x is None or math.isinf(x) else round(1000 * x, 1)


def summarize(
    edits: Sequence[Edit], shows: Sequence[Show], accepts: Sequence[Accept], total_chars: int
) -> dict[str, Any]:
    """The replay's numbers (JSON-ready; latencies in ms, None where not served)."""
    accepted_chars = sum(a.chars for a in accepts)
    taken = {a.show for a in accepts}
    distinct = [s for s in shows if s.origin is None]
    pauses = pause_latencies(edits, shows)
    keyed = keystroke_latencies(edits, shows)
    typed = [e for e in edits if e.kind != "accept"]
    kinds: dict[str, int] = {}
    for a in accepts:
        kinds[a.kind] = kinds.get(a.kind, 0) + 1
    # Where the characters the user typed went unsaved: nothing on screen, a suggestion that was
    # wrong there, or the right one not yet read.
    typed_while: dict[str, int] = {}
    for e in typed:
        if e.seen is not None:
            typed_while[e.seen] = typed_while.get(e.seen, 0) + e.chars
    return {
        "total_chars": total_chars,
        "keystrokes": len(typed),
        "accept_keys": sum(a.keys for a in accepts),
        "edits": len(edits),
        "shown": len(distinct),
        "accepted": len(taken),
        "accepts_by_kind": kinds,
        "typed_chars_while": typed_while,
        "acceptance_rate": round(len(taken) / len(distinct), 3) if distinct else None,
        "accepted_chars": accepted_chars,
        "chars_saved": round(accepted_chars / total_chars, 3) if total_chars else None,
        "pauses": len(pauses),
        "pause_to_suggestion_ms": {"p50": _ms(percentile(pauses, 50)), "p95": _ms(percentile(pauses, 95))},
        "pauses_served_within_1s": (
            round(sum(1 for x in pauses if x <= SERVED_WITHIN_S) / len(pauses), 3) if pauses else None
        ),
        "pauses_served": round(sum(1 for x in pauses if not math.isinf(x)) / len(pauses), 3)
        if pauses
        else None,
        "keystroke_to_suggestion_ms": {"p50": _ms(percentile(keyed, 50)), "p95": _ms(percentile(keyed, 95))},
        "edits_with_suggestion": round(len(keyed) / len(edits), 3) if edits else None,
    }


def ratio(ours: float | None, peer: float | None) -> float | None:
    """ours / peer, None where either is missing or the peer's is zero."""
    if ours is None or peer is None or peer == 0:
        return None
    return round(ours / peer, 2)
