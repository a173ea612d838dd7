"""Proof tools: check derived elements against the real model, and brute-force the discrete
group of tiny nets (the completeness oracle)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree

from symlab.errors import DataError, InvarianceError, NonFiniteError, TooLargeError
from symlab.frontend.inputs import ExampleInputs
from symlab.frontend.trace import trace
from symlab.modes import eval_mode
from symlab.perf import LazyStateDict, is_small, single_thread
from symlab.seeding import generator as make_generator
from symlab.stateless import call_with_state
from symlab.symmetry.group import SymmetryGroup
from symlab.symmetry.spec import Mag, Sign

__all__ = [
    "BruteForceGroup",
    "InexactError",
    "InvarianceReport",
    "brute_force_group",
    "check_invariance",
]


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / (b.abs().max() + 1e-30))


def _outputs(
    model: nn.Module,
    sd: dict[str, torch.Tensor],
    inputs: torch.Tensor | tuple[torch.Tensor, ...] | ExampleInputs,
    tied: tuple[tuple[str, ...], ...] = (),
) -> torch.Tensor:
    """The model's outputs with parameters ``sd``; tied keys (one tensor) are passed once, and
    an action that moved their copies differently gives NaN outputs (a failed check)."""
    sd = dict(sd)
    consistent = True
    for group in tied:
        present = [k for k in group if k in sd]  # functional_call takes one key of a tie
        for key in present[1:]:
            consistent &= bool(torch.equal(sd[key], sd[present[0]]))
            del sd[key]
    call = ExampleInputs.of(inputs)
    args, kwargs = pytree.tree_map(  # copies: a forward may write into its input
        lambda t: t.clone() if isinstance(t, torch.Tensor) else t, (call.args, call.kwargs)
    )
    out = call_with_state(model, sd, args, kwargs)
    if not isinstance(out, torch.Tensor):  # tuples, dicts, Hugging Face ModelOutputs
        leaves = [o for o in pytree.tree_leaves(out) if isinstance(o, torch.Tensor)]
        floats = [o for o in leaves if o.is_floating_point()] or leaves
        out = torch.cat([o.flatten().double() for o in floats])
    return out if consistent else torch.full_like(out, float("nan"))


@dataclass(frozen=True)
class InexactError:
    """The worst output error one inexact factor (a scaling a norm divides out only up to its
    eps) caused alone: on which input row of the batch, against which tolerance.

    >>> e = InexactError("scale[bn]", 0.84, 3, 1e-3, "batchnorm divides out input scales ...")
    >>> e.passed
    False
    """

    factor: str
    worst: float
    input_index: int
    tol: float
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.worst <= self.tol


@dataclass
class InvarianceReport:
    """Outcome of :func:`check_invariance`: relative output error per sampled element.

    ``errors`` are the errors of whole elements (against ``tol``, widened for norm eps);
    ``exact_errors`` those of the same elements without their inexact factors (against the
    strict ``exact_tol``); ``inexact`` the worst error each inexact factor caused alone and
    on which input (measured whenever a whole element was not exact). Passed only when all
    three hold.
    """

    errors: list[float]
    tol: float
    notes: list[str] = field(default_factory=list)
    exact_errors: list[float] = field(default_factory=list)
    exact_tol: float = 0.0
    inexact: dict[str, InexactError] = field(default_factory=dict)

    @property
    def worst(self) -> float:
        return max(self.errors, default=0.0)

    @property
    def passed(self) -> bool:
        exact_ok = not self.exact_errors or max(self.exact_errors) <= self.exact_tol
        return self.worst <= self.tol and exact_ok and all(e.passed for e in self.inexact.values())

    def culprit(self) -> InexactError | None:
        """The inexact factor with the largest error over its tolerance (None if none)."""
        bad = [e for e in self.inexact.values() if not e.passed]
        return max(bad, key=lambda e: e.worst / max(e.tol, 1e-300), default=None)

    def __repr__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        extra = ""
        if self.exact_errors:
            extra = f"; exact factors alone {max(self.exact_errors):.3g} (tol {self.exact_tol:.3g})"
        bad = self.culprit()
        if bad is not None:
            extra += (f"; inexact factor {bad.factor} alone {bad.worst:.3g} > {bad.tol:.3g} on "
                      f"input {bad.input_index}")  # fmt: skip
        return (
            f"InvarianceReport({verdict}: worst relative error {self.worst:.3g} over "
            f"{len(self.errors)} elements, tol {self.tol:.3g}{extra})"
        )


def _row_error(out: torch.Tensor, ref: torch.Tensor, batch: int) -> tuple[float, int]:
    """The relative error and the input row (batch index) where it is largest."""
    diff = (out - ref).abs().reshape(-1)
    err = float(diff.max() / (ref.abs().max() + 1e-30)) if diff.numel() else 0.0
    if not bool(torch.isfinite(diff).all()):
        err = float("inf")
    per_row = diff.numel() // batch if batch and diff.numel() % batch == 0 else 0
    flat = int(torch.nan_to_num(diff, nan=float("inf")).argmax()) if diff.numel() else 0
    return err, (flat // per_row if per_row else -1)


def check_invariance(
    model: nn.Module,
    G: SymmetryGroup,
    inputs: torch.Tensor | tuple[torch.Tensor, ...] | dict[str, Any],
    samples: int = 8,
    *,
    kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    tol: float | None = None,
    raise_on_failure: bool = True,
) -> InvarianceReport:
    """Soundness check: outputs are unchanged after acting with random elements of ``G``.

    The model is evaluated in eval mode (BatchNorm uses its running statistics, which the
    action moves); ``inputs`` is one tensor or a tuple of the forward's positional arguments
    (token ids, masks, a second stream) or a dict of its keyword arguments, and ``kwargs`` adds
    keyword arguments, as for :func:`symlab.symmetries`. ``tol`` defaults to 1e-5 in float64 and
    1e-3 otherwise (relative to the largest output). Scalings that a normalisation divides out hold
    only up to its eps: whole elements are held to ``tol`` widened to 100 × the largest norm
    eps, the same elements without those factors to the strict ``tol``, and whenever a whole
    element is not exact each inexact factor is evaluated alone, so the report names the
    factor and the input row behind an error (:class:`InexactError`) — a factor whose error on
    these inputs exceeds the tolerance fails the check. Raises :class:`InvarianceError` on
    failure unless ``raise_on_failure`` is False, and :class:`NonFiniteError` when the inputs,
    or the model's own outputs on them, hold NaN or infinity (nothing can be compared then).
    Every derived element is checked on the real model (docs/concepts/symmetries.md, "Fail
    closed, and proofs").

    >>> import symlab as sl
    >>> net = sl.nn.MLP([3, 4, 2], dtype=torch.float64)
    >>> sl.check_invariance(net, sl.symmetries(net), torch.randn(5, 3, dtype=torch.float64)).passed
    True
    """
    args = () if isinstance(inputs, Mapping) else inputs if isinstance(inputs, tuple) else (inputs,)
    if not all(isinstance(a, torch.Tensor) for a in args):
        raise DataError(
            f"inputs must be a tensor, a tuple of tensors (the forward's positional "
            f"arguments) or a dict of keyword arguments, got {type(inputs).__name__}"
        )
    inputs = ExampleInputs.of(inputs, kwargs)
    if any(a.is_floating_point() and not bool(torch.isfinite(a).all()) for a in inputs.tensors()):
        raise NonFiniteError("inputs contain NaN or infinity")
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    exact_tol = (1e-5 if dtype == torch.float64 else 1e-3) if tol is None else tol
    inexact = [f for f in G.factors if not f.exact]
    if tol is None:
        tol = exact_tol
        eps = [float(n.attrs.get("eps", 1e-5)) for n in G._st.nodes if G._st.specs[n.name].inexact]
        if any(f.kind in ("scaling", "common_scaling") for f in inexact):
            tol = max(tol, 100 * max(eps, default=0.0))  # invariance holds up to the norm's eps
    tensors = inputs.tensors()
    batch = int(tensors[0].shape[0]) if tensors and tensors[0].ndim else 0
    sd = dict(model.state_dict())
    g = make_generator(seed)
    errors: list[float] = []
    exact_errors: list[float] = []
    alone: dict[str, InexactError] = {}
    with torch.no_grad(), eval_mode(model) as m, single_thread(is_small(model, *tensors)):
        tied = G.graph.tied_keys

        def error(h: object) -> tuple[float, int]:
            out = _outputs(m, dict(G.act(h, sd)), inputs, tied)  # type: ignore[arg-type]
            return _row_error(out, ref, batch)

        try:
            ref = _outputs(m, sd, inputs, tied)
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            shapes = ", ".join(f"{tuple(a.shape)} {a.dtype}" for a in tensors)
            cause = str(exc).splitlines()[0] if str(exc) else ""
            raise DataError(
                f"check_invariance: inputs of shape {shapes} do not run through "
                f"{type(model).__name__} ({type(exc).__name__}: {cause}); pass a batch the model "
                "takes, e.g. the example input the group was derived from"
            ) from None
        if ref.is_floating_point() and not bool(torch.isfinite(ref).all()):
            bad = int((~torch.isfinite(ref)).sum())
            raise NonFiniteError(
                f"check_invariance: {type(model).__name__}'s own outputs on these inputs are not "
                f"finite ({bad} of {ref.numel()} entries NaN or infinite), so no element can be "
                "compared with them; pass inputs on which the model computes numbers (a square "
                "root or a log of a negative value gives NaN)"
            )
        names = {f.name for f in inexact}
        for _ in range(samples):
            h = G.sample(g)
            err = error(h)[0]
            errors.append(err)
            if not inexact:
                continue
            rest = {k: v for k, v in h.values.items() if k not in names}
            exact_errors.append(error(G.element(rest))[0])
            if err <= exact_tol:
                continue  # the whole element is exact: nothing to attribute
            for f in inexact:
                e, row = error(G.element({f.name: h[f.name]}))
                if f.name not in alone or e > alone[f.name].worst:
                    alone[f.name] = InexactError(f.name, e, row, tol, f.note)
    notes = sorted({f.note for f in G.factors if f.note})
    report = InvarianceReport(errors, tol, notes, exact_errors, exact_tol, alone)
    if raise_on_failure and not report.passed:
        bad = report.culprit()
        blame = (
            f"; inexact factor {bad.factor} alone changes input {bad.input_index}'s outputs by "
            f"{bad.worst:.3g} ({bad.note}): the inputs reaching that norm have a variance near "
            "its eps"
            if bad is not None
            else ""
        )
        raise InvarianceError(
            f"a derived symmetry changed the outputs: relative error {report.worst:.3g} > {tol:.3g}"
            f" ({report}){blame}; notes: {notes or 'none'}"
        )
    return report


@dataclass
class BruteForceGroup:
    """Discrete symmetries found by exhaustive search over each hidden space.

    ``spaces`` are the movable permutation spaces (by name); ``permutations`` holds every joint
    permutation (one tuple per space) that preserves the outputs, ``signs`` every joint sign
    pattern (applied uniformly to all tensors of a space, with sigmoid flips' bias shifts).
    """

    spaces: list[str]
    permutations: set[tuple[tuple[int, ...], ...]]
    signs: set[tuple[tuple[int, ...], ...]]

    @property
    def order(self) -> int:
        return len(self.permutations) * len(self.signs)

    def compare(self, G: SymmetryGroup) -> tuple[BruteForceGroup, BruteForceGroup]:
        """``(missed, extra)``: what brute force found that ``G`` lacks, and the reverse."""
        d = derived_discrete(G, self.spaces)
        return (
            BruteForceGroup(self.spaces, self.permutations - d.permutations, self.signs - d.signs),
            BruteForceGroup(self.spaces, d.permutations - self.permutations, d.signs - self.signs),
        )


def derived_discrete(G: SymmetryGroup, spaces: list[str]) -> BruteForceGroup:
    """The elements of ``G`` in brute force's coordinates (joint permutations, uniform signs)."""
    st = G._st
    per_space_perms, per_space_signs = [], []
    perm_factors = {f.space: f for f in G.factors if f.kind == "permutation"}
    for k in spaces:
        n = int(st.class_width[k])
        segs = st.class_segments[k]
        if k in perm_factors:
            blocks = perm_factors[k].blocks or [tuple(range(n))]
            perms = []
            for choice in itertools.product(*[itertools.permutations(b) for b in blocks]):
                p = list(range(n))
                for b, img in zip(blocks, choice, strict=True):
                    for src, dst in zip(b, img, strict=True):
                        p[src] = dst
                perms.append(tuple(p))
        elif all(st.segment_admits[s].mag == Mag.GL for s in segs):
            perms = list(itertools.permutations(range(n)))
        else:
            perms = [tuple(range(n))]
        sign_level = min(
            Sign.DIAG if st.segment_admits[s].mag == Mag.GL else st.segment_admits[s].sign
            for s in segs
        )
        if sign_level == Sign.DIAG:
            signs = list(itertools.product((1, -1), repeat=n))
        elif sign_level == Sign.COMMON:
            signs = [(1,) * n, (-1,) * n]
        else:
            signs = [(1,) * n]
        per_space_perms.append(perms)
        per_space_signs.append(signs)
    return BruteForceGroup(
        spaces, set(itertools.product(*per_space_perms)), set(itertools.product(*per_space_signs))
    )


def brute_force_group(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    signs: bool = True,
    tol: float | None = None,
    max_candidates: int = 100_000,
) -> BruteForceGroup:
    """Enumerate every joint permutation, and every joint sign pattern, of the hidden spaces of
    a tiny net and keep those that leave the outputs unchanged.

    The spaces (which tensors move together) come from the graph's tying; *which* maps of them
    preserve the function is decided only by evaluating the real model, so this is an oracle
    for the discrete part of the derived group (permutations incl. asymmetric restrictions,
    and sign/flip factors). Raises :class:`TooLargeError` beyond ``max_candidates``.

    >>> import symlab as sl
    >>> net = sl.nn.MLP([2, 3, 1], activation="tanh", seed=0)
    >>> bf = brute_force_group(net, torch.randn(16, 2))
    >>> bf.spaces, len(bf.permutations), len(bf.signs)  # S_3, and every sign pattern of tanh
    (['layers.0.linear'], 6, 8)
    """
    G = SymmetryGroup.from_graph(trace(model, inputs), LazyStateDict(model))
    st = G._st
    spaces = [k for k in st.class_segments]
    widths = [int(st.class_width[k]) for k in spaces]
    n_perm = math.prod(math.factorial(n) for n in widths)
    n_sign = 2 ** sum(widths) if signs else 1
    if n_perm + n_sign > max_candidates:
        raise TooLargeError(
            f"brute force would try {n_perm + n_sign} candidates (> {max_candidates}); "
            "use hidden widths of at most 4 or raise max_candidates"
        )
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    if tol is None:
        tol = 1e-7 if dtype == torch.float64 else 1e-4
    sd = dict(model.state_dict())
    found_p: set[tuple[tuple[int, ...], ...]] = set()
    found_s: set[tuple[tuple[int, ...], ...]] = set()
    with torch.no_grad(), eval_mode(model) as m, single_thread(is_small(model, inputs)):
        tied = G.graph.tied_keys
        ref = _outputs(m, sd, inputs, tied)
        for cand in itertools.product(*[itertools.permutations(range(n)) for n in widths]):
            perms = {k: torch.tensor(p) for k, p in zip(spaces, cand, strict=True)}
            sd2 = G._copy_to_unread(G.act_transforms(G.tensor_transforms(perms, {}), sd))
            if _rel_err(_outputs(m, dict(sd2), inputs, tied), ref) <= tol:
                found_p.add(cand)
        sign_iter = (
            itertools.product(*[itertools.product((1, -1), repeat=n) for n in widths])
            if signs
            else [tuple((1,) * n for n in widths)]
        )
        for cand in sign_iter:
            scales = {}
            for k, s in zip(spaces, cand, strict=True):
                for seg in st.class_segments[k]:
                    scales[seg] = torch.tensor(s, dtype=torch.float64)
            sd2 = G._copy_to_unread(G.act_transforms(G.tensor_transforms({}, scales), sd))
            if _rel_err(_outputs(m, dict(sd2), inputs, tied), ref) <= tol:
                found_s.add(cand)
    return BruteForceGroup(spaces, found_p, found_s)
