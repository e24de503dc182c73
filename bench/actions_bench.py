"""Code actions on functions the project never tuned on: Fix-this repairs and generated tests.

Small pure functions come from pinned sdists (toolz and more-itertools by default; `--sources`
names others: pydash, inflection, never used before actions-13), chosen at run time and
deterministically (a seeded hash of their names) among top-level functions with a short body
and passing doctests. Their doctest examples, evaluated on the original code, become oracle
tests that record its behaviour. Single-line mutants are made at run time by the built-in
mutator (comparisons, ±1 constants, and/or, arithmetic, negation, return values); only mutants
the oracle tests catch are kept.

- Fix this: the workspace holds the mutated module and the oracle tests; the user "selects the
  function". `--fix-mutants N` takes the first N kept mutants of each function as cases.
  Repaired = the applied candidate passes the oracle tests in a fresh sandbox run.
- Generate tests: the workspace holds the original module and no tests. The delivered tests are
  run against every kept mutant (kill rate); branch coverage is the action's own measure; every
  "possible bug" reported is false (the code is the released one).

    nice -n 19 .venv/bin/python -m bench.actions_bench --model qwen2.5-coder-1.5b --threads 1

Writes bench/results/actions_bench[_<tag>].{json,md} with machine info and load averages.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import doctest
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType, ModuleType

from bench.sdist import fetch_sdist
from server.actions.fix import FixRequest, Problem, fix
from server.actions.quality import Mutant, mutants
from server.actions.sandbox import Sandbox
from server.actions.testgen import GenerateTestsRequest, Suite, generate_tests
from server.model.chat import runtime_first_tokens, runtime_generator
from server.model.loader import load_runtime

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Source:
    spec: str  # the pinned sdist
    package: str  # the package folder, relative to `where`
    modules: tuple[str, ...]  # modules whose functions are candidates, relative to `where`
    where: str = ""  # the folder inside the sdist that holds the package ("src" layouts)


SOURCES = {
    "toolz": Source(
        "toolz==1.0.0", "toolz", ("toolz/itertoolz.py", "toolz/dicttoolz.py", "toolz/functoolz.py")
    ),
    "more-itertools": Source(
        "more-itertools==10.5.0", "more_itertools", ("more_itertools/recipes.py", "more_itertools/more.py")
    ),
    # Added after actions-12, when the two above were nearly used up: their functions were never
    # drawn, read or tuned on before.
    "pydash": Source(
        "pydash==8.0.4",
        "pydash",
        tuple(
            f"pydash/{m}.py"
            for m in ("arrays", "collections", "numerical", "objects", "predicates", "strings", "utilities")
        ),
        "src",
    ),
    "inflection": Source("inflection==0.5.1", "inflection", ("inflection/__init__.py",)),
    # Added after actions-19, when pydash's functions were mostly read: never drawn before.
    "webcolors": Source(
        "webcolors==24.11.1",
        "webcolors",
        tuple(f"webcolors/{m}.py" for m in ("_conversion", "_normalization", "_definitions", "_html5")),
        "src",
    ),
    "w3lib": Source(
        "w3lib==2.2.1", "w3lib", tuple(f"w3lib/{m}.py" for m in ("http", "url", "encoding", "html"))
    ),
    "humanize": Source(
        "humanize==4.11.0",
        "humanize",
        tuple(f"humanize/{m}.py" for m in ("number", "filesize", "lists", "time")),
        "src",
    ),
    "natsort": Source("natsort==8.4.0", "natsort", ("natsort/natsort.py", "natsort/utils.py")),
    "string-utils": Source(
        "python-string-utils==1.0.0",
        "string_utils",
        ("string_utils/validation.py", "string_utils/manipulation.py"),
    ),
    "python-utils": Source(
        "python-utils==3.9.1",
        "python_utils",
        tuple(
            f"python_utils/{m}.py" for m in ("converters", "time", "formatters", "decorators", "exceptions")
        ),
    ),
    # Added after actions-21, when the third pool was mostly read: never drawn before.
    "babel": Source(
        "babel==2.19.0",
        "babel",
        tuple(f"babel/{m}.py" for m in ("core", "dates", "numbers", "messages/plurals")),
    ),
    "rsa": Source("rsa==4.9.1", "rsa", ("rsa/common.py", "rsa/prime.py")),
    "iptools": Source("iptools==0.7.0", "iptools", ("iptools/ipv4.py", "iptools/ipv6.py")),
    "wcwidth": Source(
        "wcwidth==0.9.4",
        "wcwidth",
        tuple(f"wcwidth/{m}.py" for m in ("align", "escape_sequences", "grapheme")),
    ),
    "paste": Source(
        "paste==3.10.1",
        "paste",
        ("paste/request.py", "paste/util/dateinterval.py", "paste/util/mimeparse.py"),
    ),
    "dnslib": Source("dnslib==0.9.26", "dnslib", ("dnslib/bit.py", "dnslib/dns.py")),
    "genshi": Source("genshi==0.7.12", "genshi", ("genshi/core.py", "genshi/util.py")),
    # Added after actions-24, when the fourth pool was mostly read: never drawn before.
    "jsonpickle": Source("jsonpickle==4.1.4", "jsonpickle", ("jsonpickle/util.py",)),
    "pyrsistent": Source(
        "pyrsistent==0.20.0",
        "pyrsistent",
        tuple(f"pyrsistent/_{m}.py" for m in ("helpers", "pbag", "pdeque", "plist", "pmap", "pset", "toolz")),
    ),
    "nzmath": Source(
        "nzmath==3.0.3",
        "nzmath",
        tuple(f"nzmath/{m}.py" for m in ("arith1", "combinatorial", "gcd", "rational", "poly/multiutil")),
        "src",
    ),
    # Not construct/core.py: a docstring there is no valid doctest (`>>>>`), and parsing it raises.
    "construct": Source("construct==2.10.70", "construct", ("construct/lib/binary.py",)),
    "biopython": Source(
        "biopython==1.88",
        "Bio",
        tuple(f"Bio/{m}.py" for m in ("Seq", "SeqUtils/__init__", "SeqUtils/CheckSum", "PDB/Polypeptide")),
    ),
    # Only number.py: the other modules import six, which is not installed.
    "webhelpers2": Source("WebHelpers2==2.1", "webhelpers2", ("webhelpers2/number.py",)),
    "pychord": Source("pychord==1.4.1", "pychord", ("pychord/utils.py", "pychord/analyzer.py")),
    "pymeeus": Source("PyMeeus==0.5.12", "pymeeus", ("pymeeus/Coordinates.py", "pymeeus/base.py")),
    # Added after actions-28, when the fifth pool was mostly read: never drawn before.
    # Not _gohlketransforms.py: a vendored copy of another library's module.
    "transforms3d": Source(
        "transforms3d==0.4.2",
        "transforms3d",
        tuple(f"transforms3d/{m}.py" for m in ("utils", "quaternions", "shears", "affines", "taitbryan")),
    ),
    # One folder of the many (each holds doctested functions), less linear_search: twelve functions.
    "algorithms": Source(
        "algorithms==1.0.1",
        "algorithms",
        tuple(
            f"algorithms/searching/{m}.py"
            for m in (
                "binary_search",
                "find_min_rotate",
                "first_occurrence",
                "generalized_binary_search",
                "last_occurrence",
                "search_insert",
                "search_rotate",
                "two_sum",
            )
        ),
    ),
    "uniseg": Source(
        "uniseg==0.10.1",
        "uniseg",
        tuple(
            f"uniseg/{m}.py"
            for m in ("breaking", "graphemecluster", "linebreak", "sentencebreak", "wordbreak", "wrap")
        ),
        "src",
    ),
    # The six modules whose function passes the filter, of the 21 with a doctested function.
    "simplestatistics": Source(
        "simplestatistics==0.4.0",
        "simplestatistics",
        tuple(
            f"simplestatistics/statistics/{m}.py"
            for m in ("max", "mean", "min", "normal", "variance", "z_scores")
        ),
    ),
    "molmass": Source("molmass==2026.1.8", "molmass", ("molmass/molmass.py",)),
    # Only primefac.py: __init__.py and __main__.py repeat its functions.
    "primefac": Source("primefac==2.0.12", "primefac", ("primefac/primefac.py",), "src"),
    "langcodes": Source("langcodes==3.5.1", "langcodes", ("langcodes/__init__.py",)),
    # Added after actions-31, when the sixth pool was mostly read: never drawn before.
    # Five modules of misc/, fifteen functions: its other folders hold more, left for later pools.
    "fonttools": Source(
        "fonttools==4.68.0",
        "fontTools",
        tuple(
            f"fontTools/misc/{m}.py"
            for m in ("arrayTools", "bezierTools", "eexec", "fixedTools", "textTools")
        ),
        "Lib",
    ),
    # Not dict_utils.py: whether its module loads depends on what was imported before it (the
    # draw order); nor filename_matcher.py or test_utils/: fifteen functions is enough.
    "bx-py-utils": Source(
        "bx_py_utils==121",
        "bx_py_utils",
        tuple(
            f"bx_py_utils/{m}.py"
            for m in (
                "anonymize",
                "error_handling",
                "hash_utils",
                "html_utils",
                "iteration",
                "list_utils",
                "string_utils",
            )
        ),
    ),
    "littleutils": Source("littleutils==0.2.4", "littleutils", ("littleutils/__init__.py",)),
    "tashaphyne": Source("Tashaphyne==0.3.4.1", "tashaphyne", ("tashaphyne/normalize.py",)),
    # A namespace package: the workspace holds jaraco/ with this one subpackage.
    "jaraco.structures": Source("jaraco.structures==2.2.0", "jaraco", ("jaraco/structures/binary.py",)),
    "periodictable": Source(
        "periodictable==1.7.1", "periodictable", ("periodictable/nsf.py", "periodictable/xsf.py")
    ),
    # Not fasta.py: its one doctested function records differently on each run.
    "pyteomics": Source("pyteomics==5.0.1", "pyteomics", ("pyteomics/parser.py", "pyteomics/electrochem.py")),
    "mathparse": Source("mathparse==0.2.9", "mathparse", ("mathparse/mathparse.py",)),
    # Added for held-out measurements after the seventh pool: never drawn before.
    # Only core.py, fourteen functions: fluids' other modules hold hundreds more, left for later pools.
    "fluids": Source("fluids==1.3.1", "fluids", ("fluids/core.py",)),
    # Two modules of six with a passing function: fourteen functions.
    "aima3": Source("aima3==1.0.11", "aima3", ("aima3/logic.py", "aima3/nlp.py")),
    # Not utilities.py: fifteen functions is enough.
    "fnc": Source("fnc==0.5.3", "fnc", ("fnc/mappings.py", "fnc/sequences.py"), "src"),
    "libnum": Source("libnum==1.7.1", "libnum", ("libnum/strings.py",)),
    "geometer": Source("geometer==0.4.2", "geometer", ("geometer/utils/indexing.py",)),
    "mercantile": Source("mercantile==1.2.1", "mercantile", ("mercantile/__init__.py",)),
    "colorhash": Source("colorhash==3.0.0", "colorhash", ("colorhash/colorhash.py",), "src"),
    # Added for held-out measurements after the eighth pool: never drawn before.
    # Three modules of core/: hachoir's regex/ and metadata/ hold more, left for later pools.
    "hachoir": Source(
        "hachoir==3.4.0",
        "hachoir",
        tuple(f"hachoir/core/{m}.py" for m in ("tools", "bits", "text_handler")),
    ),
    # Four modules of the hundreds with doctested functions (the package is 88 MB unpacked):
    # colour's other models/, colorimetry/ and transfer functions are left for later pools.
    "colour-science": Source(
        "colour-science==0.4.7",
        "colour",
        tuple(
            f"colour/{m}.py"
            for m in ("models/cie_xyy", "models/cie_ucs", "models/sucs", "colorimetry/lightness")
        ),
    ),
    # jinja.py imports jinja2, which the venv has.
    "hebrew-numbers": Source(
        "hebrew_numbers==0.2.1",
        "hebrew_numbers",
        ("hebrew_numbers/hebrew_numbers.py", "hebrew_numbers/jinja.py"),
        "src",
    ),
    "sgp4": Source("sgp4==2.27", "sgp4", ("sgp4/functions.py",)),
    # Added for held-out measurements after the ninth pool: never drawn before.
    # The seven modules with a passing function: not seqfetcher.py (it fetches over the network),
    # nor vmc_digest.py, digest.py and coordinates.py (none of their functions passes).
    "bioutils": Source(
        "bioutils==0.6.2",
        "bioutils",
        tuple(
            f"bioutils/{m}.py"
            for m in ("accessions", "assemblies", "cytobands", "digests", "normalize", "par", "sequences")
        ),
        "src",
    ),
    "lib-list": Source("lib_list==1.1.9", "lib_list", ("lib_list/lib_list.py",)),
    "baseconvert": Source("baseconvert==2.0.4", "baseconvert", ("baseconvert/baseconvert.py",)),
    # Added for held-out measurements after the tenth pool: never drawn before.
    # Airspeed and standard-atmosphere formulas (floats, math); unit_conversion.py and ssec.py
    # hold no function that passes.
    "aerocalc3": Source("aerocalc3==0.10", "aerocalc3", ("aerocalc3/airspeed.py", "aerocalc3/std_atm.py")),
    # The six modules with a passing function: not units.py (it needs quantities, not installed).
    "chempy": Source(
        "chempy==0.10.2",
        "chempy",
        tuple(
            f"chempy/{m}.py"
            for m in (
                "_util",
                "chemistry",
                "printing/numbers",
                "util/parsing",
                "util/periodic",
                "util/pyutil",
            )
        ),
    ),
    # Only tifffile.py, the one module with doctested functions: the TIFF reader's helpers.
    "tifffile": Source("tifffile==2026.3.3", "tifffile", ("tifffile/tifffile.py",)),
    # Not parser.py or paths.py: none of their functions passes.
    "opt-einsum": Source(
        "opt-einsum==3.4.0", "opt_einsum", ("opt_einsum/helpers.py", "opt_einsum/testing.py")
    ),
    # A namespace package (no __init__.py); not its other four modules: none of their functions passes.
    "continuedfractions": Source(
        "continuedfractions==1.12.0",
        "continuedfractions",
        ("continuedfractions/lib.py", "continuedfractions/sequences.py"),
        "src",
    ),
}
# The pool of seeds actions-1 to actions-12: changing the default would change their draws.
DEFAULT_SOURCES = ("toolz", "more-itertools")
# "Small pure function": body lines without the docstring.
MIN_BODY_LINES = 2
MAX_BODY_LINES = 14
# A doctest example or a mutant that runs longer than this is hanging (an infinite loop).
EXAMPLE_TIMEOUT_S = 1
# Mutants kept per function for the kill rate (the Fix bench takes one of them).
MAX_MUTANTS_PER_FUNCTION = 8
# A run of the delivered tests against a mutant: longer is an infinite loop (killed, counted).
MUTANT_TIMEOUT_S = 10
# Names doctests use that make a function impure or slow.
IMPURE = ("print(", "open(", "random", "time.", "sleep", "input(", "threading")


@dataclass
class Function:
    package: str  # folder copied into the workspace
    source_root: str  # the unpacked sdist
    module_path: str  # workspace-relative
    module: str  # dotted
    name: str
    start_line: int  # 1-based, the `def` line (decorators excluded: candidates have none)
    end_line: int
    oracle: str = ""  # the oracle test file
    killed: list[tuple[int, str, str]] = field(default_factory=list)  # (line, kind, description)


@contextlib.contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    def boom(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _load(module: str, text: str, path: Path) -> ModuleType:
    """The module from `text` (a mutant or the original), fresh, in its package."""
    mod = ModuleType(module)
    mod.__file__ = str(path)
    mod.__package__ = module.rpartition(".")[0]
    exec(compile(text, str(path), "exec"), mod.__dict__)
    return mod


def _examples(node: ast.FunctionDef) -> list[doctest.Example]:
    doc = ast.get_docstring(node) or ""
    return doctest.DocTestParser().get_examples(doc)


def _record(mod: ModuleType, examples: list[doctest.Example]) -> list[tuple[str, str | None]] | None:
    """(source, repr of its value or None for a statement) for each example, on `mod`."""
    env = dict(vars(mod))
    out: list[tuple[str, str | None]] = []
    try:
        with _deadline(EXAMPLE_TIMEOUT_S):
            for ex in examples:
                # Unparsed: the oracle test gets the code without doctest directives (`# doctest:`).
                src = ex.source.strip()
                # Examples that import the module and call through its name (w3lib's `import
                # w3lib.encoding`, then `w3lib.encoding.read_bom(...)`) call the module under test.
                if src == f"import {mod.__name__}":
                    continue
                src = src.replace(f"{mod.__name__}.", "")
                try:
                    expr = ast.parse(src, mode="eval")
                except SyntaxError:
                    src = ast.unparse(ast.parse(src))
                    exec(src, env)
                    out.append((src, None))
                    continue
                src = ast.unparse(expr)
                value = eval(compile(expr, "<example>", "eval"), env)
                if isinstance(value, Iterator) or " at 0x" in repr(value):
                    return None  # lazy or identity-bound: the oracle could not compare it
                out.append((src, repr(value)))
    except BaseException:  # the original must run every example cleanly (a mutant may not)
        return None
    return out


def _oracle_text(fn: Function, recorded: list[tuple[str, str | None]]) -> str:
    lines = [
        f'"""Oracle tests: `{fn.name}`\'s doctest examples as recorded on the released code."""',
        "",
        f"import {fn.module} as _module",
        "",
        "globals().update({k: v for k, v in vars(_module).items() if not k.startswith('__')})",
        f"from {fn.module} import {fn.name}",
        "",
    ]
    setup: list[str] = []
    n = 0
    for src, value in recorded:
        if value is None:
            setup.append(src)
            continue
        n += 1
        lines += ["", f"def test_{fn.name}_example_{n}():"]
        lines += [f"    {s}" for stmt in setup for s in stmt.splitlines()]
        lines.append(f"    assert repr({src}) == {value!r}")
        lines.append("")
        # Later examples ran after this one: replayed, as the doctest ran them (`it.seek(i)`
        # before `next(it)` in more-itertools' `locate`; without it the oracle failed on the
        # released code, and no repair could pass it).
        setup.append(src)
    return "\n".join(lines) + "\n"


