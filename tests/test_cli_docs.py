"""The command-line reference page (docs/reference/cli.md) is what the CLI generates."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _page_module():
    spec = importlib.util.spec_from_file_location(
        "cli_page", ROOT / "docs" / "_ext" / "cli_page.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cli_reference_page_is_in_sync():
    page = _page_module()
    expected = page.cli_markdown()
    assert page.PAGE.read_text(encoding="utf-8") == expected, (
        "docs/reference/cli.md is stale: run `python docs/_ext/cli_page.py`"
    )
    for command in ("symlab symmetries", "symlab barrier", "symlab experiment run"):
        assert f"## `{command}`" in expected or f"### `{command}`" in expected
    assert "--device" in expected and "Exit codes" in expected


def test_help_shows_no_doctest():
    """A command's docstring example (for the test suite) stays out of ``--help`` and the
    reference page: click's ``\\f`` ends the help text."""
    from typer.testing import CliRunner

    from symlab.cli import app

    out = CliRunner().invoke(app, ["coverage", "--help"]).output
    assert "Census of real models" in out and ">>>" not in out and "CliRunner" not in out
    page = _page_module().cli_markdown()
    assert "&gt;&gt;&gt;" not in page and ">>>" not in page
