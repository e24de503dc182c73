"""Repository map: PageRank over the definition/reference graph, rendered as signature lists.

Aider-style: files are nodes; file A -> file B when A references a name that B defines. The
most central definitions make a low-priority filler that tells the model what the codebase's
main abstractions are called.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from context.index import Index

# The usual PageRank damping: 15% teleport keeps isolated files from being zero.
DAMPING = 0.85
# Power iteration converges long before this on repository graphs (tens of iterations).
MAX_ITERATIONS = 50
TOLERANCE = 1e-8
# A name defined in more files than this (`get`, `run`, `__init__`) says nothing about which one is meant.
MAX_DEFINING_FILES = 5
# Names shorter than this are loop variables and abbreviations, not API.
MIN_NAME_LENGTH = 3
# Private names are referenced mostly from their own module: weak evidence of centrality.
PRIVATE_NAME_WEIGHT = 0.1
# Definitions listed per file in one map chunk, and files in the map.
MAX_SYMBOLS_PER_FILE = 8
MAX_FILES = 6
# Files imported by the current file are the ones the user is working against: lift them.
FOCUS_BOOST = 4.0
# Rebuilding the graph costs ~0.1-0.5 s on a large repo: not on every keystroke.
MIN_REBUILD_INTERVAL_S = 30.0


@dataclass(frozen=True)
class MapEntry:
    path: str
    score: float
    text: str
    start_line: int
    end_line: int


def pagerank(
    nodes: Iterable[str], edges: dict[tuple[str, str], float], damping: float = DAMPING
) -> dict[str, float]:
    """Weighted PageRank by power iteration; dangling nodes teleport uniformly."""
    names = sorted(set(nodes))
    if not names:
        return {}
    n = len(names)
    out_weight: dict[str, float] = defaultdict(float)
    incoming: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for (src, dst), weight in edges.items():
        out_weight[src] += weight
        incoming[dst].append((src, weight))
    rank = dict.fromkeys(names, 1.0 / n)
    for _ in range(MAX_ITERATIONS):
        dangling = sum(rank[v] for v in names if out_weight.get(v, 0.0) == 0.0)
        base = (1.0 - damping) / n + damping * dangling / n
        new = {
            v: base + damping * sum(rank[s] * w / out_weight[s] for s, w in incoming.get(v, ()))
            for v in names
        }
        delta = sum(abs(new[v] - rank[v]) for v in names)
        rank = new
        if delta < TOLERANCE:
            break
    return rank


class RepoMap:
    """Ranked definitions of an index, rebuilt lazily when the index changed."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self._lock = threading.Lock()
        self._built_generation = -1
        self._built_at = 0.0
        # (path, name) -> (score, kind, signature, start_line)
        self._ranked: list[tuple[float, str, str, str, str, int]] = []

    def ranked(self) -> list[tuple[float, str, str, str, str, int]]:
        """(score, path, name, kind, signature, start_line), best first."""
        with self._lock:
            stale = self._built_generation != self.index.generation
            due = time.monotonic() - self._built_at >= MIN_REBUILD_INTERVAL_S
            if self._built_generation < 0 or (stale and due):
                self._ranked = self._build()
                self._built_generation = self.index.generation
                self._built_at = time.monotonic()
            return self._ranked

    def entries(self, exclude: str | None, focus: Iterable[str] = ()) -> list[MapEntry]:
        """One entry per file: its top definitions' signatures, best files first."""
        focus_set = set(focus)
        per_file: dict[str, list[tuple[float, str, str, str, int]]] = defaultdict(list)
        for score, path, name, kind, signature, line in self.ranked():
            if path == exclude:
                continue
            boost = FOCUS_BOOST if path in focus_set else 1.0
            per_file[path].append((score * boost, name, kind, signature, line))
        files = sorted(per_file.items(), key=lambda kv: (-sum(s for s, *_ in kv[1]), kv[0]))[:MAX_FILES]
        out = []
        for path, symbols in files:
            top = sorted(symbols, key=lambda s: (-s[0], s[4]))[:MAX_SYMBOLS_PER_FILE]
            top.sort(key=lambda s: s[4])  # source order reads naturally
            lines = [("    " if kind == "method" else "") + sig.split("\n")[0] for _, _, kind, sig, _ in top]
            out.append(MapEntry(path, sum(s[0] for s in top), "\n".join(lines) + "\n", top[0][4], top[-1][4]))
        return out

    def _build(self) -> list[tuple[float, str, str, str, str, int]]:
        defs, refs = self.index.graph_rows()
        defined_in: dict[str, set[str]] = defaultdict(set)
        info: dict[tuple[str, str], tuple[str, str, int]] = {}
        for path, name, kind, signature, line in defs:
            defined_in[name].add(path)
            info.setdefault((path, name), (kind, signature, line))
        edges: dict[tuple[str, str], float] = defaultdict(float)
        name_edges: list[tuple[str, str, str, float]] = []
        nodes: set[str] = set(self.index.files())
        for src, name, count in refs:
            targets = defined_in.get(name)
            if not targets or len(targets) > MAX_DEFINING_FILES or len(name) < MIN_NAME_LENGTH:
                continue
            weight = math.sqrt(count) / len(targets)
            if name.startswith("_"):
                weight *= PRIVATE_NAME_WEIGHT
            for dst in targets:
                if dst != src:
                    edges[(src, dst)] += weight
                    name_edges.append((src, dst, name, weight))
        rank = pagerank(nodes, edges)
        out_weight: dict[str, float] = defaultdict(float)
        for (src, _), weight in edges.items():
            out_weight[src] += weight
        symbol_rank: dict[tuple[str, str], float] = defaultdict(float)
        for src, dst, name, weight in name_edges:
            symbol_rank[(dst, name)] += rank[src] * weight / out_weight[src]
        ranked = [
            (score, path, name, *info[(path, name)])
            for (path, name), score in symbol_rank.items()
            if (path, name) in info
        ]
        ranked.sort(key=lambda r: (-r[0], r[1], r[5]))
        return ranked
