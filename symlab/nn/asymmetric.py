"""Asymmetric units that break permutation symmetry on purpose.

Follows Lim, Putterman, Walters, Jegelka, Maron (NeurIPS 2024), "The Empirical Impact of Neural
Parameter Symmetries, or Lack Thereof": the W-asymmetric linear layer ``W_eff = F + D ⊙ W`` and the
σ-asymmetric FiGLU activation ``σ(x) = sigmoid(C x) ⊙ x``. Masks and fixed values are buffers made
from a seed; they never train and symmetry actions never move them.

The same layer also carries *syre* (Ziyin, Xu, Chuang, "Remove Symmetries to Control Model
Expressivity", ICLR 2025; arXiv 2024): ``W_eff = W + κ·N`` with a fixed random ``N`` and no mask
(``D = 1``), i.e. a fixed part ``F`` that is non-zero where ``D = 1``
(:meth:`WAsymLinear.syre_layer`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from symlab.graph.presets import LIM_MLP_PRESET
from symlab.seeding import generator

__all__ = [
    "LIM_MLP_PRESET",
    "FiGLU",
    "WAsymLinear",
    "asym_mask",
    "masked_layer_attrs",
    "setup_masked_parameters",
]


def asym_mask(
    out_features: int, in_features: int, num_fixed: int, seed: int, shared: bool = False
) -> torch.Tensor:
    """0/1 mask ``D`` with exactly ``num_fixed`` zeros (fixed entries) per row, from ``seed``.

    Each row's fixed positions are a uniformly random subset chosen by a seeded generator
    (Lim et al. 2024); ``shared=True`` uses one subset for every row.

    >>> mask = asym_mask(3, 4, num_fixed=2, seed=0)
    >>> tuple(mask.shape), (mask == 0).sum(1).tolist()
    ((3, 4), [2, 2, 2])
    >>> torch.equal(mask, asym_mask(3, 4, num_fixed=2, seed=0))  # seeded
    True
    >>> shared = asym_mask(3, 4, num_fixed=2, seed=0, shared=True)  # one subset for all rows
    >>> bool((shared == shared[0]).all())
    True
    """
    if not 0 <= num_fixed <= in_features:
        raise ValueError(f"num_fixed must be in [0, {in_features}], got {num_fixed}")
    g = generator(seed, 1)
    scores = torch.rand(1 if shared else out_features, in_features, generator=g)
    scores = scores.expand(out_features, in_features)
    fixed_idx = scores.argsort(dim=1)[:, :num_fixed]
    mask = torch.ones(out_features, in_features)
    mask.scatter_(1, fixed_idx, 0.0)
    return mask


def setup_masked_parameters(
    module: nn.Module,
    shape: tuple[int, ...],
    num_fixed: int,
    kappa: float,
    bias: bool,
    seed: int,
    init_seed: int | None,
    shared_mask: bool,
    syre: float = 0.0,
) -> None:
    """Give ``module`` the W-asymmetric parameters of a weight of ``shape`` (out, fan-in dims…):
    buffers ``mask`` (``num_fixed`` zeros per output unit, over the flattened fan-in) and
    ``fixed`` (``(1 − D) · κ · N(0, 1) + D · syre · N'(0, 1)``) from ``seed``; ``weight`` uniform
    in ±1/√fan_in (zero on fixed entries) and ``bias`` from ``init_seed`` (torch's global RNG when
    None), like torch's own layers. Also sets ``num_fixed``, ``kappa``, ``syre`` and
    ``shared_mask`` attributes. ``syre > 0`` adds Ziyin et al.'s fixed random offset to the
    trainable entries (``W_eff = F + D ⊙ W`` with ``F ≠ 0`` where ``D = 1``)."""
    out, fan_in = shape[0], math.prod(shape[1:])
    module.num_fixed, module.kappa = int(num_fixed), float(kappa)
    module.syre = float(syre)
    module.shared_mask = bool(shared_mask)
    mask = asym_mask(out, fan_in, module.num_fixed, seed, module.shared_mask).view(shape)
    fixed = (1.0 - mask) * module.kappa * torch.randn(shape, generator=generator(seed, 2))
    if module.syre != 0.0:
        fixed = fixed + mask * module.syre * torch.randn(shape, generator=generator(seed, 5))
    module.register_buffer("mask", mask)
    module.register_buffer("fixed", fixed)
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    g = None if init_seed is None else generator(init_seed, 3)
    module.weight = nn.Parameter((torch.rand(shape, generator=g) * 2 - 1) * bound * mask)
    if bias:
        module.bias = nn.Parameter((torch.rand(out, generator=g) * 2 - 1) * bound)
    else:
        module.register_parameter("bias", None)


def masked_layer_attrs(module: nn.Module) -> dict[str, bool]:
    """What the buffers of a W-asymmetric layer really hold, for its symmetry rule: whether the
    mask ``D`` has zeros (``masked``), ``F`` has non-zero entries (``fixed_nonzero``) and
    whether some lie on trainable entries (``fixed_on_trainable``, syre). Read from the buffers,
    not from ``num_fixed``/``kappa``, so a model that edits them after construction is still
    derived soundly (fail closed).

    >>> layer = WAsymLinear(4, 3, num_fixed=0, kappa=0.0, seed=0)
    >>> masked_layer_attrs(layer)
    {'masked': False, 'fixed_nonzero': False, 'fixed_on_trainable': False}
    >>> with torch.no_grad():
    ...     _ = layer.fixed.fill_(1.0)  # an edited buffer: scalings are no longer symmetries
    >>> masked_layer_attrs(layer)["fixed_nonzero"]
    True
    """
    mask, fixed = module.mask, module.fixed
    return {
        "masked": bool((mask == 0).any()),
        "fixed_nonzero": bool((fixed != 0).any()),
        "fixed_on_trainable": bool(((fixed != 0) & (mask != 0)).any()),
    }


class WAsymLinear(nn.Module):
    """W-asymmetric linear layer, ``y = (F + D ⊙ W) x + b`` (Lim et al. 2024).

    Args:
        in_features, out_features: sizes.
        num_fixed: fixed (non-trainable) input positions per output row.
        kappa: scale of the fixed values, ``F = (1 - D) · κ · N(0, 1)``; κ = 0 keeps only the mask.
        bias: whether to learn a bias.
        seed: seeds the mask and the fixed values (part of the architecture: runs that are to
            be merged share it).
        init_seed: seeds the trainable initialisation; None draws from torch's global RNG,
            like ``nn.Linear``.
        shared_mask: use the same fixed positions in every row (units then differ only by
            their fixed values; with κ = 0 they are interchangeable again).
        syre: scale of a fixed random offset on the trainable entries too (Ziyin et al.'s
            syre, ``F = D · syre · N'``); 0 (default) is Lim et al.'s layer. See :meth:`syre_layer`.

    Only the entries of ``weight`` where ``mask == 1`` influence the output, so the others get
    zero gradient; they are initialised to zero so that ``weight`` itself is the trainable part.

    >>> layer = WAsymLinear(8, 4, num_fixed=3, kappa=1.0, seed=0)
    >>> int((layer.mask == 0).sum(1).unique().item())
    3
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        num_fixed: int,
        kappa: float = 1.0,
        bias: bool = True,
        seed: int = 0,
        init_seed: int | None = None,
        shared_mask: bool = False,
        syre: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        shape = (out_features, in_features)
        setup_masked_parameters(
            self, shape, num_fixed, kappa, bias, seed, init_seed, shared_mask, syre
        )

    @classmethod
    def syre_layer(
        cls,
        in_features: int,
        out_features: int,
        kappa: float = 1.0,
        bias: bool = True,
        seed: int = 0,
        init_seed: int | None = None,
    ) -> WAsymLinear:
        """Ziyin et al.'s *syre* layer ``y = (W + κ·N) x + b``: no mask (``D = 1``), a fixed
        random ``N`` from ``seed`` (the paper's code calls this model ``symmetry3``).

        Every weight trains, so the layer can compute any linear map; but a permutation must
        keep ``N`` in place, so for random ``N`` the derived permutation group is trivial.

        >>> layer = WAsymLinear.syre_layer(4, 3, kappa=0.5, seed=0)
        >>> bool(layer.mask.all()), layer.num_fixed, layer.syre, bool(layer.fixed.abs().min() > 0)
        (True, 0, 0.5, True)
        """
        return cls(in_features, out_features, 0, 0.0, bias, seed, init_seed, syre=kappa)

    def effective_weight(self) -> torch.Tensor:
        """``F + D ⊙ W``, the weight the layer actually applies."""
        return self.fixed + self.mask * self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"num_fixed={self.num_fixed}, kappa={self.kappa}, bias={self.bias is not None}, "
            f"shared_mask={self.shared_mask}" + (f", syre={self.syre}" if self.syre else "")
        )


class FiGLU(nn.Module):
    """σ-asymmetric activation ``σ(x) = sigmoid(C x) ⊙ x`` with a fixed random ``C`` (Lim et al.).

    ``C`` is an ``n × n`` buffer drawn from ``N(0, scale² / n)`` with the given seed.

    >>> act = FiGLU(4, seed=0); tuple(act(torch.ones(2, 4)).shape)
    (2, 4)
    """

    def __init__(self, num_features: int, seed: int = 0, scale: float = 1.0) -> None:
        super().__init__()
        self.num_features = num_features
        c = torch.randn(num_features, num_features, generator=generator(seed, 4))
        self.register_buffer("gate", c * (scale / math.sqrt(max(num_features, 1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(F.linear(x, self.gate)) * x

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}"
