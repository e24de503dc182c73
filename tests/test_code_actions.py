"""Code actions as an editor sees them: the offered actions (pure), the edits, and the whole
codeAction -> executeCommand -> applyEdit flow over real stdio with a scripted model."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from lsprotocol import types

from server.actions.fix import Candidate
from server.actions.testgen import NewTestsEdit
from server.actions.textedit import LineEdit
from server.features.code_actions import (
    COMMAND_FIX,
    COMMAND_GENERATE_TESTS,
    EditBasis,
    FixArgs,
    _document,
    code_actions_for,
    fix_workspace_edit,
    line_range_edit,
)
from server.features.code_actions import tests_workspace_edit as build_tests_edit
from server.lsp.documents import Documents
from tests.actions_client import Editor, apply_text_edits, plain

DATA = Path(__file__).parent / "data" / "actions"
# A scenario that takes longer than this is hung, not slow (the scripted model is instant).
SCENARIO_TIMEOUT_S = 90


def _rng(l1: int, c1: int, l2: int, c2: int) -> types.Range:
    return types.Range(start=types.Position(line=l1, character=c1), end=types.Position(line=l2, character=c2))


def test_offered_actions_for_a_function_a_diagnostic_and_a_selection() -> None:
    text = (DATA / "fixname" / "prices.py").read_text()
    diag = types.Diagnostic(range=_rng(8, 17, 8, 24), message="undefined name 'subtotl'", source="pyflakes")
    ctx = types.CodeActionContext(diagnostics=[diag])
    actions = code_actions_for(text, "python", "file:///p.py", 3, _rng(8, 20, 8, 20), ctx)
    titles = [a.title for a in actions]
    assert titles == ["infiller: Fix this (undefined name 'subtotl')", "infiller: Generate tests for `total`"]
    fix, tests = actions
    assert fix.kind == types.CodeActionKind.QuickFix and fix.diagnostics == [diag]
    assert fix.command is not None and fix.command.command == COMMAND_FIX
    args = FixArgs.from_json(fix.command.arguments[0])  # type: ignore[index]
    assert args.diagnostic == diag and args.version == 3
    assert tests.command is not None and tests.command.command == COMMAND_GENERATE_TESTS
    # Nothing to fix and no function at the module docstring; `only` filters kinds.
    assert (
        code_actions_for(text, "python", "u", 1, _rng(0, 0, 0, 0), types.CodeActionContext(diagnostics=[]))
        == []
    )
    only = types.CodeActionContext(diagnostics=[diag], only=[types.CodeActionKind.QuickFix])
    assert [a.title for a in code_actions_for(text, "python", "u", 1, _rng(8, 0, 8, 0), only)] == [titles[0]]
    selected = code_actions_for(
        text, "python", "u", 1, _rng(5, 0, 8, 10), types.CodeActionContext(diagnostics=[])
    )
    assert [a.title for a in selected] == [
        "infiller: Fix this",
        "infiller: Edit selection by instruction…",
        "infiller: Generate tests for `total`",
    ]


def test_fix_edit_is_versioned_and_whole_lines() -> None:
    text = "a = 1\nb = (2\nc = 3"
    cand = Candidate("re-infill", "a = 1\nb = (2)\nc = 3\n", LineEdit(1, 2, "b = (2)\n"))
    edit = fix_workspace_edit("file:///x.py", 7, text, cand)
    [doc_edit] = edit.document_changes or []
    assert isinstance(doc_edit, types.TextDocumentEdit)
    assert doc_edit.text_document.version == 7
    [te] = doc_edit.edits
    assert isinstance(te, types.TextEdit)
    assert apply_text_edits(text, [te]) == "a = 1\nb = (2)\nc = 3"
    # The last line has no newline: the edit ends at its end and adds none.
    last = line_range_edit(text, 2, 3, "c = 4\n")
    assert apply_text_edits(text, [last]) == "a = 1\nb = (2\nc = 4"


def test_the_server_refuses_an_edit_whose_text_moved_on(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("a = 1\n")
    docs = Documents()
    uri = path.as_uri()
    docs.open(types.TextDocumentItem(uri=uri, language_id="python", version=4, text="a = 1\n"))
    basis = EditBasis(uri, path, "a = 1\n", 4)
    assert basis.stale(docs) == (None, 4)
    change = types.TextDocumentContentChangeWholeDocument(text="a = 2\n")
    ident = types.VersionedTextDocumentIdentifier(uri=uri, version=5)
    docs.change(types.DidChangeTextDocumentParams(text_document=ident, content_changes=[change]))
    reason, _ = basis.stale(docs)
    assert reason is not None and "version 4, now 5" in reason
    docs.close(uri)
    assert basis.stale(docs)[0] == "m.py was closed"
    # Computed on the file as it was on disk (not open): checked against the disk.
    on_disk = EditBasis(uri, path, "a = 1\n", None)
    assert on_disk.stale(docs) == (None, None)
    path.write_text("a = 3\n")
    assert on_disk.stale(docs)[0] == "m.py changed on disk"
    # Opened since, with the same text: the edit must carry the buffer's real version.
    path.write_text("a = 1\n")
    other_spelling = "file:///elsewhere/../" + str(path).lstrip("/")
    docs.open(types.TextDocumentItem(uri=other_spelling, language_id="python", version=9, text="a = 1\n"))
    assert on_disk.stale(docs) == (None, 9)


def test_a_test_file_edit_to_an_open_document_carries_its_version() -> None:
    existing = "import pytest\n\n\ndef test_old():\n    assert True\n"
    edit = NewTestsEdit(
        Path("/w/tests/test_m.py"), False, "\n\ndef test_new():\n    assert 1\n", 1, "import m\n"
    )
    ws = build_tests_edit(edit, existing, 12, uri="file:///w/tests/test_m.py")
    [change] = ws.document_changes or []
    assert isinstance(change, types.TextDocumentEdit) and change.text_document.version == 12


def test_a_command_for_a_version_the_document_left_is_refused() -> None:
    docs = Documents()
    docs.open(types.TextDocumentItem(uri="file:///w/m.py", language_id="python", version=3, text="x\n"))
    server = SimpleNamespace(documents=docs)
    assert _document(server, "file:///w/m.py", 3).version == 3  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="changed since the action was offered"):
        _document(server, "file:///w/m.py", 2)  # type: ignore[arg-type]


def _scenario(
    tmp_path: Path, engine: str, body: Callable[[Editor], Awaitable[None]], repos: list[str]
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    for name in repos:
        for item in (DATA / name).iterdir():
            target = root / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                shutil.copy(item, target)
    editor = Editor(root, tmp_path / "state")

    async def main() -> None:
        await editor.start("--fake-engine", f"tests.actions_fakes:{engine}")
        try:
            await editor.wait_model()
            await body(editor)
        finally:
            await editor.stop()

    asyncio.run(asyncio.wait_for(main(), SCENARIO_TIMEOUT_S))


def test_fix_this_on_the_servers_own_syntax_diagnostic(tmp_path: Path) -> None:
    async def body(ed: Editor) -> None:
        path = ed.root / "geometry.py"
        uri = ed.open(path)
        [diag] = await ed.wait_diagnostics(uri)
        assert diag.source == "infiller" and "never closed" in diag.message
        actions = await ed.code_actions(uri, diag.range, [diag])
        fix = next(a for a in actions if a.title.startswith("infiller: Fix this"))
        result = plain(await ed.run(fix))
        assert result["applied"] is True, result
        assert result["candidates"][0]["checks"] == ["syntax error gone"]
        [edit] = ed.applied
        [change] = edit.document_changes or []
        assert isinstance(change, types.TextDocumentEdit) and change.text_document.version == 1
        fixed = path.read_text()
        compile(fixed, "geometry.py", "exec")
        assert "    return math.sqrt(dx * dx + dy * dy)\n" in fixed
        # Progress ran from begin to end, and the diagnostic is cleared for the new text.
        kinds = [p.get("kind") for p in ed.progress]
        assert "begin" in kinds and kinds[-1] == "end"
        for _ in range(100):
            if not ed.diagnostics.get(uri):
                break
            await asyncio.sleep(0.05)
        assert ed.diagnostics.get(uri) == []

    _scenario(tmp_path, "fast", body, ["fixsyntax"])


def test_a_fix_for_text_the_user_changed_meanwhile_is_refused(tmp_path: Path) -> None:
    async def body(ed: Editor) -> None:
        path = ed.root / "geometry.py"
        uri = ed.open(path)
        [diag] = await ed.wait_diagnostics(uri)
        actions = await ed.code_actions(uri, diag.range, [diag])
        fix = next(a for a in actions if a.title.startswith("infiller: Fix this"))
        # The editor's version moves on after the server read the text: it must refuse the edit.
        pending = asyncio.ensure_future(ed.run(fix))
        await asyncio.sleep(0)
        original = ed.texts[uri]
        ed.versions[uri] += 0  # same text, but the client will see a newer version below
        ed.change(uri, original + "\n# typed meanwhile\n")
        result = plain(await pending)
        if "error" in result:
            # The change arrived before the command ran: the server refused to start the fix.
            assert "changed since the action was offered (version 1, now 2)" in result["error"]
            assert ed.applied == []
        elif result["applied"]:
            # The server read the text after the change (a race we cannot rule out): then its
            # edit was made for the current version, which is what the versioning guarantees.
            [edit] = ed.applied
            [change] = edit.document_changes or []
            assert isinstance(change, types.TextDocumentEdit) and change.text_document.version == 2
        else:
            # The server itself saw the version move on and never sent the edit (a client
            # without documentChanges could not have refused it).
            assert "changed (version 1, now 2)" in result["stale"]
            assert ed.refused == [] and ed.applied == []
            assert any("not applied" in m for m in ed.messages)

    _scenario(tmp_path, "fast", body, ["fixsyntax"])


def test_generate_tests_creates_a_test_file_that_passes(tmp_path: Path) -> None:
    async def body(ed: Editor) -> None:
        path = ed.root / "textkit" / "slug.py"
        uri = ed.open(path)
        line = ed.texts[uri].splitlines().index('def slugify(title: str, sep: str = "-") -> str:')
        actions = await ed.code_actions(uri, _rng(line + 2, 4, line + 2, 4))
        [action] = [a for a in actions if a.title == "infiller: Generate tests for `slugify`"]
        result = plain(await ed.run(action))
        assert result["applied"] is True and sorted(result["passing"]) == [
            "test_slugify_basic",
            "test_slugify_separator",
        ]
        # What the tests would catch, measured in the sandbox and told to the user.
        quality = result["quality"]
        assert quality["tests"] == 2 and quality["branchesCovered"] == quality["branchesTotal"] > 0
        assert quality["mutantsTotal"] >= 1
        assert any(
            f"`slugify`: 2 tests, 100% of {quality['unit']}, catch {quality['mutantsKilled']} of" in m
            for m in ed.messages
        )
        [edit] = ed.applied
        create, insert = edit.document_changes or []
        assert isinstance(create, types.CreateFile) and create.uri.endswith("/tests/test_slug.py")
        assert isinstance(insert, types.TextDocumentEdit)
        test_file = ed.root / "tests" / "test_slug.py"
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
            cwd=ed.root,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0 and "2 passed" in proc.stdout, proc.stdout + proc.stderr

    _scenario(tmp_path, "fast", body, ["textkit"])


def test_cancelling_the_progress_stops_a_running_action(tmp_path: Path) -> None:
    async def body(ed: Editor) -> None:
        path = ed.root / "textkit" / "slug.py"
        uri = ed.open(path)
        line = ed.texts[uri].splitlines().index('def slugify(title: str, sep: str = "-") -> str:')
        actions = await ed.code_actions(uri, _rng(line + 1, 0, line + 1, 0))
        action = next(a for a in actions if "Generate tests" in a.title)
        pending = asyncio.ensure_future(ed.run(action))
        token = None
        for _ in range(200):
            begins = [p for p in ed.progress if p.get("kind") == "begin" and "generating tests" in p["title"]]
            if begins:
                assert begins[0]["cancellable"] is True
                token = begins[0]["token"]
                break
            await asyncio.sleep(0.05)
        assert token is not None, ed.progress
        await asyncio.sleep(0.5)  # the slow model is generating now
        ed.client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
        result = plain(await asyncio.wait_for(pending, 20))
        assert result == {"cancelled": True}
        ends = [p for p in ed.progress if p.get("kind") == "end" and p["token"] == token]
        assert ends and ends[-1]["message"].startswith("cancelled")
        assert ed.applied == [] and not (ed.root / "tests" / "test_slug.py").exists()

    _scenario(tmp_path, "slow", body, ["textkit"])
