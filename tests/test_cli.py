"""The symlab CLI through typer's CliRunner: output, exit codes and one-line errors."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import experiments
from symlab.cli import app
from symlab.nn import MLP
from symlab.runner import Experiment, Report, Setting
from symlab.train import save_checkpoint

runner = CliRunner()


@dataclass(frozen=True)
class ToyConfig:
    n: int = 1
    fail: bool = False


def toy_run(cfg: ToyConfig, seed: int) -> dict:
    if cfg.fail and seed == 1:
        raise RuntimeError("planted")
    return {"square": cfg.n**2 + seed}


def toy_report(records: list[dict], out_dir: Path, setting: str) -> Report:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"toy_{setting}.md"
    table = "\n".join(
        f"n={r['config']['n']} seed={r['seed']}: {r['result']['square']}" for r in records
    )
    path.write_text(table)
    return Report(table, [path], True, "claim held")


EXPERIMENT = Experiment(
    "toy",
    "a toy",
    toy_run,
    {
        "small": Setting(ToyConfig(), {"n": [1, 2]}, seeds=2, runtime="instant"),
        "full": Setting(ToyConfig(fail=True), {"n": [3]}, seeds=2),
    },
    toy_report,
    paper="none",
)


def make_cnn(channels: int = 4) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, channels, 3),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.LazyLinear(5),
    )


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(experiments.MODULES, "toy", __name__)


def test_symmetries_of_a_zoo_model():
    out = runner.invoke(app, ["symmetries", "mlp", "-o", "widths=40,16,10"])
    assert out.exit_code == 0, out.output
    assert "S_16" in out.output and "P[layers.0.linear]" in out.output


def test_symmetries_of_a_factory_with_input_shape():
    out = runner.invoke(app, ["symmetries", f"{__name__}:make_nonlazy", "--input-shape", "3,6,6"])
    assert out.exit_code == 0, out.output
    assert "S_4" in out.output


def make_nonlazy(channels: int = 4) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, channels, 3),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(channels * 16, 5),
    )


def test_experiment_list_names_e2():
    out = runner.invoke(app, ["experiment", "list"])
    assert out.exit_code == 0
    starts = [line.split()[0] for line in out.output.splitlines() if not line.startswith(" ")]
    assert starts[:3] == ["e1", "e2", "e3"]


def test_experiment_run_report_and_resume(toy, tmp_path):
    args = ["experiment", "run", "toy", "--small", "--results", str(tmp_path), "--workers", "1"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "n=2 seed=1: 5" in out.output and "4 jobs: 0 already done" in out.output
    assert (tmp_path / "toy" / "toy_small.md").exists()
    again = runner.invoke(app, args)
    assert "4 jobs: 4 already done, 0 run" in again.output
    rep = runner.invoke(app, ["experiment", "report", "toy", "--results", str(tmp_path)])
    assert rep.exit_code == 0 and "n=1 seed=0: 1" in rep.output


def test_experiment_run_with_a_failing_job_exits_1(toy, tmp_path):
    args = ["experiment", "run", "toy", "--full", "--results", str(tmp_path), "--workers", "1"]
    out = runner.invoke(app, args)
    assert out.exit_code == 1
    assert "1 job(s) failed (first: RuntimeError: planted)" in out.output
    assert "run the same command again" in out.output
    assert "n=3 seed=0: 9" in out.output  # the report of the jobs that finished


def test_experiment_run_on_dask(toy, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        out = runner.invoke(
            app,
            [
                "experiment",
                "run",
                "toy",
                "--seeds",
                "1",
                "--scheduler",
                cluster.scheduler_address,
                "--results",
                str(tmp_path),
            ],
        )
    assert out.exit_code == 0, out.output
    assert "2 jobs: 0 already done, 2 run (2 ok" in out.output


def test_barrier_between_checkpoints(tmp_path):
    paths = []
    for seed in (0, 1):
        net = MLP([40, 16, 10], seed=seed)
        paths.append(str(save_checkpoint(net, tmp_path / f"m{seed}.safetensors")))
    base = ["barrier", *paths, "--data", "mnist1d", "--model", "mlp", "-o", "widths=40,16,10"]
    values = {}
    for align in ("none", "weight", "activation"):
        out = runner.invoke(app, [*base, "--align", align, "--n-alphas", "5"])
        assert out.exit_code == 0, out.output
        assert f"alignment: {align}" in out.output
        line = next(ln for ln in out.output.splitlines() if ln.startswith("loss barrier:"))
        values[align] = float(line.split()[2])
        assert line.split()[3] == "nats"
    assert all(v >= 0 for v in values.values())


def test_barrier_errors_are_actionable(tmp_path):
    net = MLP([40, 16, 10], seed=0)
    good = str(save_checkpoint(net, tmp_path / "a.safetensors"))
    base = ["--data", "mnist1d", "--model", "mlp"]
    missing = runner.invoke(
        app, ["barrier", good, str(tmp_path / "nope.safetensors"), *base, "-o", "widths=40,16,10"]
    )
    assert missing.exit_code == 2 and "nope.safetensors" in missing.output
    wrong = runner.invoke(app, ["barrier", good, good, *base, "-o", "widths=40,32,10"])
    assert wrong.exit_code == 2 and "Traceback" not in wrong.output
    bad_align = runner.invoke(app, ["barrier", good, good, *base, "--align", "magic"])
    assert bad_align.exit_code == 2 and "--align must be" in bad_align.output


def test_barrier_prints_units(tmp_path):
    paths = [str(save_checkpoint(MLP([40, 16, 10], seed=s), tmp_path / f"{s}.safetensors"))
             for s in (0, 1)]  # fmt: skip
    args = ["barrier", *paths, "--data", "mnist1d", "--model", "mlp", "-o", "widths=40,16,10"]
    out = runner.invoke(app, [*args, "--n-alphas", "3", "--align", "none", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    lines = {ln.split(":")[0]: ln for ln in out.output.splitlines()}
    assert "percentage points" in lines["error barrier"]
    assert lines["relative accuracy drop"].split()[4] == "%"
    assert "nats" in lines["loss barrier"] and "nats" in lines["weighted loss barrier"]
    assert "%" in lines["accuracy"] and "1000 examples" in out.output
    for line in out.output.splitlines():  # every number is followed by its unit
        for m in re.finditer(r"(?<![\w.\-=])-?\d+\.\d+(?![\d.])", line):
            rest = line[m.end() :].lstrip()
            assert rest.startswith(("nats", "%", "percentage points")), (line, m.group())


def test_verbose_logs_the_derivation():
    out = runner.invoke(app, ["-v", "symmetries", "mlp", "-o", "widths=4,6,2"])
    assert out.exit_code == 0, out.output
    assert "symlab.api: derived the symmetry group of MLP" in out.output
    logger = logging.getLogger("symlab")  # and logging is left as it was
    assert logger.level == logging.NOTSET
    assert all(isinstance(h, logging.NullHandler) for h in logger.handlers)


def test_symmetries_save(tmp_path):
    path = tmp_path / "g.safetensors"
    out = runner.invoke(app, ["symmetries", "mlp", "-o", "widths=4,6,2", "--save", str(path)])
    assert out.exit_code == 0, out.output
    import symlab as sl

    assert sl.io.load_group(path, model=MLP([4, 6, 2])).order == 720
