"""Inputs that reach what no test reaches: the kept tests' calls of the function with one literal
argument changed, run under coverage, and the variants that take a branch (or run a line) no
kept test takes, kept as tests of what the code returns or raises there.

After the model's coverage rounds, the gaps left are mostly inputs it did not think of rather
than behaviour it could not express: the empty string that takes `if not text: return None`
(iptools' `ip2hex`, `subnet2block`), the input that is not a number (`hex2ip`'s `except
ValueError`), the flag left at its default (`strict=True`). A search over neighbouring literals
(0, 1, -1, one more, one less, empty, blank, not valid, the other truth value, the other type)
finds many of them in one sandbox run: every variant runs under coverage, each records what its
call returns (`server.actions.pin`), and a few are chosen greedily by the gaps they close. This
is search-based test generation at its smallest (Pynguin's and EvoSuite's regression
assertions): the values are the code's, and the test says so in a comment, so that a reader
takes them as a record, not as a specification.
"""

from __future__ import annotations

import ast
import builtins
import itertools
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

from server.actions.pin import is_literal, lone_test_function, observed, pinned
from server.actions.quality import Branches

# Variants run in the one search run: each is a one-line test, so the run stays within seconds.
MAX_PROBES = 60
# Variants of one call at most, so that one test with many arguments does not take the run.
MAX_PER_CALL = 18
# Values per parameter taken from what the function compares it with (`x in (...)`: its first few).
MAX_SEEDS_PER_PARAMETER = 6
# Tests a search adds at most for gaps: each must close a gap the others leave.
MAX_REACHING = 4
# Surviving mutants the probes are run against (one sandbox run each), on lines that run.
MAX_SURVIVOR_RUNS = 3
# Replacements for a string argument: empty, blank, one character, not what the function
# expects (the usual error inputs), then not ASCII and not printable (wcwidth's `ljust` measures
# such text another way: `if text.isascii() and text.isprintable()`).
STRING_VALUES = ("", " ", "x", "not valid", "é", "\t")
# Replacements for an argument that is not a literal (an object the test built, a class): one
# value of each common kind, which is how `isinstance` checks and duck typing get their other case.
OTHER_KINDS: tuple[object, ...] = (None, 0, "", [], {})
COMMENT = "# infiller: another test's inputs, varied to reach a case; values recorded from the code"
# Exceptions a probe raises by its own making (an assert, a name or import the test file lacks),
# never a test of what the code does.
NOT_THE_CODES = frozenset(
    {"AssertionError", "NameError", "UnboundLocalError", "ImportError", "ModuleNotFoundError"}
)
# How pytest's short traceback ends when a call raised: `E   ValueError: message`.
_RAISED = re.compile(r"^E\s+([A-Za-z_][\w.]*)(?::|$)", re.MULTILINE)

Unit = tuple[int, int] | int  # a branch arc (from, to), or a line number where the function has no branch


def int_of(node: ast.expr) -> int | None:
    """The int a literal node writes (`3`, `-3`), else None."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = int_of(node.operand)
        return -inner if inner is not None else None
    return None


def _same_kind(value: object, others: list[object]) -> list[object]:
    """Values of the kind of `value` nearest the usual boundary and error cases, first."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        ints = [o for o in others if type(o) is int]
        return [0, 1, -1, *ints, value + 1, value - 1, 2 * value, -value]
    if isinstance(value, float):
        return [0.0, -value, value / 2, value * 2, 1.0]
    if isinstance(value, str):
        return [*STRING_VALUES, value.upper(), value.lower(), value * 2, value[:1], value[1:]]
    if isinstance(value, bytes):
        return [b"", b"x", value * 2, value[:1]]
    if isinstance(value, list | tuple):
        kind = type(value)
        return [kind(), kind(value[:1]), kind(reversed(value)), kind([*value, *value[:1]])]
    if isinstance(value, dict):
        return [{}]
    return []


