"""The ``symlab`` command line: symmetry groups, experiments and barriers.

::

    symlab symmetries mlp --option widths=40,128,10
    symlab symmetries mypkg.models:make_net --input-shape 3,32,32
    symlab experiment list
    symlab experiment run e2 --small            # prints a table, writes results/e2/
    symlab experiment report e2
    symlab coverage --family timm --limit 5      # which real models symlab derives and proves
    symlab barrier a.safetensors b.safetensors --data mnist1d --model mlp \\
        --option widths=40,128,10 --align weight

Exit codes: 0 success; 1 the work ran but something failed (jobs of a sweep, listed with how
to resume); 2 bad input (a :class:`~symlab.errors.SymlabError`: the message says what to fix).
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from symlab.errors import SymlabError

__all__ = ["ModelSpecError", "app", "build_model", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Derive parameter-symmetry groups; run the experiments; measure barriers.",
)
experiment_app = typer.Typer(no_args_is_help=True, help="List, run and report experiments.")
app.add_typer(experiment_app, name="experiment")

F = TypeVar("F", bound=Callable[..., Any])
RESULTS = Path("results")


class ModelSpecError(SymlabError):
    """A model given on the command line cannot be found or built."""


def _friendly(fn: F) -> F:
    """Turn a SymlabError into a one-line message on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SymlabError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _value(text: str) -> Any:
    """``"3"`` → 3, ``"40,128,10"`` → (40, 128, 10), ``"gelu"`` → ``"gelu"``."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_options(options: list[str] | None) -> dict[str, Any]:
    out = {}
    for opt in options or []:
        key, sep, val = opt.partition("=")
        if not sep or not key.isidentifier():
            raise ModelSpecError(
                f"--option {opt!r} must look like name=value (e.g. widths=40,64,10)"
            )
        out[key] = _value(val)
    return out


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(s) for s in re.split(r"[,x]", text.strip()))
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise ModelSpecError(
            f"--input-shape {text!r} must be positive ints like 3,32,32 "
            "(one example, without the batch dimension)"
        )
    return shape


def build_model(spec: str, options: dict[str, Any], seed: int = 0) -> tuple[Any, Any]:
    """``(model, example_input or None)`` from a zoo name or ``module.path:factory``."""
    import torch

    from symlab.nn import zoo

    if ":" not in spec:
        if spec not in zoo.names():
            raise ModelSpecError(
                f"unknown model {spec!r}: give a zoo name ({', '.join(zoo.names())}) "
                "or module.path:factory"
            )
        try:
            model = zoo.get(spec, seed=seed, **options)
            return model, zoo.example_input(spec, batch=2, **options)
        except TypeError as exc:
            raise ModelSpecError(f"bad --option for {spec!r}: {exc}") from None
    mod_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelSpecError(
            f"cannot import {spec!r}: {exc} (is its package on PYTHONPATH?)"
        ) from None
    try:
        model = factory(**options)
    except TypeError as exc:
        raise ModelSpecError(f"{spec}(**{options}) failed: {exc}") from None
    if not isinstance(model, torch.nn.Module):
        raise ModelSpecError(f"{spec} returned a {type(model).__name__}, not an nn.Module")
    return model, None


@app.command()
@_friendly
def symmetries(
    model: Annotated[
        str, typer.Argument(help="zoo name (mlp, resnet20, ...) or module.path:factory")
    ],
    input_shape: Annotated[
        str | None, typer.Option(help="shape of one input, e.g. 3,32,32 (for tracing)")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="factory argument name=value")
    ] = None,
) -> None:
    """Print the symmetry group of MODEL and its factors."""
    import torch

    import symlab as sl

    net, example = build_model(model, parse_options(option))
    shape = parse_shape(input_shape)
    if shape is not None:
        example = torch.randn(2, *shape)
    G = sl.symmetries(net, example)
    typer.echo(str(G))


def _experiments() -> Any:
    try:
        import experiments
    except ImportError as exc:
        raise ModelSpecError(
            f"the experiments package is not importable ({exc}); run symlab from "
            "the repository root or install symlab with its experiments"
        ) from None
    return experiments


@experiment_app.command("list")
@_friendly
def experiment_list() -> None:
    """List the experiments, the claim each checks and their runtimes."""
    ex = _experiments()
    for name in ex.names():
        e = ex.get(name)
        runtimes = ", ".join(f"{k}: {s.runtime}" for k, s in e.settings.items() if s.runtime)
        typer.echo(f"{name:4s} {e.title}\n     paper: {e.paper}\n     runtime: {runtimes}")


def _print_report(rep: Any) -> None:
    typer.echo(rep.table)
    if rep.summary:
        typer.echo(rep.summary)
    typer.echo("wrote " + ", ".join(str(p) for p in rep.files))


FullOption = Annotated[bool, typer.Option("--full/--small", help="setting (default: --small)")]
SeedsOption = Annotated[int | None, typer.Option(help="number of seeds (default: the setting's)")]


@experiment_app.command("run")
@_friendly
def experiment_run(
    name: Annotated[str, typer.Argument(help="experiment name (see `symlab experiment list`)")],
    full: FullOption = False,
    seeds: SeedsOption = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address, e.g. tcp://host:8786")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="local worker processes (default: CPU count)")
    ] = None,
    results: Annotated[Path, typer.Option(help="results root folder")] = RESULTS,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="progress bar")
    ] = None,
) -> None:
    """Run (or resume) an experiment's sweep, then print its table and write its figures."""
    from tqdm.std import tqdm

    from symlab.runner import run_sweep

    exp = _experiments().get(name)
    setting = "full" if full else "small"
    if seeds is not None and seeds < 1:
        raise ModelSpecError(f"--seeds must be >= 1, got {seeds}")
    sweep = exp.sweep(setting, seeds)

    def on_record(rec: dict[str, Any]) -> None:
        if rec["status"] != "ok":
            tqdm.write(
                f"job {rec['job_id']} (seed {rec['seed']}) failed: {rec['error']}", file=sys.stderr
            )

    typer.echo(
        f"{name} ({setting}): {len(sweep.jobs())} jobs, results in {results / name}", err=True
    )
    out = run_sweep(
        sweep, results, workers=workers, scheduler=scheduler, progress=progress, on_record=on_record
    )
    typer.echo(out.line(), err=True)
    if out.records and exp.report is not None:
        _print_report(exp.report(out.records, results / name, setting))
    if out.failures:
        typer.echo(
            f"{len(out.failures)} job(s) failed (first: {out.failures[0]['error']}); "
            f"details in {results / name / 'failed'}; run the same command again to "
            "retry them",
            err=True,
        )
        raise typer.Exit(1)


