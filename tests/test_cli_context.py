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


def test_context_shows_what_the_workspace_settings_file_makes_completions_see(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tuned repository (`infiller eval --tune` wrote its file): `infiller context` retrieves as
    completions there do, names the file, and still lets the options override it."""
    from server.settings_file import write_workspace_settings

    write_workspace_settings(shop, {"sources": ["similar"], "budgetTokens": 150}, "similar won on this repo")
    location = f"{shop / 'app' / 'main.py'}:14:14"
    assert main(["context", location, "--root", str(shop), "--no-model", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["sources"] == ["similar"] and payload["budget"] == 150
    assert (
        ".infiller.toml" in payload["workspace_settings"] and "similar won" in payload["workspace_settings"]
    )
    assert {c["source"] for c in payload["chunks"]} <= {"similar"}

    assert (
        main(["context", location, "--root", str(shop), "--no-model", "--json", "--sources", "definitions"])
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert payload["sources"] == ["definitions"] and payload["budget"] == 150
    assert any(c["source"] == "definitions" for c in payload["chunks"])

    assert main(["context", location, "--root", str(shop), "--no-model"]) == 0
    assert capsys.readouterr().out.startswith("workspace settings in force: ")


def test_context_says_which_file_turned_retrieval_off(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from server.settings_file import write_workspace_settings

    write_workspace_settings(shop, {"budgetTokens": 0}, "the current file alone won")
    location = f"{shop / 'app' / 'main.py'}:14:14"
    assert main(["context", location, "--root", str(shop), "--no-model"]) == 1
    err = capsys.readouterr().err
    assert ".infiller.toml sets budgetTokens = 0" in err and "--budget N" in err
    assert main(["context", location, "--root", str(shop), "--no-model", "--json", "--budget", "200"]) == 0
    assert json.loads(capsys.readouterr().out)["budget"] == 200
