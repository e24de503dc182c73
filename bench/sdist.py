"""Pinned source distributions from the package index, fetched at run time (never committed)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path


def fetch_sdist(spec: str, into: Path) -> Path:
    """Download `name==version`'s sdist into `into` (once) and unpack it there; returns the tree."""
    name, version = spec.split("==")
    unpacked = into / f"{name}-{version}"
    if unpacked.is_dir():
        return unpacked
    into.mkdir(parents=True, exist_ok=True)
    archive = into / f"{name}-{version}.tar.gz"
    if not archive.exists():
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*cmd, spec, "-d", str(into)], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return unpacked
