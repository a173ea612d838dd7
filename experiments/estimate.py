"""Estimate how long an experiment's setting takes on 2 cores without running it.

One job of the setting's largest config (most parameters) runs with one training epoch (one
fine-tuning epoch, the first curve budget only) on a single thread. Its CPU time is split into
training (:func:`symlab.train.train_stacked`), curve training
(:func:`symlab.connect.bezier_curve`) and the rest (alignment, interpolation, ...); training is
scaled to the setting's epochs, curves to its total curve steps, and the other configs by their
parameter count. The sweep's CPU time over two single-thread workers is the estimate for an
idle 2-core machine (a loaded machine takes several times longer)::

    python -m experiments.estimate e1 full
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

import experiments

__all__ = ["estimate"]

INPUTS = {"mnist1d": (40, 10), "digits": (64, 10)}


def _parameters(cfg: Any) -> int:
    """Parameters of the MLP a config describes (``hidden`` or ``width`` × ``depth``)."""
    d_in, d_out = INPUTS.get(getattr(cfg, "data", "mnist1d"), (40, 10))
    hidden = list(cfg.hidden) if hasattr(cfg, "hidden") else [cfg.width] * cfg.depth
    widths = [d_in, *hidden, d_out]
    return sum(a * b + b for a, b in itertools.pairwise(widths))


def _timed(fn: Callable[..., Any], into: dict[str, float], key: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            into[key] += time.process_time() - start

    return wrapper


def estimate(name: str, setting: str = "full") -> dict[str, Any]:
    """Time one reduced job of ``name``'s ``setting`` and extrapolate (see the module docstring)."""
    import symlab.connect
    import symlab.train.ensemble as ensemble

    exp = experiments.get(name)
    sweep = exp.sweep(setting)
    configs, seeds = sweep.configs(), len(sweep.seed_list())
    big = max(configs, key=_parameters)
    spent = {"train": 0.0, "curve": 0.0}
    original, curve = ensemble.train_stacked, symlab.connect.bezier_curve
    patched = [
        m for m in list(sys.modules.values()) if getattr(m, "train_stacked", None) is original
    ]
    for m in patched:
        m.train_stacked = _timed(original, spent, "train")  # type: ignore[attr-defined]
    symlab.connect.bezier_curve = _timed(curve, spent, "curve")
    reduced = dataclasses.replace(big, epochs=1)
    rounds = getattr(big, "prune_rounds", 0)
    if hasattr(big, "finetune_epochs"):
        reduced = dataclasses.replace(reduced, finetune_epochs=1)
    if hasattr(big, "curve_steps"):
        reduced = dataclasses.replace(reduced, curve_steps=big.curve_steps[:1])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.process_time()
        exp.run(reduced, 0)
        total = time.process_time() - start
    finally:
        torch.set_num_threads(threads)
        for m in patched:
            m.train_stacked = original  # type: ignore[attr-defined]
        symlab.connect.bezier_curve = curve
    other = total - spent["train"] - spent["curve"]
    epochs = big.epochs + rounds * getattr(big, "finetune_epochs", 0)
    train = spent["train"] * epochs / (1 + rounds)
    curves = spent["curve"] * (sum(big.curve_steps) / big.curve_steps[0]) if spent["curve"] else 0.0
    job = train + curves + other
    cpu = sum(job * _parameters(c) / _parameters(big) for c in configs) * seeds
    return {
        "experiment": name,
        "setting": setting,
        "jobs": len(configs) * seeds,
        "largest_job_cpu_s": round(job),
        "sweep_cpu_min": round(cpu / 60, 1),
        "two_cores_min": round(cpu / 120, 1),
    }


if __name__ == "__main__":
    print(json.dumps(estimate(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "full")))
