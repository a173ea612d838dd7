"""Nothing a user reads points outside the repository (issue 15, item 4): the science lives in
``docs/concepts/`` with its sources, not in a ``../shared`` folder users do not have."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("../shared", "SCIENCE.md", "DESIGN.md")


def test_no_user_facing_text_points_to_shared_notes():
    files = [ROOT / "README.md", *ROOT.glob("docs/**/*.md")]
    for folder in ("symlab", "notebooks", "experiments"):
        files += (ROOT / folder).rglob("*.py")
    assert len(files) > 50
    hits = [f"{p.relative_to(ROOT)}: {word}" for p in files
            for word in FORBIDDEN if word in p.read_text(encoding="utf-8")]  # fmt: skip
    assert not hits, "user-facing text points outside the repository:\n" + "\n".join(hits)


def test_concept_pages_cite_their_sources():
    for page in ("symmetries", "connectivity", "data"):
        text = (ROOT / "docs" / "concepts" / f"{page}.md").read_text(encoding="utf-8")
        assert "## Sources" in text and "$" in text, page  # formulas and where they come from
