"""A griffe extension for the API reference: render symlab's docstrings as Markdown.

symlab's docstrings are written for reading in the source: runnable examples (``>>>`` lines and
their output) sit straight in the text, and cross-references use Sphinx roles
(``:class:`~symlab.symmetry.SymmetryGroup```). Markdown would read ``>>>`` as nested block
quotes and ``['a', 'b']`` as link references, and print the roles verbatim, so this extension

* wraps every doctest block, up to the next blank line, in a ``pycon`` fence, and
* turns each role into inline code (``~`` keeps only the last dotted part, as in Sphinx).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")


def fence_doctests(text: str) -> str:
    """Wrap each run of lines starting at a ``>>>`` line (to the next blank line) in a fence."""
    out: list[str] = []
    inside = False
    indent = ""
    for line in text.splitlines():
        stripped = line.lstrip()
        if not inside and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            out.append(f"{indent}```pycon")
            inside = True
        elif inside and not stripped:
            out.append(f"{indent}```")
            inside = False
        out.append(line)
    if inside:
        out.append(f"{indent}```")
    return "\n".join(out)


def roles_to_code(text: str) -> str:
    """``:class:`~a.b.C``` → ```C```; ``:func:`a.f``` → ```a.f```."""
    return ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`",
                    text)  # fmt: skip


def to_markdown(text: str) -> str:
    """Both rewrites; doctest blocks are left untouched by the role rewrite."""
    parts = re.split(r"(```pycon\n.*?```)", fence_doctests(text), flags=re.S)
    return "".join(p if p.startswith("```pycon") else roles_to_code(p) for p in parts)


class MarkdownDocstrings(griffe.Extension):
    """Rewrite every docstring griffe loads (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
