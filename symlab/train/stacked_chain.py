"""A hand-written training step for N stacked Linear/ReLU classifiers, without autograd.

For the commonest ensemble — N MLPs made of ``nn.Linear``/:class:`WAsymLinear` layers with
ReLUs between them, trained with cross-entropy — :class:`ChainStep` computes forward, loss and
backward of all N models itself, as batched matmuls written into buffers that are allocated
once and reused every step (``torch.bmm``/``torch.baddbmm`` with ``out=``, the ReLU and its
backward mask applied in place, the weight gradients written straight into each stacked
parameter's ``.grad``). No tensor is allocated per step, so the step pays neither autograd's
bookkeeping nor the allocator's page faults on fresh activations; the optimizer then steps the
persistent ``.grad`` tensors as usual.

The arithmetic is that of the module: ``h ↦ relu(h Wᵀ + b)`` per layer (``W = fixed + mask ⊙
weight`` for W-asymmetric layers, Lim et al. 2024), the mean cross-entropy, and its exact
gradient (softmax minus one-hot, then the chain rule), so training equals N sequential runs up
to float rounding. :meth:`ChainStep.build` returns ``None`` unless the stack's fast path applies
(already checked numerically against the real module) and every leaf is a linear layer or a
ReLU; it then also checks its own forward against the real module on the probe inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from symlab.nn.asymmetric import WAsymLinear

from .stacked import StackedModels
from .stacked_linear import NARROW

__all__ = ["ChainStep"]


@dataclass
class _Layer:
    weight: torch.Tensor  # stacked [N, out, in] leaf
    bias: torch.Tensor | None  # stacked [N, out] leaf
    mask: torch.Tensor | None  # W-asymmetric: float 0/1 mask and fixed values [N, out, in]
    fixed: torch.Tensor | None
    relu: bool
    n_in: int
    n_out: int


def _layers(stack: StackedModels) -> list[_Layer] | None:
    """The stack's chain as layers with a fused ReLU flag, if it is Linear/ReLU only."""
    chain = stack._chain
    if chain is None or stack.method != "fast":
        return None
    layers: list[_Layer] = []
    p, b = stack.params, stack.buffers
    for name, mod in chain:
        if type(mod) is nn.ReLU:
            if not layers or layers[-1].relu:
                return None  # a ReLU on the inputs, or twice: left to the autograd path
            layers[-1].relu = True
            continue
        if type(mod) not in (nn.Linear, WAsymLinear):
            return None
        weight, bias = p[f"{name}.weight"], p.get(f"{name}.bias")
        if not weight.requires_grad or (bias is not None and not bias.requires_grad):
            return None
        mask = fixed = None
        if type(mod) is WAsymLinear:
            mask = b[f"{name}.mask"].to(weight.dtype)
            fixed = b[f"{name}.fixed"]
        n_out, n_in = weight.shape[1:]
        layers.append(_Layer(weight, bias, mask, fixed, False, n_in, n_out))
    if not layers or layers[-1].relu or len(stack.trainable()) != len(stack.params):
        return None
    return layers


