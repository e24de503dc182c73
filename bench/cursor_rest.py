"""Arriving somewhere new: how long the first suggestion takes when the user looked first.

A user who moves to another place in a file looks at it for a moment, then starts a new line. The
cold prompt there (~450 tokens) takes the 1.5B seconds to read. The clients now say where the cursor
rests outside typing (`infiller/cursor`), and the server reads that place's prompt while the user
looks. This measures what that buys, side by side in one run on the real server over stdio, with the
same places, looks and keys for both arms:

- *told*: the cursor's place is sent when the user arrives (as the Neovim and VS Code clients do);
- *not told*: the server learns of the place with the first key (as before; the prefill at didOpen
  reads the file's head, which every place here is far from).

Each case opens a file of the replay's workspace (bench/replay/corpus.py), rests the cursor at the
end of a statement inside a function body at least JUMP_LINES * 2 lines down, waits `look` seconds,
presses Enter (the new line's indentation, as the editor inserts it) and asks for an inline
completion as an editor does after a key. Measured: key → answer (ms), and whether it was empty.
Each visit opens a copy of the file of its own (no suggestion cached for an earlier visit serves it)
and closes it after; the next case is in another file, so no case finds the previous one's prompt
in the KV cache. Every place is visited once per arm and look, the arms alternating.

    .venv/bin/python -m bench.cursor_rest [--model M] [--threads N] [--places 8] [--looks 1,4]

Writes bench/results/cursor_rest.{json,md} with the machine, the commit and the load average.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types

from bench.replay.corpus import REGIONS, prepare
from bench.replay.lsp_driver import InfillerDriver, position_of
from bench.replay.procs import machine
from bench.replay_typing import measured_code
from server.features.sync import CURSOR, JUMP_LINES

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "work"
RESULTS = REPO / "bench" / "results"
# Places start this far down a file: the prefill at didOpen reads the file's head.
MIN_LINE = JUMP_LINES * 2
# The files' order (shuffled, so that places spread over the packages).
SEED = 42
# Function bodies only: a statement indented at least this much (a method's body).
MIN_INDENT = 8
# Longest wait for one answer: a cold 1.5B prompt on 2 busy cores is well under this.
ANSWER_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Place:
    path: Path
    line: int  # 0-based line whose end the cursor rests at
    indent: str

    @property
    def label(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}:{self.line + 1}"


@dataclass
class Case:
    place: str
    look_s: float
    told: bool
    ms: float
    text: str


def pick_places(workspace: Path, count: int) -> list[Place]:
    """One place per file, from files spread over the workspace's packages (deterministic): the
    end of a one-line statement in a function body that the next statement of the body follows."""
    files = sorted(p for p in workspace.rglob("*.py") if "test" not in p.name)
    random.Random(SEED).shuffle(files)
    places: list[Place] = []
    for path in files:
        place = _place_in(path)
        if place is not None:
            places.append(place)
        if len(places) == count:
            break
    return places


def _place_in(path: Path) -> Place | None:
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    lines = text.split("\n")
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for stmt, after in zip(node.body, node.body[1:], strict=False):
            line = stmt.lineno - 1
            one_line = stmt.end_lineno == stmt.lineno and after.lineno == stmt.lineno + 1
            if one_line and line >= MIN_LINE and isinstance(stmt, ast.Assign | ast.AugAssign | ast.Expr):
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                    continue  # a docstring
                indent = lines[line][: stmt.col_offset]
                if len(indent) >= MIN_INDENT:
                    return Place(path, line, indent)
    return None


async def visit(driver: InfillerDriver, place: Place, look_s: float, told: bool, n: int) -> Case:
    text = place.path.read_text(encoding="utf-8", errors="replace")
    # A copy of its own per visit: an answer finished after the document closed is cached under its
    # uri, and a second visit to the same uri would be served from that cache.
    copy = place.path.with_name(f"{place.path.stem}_visit{n}.py")
    copy.write_text(text, encoding="utf-8")
    try:
        return await _visit(driver, place, look_s, told, text, copy.as_uri())
    finally:
        copy.unlink()


async def _visit(
    driver: InfillerDriver, place: Place, look_s: float, told: bool, text: str, uri: str
) -> Case:
    lines = text.split("\n")
    client = driver.client
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        )
    )
    offset = sum(len(line) + 1 for line in lines[: place.line]) + len(lines[place.line])
    end = position_of(text, offset)
    if told:
        client.protocol.notify(
            CURSOR, {"textDocument": {"uri": uri}, "position": {"line": end.line, "character": end.character}}
        )
    await asyncio.sleep(look_s)
    insert = "\n" + place.indent
    typed = text[:offset] + insert + text[offset:]
    started = time.perf_counter()
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(range=types.Range(end, end), text=insert)
            ],
        )
    )
    answer = await asyncio.wait_for(
        client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=position_of(typed, offset + len(insert)),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Automatic
                ),
            )
        ),
        ANSWER_TIMEOUT_S,
    )
    ms = (time.perf_counter() - started) * 1000
    items = answer.items if isinstance(answer, types.InlineCompletionList) else (answer or [])
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    shown = str(items[0].insert_text) if items and items[0].insert_text else ""
    return Case(place.label, look_s, told, round(ms, 1), shown)


async def run(
    model: str, threads: int, places: list[Place], looks: list[float], workspace: Path
) -> dict[str, Any]:
    driver = InfillerDriver(model, threads, lambda *a: None)
    load_before = os.getloadavg()
    await driver.start(workspace)
    cases: list[Case] = []
    try:
        for li, look in enumerate(looks):
            for flip in (0, 1):
                for i, place in enumerate(places):
                    told = (i + li + flip) % 2 == 0
                    case = await visit(driver, place, look, told, len(cases))
                    cases.append(case)
                    arm = "told" if told else "not told"
                    print(f"  look {look:g} s, {arm:8}: {case.ms:8.0f} ms  {case.place}", file=sys.stderr)
    finally:
        stats = await driver.stop()
    return {
        "model": model,
        "threads": threads,
        "cases": [asdict(c) for c in cases],
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "server": stats,
    }


def summarize(cases: list[dict[str, Any]], looks: list[float]) -> list[dict[str, Any]]:
    rows = []
    for look in looks:
        arms = {}
        for told in (True, False):
            ms = [c["ms"] for c in cases if c["look_s"] == look and c["told"] is told]
            empty = sum(1 for c in cases if c["look_s"] == look and c["told"] is told and not c["text"])
            arms[told] = {"n": len(ms), "p50": statistics.median(ms), "max": max(ms), "empty": empty}
        paired = {}
        for c in cases:
            if c["look_s"] == look:
                paired.setdefault(c["place"], {})[c["told"]] = c["ms"]
        faster = sum(1 for p in paired.values() if p[True] < p[False])
        rows.append(
            {
                "look_s": look,
                "told": arms[True],
                "not_told": arms[False],
                "told_faster": faster,
                "pairs": len(paired),
                "ratio_p50": arms[True]["p50"] / arms[False]["p50"],
            }
        )
    return rows


def write(result: dict[str, Any], out: Path, command: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    code, m = result["code"], result["machine"]
    load = {k: ", ".join(f"{x:.2f}" for x in v) for k, v in result["load_average"].items()}
    lines = [
        "# Arriving somewhere new: key → first suggestion, with and without the cursor's place told",
        "",
        f"`{command}`",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cpus')} CPUs, {m.get('memory_gib')} GiB. "
        f"infiller at {code['commit'][:12]} (server/ and context/ at "
        f"{code['server_commit'][:12]}{', plus uncommitted changes' if code['server_dirty'] else ''}). "
        f"{result['model']}, {result['threads']} thread(s); load average "
        f"{load['before']} → {load['after']}.",
        "",
        "Each place: open the file, rest the cursor at the end of a statement in a function body (*told*: "
        "the client sends `infiller/cursor` at once), look for the given seconds, press Enter and ask "
        "for an inline completion. Key → answer in ms; every place once per arm and look.",
        "",
        "| look | told p50 ms | not told p50 ms | told / not told | told faster (places) "
        "| told max ms | not told max ms | empty answers told / not |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["summary"]:
        t, n = row["told"], row["not_told"]
        lines.append(
            f"| {row['look_s']:g} s | {t['p50']:.0f} | {n['p50']:.0f} | {row['ratio_p50']:.2f} | "
            f"{row['told_faster']} of {row['pairs']} | {t['max']:.0f} | {n['max']:.0f} | "
            f"{t['empty']} / {n['empty']} |"
        )
    lines += ["", "| place | look s | told | ms | answer |", "| --- | --- | --- | --- | --- |"]
    for c in result["cases"]:
        shown = c["text"].split("\n")[0][:60].replace("|", "\\|")
        lines.append(
            f"| {c['place']} | {c['look_s']:g} | {'yes' if c['told'] else 'no'} | {c['ms']:.0f} | `{shown}` |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cursor_rest", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--places", type=int, default=8)
    parser.add_argument(
        "--looks", default="1,4", help="seconds the user looks before the key, comma-separated"
    )
    parser.add_argument("--out", default=str(RESULTS / "cursor_rest"), help="output path without extension")
    args = parser.parse_args(argv)
    looks = [float(x) for x in args.looks.split(",")]
    workspace, _ = prepare(WORK, REGIONS)
    places = pick_places(workspace, args.places)
    print(f"{len(places)} places: {', '.join(p.label for p in places)}", file=sys.stderr)
    result = asyncio.run(run(args.model, args.threads, places, looks, workspace))
    result["summary"] = summarize(result["cases"], looks)
    result["machine"] = machine()
    result["code"] = measured_code()
    command = "python -m bench.cursor_rest " + " ".join(argv if argv is not None else sys.argv[1:])
    write(result, Path(args.out), command.strip())
    print(Path(args.out).with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
