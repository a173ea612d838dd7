"""Experiments and sweeps: a typed config, a function of (config, seed), and a grid over both.

An *experiment* is a function ``run(config, seed) -> dict`` of a frozen dataclass ``config``
returning a JSON-able result record. A *sweep* is the cross product of config values (a grid
over some of the dataclass's fields, the others taken from a base config) × seeds; every point
is a *job* with a deterministic id (SHA-256 of the experiment name, the config and the seed —
never Python's salted ``hash``), so the same sweep run again finds its finished jobs.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Cfg:
...     width: int = 8
...     lr: float = 0.1
>>> sweep = Sweep("demo", run=lambda c, s: {"w": c.width}, base=Cfg(), grid={"width": [8, 16]},
...               seeds=2)
>>> [(j.config.width, j.seed) for j in sweep.jobs()]
[(8, 0), (8, 1), (16, 0), (16, 1)]
>>> sweep.jobs()[0].id == Sweep("demo", run=print, base=Cfg(), grid={"width": [8]}).jobs()[0].id
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from symlab.errors import SymlabError

__all__ = [
    "Experiment",
    "Job",
    "Report",
    "RunnerError",
    "Setting",
    "Sweep",
    "canonical_json",
    "config_dict",
    "job_id",
]

RunFn = Callable[[Any, int], Mapping[str, Any]]


class RunnerError(SymlabError):
    """A sweep or experiment is ill-defined (bad config, grid, seeds or setting name).

    >>> issubclass(RunnerError, SymlabError)
    True
    """


def _plain(obj: Any) -> Any:
    """JSON-friendly form of config values: tuples become lists, dict keys strings."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return obj.item()
    return obj


def config_dict(config: Any) -> dict[str, Any]:
    """The fields of a dataclass config as a JSON-able dict.

    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class Config:
    ...     width: int = 4
    ...     lr: float = 0.1
    >>> config_dict(Config(width=8))
    {'width': 8, 'lr': 0.1}
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise RunnerError(
            f"an experiment config must be a dataclass instance, got {type(config).__name__}"
        )
    return _plain(config)


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) of ``obj``.

    >>> canonical_json({"b": 1, "a": [1.5, 2]})
    '{"a":[1.5,2],"b":1}'
    """
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), allow_nan=True)


def job_id(experiment: str, config: Any, seed: int) -> str:
    """A 16-hex-digit id of (experiment, config, seed), the same in every process and run.

    >>> @dataclasses.dataclass(frozen=True)
    ... class C:
    ...     a: int = 1
    >>> job_id("x", C(), 0) == job_id("x", C(), 0) != job_id("x", C(), 1)
    True
    """
    payload = canonical_json(
        {"experiment": experiment, "config": config_dict(config), "seed": int(seed)}
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Job:
    """One point of a sweep: a config and a seed.

    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class Config:
    ...     width: int = 4
    >>> job = Job("demo", Config(), seed=0)
    >>> len(job.id), job.id == Job("demo", Config(), 0).id, job.id == Job("demo", Config(), 1).id
    (16, True, False)
    """

    experiment: str
    config: Any
    seed: int

    @property
    def id(self) -> str:
        return job_id(self.experiment, self.config, self.seed)


@dataclass(frozen=True)
class Sweep:
    """The cross product ``grid`` × ``seeds`` of configs derived from ``base``.

    Attributes:
        experiment: the name (also the results folder ``results/<experiment>/``).
        run: ``run(config, seed) -> dict``; must be importable (a module-level function) to
            run in worker processes or on a Dask cluster.
        base: a frozen dataclass instance with the values not swept.
        grid: field name → values; configs are every combination (in the grid's order). A
            list of such mappings sweeps the union of their cross products (duplicates once).
        seeds: a count ``n`` (seeds 0..n-1) or explicit seeds.

    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class Config:
    ...     width: int = 4
    ...     lr: float = 0.1
    >>> def run(config, seed):
    ...     return {"score": config.width + seed}
    >>> sweep = Sweep("demo", run, Config(), grid={"width": [4, 8]}, seeds=2)
    >>> sweep.configs()
    [Config(width=4, lr=0.1), Config(width=8, lr=0.1)]
    >>> [(job.config.width, job.seed) for job in sweep.jobs()]
    [(4, 0), (4, 1), (8, 0), (8, 1)]
    """

    experiment: str
    run: RunFn
    base: Any
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]] = field(
        default_factory=dict
    )
    seeds: int | Sequence[int] = 1

    def __post_init__(self) -> None:
        if not self.experiment or "/" in self.experiment or self.experiment.startswith("."):
            raise RunnerError(f"experiment name {self.experiment!r} is not a valid folder name")
        config_dict(self.base)  # raises unless a dataclass instance
        names = {f.name for f in dataclasses.fields(self.base)}
        for grid in self.grids():
            unknown = sorted(set(grid) - names)
            if unknown:
                raise RunnerError(
                    f"grid fields {unknown} are not fields of {type(self.base).__name__}; "
                    f"valid fields: {sorted(names)}"
                )
            for k, values in grid.items():
                if isinstance(values, str) or not isinstance(values, Iterable) or not list(values):
                    raise RunnerError(f"grid[{k!r}] must be a non-empty list of values")
        if not self.seed_list():
            raise RunnerError("a sweep needs at least one seed")

    def seed_list(self) -> list[int]:
        if isinstance(self.seeds, int):
            if self.seeds < 0:
                raise RunnerError(f"seeds must be >= 0, got {self.seeds}")
            return list(range(self.seeds))
        out = [int(s) for s in self.seeds]
        if any(s < 0 for s in out):
            raise RunnerError(f"seeds must be non-negative integers, got {out}")
        return out

    def grids(self) -> list[Mapping[str, Sequence[Any]]]:
        """The grid as a list of cross products (a single mapping is one product)."""
        return [self.grid] if isinstance(self.grid, Mapping) else list(self.grid)

    def configs(self) -> list[Any]:
        """Every config of the sweep: the union of the grids' cross products, in order."""
        out: dict[str, Any] = {}
        for grid in self.grids():
            keys = list(grid)
            for combo in itertools.product(*(list(grid[k]) for k in keys)):
                cfg = dataclasses.replace(self.base, **dict(zip(keys, combo, strict=True)))
                out.setdefault(canonical_json(config_dict(cfg)), cfg)
        return list(out.values())

    def jobs(self) -> list[Job]:
        return [Job(self.experiment, c, s) for c in self.configs() for s in self.seed_list()]

    def job_ids(self) -> list[str]:
        return [j.id for j in self.jobs()]