def replacements(args: list[ast.expr], at: int, *, other_types: bool = True) -> list[object]:
    """Values to try for argument `at` instead of its own: its kind's boundary values first,
    then (with `other_types`) None and a value of another type, which reach type checks."""
    try:
        value = ast.literal_eval(args[at])
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return []
    others: list[object] = []
    for i, a in enumerate(args):
        if i != at and (number := int_of(a)) is not None:
            others.append(number)
    values = _same_kind(value, others)
    if other_types:
        values += [None] if value is not None else [0, "", "x"]
        values += ["x"] if isinstance(value, int | float) and not isinstance(value, bool) else []
        values += [0] if isinstance(value, str) else []
    out: list[object] = []
    for v in values:
        if (type(v), v) != (type(value), value) and not any(type(v) is type(o) and v == o for o in out):
            out.append(v)
    return out


def _bound(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, ast.expr]:
    """Names the test assigns once, at its top level, to a literal (`text = "a-b"`)."""
    stores: dict[str, int] = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            stores[node.id] = stores.get(node.id, 0) + 1
    bound: dict[str, ast.expr] = {}
    for stmt in fn.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name = stmt.targets[0].id
            if stores[name] == 1 and is_literal(stmt.value):
                bound[name] = stmt.value
    return bound


def literal_node(value: object) -> ast.expr:
    """A literal's syntax tree (repr reads back for every kind `replacements` gives)."""
    return ast.parse(repr(value), mode="eval").body


class _Inline(ast.NodeTransformer):
    def __init__(self, bound: dict[str, ast.expr]) -> None:
        self.bound = bound

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return self.bound.get(node.id, node)


def _stored(nodes: list[ast.stmt] | ast.AST) -> set[str]:
    """The names `nodes` bind: assignments, loop and `with` targets, classes, functions, imports."""
    out: set[str] = set()
    for root in nodes if isinstance(nodes, list) else [nodes]:
        for n in ast.walk(root):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                out.add(n.id)
            elif isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                out.add(n.name)
            elif isinstance(n, ast.Import | ast.ImportFrom):
                out.update((a.asname or a.name).split(".")[0] for a in n.names)
    return out


def _calls_of(root: ast.AST, function: str) -> Iterator[ast.Call]:
    """The calls of `function` under `root` that name their arguments (no `*args`, `**kwargs`)."""
    for node in ast.walk(root):
        if not isinstance(node, ast.Call) or ast.unparse(node.func).rsplit(".", 1)[-1] != function:
            continue
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            continue
        yield node


def _inlined_calls(root: ast.AST, function: str, bound: dict[str, ast.expr]) -> Iterator[ast.Call]:
    """`_calls_of`, each a copy with the names the test binds to literals read as their values."""
    for node in _calls_of(root, function):
        yield _Inline(bound).visit(ast.parse(ast.unparse(node), mode="eval").body)


