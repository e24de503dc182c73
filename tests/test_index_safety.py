"""The index on hostile workspaces and databases: special files, links out, damaged pages, two indexers.

`infiller index` runs as a subprocess with a timeout, so a hang fails the test instead of the run.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import threading
import traceback
from pathlib import Path

import pytest

from context.index import Index
from context.walk import WalkOptions, read_source
from tests.context_helpers import copy_shop

REPO = Path(__file__).resolve().parent.parent
# `infiller index` on a few files takes about a second; a hang is what this bounds.
CLI_TIMEOUT_S = 60
# Enough files for the parallel extraction path (PARALLEL_MIN_FILES) and for writes to interleave.
MANY_FILES = 240


def index_cli(root: Path, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", "index", str(root), "--db", str(db), "--quiet"],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, cwd=str(REPO),
    )  # fmt: skip


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """A non-git workspace with a FIFO, a link to /dev/zero and links in and out of it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("def leaked_secret():\n    return 'token'\n")
    root = tmp_path / "ws"
    root.mkdir()
    (root / "real.py").write_text("def real_function():\n    return 1\n")
    os.mkfifo(root / "x.py")
    (root / "zero.py").symlink_to("/dev/zero")
    (root / "outside.py").symlink_to(outside / "secret.py")
    (root / "linked_dir").symlink_to(outside, target_is_directory=True)
    (root / "inside.py").symlink_to(root / "real.py")
    return root


def test_index_cli_skips_special_files_and_links_out_of_the_workspace(hostile: Path, tmp_path: Path) -> None:
    done = index_cli(hostile, tmp_path / "index.sqlite")
    assert done.returncode == 0, done.stderr
    assert "files     2 (2 parsed" in done.stdout
    with Index.open(hostile, tmp_path / "index.sqlite", WalkOptions(use_git=False)) as index:
        assert index.files() == ["inside.py", "real.py"]
        assert index.definitions_named("leaked_secret") == []
        # Retrieval reads through the index: nothing outside the workspace, nothing unbounded.
        assert index.read_text("outside.py") is None
        assert index.read_text("zero.py") is None
        assert index.read_text("x.py") is None
        assert index.read_text("linked_dir/secret.py") is None
        assert index.reindex_file("zero.py") is False


def test_reading_is_bounded_and_checked_before_the_read(hostile: Path) -> None:
    (hostile / "big.py").write_bytes(b"x = 1\n" * 1000)
    assert read_source(hostile, "big.py", max_bytes=100) is None
    read = read_source(hostile, "real.py", max_bytes=100)
    assert read is not None and read[0].startswith(b"def real_function")
    assert read_source(hostile, "../outside/secret.py") is None


def _corrupt_pages(db: Path) -> None:
    """Overwrite the back half of the file's pages, keeping the header and the schema page."""
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    pages = len(data) // page
    for n in range(pages // 2, pages):
        data[n * page + 8 : (n + 1) * page - 8] = bytes([0xA5]) * (page - 16)
    db.write_bytes(bytes(data))


def test_damaged_pages_behind_a_valid_header_are_found_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = copy_shop(tmp_path)
    db = tmp_path / "index.sqlite"
    with Index.open(root, db, WalkOptions(use_git=False)) as index:
        files = index.refresh().files
    assert not Path(f"{db}-wal").exists()
    _corrupt_pages(db)
    with sqlite3.connect(db) as conn:
        # What the old open-time check ran still works: only a page check finds the damage.
        conn.execute("SELECT COUNT(*) FROM files").fetchone()
        assert conn.execute("PRAGMA quick_check").fetchone()[0] != "ok"
    conn.close()
    with caplog.at_level(logging.WARNING, logger="context.index"):
        index = Index.open(root, db, WalkOptions(use_git=False))
    try:
        assert any("damaged" in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
        assert index.refresh().files == files
        assert {s.name for s in index.symbols("shop/models.py")} >= {"Cart", "Item"}
    finally:
        index.close()


def _many_files(root: Path) -> None:
    for n in range(MANY_FILES):
        (root / f"mod_{n:03d}.py").write_text(
            f"import os\n\n\nclass Thing{n}:\n    def run(self) -> int:\n        return {n}\n\n\n"
            f"def helper_{n}(value: int) -> int:\n    return value + {n}\n"
        )


def _assert_consistent(root: Path, db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM files").fetchone()[0] == MANY_FILES
        dup_symbols = conn.execute(
            "SELECT file_id, name, start_line FROM symbols "
            "GROUP BY file_id, name, start_line HAVING COUNT(*) > 1"
        ).fetchall()
        assert dup_symbols == []
        orphans = conn.execute("SELECT COUNT(*) FROM symbols WHERE file_id NOT IN (SELECT id FROM files)")
        assert orphans.fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM symbols").fetchone()[0] == 3 * MANY_FILES
    conn.close()


def test_two_index_processes_on_one_workspace_both_succeed(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    _many_files(root)
    for attempt in range(3):
        db = tmp_path / f"shared-{attempt}.sqlite"
        cmd = [sys.executable, "-m", "server", "index", str(root), "--db", str(db), "--quiet"]
        procs = [
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO))
            for _ in range(2)
        ]
        for proc in procs:
            out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
            assert proc.returncode == 0, err
            assert f"files     {MANY_FILES}" in out
        _assert_consistent(root, db)


def test_two_indexes_in_one_process_share_a_database(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    _many_files(root)
    db = tmp_path / "shared.sqlite"
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def build() -> None:
        try:
            barrier.wait()
            with Index.open(root, db, WalkOptions(use_git=False)) as index:
                index.refresh()
                (root / "mod_000.py").write_text("def changed():\n    pass\n")
                index.reindex_file("mod_000.py")
        except BaseException as exc:  # reported below, with the thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=CLI_TIMEOUT_S)
    assert errors == [], "".join(traceback.format_exception(errors[0]))
    with Index.open(root, db, WalkOptions(use_git=False)) as index:
        assert len(index.files()) == MANY_FILES
        assert [s.name for s in index.symbols("mod_000.py")] == ["changed"]
