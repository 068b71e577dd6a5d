"""The package's shape: its modules form layers (no import cycles), use each other only through
public names, never import from the package face, and stay small.

Everything here reads the source with :mod:`ast` (module-level and function-level imports
alike); nothing is imported or executed, so it is fast and offline.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "crowdselect_hf"
PACKAGE_DIR = ROOT / PACKAGE
MAX_LINES = 450

LONG_MODULES: dict[str, str] = {
    # module (dotted, without the package prefix): why it may be longer than MAX_LINES for now.
    # Remove an entry as soon as its module is split; test_long_module_allowlist_is_current fails
    # when an entry is no longer needed.
    "crowd": "one concern: who answered, and finding them in a table (one rule for schemas and examples)",
    "generation": "one concern: CrowdGenerator and its two backends",
    "hub": "one concern: curated folders, their Hub repositories, and loading them back",
    "ray": "one concern: the Ray engine (read, stages, write, one-node selection)",
    "rewards": "one concern: RewardScorer and reward_dataset",
    "selection": "one concern: the selector and the Selection it returns",
}


@dataclass(frozen=True)
class Import:
    """One import statement's use of another package module."""

    source: str  # the importing module, e.g. "crowdselect_hf.hub"
    target: str  # the imported package module, e.g. "crowdselect_hf.recipes"
    names: tuple[str, ...]  # the names taken from ``target`` (empty: the module itself)
    line: int
    runtime: bool  # False inside ``if TYPE_CHECKING:``
    implicit: bool = False  # the parent package that importing a submodule runs first

    def where(self) -> str:
        return f"{_path_of(self.source)}:{self.line}"


def _module_files() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


MODULES = _module_files()


