"""Python import resolution: module names, relative levels, aliases, re-exports, star imports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from context.imports import (
    ImportBinding,
    Target,
    absolute_module,
    python_bindings,
    python_module_name,
    resolve_binding,
    resolve_chain,
    resolve_script_import,
)
from context.index import Index
from context.syntax import parse
from tests.context_helpers import open_shop


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Index]:
    _, index = open_shop(tmp_path)
    yield index
    index.close()


def bindings_of(source: str) -> list[ImportBinding]:
    tree = parse("python", source.encode())
    out: list[ImportBinding] = []
    for node in tree.root_node.children:
        out.extend(python_bindings(node))
    return out


def test_binding_forms() -> None:
    got = bindings_of(
        "import os, a.b.c\nimport x.y as z\nfrom . import sib\nfrom ..pkg.mod import Foo as Bar, baz\n"
        "from .star import *\nfrom m import (\n    p,\n    q as r,\n)\n"
    )
    assert [(b.local, b.module, b.name, b.level) for b in got] == [
        ("os", "os", None, 0),
        ("a", "a.b.c", None, 0),
        ("z", "x.y", None, 0),
        ("sib", "", "sib", 1),
        ("Bar", "pkg.mod", "Foo", 2),
        ("baz", "pkg.mod", "baz", 2),
        ("*", "star", "*", 1),
        ("p", "m", "p", 0),
        ("r", "m", "q", 0),
    ]


def test_module_names_follow_packages_not_folders() -> None:
    packages = {"src/pkg", "src/pkg/sub"}
    assert python_module_name("src/pkg/sub/m.py", packages) == ("pkg.sub.m", False)
    assert python_module_name("src/pkg/__init__.py", packages) == ("pkg", True)
    assert python_module_name("scripts/run.py", packages) == ("run", False)


def test_relative_levels() -> None:
    binding = ImportBinding("x", "util", "x", 2, 0)
    assert absolute_module(binding, "pkg.sub.mod", False) == "pkg.util"
    assert absolute_module(binding, "pkg.sub", True) == "pkg.util"
    assert absolute_module(ImportBinding("x", "", "x", 1, 0), "pkg.mod", False) == "pkg"


def test_reexport_through_init_reaches_the_defining_module(shop: Index) -> None:
    from_shop = ImportBinding("Cart", "shop", "Cart", 0, 0)
    assert resolve_binding(shop, "app/main.py", from_shop) == Target("shop/models.py", "Cart")


def test_star_import_in_init_is_followed(shop: Index) -> None:
    binding = ImportBinding("apply_discount", "shop", "apply_discount", 0, 0)
    assert resolve_binding(shop, "app/main.py", binding) == Target("shop/pricing.py", "apply_discount")


def test_relative_import_inside_package(shop: Index) -> None:
    (binding,) = [b for b in shop.bindings("shop/models.py") if b.local == "apply_discount"]
    assert resolve_binding(shop, "shop/models.py", binding) == Target("shop/pricing.py", "apply_discount")


def test_aliases_and_dotted_module_chains(shop: Index) -> None:
    bindings = shop.bindings("app/main.py")
    assert resolve_chain(shop, "app/main.py", bindings, ["disc"]) == (
        Target("shop/pricing.py", "apply_discount"),
        1,
    )
    # `import shop.models as m` then `m.Item`.
    assert resolve_chain(shop, "app/main.py", bindings, ["m", "Item"]) == (
        Target("shop/models.py", "Item"),
        2,
    )
    # `import shop.util.text` then `shop.util.text.slugify`.
    chain = ["shop", "util", "text", "slugify"]
    assert resolve_chain(shop, "app/main.py", bindings, chain) == (Target("shop/util/text.py", "slugify"), 4)
    # `from shop.util import text as t`: a submodule imported by name.
    assert resolve_chain(shop, "app/main.py", bindings, ["t", "slugify"]) == (
        Target("shop/util/text.py", "slugify"),
        2,
    )
    # `Cart.add`: the class resolves, the member is left to the caller.
    assert resolve_chain(shop, "app/main.py", bindings, ["Cart", "add"]) == (
        Target("shop/models.py", "Cart"),
        1,
    )


def test_unresolvable_imports_are_none(shop: Index) -> None:
    bindings = [*shop.bindings("app/main.py"), ImportBinding("np", "numpy", None, 0, 0)]
    assert resolve_chain(shop, "app/main.py", bindings, ["np", "array"]) is None


def test_script_imports_resolve_relative_paths() -> None:
    exists = {"web/util.js", "web/lib/index.ts", "native/geometry.h"}
    assert resolve_script_import("web/app.js", "./util", exists) == "web/util.js"
    assert resolve_script_import("web/app.js", "./lib", exists) == "web/lib/index.ts"
    assert resolve_script_import("native/geometry.c", "geometry.h", exists) == "native/geometry.h"
    assert resolve_script_import("web/app.js", "react", exists) is None
