"""Every public function and class has a docstring with an example (issue 8, item 4).

"Public" means listed in the ``__all__`` of a public package below. An example is a ``>>>``
line (``--doctest-modules`` runs it; a ``# doctest: +SKIP`` one still counts) or an
``Example:``/``Examples`` section. ``ALLOWED`` lists the few names that may lack one, each
with its reason; an entry that has gained an example must be removed from it.
"""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

PACKAGES = ["symlab", "symlab.graph", "symlab.frontend", "symlab.symmetry", "symlab.nn",
            "symlab.nn.zoo", "symlab.data", "symlab.train", "symlab.align", "symlab.connect",
            "symlab.identify", "symlab.testing.strategies", "symlab.runner",
            "symlab.io"]  # fmt: skip

#: Public name -> why it has no example yet.
ALLOWED: dict[str, str] = {}

_EXAMPLE = re.compile(r"^\s*>>>|^\s*Examples?\s*(:|\n\s*-{3,})", re.MULTILINE)


def public_objects() -> dict[str, object]:
    """``{first public name: object}`` of every function and class in the packages'
    ``__all__`` (re-exports counted once; constants, modules and type aliases skipped)."""
    found: dict[str, object] = {}
    seen: set[int] = set()
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue
            seen.add(id(obj))
            found[f"{package}.{name}"] = obj
    return found


def has_example(obj: object) -> bool:
    return bool(_EXAMPLE.search(inspect.getdoc(obj) or ""))


def missing_examples() -> list[str]:
    return sorted(name for name, obj in public_objects().items() if not has_example(obj))


def test_public_api_is_found() -> None:
    names = public_objects()
    assert len(names) > 100
    for name in ["symlab.symmetries", "symlab.nn.MLP", "symlab.connect.interpolate"]:
        assert name in names


def test_every_public_object_has_an_example() -> None:
    missing = [name for name in missing_examples() if name not in ALLOWED]
    assert not missing, "public objects without a docstring example:\n  " + "\n  ".join(missing)


def test_allow_list_is_current() -> None:
    objects = public_objects()
    unknown = sorted(set(ALLOWED) - set(objects))
    assert not unknown, f"allow-listed names that are not public objects: {unknown}"
    stale = sorted(name for name in ALLOWED if has_example(objects[name]))
    assert not stale, f"allow-listed names that now have an example (remove them): {stale}"
    assert all(reason.strip() for reason in ALLOWED.values())


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("Text.\n\n>>> 1 + 1\n2", True),
        ("Text.\n\n>>> train(net)  # doctest: +SKIP", True),
        ("Text.\n\nExample:\n    net = MLP([3, 4, 2])", True),
        ("Text.\n\nExamples\n--------\nnet = MLP([3, 4, 2])", True),
        ("Text only; see the example in the module docstring.", False),
        (None, False),
    ],
)
def test_example_detection(doc: str | None, expected: bool) -> None:
    def f() -> None: ...

    f.__doc__ = doc
    assert has_example(f) is expected