class _Buffers:
    """Flat storage per role, viewed as ``[N, b, ...]`` for the current batch size ``b``."""

    def __init__(self) -> None:
        self._store: dict[str, torch.Tensor] = {}

    def get(self, key: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        numel = 1
        for s in shape:
            numel *= s
        store = self._store.get(key)
        if store is None or store.numel() < numel:
            store = torch.empty(numel, dtype=like.dtype, device=like.device)
            self._store[key] = store
        return store[:numel].view(shape)


class ChainStep:
    """Loss and gradients of N stacked Linear/ReLU classifiers in preallocated buffers.

    Use :meth:`build` (``None`` where it does not apply); then per step
    :meth:`loss_and_grads` leaves the gradient of the summed member losses in every stacked
    parameter's ``.grad`` (masked for W-asymmetric layers) and returns the ``[N]`` losses.

    >>> from torch import nn
    >>> models = [nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)) for _ in range(2)]
    >>> stack = StackedModels(models, probe=torch.randn(4, 3))
    >>> step = ChainStep.build(stack, "cross_entropy", torch.randn(4, 3))
    >>> x, y = torch.randn(2, 5, 3), torch.randint(0, 2, (2, 5))
    >>> tuple(step.loss_and_grads(x, y).shape), tuple(stack.params["0.weight"].grad.shape)
    ((2,), (2, 8, 3))
    """

    def __init__(self, stack: StackedModels, layers: list[_Layer]) -> None:
        self.stack, self.layers, self.n = stack, layers, stack.n
        self._buf = _Buffers()
        for layer in layers:  # persistent gradients, overwritten every step
            for t in (layer.weight, layer.bias):
                if t is not None:
                    t.grad = torch.zeros_like(t)

    @classmethod
    def build(cls, stack: StackedModels, kind: str, probe: torch.Tensor) -> ChainStep | None:
        """A :class:`ChainStep` for ``stack``, or ``None`` unless it is a Linear/ReLU chain
        trained with cross-entropy whose forward here reproduces the real module on
        ``probe`` (flat inputs ``[b, features]``)."""
        layers = _layers(stack) if kind == "cross_entropy" and probe.ndim == 2 else None
        if layers is None or probe.shape[1] != layers[0].n_in:
            return None
        step = cls(stack, layers)
        with torch.no_grad():
            got = step.forward(probe.unsqueeze(0).expand(stack.n, *probe.shape).contiguous())
            for i in sorted({0, stack.n - 1}):
                was = stack.models[i].training
                want = stack.models[i].train()(probe)
                stack.models[i].train(was)
                if want.shape != got[i].shape or not torch.allclose(
                    got[i], want, rtol=1e-4, atol=1e-5
                ):
                    step.release()
                    return None
        return step

    def release(self) -> None:
        """Drop the persistent gradients and buffers (the stacked leaves keep their values)."""
        for layer in self.layers:
            for t in (layer.weight, layer.bias):
                if t is not None:
                    t.grad = None
        self._buf = _Buffers()

    def batch(
        self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``[N, b, in]`` and labels ``[N, b]`` of example indices ``idx`` ``[N, b]``,
        gathered into reused buffers."""
        n, b = idx.shape
        flat = idx.reshape(-1)
        xb = self._buf.get("x", (n * b, x.shape[1]), x)
        yb = self._buf.get("y", (n * b,), y)
        torch.index_select(x, 0, flat, out=xb)
        torch.index_select(y, 0, flat, out=yb)
        return xb.view(n, b, x.shape[1]), yb.view(n, b)

    def optimizer_step(self, opt: torch.optim.Optimizer) -> None:
        """``opt.step()`` on the persistent gradients. For a fused Adam/AdamW with one
        parameter group whose state exists, this calls the same fused kernel directly (the
        arithmetic of ``Adam.step`` without its per-step Python bookkeeping)."""
        group = opt.param_groups[0]
        fast = (
            isinstance(opt, torch.optim.Adam)
            and len(opt.param_groups) == 1
            and group["fused"]
            and not (group["amsgrad"] or group["maximize"] or group["differentiable"])
            and not isinstance(group["lr"], torch.Tensor)
            and all(p in opt.state and "exp_avg" in opt.state[p] for p in group["params"])
        )
        if not fast:
            opt.step()
            return
        params = group["params"]
        state = [opt.state[p] for p in params]
        steps = [st["step"] for st in state]
        torch._foreach_add_(steps, 1)
        kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
        beta1, beta2 = group["betas"]
        kernel(
            params,
            [p.grad for p in params],
            [st["exp_avg"] for st in state],
            [st["exp_avg_sq"] for st in state],
            [],
            steps,
            amsgrad=False,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )

    # -- forward --------------------------------------------------------------------------------
    def _weight(self, i: int) -> torch.Tensor:
        layer = self.layers[i]
        if layer.mask is None:
            return layer.weight.detach()
        w = self._buf.get(f"w{i}", tuple(layer.weight.shape), layer.weight)
        return torch.addcmul(layer.fixed, layer.mask, layer.weight.detach(), out=w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``[N, b, out]`` of every model on its inputs ``x`` ``[N, b, in]`` (the last
        layer's result may be a transposed view); keeps what the backward needs."""
        n, b = self.n, x.shape[1]
        h = x
        self._inputs: list[torch.Tensor] = []
        self._weights: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            w = self._weight(i)
            self._inputs.append(h)
            self._weights.append(w)
            bias = None if layer.bias is None else layer.bias.detach()
            if layer.n_out < NARROW:  # [N, out, b], returned as a [N, b, out] view
                out = self._buf.get(f"a{i}", (n, layer.n_out, b), x)
                if bias is None:
                    torch.bmm(w, h.mT, out=out)
                else:
                    torch.baddbmm(bias.unsqueeze(2), w, h.mT, out=out)
                out = out.mT
            else:
                out = self._buf.get(f"a{i}", (n, b, layer.n_out), x)
                if bias is None:
                    torch.bmm(h, w.mT, out=out)
                else:
                    torch.baddbmm(bias.unsqueeze(1), h, w.mT, out=out)
            if layer.relu:
                out.relu_()
            h = out
        return h

    # -- loss and backward ----------------------------------------------------------------------
    def _cross_entropy(self, z: torch.Tensor, y: torch.Tensor, dim: int) -> torch.Tensor:
        """Mean cross-entropy of each member over logits ``z`` (classes along ``dim``, 1 or 2);
        overwrites ``z`` with the gradient of the summed means (softmax minus one-hot, over
        the ``b`` examples)."""
        n, b = y.shape
        target = y.unsqueeze(dim)
        z.sub_(z.amax(dim, keepdim=True))
        picked = z.gather(dim, target)
        z.exp_()
        total = z.sum(dim, keepdim=True)
        loss = (total.log() - picked).view(n, b).mean(1)
        z.div_(total)
        z.scatter_add_(dim, target, self._buf.get("minus1", tuple(target.shape), z).fill_(-1.0))
        z.div_(b)
        return loss

    @torch.no_grad()
    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Member losses ``[N]`` on inputs ``x`` ``[N, b, in]`` and labels ``y`` ``[N, b]``;
        the gradients of their sum are left in the stacked parameters' ``.grad``."""
        z = self.forward(x)
        if z.is_contiguous():
            loss = self._cross_entropy(z, y, 2)
        else:  # a narrow last layer: reduce over the classes of the [N, C, b] buffer
            loss = self._cross_entropy(z.mT, y, 1)
        g = z  # now the gradient with respect to the last layer's output, [N, b, out]
        for i in range(len(self.layers) - 1, -1, -1):
            layer, h, w = self.layers[i], self._inputs[i], self._weights[i]
            if layer.relu:  # the output's sign is the mask; g is our own buffer
                out = self._inputs[i + 1]
                torch.ops.aten.threshold_backward.grad_input(g, out, 0, grad_input=g)
            gw = layer.weight.grad
            assert gw is not None
            torch.bmm(g.mT, h, out=gw)
            if layer.mask is not None:
                gw.mul_(layer.mask)
            if layer.bias is not None:
                assert layer.bias.grad is not None
                torch.sum(g, 1, out=layer.bias.grad)
            if i > 0:
                gx = self._buf.get(f"g{i}", tuple(h.shape), h)
                torch.bmm(g, w, out=gx)
                g = gx
        return loss
