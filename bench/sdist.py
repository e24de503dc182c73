"""Pinned sources fetched at run time (never committed): sdists from the package index (the same
fetch as `infiller eval`'s) and Debian packages of Go and Rust sources."""

from __future__ import annotations

import subprocess
from pathlib import Path

from server.eval.repo import fetch_sdist

__all__ = ["fetch_deb", "fetch_sdist"]


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