def _kills(fn: Function, mod_path: Path, recorded: list[tuple[str, str | None]], mutant: Mutant) -> bool:
    try:
        with _deadline(EXAMPLE_TIMEOUT_S):
            mod = _load(fn.module, mutant.text, mod_path)
    except BaseException:
        return True
    got = _record(mod, [doctest.Example(src, "") for src, _ in recorded])
    return got is None or [v for _, v in got] != [v for _, v in recorded]


def _rank(seed: str, name: str) -> str:
    return hashlib.sha1(f"{seed}:{name}".encode()).hexdigest()


def choose(
    count: int, seed: str, sources: Sequence[str] = DEFAULT_SOURCES
) -> list[tuple[Function, list[Mutant]]]:
    """`count` functions with an oracle and oracle-killed mutants, chosen by seeded hash among
    the named sources' functions."""
    pool: list[tuple[str, Function, ast.FunctionDef, str]] = []
    for source in (SOURCES[name] for name in sources):
        tree_root = fetch_sdist(source.spec, WORK) / source.where
        package = source.package
        if str(tree_root) not in sys.path:
            sys.path.insert(0, str(tree_root))
        for rel in source.modules:
            text = (tree_root / rel).read_text()
            for node in ast.parse(text).body:
                if not isinstance(node, ast.FunctionDef) or node.name.startswith("_") or node.decorator_list:
                    continue
                body = node.body[1:] if ast.get_docstring(node) else node.body
                if not body:
                    continue
                size = (node.end_lineno or node.lineno) - body[0].lineno + 1
                examples = _examples(node)
                if not (MIN_BODY_LINES <= size <= MAX_BODY_LINES and examples):
                    continue
                if any(word in ex.source for ex in examples for word in IMPURE):
                    continue
                module = rel[:-3].replace("/", ".").removesuffix(".__init__")
                fn = Function(
                    package, str(tree_root), rel, module, node.name, node.lineno, node.end_lineno or 0
                )
                pool.append((_rank(seed, f"{module}.{node.name}"), fn, node, text))
    pool.sort(key=lambda item: item[0])
    chosen: list[tuple[Function, list[Mutant]]] = []
    for _, fn, node, text in pool:
        path = Path(fn.source_root) / fn.module_path
        try:
            original = _load(fn.module, text, path)
        except BaseException:
            continue
        recorded = _record(original, _examples(node))
        if not recorded or all(v is None for _, v in recorded):
            continue
        if _record(_load(fn.module, text, path), _examples(node)) != recorded:
            continue  # not deterministic (string-utils' shuffle): no oracle can judge it
        body_start = (node.body[1] if ast.get_docstring(node) else node.body[0]).lineno
        candidates = [m for m in mutants(text, body_start, fn.end_line) if _kills(fn, path, recorded, m)]
        if not candidates:
            continue
        candidates.sort(key=lambda m: _rank(seed, f"{fn.name}:{m.line}:{m.description}"))
        kept = candidates[:MAX_MUTANTS_PER_FUNCTION]
        fn.oracle = _oracle_text(fn, recorded)
        with tempfile.TemporaryDirectory(prefix="actions-bench-") as tmp:
            if not _oracle_passes(_workspace(fn, Path(tmp)), fn, text):
                # Recorded in-process, some values differ under pytest (python-utils' to_unicode:
                # a class the doctest defines reprs with the test module's name): no repair could
                # pass such an oracle.
                continue
        fn.killed = [(m.line, m.kind, m.description) for m in kept]
        chosen.append((fn, kept))
        if len(chosen) >= count:
            break
    return chosen


