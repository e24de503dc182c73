"""Local completion statistics: what was shown, accepted or dismissed, how fast, and why not.

Kept in memory by the server and persisted as JSON in the user state folder (nothing leaves the
machine). Read by the `infiller.stats` command and `infiller stats`. Pure bookkeeping: no I/O
except `save`/`load`.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

log = logging.getLogger(__name__)

STATE_ENV = "INFILLER_STATE_DIR"
STATS_FILE = "stats.json"
# Latency samples kept (newest win): enough for stable p95s, small enough to save on every flush.
LATENCY_SAMPLES = 2000
# Shown suggestions remembered for acceptance tracking; older ones count as dismissed.
PENDING_SHOWN = 64
# Bump when the JSON layout changes; older files are ignored rather than misread.
STATS_VERSION = 1

# How a suggestion was produced (the "source" of a served request).
SOURCES = ("model", "cache", "inflight", "hot-streak")


def state_dir() -> Path:
    env = os.environ.get(STATE_ENV)
    return Path(env) if env else Path(platformdirs.user_state_dir("infiller"))


def stats_path() -> Path:
    return state_dir() / STATS_FILE


def percentile(samples: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation; None without samples."""
    if not samples:
        return None
    if len(samples) == 1:
        return samples[0]
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    index = min(max(round(q) - 1, 0), len(cuts) - 1)
    return cuts[index]


@dataclass
class _Shown:
    id: int
    uri: str
    length: int
    at: float
    outcome: str | None = None


@dataclass
class Stats:
    """Counters since the stats file was created (or reset)."""

    requests: int = 0
    shown: int = 0
    accepted: int = 0
    partially_accepted: int = 0
    typed_through: int = 0
    dismissed: int = 0
    cancelled: int = 0
    accepted_chars: int = 0
    served_by: Counter[str] = field(default_factory=Counter)
    no_suggestion: Counter[str] = field(default_factory=Counter)
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    model_latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    since: float = field(default_factory=time.time)
    _pending: dict[int, _Shown] = field(default_factory=dict)
    _next_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- recording -------------------------------------------------------------------------

    def record_request(self) -> None:
        with self._lock:
            self.requests += 1

    def record_cancelled(self, reason: str = "cancelled") -> None:
        with self._lock:
            self.cancelled += 1
            self.no_suggestion[reason] += 1

    def record_none(self, reason: str, latency_ms: float | None = None) -> None:
        """A request answered with no suggestion, and why."""
        with self._lock:
            self.no_suggestion[reason] += 1
            if latency_ms is not None:
                self.latency_ms.append(latency_ms)

    def record_shown(self, uri: str, text: str, source: str, latency_ms: float) -> int:
        """A suggestion sent to the client; returns its id for the accept command."""
        with self._lock:
            sid = self._next_id
            self._next_id += 1
            self.shown += 1
            self.served_by[source] += 1
            self.latency_ms.append(latency_ms)
            if source == "model":
                self.model_latency_ms.append(latency_ms)
            # The previous suggestion for this document, never accepted, was dismissed.
            for old in list(self._pending.values()):
                if old.uri == uri and old.outcome is None and source not in ("cache", "hot-streak"):
                    self._settle(old, "dismissed")
            self._pending[sid] = _Shown(sid, uri, len(text), time.time())
            while len(self._pending) > PENDING_SHOWN:
                oldest = self._pending[min(self._pending)]
                if oldest.outcome is None:
                    self._settle(oldest, "dismissed")
                del self._pending[oldest.id]
            return sid

    def _settle(self, shown: _Shown, outcome: str) -> None:
        shown.outcome = outcome
        if outcome == "dismissed":
            self.dismissed += 1

    def record_accepted(self, sid: int, chars: int | None = None) -> bool:
        """The client accepted suggestion `sid` in full (its item command ran)."""
        with self._lock:
            shown = self._pending.get(sid)
            if shown is None or shown.outcome in ("accepted", "dismissed"):
                return False
            if shown.outcome == "typed-through":
                self.typed_through -= 1  # upgraded: count it once, as accepted
            shown.outcome = "accepted"
            self.accepted += 1
            self.accepted_chars += chars if chars is not None else shown.length
            return True

    def record_partial(self, sid: int, chars: int) -> bool:
        """Part of suggestion `sid` was accepted (word/line accept in the editor)."""
        with self._lock:
            shown = self._pending.get(sid)
            if shown is None or shown.outcome is not None:
                return False
            shown.outcome = "partial"
            self.partially_accepted += 1
            self.accepted_chars += chars
            return True

    def record_typed_through(self, sid: int) -> None:
        """The user typed characters that match suggestion `sid` (we answered from the cache)."""
        with self._lock:
            shown = self._pending.get(sid)
            if shown is not None and shown.outcome is None:
                shown.outcome = "typed-through"
                self.typed_through += 1

    # --- reporting -------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Everything, JSON-ready: counts, rates, percentiles and reasons."""
        with self._lock:
            lat = list(self.latency_ms)
            model_lat = list(self.model_latency_ms)
            answered = sum(self.served_by.values())
            cache_hits = self.served_by["cache"] + self.served_by["inflight"] + self.served_by["hot-streak"]
            return {
                "version": STATS_VERSION,
                "since": self.since,
                "requests": self.requests,
                "shown": self.shown,
                "accepted": self.accepted,
                "partially_accepted": self.partially_accepted,
                "typed_through": self.typed_through,
                "dismissed": self.dismissed,
                "accepted_chars": self.accepted_chars,
                "acceptance_rate": _ratio(self.accepted + self.partially_accepted, self.shown),
                "cancelled": self.cancelled,
                "cancel_rate": _ratio(self.cancelled, self.requests),
                "cache_hits": cache_hits,
                "cache_hit_rate": _ratio(cache_hits, answered),
                "served_by": dict(self.served_by),
                "latency_ms": _percentiles(lat),
                "model_latency_ms": _percentiles(model_lat),
                "no_suggestion": dict(self.no_suggestion.most_common()),
            }

    # --- persistence -----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        data = self.summary()
        with self._lock:
            data["samples"] = {
                "latency_ms": list(self.latency_ms),
                "model_latency_ms": list(self.model_latency_ms),
            }
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stats:
        if data.get("version") != STATS_VERSION:
            return cls()
        stats = cls()
        for name in (
            "requests",
            "shown",
            "accepted",
            "partially_accepted",
            "typed_through",
            "dismissed",
            "cancelled",
            "accepted_chars",
        ):
            setattr(stats, name, int(data.get(name, 0)))
        stats.since = float(data.get("since", stats.since))
        stats.served_by = Counter({str(k): int(v) for k, v in data.get("served_by", {}).items()})
        stats.no_suggestion = Counter({str(k): int(v) for k, v in data.get("no_suggestion", {}).items()})
        samples = data.get("samples", {})
        stats.latency_ms.extend(float(x) for x in samples.get("latency_ms", []))
        stats.model_latency_ms.extend(float(x) for x in samples.get("model_latency_ms", []))
        return stats

    def save(self, path: Path | None = None) -> Path:
        """Write atomically (a temp file renamed over the old one)."""
        path = path or stats_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json()), encoding="utf-8")
        tmp.replace(path)
        return path


