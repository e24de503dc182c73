"""`infiller index` and `infiller context` as a user runs them (no model: estimated tokens)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.cli import main
from tests.context_helpers import copy_shop


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # keep the user's cache clean
    return copy_shop(tmp_path)


def test_index_reports_files_symbols_time_and_size(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(shop), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "files     11 (11 parsed, 0 removed)" in out
    assert "symbols" in out and "MB)" in out and "files/s" in out
    assert main(["index", str(shop), "--quiet"]) == 0
    assert "(0 parsed, 0 removed)" in capsys.readouterr().out  # warm: nothing re-parsed


def test_context_json_explains_the_chosen_chunks(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    location = f"{shop / 'app' / 'main.py'}:14:14"  # right after `cart.`, 1-based
    assert main(["context", location, "--root", str(shop), "--no-model", "--json", "--budget", "200"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["used_tokens"] <= payload["budget"] == 200
    assert payload["names"][0] == "cart"  # the name being typed ranks first
    chunk = next(c for c in payload["chunks"] if "class Cart" in c["text"])
    assert chunk["path"] == "shop/models.py" and chunk["source"] == "definitions" and chunk["tokens"] > 0


def test_context_rejects_positions_past_the_end(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["context", f"{shop / 'app' / 'main.py'}:999:1", "--root", str(shop), "--no-model"]) == 1
    assert "past the end" in capsys.readouterr().err
