"""Scores, paired statistics, the tuning rule and the workspace settings file of `infiller eval`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from server.eval.configs import DEFAULT, PLAIN, choose, standard_configs
from server.eval.metrics import edit_similarity, exact_match, identifier_f1, sign_test
from server.eval.report import paired, summarize, table
from server.eval.runner import Record
from server.eval.tune import choose_config, context_settings
from server.settings import read_settings
from server.settings_file import load_workspace_settings, merge, write_workspace_settings


def test_exact_match_ignores_trailing_space_only() -> None:
    assert exact_match("x = f(a)  \n", "x = f(a)")
    assert not exact_match("x = f(a )", "x = f(a)")
    assert not exact_match("  x = f(a)", "x = f(a)\n    y") and exact_match("a\n  b  ", "a\n  b")


def test_edit_similarity() -> None:
    assert edit_similarity("abc", "abc") == 1.0
    assert edit_similarity("abc", "abd") == pytest.approx(2 / 3)
    assert edit_similarity("", "abc") == 0.0


def test_identifier_f1_counts_names_not_keywords() -> None:
    assert identifier_f1("return apply_tax(total, RATE)", "return apply_tax(total, RATE)") == 1.0
    # Two of three names right: precision 2/2, recall 2/3.
    assert identifier_f1("apply_tax(total)", "apply_tax(total, RATE)") == pytest.approx(0.8)
    assert identifier_f1("return x", "return y") == 0.0
    assert identifier_f1(")", ")") == 1.0


def test_sign_test() -> None:
    assert sign_test(5, 0) == pytest.approx(2 / 32)
    assert sign_test(3, 3) == 1.0
    assert sign_test(0, 0) == 1.0
    assert sign_test(10, 1) < 0.05 < sign_test(6, 2)


def record(config: str, key: str, exact: bool, passed: bool | None = None, tokens: int = 100) -> Record:
    score = float(exact)
    return Record(
        model="m", config=config, key=key, level="line", path="a.py", line=0, column=0, target="t",
        prediction="t" if exact else "u", exact=exact, edit_similarity=score, identifier_f1=score,
        prompt_tokens=tokens, context_tokens=0, total_ms=10.0, prompt_ms=5.0, retrieval_ms=1.0,
        covered=passed is not None, usable=passed is not None, passed=passed,
    )  # fmt: skip


def test_paired_and_summary_use_only_cases_every_configuration_finished() -> None:
    records = [record(DEFAULT, f"k{i}", i < 6, passed=i < 5) for i in range(8)]
    records += [record("other", f"k{i}", i < 1, passed=i < 1) for i in range(8)]
    records.append(record(DEFAULT, "half-done", True))  # no "other" record: left out of both
    pair = paired(records, "m", DEFAULT, "other")
    assert (pair.only_default, pair.only_this) == (5, 0)
    assert (pair.exec_only_default, pair.exec_only_this) == (4, 0)
    assert pair.p == pytest.approx(2 / 32)
    default, other = summarize(records, [DEFAULT, "other"])
    assert default.cases == 8 and default.exact_match == 0.75
    assert default.executable == pytest.approx(5 / 8) and default.executable_cases == 8
    text = table([default, other], records)
    assert "| m | other | 5 | 0 | 0.06 | 4 | 0 | 0.12 |" in text


def test_tuning_prefers_execution_then_exact_within_the_default_prompt_length() -> None:
    records = [record(DEFAULT, f"k{i}", i < 3, passed=i < 3) for i in range(6)]
    records += [record("better", f"k{i}", i < 3, passed=i < 4) for i in range(6)]
    records += [record("costly", f"k{i}", True, passed=True, tokens=300) for i in range(6)]
    summaries = summarize(records, [DEFAULT, "better", "costly"])
    choice = choose_config(summaries, "m", ["better", "costly"])
    assert choice.config == "better"  # "costly" is best but reads 3x the default's prompt
    same = [replace(r, config="same") for r in records if r.config == DEFAULT]
    tie = summarize([r for r in records if r.config == DEFAULT] + same, [DEFAULT, "same"])
    assert choose_config(tie, "m", ["same"]).config == DEFAULT  # a tie keeps the default


def test_configurations() -> None:
    configs = standard_configs()
    plain = configs[PLAIN]
    assert (plain.sources, plain.prefix_tokens, plain.suffix_tokens) == ((), 1536, 256)
    assert plain.completion_settings().context_tokens == 0
    assert {"definitions", "similar", "recent", "repomap", "no context", "all sources"} <= set(configs)
    assert DEFAULT in choose(["no context"])
    # A tune candidate can be named in a plain run, to compare it side by side without tuning.
    assert list(choose(["definitions+similar"])) == ["definitions+similar", DEFAULT]
    with pytest.raises(ValueError, match="unknown configuration"):
        choose(["nope"])


def test_tuned_settings_file_round_trips_into_the_server_settings(tmp_path: Path) -> None:
    (tmp_path / ".infiller.toml").write_text('[settings]\nmodel = "qwen2.5-coder-1.5b"\n')
    context = context_settings(standard_configs()["similar"])
    reason = 'similar won "by a lot" (executable –, \t\x7f\u00e9)'
    path = write_workspace_settings(tmp_path, context, reason, header="test")
    loaded = load_workspace_settings(tmp_path)
    assert loaded is not None and loaded.path == path and not loaded.problems
    assert loaded.reason == reason
    # The reason reads as written, not as \u escapes.
    assert "executable –" in path.read_text("utf-8")
    # The editor sends its own values for every key; the workspace file wins for the keys it sets.
    client = {"infiller": {"context": {"sources": ["definitions"], "budgetTokens": 100}, "maxTokens": 64}}
    settings, errors = read_settings(merge(client, loaded))
    assert errors == []
    assert settings.context.sources == ["similar"] and settings.context.budget_tokens == 384
    assert settings.max_tokens == 64 and settings.model == "qwen2.5-coder-1.5b"  # kept from the user


def test_a_broken_settings_file_is_reported_not_fatal(tmp_path: Path) -> None:
    assert load_workspace_settings(tmp_path) is None
    (tmp_path / ".infiller.toml").write_text("[settings\n")
    loaded = load_workspace_settings(tmp_path)
    assert loaded is not None and "not valid TOML" in loaded.problems[0] and not loaded.settings
