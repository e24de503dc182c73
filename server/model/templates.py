"""FIM prompt templates per model family, and the repository-level prompt layout.

Layout (PSM) keeps llama.cpp's prefix KV cache reusable across keystrokes: the stable
repository context comes first, then the file prefix, and only then the (short) suffix, so
typing at the cursor invalidates nothing before the cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ContextFile:
    """A piece of another file shown to the model before the current file."""

    path: str
    text: str


@dataclass(frozen=True)
class FimTemplate:
    family: str
    prefix: str
    suffix: str
    middle: str
    stop: tuple[str, ...]
    repo_name: str | None = None
    file_sep: str | None = None
    comment: str = "#"

    def render(
        self,
        prefix: str,
        suffix: str,
        *,
        context: Sequence[ContextFile] = (),
        repo: str | None = None,
        path: str | None = None,
    ) -> str:
        """The whole prompt: repository context, then the current file as FIM."""
        return self.render_context(context, repo=repo, path=path) + self.render_fim(prefix, suffix)

    def render_context(
        self, context: Sequence[ContextFile], *, repo: str | None = None, path: str | None = None
    ) -> str:
        """Everything before `prefix`: stable across keystrokes as long as the context is."""
        if self.file_sep and self.repo_name and (context or path):
            out = [f"{self.repo_name}{repo or 'repo'}\n"]
            out += [f"{self.file_sep}{c.path}\n{_nl(c.text)}" for c in context]
            if path:
                out.append(f"{self.file_sep}{path}\n")
            return "".join(out)
        # Families without repo-level tokens: path comments inside the prefix.
        out = [f"{self.comment} {c.path}\n{_nl(c.text)}\n" for c in context]
        if path and context:
            out.append(f"{self.comment} {path}\n")
        return "".join(out)

    def render_fim(self, prefix: str, suffix: str) -> str:
        return f"{self.prefix}{prefix}{self.suffix}{suffix}{self.middle}"

    def special_tokens(self) -> tuple[str, ...]:
        """Every control string of this template: stripped from user text so it cannot hijack the prompt."""
        tokens = [self.prefix, self.suffix, self.middle, *self.stop]
        if self.repo_name:
            tokens.append(self.repo_name)
        if self.file_sep:
            tokens.append(self.file_sep)
        return tuple(dict.fromkeys(t for t in tokens if t))


def _nl(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


QWEN = FimTemplate(
    family="qwen",
    prefix="<|fim_prefix|>",
    suffix="<|fim_suffix|>",
    middle="<|fim_middle|>",
    stop=("<|endoftext|>", "<|im_end|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>", "<|fim_prefix|>"),
    repo_name="<|repo_name|>",
    file_sep="<|file_sep|>",
)
STARCODER = FimTemplate(
    family="starcoder",
    prefix="<fim_prefix>",
    suffix="<fim_suffix>",
    middle="<fim_middle>",
    stop=("<|endoftext|>", "<file_sep>", "<fim_prefix>"),
    repo_name="<repo_name>",
    file_sep="<file_sep>",
)
CODELLAMA = FimTemplate(
    family="codellama",
    prefix="<PRE> ",
    suffix=" <SUF>",
    middle=" <MID>",
    stop=("<EOT>", "</s>"),
)
DEEPSEEK = FimTemplate(
    family="deepseek",
    prefix="<｜fim▁begin｜>",
    suffix="<｜fim▁hole｜>",
    middle="<｜fim▁end｜>",
    stop=("<|EOT|>", "<｜end▁of▁sentence｜>"),
)

TEMPLATES: Mapping[str, FimTemplate] = {t.family: t for t in (QWEN, STARCODER, CODELLAMA, DEEPSEEK)}

# GGUF metadata keys written by llama.cpp's converter for FIM-capable vocabularies.
GGUF_FIM_KEYS = {
    "prefix": "tokenizer.ggml.fim_pre_token_id",
    "suffix": "tokenizer.ggml.fim_suf_token_id",
    "middle": "tokenizer.ggml.fim_mid_token_id",
}
GGUF_STOP_KEYS = (
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.fim_pad_token_id",
    "tokenizer.ggml.fim_rep_token_id",
    "tokenizer.ggml.fim_sep_token_id",
)


def template_for(family: str) -> FimTemplate:
    try:
        return TEMPLATES[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(TEMPLATES)}") from None


def from_metadata(
    family: str, metadata: Mapping[str, str], token_text: Callable[[int], str]
) -> tuple[FimTemplate, frozenset[int]]:
    """The family template with FIM strings overridden by the GGUF's own, plus the stop token ids.

    `token_text(id)` maps a token id to its text. Metadata wins where present, the family
    template fills what it lacks.
    """
    base = template_for(family)
    fim = {}
    for field, key in GGUF_FIM_KEYS.items():
        value = metadata.get(key)
        if value is not None and value.lstrip("-").isdigit() and int(value) >= 0:
            fim[field] = token_text(int(value))
    stop_ids = {
        int(v) for k in GGUF_STOP_KEYS if (v := metadata.get(k)) is not None and v.lstrip("-").isdigit()
    }
    template = (
        replace(
            base,
            prefix=fim.get("prefix", base.prefix),
            suffix=fim.get("suffix", base.suffix),
            middle=fim.get("middle", base.middle),
        )
        if fim
        else base
    )
    return template, frozenset(i for i in stop_ids if i >= 0)
