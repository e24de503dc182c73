"""Pinned source distributions from the package index, fetched at run time (never committed)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path


def fetch_sdist(spec: str, into: Path) -> Path:
    """Download `name==version`'s sdist into `into` (once) and unpack it there; returns the tree."""
    name, version = spec.split("==")
    # Newer sdists spell the name with underscores (PEP 625: python_utils-3.9.1.tar.gz).
    stems = [f"{name}-{version}", f"{name.replace('-', '_')}-{version}"]
    for stem in stems:
        if (into / stem).is_dir():
            return into / stem
    into.mkdir(parents=True, exist_ok=True)
    if not any((into / f"{stem}.tar.gz").exists() for stem in stems):
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*cmd, spec, "-d", str(into)], check=True)
    stem = next((s for s in stems if (into / f"{s}.tar.gz").exists()), stems[0])
    archive, unpacked = into / f"{stem}.tar.gz", into / stem
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return unpacked
