"""The server's settings: one typed schema, read from `initializationOptions` and
`workspace/didChangeConfiguration` with camelCase keys.

The schema (nested dataclasses whose fields carry a description and bounds in their metadata) is
the single source for validation, `docs/lsp.md` and the editor clients' configuration. Reading
never fails: a bad value yields a message for `window/showMessage` and the field's default.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

from context.retrieve import DEFAULT_SOURCES, SOURCES
from server.completion import CompletionSettings
from server.suggest import SuggestSettings

# The section name clients nest our settings under (`{"infiller": {...}}`).
SECTION = "infiller"

_DEFAULT_COMPLETION = CompletionSettings()


def _meta(
    doc: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] = (),
    scope: str | None = None,
) -> dict[str, Any]:
    """A field's description and bounds; `scope` is VS Code's (e.g. "machine": user settings only)."""
    return {"doc": doc, "min": lo, "max": hi, "choices": choices, "scope": scope}


@dataclass
class ContextSettings:
    """Prompt budgets, in model tokens: they bound how long a cold request takes."""

    budget_tokens: int = field(
        default=_DEFAULT_COMPLETION.context_tokens,
        metadata=_meta("Tokens of cross-file context (0 disables retrieval).", lo=0, hi=4096),
    )
    prefix_tokens: int = field(
        default=_DEFAULT_COMPLETION.prefix_tokens,
        metadata=_meta("Tokens of the current file before the cursor.", lo=16, hi=8192),
    )
    suffix_tokens: int = field(
        default=_DEFAULT_COMPLETION.suffix_tokens,
        metadata=_meta("Tokens of the current file after the cursor.", lo=0, hi=2048),
    )
    imports_above_window: bool = field(
        default=_DEFAULT_COMPLETION.imports_above_window,
        metadata=_meta("Python: show the file's imports above a prefix window that starts below them."),
    )
    refine: bool = field(
        default=_DEFAULT_COMPLETION.refine,
        metadata=_meta(
            "Ask twice: retrieval reads the first answer as if typed, and the model answers again with "
            "what it found (the code that defines or uses the names it guessed). Costs a second "
            "generation and a re-read of the prompt; worth it with a fast backend."
        ),
    )
    sources: list[str] | None = field(
        default=None,
        metadata=_meta(
            f"Retrieval sources (null: {', '.join(DEFAULT_SOURCES)}); known: {', '.join(SOURCES)}.",
            choices=SOURCES,
        ),
    )


@dataclass
class DebounceSettings:
    """How long to wait after a keystroke before asking the model."""

    min_ms: int = field(default=25, metadata=_meta("Shortest wait (slow, deliberate typing).", lo=0, hi=2000))
    max_ms: int = field(default=200, metadata=_meta("Longest wait (fast typing bursts).", lo=0, hi=5000))
    # Measured off on 2026-12-05 (replays back to back): +2.2 and +1.1 points of characters saved
    # alone, +0.9 and -0.5 within the whole stop's change, but acceptance 0.8-3.9 points lower in
    # all four (more suggestions shown during bursts): kept on.
    adaptive: bool = field(
        default=True, metadata=_meta("Scale the wait with the measured typing speed per document.")
    )


@dataclass
class Settings:
    """Everything a user can configure."""

    enable: bool = field(default=True, metadata=_meta("Offer completions at all."))
    model: str | None = field(
        default=None, metadata=_meta("Registry model name (null: the registry default or $INFILLER_MODEL).")
    )
    max_tokens: int = field(
        default=_DEFAULT_COMPLETION.max_tokens_block,
        metadata=_meta("Most tokens generated for a multi-line completion.", lo=1, hi=1024),
    )
    max_line_tokens: int = field(
        default=_DEFAULT_COMPLETION.max_tokens_line,
        metadata=_meta(
            "Most tokens generated for a single-line completion "
            "(with the argument lines of a call it opens).",
            lo=1,
            hi=512,
        ),
    )
    backend: str = field(
        default="local",
        metadata=_meta(
            'Where the model runs: "local" (a process on this machine), "http://host:port" '
            '(llama.cpp\'s llama-server, or `infiller daemon`) or "openai+http://host:port/v1" (an '
            "OpenAI-compatible completion server). Retrieval always runs locally."
        ),
    )
    backend_api_key_env: str | None = field(
        default=None,
        metadata=_meta("Name of the environment variable holding the backend's API key (never logged)."),
    )
    threads: int = field(
        default=0,
        metadata=_meta("CPU threads for the model (0: one fewer than the CPUs, at least 1).", lo=0, hi=256),
    )
    context: ContextSettings = field(default_factory=ContextSettings, metadata=_meta("Prompt budgets."))
    debounce: DebounceSettings = field(default_factory=DebounceSettings, metadata=_meta("Debounce."))
    languages: list[str] | None = field(
        default=None,
        metadata=_meta("Language ids to complete (null: every supported language)."),
    )
    prefill: bool = field(
        default=True,
        metadata=_meta("Read the prompt into the model cache when a file opens or the cursor jumps."),
    )
    hot_streak: bool = field(
        default=True, metadata=_meta("Prepare the next line's suggestion while the current one is shown.")
    )
    allow_unsafe_execution: bool = field(
        default=False,
        # Machine scope: a repository's own .vscode/settings.json cannot switch the sandbox off.
        metadata=_meta(
            "Let the code actions run generated tests where no sandbox is available (no bubblewrap, "
            "not Linux): the model's code then runs with your permissions.",
            scope="machine",
        ),
    )

    def completion_settings(self) -> CompletionSettings:
        """The budgets the Completer works with."""
        return CompletionSettings(
            prefix_tokens=self.context.prefix_tokens,
            suffix_tokens=self.context.suffix_tokens,
            context_tokens=self.context.budget_tokens,
            imports_above_window=self.context.imports_above_window,
            refine=self.context.refine,
            max_tokens_line=self.max_line_tokens,
            max_tokens_block=self.max_tokens,
            sources=tuple(self.context.sources) if self.context.sources is not None else None,
        )

    def suggest_settings(self) -> SuggestSettings:
        """The suggester's knobs: debounce, hot streak, prefill."""
        return SuggestSettings(
            debounce_min_ms=self.debounce.min_ms,
            debounce_max_ms=self.debounce.max_ms,
            debounce_adaptive=self.debounce.adaptive,
            hot_streak=self.hot_streak,
            prefill=self.prefill,
        )

    def language_enabled(self, language: str | None, language_id: str | None = None) -> bool:
        """Complete in this document? `language` is our grammar name, `language_id` the client's id."""
        if not self.enable or language is None:
            return False
        return self.languages is None or language in self.languages or language_id in self.languages


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _strict_converter() -> cattrs.Converter:
    """cattrs with strict scalars: the default would turn "yes" into True and 3.7 into 3."""
    conv = cattrs.Converter()

    def strict(kind: type, accept: tuple[type, ...]) -> None:
        def hook(value: object, _: type) -> object:
            if isinstance(value, bool) and kind is not bool:
                raise TypeError(f"expected {kind.__name__}, got a boolean")
            if isinstance(value, float) and kind is int:
                if not value.is_integer():
                    raise TypeError(f"expected an integer, got {value!r}")
                return int(value)
            if not isinstance(value, accept):
                raise TypeError(f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
            return value

        conv.register_structure_hook(kind, hook)

    strict(bool, (bool,))
    strict(int, (int, float))
    strict(str, (str,))
    for cls in (ContextSettings, DebounceSettings, Settings):  # nested first: the parent's hook uses theirs
        conv.register_unstructure_hook(
            cls,
            make_dict_unstructure_fn(
                cls,
                conv,
                **{f.name: override(rename=camel(f.name)) for f in dataclasses.fields(cls)},  # type: ignore[arg-type]
            ),
        )
    return conv


CONVERTER = _strict_converter()


def _is_dataclass_type(tp: object) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _is_list_type(tp: object) -> bool:
    return any(typing.get_origin(a) is list for a in (tp, *typing.get_args(tp)))


def _structure_into(cls: type, raw: Mapping[str, Any], path: str, errors: list[str]) -> Any:
    """An instance of cls from raw; each bad field is reported and left at its default."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    known = set()
    for f in dataclasses.fields(cls):
        key = camel(f.name)
        known.add(key)
        if key not in raw:
            continue
        value = raw[key]
        where = f"{path}{key}"
        tp = hints[f.name]
        if _is_dataclass_type(tp):
            if not isinstance(value, Mapping):
                errors.append(f"setting {where}: expected an object, got {value!r}; using the defaults")
                continue
            values[f.name] = _structure_into(tp, value, where + ".", errors)
            continue
        try:
            if _is_list_type(tp) and not isinstance(value, list | type(None)):
                raise TypeError(f"expected a list, got {value!r}")
            converted = CONVERTER.structure(value, tp)
        except Exception as exc:
            errors.append(f"setting {where}: {_explain(exc)}; using the default {_default_text(f)}")
            continue
        problem = _check_bounds(converted, f.metadata)
        if problem:
            errors.append(f"setting {where}: {problem}; using the default {_default_text(f)}")
            continue
        values[f.name] = converted
    for key in raw:
        if key not in known:
            errors.append(f"unknown setting {path}{key} (ignored)")
    return cls(**values)


def _explain(exc: Exception) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        inner = exc.exceptions[0] if exc.exceptions else exc
        return str(inner)
    return str(exc)


def _default_text(f: dataclasses.Field[Any]) -> str:
    return json.dumps(f.default if f.default is not dataclasses.MISSING else None)


def _check_bounds(value: object, meta: Mapping[str, Any]) -> str | None:
    lo, hi = meta.get("min"), meta.get("max")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if lo is not None and value < lo:
            return f"{value} is below the minimum {lo}"
        if hi is not None and value > hi:
            return f"{value} is above the maximum {hi}"
    return None


def _cross_checks(settings: Settings, errors: list[str]) -> Settings:
    from server.model.loader import is_remote, parse_backend

    if is_remote(settings.backend):
        try:
            parse_backend(settings.backend)
        except ValueError as exc:
            errors.append(f'setting backend: {exc}; using "local"')
            settings.backend = "local"
    deb = settings.debounce
    if deb.min_ms > deb.max_ms:
        errors.append(f"setting debounce.minMs ({deb.min_ms}) exceeds debounce.maxMs ({deb.max_ms}); swapped")
        deb.min_ms, deb.max_ms = deb.max_ms, deb.min_ms
    if settings.context.sources is not None:
        bad = [s for s in settings.context.sources if s not in SOURCES]
        if bad:
            errors.append(
                f"setting context.sources: unknown source(s) {', '.join(bad)} "
                f"(known: {', '.join(SOURCES)}); ignored them"
            )
            settings.context.sources = [s for s in settings.context.sources if s in SOURCES]
    return settings


def section_of(raw: object) -> Mapping[str, Any] | None:
    """Our settings inside a client payload: `{"infiller": {...}}` or the flat object itself."""
    if not isinstance(raw, Mapping):
        return None
    inner = raw.get(SECTION)
    if isinstance(inner, Mapping):
        return inner
    return raw


def read_settings(raw: object, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Settings from a client payload, plus one message per problem. None or {} gives `base`."""
    errors: list[str] = []
    section = section_of(raw)
    if raw is not None and section is None:
        errors.append(f"settings must be an object, got {raw!r}; using the defaults")
    if not section:
        return (base or Settings()), errors
    settings = _structure_into(Settings, section, "", errors)
    return _cross_checks(settings, errors), errors


def to_json(settings: Settings) -> dict[str, Any]:
    """The camelCase form a client would send."""
    data: dict[str, Any] = CONVERTER.unstructure(settings)
    return data


@dataclass(frozen=True)
class SettingDoc:
    key: str
    type: str
    default: str
    doc: str


def _type_name(tp: object) -> str:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(tp)).replace("NoneType", "null")
    if typing.get_origin(tp) is list:
        return f"list[{_type_name(typing.get_args(tp)[0])}]"
    return getattr(tp, "__name__", str(tp))


def describe(cls: type = Settings, path: str = "") -> Iterator[SettingDoc]:
    """Every leaf setting with its camelCase key, type, default and description (for docs and clients)."""
    hints = typing.get_type_hints(cls)
    instance = cls()
    for f in dataclasses.fields(cls):
        key = path + camel(f.name)
        tp = hints[f.name]
        if _is_dataclass_type(tp):
            yield from describe(tp, key + ".")
            continue
        default = getattr(instance, f.name)
        yield SettingDoc(key, _type_name(tp), json.dumps(default), f.metadata.get("doc", ""))
