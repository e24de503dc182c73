"""The workspace settings file, `.infiller.toml` at the workspace root: settings for one repository.

`infiller eval --tune` writes it; the language server reads it at start-up and on every
configuration change. Its `[settings]` table uses the same camelCase keys as the editor settings
and wins over them for the keys it sets (editors send every key, defaults included, so the more
specific file must win); its `[why]` table says where the values came from, and the server logs
it with the settings in force.

    [why]
    reason = "chosen by `infiller eval --tune` on 40 cases: ..."

    [settings.context]
    sources = ["definitions", "similar"]
    budgetTokens = 384
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.completion import CompletionSettings

log = logging.getLogger(__name__)

FILE_NAME = ".infiller.toml"
# A settings file is a few lines; anything larger is not ours.
MAX_FILE_BYTES = 64_000


@dataclass(frozen=True)
class WorkspaceSettings:
    """The file's settings (camelCase, as a client sends them) and why they are there."""

    path: Path
    settings: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    problems: tuple[str, ...] = ()


def load_workspace_settings(root: Path | None) -> WorkspaceSettings | None:
    """The root's `.infiller.toml`, or None when there is none. Never raises: problems are listed."""
    if root is None:
        return None
    path = root / FILE_NAME
    try:
        if not path.is_file():
            return None
        data = path.read_bytes()
    except OSError as exc:
        return WorkspaceSettings(path, problems=(f"{path}: {exc}",))
    if len(data) > MAX_FILE_BYTES:
        return WorkspaceSettings(path, problems=(f"{path}: larger than {MAX_FILE_BYTES} bytes; ignored",))
    try:
        parsed = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return WorkspaceSettings(path, problems=(f"{path}: not valid TOML ({exc}); ignored",))
    settings = parsed.get("settings", {})
    why = parsed.get("why", {})
    problems = []
    if not isinstance(settings, dict):
        problems.append(f"{path}: [settings] must be a table; ignored")
        settings = {}
    reason = why.get("reason", "") if isinstance(why, dict) else ""
    return WorkspaceSettings(path, settings, str(reason), tuple(problems))


def merge(client: object, workspace: WorkspaceSettings | None, *, change: bool = False) -> object:
    """The client's settings payload with the workspace file's keys laid over it (nested tables merge).

    With `change` (a didChangeConfiguration), an empty payload stays empty: it means "no change",
    and the settings in force already hold the file's keys.
    """
    if workspace is None or not workspace.settings:
        return client
    from server.settings import section_of

    base = section_of(client)
    if change and not base:
        return client
    merged = _deep_merge(dict(base) if base is not None else {}, workspace.settings)
    return {"infiller": merged}


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def describe(workspace: WorkspaceSettings | None) -> str:
    """One line for the log: which keys the file sets and why (empty without a file)."""
    if workspace is None:
        return ""
    keys = ", ".join(f"{k}={json.dumps(v)}" for k, v in _flatten(workspace.settings))
    why = f" ({workspace.reason})" if workspace.reason else ""
    return f"{workspace.path} sets {keys or 'nothing'}{why}"


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.extend(_flatten(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string once DEL, which JSON leaves bare, is escaped; the
        # rest of Unicode is written as itself, for the person who reads the file.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


# The file's `[settings.context]` keys and the CompletionSettings fields they set.
_CONTEXT_FIELDS = {
    "budgetTokens": "context_tokens",
    "prefixTokens": "prefix_tokens",
    "suffixTokens": "suffix_tokens",
    "importsAboveWindow": "imports_above_window",
    "refine": "refine",
    "sources": "sources",
}


def context_over(completion: CompletionSettings, workspace: WorkspaceSettings | None) -> CompletionSettings:
    """`completion` with the prompt budgets and sources the workspace file sets in its place.

    This is how every door honours a tuned repository: the daemon and `infiller complete`
    serve roots whose settings they were never sent; the language server has merged the whole
    file into its settings already, and laying the same keys over them again changes nothing.
    A bad value is the default's, as in the editor settings (the server shows the message).
    """
    from server.settings import read_settings

    table = workspace.settings.get("context") if workspace is not None else None
    if not isinstance(table, Mapping) or not table:
        return completion
    read, _ = read_settings({"context": dict(table)})
    tuned = read.completion_settings()
    changes = {name: getattr(tuned, name) for key, name in _CONTEXT_FIELDS.items() if key in table}
    return dataclasses.replace(completion, **changes)


def write_workspace_settings(root: Path, context: Mapping[str, Any], reason: str, header: str = "") -> Path:
    """Write `[why]` and `[settings.context]` to the root's `.infiller.toml` (replacing the file).

    Only the context table is chosen by tuning; a user's other keys in an existing file are kept
    (one level of tables deep, which is all the settings schema has).
    """
    path = root / FILE_NAME
    existing = load_workspace_settings(root)
    others = {k: v for k, v in (existing.settings if existing else {}).items() if k != "context"}
    lines = [f"# {line}" for line in header.splitlines()] + ["[why]", f"reason = {_toml_value(reason)}", ""]
    flat = {k: v for k, v in others.items() if not isinstance(v, Mapping)}
    if flat:
        lines += ["[settings]", *(f"{k} = {_toml_value(v)}" for k, v in flat.items()), ""]
    for name, table in others.items():
        if isinstance(table, Mapping):
            lines += [f"[settings.{name}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items()), ""]
    lines.append("[settings.context]")
    lines += [f"{k} = {_toml_value(v)}" for k, v in context.items()]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path
