"""The ``symlab`` command line: symmetry groups, experiments and barriers.

::

    symlab symmetries mlp --option widths=40,128,10
    symlab symmetries mypkg.models:make_net --input-shape 3,32,32 --save net.safetensors
    symlab experiment list
    symlab experiment run e2 --small            # prints a table, writes results/e2/
    symlab experiment report e2
    symlab coverage --family timm --limit 5      # which real models symlab derives and proves
    symlab barrier a.safetensors b.safetensors --data mnist1d --model mlp \\
        --option widths=40,128,10 --align weight

Exit codes: 0 success; 1 the work ran but something failed (jobs of a sweep, listed with how
to resume; or an unexpected internal error, reported in one line — set ``SYMLAB_DEBUG=1`` for
its traceback); 2 bad input: one line on stderr saying what was wrong and what to do (a
:class:`~symlab.errors.SymlabError`, or an option the command line parser refused).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from symlab.cli.errors import OneLineErrors, friendly
from symlab.cli.models import ModelSpecError, build_model, check_fit, parse_options, parse_shape
from symlab.errors import ArgumentError, ExampleInputError

__all__ = ["ModelSpecError", "app", "build_model", "main", "parse_options", "parse_shape"]

RESULTS = Path("results")
log = logging.getLogger(__name__)


app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Derive parameter-symmetry groups; run the experiments; measure barriers.",
    epilog="Exit codes: 0 success; 1 some jobs of a sweep failed (run the command again to "
    "retry them) or symlab failed unexpectedly (SYMLAB_DEBUG=1 shows the traceback); 2 bad "
    "input, explained in one line on stderr.",
)
experiment_app = typer.Typer(no_args_is_help=True, help="List, run and report experiments.")
app.add_typer(experiment_app, name="experiment")


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _version(value: bool) -> None:
    if value:
        import symlab

        typer.echo(f"symlab {symlab.__version__}")
        raise typer.Exit(0)


@app.callback()
def _options(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="log what symlab does to stderr (INFO level)")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """Derive parameter-symmetry groups; run the experiments; measure barriers."""
    if not verbose:
        return
    logger = logging.getLogger("symlab")
    handler, level = _Stderr(), logger.level
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def restore() -> None:  # the command is over: leave logging as it was
        logger.removeHandler(handler)
        logger.setLevel(level)

    ctx.call_on_close(restore)


OptionList = Annotated[
    list[str] | None, typer.Option("--option", "-o", help="factory argument name=value")
]
DeviceOption = Annotated[str, typer.Option(help="torch device: cpu (default), cuda, cuda:N or mps")]


@app.command()
@friendly
def symmetries(
    model: Annotated[
        str, typer.Argument(help="zoo name (mlp, resnet20, ...) or module.path:factory")
    ],
    input_shape: Annotated[
        str | None, typer.Option(help="shape of one input, e.g. 3,32,32 (for tracing)")
    ] = None,
    option: OptionList = None,
    save: Annotated[
        Path | None, typer.Option(help="also save the group to this .safetensors file")
    ] = None,
) -> None:
    """Print the symmetry group of MODEL and its factors."""
    import torch

    import symlab as sl

    net, example = build_model(model, parse_options(option))
    shape = parse_shape(input_shape)
    if shape is not None:
        example = torch.randn(2, *shape)
    plain = isinstance(net, sl.nn.GraphNet | torch.nn.Sequential)
    if (
        example is None
        and not plain
        and not any(isinstance(m, torch.nn.Linear) for m in net.modules())
    ):
        raise ModelSpecError(
            f"{model} needs --input-shape (one input without the batch dimension, e.g. 3,32,32)"
        )
    try:
        G = sl.symmetries(net, example)
    except ExampleInputError as exc:
        if shape is not None:
            raise
        raise ModelSpecError(
            f"{model} needs --input-shape (one input without the batch dimension, e.g. "
            f"3,32,32): {exc}"
        ) from None
    saved = None if save is None else sl.io.save_group(G, save)
    typer.echo(str(G))
    if saved is not None:
        typer.echo(f"saved the group to {saved}", err=True)


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
@friendly
def experiment_list() -> None:
    """List the experiments, the claim each checks and their measured runtimes."""
    ex = _experiments()
    for name in ex.names():
        e = ex.get(name)
        typer.echo(f"{name:4s} {e.title}\n     paper: {e.paper}")
        for setting, s in e.settings.items():
            jobs = len(e.sweep(setting).jobs())
            typer.echo(f"     --{setting}: {jobs} jobs; {s.runtime or 'runtime not stated'}")


def _print_report(rep: Any) -> None:
    typer.echo(rep.table)
    if rep.summary:
        typer.echo(rep.summary)
    typer.echo("wrote " + ", ".join(str(p) for p in rep.files))


def _writable(results: Path, name: str) -> None:
    """Create ``results/name`` and check that files can be written there."""
    folder = results / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ArgumentError(
            f"--results {str(results)!r}: cannot write the results folder {str(folder)!r} "
            f"({err.strerror or err}); pass a folder you can write to"
        ) from None


def _with_device(sweep: Any, device: str, name: str) -> Any:
    from symlab.device import resolve_device

    dev = resolve_device(device)
    if dev.type == "cpu":
        return sweep
    if not any(f.name == "device" for f in dataclasses.fields(sweep.base)):
        raise ArgumentError(
            f"--device {device}: experiment {name} has no device option (its config has no "
            "'device' field); it runs on the CPU only"
        )
    return dataclasses.replace(sweep, base=dataclasses.replace(sweep.base, device=str(dev)))


FullOption = Annotated[bool, typer.Option("--full/--small", help="setting (default: --small)")]
MediumOption = Annotated[
    bool, typer.Option("--medium", help="the medium setting (the one docs/results publish)")
]
SettingOption = Annotated[
    str | None, typer.Option(help="a setting by name (see `symlab experiment list`)")
]


def _setting(exp: Any, full: bool, medium: bool, setting: str | None) -> str:
    """The setting the flags name: at most one of --full, --medium and --setting."""
    chosen = [s for s, on in (("full", full), ("medium", medium)) if on]
    if setting is not None:
        chosen.append(setting)
    if len(chosen) > 1:
        raise ArgumentError(f"name one setting, got {' and '.join(chosen)}")
    name = chosen[0] if chosen else "small"
    if name not in exp.settings:
        raise ArgumentError(
            f"experiment {exp.name} has no setting {name!r}; it has {', '.join(exp.settings)}"
        )
    return name


SeedsOption = Annotated[int | None, typer.Option(help="number of seeds (default: the setting's)")]


@experiment_app.command("run")
@friendly
def experiment_run(
    name: Annotated[str, typer.Argument(help="experiment name (see `symlab experiment list`)")],
    full: FullOption = False,
    medium: MediumOption = False,
    setting: SettingOption = None,
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
    device: DeviceOption = "cpu",
) -> None:
    """Run (or resume) an experiment's sweep, then print its table and write its figures."""
    from tqdm.std import tqdm

    from symlab.runner import run_sweep

    exp = _experiments().get(name)
    setting = _setting(exp, full, medium, setting)
    if seeds is not None and seeds < 1:
        raise ArgumentError(f"--seeds must be >= 1, got {seeds}")
    if workers is not None and workers < 1:
        raise ArgumentError(f"--workers must be >= 1 (local worker processes), got {workers}")
    if scheduler is not None and not re.fullmatch(r"\w+://\S+|[^\s:/]+:\d+", scheduler):
        raise ArgumentError(
            f"--scheduler {scheduler!r} is not a scheduler address like tcp://host:8786"
        )
    sweep = _with_device(exp.sweep(setting, seeds), device, name)
    _writable(results, name)

    def on_record(rec: dict[str, Any]) -> None:
        if rec["status"] != "ok":
            tqdm.write(
                f"job {rec['job_id']} (seed {rec['seed']}) failed: {rec['error']}", file=sys.stderr
            )
        log.info("job %s (seed %s): %s in %.1f s", rec["job_id"], rec["seed"], rec["status"],
                 rec.get("seconds", float("nan")))  # fmt: skip

    typer.echo(
        f"{name} ({setting}): {len(sweep.jobs())} jobs, results in {results / name}", err=True
    )
    try:
        out = run_sweep(sweep, results, workers=workers, scheduler=scheduler, progress=progress,
                        on_record=on_record)  # fmt: skip
    except (OSError, TimeoutError) as err:
        where = f"the scheduler {scheduler}" if scheduler else f"the results in {results}"
        raise ArgumentError(f"{type(err).__name__} while using {where}: {err}") from None
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
@friendly
def experiment_report(
    name: Annotated[str, typer.Argument(help="experiment name")],
    full: FullOption = False,
    medium: MediumOption = False,
    setting: SettingOption = None,
    seeds: SeedsOption = None,
    results: Annotated[Path, typer.Option(help="results root folder")] = RESULTS,
) -> None:
    """Print the table and write the figures of an experiment from its stored records."""
    from symlab.runner import ResultStore

    exp = _experiments().get(name)
    setting = _setting(exp, full, medium, setting)
    if seeds is not None and seeds < 1:
        raise ArgumentError(f"--seeds must be >= 1, got {seeds}")
    sweep = exp.sweep(setting, seeds)
    ids = sweep.job_ids()
    records = ResultStore(results, name).records(ids) if (results / name).is_dir() else []
    if not records:
        raise ModelSpecError(
            f"no records of {name} ({setting}) under {results / name}; run "
            f"`symlab experiment run {name} --{setting}` first"
        )
    if len(records) < len(ids):
        typer.echo(f"note: {len(records)} of {len(ids)} jobs have records", err=True)
    _writable(results, name)
    _print_report(exp.report(records, results / name, setting))


