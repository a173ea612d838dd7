"""N models of one architecture held as stacked tensors, with a vectorised forward.

Parameters and buffers are stacked with :func:`torch.func.stack_module_state` (leading axis =
model). Two forwards:

- ``"fast"``: for chains of ``Linear``/``WAsymLinear`` layers and elementwise activations (an
  ``nn.Sequential``, or any module whose leaves run in registration order), each layer is one
  batched matmul (:func:`~symlab.train.stacked_linear.stacked_linear`, ``torch.baddbmm`` over the
  stacked ``[N, out, in]`` weights, with a following ReLU fused in), so forward and backward
  are a handful of large kernels.
- ``"vmap"``: the generic fallback for any module, ``vmap(functional_call)``.

Either way the stacked tensors are ordinary autograd leaves, so ``loss.backward()`` and one
optimizer over them train all N models at once. The fast path is used only after it reproduces
the real module's outputs on probe inputs. Training a fast-path chain of linear layers and ReLUs
with cross-entropy goes one step further, past autograd altogether
(:class:`~symlab.train.stacked_chain.ChainStep`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from symlab.errors import ArchitectureMismatchError, TrainingError
from symlab.nn.asymmetric import WAsymLinear

from .checks import trainable_masks
from .stacked_linear import stacked_linear

__all__ = ["ELEMENTWISE", "METHODS", "StackedModels", "chain_layers"]

METHODS: tuple[str, ...] = ("auto", "fast", "vmap")

#: Parameter-free activations applied elementwise (safe on any leading shape).
ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.Softplus,
    nn.Identity,
)


def chain_layers(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The leaf modules of ``model`` in registration order, if all are fast-path layers.

    Returns ``None`` unless every leaf is ``nn.Linear``, :class:`WAsymLinear` or an
    :data:`ELEMENTWISE` activation, at least one is linear, and every parameter and buffer of
    the model belongs to a linear leaf. Whether the leaves really run as a chain is checked
    numerically by :class:`StackedModels`.

    >>> from torch import nn
    >>> [n for n, _ in chain_layers(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))]
    ['0', '1', '2']
    >>> chain_layers(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))) is None
    True
    """
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    owned: set[str] = set()
    for name, mod in leaves:
        if type(mod) in (nn.Linear, WAsymLinear):
            owned.update(f"{name}.{k}" for k, _ in mod.named_parameters())
            owned.update(f"{name}.{k}" for k, _ in mod.named_buffers())
        elif type(mod) not in ELEMENTWISE:
            return None
    names = {k for k, _ in model.named_parameters()} | {k for k, _ in model.named_buffers()}
    if not owned or names != owned:
        return None
    return leaves


def _signature(model: nn.Module) -> list[tuple[str, str, tuple[int, ...], torch.dtype]]:
    sig = [(k, "param", tuple(v.shape), v.dtype) for k, v in model.named_parameters()]
    sig += [(k, "buffer", tuple(v.shape), v.dtype) for k, v in model.named_buffers()]
    sig += [(k, type(m).__name__, (), torch.float32) for k, m in model.named_modules()]
    return sig


def check_same_architecture(models: Sequence[nn.Module]) -> None:
    """Raise :class:`ArchitectureMismatchError` unless all models share names, shapes, types."""
    if not models:
        raise TrainingError("no models to train: pass at least one model or seed")
    ref = _signature(models[0])
    for i, m in enumerate(models[1:], start=1):
        sig = _signature(m)
        if sig != ref:
            diff = next((a, b) for a, b in zip([*ref, None], [*sig, None], strict=False) if a != b)
            raise ArchitectureMismatchError(
                f"model {i} differs from model 0 at {diff[1]!r} (model 0 has {diff[0]!r}); "
                "an ensemble needs one architecture — build every member with the same factory"
            )