def _fixtures(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    return {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}


def _names_read(call: ast.Call) -> set[str]:
    given = [*call.args, *(k.value for k in call.keywords)]
    return {n.id for a in given for n in ast.walk(a) if isinstance(n, ast.Name)}


def standalone_calls(source: str, function: str) -> list[ast.Call]:
    """The test's calls of `function` that run alone, outside the test: their arguments name
    nothing the test itself assigns, once the names it binds to literals are read as their values
    (literals, builtins, the file's imports: `f("a", 2)`, `f(dict())`, `f(int)`)."""
    fn = lone_test_function(source)
    if fn is None:
        return []
    local = _stored(fn.body) | _fixtures(fn)
    return [call for call in _inlined_calls(fn, function, _bound(fn)) if not _names_read(call) & local]


def _is_setup(stmt: ast.stmt, function: str) -> bool:
    """A statement a varied call can keep in front of it: it builds something (an assignment, a
    class, an import), checks nothing, and calls no `function` (a varied input there would raise
    before the call the probe is about)."""
    if not isinstance(
        stmt,
        ast.Assign | ast.AnnAssign | ast.AugAssign | ast.Expr | ast.ClassDef | ast.FunctionDef
        | ast.Import | ast.ImportFrom,
    ):  # fmt: skip
        return False
    return not any(isinstance(n, ast.Assert) for n in ast.walk(stmt)) and not any(_calls_of(stmt, function))


def setup_calls(source: str, function: str) -> list[tuple[list[ast.stmt], ast.Call]]:
    """The test's calls of `function` that need what the test builds first (`obj = Thing(3)`,
    `class Sub(dict): ...`), each with the statements before it that build it: the calls
    `standalone_calls` cannot take out of the test. Tests with fixtures are left out (a probe
    has none)."""
    fn = lone_test_function(source)
    if fn is None or _fixtures(fn):
        return []
    bound, local = _bound(fn), _stored(fn.body)
    out: list[tuple[list[ast.stmt], ast.Call]] = []
    for k, stmt in enumerate(fn.body):
        setup = [s for s in fn.body[:k] if _is_setup(s, function)]
        built = _stored(setup)
        for call in _inlined_calls(stmt, function, bound):
            needs = _names_read(call) & local
            if needs and needs <= built:
                out.append((setup, call))
    return out


def _function_node(target_source: str, function: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """`function`'s definition at the top level of `target_source` (dedented), parsed."""
    try:
        tree = ast.parse(textwrap.dedent(target_source))
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            return node
    return None


def _literal_values(node: ast.expr) -> list[object]:
    """The values a compared node writes: a literal, or the literals of a tuple, list or set."""
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [v for e in node.elts[:MAX_SEEDS_PER_PARAMETER] for v in _literal_values(e)]
    try:
        return [ast.literal_eval(node)] if is_literal(node) else []
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return []


def _compared(test: ast.AST, params: set[str]) -> dict[str, list[object]]:
    """The literal values `test` compares each of `params` with, an int's neighbours included."""
    out: dict[str, list[object]] = {}
    for compare in ast.walk(test):
        if not isinstance(compare, ast.Compare):
            continue
        sides = [compare.left, *compare.comparators]
        for left, right in itertools.pairwise(sides):
            for name, other in ((left, right), (right, left)):
                if not isinstance(name, ast.Name) or name.id not in params:
                    continue
                values = out.setdefault(name.id, [])
                for value in _literal_values(other):
                    near = [value, value - 1, value + 1] if type(value) is int else [value]
                    values.extend(v for v in near if not any(type(v) is type(o) and v == o for o in values))
    return out


@dataclass(frozen=True)
class Seeds:
    """What a function's own code says about the inputs that take its branches' other way."""

    values: dict[str, list[object]]  # parameter -> the literals the code compares it with
    positional: list[str]  # the positional parameters' names, in order (not self/cls)
    together: list[frozenset[str]]  # parameters compared in one if/elif chain

    def pairs(self, a: str, b: str) -> bool:
        return any(a in group and b in group for group in self.together)


NO_SEEDS = Seeds({}, [], [])


def seeds_of(target_source: str, function: str) -> Seeds:
    """For each parameter, the literal values the function's own code compares it with
    (`rho is not None`, `n == 0`, `k < 10`, `mode in ("r", "w")`), an int's neighbours included,
    and which parameters one if/elif chain compares (`if rho is not None and mu is not None: ...
    elif nu is None: raise` takes its raise only with two of them changed). Search-based
    generators seed their search with the code's constants for the same reason (Pynguin,
    EvoSuite)."""
    node = _function_node(target_source, function)
    if node is None:
        return NO_SEEDS
    params = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
    values: dict[str, list[object]] = {}
    for name, found in _compared(node, params).items():
        values[name] = found[:MAX_SEEDS_PER_PARAMETER]
    elifs = {
        id(n.orelse[0])
        for n in ast.walk(node)
        if isinstance(n, ast.If) and len(n.orelse) == 1 and isinstance(n.orelse[0], ast.If)
    }
    together: list[frozenset[str]] = []
    for root in ast.walk(node):
        if not isinstance(root, ast.If) or id(root) in elifs:
            continue
        group: set[str] = set()
        link: ast.If | None = root
        while link is not None:
            group.update(_compared(link.test, params))
            nxt = link.orelse[0] if len(link.orelse) == 1 else None
            link = nxt if isinstance(nxt, ast.If) else None
        if len(group) > 1:
            together.append(frozenset(group))
    names = [a.arg for a in [*node.args.posonlyargs, *node.args.args]]
    positional = names[1:] if names[:1] in (["self"], ["cls"]) else names
    return Seeds({k: v for k, v in values.items() if v}, positional, together)


def literal_defaults(target_source: str, function: str) -> dict[str, ast.expr]:
    """The parameters of `function` (defined in `target_source`) with a literal default, as
    keyword arguments a variant can pass: a flag left at its default is a branch no test takes."""
    node = _function_node(target_source, function)
    if node is None:
        return {}
    a = node.args
    positional = [*a.posonlyargs, *a.args]
    named = positional[len(a.posonlyargs) :]
    pairs = list(zip(positional[len(positional) - len(a.defaults) :], a.defaults, strict=True))
    pairs += [(k, d) for k, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None]
    return {p.arg: d for p, d in pairs if (p in named or p in a.kwonlyargs) and is_literal(d)}


def _with(call: ast.Call, changes: dict[int, object]) -> str:
    """`call` with the arguments at the given positions (its positional ones first, then its
    keywords, in order) replaced by literals, as source."""
    changed = ast.Call(call.func, list(call.args), [ast.keyword(k.arg, k.value) for k in call.keywords])
    for at, value in changes.items():
        if at < len(call.args):
            changed.args[at] = literal_node(value)
        else:
            changed.keywords[at - len(call.args)].value = literal_node(value)
    return ast.unparse(changed)


def call_variants(
    call: ast.Call,
    defaults: dict[str, ast.expr],
    seeds: Seeds = NO_SEEDS,
) -> Iterator[str]:
    """`call` with its arguments changed, as source, the likeliest to take another branch first:
    1. one argument at a time set to a value the function compares that parameter with;
    2. two such arguments at once where one if/elif chain compares both (`if rho is not None
       and mu is not None: ... elif nu is None: raise`: fluids' Grashof, actions-35, takes its
       raise only with two of them None);
    3. every argument's other values, in turns, the first value of each argument before the
       second of any (a literal by its kind's boundaries; an argument that is not a literal,
       such as an object the test built, by a value of each common kind: what a type check
       turns away), so that a call with many arguments has all of them varied within the cap;
    4. each literal default the call leaves out, passed by keyword, seeds first."""
    args, keywords = list(call.args), list(call.keywords)
    values = [*args, *(k.value for k in keywords)]
    names = [seeds.positional[i] if i < len(seeds.positional) else "" for i in range(len(args))]
    names += [k.arg or "" for k in keywords]
    seeded = [
        (at, vs)
        for at in range(len(values))
        if (vs := [v for v in seeds.values.get(names[at], []) if _differs(v, values[at])])
    ]
    for at, vs in seeded:
        for value in vs:
            yield _with(call, {at: value})
    for (at, vs), (other, ws) in itertools.combinations(seeded, 2):
        if seeds.pairs(names[at], names[other]):
            yield _with(call, {at: vs[0], other: ws[0]})
    turns = [
        list(OTHER_KINDS) if not is_literal(values[at]) else replacements(values, at)
        for at in range(len(values))
    ]
    for k in range(max(map(len, turns), default=0)):
        for at, vs in enumerate(turns):
            if k < len(vs):
                yield _with(call, {at: vs[k]})
    given = {k.arg for k in keywords}
    for name, default in defaults.items():
        if name in given:
            continue
        own = replacements([default], 0, other_types=False)
        mine = [v for v in seeds.values.get(name, []) if _differs(v, default)]
        for value in [*mine, *own]:
            yield ast.unparse(ast.Call(call.func, args, [*keywords, ast.keyword(name, literal_node(value))]))


def _differs(value: object, node_or_value: object) -> bool:
    """Whether `value` is another value than the argument's (a node is read as its literal)."""
    if isinstance(node_or_value, ast.expr):
        if not is_literal(node_or_value):
            return True
        try:
            node_or_value = ast.literal_eval(node_or_value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return True
    return (type(value), value) != (type(node_or_value), node_or_value)


def setup_variants(setup: list[ast.stmt]) -> Iterator[list[ast.stmt]]:
    """`setup` with one of its literal values changed at a time (the text an object is built
    from: `Request({"QUERY_STRING": "a=1"})` also with `""`, `"x"`, ...), types kept."""
    text = "\n".join(ast.unparse(s) for s in setup)

    def constants(tree: ast.Module) -> list[ast.Constant]:
        return [
            n for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, int | float | str | bytes)
        ]  # fmt: skip

    for at, node in enumerate(constants(ast.parse(text))):
        for value in replacements([node], 0, other_types=False):
            if isinstance(value, int | float | str | bytes):  # its kind, as `other_types` keeps it
                tree = ast.parse(text)
                constants(tree)[at].value = value
                yield tree.body


def probe_text(setup: list[ast.stmt], call: str) -> str:
    """A probe as one string: the statements that build its inputs, one per line, then the call."""
    return "\n".join([*(ast.unparse(s) for s in setup), call])


def _split(probe: str) -> tuple[str, str]:
    """A probe's setup (lines, possibly empty) and its call (the last line)."""
    setup, _, call = probe.rpartition("\n")
    return setup, call


def _variants(
    setup: list[ast.stmt],
    call: ast.Call,
    defaults: dict[str, ast.expr],
    seeds: Seeds,
) -> Iterator[str]:
    """A call's variants as probes: its arguments changed, then what its setup builds from."""
    for variant in call_variants(call, defaults, seeds):
        yield probe_text(setup, variant)
    for changed in setup_variants(setup):
        yield probe_text(changed, ast.unparse(call))


def probe_calls(
    tests: list[str], function: str, target_source: str, *, with_originals: bool = False
) -> list[str]:
    """Distinct varied calls of `function` from the tests' calls (each a probe: `probe_text`),
    at most MAX_PROBES, taken in turn from each call so that every test's inputs are varied;
    `with_originals`: the calls as written first (the tests they come from are not kept)."""
    defaults = literal_defaults(target_source, function)
    seeds = seeds_of(target_source, function)
    seen: set[str] = set()
    originals: list[tuple[list[ast.stmt], ast.Call]] = []
    for source in tests:
        found: list[tuple[list[ast.stmt], ast.Call]] = [([], c) for c in standalone_calls(source, function)]
        found += setup_calls(source, function)
        for setup, call in found:
            text = probe_text(setup, ast.unparse(call))
            if text not in seen:
                seen.add(text)
                originals.append((setup, call))
    queues = [
        [v for v in dict.fromkeys(_variants(setup, call, defaults, seeds)) if v not in seen][:MAX_PER_CALL]
        for setup, call in originals
    ]
    out: list[str] = (
        [probe_text(setup, ast.unparse(call)) for setup, call in originals][:MAX_PROBES]
        if with_originals
        else []
    )
    while any(queues) and len(out) < MAX_PROBES:
        for queue in queues:
            while queue and len(out) < MAX_PROBES:
                text = queue.pop(0)
                if text not in seen:
                    seen.add(text)
                    out.append(text)
                    break
    return out


def outcome(message: str) -> str | None:
    """What a probe's run says its call did (the values it returned, or the builtin exception it
    raised), comparable between runs; None when it cannot be told (it failed otherwise)."""
    values = observed(message)
    if values is not None:
        return f"returned {values!r}"
    exception = raised(message)
    return f"raised {exception}" if exception is not None else None


def test_of_probe(name: str, call: str, message: str) -> str | None:
    """The test a probe becomes, from its run's failure `message`: the values its call returned
    recorded as the expectation, or its builtin exception under `pytest.raises`."""
    values = observed(message)
    if values is not None:
        source = pinned(probe_test(name, call), values)
        if source is None and values == ["[]"]:
            source = probe_test(name, call)  # it returned [], as the placeholder said
        return value_test(source) if source is not None else None
    exception = raised(message)
    return raises_test(name, call, exception) if exception is not None else None


def probe_test(name: str, probe: str) -> str:
    """A test of a probe's call whose expectation the observing variant replaces (`pin`): a
    list, so that an iterator is read as its items."""
    setup, call = _split(probe)
    return f"def {name}():\n{_indented(setup)}    assert {call} == []\n"


def _indented(setup: str, by: str = "    ") -> str:
    return textwrap.indent(setup + "\n", by) if setup else ""


def raised(message: str) -> str | None:
    """The builtin exception a failed run of a probe ended with, as a test can name it without
    an import (None for another exception: its home would have to be imported)."""
    found = _RAISED.findall(message)
    if not found:
        return None
    name = found[-1]
    if name in NOT_THE_CODES or not isinstance(getattr(builtins, name, None), type):
        return None
    return name if issubclass(getattr(builtins, name), Exception) else None


def raises_test(name: str, probe: str, exception: str) -> str:
    setup, call = _split(probe)
    return (
        f"def {name}():\n    {COMMENT}\n{_indented(setup)}"
        f"    with pytest.raises({exception}):\n        {call}\n"
    )


def value_test(pinned_source: str) -> str:
    """A pinned probe with the search's comment in place of pin's, and `== None` said as `is None`."""
    lines = [ln for ln in pinned_source.splitlines() if not ln.strip().startswith("# infiller:")]
    body = [re.sub(r"^(\s*assert .*) == None$", r"\1 is None", ln) for ln in lines[1:]]
    return "\n".join([lines[0], f"    {COMMENT}", *body]) + "\n"


def units_of(arcs: set[tuple[int, int]], branches: Branches) -> set[Unit]:
    """What `arcs` cover: the function's branch arcs, or the lines they run where it has none."""
    out: set[Unit] = set()
    if branches.arcs:
        out.update(arcs & branches.arcs)
    else:
        out.update(a for a, _ in arcs)
        out.update(b for _, b in arcs)
    return out


def gaps_left(branches: Branches, done: set[tuple[int, int]]) -> set[Unit]:
    """The function's branch arcs (or lines) that `done`, the suite's arcs, leaves out."""
    every: set[Unit] = set(branches.arcs)
    if not branches.arcs:  # the `def` line runs at import: never a case to reach
        every.update(branches.statements - {min(branches.statements, default=0)})
    return every - units_of(done, branches)


def choose(reached: dict[str, set[Unit]], gaps: set[Unit], limit: int = MAX_REACHING) -> list[str]:
    """Greedily, the probes that close the most gaps not yet closed (ties: the earlier probe)."""
    left = set(gaps)
    out: list[str] = []
    while left and len(out) < limit:
        best = max(reached, key=lambda k: len(reached[k] & left), default=None)
        if best is None or not reached[best] & left:
            break
        out.append(best)
        left -= reached[best]
    return out


__all__ = [
    "COMMENT",
    "MAX_REACHING",
    "MAX_SURVIVOR_RUNS",
    "call_variants",
    "choose",
    "gaps_left",
    "int_of",
    "literal_defaults",
    "literal_node",
    "outcome",
    "probe_calls",
    "probe_test",
    "probe_text",
    "raised",
    "raises_test",
    "replacements",
    "seeds_of",
    "setup_calls",
    "setup_variants",
    "standalone_calls",
    "test_of_probe",
    "units_of",
    "value_test",
]
