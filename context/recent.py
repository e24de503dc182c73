"""Recently edited and viewed regions: a bounded ring fed by the editor (didChange, cursor moves)."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

# Enough history to cover the last few files a developer bounced between, small enough to scan per keystroke.
RING_SIZE = 64
# Lines shown around a recent position (before, after).
REGION_LINES_BEFORE = 6
REGION_LINES_AFTER = 10
# An edit says more about intent than a glance: it outranks views of the same age.
EDIT_WEIGHT = 2.0
VIEW_WEIGHT = 1.0


@dataclass(frozen=True)
class RecentEvent:
    path: str  # posix, relative to the workspace root
    line: int  # 0-based
    kind: str  # "edit" | "view"
    seq: int


@dataclass(frozen=True)
class RecentRegion:
    path: str
    start_line: int
    end_line: int  # inclusive
    score: float  # higher = more recent / more edits


class RecentRegions:
    """Thread-safe ring of recent positions, merged into non-overlapping regions on read."""

    def __init__(self, size: int = RING_SIZE) -> None:
        self._events: deque[RecentEvent] = deque(maxlen=size)
        self._seq = 0
        # The newest event's (path, seq) for the two files last touched, newest first: what
        # `last_elsewhere` reads, kept apart from the ring so that evicting old events does not change it.
        self._latest: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def note(self, path: str, line: int, kind: str) -> None:
        with self._lock:
            last = self._events[-1] if self._events else None
            if last is not None and last.path == path and last.line == line and last.kind == kind:
                return  # typing on one line: one event, so the ring keeps its history
            self._seq += 1
            self._events.append(RecentEvent(path, max(line, 0), kind, self._seq))
            others = [entry for entry in self._latest if entry[0] != path]
            self._latest = [(path, self._seq), *others[:1]]

    def last_elsewhere(self, exclude: str) -> int:
        """The sequence number of the newest event in a file other than `exclude` (0: none).

        It changes when the user edits or views another file, and not while they work in
        `exclude` (which only ages the other files' regions, or pushes them out of the ring)."""
        with self._lock:
            return next((seq for path, seq in self._latest if path != exclude), 0)

    def regions(self, exclude: str | None = None) -> list[RecentRegion]:
        """Regions by descending score; overlapping events of one file merge into one region."""
        with self._lock:
            events = list(self._events)
            newest = self._seq
        by_path: dict[str, list[RecentRegion]] = {}
        for event in events:
            if event.path == exclude:
                continue
            age = newest - event.seq
            weight = (EDIT_WEIGHT if event.kind == "edit" else VIEW_WEIGHT) / (1.0 + age)
            start = max(event.line - REGION_LINES_BEFORE, 0)
            end = event.line + REGION_LINES_AFTER
            merged: list[RecentRegion] = []
            for region in by_path.get(event.path, []):
                if region.start_line <= end and start <= region.end_line:
                    start, end = min(start, region.start_line), max(end, region.end_line)
                    weight += region.score
                else:
                    merged.append(region)
            merged.append(RecentRegion(event.path, start, end, weight))
            by_path[event.path] = merged
        out = [r for regions in by_path.values() for r in regions]
        return sorted(out, key=lambda r: (-r.score, r.path, r.start_line))

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
            self._latest = []
