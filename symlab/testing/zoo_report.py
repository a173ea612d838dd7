"""The coverage census: where real models stand with symlab.

:func:`model_zoo_report` builds each case of :mod:`symlab.testing.zoo_models` (random weights,
float64, eval mode), derives its group with :func:`symlab.symmetries` and checks sampled
elements with its own invariance check — written here, independent of
:func:`symlab.check_invariance`: each element acts on the ``state_dict``, tied parameters must
stay equal, and every floating output of the model (tuples, dicts and Hugging Face
``ModelOutput`` included) must stay the same to :data:`TOL` relative to its largest entry — or
to :data:`TOL_FLOAT32` when the model computes part of its forward in single precision although
it was cast to float64 (Llama-style RMSNorm casts to float32 and back: a permutation of the
units reorders float32 sums, 1e-7 noise that no symmetry can avoid). Each case ends in one
outcome:

* ``derived and sound``: a group was derived and every sampled element left the outputs
  unchanged; the model built in float32 (as users build it) is derived too, and where its
  group differs (a float64 model's real casts to float32 are opaque) that group is checked
  on the float32 model and noted;
* ``refused``: symlab refused with a named error (a :class:`~symlab.errors.SymlabError`), in
  float64 or in float32;
* ``crash``: any other exception, or the time limit ran out — a bug;
* ``unsound``: a sampled element changed the outputs — a bug;
* ``not built``: the library could not build the model at the tiny configuration (not counted).
"""

from __future__ import annotations

import collections
import contextlib
import signal
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

from symlab.api import symmetries
from symlab.errors import SymlabError
from symlab.frontend.inputs import ExampleInputs
from symlab.seeding import generator as make_generator
from symlab.stateless import call_with_state
from symlab.symmetry.group import SymmetryGroup
from symlab.testing.zoo_models import ZooCase, zoo_cases

__all__ = ["OUTCOMES", "ZooReport", "ZooResult", "check_case", "model_zoo_report"]

OUTCOMES = ("derived and sound", "refused", "crash", "unsound")
TOL = 1e-6
"""Largest relative output change a sound element may cause (float64 rounding, amplified)."""
TOL_FLOAT32 = 1e-5
"""The same for a model whose forward computes in float32 inside (about 100 float32 ulps)."""
TOL_SINGLE = 1e-4
"""The same for the float32 derivation's group checked on the float32 model."""


@dataclass(frozen=True)
class ZooResult:
    """The outcome of one case (see the module docstring), why, and how long it took."""

    family: str
    name: str
    outcome: str
    detail: str = ""
    seconds: float = 0.0


