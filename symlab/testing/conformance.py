"""The rule-conformance harness: every registered rule, in every context users reach it in.

An op's rule must hold wherever the op can stand: between two Linears and between two convs,
after a ``cat`` of differently-activated branches, after a sigmoid (whose flips shift), after
a norm, under a residual add, before a Linear with and without bias, before a conv of every
kernel/padding shape, before a softmax head. For each op with a rule (enumerated from
:func:`symlab.symmetry.rules.registered_ops`) and each module type the front-end reads,
:func:`cases` builds small float64 models from the snippets of :mod:`.conformance_ops`;
:func:`run_case` derives the group, checks sampled elements against the real model with an
independent evaluation (``load_state_dict`` into a copy, no :func:`check_invariance`), checks
them with :func:`~symlab.check_invariance` too, and compares the discrete part with
:func:`~symlab.brute_force_group` where the net is tiny. A refusal (a named
:class:`~symlab.errors.SymlabError`) is fail-closed and fine; any other exception is a crash and
an element that changes the outputs is unsound.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from symlab.api import symmetries
from symlab.errors import SymlabError, TooLargeError
from symlab.symmetry.check import brute_force_group, check_invariance
from symlab.testing import conformance_patterns  # noqa: F401  (registers pattern ops)
from symlab.testing.conformance_ops import KINDS, MODULE_FACTORIES, OP_SNIPPETS, Snippet

__all__ = [
    "Case",
    "Outcome",
    "cases",
    "ci_cases",
    "coverage_gaps",
    "module_cases",
    "module_kind",
    "run_case",
]


def module_kind(t: type[nn.Module]) -> str:
    """The tensor kind a module type reads (``map2`` for ``Conv2d``, ``vec`` for ``Linear``).

    >>> module_kind(nn.Conv1d), module_kind(nn.BatchNorm1d), module_kind(nn.Tanh)
    ('map1', 'vec', 'vec')
    """
    name = t.__name__
    for d in "123":
        if f"{d}d" in name and name != "BatchNorm1d":
            return f"map{d}"
    return "vec"


def _producer(kind: str, c_in: int, c: int) -> nn.Module:
    if kind in ("vec", "seq"):
        return nn.Linear(c_in, c)
    conv = {"map1": nn.Conv1d, "map2": nn.Conv2d, "map3": nn.Conv3d}[kind]
    return conv(c_in, c, 3, padding=1)


def _consumer(kind: str, k: int = 1, pad: int = 0, bias: bool = True) -> nn.Module:
    if kind in ("vec", "seq"):
        return nn.LazyLinear(2, bias=bias)
    conv = {"map1": nn.LazyConv1d, "map2": nn.LazyConv2d, "map3": nn.LazyConv3d}[kind]
    return conv(2, k, padding=pad, bias=bias)


class Context(nn.Module):
    """``x → prelude → snippet → consumer``; the prelude is the context."""

    def __init__(self, how: str, snippet: nn.Module, kind: str, kind_out: str, c: int,
                 consumer: dict[str, object]) -> None:  # fmt: skip
        super().__init__()
        self.how, self.kind = how, kind
        c_in = 2
        if how == "after_cat":
            self.fa, self.fb = _producer(kind, c_in, c // 2), _producer(kind, c_in, c - c // 2)
        else:
            self.pre = _producer(kind, c_in, c)
        if how == "after_norm":
            self.norm = nn.LayerNorm(c, eps=1e-12) if kind in ("vec", "seq") \
                else nn.GroupNorm(1, c, eps=1e-12)  # fmt: skip
        self.op = snippet
        self.out = _consumer(kind_out, **consumer)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axis = -1 if self.kind in ("vec", "seq") else 1
        if self.how == "after_cat":
            h = torch.cat([torch.relu(self.fa(x)), torch.tanh(self.fb(x))], axis)
        else:
            h = self.pre(x)
        if self.how == "after_sigmoid":
            h = torch.sigmoid(h)
        elif self.how == "after_tanh":
            h = torch.tanh(h)
        elif self.how == "after_norm":
            h = self.norm(h)
        y = self.op(h)
        if self.how == "residual":
            y = y + h
        y = self.out(y)
        if self.how == "softmax_head":
            y = torch.log_softmax(y, -1 if self.kind in ("vec", "seq") else 1)
        return y


CONTEXTS = ("between", "after_cat", "after_sigmoid", "after_tanh", "after_norm", "residual",
            "softmax_head", "before_nobias")  # fmt: skip
CONV_CONSUMERS = [{"k": k, "pad": p, "bias": b} for k, p, b in
                  itertools.product((1, 2, 3), (0, 1), (True, False))]  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One conformance model: ``op`` reached by ``snippet`` in ``context``."""

    op: str
    snippet: Snippet
    context: str
    consumer: tuple[tuple[str, object], ...] = ()
    width: int = 2

    @property
    def name(self) -> str:
        cons = ",".join(f"{k}={v}" for k, v in self.consumer)
        return f"{self.op}/{self.snippet.name}/{self.context}" + (f"[{cons}]" if cons else "")

    def build(self, seed: int) -> tuple[nn.Module, torch.Tensor]:
        """The model (float64, eval mode, generic parameters and running statistics) and an
        example input."""
        torch.manual_seed(seed)
        kind = self.snippet.kind_in
        kind_out = self.snippet.kind_out or kind
        c = self.width * 2 if self.context == "after_cat" else self.width
        snippet = self.snippet.make(c)
        consumer = dict(self.consumer)
        if self.context == "before_nobias":
            consumer["bias"] = False
        model = Context(self.context, snippet, kind, kind_out, c, consumer)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(KINDS[kind][0], 2, *KINDS[kind][1:], generator=g) if kind != "vec" \
            else torch.randn(KINDS[kind][0], 2, generator=g)  # fmt: skip
        if kind == "seq":
            x = torch.randn(KINDS[kind][0], KINDS[kind][1], 2, generator=g)
        x = x.double() * 1.5
        model = model.double()
        with torch.no_grad():
            model.train()
            model(x)  # materialise lazy layers, running statistics
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.7)
            model(x * 1.3 + 0.2)
        return model.eval(), x