@experiment_app.command("report")
@_friendly
def experiment_report(
    name: Annotated[str, typer.Argument(help="experiment name")],
    full: FullOption = False,
    seeds: SeedsOption = None,
    results: Annotated[Path, typer.Option(help="results root folder")] = RESULTS,
) -> None:
    """Print the table and write the figures of an experiment from its stored records."""
    from symlab.runner import ResultStore

    exp = _experiments().get(name)
    setting = "full" if full else "small"
    sweep = exp.sweep(setting, seeds)
    ids = sweep.job_ids()
    records = ResultStore(results, name).records(ids)
    if not records:
        raise ModelSpecError(
            f"no records of {name} ({setting}) under {results / name}; run "
            f"`symlab experiment run {name} --{setting}` first"
        )
    if len(records) < len(ids):
        typer.echo(f"note: {len(records)} of {len(ids)} jobs have records", err=True)
    _print_report(exp.report(records, results / name, setting))


@app.command()
@_friendly
def barrier(
    ckpt_a: Annotated[Path, typer.Argument(help="checkpoint of model A (.safetensors)")],
    ckpt_b: Annotated[Path, typer.Argument(help="checkpoint of model B (.safetensors)")],
    data: Annotated[str, typer.Option(help="data set name (mnist1d, digits, teacher, ...)")],
    model: Annotated[str, typer.Option(help="zoo name or module.path:factory of the architecture")],
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="factory argument name=value")
    ] = None,
    align: Annotated[
        str, typer.Option(help="alignment before interpolating: weight | activation | none")
    ] = "weight",
    n_alphas: Annotated[int, typer.Option(help="points along the path")] = 25,
    split: Annotated[str, typer.Option(help="data split to evaluate on")] = "test",
) -> None:
    """Loss and error barriers on the straight line between two checkpoints."""
    import symlab as sl
    from symlab.train import load_checkpoint

    if align not in ("weight", "activation", "none"):
        raise ModelSpecError(f"--align must be weight, activation or none, got {align!r}")
    opts = parse_options(option)
    a, example = build_model(model, opts)
    b, _ = build_model(model, opts)
    load_checkpoint(ckpt_a, a)
    load_checkpoint(ckpt_b, b)
    ds = sl.data.load(data)
    G = sl.symmetries(a, example if example is not None else ds.x_train[:2])
    if align == "weight":
        b = sl.align.weight_matching(a.state_dict(), b.state_dict(), G).apply_model(b)
    elif align == "activation":
        b = sl.align.activation_matching(a, b, ds, G).apply_model(b)
    curve = sl.connect.interpolate(a, b, ds, n_alphas, split=split)
    typer.echo(
        f"alignment: {align}; loss at α=0 {float(curve.loss[0]):.4f}, "
        f"α=1 {float(curve.loss[-1]):.4f}"
    )
    for kind in sl.connect.BARRIERS:
        if curve.accuracy is None and kind in ("error", "relative_accuracy_drop"):
            continue
        typer.echo(f"{kind:24s} {curve.barrier(kind):.4f}")


from symlab.testing.zoo_cli import coverage  # noqa: E402 - the census, defined beside it

app.command("coverage")(_friendly(coverage))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
