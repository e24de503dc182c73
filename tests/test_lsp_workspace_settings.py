"""The server reads the workspace's `.infiller.toml` (what `infiller eval --tune` writes), over stdio."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from lsprotocol import types

from tests.test_lsp_protocol import DATA, SCENARIO_TIMEOUT_S, Session


def start(tmp_path: Path, settings_file: str | None) -> tuple[Session, Path]:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    shutil.copy(DATA / "adder.py", root / "adder.py")
    if settings_file is not None:
        (root / ".infiller.toml").write_text(settings_file)
    return Session(root, tmp_path / "state"), root


async def completions(s: Session) -> list[types.InlineCompletionItem]:
    uri = s.open(s.root / "adder.py")
    return await s.inline(uri, 1, len("    return a"))


def scenario_run(
    tmp_path: Path, settings_file: str | None, options: dict[str, object] | None
) -> list[object]:
    session, _ = start(tmp_path, settings_file)
    seen: list[object] = []

    async def main() -> None:
        await session.start("fast", options)
        try:
            seen.append([i.insert_text for i in await completions(session)])
            # An empty configuration change keeps the file's settings in force.
            session.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={}))
            await asyncio.sleep(0.1)
            seen.append([i.insert_text for i in await completions(session)])
            seen.append([m.message for m in session.messages])
        finally:
            await session.stop()

    asyncio.run(asyncio.wait_for(main(), SCENARIO_TIMEOUT_S))
    log = (tmp_path / "state" / "server.log").read_text()
    seen.append(log)
    return seen


def test_the_workspace_file_wins_over_the_editor_and_is_logged_with_its_reason(tmp_path: Path) -> None:
    text = '[why]\nreason = "tuned on 40 cases"\n\n[settings]\nenable = false\n'
    first, after_change, messages, log = scenario_run(tmp_path, text, {"infiller": {"enable": True}})
    assert first == [] and after_change == []  # disabled by the file although the editor enabled it
    assert messages == []
    assert "workspace settings in force" in str(log) and "enable=false (tuned on 40 cases)" in str(log)


def test_without_the_file_the_editor_settings_apply(tmp_path: Path) -> None:
    first, _, _, log = scenario_run(tmp_path, None, {"infiller": {"enable": True}})
    assert first == [" + b"]
    assert "workspace settings in force" not in str(log)


def test_a_broken_file_is_shown_and_ignored(tmp_path: Path) -> None:
    first, _, messages, _ = scenario_run(tmp_path, "[settings\nenable = false\n", None)
    assert first == [" + b"]
    assert any("not valid TOML" in str(m) for m in messages)  # type: ignore[union-attr]