def _workspace(fn: Function, into: Path) -> Path:
    root = into / "ws"
    shutil.copytree(
        Path(fn.source_root) / fn.package,
        root / fn.package,
        ignore=shutil.ignore_patterns("tests", "__pycache__", "*.pyi"),
    )
    return root


def _oracle_passes(root: Path, fn: Function, text: str) -> bool:
    with Sandbox(root) as sandbox:
        run = sandbox.run_pytest(
            {fn.module_path: text, "tests/test_oracle.py": fn.oracle}, ["tests/test_oracle.py"]
        )
    return bool(run.outcomes) and not run.failed() and not run.collection_error


@dataclass
class FixRow:
    function: str
    mutant: str
    repaired: bool
    verified: bool
    wall_s: float
    origin: str
    tried: int
    lines: list[str]
    # Where the time went: model calls and seconds, candidates verified and their test runs' seconds.
    generations: int = 0
    model_s: float = 0.0
    candidates: int = 0
    verify_s: float = 0.0
    evidence: str = ""


@dataclass
class TestgenRow:
    function: str
    tests: int
    branches: str
    branch_ratio: float
    own_mutants: str
    bench_mutants_killed: int
    bench_mutants: int
    false_bug_reports: int
    dropped: int
    wall_s: float
    summary: str
    # What was reported as a possible bug on the released code (every one is false): the test
    # and its failure, so that the filter's misses can be read.
    false_reports: list[str] = field(default_factory=list)