def _path_of(module: str) -> str:
    return MODULES[module].relative_to(ROOT).as_posix()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve_base(module: str, node: ast.ImportFrom) -> str | None:
    """The absolute module an ``ImportFrom`` names, or ``None`` when it is outside the package."""
    if node.level == 0:
        name = node.module or ""
        return name if name == PACKAGE or name.startswith(PACKAGE + ".") else None
    parts = module.split(".") if _is_package(module) else module.split(".")[:-1]
    if node.level > 1:
        parts = parts[: -(node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


class _Collector(ast.NodeVisitor):
    """Every import of a package module in one file, and its attribute uses of imported modules."""

    def __init__(self, module: str):
        self.module = module
        self.imports: list[Import] = []
        self.module_aliases: dict[str, str] = {}  # local name -> package module it is bound to
        self.attributes: list[tuple[str, str, int]] = []  # (alias, attribute, line)
        self._runtime = True

    def visit_If(self, node: ast.If):
        if _is_type_checking(node.test):
            runtime, self._runtime = self._runtime, False
            for child in node.body:
                self.visit(child)
            self._runtime = runtime
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _add(self, target: str, names: tuple[str, ...], line: int):
        if target not in MODULES:
            return
        self.imports.append(Import(self.module, target, names, line, self._runtime))
        # Importing a.b.c from outside a.b runs a.b/__init__.py first: a dependency on a.b too. (Not for
        # the package face a itself, see test_nothing_imports_from_the_package_face, nor from inside
        # a.b, which is already initialising when its own submodules run.)
        parts = target.split(".")
        for i in range(2, len(parts)):
            parent = ".".join(parts[:i])
            if self.module != parent and not self.module.startswith(parent + "."):
                self.imports.append(Import(self.module, parent, (), line, self._runtime, implicit=True))

    def visit_Import(self, node: ast.Import):
        for alias in node.names:
            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                self._add(alias.name, (), node.lineno)
                if alias.asname:
                    self.module_aliases[alias.asname] = alias.name

    def visit_ImportFrom(self, node: ast.ImportFrom):
        base = _resolve_base(self.module, node)
        if base is None:
            return
        names = []
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in MODULES:  # ``from . import recipes``: the submodule itself
                self._add(sub, (), node.lineno)
                self.module_aliases[alias.asname or alias.name] = sub
            else:
                names.append(alias.name)
        if names:
            self._add(base, tuple(names), node.lineno)

    def visit_Attribute(self, node: ast.Attribute):
        if isinstance(node.value, ast.Name):
            self.attributes.append((node.value.id, node.attr, node.lineno))
        self.generic_visit(node)


def _collect(module: str) -> _Collector:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"), filename=str(MODULES[module]))
    collector = _Collector(module)
    collector.visit(tree)
    return collector


COLLECTED = {m: _collect(m) for m in MODULES}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _cycles(edges: dict[str, dict[str, Import]]) -> list[list[Import]]:
    """Cycles of the import graph: its strongly connected components (Tarjan), each shown as
    shortest cycles that together pass through all of its modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                strongconnect(w)
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
            if len(component) > 1 or v in edges.get(v, {}):
                components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)

    cycles = []
    for component in components:
        members = set(component)
        covered: set[str] = set()
        for start in component:  # a shortest cycle through each member not on a cycle shown yet
            if start in covered:
                continue
            paths: dict[str, list[Import]] = {start: []}
            queue = [start]
            found = None
            while queue and found is None:
                v = queue.pop(0)
                for w, imp in sorted(edges.get(v, {}).items()):
                    if w == start:
                        found = paths[v] + [imp]
                        break
                    if w in members and w not in paths:
                        paths[w] = paths[v] + [imp]
                        queue.append(w)
            cycles.append(found)
            covered |= {imp.source for imp in found}
    return cycles


def _describe(imp: Import) -> str:
    what = "(runs the package first)" if imp.implicit else (
        f"imports {', '.join(imp.names)}" if imp.names else "imports the module")
    return f"{imp.source} -> {imp.target}  [{imp.where()} {what}]"


def test_the_walker_sees_the_package():
    """Guards the tests below against walking nothing."""
    assert f"{PACKAGE}.crowd" in MODULES and f"{PACKAGE}.recipes" in MODULES
    edges = {(i.source, i.target) for c in COLLECTED.values() for i in c.imports}
    assert (f"{PACKAGE}.scoring", f"{PACKAGE}.crowd") in edges  # a module-level import
    assert (f"{PACKAGE}.recipes", f"{PACKAGE}.hub") in edges  # a function-level one


def test_no_import_cycles():
    edges: dict[str, dict[str, Import]] = {}
    for collected in COLLECTED.values():
        for imp in collected.imports:
            if imp.runtime and imp.target != imp.source:
                edges.setdefault(imp.source, {}).setdefault(imp.target, imp)
    cycles = _cycles(edges)
    report = "\n\n".join("cycle:\n  " + "\n  ".join(_describe(i) for i in cycle) for cycle in cycles)
    assert not cycles, f"the package's modules import each other in a circle:\n{report}"


def test_no_private_names_across_modules():
    problems = []
    for module, collected in COLLECTED.items():
        for imp in collected.imports:
            for name in imp.names:
                if _is_private(name) and imp.target != module:
                    problems.append(f"{imp.where()}: {module} imports {name} from {imp.target}")
        for alias, attr, line in collected.attributes:
            target = collected.module_aliases.get(alias)
            if target is not None and target != module and _is_private(attr):
                problems.append(f"{_path_of(module)}:{line}: {module} uses {alias}.{attr} ({target}.{attr})")
    assert not problems, ("modules use each other's private names; make the name public or move it:\n  "
                          + "\n  ".join(sorted(problems)))


def test_nothing_imports_from_the_package_face():
    """``crowdselect_hf/__init__.py`` is for users; inside the package, import from the module that
    defines a name (e.g. ``from .version import __version__``), so the face stays lazy and free of cycles."""
    problems = []
    for module, collected in COLLECTED.items():
        if module == PACKAGE:
            continue
        for imp in collected.imports:
            if imp.target == PACKAGE and not imp.implicit:
                what = ", ".join(imp.names) if imp.names else "the package"
                problems.append(f"{imp.where()}: {module} imports {what} from {PACKAGE}/__init__.py")
    assert not problems, "modules import from the package face:\n  " + "\n  ".join(sorted(problems))


def _line_counts() -> dict[str, int]:
    prefix = PACKAGE + "."
    return {m[len(prefix):] if m.startswith(prefix) else m: len(p.read_text(encoding="utf-8").splitlines())
            for m, p in MODULES.items()}


def test_modules_stay_small():
    too_long = {m: n for m, n in _line_counts().items() if n > MAX_LINES and m not in LONG_MODULES}
    assert not too_long, (f"modules over {MAX_LINES} lines (split them along a real seam): "
                          + ", ".join(f"{m} ({n})" for m, n in sorted(too_long.items())))


def test_long_module_allowlist_is_current():
    counts = _line_counts()
    stale = {m: counts.get(m) for m in LONG_MODULES if counts.get(m, 0) <= MAX_LINES}
    assert not stale, ("remove these from LONG_MODULES, they are gone or short enough now: "
                       + ", ".join(f"{m} ({n} lines)" if n is not None else f"{m} (no such module)"
                                   for m, n in sorted(stale.items())))
