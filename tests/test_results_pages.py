"""Every registered experiment has a published result page with its figures, linked from the
experiments page and the site's navigation; every markdown table of those pages parses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markdown_check import check_tables

import experiments
from experiments.publish import page_meta

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "docs" / "results"
INDEX = ROOT / "docs" / "experiments.md"


@pytest.mark.parametrize("name", experiments.names())
def test_every_experiment_has_a_published_page(name):
    page = PAGES / f"{name}.md"
    assert page.is_file(), f"no {page}: run `make results-pages` (see docs/experiments.md)"
    text = page.read_text()
    meta = page_meta(page)
    assert meta["name"] == name and meta["setting"] in experiments.get(name).settings
    if meta["setting"] != "full":  # a small or medium result is labelled as such
        assert f'!!! warning "{meta["setting"].capitalize()} setting"' in text
    if meta["setting"] == "medium":  # says why the full setting is not the one shown
        assert "The full setting (`full`: " in text and "was not run" in text
    counts = f"{meta['held']} held · {meta['inconclusive']} inconclusive · {meta['failed']}"
    assert counts in text  # failures stated as prominently as successes
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images, f"{page} shows no figure"
    for img in images:
        f = PAGES / img
        assert f.is_file(), f"{page} shows {img}, which does not exist"
        assert f.stat().st_size < 250_000, f"{img} is {f.stat().st_size} bytes; keep figures small"
    assert "## Settings" in text and "## Runtime" in text and "seeds:" in text
    check_tables(text)
    index = INDEX.read_text()
    assert f"(results/{name}.md)" in index, f"docs/experiments.md does not link {name}"
    assert f"results/{name}.md" in (ROOT / "mkdocs.yml").read_text(), "not in the site's nav"


def test_experiments_page_tables_parse():
    assert check_tables(INDEX.read_text()) >= 1


def test_table_check_catches_a_pipe_inside_a_cell():
    """Negative control: the header that broke every summary table is caught."""
    with pytest.raises(AssertionError, match="cells"):
        check_tables("| variant | log10 |G| |\n|---|---|\n| a | 1 |\n")
    from experiments._common import markdown_table

    assert check_tables(markdown_table(["variant", "log10 |G|"], [["a", 1]])) == 1