def load(path: Path | None = None) -> Stats:
    """The persisted stats, or fresh ones when there are none or the file is unreadable."""
    path = path or stats_path()
    try:
        return Stats.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return Stats()
    except (OSError, ValueError, TypeError) as exc:
        log.warning("ignoring unreadable stats file %s: %s", path, exc)
        return Stats()


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _percentiles(samples: list[float]) -> dict[str, float | int | None]:
    p50, p95 = percentile(samples, 50), percentile(samples, 95)
    return {
        "count": len(samples),
        "p50": round(p50, 1) if p50 is not None else None,
        "p95": round(p95, 1) if p95 is not None else None,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines for `infiller stats`."""
    lat, mlat = summary["latency_ms"], summary["model_latency_ms"]

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:.0f} ms"

    lines = [
        f"since           {time.strftime('%Y-%m-%d %H:%M', time.localtime(summary['since']))}",
        f"requests        {summary['requests']}",
        f"shown           {summary['shown']}",
        f"accepted        {summary['accepted']} (+{summary['partially_accepted']} partially, "
        f"{summary['typed_through']} typed through); acceptance {pct(summary['acceptance_rate'])}",
        f"dismissed       {summary['dismissed']}",
        f"cancelled       {summary['cancelled']} ({pct(summary['cancel_rate'])} of requests)",
        f"cache hits      {summary['cache_hits']} ({pct(summary['cache_hit_rate'])} of suggestions)",
        f"latency         p50 {ms(lat['p50'])}, p95 {ms(lat['p95'])} over {lat['count']} answers",
        f"model latency   p50 {ms(mlat['p50'])}, p95 {ms(mlat['p95'])} over {mlat['count']} generations",
    ]
    if summary["no_suggestion"]:
        lines.append("no suggestion   " + ", ".join(f"{k}: {v}" for k, v in summary["no_suggestion"].items()))
    return "\n".join(lines)