def bench_fix(
    fn: Function, mutant: Mutant, generate: object, template: object, first_tokens: object = None
) -> FixRow:
    with tempfile.TemporaryDirectory(prefix="actions-bench-") as tmp:
        root = _workspace(fn, Path(tmp))
        (root / "tests").mkdir()
        (root / "tests" / "test_oracle.py").write_text(fn.oracle)
        path = root / fn.module_path
        path.write_text(mutant.text)
        problem = Problem(fn.start_line - 1, 0, fn.end_line, 0, "")
        t0 = time.perf_counter()
        result = fix(
            FixRequest(path, mutant.text, "python", problem, root),
            generate,  # type: ignore[arg-type]
            fim_template=template,  # type: ignore[arg-type]
            first_tokens=first_tokens,  # type: ignore[arg-type]
        )
        wall = time.perf_counter() - t0
        best = result.verified[0] if result.verified else None
        repaired = best is not None and best.cause_verified and _oracle_passes(root, fn, best.text)
    return FixRow(
        f"{fn.module}.{fn.name}",
        f"line {mutant.line}: {mutant.description}",
        repaired,
        best is not None,
        round(wall, 1),
        best.origin if best else "",
        len(result.tried),
        result.tried,
        result.generations,
        round(result.timings.get("model_s", 0.0), 1),
        result.candidates,
        round(result.timings.get("verify_s", 0.0), 1),
        result.evidence,
    )


