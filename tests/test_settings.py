"""Settings: camelCase keys, strict types, bounds, and a message plus the default for every bad value."""

from __future__ import annotations

from pathlib import Path

from server.settings import ContextSettings, Settings, describe, read_settings, to_json

DOCS = Path(__file__).resolve().parent.parent / "docs" / "lsp.md"


def test_defaults_when_nothing_is_sent() -> None:
    for raw in (None, {}, {"infiller": {}}):
        settings, errors = read_settings(raw)
        assert settings == Settings() and errors == []


def test_camel_case_keys_nested_or_flat() -> None:
    raw = {
        "maxTokens": 64,
        "maxLineTokens": 20,
        "context": {"budgetTokens": 0, "prefixTokens": 256},
        "debounce": {"minMs": 10, "maxMs": 90, "adaptive": False},
        "languages": ["python"],
        "hotStreak": False,
    }
    for payload in (raw, {"infiller": raw}):
        settings, errors = read_settings(payload)
        assert errors == []
        assert settings.max_tokens == 64 and settings.max_line_tokens == 20
        assert settings.context.budget_tokens == 0 and settings.context.prefix_tokens == 256
        assert (settings.debounce.min_ms, settings.debounce.max_ms, settings.debounce.adaptive) == (
            10,
            90,
            False,
        )
        assert settings.languages == ["python"] and settings.hot_streak is False
    completion = read_settings(raw)[0].completion_settings()
    assert (completion.max_tokens_block, completion.max_tokens_line, completion.context_tokens) == (64, 20, 0)


def test_each_bad_value_gets_a_message_and_its_default_while_good_ones_apply() -> None:
    settings, errors = read_settings(
        {
            "infiller": {
                "enable": "yes",  # cattrs' default would read this as True
                "maxTokens": 12.5,
                "maxLineTokens": 2000,
                "context": {"suffixTokens": -1, "prefixTokens": 300},
                "debounce": "fast",
                "languages": "python",  # a string is not a list of one language
                "model": "qwen2.5-coder-0.5b",
                "colour": "blue",
            }
        }
    )
    assert settings.enable is True and settings.max_tokens == 128 and settings.max_line_tokens == 48
    assert (
        settings.context.suffix_tokens == ContextSettings().suffix_tokens
        and settings.context.prefix_tokens == 300
    )
    assert settings.debounce == Settings().debounce and settings.languages is None
    assert settings.model == "qwen2.5-coder-0.5b"
    text = "\n".join(errors)
    for key in (
        "enable",
        "maxTokens",
        "maxLineTokens",
        "context.suffixTokens",
        "debounce",
        "languages",
        "colour",
    ):
        assert f"setting {key}" in text or f"unknown setting {key}" in text, (key, errors)
    assert len(errors) == 7
    assert "using the default 48" in text and "above the maximum 512" in text


def test_integral_floats_are_accepted_for_integers() -> None:
    settings, errors = read_settings({"maxTokens": 64.0})
    assert errors == [] and settings.max_tokens == 64


def test_min_above_max_debounce_is_swapped_with_a_message() -> None:
    settings, errors = read_settings({"debounce": {"minMs": 300, "maxMs": 100}})
    assert (settings.debounce.min_ms, settings.debounce.max_ms) == (100, 300)
    assert len(errors) == 1 and "exceeds" in errors[0]


def test_not_an_object() -> None:
    settings, errors = read_settings(["maxTokens", 3])
    assert settings == Settings() and len(errors) == 1


def test_round_trip_through_the_client_form() -> None:
    settings, _ = read_settings({"maxTokens": 99, "debounce": {"maxMs": 150}})
    data = to_json(settings)
    assert data["maxTokens"] == 99 and data["debounce"]["maxMs"] == 150 and "hotStreak" in data
    assert read_settings(data) == (settings, [])


def test_languages_match_our_names_or_client_ids() -> None:
    settings, _ = read_settings({"languages": ["typescriptreact", "python"]})
    assert settings.language_enabled("python", "python")
    assert settings.language_enabled("tsx", "typescriptreact")
    assert not settings.language_enabled("go", "go")
    assert not read_settings({"enable": False})[0].language_enabled("python", "python")


def test_every_setting_is_documented() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    for row in describe():
        assert f"`{row.key}`" in docs, f"{row.key} missing from docs/lsp.md"
