"""`infiller eval` on repositories in other languages than Python: which files give cases, which
names count as another file's (the crossfile level), the main language, npm packages.
(tests/test_eval_masking.py checks the masks themselves, per language.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from server.eval.configs import choose
from server.eval.repo import Workspace, is_case_file, main_language, with_family
from server.eval.runner import RunOptions, check_resume, run
from server.model.fake import FakeEngine
from server.model.runtime import Backend, Runtime

POLY = Path(__file__).parent / "data" / "eval" / "polyrepo"


@pytest.fixture
def poly(tmp_path: Path) -> Workspace:
    ws = Workspace(
        POLY.resolve(), tmp_path / "scratch", tmp_path / "index.sqlite", ["go", "rust", "typescript"]
    )
    yield ws  # type: ignore[misc]
    ws.close()


@pytest.mark.parametrize(
    ("rel", "language", "case"),
    [
        ("web/src/cart.ts", "typescript", True),
        ("web/src/view.tsx", "tsx", True),
        ("web/src/cart.test.ts", "typescript", False),
        ("web/src/cart.spec.js", "javascript", False),
        ("web/src/__tests__/cart.ts", "typescript", False),
        ("web/src/money.d.ts", "typescript", False),
        ("web/dist/cart.js", "javascript", False),
        ("web/lib/jquery.min.js", "javascript", False),
        ("gosrv/api/handlers.go", "go", True),
        ("gosrv/api/handlers_test.go", "go", False),
        ("gosrv/vendor/x/y.go", "go", False),
        ("crate/src/counter.rs", "rust", True),
        ("crate/tests/it.rs", "rust", False),
        ("app/src/main/java/org/x/Cart.java", "java", True),
        ("app/src/test/java/org/x/CartTest.java", "java", False),
        ("pkg/module.py", "python", True),
        ("pkg/module.pyi", "python", False),
        ("tests/test_module.py", "python", False),
    ],
)
def test_product_code_gives_cases_and_tests_declarations_bundles_do_not(
    rel: str, language: str, case: bool
) -> None:
    assert is_case_file(rel, with_family([language])) is case
    # Only in the languages under evaluation.
    assert not is_case_file(rel, ("c",))


def test_the_repositorys_main_language_gives_the_cases_unless_others_are_named(tmp_path: Path) -> None:
    sizes = {"a.ts": 900, "b.tsx": 300, "c.go": 1000, "d.py": 100, "e.test.ts": 5000, "dist/f.js": 9000}
    # TypeScript counts its .tsx files: 1,200 bytes against Go's 1,000; tests and bundles do not count.
    assert main_language(sizes, sizes.__getitem__) == "typescript"
    assert with_family(["typescript"]) == ("typescript", "tsx")
    ws = Workspace(POLY.resolve(), tmp_path / "scratch", tmp_path / "index.sqlite")
    try:
        by_language: dict[str, int] = {}
        for path in POLY.rglob("*"):
            rel = path.relative_to(POLY).as_posix()
            for lang in ("typescript", "go", "rust", "python"):
                if path.is_file() and is_case_file(rel, with_family([lang])):
                    by_language[lang] = by_language.get(lang, 0) + path.stat().st_size
        assert ws.languages == with_family([max(by_language, key=by_language.__getitem__)])
    finally:
        ws.close()


def test_names_another_file_defines_are_found_through_each_languages_imports(poly: Workspace) -> None:
    # TypeScript: a relative import brings in the imported file's top-level names.
    cart = poly.imported_elsewhere("web/src/cart.ts")
    assert {n: cart[n] for n in ("Money", "addMoney", "formatMoney", "money")} == dict.fromkeys(
        ("Money", "addMoney", "formatMoney", "money"), "web/src/money.ts"
    )
    assert "Cart" not in cart and "Line" not in cart  # its own
    # Go: another package of the module is used as `store.Name`; a file of the same package
    # shares its names without an import; the standard library is nobody's file here.
    handlers = poly.imported_elsewhere("gosrv/api/handlers.go")
    assert handlers["store"] == "gosrv/internal/store/store.go"
    assert handlers["Routes"] == handlers["Default"] == "gosrv/api/routes.go"
    assert "http" not in handlers and "fmt" not in handlers
    routes = poly.imported_elsewhere("gosrv/api/routes.go")
    assert routes["NewServer"] == "gosrv/api/handlers.go"
    # Rust: the names a `use crate::...` path ends with, where the crate defines them.
    assert poly.imported_elsewhere("crate/src/report.rs") == {
        "count_words": "crate/src/counter.rs",
        "Counter": "crate/src/counter.rs",
    }
    assert poly.imported_elsewhere("crate/src/counter.rs") == {}  # `use std::...` names nothing here


def test_a_run_in_other_languages_scores_its_cases_without_covering_tests(
    poly: Workspace, tmp_path: Path
) -> None:
    def loader(model: str, threads: int) -> Backend:
        return Runtime(FakeEngine(lambda prompt: "x"))

    options = RunOptions(
        repo="poly",
        models=["fake"],
        configs=choose(["no context"]),
        levels=["statement", "block", "function", "crossfile"],
        n=12,
        seed=3,
        out=tmp_path / "out",
        execute=False,
        languages=list(poly.languages),
    )
    records = run(poly, options, loader=loader)
    paths = {r.path for r in records}
    assert {p.rsplit(".", 1)[1] for p in paths} == {"ts", "go", "rs"}
    assert not any(p.endswith((".test.ts", "_test.go", ".d.ts", ".py")) or "/dist/" in p for p in paths)
    assert {r.level for r in records} >= {"statement", "function", "crossfile"}
    assert not any(r.covered for r in records)  # tests are run for Python only
    for r in records:
        text = (POLY / r.path).read_text()
        assert r.target and r.target in text


def test_a_run_folder_of_a_python_repository_from_before_languages_still_resumes(tmp_path: Path) -> None:
    options = RunOptions(
        repo="tiny", models=["fake"], configs={}, levels=["line"], n=4, seed=1, out=tmp_path / "out"
    )
    saved = options.case_parameters()
    del saved["languages"]
    options.out.mkdir()
    (options.out / "run.json").write_text(json.dumps(saved))
    (options.out / "cases.jsonl").write_text("{}\n")
    check_resume(options.out, options)  # no "holds a run of other cases"
    with pytest.raises(ValueError, match="languages"):
        check_resume(options.out, RunOptions(**{**options.__dict__, "languages": ["go"]}))


def test_an_npm_package_npm_cannot_fetch_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.cli import main

    # Real npm, kept off the network: it fails as it does for a version that does not exist.
    monkeypatch.setenv("npm_config_offline", "true")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["eval", "npm:nosuchpkg-zzqx@1.0.0", "--no-exec", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    # (A machine without npm is told that instead.)
    said = "npm could not fetch it" if shutil.which("npm") else "fetching an npm package needs `npm` on PATH"
    assert f"npm:nosuchpkg-zzqx@1.0.0: {said}" in err and "Traceback" not in err


def test_unknown_languages_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from server.cli import main

    assert main(["eval", str(POLY), "--languages", "cobol", "--out", str(tmp_path / "out")]) == 1
    assert "--languages: unknown cobol (known: python, javascript" in capsys.readouterr().err