def bench_testgen(fn: Function, kept: list[Mutant], generate: object) -> TestgenRow:
    with tempfile.TemporaryDirectory(prefix="actions-bench-") as tmp:
        root = _workspace(fn, Path(tmp))
        path = root / fn.module_path
        text = path.read_text()
        t0 = time.perf_counter()
        # The oracle is the docstring's examples: a suite that starts from them would catch the
        # kept mutants by construction, so the bench measures the model's tests alone.
        request = GenerateTestsRequest(root, path, text, fn.start_line - 1, docstring_examples=False)
        result = generate_tests(request, generate)  # type: ignore[arg-type]
        wall = time.perf_counter() - t0
        killed = 0
        if result.passing:
            suite = Suite(result.header, result.passing).render()
            with Sandbox(root, timeout_s=MUTANT_TIMEOUT_S) as sandbox:
                for m in kept:
                    run = sandbox.run_pytest(
                        {fn.module_path: m.text, "tests/test_gen.py": suite}, ["tests/test_gen.py"]
                    )
                    killed += bool(run.failed() or run.collection_error or run.timed_out)
        q = result.quality
    return TestgenRow(
        f"{fn.module}.{fn.name}",
        len(result.passing),
        f"{q.branches_covered}/{q.branches_total} {q.unit}" if q else "-",
        round(q.branch_ratio, 3) if q else 0.0,
        f"{q.mutants_killed}/{q.mutants_total}" if q else "-",
        killed,
        len(kept),
        len(result.failing),
        len(result.dropped),
        round(wall, 1),
        result.summary(),
        [f"{t.source.strip()}\n# failed with: {t.message.strip()}" for t in result.failing],
    )


