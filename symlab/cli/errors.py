"""How the ``symlab`` command line reports errors: one ``error: ...`` line on stderr.

Parser errors (unknown options, values of the wrong type) and :class:`~symlab.errors.SymlabError`
exit with code 2, unexpected exceptions with code 1 (``SYMLAB_DEBUG=1`` shows their traceback).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import typer
from typer.core import TyperGroup

from symlab.errors import SymlabError

__all__ = ["OneLineErrors", "friendly", "one_line"]

F = TypeVar("F", bound=Callable[..., Any])


def one_line(text: str) -> str:
    return " ".join(str(text).split())


class OneLineErrors(TyperGroup):
    """Every error a single ``error: ...`` line on stderr: parser errors (exit 2, with the
    command's ``--help`` to read), and unexpected exceptions (exit 1)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any
             ) -> Any:  # fmt: skip
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except Exception as exc:
            sys.exit(_report(exc))
        sys.exit(rv if isinstance(rv, int) else 0)


def _is_click_error(exc: Exception) -> bool:
    """A command-line parser error (click's ``ClickException``, also when typer vendors click)."""
    return any(c.__name__ == "ClickException" for c in type(exc).__mro__)


def _report(exc: Exception) -> int:
    """Print ``exc`` as one ``error: ...`` line on stderr and return the exit code."""
    name = type(exc).__name__
    if name == "NoArgsIsHelpError":  # the help has been shown: no command was given
        return 2
    if _is_click_error(exc):
        ctx = getattr(exc, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        typer.echo(f"error: {one_line(exc.format_message())}{where}", err=True)  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 2))
    if isinstance(exc, typer.Abort) or name == "Abort":
        typer.echo("error: aborted", err=True)
        return 1
    if isinstance(exc, SymlabError):  # raised outside a command (e.g. in a callback)
        typer.echo(f"error: {one_line(str(exc))}", err=True)
        return 2
    if os.environ.get("SYMLAB_DEBUG"):
        raise exc
    msg = one_line(str(exc)) or "(no message)"
    typer.echo(
        f"error: symlab failed unexpectedly ({name}: {msg}); rerun with SYMLAB_DEBUG=1 for the "
        "traceback and report it",
        err=True,
    )
    return 1


def friendly(fn: F) -> F:
    """Turn a SymlabError into a one-line message on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SymlabError as exc:
            typer.echo(f"error: {one_line(str(exc))}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]
