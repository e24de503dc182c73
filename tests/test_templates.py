"""FIM templates: prompt layout per family, GGUF metadata overrides, control-string hygiene."""

from __future__ import annotations

import pytest

from server.model.templates import CODELLAMA, QWEN, TEMPLATES, ContextFile, from_metadata, template_for


def test_qwen_repo_level_layout() -> None:
    prompt = QWEN.render(
        "def f():\n    return ",
        "\n",
        context=[ContextFile("pkg/util.py", "def helper(): ...")],
        repo="shop",
        path="pkg/main.py",
    )
    assert prompt == (
        "<|repo_name|>shop\n"
        "<|file_sep|>pkg/util.py\ndef helper(): ...\n"
        "<|file_sep|>pkg/main.py\n"
        "<|fim_prefix|>def f():\n    return <|fim_suffix|>\n<|fim_middle|>"
    )


def test_context_comes_before_the_prefix_so_typing_keeps_the_cache() -> None:
    """Typing at the cursor changes only what follows the prefix: the prompt head is shared."""
    ctx = [ContextFile("a.py", "X = 1")]
    before = QWEN.render("x = ", "\nprint(x)\n", context=ctx, repo="r", path="b.py")
    after = QWEN.render("x = X", "\nprint(x)\n", context=ctx, repo="r", path="b.py")
    head = QWEN.render_context(ctx, repo="r", path="b.py") + QWEN.prefix + "x = "
    assert before.startswith(head) and after.startswith(head)


def test_families_without_repo_tokens_use_path_comments() -> None:
    prompt = CODELLAMA.render("a", "b", context=[ContextFile("x.py", "Y = 2")], path="z.py")
    assert prompt.startswith("# x.py\nY = 2\n")
    assert prompt.endswith("<PRE> a <SUF>b <MID>")


@pytest.mark.parametrize("family", ["qwen", "starcoder", "codellama", "deepseek"])
def test_declared_families(family: str) -> None:
    template = template_for(family)
    assert template.prefix and template.suffix and template.middle and template.stop


def test_unknown_family_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown model family 'gpt'"):
        template_for("gpt")


def test_qwen_stops_on_every_end_token() -> None:
    for token in ("<|endoftext|>", "<|im_end|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>"):
        assert token in QWEN.stop


def test_gguf_metadata_overrides_the_family_template() -> None:
    vocab = {151659: "<|fim_prefix|>", 151661: "<|fim_suffix|>", 151660: "<|fim_middle|>"}
    metadata = {
        "tokenizer.ggml.fim_pre_token_id": "151659",
        "tokenizer.ggml.fim_suf_token_id": "151661",
        "tokenizer.ggml.fim_mid_token_id": "151660",
        "tokenizer.ggml.eos_token_id": "151645",
        "tokenizer.ggml.fim_pad_token_id": "151662",
    }
    template, stops = from_metadata("starcoder", metadata, vocab.__getitem__)
    assert (template.prefix, template.suffix, template.middle) == (
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
    )
    assert stops == {151645, 151662}


def test_metadata_without_fim_keys_keeps_the_family() -> None:
    template, stops = from_metadata("qwen", {}, lambda _: "")
    assert template is TEMPLATES["qwen"] and stops == frozenset()