class StackedModels:
    """``models`` (same architecture) as stacked leaf tensors; see the module docstring.

    Args:
        models: the members; :meth:`write_back` copies trained values into them.
        method: ``"fast"``, ``"vmap"`` or ``"auto"`` (fast where it applies).
        probe: example inputs ``[b, ...]`` used to verify the fast path.

    >>> from torch import nn
    >>> models = [nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)) for _ in range(3)]
    >>> st = StackedModels(models)
    >>> tuple(st.forward(torch.randn(3, 5, 3)).shape)  # [N, B, ...] in, [N, B, ...] out
    (3, 5, 2)
    """

    def __init__(
        self, models: Sequence[nn.Module], method: str = "auto", probe: torch.Tensor | None = None
    ) -> None:
        if method not in METHODS:
            raise TrainingError(f"method must be one of {list(METHODS)}, got {method!r}")
        check_same_architecture(models)
        self.models = list(models)
        self.n = len(self.models)
        params, buffers = stack_module_state(self.models)
        self.params: dict[str, torch.Tensor] = dict(params)
        self.buffers: dict[str, torch.Tensor] = dict(buffers)
        self._chain = chain_layers(self.models[0]) if method != "vmap" else None
        self.method = "vmap"
        if self._chain is not None and probe is not None and self._use_fast(probe):
            self.method = "fast"
        elif method == "fast":
            raise TrainingError(
                f"the fast path needs a chain of Linear/WAsymLinear layers and elementwise "
                f"activations on flat inputs; {type(self.models[0]).__name__} is not one — use "
                "method='vmap' or 'auto'"
            )
        if self.method == "vmap":
            self._base = copy.deepcopy(self.models[0]).to("meta")
            self._vmapped = vmap(self._call_one, in_dims=(0, 0, 0), randomness="different")

    def _use_fast(self, probe: torch.Tensor) -> bool:
        """Whether the chain forward reproduces the real modules on ``probe`` (flat inputs)."""
        if probe.ndim != 2:
            return False
        with torch.no_grad():
            got = self._chain_forward(probe.unsqueeze(0).expand(self.n, *probe.shape))
            for i in sorted({0, self.n - 1}):
                was = self.models[i].training
                want = self.models[i].train()(probe)
                self.models[i].train(was)
                if not isinstance(want, torch.Tensor) or want.shape != got[i].shape:
                    return False
                if not torch.allclose(got[i], want, rtol=1e-4, atol=1e-5):
                    return False
        return True

    # -- forward ------------------------------------------------------------------------------
    def _chain_forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self._chain is not None
        h, p, b, chain = x, self.params, self.buffers, self._chain
        i = 0
        while i < len(chain):
            name, mod = chain[i]
            i += 1
            if type(mod) is nn.Linear:
                w = p[f"{name}.weight"]
            elif type(mod) is WAsymLinear:
                w = torch.addcmul(b[f"{name}.fixed"], b[f"{name}.mask"], p[f"{name}.weight"])
            else:  # an activation that does not follow a linear layer
                h = mod(h)
                continue
            relu = i < len(chain) and type(chain[i][1]) is nn.ReLU  # fused into the matmul
            i += relu
            # the result feeds only the next linear layer: its backward may reuse the gradient
            own = i < len(chain) and type(chain[i][1]) in (nn.Linear, WAsymLinear)
            h = stacked_linear(h, w, p.get(f"{name}.bias"), relu=relu, own_grad=own)
        return h

    def _call_one(self, params: dict[str, Any], buffers: dict[str, Any], x: torch.Tensor) -> Any:
        return functional_call(self._base, (params, buffers), (x,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``[N, B, ...]`` of every model, each on its own inputs ``x[i]``."""
        if self.method == "fast":
            return self._chain_forward(x)
        return self._vmapped(self.params, self.buffers, x)

    # -- training support ---------------------------------------------------------------------
    def trainable(self) -> list[torch.Tensor]:
        """Stacked leaves that train, in ``named_parameters`` order (as the optimizer sees them)."""
        return [t for t in self.params.values() if t.requires_grad]

    def frozen_entries(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(stacked param, mask, fixed values)`` for each masked weight (W-asymmetric layers)."""
        out = []
        for name in trainable_masks(self.models[0]):
            if not self.params[name].requires_grad:
                continue
            masks = torch.stack([trainable_masks(m)[name] for m in self.models])
            mask = masks.to(self.params[name].dtype)
            out.append((self.params[name], mask, self.params[name].detach() * (1 - mask)))
        return out

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the stacked values into the member modules."""
        for store, getter in ((self.params, "named_parameters"), (self.buffers, "named_buffers")):
            for i, model in enumerate(self.models):
                own = dict(getattr(model, getter)())
                for name, t in store.items():
                    own[name].copy_(t[i])

    def stack_optimizer_states(self, states: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """One optimizer ``state_dict`` for the stacked leaves from one per member."""
        if len(states) != self.n:
            raise TrainingError(f"got {len(states)} optimizer states for {self.n} models")
        names = [k for k, t in self.params.items() if t.requires_grad]
        state: dict[int, dict[str, Any]] = {}
        for idx, name in enumerate(names):
            per = [s["state"].get(idx, {}) for s in states]
            entry: dict[str, Any] = {}
            for key in per[0]:
                vals = [p.get(key) for p in per]
                first = vals[0]
                if isinstance(first, torch.Tensor) and first.ndim > 0:
                    entry[key] = torch.stack(vals)
                elif isinstance(first, torch.Tensor):
                    if any(not torch.equal(first, v) for v in vals):
                        raise TrainingError(f"optimizer states disagree on {key!r} of {name!r}")
                    entry[key] = first.clone()
                else:
                    entry[key] = first
            state[idx] = entry
        groups = copy.deepcopy(states[0]["param_groups"])
        return {"state": state, "param_groups": groups}

    def unstack_optimizer_state(self, stacked: dict[str, Any]) -> list[dict[str, Any]]:
        """The inverse of :meth:`stack_optimizer_states`: one ``state_dict`` per member."""
        out = []
        for i in range(self.n):
            state = {}
            for idx, entry in stacked["state"].items():
                state[idx] = {
                    k: (
                        v[i].clone()
                        if isinstance(v, torch.Tensor) and v.ndim > 0
                        else copy.deepcopy(v)
                    )
                    for k, v in entry.items()
                }
            out.append({"state": state, "param_groups": copy.deepcopy(stacked["param_groups"])})
        return out