def _print_curve(curve: Any, ds: Any, kinds: Sequence[str]) -> None:
    """Every number with its unit: losses in nats (cross-entropy) or squared target units,
    error barriers in percentage points, the relative accuracy drop in percent."""
    ce = ds.task == "classification"
    unit = "nats" if ce else "(target units)²"
    loss = "cross-entropy" if ce else "mean squared error"
    typer.echo(f"{loss} loss: model A (α=0) {float(curve.loss[0]):.4f} {unit}, model B (α=1) "
               f"{float(curve.loss[-1]):.4f} {unit}, highest on the path "
               f"{float(curve.loss.max()):.4f} {unit}")  # fmt: skip
    if curve.accuracy is not None:
        acc = 100 * curve.accuracy
        typer.echo(f"accuracy: model A {float(acc[0]):.2f} %, model B {float(acc[-1]):.2f} %, "
                   f"lowest on the path {float(acc.min()):.2f} %")  # fmt: skip
    rows = {
        "loss": ("loss barrier", 1.0, unit,
                 "max_α L(α) − (L(A) + L(B))/2 (Ainsworth et al. 2023)"),
        "weighted": ("weighted loss barrier", 1.0, unit,
                     "max_α [L(α) − (1−α) L(A) − α L(B)] (Entezari et al. 2022)"),
        "error": ("error barrier", 100.0, "percentage points",
                  "of error rate; stable below 2 (Frankle et al. 2020)"),
        "relative_accuracy_drop": ("relative accuracy drop", 1.0, "%",
                                   "of the better end's accuracy (Bürgin et al. 2026)"),
    }  # fmt: skip
    for kind in kinds:
        label, scale, u, what = rows.get(kind, (kind, 1.0, "", ""))
        typer.echo(f"{label + ':':24s} {scale * curve.barrier(kind):9.4f} {u} {what}")


