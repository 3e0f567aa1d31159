"""The import structure of the densecal package: layers, cycles, upward imports, module sizes.

Reads ``src/densecal`` as text (nothing is imported) and builds the graph of imports between
densecal's own modules. Two graphs are measured:

* ``module_level``: imports executed when a module is imported (the top of the file and
  ``try``/``if`` blocks there), so what importing one module drags in;
* ``all``: also the imports deferred into functions (what calling into a module may load).

Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``; the graphs leave those implied
imports out and count only what each statement names.

The *layer count* is the number of modules on the longest import chain (a module that imports
no densecal module is layer 1). An import of ``pkg`` or ``from pkg import name`` counts as an
import of the package's ``__init__``; ``from pkg import module`` counts as the module.

An *upward import* is one from a package of a lower floor to a package of a higher floor of the
floor plan (``FLOORS`` below; subpackages inherit their parent's floor unless listed).

Usage::

    python scripts/import_layers.py [--src src] [--verbose]

prints one JSON object: modules, layers of both graphs, cycles, upward imports, and the five
largest modules in lines.
"""

from __future__ import annotations

import argparse
import ast
import json
from collections.abc import Iterator
from pathlib import Path

#: The floor plan: a package may import its own floor and the floors below it, never above.
FLOORS: dict[str, int] = {
    "densecal.errors": 0, "densecal.atomic": 0, "densecal.registry": 0, "densecal._checks": 0,
    "densecal.progress": 0,
    "densecal.types": 0, "densecal._deprecated": 0,
    "densecal.losses": 1, "densecal.metrics": 1, "densecal.posthoc": 1,
    "densecal.data": 2, "densecal.report": 2, "densecal.models": 2, "densecal.overmap": 2,
    "densecal.evaluation": 3,
    "densecal.methods": 4,
    "densecal.apps": 5,
    "densecal.cli": 6, "densecal.__main__": 6, "densecal": 6,
}


def _modules(src: Path) -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (path, is package)}`` of every module under ``src/densecal``."""
    mods = {}
    for path in sorted((src / "densecal").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


def _import_nodes(tree: ast.Module, deferred: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements run at import time (``deferred``: every import in the file)."""
    if deferred:
        yield from (n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom))
        return
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
        elif isinstance(node, ast.If | ast.Try | ast.With):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []):
                    stack.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(name: str, is_pkg: bool, node: ast.Import | ast.ImportFrom,
             mods: dict[str, tuple[Path, bool]]) -> Iterator[str]:
    """The densecal modules one import statement of module ``name`` loads."""
    if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
    else:
        if node.level:
            base = name.split(".") if is_pkg else name.split(".")[:-1]
            base = base[:len(base) - node.level + 1]
            origin = ".".join([*base, node.module] if node.module else base)
        else:
            origin = node.module or ""
        candidates = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in mods else origin
                      for a in node.names]
    for target in candidates:
        while target not in mods and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in mods and target != name:
            yield target


def import_graph(src: Path, deferred: bool = False) -> dict[str, set[str]]:
    """``{module: densecal modules it imports}`` (module-level imports, or all with
    ``deferred``)."""
    mods = _modules(src)
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = {t for node in _import_nodes(tree, deferred)
                       for t in _targets(name, is_pkg, node, mods)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layers(graph: dict[str, set[str]]) -> dict[str, int]:
    """Each module's layer: 1 + the longest chain of imports below it (members of a cycle share
    the cycle's layer)."""
    member = {m: tuple(c) for c in cycles(graph) for m in c}
    memo: dict[str, int] = {}

    def depth(v: str, seen: frozenset[str]) -> int:
        if v in memo:
            return memo[v]
        group = member.get(v, (v,))
        below = {w for u in group for w in graph[u] if w not in group and w not in seen}
        d = 1 + max((depth(w, seen | set(group)) for w in below), default=0)
        for u in group:
            memo[u] = d
        return d

    return {v: depth(v, frozenset()) for v in graph}


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between top-level parts (``densecal.<part>``): every module stands for its
    top-level package or module; imports inside one part are dropped."""
    def part(m: str) -> str:
        return ".".join(m.split(".")[:2])

    out: dict[str, set[str]] = {}
    for a, targets in graph.items():
        out.setdefault(part(a), set()).update(part(b) for b in targets if part(b) != part(a))
    for targets in list(out.values()):
        for b in targets:
            out.setdefault(b, set())
    return out


def floor_of(module: str) -> int | None:
    """The floor of ``module`` in :data:`FLOORS` (its nearest listed parent package)."""
    name = module
    while True:
        if name in FLOORS:
            return FLOORS[name]
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """``(importer, imported)`` pairs where the imported module sits on a higher floor."""
    out = []
    for a, targets in sorted(graph.items()):
        for b in sorted(targets):
            fa, fb = floor_of(a), floor_of(b)
            if fa is not None and fb is not None and fb > fa:
                out.append((a, b))
    return out


def imports_through_init(src: Path) -> list[str]:
    """Module-level imports of names through a package ``__init__`` (``from densecal.data import
    read_mask``) by modules that are not ``__init__`` files themselves: inside densecal a name is
    imported from the module that defines it, so importing one module never drags in a whole
    package (and its Lightning, for ``densecal.methods``)."""
    mods = _modules(src)
    packages = {name for name, (_, is_pkg) in mods.items() if is_pkg}
    found = []
    for name, (path, is_pkg) in sorted(mods.items()):
        if is_pkg:
            continue
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8")), False):
            if isinstance(node, ast.ImportFrom) and node.module in packages \
                    and node.module != "densecal":
                names = [a.name for a in node.names if f"{node.module}.{a.name}" not in mods]
                if names:
                    found.append(f"{name}: from {node.module} import {', '.join(names)}")
    return found


def report(src: Path) -> dict[str, object]:
    """The JSON summary printed by this script."""
    top, every = import_graph(src), import_graph(src, deferred=True)
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines())
             for m, (p, _) in _modules(src).items()}
    largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
    return {
        "modules": len(top),
        "layers_module_level": max(layers(top).values()),
        "layers_all_imports": max(layers(every).values()),
        "layers_package_level": max(layers(package_graph(top)).values()),
        "cycles_package_level": cycles(package_graph(top)),
        "cycles_module_level": cycles(top),
        "cycles_all_imports": cycles(every),
        "upward_imports_module_level": [f"{a} -> {b}" for a, b in upward_imports(top)],
        "upward_imports_all": [f"{a} -> {b}" for a, b in upward_imports(every)],
        "imports_through_init": imports_through_init(src),
        "largest_modules": {m: n for m, n in largest},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    parser.add_argument("--verbose", action="store_true", help="also list each module's layer")
    args = parser.parse_args()
    result = report(args.src)
    if args.verbose:
        result["layer_of"] = dict(sorted(layers(import_graph(args.src)).items(),
                                         key=lambda kv: (kv[1], kv[0])))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
