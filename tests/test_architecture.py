"""The import direction and the absence of import cycles, proven by reading the code (AST).

The layers, bottom to top: ``sdk`` <- ``trainer`` <- ``converters`` <- ``bench``. A package
imports only its own layer and those below it, anywhere in a file (a lazy import inside a
function is still a dependency). ``serve`` (sr-serve, the web pages and HTTP API) sits on the
SDK alone: it imports ``sdk`` and no other package (it must run torch-free on a Pi), and no
package imports it. ``demo_pi`` (the Raspberry Pi demo) uses the SDK, and ``serve`` for its
``--serve`` option. ``benchmarks/`` (thin scripts) sits on top and may import anything; nothing
imports it or ``demo_pi``.

The SDK is the torch-free runtime: it imports torch and the model runtimes only inside
functions (so ``import scopesr.sdk`` works on a Pi without them), never at module level.

Inside each package (and each script folder) the modules' module-level imports form no
cycle: the graph of "module A imports module B" is built from the imports a module runs
when it is loaded (not those inside functions or under ``if TYPE_CHECKING:``), and every
strongly connected component with more than one module is reported with the file:line of
each import in it. A second check adds the imports inside functions: a "lazy" import that
only hides a circle (two modules that need each other) is still a circle.

Every failure lists the offending ``file:line`` and the import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: folder -> (import name, layer). Folders map onto the scopesr.* namespace (pyproject's
#: package-dir); a folder that does not exist (yet) is skipped.
PACKAGES = {
    "sdk": ("scopesr.sdk", 0),
    "trainer": ("scopesr.trainer", 1),
    "converters": ("scopesr.converters", 2),
    "bench": ("scopesr.bench", 3),
    "serve": ("scopesr.serve", 1),
}
#: packages beside the layers: each may import only the packages listed here (and itself), and
#: no package imports it
SIDE_PACKAGES = {"serve": ("sdk",)}
#: script folders: their modules import each other by plain name (the folder is on sys.path)
SCRIPT_DIRS = ("demo_pi", "benchmarks")
#: may not be imported at module level by the SDK (heavy, optional runtimes)
SDK_LAZY_ONLY = (
    "torch",
    "torchvision",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "ai_edge_litert",
    "tflite_runtime",
    "tensorflow",
    "coremltools",
    "litert_torch",
)


@dataclass(frozen=True)
class Import:
    """One imported module name, as written and resolved to an absolute dotted name."""

    file: Path
    line: int
    target: str  # absolute dotted name of the module (or package) imported from
    names: tuple[str, ...]  # for ``from X import a, b``: a, b (they may be submodules of X)
    module_level: bool  # runs when the file is loaded (not in a function, not TYPE_CHECKING)

    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def _folders() -> list[tuple[str, Path]]:
    return [(d, ROOT / d) for d in [*PACKAGES, *SCRIPT_DIRS] if (ROOT / d).is_dir()]


def _module_name(folder: str, path: Path) -> str:
    """Dotted name of a file: scopesr.sdk.backends.base, or demo_pi's plain ``pipeline``."""
    rel = path.relative_to(ROOT / folder).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if folder in PACKAGES:
        return ".".join([PACKAGES[folder][0], *parts])
    return ".".join(parts) or folder


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str) -> list[Import]:
    """Every import in ``path`` (module ``module``), relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            level = module_level
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                level = False
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.body:  # typing only: never runs, but still a dependency
                    visit(ast.Module(body=[sub], type_ignores=[]), False)
                for sub in child.orelse:
                    visit(ast.Module(body=[sub], type_ignores=[]), module_level)
                continue
            if isinstance(child, ast.Import):
                for a in child.names:
                    out.append(Import(path, child.lineno, a.name, (), level))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".") if package else []
                    if child.level > 1:
                        base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                out.append(Import(path, child.lineno, target, tuple(a.name for a in child.names), level))
            visit(child, level)

    visit(tree, True)
    return out


def _all_modules() -> dict[str, tuple[str, Path, list[Import]]]:
    """module name -> (folder, file, imports) for every .py file of every package and script folder."""
    mods: dict[str, tuple[str, Path, list[Import]]] = {}
    for folder, base in _folders():
        for path in sorted(base.rglob("*.py")):
            if any(p.startswith(".") or p == "__pycache__" for p in path.relative_to(base).parts):
                continue
            name = _module_name(folder, path)
            mods[name] = (folder, path, _imports(path, name))
    return mods


MODULES = _all_modules()


def _top(target: str) -> str:
    return target.split(".")[0]


def _scopesr_package(target: str) -> str | None:
    """'sdk' for scopesr.sdk.io, None for a name outside the scopesr.* packages."""
    parts = target.split(".")
    if parts[0] != "scopesr" or len(parts) < 2:
        return None
    for folder, (name, _layer) in PACKAGES.items():
        if parts[1] == name.split(".")[1]:
            return folder
    return parts[1]  # a scopesr.* package this test does not know: reported as such


def _report(title: str, bad: list[str]) -> str:
    return f"{title} ({len(bad)}):\n  " + "\n  ".join(bad)


# ------------------------------------------------------------------------------ direction
def test_packages_import_only_their_own_layer_and_below():
    bad = []
    for _name, (folder, _path, imports) in MODULES.items():
        if folder not in PACKAGES:
            continue
        layer = PACKAGES[folder][1]
        for imp in imports:
            if _top(imp.target) in SCRIPT_DIRS:
                bad.append(f"{imp.where()}: {folder} imports {imp.target} (a script folder; nothing imports it)")
                continue
            other = _scopesr_package(imp.target)
            if other is None or other == folder:
                continue
            if other not in PACKAGES:
                bad.append(
                    f"{imp.where()}: {folder} imports {imp.target}, a package outside "
                    f"{', '.join(PACKAGES)}: add it to the layers in this test"
                )
            elif folder in SIDE_PACKAGES and other not in SIDE_PACKAGES[folder]:
                bad.append(
                    f"{imp.where()}: {folder} imports {imp.target} ({folder} may import only "
                    f"{', '.join(SIDE_PACKAGES[folder])})"
                )
            elif other in SIDE_PACKAGES:
                bad.append(f"{imp.where()}: {folder} imports {imp.target} (nothing imports {other} but demo_pi)")
            elif PACKAGES[other][1] > layer:
                bad.append(
                    f"{imp.where()}: {folder} imports {imp.target} "
                    f"({other} is above {folder}: the direction is "
                    f"{' -> '.join(reversed(list(PACKAGES)))})"
                )
    assert not bad, _report("imports against the layer order", bad)


def test_demo_pi_uses_the_sdk_only():
    """The SDK, and sr-serve for --serve (itself on the SDK alone)."""
    bad = []
    for _name, (folder, _path, imports) in MODULES.items():
        if folder != "demo_pi":
            continue
        for imp in imports:
            other = _scopesr_package(imp.target)
            if _top(imp.target) == "scopesr" and other not in ("sdk", "serve"):
                bad.append(
                    f"{imp.where()}: demo_pi imports {imp.target} (the demo uses scopesr.sdk and scopesr.serve only)"
                )
            elif _top(imp.target) == "benchmarks":
                bad.append(f"{imp.where()}: demo_pi imports {imp.target}")
    assert not bad, _report("demo_pi imports beyond the SDK", bad)


def test_sdk_imports_runtimes_and_torch_only_inside_functions():
    bad = []
    for _name, (folder, _path, imports) in MODULES.items():
        if folder != "sdk":
            continue
        for imp in imports:
            if imp.module_level and _top(imp.target) in SDK_LAZY_ONLY:
                bad.append(
                    f"{imp.where()}: module-level import of {imp.target} (import it inside the function "
                    "that needs it: scopesr.sdk must import without it)"
                )
    assert not bad, _report("heavy imports at the SDK's module level", bad)


def test_serve_never_imports_torch():
    """sr-serve runs in the edge env on a Pi: torch and its kin appear nowhere in it, not even lazily."""
    heavy = ("torch", "torchvision", "onnx", "onnxscript", "tensorflow", "coremltools", "litert_torch")
    bad = [
        f"{imp.where()}: serve imports {imp.target}"
        for _name, (folder, _path, imports) in MODULES.items()
        if folder == "serve"
        for imp in imports
        if _top(imp.target) in heavy
    ]
    assert not bad, _report("heavy imports in serve", bad)


# ------------------------------------------------------------------------------ cycles
def _edges(folder: str, lazy: bool = False) -> dict[str, list[tuple[str, Import]]]:
    """module -> [(module it imports, the import)], within ``folder``: the imports run at load
    time, plus those inside functions when ``lazy``."""
    own = {n for n, (f, _p, _i) in MODULES.items() if f == folder}
    graph: dict[str, list[tuple[str, Import]]] = {n: [] for n in own}
    for name in own:
        for imp in MODULES[name][2]:
            if not (imp.module_level or lazy):
                continue
            targets = []
            for sub in imp.names:  # from pkg import submodule
                if f"{imp.target}.{sub}" in own:
                    targets.append(f"{imp.target}.{sub}")
            if imp.target in own and (not imp.names or len(targets) < len(imp.names)):
                targets.append(imp.target)
            graph[name].extend((t, imp) for t in targets if t != name)
    return graph


def _cycles(graph: dict[str, list[tuple[str, Import]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted({t for t, _ in graph[root]})))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted({t for t, _ in graph[nxt]}))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def _cycle_report(graph: dict[str, list[tuple[str, Import]]]) -> list[str]:
    bad = []
    for comp in _cycles(graph):
        members = set(comp)
        links = [
            f"{imp.where()}: {src} imports {dst}{'' if imp.module_level else ' (inside a function)'}"
            for src in comp
            for dst, imp in graph[src]
            if dst in members
        ]
        bad.append("cycle " + " <-> ".join(comp) + ":\n    " + "\n    ".join(sorted(set(links))))
    return bad


@pytest.mark.parametrize("folder", [f for f, _ in _folders()])
def test_no_import_cycles_inside(folder):
    bad = _cycle_report(_edges(folder))
    assert not bad, _report(f"import cycles among {folder}/ modules (module-level imports)", bad)


@pytest.mark.parametrize("folder", [f for f, _ in _folders()])
def test_no_import_cycles_hidden_in_functions(folder):
    """Moving one import of a circle into a function makes it load, not go away: the two
    modules still need each other. Move what both need into a third module instead."""
    bad = _cycle_report(_edges(folder, lazy=True))
    assert not bad, _report(f"import cycles among {folder}/ modules (counting imports inside functions)", bad)


# ------------------------------------------------------------------------------ the scan itself
def test_the_scan_sees_the_code():
    """Guards against a scan that silently finds nothing (a moved folder, a parse change)."""
    assert {"scopesr.sdk", "scopesr.sdk.backends.base", "scopesr.trainer.models", "scopesr.converters.api"} <= set(
        MODULES
    )
    base = {i.target for i in MODULES["scopesr.sdk.backends.base"][2]}
    assert {"scopesr.sdk.card", "scopesr.sdk.errors", "numpy"} <= base
    graph = {"a": [("b", None)], "b": [("c", None)], "c": [("a", None)], "d": [("a", None)]}
    assert _cycles(graph) == [["a", "b", "c"]]  # type: ignore[arg-type]
