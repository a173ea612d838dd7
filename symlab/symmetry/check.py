"""Proof tools: check derived elements against the real model, and brute-force the discrete
group of tiny nets (the completeness oracle)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from symlab.errors import DataError, InvarianceError, NonFiniteError, TooLargeError
from symlab.frontend.trace import trace
from symlab.modes import eval_mode
from symlab.perf import LazyStateDict
from symlab.seeding import generator as make_generator
from symlab.symmetry.group import SymmetryGroup
from symlab.symmetry.spec import Mag, Sign

__all__ = ["BruteForceGroup", "InvarianceReport", "brute_force_group", "check_invariance"]


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / (b.abs().max() + 1e-30))


def _outputs(
    model: nn.Module,
    sd: dict[str, torch.Tensor],
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    tied: tuple[tuple[str, ...], ...] = (),
) -> torch.Tensor:
    """The model's outputs with parameters ``sd``; tied keys (one tensor) are passed once, and
    an action that moved their copies differently gives NaN outputs (a failed check)."""
    sd = dict(sd)
    consistent = True
    for group in tied:
        first, *rest = group
        for key in rest:
            consistent &= bool(torch.equal(sd[key], sd[first]))
            del sd[key]
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    out = torch.func.functional_call(model, sd, args)
    out = torch.cat([o.flatten() for o in out]) if isinstance(out, tuple) else out
    return out if consistent else torch.full_like(out, float("nan"))


@dataclass
class InvarianceReport:
    """Outcome of :func:`check_invariance`: relative output error per sampled element."""

    errors: list[float]
    tol: float
    notes: list[str] = field(default_factory=list)

    @property
    def worst(self) -> float:
        return max(self.errors, default=0.0)

    @property
    def passed(self) -> bool:
        return self.worst <= self.tol

    def __repr__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"InvarianceReport({verdict}: worst relative error {self.worst:.3g} over "
            f"{len(self.errors)} elements, tol {self.tol:.3g})"
        )


def check_invariance(
    model: nn.Module,
    G: SymmetryGroup,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    samples: int = 8,
    *,
    seed: int = 0,
    tol: float | None = None,
    raise_on_failure: bool = True,
) -> InvarianceReport:
    """Soundness check: outputs are unchanged after acting with random elements of ``G``.

    The model is evaluated in eval mode (BatchNorm uses its running statistics, which the
    action moves); ``inputs`` is one tensor or a tuple of the forward's positional arguments
    (token ids, masks, a second stream). ``tol`` defaults to 1e-5 in float64 and 1e-3
    otherwise (relative to the largest output), widened to 100 × the largest norm eps when the
    group has scalings that a normalisation divides out (exact only up to eps). Raises
    :class:`InvarianceError` on failure unless ``raise_on_failure`` is False. Every derived
    element is checked on the real model (docs/concepts/symmetries.md, "Fail closed, and
    proofs").

    >>> import symlab as sl
    >>> net = sl.nn.MLP([3, 4, 2], dtype=torch.float64)
    >>> sl.check_invariance(net, sl.symmetries(net), torch.randn(5, 3, dtype=torch.float64)).passed
    True
    """
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    if not all(isinstance(a, torch.Tensor) for a in args):
        raise DataError(
            f"inputs must be a tensor or a tuple of tensors (the forward's positional "
            f"arguments), got {type(inputs).__name__}"
        )
    if any(a.is_floating_point() and not bool(torch.isfinite(a).all()) for a in args):
        raise NonFiniteError("inputs contain NaN or infinity")
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    if tol is None:
        tol = 1e-5 if dtype == torch.float64 else 1e-3
        eps = [float(n.attrs.get("eps", 1e-5)) for n in G._st.nodes if G._st.specs[n.name].inexact]
        if any(f.kind in ("scaling", "common_scaling") and not f.exact for f in G.factors):
            tol = max(tol, 100 * max(eps, default=0.0))  # invariance holds up to the norm's eps
    sd = dict(model.state_dict())
    g = make_generator(seed)
    with torch.no_grad(), eval_mode(model) as m:
        tied = G.graph.tied_keys
        try:
            ref = _outputs(m, sd, inputs, tied)
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            shapes = ", ".join(f"{tuple(a.shape)} {a.dtype}" for a in args)
            cause = str(exc).splitlines()[0] if str(exc) else ""
            raise DataError(
                f"check_invariance: inputs of shape {shapes} do not run through "
                f"{type(model).__name__} ({type(exc).__name__}: {cause}); pass a batch the model "
                "takes, e.g. the example input the group was derived from"
            ) from None
        errors = [
            _rel_err(_outputs(m, dict(G.act(G.sample(g), sd)), inputs, tied), ref)
            for _ in range(samples)
        ]
    notes = sorted({f.note for f in G.factors if f.note})
    report = InvarianceReport(errors, tol, notes)
    if raise_on_failure and not report.passed:
        raise InvarianceError(
            f"a derived symmetry changed the outputs: relative error {report.worst:.3g} > {tol:.3g}"
            f" ({report}); notes: {notes or 'none'}"
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
    with torch.no_grad(), eval_mode(model) as m:
        ref = _outputs(m, sd, inputs)
        for cand in itertools.product(*[itertools.permutations(range(n)) for n in widths]):
            perms = {k: torch.tensor(p) for k, p in zip(spaces, cand, strict=True)}
            sd2 = G.act_transforms(G.tensor_transforms(perms, {}), sd)
            if _rel_err(_outputs(m, dict(sd2), inputs), ref) <= tol:
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
            sd2 = G.act_transforms(G.tensor_transforms({}, scales), sd)
            if _rel_err(_outputs(m, dict(sd2), inputs), ref) <= tol:
                found_s.add(cand)
    return BruteForceGroup(spaces, found_p, found_s)