def cases(ops: list[str] | None = None, *, deep: bool = False) -> Iterator[Case]:
    """Every conformance case of ``ops`` (default: every op with snippets); ``deep`` adds every
    conv consumer shape and width 3 (slower, for runs on demand).

    >>> next(iter(cases(["linear"]))).name
    'linear/linear/between'
    """
    for op in ops or sorted(OP_SNIPPETS):
        for snippet in OP_SNIPPETS.get(op, []):
            kind_out = snippet.kind_out or snippet.kind_in
            for context in CONTEXTS:
                yield Case(op, snippet, context)
            if kind_out.startswith("map"):
                consumers = CONV_CONSUMERS if deep else CONV_CONSUMERS[::5]
                for cons in consumers:
                    yield Case(op, snippet, "between", tuple(cons.items()))
            if deep:
                yield Case(op, snippet, "between", width=3)


def ci_cases(ops: list[str] | None = None) -> Iterator[Case]:
    """A bounded, deterministic subset of :func:`cases`: every snippet between two layers and
    in one more context (the contexts taken in turn, so that all of them are reached), and
    one conv consumer shape per feature-map snippet (the shapes taken in turn).

    >>> [c.context for c in ci_cases(["linear"])][:4]
    ['between', 'after_cat', 'between', 'after_sigmoid']
    """
    j = 0
    for op in ops or sorted(OP_SNIPPETS):
        for snippet in OP_SNIPPETS.get(op, []):
            yield Case(op, snippet, "between")
            yield Case(op, snippet, CONTEXTS[1 + j % (len(CONTEXTS) - 1)])
            if (snippet.kind_out or snippet.kind_in).startswith("map"):
                cons = CONV_CONSUMERS[j % len(CONV_CONSUMERS)]
                yield Case(op, snippet, "between", tuple(cons.items()))
            j += 1


