"""Small helpers shared by the torch.fx readers: the tensors a node reads, how often each
module is called, the user's source line behind a node, and the error for an op without a
rule."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch.fx as fx

from symlab.errors import UnsupportedOpError

__all__ = ["flat_nodes", "module_calls", "unsupported", "where"]


def flat_nodes(args: Any) -> list[fx.Node]:
    """The fx nodes inside ``args`` (nested tuples, lists and dicts), in order."""
    flat: list[fx.Node] = []
    fx.node.map_arg(args, flat.append)
    return flat


def module_calls(gm: fx.GraphModule) -> Counter[str]:
    """How many ``call_module`` nodes call each module of ``gm`` (a module called twice
    shares its weights between the two places)."""
    return Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_module")


def where(node: fx.Node) -> str:
    """The user's source line that created ``node`` (skipping torch's own frames)."""
    st = node.stack_trace
    if not st:
        return ""
    lines = [ln.strip() for ln in st.strip().splitlines() if ln.strip()]
    for i in range(len(lines) - 1, -1, -1):
        ln = lines[i]
        if ln.startswith("File ") and "/torch/" not in ln:
            code = lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith("File ") \
                else ""  # fmt: skip
            return f" (at {ln}: {code})"
    return ""


def unsupported(node: fx.Node, what: str) -> UnsupportedOpError:
    """The :class:`UnsupportedOpError` for ``what`` (an op without a rule) at ``node``."""
    return UnsupportedOpError(
        f"node {node.name!r}: {what} has no symmetry rule{where(node)}. symlab never assumes an "
        "unknown op is harmless. Register a rule with @symlab.symmetry.rule('<op>'), then map "
        "a module with symlab.frontend.register_module_op (plus "
        "symlab.frontend.declare_leaf for your own modules) or a function / tensor "
        "method with symlab.frontend.register_function"
    )
