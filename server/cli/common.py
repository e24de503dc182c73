"""Helpers shared by subcommands: FILE:LINE:COL parsing, progress bars, error reporting."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from server.model.registry import ProgressFn


@dataclass(frozen=True)
class Location:
    path: Path
    line: int  # 0-based
    column: int  # 0-based, code points


def parse_location(spec: str) -> Location:
    """`FILE:LINE:COL`, 1-based, as compilers print it; a clear error for anything else."""
    try:
        path, line, col = spec.rsplit(":", 2)
        line_no, col_no = int(line), int(col)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FILE:LINE:COL (1-based), got {spec!r}") from None
    if line_no < 1 or col_no < 1:
        raise argparse.ArgumentTypeError(f"LINE and COL are 1-based, got {line_no}:{col_no}")
    return Location(Path(path), line_no - 1, col_no - 1)


def _whole_number(text: str, low: int, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {low} or more, got {value}")
    if high is not None and value > high:
        raise argparse.ArgumentTypeError(f"expected {high} or less, got {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number of at least 0 (where 0 means "none" or "choose")."""
    return _whole_number(text, 0)


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 meaning any free one."""
    return _whole_number(text, 0, 65535)


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def fail(message: str, code: int = 1) -> int:
    print(f"infiller: {message}", file=sys.stderr)
    return code


class PhaseBar:
    """One tqdm bar per phase ("download", "assemble", "verify"), on stderr."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.phase: str | None = None
        self.bar: tqdm | None = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if phase != self.phase:
            self.close()
            self.phase = phase
            unit = {"download": "part", "self-test": "config"}.get(phase, "B")
            self.bar = tqdm(
                total=total, desc=phase, unit=unit, unit_scale=unit == "B", file=sys.stderr, leave=True
            )
        assert self.bar is not None
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def fn(self) -> ProgressFn:
        return self
