"""The prompt configurations `infiller eval` compares side by side on the same cases."""

from __future__ import annotations

from dataclasses import dataclass

from context.retrieve import DEFAULT_SOURCES, SOURCES
from server.completion import CompletionSettings

_DEFAULTS = CompletionSettings()
# The baseline to beat (issue 12): a plain FIM prompt with a long in-file window, no retrieval, the
# cursor line before the middle marker as every FIM model was trained.
PLAIN_PREFIX_TOKENS = 1536
PLAIN_SUFFIX_TOKENS = 256
# Context budgets `--tune` tries besides the default one: smaller costs less reading per request.
TUNE_BUDGETS = (256, 512)
# A prefix/suffix split `--tune` tries: the same window with more of the lines after the cursor.
TUNE_SPLIT = (1280, 512)
# Similar-line windows fill their budget where definitions often find little, so at the default's
# budget they cost more prompt than the default and `--tune` could never choose them (its rule: no
# more prompt than the default). These variants pay for them with a smaller budget and a shorter
# in-file window (pygments, 19 cases: similar 73.7% exact against the default's 63.2%, at 1,342
# prompt tokens against 1,160).
TUNE_PAID_CONTEXT = 192
TUNE_PAID_PREFIX = 1280
# ... and one that keeps similar windows' whole budget and pays with the in-file window alone (the
# variants above, on pygments at 30 cases: 53.3% against similar's 63.3%, as if halving the
# windows lost what they brought).
TUNE_PAID_PREFIX_ONLY = 1024


@dataclass(frozen=True)
class EvalConfig:
    """One prompt configuration; `sources` empty means no retrieval (current file only)."""

    name: str
    sources: tuple[str, ...] = ()
    context_tokens: int = _DEFAULTS.context_tokens
    prefix_tokens: int = _DEFAULTS.prefix_tokens
    suffix_tokens: int = _DEFAULTS.suffix_tokens
    cursor_line_in_middle: bool = _DEFAULTS.cursor_line_in_middle
    imports_above_window: bool = _DEFAULTS.imports_above_window
    # Two passes (the `refine` setting): the first answer, read as typed at the cursor, is
    # retrieval's query for the second. The runner runs them (see runner._run_case).
    iterate: bool = False
    # Retrieval reads the hidden answer itself as if typed (the `iterate` draft, but the true
    # one): what a perfect retrieval query could gain on this repository. A ceiling for measuring
    # retrieval, never a setting (the prompt's own text is still the cursor's).
    oracle: bool = False

    def completion_settings(self) -> CompletionSettings:
        return CompletionSettings(
            prefix_tokens=self.prefix_tokens,
            suffix_tokens=self.suffix_tokens,
            context_tokens=self.context_tokens if self.sources else 0,
            cursor_line_in_middle=self.cursor_line_in_middle,
            imports_above_window=self.imports_above_window,
            sources=self.sources or None,
        )

    def describe(self) -> str:
        sources = "+".join(self.sources) if self.sources else "no retrieval"
        context = f", {self.context_tokens} ctx" if self.sources else ""
        layout = "" if self.cursor_line_in_middle else ", classic layout"
        imports = ", imports above" if self.imports_above_window else ""
        passes = ", retrieval again with the first answer" if self.iterate else ""
        passes += ", retrieval reads the hidden answer (a ceiling)" if self.oracle else ""
        window = f"{self.prefix_tokens}+{self.suffix_tokens} window"
        return f"{sources}{context}, {window}{imports}{layout}{passes}"


DEFAULT = "default"
PLAIN = "plain long FIM"
IMPORTS_ON = "default with imports"
IMPORTS_OFF = "default without imports"
CLASSIC = "default classic layout"
NO_USAGES = "default without usages"
ITERATE = "default iterative"
ORACLE = "default oracle"


def standard_configs() -> dict[str, EvalConfig]:
    """Baseline, no context, each source alone, the default, all sources (in report order)."""
    configs = {
        PLAIN: EvalConfig(
            PLAIN,
            prefix_tokens=PLAIN_PREFIX_TOKENS,
            suffix_tokens=PLAIN_SUFFIX_TOKENS,
            cursor_line_in_middle=False,
            imports_above_window=False,
        ),
        "no context": EvalConfig("no context"),
    }
    for source in SOURCES:
        configs[source] = EvalConfig(source, (source,))
    configs[DEFAULT] = EvalConfig(DEFAULT, tuple(DEFAULT_SOURCES))
    configs["all sources"] = EvalConfig("all sources", tuple(SOURCES))
    return configs


def tune_candidates() -> dict[str, EvalConfig]:
    """The standard configurations plus budget and window-split variants of the default."""
    configs = standard_configs()
    base = configs[DEFAULT]
    for budget in TUNE_BUDGETS:
        name = f"default {budget} ctx"
        configs[name] = EvalConfig(name, base.sources, context_tokens=budget)
    prefix, suffix = TUNE_SPLIT
    name = f"default {prefix}+{suffix} window"
    configs[name] = EvalConfig(name, base.sources, prefix_tokens=prefix, suffix_tokens=suffix)
    name = "definitions+similar"
    configs[name] = EvalConfig(name, ("definitions", "similar"))
    name = NO_USAGES
    configs[name] = EvalConfig(name, tuple(s for s in base.sources if s != "usages"))
    # The default with and without the file's imports above a window that misses them (one of
    # the two is the default itself).
    for name, on in ((IMPORTS_ON, True), (IMPORTS_OFF, False)):
        configs[name] = EvalConfig(name, base.sources, imports_above_window=on)
    for sources in (("similar",), ("definitions", "similar")):
        name = f"{'+'.join(sources)} {TUNE_PAID_CONTEXT} ctx {TUNE_PAID_PREFIX} prefix"
        configs[name] = EvalConfig(
            name, sources, context_tokens=TUNE_PAID_CONTEXT, prefix_tokens=TUNE_PAID_PREFIX
        )
    # The default with the cursor line at the end of the prefix, the layout FIM models are trained
    # on, instead of the function body after the middle marker (context/anchor.py).
    configs[CLASSIC] = EvalConfig(CLASSIC, base.sources, cursor_line_in_middle=False)
    name = f"similar {_DEFAULTS.context_tokens} ctx {TUNE_PAID_PREFIX_ONLY} prefix"
    configs[name] = EvalConfig(name, ("similar",), prefix_tokens=TUNE_PAID_PREFIX_ONLY)
    return configs


def experiments() -> dict[str, EvalConfig]:
    """Configurations that can be named but that `--tune` does not try: two passes read about
    twice the default's prompt, which `--tune`'s rule forbids, so trying them would only add time;
    the oracle reads the answer, so it measures retrieval's headroom and is never written."""
    return {
        ITERATE: EvalConfig(ITERATE, tuple(DEFAULT_SOURCES), iterate=True),
        ORACLE: EvalConfig(ORACLE, tuple(DEFAULT_SOURCES), oracle=True),
    }


def choose(names: list[str] | None, tune: bool = False) -> dict[str, EvalConfig]:
    """The named configurations (when None: the standard ones, or every tune candidate with
    `tune`), the default always among them (pairs need it). Any candidate can be named."""
    if names is None:
        return tune_candidates() if tune else standard_configs()
    known = {**tune_candidates(), **experiments()}
    # Names hold no comma: the command line lists them comma-separated.
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown configuration(s) {', '.join(unknown)} (known: {', '.join(known)})")
    chosen = {n: known[n] for n in names}
    chosen.setdefault(DEFAULT, known[DEFAULT])
    return chosen
