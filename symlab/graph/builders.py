"""Builders for architecture graphs, with integer or sympy widths.

``mlp([d, n, m, k])`` is the graph of an MLP with input ``d``, hidden widths ``n, m`` and output
``k``. Node names are the ``state_dict`` prefixes of the module :meth:`ArchGraph.build` returns:
hidden block ``i`` is ``layers.{i}.linear`` (then ``.norm``, ``.act``, ``.add``), the last
linear layer is ``head``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from symlab.errors import WidthError
from symlab.graph.activations import ACTIVATION_NAMES
from symlab.graph.archgraph import ArchGraph
from symlab.graph.presets import LIM_MLP_PRESET
from symlab.graph.widths import Width, check_width, is_concrete
from symlab.seeding import child_seed

__all__ = ["mlp"]

NORMS = {
    None: None,
    "none": None,
    "layernorm": "layernorm",
    "ln": "layernorm",
    "batchnorm": "batchnorm",
    "bn": "batchnorm",
}


def _per_layer(value: Any, count: int, what: str) -> list[Any]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        return [value] * count
    if len(value) != count:
        raise ValueError(f"{what} needs {count} entries (one per layer), got {len(value)}")
    return list(value)


def mlp(
    widths: Sequence[Width],
    activation: str | Sequence[str] = "relu",
    *,
    bias: bool = True,
    norm: str | None = None,
    residual: bool = False,
    asym: dict[str, Any] | str | None = None,
    dropout: float = 0.0,
    norm_eps: float = 1e-5,
    mask_seed: int = 0,
) -> ArchGraph:
    """The graph of a multilayer perceptron.

    Args:
        widths: ``[d_in, h_1, …, h_L, d_out]``; ints or sympy symbols/expressions.
        activation: a name from :data:`symlab.graph.activations.ACTIVATION_NAMES` or ``"figlu"``
            (Lim et al.'s σ-asymmetric gate), or one name per hidden layer.
        bias: learn biases in every linear layer.
        norm: ``None``, ``"layernorm"`` or ``"batchnorm"`` after each hidden linear layer.
        residual: add a skip connection around each hidden block whose input and output
            widths are equal (``h_{i+1} = h_i + block(h_i)``).
        asym: W-asymmetric linear layers (Lim et al. 2024): ``{"num_fixed": int | per-layer,
            "kappa": float | per-layer, "shared_mask": bool, "syre": float | per-layer}`` for
            every linear layer (``syre``: Ziyin et al.'s fixed random offset ``W + syre·N`` on
            the trainable entries, default 0), or ``"lim"`` for their preset (needs exactly
            three hidden layers).
        dropout: dropout probability after each activation (0 adds no node).
        norm_eps: epsilon of the normalisation layers.
        mask_seed: seed of the asymmetric masks and FiGLU gates (architecture, not init).

    >>> import sympy as sp
    >>> d, n, m, k = sp.symbols("d n m k", positive=True, integer=True)
    >>> len(mlp([d, n, m, k], activation="tanh"))
    7
    """
    if len(widths) < 2:
        raise WidthError(f"an MLP needs at least input and output widths, got {list(widths)}")
    ws = [check_width(w, f"widths[{i}]") for i, w in enumerate(widths)]
    n_hidden = len(ws) - 2
    acts = _per_layer(activation, n_hidden, "activation")
    for a in acts:
        if a not in ACTIVATION_NAMES and a != "figlu":
            raise ValueError(
                f"unknown activation {a!r}; choose from {[*ACTIVATION_NAMES, 'figlu']}"
            )
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose from None, 'layernorm', 'batchnorm'")
    norm_op = NORMS[norm]
    asym_cfg = _asym_config(asym, len(ws) - 1, ws)

    g = ArchGraph()
    prev = g.add("input", "input", width=ws[0]).name
    for i in range(n_hidden + 1):
        is_head = i == n_hidden
        name = "head" if is_head else f"layers.{i}.linear"
        block_in = prev
        if asym_cfg is None:
            prev = g.add(name, "linear", [prev], width=ws[i + 1], bias=bias).name
        else:
            num_fixed, kappa, shared, syre = asym_cfg[i]
            extra = {"syre": syre} if syre else {}
            prev = g.add(
                name,
                "wasym_linear",
                [prev],
                width=ws[i + 1],
                bias=bias,
                num_fixed=num_fixed,
                kappa=kappa,
                shared_mask=shared,
                mask_seed=child_seed(mask_seed, i),
                **extra,
            ).name
        if is_head:
            break
        if norm_op is not None:
            prev = g.add(f"layers.{i}.norm", norm_op, [prev], eps=norm_eps).name
        if acts[i] == "figlu":
            if not is_concrete(ws[i + 1]):
                raise WidthError("FiGLU needs integer widths (its gate matrix is concrete)")
            prev = g.add(
                f"layers.{i}.act", "figlu", [prev], gate_seed=child_seed(mask_seed, 1000 + i)
            ).name
        else:
            prev = g.add(f"layers.{i}.act", "activation", [prev], fn=acts[i]).name
        if dropout > 0:
            prev = g.add(f"layers.{i}.drop", "dropout", [prev], p=dropout).name
        if residual and i > 0 and ws[i] == ws[i + 1]:
            prev = g.add(f"layers.{i}.add", "add", [block_in, prev]).name
    g.add("output", "output", [prev])
    g.validate()
    return g


def _asym_config(
    asym: dict[str, Any] | str | None, n_layers: int, ws: list[Width]
) -> list[tuple[int, float, bool, float]] | None:
    if asym is None:
        return None
    if not all(is_concrete(w) for w in ws):
        raise WidthError("W-asymmetric layers need integer widths (their masks are concrete)")
    if asym == "lim":
        asym = {"num_fixed": LIM_MLP_PRESET["num_fixed"], "kappa": LIM_MLP_PRESET["kappa"]}
        if n_layers != 4:
            raise ValueError("asym='lim' is Lim et al.'s 3-hidden-layer preset; give 5 widths")
    if not isinstance(asym, dict) or "num_fixed" not in asym:
        raise ValueError("asym must be None, 'lim' or {'num_fixed': ..., 'kappa': ...}")
    nf = _per_layer(asym["num_fixed"], n_layers, "asym['num_fixed']")
    kappa = _per_layer(asym.get("kappa", 1.0), n_layers, "asym['kappa']")
    syre = _per_layer(asym.get("syre", 0.0), n_layers, "asym['syre']")
    out = []
    for i in range(n_layers):
        k = int(nf[i])
        if not 0 <= k <= int(ws[i]):
            raise ValueError(f"layer {i}: num_fixed={k} must lie in [0, {ws[i]}] (its inputs)")
        shared = bool(asym.get("shared_mask", False))
        out.append((k, float(kappa[i]), shared, float(syre[i])))
    return out
