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


def fetch_deb(spec: str, into: Path) -> Path:
    """A Debian source package of another language (`deb:golang-github-spf13-cobra-dev=1.6.1-1`:
    Go and Rust libraries ship their sources) downloaded with `apt-get download` (once), unpacked
    with `dpkg-deb -x`; returns the folder that holds all its source files (the module or crate)."""
    from context.syntax import language_for_path

    name, version = spec.removeprefix("deb:").split("=")
    tree = into / f"{name}-{version}"
    if not tree.is_dir():
        into.mkdir(parents=True, exist_ok=True)
        if not list(into.glob(f"{name}_*.deb")):
            subprocess.run(["apt-get", "download", f"{name}={version}"], cwd=into, check=True)
        archive = next(into.glob(f"{name}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(archive), str(tree)], check=True)
    sources = [p.parent for p in tree.rglob("*") if p.is_file() and language_for_path(p) is not None]
    if not sources:
        raise FileNotFoundError(f"{spec}: no source file of a supported language in {tree}")
    root = sources[0]
    for folder in sources[1:]:
        while not folder.is_relative_to(root):
            root = root.parent
    # A crate's sources sit in its src/: the crate is the repository (its name goes in the prompt).
    return root.parent if root.name == "src" and root.parent != tree else root
