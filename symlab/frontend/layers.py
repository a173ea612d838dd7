"""torch modules read with the converter's context (the axis their input's units lie on):
``nn.PReLU``, ``nn.ConvTranspose1d/2d/3d``, ``nn.PixelShuffle``, ``nn.PixelUnshuffle``, and
their functional twins ``F.pixel_shuffle`` / ``F.pixel_unshuffle``.

:data:`LAYER_MACROS` is merged into :data:`symlab.frontend.macros.MACROS` (exact types only: a
subclass is traced into).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from symlab.frontend.readers import arg, reads
from symlab.frontend.readers_params import emit_prelu
from symlab.graph.archgraph import ParamSpec

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter

__all__ = ["LAYER_MACROS", "state_key"]


def state_key(target: str, name: str) -> str:
    """The ``state_dict`` key of parameter ``name`` of the module at ``target``.

    >>> state_key("net.act", "weight"), state_key("", "weight")
    ('net.act.weight', 'weight')
    """
    return f"{target}.{name}" if target else name


def _prelu(cv: Converter, node: fx.Node, target: str, mod: nn.Module, ins: list[str]) -> None:
    assert isinstance(mod, nn.PReLU)
    shape = tuple(int(s) for s in mod.weight.shape)
    emit_prelu(cv, node, target or "@root", ins[0], state_key(target, "weight"), "param", shape)


def _conv_transpose(cv: Converter, node: fx.Node, target: str, mod: nn.Module,
                    ins: list[str]) -> None:  # fmt: skip
    assert isinstance(mod, nn.modules.conv._ConvTransposeNd)
    name, x = target or "@root", ins[0]
    x = cv.on_axis(node, x, 1)
    k, g = tuple(mod.kernel_size), int(mod.groups)
    roles = ("in", "out") if g == 1 else ("none", "none")
    params = [ParamSpec("weight", tuple(mod.weight.shape), (*roles, *("none",) * len(k)))]
    keys = {"weight": state_key(target, "weight")}
    if mod.bias is not None:
        params.append(ParamSpec("bias", tuple(mod.bias.shape), (roles[1],)))
        keys["bias"] = state_key(target, "bias")
    cv.emit(node, name, "conv_transpose", [x], 1, params, groups=g, kernel=k,
            bias=mod.bias is not None, param_keys=keys)  # fmt: skip


def _shuffle(op: str) -> Callable[..., None]:
    def read(cv: Converter, node: fx.Node, target: str, mod: nn.Module, ins: list[str]) -> None:
        factor = mod.upscale_factor if op == "pixel_shuffle" else mod.downscale_factor
        _emit_shuffle(cv, node, target or "@root", ins[0], op, int(factor))

    return read


def _emit_shuffle(cv: Converter, node: fx.Node, name: str, x: str, op: str, r: int) -> None:
    """Channels on axis -3 (``(*, C, H, W)``), blocks of ``r²`` consecutive channels."""
    x = cv.on_axis(node, x, -3)
    cv.emit(node, name, op, [x], len(cv.shape[x]) - 3, factor=r)


@reads(F.pixel_shuffle, F.pixel_unshuffle)
def _shuffle_fn(cv: Converter, node: fx.Node) -> bool:
    x = cv.name.get(arg(node, 0, "input"))  # type: ignore[arg-type]
    r = arg(node, 1, "upscale_factor", node.kwargs.get("downscale_factor"))
    if x is None or not isinstance(r, int):
        return False
    op = "pixel_shuffle" if node.target is F.pixel_shuffle else "pixel_unshuffle"
    _emit_shuffle(cv, node, f"@{node.name}", x, op, r)
    return True


LAYER_MACROS: dict[type[nn.Module], Callable[..., Any]] = {
    nn.PReLU: _prelu,
    nn.ConvTranspose1d: _conv_transpose,
    nn.ConvTranspose2d: _conv_transpose,
    nn.ConvTranspose3d: _conv_transpose,
    nn.PixelShuffle: _shuffle("pixel_shuffle"),
    nn.PixelUnshuffle: _shuffle("pixel_unshuffle"),
}
"""Module type → reader ``(converter, node, target, module, inputs)``."""
