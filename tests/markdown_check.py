"""Markdown tables that a renderer accepts: the check the experiment summaries and the
published result pages must pass (a ``|`` inside a cell, as in ``log10 |G|``, splits the cell and
Python-Markdown then renders no table at all)."""

from __future__ import annotations

import re

__all__ = ["check_tables", "table_blocks"]

_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [c.strip() for c in _UNESCAPED_PIPE.split(inner)]


def table_blocks(text: str) -> list[list[str]]:
    """Runs of consecutive lines that start with ``|`` (outside code fences)."""
    blocks, current, fenced = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.lstrip().startswith("|"):
            current.append(line)
            continue
        if current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def check_tables(text: str, render: bool = True) -> int:
    """Assert every table's header, delimiter and rows have the same number of cells and (with
    ``render``) that Python-Markdown renders each as a table with that many header cells.
    Returns the number of tables."""
    blocks = table_blocks(text)
    for block in blocks:
        assert len(block) >= 2, f"a table needs a header and a delimiter row: {block[0]!r}"
        n = len(_cells(block[0]))
        delim = _cells(block[1])
        assert all(re.fullmatch(r":?-{3,}:?", c) for c in delim), f"bad delimiter: {block[1]!r}"
        assert len(delim) == n, f"header has {n} cells, delimiter {len(delim)}: {block[0]!r}"
        for row in block[2:]:
            assert len(_cells(row)) == n, f"row has {len(_cells(row))} cells, not {n}: {row!r}"
    if render and blocks:
        import markdown

        html = markdown.markdown(text, extensions=["tables"])
        rendered = re.findall(r"<table>(.*?)</table>", html, re.S)
        assert len(rendered) == len(blocks), (
            f"{len(blocks)} tables written, {len(rendered)} rendered"
        )
        for block, table in zip(blocks, rendered, strict=True):
            assert len(re.findall(r"<th[ >]", table)) == len(_cells(block[0])), block[0]
    return len(blocks)
