"""Every bad command line: exit code 2 and exactly one line, ``error: ...``, no traceback.

Table-driven: add a row to ``CASES`` for each new malformed input. ``{a}``/``{b}`` are
checkpoints of an MNIST-1D MLP (40-16-10), ``{c3}`` one with 3 outputs, ``{tmp}`` a fresh folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from symlab.cli import app
from symlab.nn import MLP
from symlab.train import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
BARRIER = ["barrier", "{a}", "{b}", "--data", "mnist1d", "--model", "mlp", "-o", "widths=40,16,10"]

CASES: list[tuple[str, list[str], str]] = [
    # the inputs named in issue 15
    ("data of another width", [*BARRIER[:4], "digits", *BARRIER[5:]], "does not fit --model mlp"),
    ("unknown activation", ["symmetries", "mlp", "-o", "activation=foo"], "unknown activation"),
    ("no workers", ["experiment", "run", "e2", "--workers", "0"], "--workers must be >= 1"),
    (
        "unwritable results",
        ["experiment", "run", "e2", "--results", "/proc/nope"],
        "cannot write the results folder",
    ),
    ("a symbol among widths", ["symmetries", "mlp", "-o", "widths=40,n,10"], "widths[1]"),
    ("one point on the path", [*BARRIER, "--n-alphas", "1"], "--n-alphas must be >= 2"),
    # the parser's own errors
    ("not an integer", [*BARRIER, "--n-alphas", "abc"], "Invalid value for '--n-alphas'"),
    ("missing argument", ["symmetries"], "Missing argument"),
    ("unknown command", ["nonsense"], "No such command"),
    ("unknown option", ["symmetries", "mlp", "--bogus"], "No such option: --bogus"),
    ("missing required option", ["barrier", "{a}", "{b}", "--model", "mlp"], "--data"),
    # model options
    ("option without value", ["symmetries", "mlp", "-o", "widths"], "name=value"),
    ("option without name", ["symmetries", "mlp", "-o", "=3"], "name=value"),
    ("option given twice", ["symmetries", "mlp", "-o", "seed=1", "-o", "seed=2"], "given twice"),
    ("option the factory rejects", ["symmetries", "mlp", "-o", "depth=3"], "cannot build 'mlp'"),
    ("negative width", ["symmetries", "resnet20", "-o", "width=-1"], "resnet20"),
    ("unknown model", ["symmetries", "no_such_model"], "unknown model 'no_such_model'"),
    ("unimportable factory", ["symmetries", "no.such.module:f"], "cannot import"),
    ("factory of no module", ["symmetries", "os:getcwd"], "not an nn.Module"),
    ("bad input shape", ["symmetries", "mlp", "--input-shape", "3,x"], "positive ints"),
    ("zero in input shape", ["symmetries", "mlp", "--input-shape", "0,3"], "positive ints"),
    ("absurd input shape", ["symmetries", "mlp", "--input-shape", "99999999"], "positive ints"),
    (
        "input of the wrong width",
        ["symmetries", "mlp", "-o", "widths=4,8,2", "--input-shape", "5"],
        "takes 4 features",
    ),
    (
        "factory that needs a shape",
        [
            "symmetries",
            "torch.nn:Conv2d",
            "-o",
            "in_channels=1",
            "-o",
            "out_channels=2",
            "-o",
            "kernel_size=3",
        ],
        "--input-shape",
    ),
    (
        "save to a non-safetensors file",
        ["symmetries", "mlp", "-o", "widths=4,8,2", "--save", "{tmp}/g.txt"],
        ".safetensors",
    ),
    (
        "save where nothing can be written",
        ["symmetries", "mlp", "-o", "widths=4,8,2", "--save", "/proc/nope/g.safetensors"],
        "cannot write",
    ),
    # experiments
    ("unknown experiment", ["experiment", "run", "e99"], "no experiment 'e99'"),
    (
        "report before a run",
        ["experiment", "report", "e2", "--results", "{tmp}"],
        "run `symlab experiment",
    ),
    ("no seeds", ["experiment", "run", "e2", "--seeds", "0"], "--seeds must be >= 1"),
    (
        "bad scheduler",
        ["experiment", "run", "e2", "--scheduler", "no address"],
        "not a scheduler address",
    ),
    (
        "device that is no device",
        ["experiment", "run", "e2", "--device", "gpu"],
        "not a torch device name",
    ),
    ("two settings", ["experiment", "run", "e2", "--medium", "--full"], "name one setting"),
    ("unknown setting", ["experiment", "run", "e2", "--setting", "huge"], "no setting 'huge'"),
    (
        "medium report before a run",
        ["experiment", "report", "e2", "--medium", "--results", "{tmp}"],
        "run `symlab experiment run e2 --medium` first",
    ),
    # barriers
    (
        "missing checkpoint",
        ["barrier", "{a}", "{tmp}/nope.safetensors", *BARRIER[3:]],
        "nope.safetensors",
    ),
    ("checkpoint of another width", [*BARRIER[:-1], "widths=40,32,10"], "does not fit"),
    ("unknown alignment", [*BARRIER, "--align", "magic"], "--align must be"),
    ("unknown split", [*BARRIER, "--split", "valid"], "--split must be test or train"),
    ("unknown data set", [*BARRIER[:4], "nosuch", *BARRIER[5:]], "unknown data set 'nosuch'"),
    ("unknown data option", [*BARRIER, "-d", "bogus=1"], "unknown option(s) ['bogus']"),
    (
        "empty test split",
        [
            "barrier",
            "{a}",
            "{b}",
            "--data",
            "gaussian_mixture",
            "-d",
            "n_test=0",
            "--model",
            "mlp",
            "-o",
            "widths=2,16,3",
        ],
        "has no test examples",
    ),
    ("signals for an image-shaped model", [*BARRIER[:6], "cnn1d"], "does not fit --model cnn1d"),
    (
        "outputs that are not the classes",
        ["barrier", "{c3}", "{c3}", *BARRIER[3:-1], "widths=40,16,3"],
        "10 classes",
    ),
    ("barrier device that is no device", [*BARRIER, "--device", "gpu"], "not a torch device name"),
    (
        "regression targets of another width",
        ["barrier", "{a}", "{b}", "--data", "teacher", "-d", "widths=40,8,1", *BARRIER[5:]],
        "1 regression target",
    ),
]


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("cli")
    out = {"tmp": str(tmp)}
    for key, widths, seed in [
        ("a", [40, 16, 10], 0),
        ("b", [40, 16, 10], 1),
        ("c3", [40, 16, 3], 0),
    ]:
        out[key] = str(save_checkpoint(MLP(widths, seed=seed), tmp / f"{key}.safetensors"))
    return out


def _check(code: int, output: str, message: str) -> None:
    assert code == 2, output
    assert output.startswith("error: ") and output.count("\n") == 1, output
    assert "Traceback" not in output
    assert message in output, output


@pytest.mark.parametrize(("name", "args", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(paths, name, args, message):
    out = runner.invoke(app, [a.format(**paths) for a in args])
    _check(out.exit_code, out.output, message)


@pytest.mark.parametrize("name", ["data of another width", "not an integer"])
def test_bad_input_in_a_real_process(paths, name):
    args = next(c[1] for c in CASES if c[0] == name)
    proc = subprocess.run(
        [sys.executable, "-m", "symlab.cli", *[a.format(**paths) for a in args]],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    assert proc.stdout == ""
    _check(proc.returncode, proc.stderr, next(c[2] for c in CASES if c[0] == name))


def test_unexpected_errors_are_one_line_with_exit_1(monkeypatch):
    import symlab.cli as cli

    def boom(*args, **kwargs):
        raise KeyError("planted")

    monkeypatch.setattr(cli, "build_model", boom)
    out = runner.invoke(app, ["symmetries", "mlp"])
    assert out.exit_code == 1 and out.output.count("\n") == 1
    assert "failed unexpectedly (KeyError" in out.output and "SYMLAB_DEBUG=1" in out.output


def test_no_command_shows_the_help():
    out = runner.invoke(app, [])
    assert out.exit_code == 2 and "symmetries" in out.output and "barrier" in out.output