@dataclass
class ZooReport:
    """The census: one :class:`ZooResult` per case, printed as a table by :meth:`table`.

    >>> r = ZooReport([ZooResult("f", "a", "derived and sound"), ZooResult("f", "b", "refused",
    ...                "UnsupportedOpError: x")])
    >>> r.counts("f")["refused"], r.fraction("f")
    (1, 0.5)
    """

    results: list[ZooResult] = field(default_factory=list)

    @property
    def families(self) -> list[str]:
        return list(dict.fromkeys(r.family for r in self.results))

    def counts(self, family: str) -> collections.Counter[str]:
        return collections.Counter(r.outcome for r in self.results if r.family == family)

    def fraction(self, family: str) -> float:
        """Derived and sound, over the built models of ``family``."""
        c = self.counts(family)
        built = sum(c[o] for o in OUTCOMES)
        return c["derived and sound"] / built if built else 0.0

    def reasons(self, top: int = 10) -> list[tuple[str, int]]:
        """The most frequent refusal reasons (the error type and its op or cause)."""
        return collections.Counter(
            _reason(r.detail) for r in self.results if r.outcome == "refused"
        ).most_common(top)

    def table(self, reasons: int = 10) -> str:
        """A Markdown table per family, then the top refusal reasons and every crash and
        unsound case."""
        head = ["family", "built", *OUTCOMES, "not built"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for fam in self.families:
            c = self.counts(fam)
            built = sum(c[o] for o in OUTCOMES)
            cells = [fam, str(built), f"{c[OUTCOMES[0]]} ({100 * self.fraction(fam):.0f} %)",
                     *(str(c[o]) for o in OUTCOMES[1:]), str(c["not built"])]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        if self.reasons():
            lines += ["", "top refusal reasons:"]
            lines += [f"  {n:3d}  {why}" for why, n in self.reasons(reasons)]
        bad = [r for r in self.results if r.outcome in ("crash", "unsound")]
        if bad:
            lines += ["", "crashes and unsound cases:"]
            lines += [f"  {r.family} / {r.name}: {r.outcome}: {r.detail}" for r in bad]
        return "\n".join(lines)


def _reason(detail: str) -> str:
    kind, _, text = detail.partition(": ")
    for pattern in ("aten op ", "function ", "module ", "method "):
        if pattern in text:
            what = text.split(pattern, 1)[1].split(" has no", 1)[0].split(" (", 1)[0]
            return f"{kind}: {pattern}{what.split(' of type ')[-1]}"[:100]
    return f"{kind}: {text}"[:100]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().split("\n", 1)[0]
    return f"{type(e).__name__}: {text[:400]}"


class _TimeLimit(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`_TimeLimit` after ``seconds`` (main thread of a Unix process only)."""
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def stop(*_: object) -> None:
        raise _TimeLimit(f"over {seconds:.0f} s")

    try:
        old = signal.signal(signal.SIGALRM, stop)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _randomise(model: nn.Module, seed: int) -> None:
    """Random parameters of unit scale, running statistics away from 0 and 1, and norms' eps
    negligible, so that invariance is checked to float64 rounding."""
    g = make_generator(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.is_floating_point():
                continue
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
            if p.dim() >= 2:
                p.copy_(noise / max(p[0].numel(), 1) ** 0.5)
            else:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * noise)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g, dtype=b.dtype))
            elif name.endswith("running_mean"):
                b.copy_(0.3 * torch.randn(b.shape, generator=g, dtype=b.dtype))
    for m in model.modules():
        for attr in ("eps", "epsilon", "variance_epsilon", "layer_norm_eps"):
            if isinstance(getattr(m, attr, None), float):
                setattr(m, attr, 1e-30)


def _floats(out: object) -> list[torch.Tensor]:
    return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)
            and t.is_floating_point()]  # fmt: skip


def _outputs(model: nn.Module, sd: dict[str, torch.Tensor], inputs: ExampleInputs) -> list:
    return _floats(call_with_state(model, sd, inputs.args, inputs.kwargs))


def check_case(
    model: nn.Module,
    G: SymmetryGroup,
    inputs: ExampleInputs,
    samples: int = 3,
    seed: int = 0,
    *,
    exact_only: bool = False,
) -> float:
    """The worst relative output error over ``samples`` random elements of ``G`` (inf where an
    element moved tied parameters apart, or an output changed shape or where it is finite);
    with ``exact_only``, the elements of its exact factors alone (a norm's scale invariance
    holds only up to its ``eps``, which the model may fix in code). The model is called in its
    current mode, on ``inputs``.

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    >>> x = ExampleInputs((torch.randn(5, 3, dtype=torch.float64),))
    >>> check_case(net, symmetries(net, x.args), x) < 1e-12
    True
    """
    held = model.state_dict(keep_vars=True)
    by_tensor: dict[int, list[str]] = {}
    for key, t in held.items():
        by_tensor.setdefault(id(t), []).append(key)
    ties = [keys for keys in by_tensor.values() if len(keys) > 1]
    sd = {k: v.detach() for k, v in held.items()}  # call_with_state passes a tie once
    g = make_generator(seed)
    worst = 0.0
    with torch.no_grad():
        ref = _outputs(model, sd, inputs)
        if not ref:
            raise ValueError("the model has no floating outputs to compare")
        inexact = {f.name for f in G.factors if not f.exact} if exact_only else set()
        for _ in range(samples):
            h = G.sample(g)
            if inexact:
                h = G.element({k: v for k, v in h.values.items() if k not in inexact})
            moved = dict(G.act(h, sd))
            if any(not torch.equal(moved[k], moved[keys[0]]) for keys in ties for k in keys):
                return float("inf")
            out = _outputs(model, moved, inputs)
            for a, b in zip(out, ref, strict=True):
                if a.shape != b.shape or not torch.equal(a.isfinite(), b.isfinite()):
                    return float("inf")
                a, b = a[b.isfinite()], b[b.isfinite()]  # padded rows may be NaN: alike in both
                err = float((a - b).abs().max() / (b.abs().max() + 1e-30)) if b.numel() else 0.0
                worst = max(worst, err if err == err else float("inf"))
    return worst


class _Float32Watch(TorchFunctionMode):
    """Notes whether any torch function returns a single- or half-precision tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        if not self.seen:
            self.seen = any(t.dtype in (torch.float32, torch.float16, torch.bfloat16)
                            for t in _floats(out))  # fmt: skip
        return out


def _computes_in_float32(model: nn.Module, inputs: ExampleInputs) -> bool:
    """Whether the (float64) model makes a lower-precision tensor anywhere in its forward.

    >>> class Half(nn.Module):
    ...     def forward(self, x):
    ...         return x.float().double()
    >>> x = ExampleInputs((torch.ones(2, dtype=torch.float64),))
    >>> _computes_in_float32(Half(), x), _computes_in_float32(nn.Identity(), x)
    (True, False)
    """
    watch = _Float32Watch()
    with torch.no_grad(), watch:
        inputs.call(model)
    return watch.seen


def _signature(G: SymmetryGroup) -> list[tuple[str, str, str, int]]:
    return [(f.name, f.kind, str(f.size), f.copies) for f in G.factors]


def _in_float32(
    case: ZooCase, G: SymmetryGroup, samples: int, time_limit: float | None
) -> tuple[str | None, str]:
    """Derive the case again as users build it, in float32 (the census checks in float64).
    A dtype changes no symmetry, but it changes what torch.export records (a cast to the
    dtype a tensor already has returns the tensor itself) and which casts are real (a float64
    model's casts to float32 and back round, and symlab reads them as opaque: its group may be
    smaller). Returns ``(outcome, detail)``: an outcome when float32 is refused, crashes or
    gives a group whose exact factors change the float32 outputs (beyond :data:`TOL_SINGLE`);
    else ``None`` with a note when its group differs from the float64 one. Nothing is compared
    when the library cannot run the model in float32."""
    try:
        with _time_limit(time_limit):
            model, inputs = case.build()
            model = model.float().eval()
            inputs = inputs.map(lambda t: t.float() if t.is_floating_point() else t)
            with torch.no_grad():  # run once, as in float64 (first calls may set modes)
                inputs.call(model)
    except Exception:  # the library cannot run it in float32: nothing to compare
        return None, ""
    try:
        with _time_limit(time_limit):
            G32 = symmetries(model, inputs.args or None, kwargs=inputs.kwargs or None)
    except SymlabError as e:
        return "refused", f"in float32 (derived in float64): {_first_line(e)}"
    except Exception as e:
        where = traceback.extract_tb(e.__traceback__)[-1]
        return "crash", f"in float32: {_first_line(e)} (at {where.filename}:{where.lineno})"
    if _signature(G32) == _signature(G):
        return None, ""
    try:
        with _time_limit(time_limit):
            _randomise(model, seed=0)
            worst = check_case(model, G32, inputs, samples, exact_only=True)
    except Exception as e:
        return "crash", f"the float32 invariance check failed: {_first_line(e)}"
    if not worst <= TOL_SINGLE:
        return "unsound", f"in float32: relative output error {worst:.3g} (> {TOL_SINGLE:g})"
    return None, f"; in float32 log10|G| = {G32.log10_order:.1f}, dim {G32.dimension}"


def run_case(case: ZooCase, samples: int = 3, time_limit: float | None = 120.0) -> ZooResult:
    """Build, derive and check one case."""
    t0 = time.perf_counter()

    def result(outcome: str, detail: str = "") -> ZooResult:
        return ZooResult(case.family, case.name, outcome, detail, time.perf_counter() - t0)

    try:
        with _time_limit(time_limit):
            model, inputs = case.build()
            model = model.double().eval()
            _randomise(model, seed=0)
            inputs = inputs.map(lambda t: t.double() if t.is_floating_point() else t)
            with torch.no_grad():
                inputs.call(model)
    except Exception as e:  # the library could not build it: not counted
        return result("not built", _first_line(e))
    try:
        with _time_limit(time_limit):
            G = symmetries(model, inputs.args or None, kwargs=inputs.kwargs or None)
    except SymlabError as e:
        return result("refused", _first_line(e))
    except Exception as e:  # anything else is a bug
        where = traceback.extract_tb(e.__traceback__)[-1]
        return result("crash", f"{_first_line(e)} (at {where.filename}:{where.lineno})")
    single, note = _in_float32(case, G, samples, time_limit)
    if single is not None:
        return result(single, note)
    try:
        with _time_limit(time_limit):
            worst = check_case(model, G, inputs, samples)
    except Exception as e:  # the check itself failed: the group is suspect
        return result("crash", f"the invariance check failed: {_first_line(e)}")
    tol = TOL_FLOAT32 if _computes_in_float32(model, inputs) else TOL
    if not worst <= tol:
        return result("unsound", f"relative output error {worst:.3g} (> {tol:g}); factors "
                                 f"{[f.kind for f in G.factors]}")  # fmt: skip
    return result("derived and sound", f"log10|G| = {G.log10_order:.1f}, dim {G.dimension}{note}")


def model_zoo_report(
    families: list[str] | None = None,
    limit: int | None = None,
    *,
    names: list[str] | None = None,
    samples: int = 3,
    time_limit: float | None = 120.0,
    progress: bool = False,
) -> ZooReport:
    """Run the census on the installed libraries (transformers, timm, torchvision):
    ``families`` (default: all installed; see :data:`symlab.testing.zoo_models.FAMILIES`), at
    most ``limit`` models per family (only those called ``names`` if given), ``samples`` group
    elements checked per model, each step of a case stopped after ``time_limit`` seconds (a
    crash).

    >>> report = model_zoo_report(["no such family"])
    >>> report.results
    []
    """
    report = ZooReport()
    for case in zoo_cases(families, limit, names):
        r = run_case(case, samples, time_limit)
        report.results.append(r)
        if progress:
            print(f"{r.family} / {r.name}: {r.outcome} ({r.seconds:.1f} s) {r.detail[:150]}",
                  flush=True)  # fmt: skip
    return report
