"""Imports flow one way (DESIGN: nn.Module or builder → ArchGraph → SymmetryGroup → action →
measurements): each package imports only packages of lower layers, the IR imports nothing
above it, and the front-end's modules import each other without cycles. Function-level
imports count; imports only for type checking do not."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1] / "symlab"

#: Layers, lowest first: a package may import its own layer's package and lower layers only.
LAYERS: list[set[str]] = [
    {"errors", "seeding", "modes", "perf", "stateless"},
    {"graph", "data", "progress", "device"},
    {"nn"},
    {"frontend"},
    {"symmetry"},
    {"api", "train"},
    {"align"},
    {"connect", "io"},
    {"identify"},
    {"testing", "runner"},
    {"__init__"},
    {"cli", "demo"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}

#: Public names the DESIGN contract puts in a lower layer than their algorithm: the lower module
#: imports the algorithm when called (so the packages still load bottom-up) and nothing else
#: in its package uses it. Each entry: module -> the higher modules it may import.
REEXPORTS: dict[str, set[str]] = {
    # sl.align.effective_matching: an alignment built on identify's function classes
    "symlab.align.effective": {"symlab.identify.effective_matching"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The symlab modules ``path`` imports at run time (anywhere in the file)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "symlab" or node.module.startswith("symlab."):
                for a in node.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{node.module}.{a.name}"
                    found.add(sub if (ROOT.parent / sub.replace(".", "/")).exists()
                              or (ROOT.parent / f"{sub.replace('.', '/')}.py").exists()
                              else node.module)  # fmt: skip
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("symlab")}
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


MODULES = {_module_name(p): _imports(p) for p in sorted(ROOT.rglob("*.py"))}


def test_every_package_has_a_layer() -> None:
    missing = {_package(m) for m in MODULES} - set(RANK)
    assert not missing, f"put these packages in a layer of LAYERS: {sorted(missing)}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_flow_down_the_layers(module: str) -> None:
    mine = _package(module)
    upward = sorted(
        t for t in MODULES[module] - REEXPORTS.get(module, set())
        if _package(t) != mine and RANK.get(_package(t), 99) >= RANK[mine]
    )  # fmt: skip
    assert not upward, f"{module} (layer {RANK[mine]}) imports from its layer or above: {upward}"


@pytest.mark.parametrize("package", ["graph", "frontend"])
def test_no_import_cycles_inside(package: str) -> None:
    prefix = f"symlab.{package}"
    g = nx.DiGraph()
    for module, targets in MODULES.items():
        if module.startswith(prefix):
            g.add_node(module)
            g.add_edges_from(
                (module, t)
                for t in targets
                if t.startswith(prefix) and t != prefix and t in MODULES
            )
    assert nx.is_directed_acyclic_graph(g), f"cycle: {nx.find_cycle(g)}"


def test_the_checker_sees_a_violation() -> None:
    """Negative control: an upward import is reported, a typing-only one is not."""
    import textwrap

    src = textwrap.dedent(
        """
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from symlab.symmetry.group import SymmetryGroup
        def f():
            from symlab.api import symmetries
        """
    )
    path = ROOT / "graph" / "_layout_probe.py"
    try:
        path.write_text(src)
        assert _imports(path) == {"symlab.api"}
    finally:
        path.unlink()