def _machine() -> dict[str, object]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit.stdout.strip(),
        "nice": os.nice(0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="registry name (default: the default model)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--functions", type=int, default=6)
    parser.add_argument("--seed", default="actions-1")
    parser.add_argument(
        "--sources",
        default=",".join(DEFAULT_SOURCES),
        help=f"comma-separated pool of packages: {', '.join(SOURCES)} (default: %(default)s)",
    )
    parser.add_argument("--fix-mutants", type=int, default=1, help="Fix-this cases per function")
    parser.add_argument("--skip-fix", action="store_true")
    parser.add_argument("--skip-testgen", action="store_true")
    parser.add_argument("--budget-s", type=float, default=3600, help="no new case starts after this")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    started = time.perf_counter()
    load_before = os.getloadavg()
    machine = _machine()  # now: the commit whose code the run imports, not one made during it
    sources = [name.strip() for name in args.sources.split(",") if name.strip()]
    unknown = [name for name in sources if name not in SOURCES]
    if unknown or not sources:
        parser.error(f"unknown source(s) {', '.join(unknown) or '(none)'}; known: {', '.join(SOURCES)}")
    chosen = choose(args.functions, args.seed, sources)
    sys.stderr.write(f"chose {[f.name for f, _ in chosen]} in {time.perf_counter() - started:.0f} s\n")
    runtime = load_runtime(args.model, n_threads=args.threads, in_process=True)
    generate = runtime_generator(runtime)
    first_tokens = runtime_first_tokens(runtime)
    fixes: list[FixRow] = []
    tests: list[TestgenRow] = []
    loads: list[float] = []
    for fn, kept in chosen:
        if time.perf_counter() - started > args.budget_s:
            break
        for mutant in [] if args.skip_fix else kept[: args.fix_mutants]:
            case_start = time.perf_counter()
            try:
                row = bench_fix(fn, mutant, generate, runtime.template, first_tokens)
            except Exception as exc:  # a crash is a failed case, recorded, not the end of the run
                described = f"line {mutant.line}: {mutant.description}"
                took = round(time.perf_counter() - case_start, 1)
                crashed = f"crashed: {exc}"
                row = FixRow(f"{fn.module}.{fn.name}", described, False, False, took, crashed, 0, [])
            fixes.append(row)
            loads.append(os.getloadavg()[0])
            sys.stderr.write(f"fix {row.function} {row.mutant}: repaired={row.repaired} {row.wall_s} s\n")
        if not args.skip_testgen and time.perf_counter() - started <= args.budget_s:
            trow = bench_testgen(fn, kept, generate)
            tests.append(trow)
            loads.append(os.getloadavg()[0])
            sys.stderr.write(
                f"tests {trow.function}: {trow.summary}; "
                f"bench mutants {trow.bench_mutants_killed}/{trow.bench_mutants}\n"
            )

    totals: dict[str, object] = {}
    if fixes:
        walls = [r.wall_s for r in fixes]
        totals["fix_repaired"] = f"{sum(r.repaired for r in fixes)}/{len(fixes)}"
        totals["fix_wall_p50_s"] = round(statistics.median(walls), 1)
        totals["fix_wall_max_s"] = max(walls)
        totals["fix_generations_mean"] = round(statistics.mean(r.generations for r in fixes), 1)
        totals["fix_candidates_mean"] = round(statistics.mean(r.candidates for r in fixes), 1)
    if tests:
        killed = sum(r.bench_mutants_killed for r in tests)
        total = sum(r.bench_mutants for r in tests)
        totals["tests_kill_rate"] = round(killed / total, 3) if total else None
        totals["tests_kill"] = f"{killed}/{total}"
        totals["tests_branch_coverage_mean"] = round(statistics.mean(r.branch_ratio for r in tests), 3)
        totals["false_bug_reports"] = sum(r.false_bug_reports for r in tests)
        totals["tests_wall_p50_s"] = round(statistics.median(r.wall_s for r in tests), 1)
    report = {
        "command": " ".join(["nice -n", str(os.nice(0)), "python -m bench.actions_bench", *sys.argv[1:]]),
        "model": runtime.name,
        "threads": args.threads,
        "seed": args.seed,
        "machine": machine,
        "load_average_before": load_before,
        "load_average_during": loads,
        "load_average_after": os.getloadavg(),
        "wall_s": round(time.perf_counter() - started, 1),
        "functions": [asdict(f) | {"oracle": None} for f, _ in chosen],
        "totals": totals,
        "fix": [asdict(r) for r in fixes],
        "testgen": [asdict(r) for r in tests],
    }
    stem = "actions_bench" + (f"_{args.tag}" if args.tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(_markdown(report))
    print(_markdown(report))
    return 0


def _markdown(report: dict[str, object]) -> str:
    m = report["machine"]
    assert isinstance(m, dict)
    out = [
        f"# Code actions benchmark ({report['model']}, {report['threads']} thread(s))",
        "",
        f"`{report['command']}` at {m['commit']}; {m['cpus']} CPUs ({m['cpu']}), load average before "
        f"{report['load_average_before']}, after {report['load_average_after']}; "
        f"{report['wall_s']} s in all.",
        "",
        "| Measure | Value |",
        "|---|---|",
    ]
    totals = report["totals"]
    assert isinstance(totals, dict)
    out += [f"| {k} | {v} |" for k, v in totals.items()]
    fixes = report["fix"]
    assert isinstance(fixes, list)
    if fixes:
        out += [
            "",
            "## Fix this",
            "",
            "| Function | Mutant | Repaired | Wall s | Fix | Tried | Generations (s) | Verified (s) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        out += [
            f"| `{r['function']}` | {r['mutant']} | {'yes' if r['repaired'] else 'no'} | {r['wall_s']} | "
            f"{r['origin']} | {r['tried']} | {r.get('generations', '-')} ({r.get('model_s', '-')}) | "
            f"{r.get('candidates', '-')} ({r.get('verify_s', '-')}) |"
            for r in fixes
        ]
        out += ["", "Candidates tried, one line each:", ""]
        for r in fixes:
            out.append(f"- `{r['function']}` ({r['mutant']}; evidence: {r.get('evidence') or '-'}):")
            out += [f"  - {line}" for line in r["lines"]]
    tests = report["testgen"]
    assert isinstance(tests, list)
    if tests:
        out += [
            "",
            "## Generate tests",
            "",
            "| Function | Tests | Coverage | Own mutants | Bench mutants killed | False bug reports "
            "| Wall s |",
            "|---|---|---|---|---|---|---|",
        ]
        out += [
            f"| `{r['function']}` | {r['tests']} | {r['branches']} | {r['own_mutants']} | "
            f"{r['bench_mutants_killed']}/{r['bench_mutants']} | {r['false_bug_reports']} | {r['wall_s']} |"
            for r in tests
        ]
        reports = [(r["function"], text) for r in tests for text in r.get("false_reports", [])]
        if reports:
            out += ["", 'False "possible bug" reports (the code is the released one):', ""]
            for function, text in reports:
                code = [f"  {ln}" for ln in text.splitlines()]
                out += [f"- `{function}`:", "", "  ```python", *code, "  ```"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