@dataclass(frozen=True)
class Setting:
    """A named size of an experiment: base config, grid, seeds and a runtime estimate.

    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class Config:
    ...     width: int = 4
    >>> small = Setting(Config(), grid={"width": [4, 8]}, seeds=3, runtime="1 s")
    >>> exp = Experiment("demo", "A demo", lambda config, seed: {}, {"small": small})
    >>> len(exp.sweep("small").jobs())
    6
    """

    base: Any
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]] = field(
        default_factory=dict
    )
    seeds: int = 1
    runtime: str = ""


@dataclass(frozen=True)
class Report:
    """What an experiment's report produced: a markdown table, files, and the claim's verdict.

    >>> report = Report(table="| width | score |", files=[], claim_held=True, summary="holds")
    >>> report.claim_held, report.files
    (True, [])
    """

    table: str
    files: list[Path]
    claim_held: bool | None
    summary: str = ""


ReportFn = Callable[[list[dict[str, Any]], Path, str], Report]


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its run function, named settings and report.

    Attributes:
        name: short name (``"e2"``), also the results folder.
        title: one line.
        run: ``run(config, seed) -> dict``.
        settings: ``{"small": Setting, "full": Setting, ...}``.
        report: ``report(records, out_dir, setting) -> Report`` (writes figures and summary).
        paper: the published figure or claim it reproduces.

    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class Config:
    ...     width: int = 4
    >>> def run(config, seed):
    ...     return {"score": config.width + seed}
    >>> exp = Experiment("demo", "A demo", run, {"small": Setting(Config(), seeds=2)})
    >>> [job.seed for job in exp.sweep("small").jobs()], len(exp.sweep("small", seeds=5).jobs())
    ([0, 1], 5)
    """

    name: str
    title: str
    run: RunFn
    settings: Mapping[str, Setting]
    report: ReportFn | None = None
    paper: str = ""

    def setting(self, name: str) -> Setting:
        if name not in self.settings:
            raise RunnerError(
                f"experiment {self.name!r} has no setting {name!r}; choose from "
                f"{sorted(self.settings)}"
            )
        return self.settings[name]

    def sweep(self, setting: str = "small", seeds: int | Sequence[int] | None = None) -> Sweep:
        s = self.setting(setting)
        return Sweep(self.name, self.run, s.base, s.grid, s.seeds if seeds is None else seeds)
