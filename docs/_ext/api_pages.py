"""mkdocs hook: expand ``<!-- public-api symlab.pkg -->`` into mkdocstrings directives.

For every name in the package's ``__all__`` it emits ``::: <defining module>.<name>``, so the
reference always lists the whole public API (new names appear without editing the pages) and
sidesteps a griffe limitation: a function re-exported under the name of its own submodule
(``symlab.connect.interpolate``) would otherwise resolve to the module, not the function.
Public submodules (``symlab.nn.zoo``) are expanded the same way under a heading of their own;
constants are listed by name.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

MARKER = re.compile(r"^<!-- public-api (?P<mod>[\w.]+) -->$", re.MULTILINE)


def public_api(module_name: str, level: int = 2) -> str:
    """Markdown with one ``:::`` directive per public object of ``module_name``."""
    module = importlib.import_module(module_name)
    names = list(getattr(module, "__all__", []))
    if not names:
        raise ValueError(f"{module_name} has no __all__ to document")
    blocks: list[str] = []
    constants: list[str] = []
    submodules: list[str] = []
    for name in names:
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            if obj.__name__.startswith("symlab.") and hasattr(obj, "__all__"):
                submodules.append(obj.__name__)
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            home = importlib.import_module(obj.__module__)
            # decorated functions (hypothesis strategies) have a wrapper's qualname
            qual = name if getattr(home, name, None) is obj else obj.__qualname__
            path = f"{obj.__module__}.{qual}"
            blocks.append(f"::: {path}\n    options:\n      heading_level: {level}\n")
        else:
            constants.append(name)
    out = []
    if constants:
        out.append("Constants: " + ", ".join(f"`{module_name}.{c}`" for c in constants) + "\n")
    out += blocks
    for sub in submodules:
        out.append(f"{'#' * level} `{sub}`\n\n::: {sub}\n    options:\n      members: false\n"
                   f"      show_root_heading: false\n")  # fmt: skip
        out.append(public_api(sub, level + 1))
    return "\n".join(out)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return MARKER.sub(lambda m: public_api(m.group("mod")), markdown)
