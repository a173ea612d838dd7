"""The documentation site builds offline with ``mkdocs build --strict``, its API reference
covers every public name, and the runnable examples on its pages run."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGES = ["symmetry", "graph", "frontend", "nn", "data", "train", "align", "connect",
            "identify", "testing", "errors", "io"]  # fmt: skip
RUNNABLE_PAGES = ["getting-started.md", "how-to/register-a-rule.md", "how-to/save-and-load.md"]


def _offline_env() -> dict[str, str]:
    """The environment with every proxy pointed at a closed local port: any download fails."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(ROOT))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env[var] = "http://127.0.0.1:9"
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    return env


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for mod, extra in [("mkdocs", "mkdocs"), ("material", "mkdocs-material"),
                       ("mkdocstrings_handlers.python", "mkdocstrings[python]")]:  # fmt: skip
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{extra} is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(out)],
        cwd=ROOT, env=_offline_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_site_builds_offline(site: Path) -> None:
    assert (site / "index.html").is_file()
    for page in ["getting-started", "concepts/symmetries", "concepts/connectivity",
                 "concepts/identifiability", "concepts/data", "how-to/dask-sweep",
                 "how-to/save-and-load", "reference/cli", "experiments"]:  # fmt: skip
        assert (site / page / "index.html").is_file(), page
    assert "fonts.googleapis" not in (site / "index.html").read_text()


@pytest.mark.parametrize("package", PACKAGES)
def test_reference_covers_public_api(site: Path, package: str) -> None:
    html = (site / "reference" / package / "index.html").read_text()
    documented = {i.rsplit(".", 1)[-1] for i in re.findall(r'id="(symlab\.[\w.]+)"', html)}
    module = importlib.import_module(f"symlab.{package}")
    kinds = (inspect.isclass, inspect.isfunction, inspect.ismodule)
    constants = {n for n in module.__all__ if not any(k(getattr(module, n)) for k in kinds)}
    missing = [n for n in module.__all__ if n not in documented | constants]
    assert not missing, f"public names of symlab.{package} missing from the reference: {missing}"


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_page_examples_run(page: str) -> None:
    text = (DOCS / page).read_text()
    code = "\n\n".join(re.findall(r"```python\n(.*?)```", text, re.S))
    assert code, page
    # a fresh interpreter: the examples register rules, which are process-global
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_docstring_markdown() -> None:
    pytest.importorskip("griffe", reason="griffe comes with mkdocstrings[python]")
    path = DOCS / "_ext" / "docstrings.py"
    spec = importlib.util.spec_from_file_location("docstrings_ext", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = "See :class:`~a.B` and :func:`c.d`.\n\n    >>> f(['a'])\n    ['a']\n\nAfter."
    assert mod.to_markdown(text).splitlines() == [
        "See `B` and `c.d`.", "", "    ```pycon", "    >>> f(['a'])", "    ['a']", "    ```", "",
        "After.",
    ]  # fmt: skip