@app.command()
@friendly
def barrier(
    ckpt_a: Annotated[Path, typer.Argument(help="checkpoint of model A (.safetensors)")],
    ckpt_b: Annotated[Path, typer.Argument(help="checkpoint of model B (.safetensors)")],
    data: Annotated[str, typer.Option(help="data set name (mnist1d, digits, teacher, ...)")],
    model: Annotated[str, typer.Option(help="zoo name or module.path:factory of the architecture")],
    option: OptionList = None,
    data_option: Annotated[
        list[str] | None, typer.Option("--data-option", "-d", help="data set option name=value")
    ] = None,
    align: Annotated[
        str, typer.Option(help="alignment before interpolating: weight | activation | none")
    ] = "weight",
    n_alphas: Annotated[int, typer.Option(help="points along the path, ends included")] = 25,
    split: Annotated[str, typer.Option(help="data split to evaluate on: test | train")] = "test",
    device: DeviceOption = "cpu",
) -> None:
    """Loss and error barriers on the straight line between two checkpoints."""
    import symlab as sl
    from symlab.device import resolve_device
    from symlab.train import load_checkpoint

    if align not in ("weight", "activation", "none"):
        raise ArgumentError(f"--align must be weight, activation or none, got {align!r}")
    if n_alphas < 2:
        raise ArgumentError(
            f"--n-alphas must be >= 2 (the path's two ends, α = 0 and α = 1), got {n_alphas}"
        )
    if split not in ("train", "test"):
        raise ArgumentError(f"--split must be test or train, got {split!r}")
    dev = resolve_device(device)
    opts = parse_options(option)
    a, example = build_model(model, opts)
    b, _ = build_model(model, opts)
    ds = sl.data.load(data, **parse_options(data_option, "--data-option"))
    ds.tensors(split)  # refuses an empty split
    check_fit(a, example, ds, data, model)
    load_checkpoint(ckpt_a, a)
    load_checkpoint(ckpt_b, b)
    G = sl.symmetries(a, example if example is not None else ds.x_train[:2])
    a, b, ds = a.to(dev), b.to(dev), ds.to(dev)
    if align == "weight":
        b = sl.align.weight_matching(a.state_dict(), b.state_dict(), G).apply_model(b)
    elif align == "activation":
        b = sl.align.activation_matching(a, b, ds, G).apply_model(b)
    curve = sl.connect.interpolate(a, b, ds, n_alphas, split=split)
    n = len(ds.tensors(split)[0])
    typer.echo(
        f"path: {n_alphas} points α ∈ [0, 1] from {ckpt_a} (α=0) to {ckpt_b} (α=1); {data} "
        f"{split} split, {n} examples; alignment: {align}; device: {dev}"
    )
    on_accuracy = ("error", "relative_accuracy_drop")
    kinds = [k for k in sl.connect.BARRIERS if curve.accuracy is not None or k not in on_accuracy]
    _print_curve(curve, ds, kinds)


from symlab.testing.zoo_cli import coverage  # noqa: E402 - the census, defined beside it

# the help is the docstring up to click's "\f" (its doctest is for the test suite, not --help)
app.command("coverage", help=inspect.getdoc(coverage).partition("\f")[0].strip())(  # type: ignore[union-attr]
    friendly(coverage)
)


def main() -> None:
    app()
