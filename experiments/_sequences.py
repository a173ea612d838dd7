"""Sequences of networks for E9: a pair trained together with checkpoints, and iterative
magnitude pruning with fine-tuning (pruned entries held at 0 by the trainer's fixed-entry
masks, the mechanism W-asymmetric layers use)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn

from symlab.train import train_stacked

from ._common import train_config

__all__ = ["finetune_pruned", "loaded", "magnitude_masks", "snapshot", "train_trajectory"]


def snapshot(models: list[nn.Module]) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in models]


def loaded(template: nn.Module, sd: dict[str, torch.Tensor]) -> nn.Module:
    m = copy.deepcopy(template)
    m.load_state_dict(sd)
    return m


def train_trajectory(
    models: list[nn.Module], data: Any, cfg: Any, data_seeds: list[int]
) -> tuple[list[int], list[list[dict[str, torch.Tensor]]], list[Any]]:
    """Train ``models`` together, saving both state_dicts at every checkpoint step."""
    tc = train_config(cfg)
    total = tc.total_steps(data.n_train)
    steps = sorted({max(1, min(total, round(f * total))) for f in cfg.checkpoints})
    snaps, states, start, results = [], None, 0, []
    for step in steps:
        results = train_stacked(
            models,
            data,
            tc,
            data_seeds=data_seeds,
            start_step=start,
            stop_at=step,
            optimizer_states=states,
        )
        states = [r.optimizer_state for r in results]
        snaps.append(snapshot(models))
        start = step
    return steps, snaps, results


def magnitude_masks(
    model: nn.Module, masks: dict[str, torch.Tensor], fraction: float
) -> dict[str, torch.Tensor]:
    """Remove ``fraction`` of each Linear weight's surviving entries (smallest |w| first)."""
    out = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear):
            continue
        w = mod.weight.detach().abs()
        old = masks.get(name, torch.ones_like(w, dtype=torch.bool))
        alive = int(old.sum())
        k = round(fraction * alive)
        new = old.clone()
        if k > 0:
            scores = torch.where(old, w, torch.full_like(w, float("inf")))
            drop = torch.topk(scores.flatten(), k, largest=False).indices
            new.view(-1)[drop] = False
        out[name] = new
    return out


def finetune_pruned(
    models: list[nn.Module], masks: list[dict[str, torch.Tensor]], data: Any, cfg: Any,
    data_seeds: list[int],
) -> list[nn.Module]:  # fmt: skip
    """Zero the pruned weights and fine-tune the rest (pruned entries held at 0 by the
    trainer's fixed-entry masks); returns plain models (no mask buffers)."""
    work = [copy.deepcopy(m) for m in models]
    for m, ms in zip(work, masks, strict=True):
        for name, mask in ms.items():
            mod = m.get_submodule(name)
            with torch.no_grad():
                mod.weight.mul_(mask)
            mod.register_buffer("mask", mask.clone())
    tc = dataclasses.replace(train_config(cfg), epochs=cfg.finetune_epochs, lr=cfg.finetune_lr)
    train_stacked(work, data, tc, data_seeds=data_seeds)
    out = []
    for plain, trained in zip(models, work, strict=True):
        sd = {k: v for k, v in trained.state_dict().items() if not k.endswith(".mask")}
        out.append(loaded(plain, sd))
    return out
