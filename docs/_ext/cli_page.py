"""The command-line reference page, generated from the typer app (``docs/reference/cli.md``).

``python docs/_ext/cli_page.py`` rewrites the page; ``tests/test_cli_docs.py`` checks that the
committed page equals what the app generates, so the page cannot drift from the CLI.
"""

from __future__ import annotations

from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "reference" / "cli.md"
TITLE = "symlab command line"
INTRO = (
    "Generated from the command line itself (`python docs/_ext/cli_page.py`); every command "
    "also answers `--help`. Bad input ends with exit code 2 and one line on stderr saying what "
    "was wrong and what to do.\n\n"
)


def cli_markdown() -> str:
    """The reference page's markdown, as typer's ``utils docs`` writes it, plus an intro."""
    import typer
    from typer.cli import get_docs_for_click
    from typer.core import MARKUP_MODE_KEY

    from symlab.cli import app

    command = typer.main.get_command(app)
    ctx = typer.Context(command, obj={MARKUP_MODE_KEY: app.rich_markup_mode})
    docs = get_docs_for_click(obj=command, ctx=ctx, name="symlab", title=TITLE).strip() + "\n"
    head, _, rest = docs.partition("\n\n")
    return f"{head}\n\n{INTRO}{rest}"


if __name__ == "__main__":
    PAGE.write_text(cli_markdown(), encoding="utf-8")
    print(f"wrote {PAGE}")