def module_cases() -> Iterator[Case]:
    """One case per module type the front-end reads (between two layers of its kind)."""
    for t, make in MODULE_FACTORIES.items():
        kind = module_kind(t)
        snippet = Snippet(t.__name__, lambda c, make=make, kind=kind: make(c, kind), kind)
        if t in (nn.Flatten, nn.Unflatten) or "Adaptive" in t.__name__:
            snippet = Snippet(t.__name__, snippet.make, "map2" if t is nn.Flatten else kind)
        yield Case(t.__name__, snippet, "between")


@dataclass
class Outcome:
    """``status``: ``sound``, ``refused`` (named error), ``crash``, ``unsound``, ``eps`` (only
    a factor a norm divides out up to its eps fails: reported by ``check_invariance``, not a
    wrong rule) or ``skipped`` (the snippet does not fit the context)."""

    case: str
    status: str
    detail: str = ""
    ops: tuple[str, ...] = ()
    missed: int = 0
    extra: list[str] = field(default_factory=list)


def independent_error(model: nn.Module, G: object, x: torch.Tensor, seed: int) -> float:
    """Relative output change after acting with one sampled element, evaluated by loading the
    moved ``state_dict`` into a copy of the model (independent of ``check_invariance``)."""
    moved = copy.deepcopy(model)
    moved.load_state_dict(G.act(G.sample(seed), model.state_dict()))  # type: ignore[attr-defined]
    with torch.no_grad():
        ref, out = model(x), moved(x)
    ref = torch.cat([r.flatten() for r in ref]) if isinstance(ref, tuple) else ref
    out = torch.cat([o.flatten() for o in out]) if isinstance(out, tuple) else out
    return float((out - ref).abs().max() / (ref.abs().max() + 1e-30))


def run_case(
    case: Case, seed: int = 0, *, samples: int = 4, brute: bool = True, max_candidates: int = 5000
) -> Outcome:
    """Derive, check and (where tiny) brute-force one case; see the module docstring."""
    try:
        model, x = case.build(seed)
    except Exception as e:  # a snippet that does not fit the context: nothing to check
        return Outcome(case.name, "skipped", f"{type(e).__name__}: {e}")
    try:
        G = symmetries(model, x)
        ops = tuple(sorted({n.op for n in G.graph.nodes()}))
        worst = max(independent_error(model, G, x, seed + i) for i in range(samples))
        rep = check_invariance(model, G, x, samples=samples, seed=seed, raise_on_failure=False)
    except SymlabError as e:
        return Outcome(case.name, "refused", f"{type(e).__name__}: {e}")
    except Exception as e:
        return Outcome(case.name, "crash", f"{type(e).__name__}: {e}")
    tol = rep.tol if not G.exact else 1e-6
    exact_ok = not rep.exact_errors or max(rep.exact_errors) <= rep.exact_tol
    if exact_ok and not G.exact and (worst > tol or not rep.passed):
        return Outcome(case.name, "eps", f"a norm factor near its eps: {rep}", ops)
    if worst > tol or not rep.passed:
        return Outcome(case.name, "unsound", f"independent {worst:.3g}; {rep}", ops)
    out = Outcome(case.name, "sound", "", ops)
    if brute:
        try:
            missed, extra = brute_force_group(model, x, max_candidates=max_candidates).compare(G)
        except TooLargeError:
            return out
        except SymlabError as e:
            return Outcome(case.name, "crash", f"brute force: {type(e).__name__}: {e}", ops)
        out.missed = len(missed.permutations) + len(missed.signs)
        if extra.permutations or extra.signs:
            out.status, out.detail = (
                "unsound",
                f"brute force rejects {extra.signs or extra.permutations}",
            )
    return out


def coverage_gaps() -> tuple[list[str], list[str]]:
    """Registered ops without snippets, and read module types without a factory.

    >>> ops, modules = coverage_gaps()
    >>> "linear" in ops, "Linear" in modules
    (False, False)
    """
    from symlab.frontend.modules import _MODULE_OPS
    from symlab.symmetry.rules import registered_ops

    ops = [op for op in registered_ops() if not OP_SNIPPETS.get(op)]
    mods = [t.__name__ for t in _MODULE_OPS if t not in MODULE_FACTORIES]
    return ops, mods


Runner = Callable[[Case], Outcome]
