"""SymmetryGroup: the derived group of function-preserving parameter transformations.

The group is a product of factors (:class:`~symlab.symmetry.factors.Factor`): per permutation
space, a permutation factor, and per segment its magnitude (scaling, common scaling or GL) and
sign (signs, sigmoid flips or a common sign) factors. An element acts on a ``state_dict`` through
each op's registered action; the order of the finite part is a sympy expression.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from functools import cached_property

import torch

from symlab.errors import ForeignElementError, NonFiniteError, StateDictError, WidthError
from symlab.graph.archgraph import ArchGraph, Node
from symlab.graph.widths import Width
from symlab.perf import lazy_import
from symlab.seeding import generator as make_generator
from symlab.symmetry.composite import concat_transform
from symlab.symmetry.derive import Structure, derive_structure
from symlab.symmetry.display import group_repr, order_str, product_str
from symlab.symmetry.factors import Factor, GroupElement
from symlab.symmetry.spec import Translation
from symlab.symmetry.transform import Transform
from symlab.symmetry.translations import add_translations, linear_part

sp = lazy_import("sympy")  # loaded on first use: ``import symlab`` stays cheap

__all__ = ["SymmetryGroup"]

StateDict = Mapping[str, torch.Tensor]


class SymmetryGroup:
    """The symmetry group of an architecture (see :func:`symlab.symmetries`).

    >>> import symlab as sl, sympy as sp
    >>> d, n, m, k = sp.symbols("d n m k")
    >>> G = sl.symmetries(sl.graph.mlp([d, n, m, k], activation="relu"))
    >>> G.order, G.dimension
    (factorial(m)*factorial(n), m + n)
    """

    def __init__(self, structure: Structure) -> None:
        self._st = structure
        self.factors: list[Factor] = list(structure.factors)
        self._by_name = {f.name: f for f in self.factors}
        #: the fixed data the derivation read (masks, gates), by key: what symlab.io saves
        self.fixed_data: dict[str, torch.Tensor] = {}

    @classmethod
    def from_graph(
        cls, graph: ArchGraph, fixed_values: Mapping[str, torch.Tensor] | None = None
    ) -> SymmetryGroup:
        """Derive the group of ``graph`` (``fixed_values``: the model's fixed buffers)."""
        G = cls(derive_structure(graph, fixed_values))
        keys = [fd.key for s in G._st.specs.values() for fd in s.fixed_data if fd.value is None]
        if keys and fixed_values is None:  # derivation's own fallback: the graph's fresh build
            fixed_values = graph.build(seed=0).state_dict()
        G.fixed_data = {k: fixed_values[k].detach().cpu().clone() for k in keys}  # type: ignore[index]
        return G

    # -- sizes --------------------------------------------------------------------------------
    @property
    def graph(self) -> ArchGraph:
        return self._st.graph

    @cached_property
    def order(self) -> sp.Expr:
        """Order of the finite (discrete) part, a sympy expression."""
        return sp.Mul(*[f.order for f in self.factors])

    @property
    def log10_order(self) -> float | sp.Expr:
        """log10 of :attr:`order` (a float; a sympy expression for symbolic widths)."""
        if not self.graph.is_concrete:
            return sp.log(self.order, 10)
        return float(sum(f.log10_order for f in self.factors))

    @cached_property
    def dimension(self) -> Width:
        """Dimension of the continuous part (an int, or a sympy expression)."""
        total = sum((f.dimension for f in self.factors), sp.Integer(0))
        total = sp.expand(total)
        return int(total) if total.is_number else total

    @property
    def exact(self) -> bool:
        """False when some factor holds only up to a normalisation's eps."""
        return all(f.exact for f in self.factors)

    @cached_property
    def signature(self) -> tuple[tuple[str, str, str], ...]:
        return tuple((f.name, f.kind, str(f.size)) for f in self.factors)

    def translation(self, name: str) -> Translation:
        """The :class:`~symlab.symmetry.spec.Translation` behind a translation factor (how its
        coordinates embed into the parameters)."""
        if name not in self._st.translations:
            raise ForeignElementError(
                f"{name!r} is not a translation factor of this group; its translation factors "
                f"are {list(self._st.translations)}"
            )
        return self._st.translations[name]

    def permutation_spec(self) -> dict[str, list[tuple[str, int]]]:
        """git-re-basin's ``perm_to_axes``: permutation name → ``[(param, axis), ...]``
        (attention's head permutation is listed with the axes it moves in blocks; under
        grouped-query attention, whose projections have different numbers of heads, and for
        the per-group query-head permutations, it is left out)."""
        keys = self.graph.state_keys()

        def listed(f: Factor) -> bool:
            if f.kind != "permutation" or not f.internal:
                return f.kind == "permutation"
            sizes = {keys[k][1].shape[a] for k, a in f.axes if k in keys}
            return f.copies == 1 and len(sizes) <= 1

        return {f.name: list(f.axes) for f in self.factors if listed(f)}

    # -- elements -----------------------------------------------------------------------------
    def _require_concrete(self) -> None:
        if not self.graph.is_concrete:
            raise WidthError(
                "this group has symbolic widths; elements need integers: derive it from "
                "graph.subs({...}) or from a built model"
            )

    def _element(self, values: dict[str, torch.Tensor]) -> GroupElement:
        return GroupElement(self.signature, values)

    def identity(self) -> GroupElement:
        """The identity element."""
        self._require_concrete()
        vals: dict[str, torch.Tensor] = {}
        for f in self.factors:
            n = int(f.size)
            if f.kind == "permutation":
                p = torch.arange(n)
                vals[f.name] = p.expand(f.copies, n).clone() if f.copies > 1 else p
            elif f.kind == "complex_scaling":
                vals[f.name] = torch.ones(f.copies, n, dtype=torch.complex128)
            elif f.kind == "GL":
                eye = torch.eye(n, dtype=torch.float64)
                vals[f.name] = eye.expand(f.copies, n, n).clone() if f.internal else eye
            elif f.kind in ("common_scaling", "common_sign"):
                vals[f.name] = torch.ones((), dtype=torch.float64)
            elif f.kind == "translation":
                vals[f.name] = torch.zeros(n, dtype=torch.float64)
            else:
                vals[f.name] = torch.ones(n, dtype=torch.float64)
        return self._element(vals)

    def element(self, values: Mapping[str, torch.Tensor]) -> GroupElement:
        """An element from given factor values (by factor name); the rest are identity.

        >>> import symlab as sl
        >>> G = sl.symmetries(sl.graph.mlp([3, 4, 2]))
        >>> h = G.element({"P[layers.0.linear]": torch.tensor([1, 0, 3, 2])})
        >>> h["scale[layers.0.linear]"].tolist()
        [1.0, 1.0, 1.0, 1.0]
        """
        unknown = sorted(set(values) - set(self._by_name))
        if unknown:
            raise ForeignElementError(
                f"no factors named {unknown} in this group; its factors are {list(self._by_name)}"
            )
        vals = dict(self.identity().values)
        for name, v in values.items():
            ref = vals[name]
            v = torch.as_tensor(v, dtype=ref.dtype)
            if v.shape != ref.shape:
                raise ForeignElementError(
                    f"{name} needs shape {tuple(ref.shape)}, got {tuple(v.shape)}"
                )
            vals[name] = v
        return self._element(vals)

    def unit_spaces(self) -> list[Factor]:
        """Every movable space of units, as nominal permutation factors — also those whose
        permutations fixed data removed (an asymmetric layer's units are still units; this is
        what identifiability compares across runs)."""
        perm = {f.space: f for f in self.factors if f.kind == "permutation" and not f.internal}
        out = []
        for k, n in self._st.class_width.items():
            if k in perm:
                out.append(perm[k])
            else:
                out.append(Factor(f"P[{k}]", "permutation", n, k))
        return out

    def space_tensors(self, space: str) -> list[str]:
        """The graph tensors (node names) a permutation factor's space moves, in graph order —
        where to record activations for matching units of that space."""
        return [t for t, k in self._st.tensor_class.items() if k == space]

    def sample(
        self, generator: torch.Generator | int | None = None, *, scale_range: float = 2.0
    ) -> GroupElement:
        """A random element: uniform permutations (within blocks) and signs, scalings
        log-uniform in ``[1/scale_range, scale_range]``, GL matrices ``Q₁ D Q₂`` with ``D`` in
        the same range, translations standard normal."""
        self._require_concrete()
        g = make_generator(generator)
        lo = math.log(scale_range)
        vals: dict[str, torch.Tensor] = {}

        def logu(*shape: int) -> torch.Tensor:
            u = torch.rand(shape, generator=g, dtype=torch.float64)
            return torch.exp((2 * u - 1) * lo)

        def signs(*shape: int) -> torch.Tensor:
            return torch.randint(0, 2, shape, generator=g).double() * 2 - 1

        for f in self.factors:
            n = int(f.size)
            if f.kind == "permutation" and f.copies > 1:  # one permutation per copy
                vals[f.name] = torch.stack(
                    [torch.randperm(n, generator=g) for _ in range(f.copies)]
                )
            elif f.kind == "complex_scaling":  # r·e^{iφ}: r log-uniform, φ uniform
                phase = torch.rand(f.copies, n, generator=g, dtype=torch.float64) * 2 * math.pi
                vals[f.name] = logu(f.copies, n) * torch.exp(1j * phase)
            elif f.kind == "permutation":
                p = torch.arange(n)
                for b in f.blocks or [list(range(n))]:
                    b = torch.as_tensor(b)
                    p[b] = b[torch.randperm(len(b), generator=g)]
                vals[f.name] = p
            elif f.kind == "scaling":
                vals[f.name] = logu(n)
            elif f.kind == "common_scaling":
                vals[f.name] = logu()
            elif f.kind in ("sign", "flip"):
                vals[f.name] = signs(n)
            elif f.kind == "common_sign":
                vals[f.name] = signs()
            elif f.kind == "translation":
                vals[f.name] = torch.randn(n, generator=g, dtype=torch.float64)
            else:  # GL: Q₁ D Q₂, well conditioned
                c = f.copies if f.internal else 1
                q1 = torch.linalg.qr(torch.randn(c, n, n, generator=g, dtype=torch.float64))[0]
                q2 = torch.linalg.qr(torch.randn(c, n, n, generator=g, dtype=torch.float64))[0]
                m = q1 @ torch.diag_embed(logu(c, n)) @ q2
                vals[f.name] = m if f.internal else m[0]
        return self._element(vals)

    def _check_element(self, h: GroupElement) -> None:
        if not isinstance(h, GroupElement):
            raise ForeignElementError(f"expected a GroupElement, got {type(h).__name__}")
        if h.signature != self.signature:
            raise ForeignElementError(
                "this element belongs to a different symmetry group (its factors "
                f"{[s[0] for s in h.signature][:4]}… do not match {list(self._by_name)[:4]}…); "
                "sample elements from the group you act with"
            )

    def _class_of(self, f: Factor) -> str:
        return f.space if f.kind == "permutation" else self._st.segment_class[f.space]

    def _perms(self, h: GroupElement) -> dict[str, torch.Tensor]:
        return {
            f.space: h[f.name] for f in self.factors if f.kind == "permutation" and f.copies == 1
        }

    def inverse(self, h: GroupElement) -> GroupElement:
        """The inverse element: ``act(inverse(h), act(h, sd)) == sd``."""
        self._check_element(h)
        perms = self._perms(h)
        inv = {k: torch.argsort(p) for k, p in perms.items()}
        vals = {}
        for f in self.factors:
            v = h[f.name]
            if f.kind == "translation":
                continue  # below: they need the inverse of the rest
            q = inv.get(self._class_of(f))
            if f.kind == "permutation" and f.copies > 1:  # re-indexed by the op's permutation
                r = torch.argsort(v, dim=-1)
                vals[f.name] = r if q is None else r[q]
            elif f.kind == "complex_scaling":
                vals[f.name] = 1.0 / v if q is None else (1.0 / v)[q]
            elif f.kind == "permutation":
                vals[f.name] = inv[f.space]
            elif f.kind == "GL":
                m = torch.linalg.inv(v)
                if f.internal:  # one matrix per head, re-indexed by the head permutation
                    vals[f.name] = m if q is None else m[q]
                else:
                    vals[f.name] = m if q is None else m[q][:, q]
            elif f.kind in ("scaling", "sign", "flip"):
                r = 1.0 / v
                vals[f.name] = r if q is None else r[q]
            else:
                vals[f.name] = 1.0 / v
        if self._st.translations:  # (g, t)⁻¹ = (g⁻¹, -L_{g⁻¹} t)
            for name, t in linear_part(self, self._element({**h.values, **vals}), h).items():
                vals[name] = -t
        return self._element({f.name: vals[f.name] for f in self.factors})

    def compose(self, h1: GroupElement, h2: GroupElement) -> GroupElement:
        """``h1 ∘ h2``: acting with it equals acting with ``h2`` and then with ``h1``."""
        self._check_element(h1)
        self._check_element(h2)
        p1 = self._perms(h1)
        vals = {}
        moved = linear_part(self, h1, h2) if self._st.translations else {}
        for f in self.factors:
            a, b = h1[f.name], h2[f.name]
            if f.kind == "translation":  # (g₁, t₁)(g₂, t₂) = (g₁g₂, t₁ + L_{g₁} t₂)
                vals[f.name] = a + moved[f.name]
                continue
            q = p1.get(self._class_of(f))
            if f.kind == "permutation" and f.copies > 1:
                vals[f.name] = torch.gather(b if q is None else b[q], 1, a)
            elif f.kind == "complex_scaling":
                vals[f.name] = a * (b if q is None else b[q])
            elif f.kind == "permutation":
                vals[f.name] = b[a]
            elif f.kind == "GL" and f.internal:
                vals[f.name] = a @ (b if q is None else b[q])
            elif f.kind == "GL":
                vals[f.name] = a @ (b if q is None else b[q][:, q])
            elif f.kind in ("scaling", "sign", "flip"):
                vals[f.name] = a * (b if q is None else b[q])
            else:
                vals[f.name] = a * b
        return self._element(vals)

    # -- action -------------------------------------------------------------------------------
    def tensor_transforms(
        self,
        perms: Mapping[str, torch.Tensor],
        scales: Mapping[str, torch.Tensor],
    ) -> dict[str, Transform]:
        """Per-tensor maps from per-space permutations and per-segment scale vectors/matrices.

        Low level (used by :meth:`act` and the brute-force oracle): ``perms`` maps a space to
        an index tensor, ``scales`` a segment to a vector (diagonal) or a matrix (GL).
        """
        st = self._st
        out: dict[str, Transform] = {}
        for t, k in st.tensor_class.items():
            if k is None:
                out[t] = Transform()
                continue
            scale = scales.get(st.tensor_segment[t])
            shift = None
            if t in st.out_shift and scale is not None:
                shift = st.out_shift[t](torch.sign(scale))  # type: ignore[operator]
            out[t] = Transform(perms.get(k), scale, shift)
        for t in self._composite_order():
            tr = concat_transform([out[p] for p in st.composite[t]], st, t)
            if t in st.out_shift and tr.scale is not None and tr.scale.ndim == 1:
                tr = Transform(tr.perm, tr.scale, st.out_shift[t](torch.sign(tr.scale)))  # type: ignore[operator]
            out[t] = tr
        return out

    def _composite_order(self) -> list[str]:
        """Block tensors, each after the block tensors it is made of (a parameter added to a
        concatenation becomes one before the concatenation's node in graph order)."""
        st, order, seen = self._st, [], set()

        def visit(t: str) -> None:
            if t in seen or t not in st.composite:
                return
            seen.add(t)
            for p in st.composite[t]:
                visit(p)
            order.append(t)

        for n in st.nodes:
            visit(n.name)
        return order

    def _element_transforms(self, h: GroupElement) -> dict[str, Transform]:
        perms = self._perms(h)
        scales: dict[str, torch.Tensor] = {}
        for f in self.factors:
            if f.kind in ("permutation", "translation") or f.internal:
                continue
            n = int(f.size)
            cur = scales.get(f.space)
            v = h[f.name].double()
            if f.kind == "GL":
                scales[f.space] = v
                continue
            base = torch.ones(n, dtype=torch.float64) if cur is None else cur
            scales[f.space] = base * v
        return self.tensor_transforms(perms, scales)

    def check_state_dict(self, sd: StateDict) -> None:
        """Raise a named error if ``sd`` does not fit this group's architecture."""
        expected = self.graph.state_keys()
        missing = [k for k in expected if k not in sd]
        unused = set(self.graph.unused_keys)
        extra = [k for k in sd if k not in expected and k not in unused]
        if missing or extra:
            raise StateDictError(
                f"state_dict does not match the architecture: missing {missing[:6]}"
                f"{'…' if len(missing) > 6 else ''}, unexpected {extra[:6]}"
                f"{'…' if len(extra) > 6 else ''}; pass model.state_dict() of the model the "
                "group was derived from"
            )
        for key, (_, spec) in expected.items():
            shape = tuple(int(s) for s in spec.shape)
            if tuple(sd[key].shape) != shape:
                raise StateDictError(
                    f"{key} has shape {tuple(sd[key].shape)}, the architecture needs {shape}"
                )
            v = sd[key]  # fixed data (an attention mask of -inf) may be non-finite on purpose
            if spec.kind != "fixed" and v.is_floating_point() and not bool(torch.isfinite(v).all()):
                raise NonFiniteError(f"{key} contains NaN or infinite values; fix the model first")

    def act(self, h: GroupElement, state_dict: StateDict) -> OrderedDict[str, torch.Tensor]:
        """Transformed parameters (same keys, same order); buffers move with their channel,
        fixed data (asymmetric masks, gates) never moves."""
        self._require_concrete()
        self._check_element(h)
        self.check_state_dict(state_dict)
        out = self.act_transforms(self._element_transforms(h), state_dict, self._internal(h))
        return self._copy_to_unread(add_translations(self, h, out))  # θ ↦ g·θ + E t

    def _copy_to_unread(self, sd: OrderedDict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        """A tied key no node reads (T5's ``shared.weight``, one tensor with
        ``encoder.embed_tokens.weight``) takes the moved value of the key that is read."""
        if not self.graph.tied_keys:
            return sd
        read = self.graph.state_keys()
        for group in self.graph.tied_keys:
            source = next((k for k in group if k in read), None)
            for key in group:
                if source is not None and key not in read and key in sd:
                    sd[key] = sd[source]
        return sd

    def _internal(self, h: GroupElement) -> dict[str, dict[str, torch.Tensor]]:
        """Per node, the values of its internal factors (attention heads)."""
        internal: dict[str, dict[str, torch.Tensor]] = {}
        for f in self.factors:
            if f.internal:
                node, suffix = f.name[f.name.index("[") + 1 : -1].split("#")
                internal.setdefault(node, {})[suffix] = h[f.name]
        return internal

    def act_transforms(
        self,
        transforms: Mapping[str, Transform],
        state_dict: StateDict,
        internal: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    ) -> OrderedDict[str, torch.Tensor]:
        """Apply per-tensor maps (from :meth:`tensor_transforms`) through each op's action;
        ``internal`` gives, per node, the values of its internal factors."""
        internal = internal or {}
        new: dict[str, torch.Tensor] = {}
        for node in self._st.nodes:
            movable = [p for p in node.params if p.kind != "fixed"]
            if not movable:
                continue
            keys = {p.name: node.key(p) for p in movable}
            params = {name: state_dict[key] for name, key in keys.items()}
            if self._st.rules[node.name].reads_fixed:  # e.g. a W-asymmetric layer's mask
                fixed = (p for p in node.params if p.kind == "fixed")
                params.update((p.name, state_dict[node.key(p)]) for p in fixed)
            moved = self._act_node(node, params, transforms, internal)
            if moved is not params:
                for name, value in moved.items():
                    if name in keys:  # fixed data never moves
                        new[keys[name]] = value.to(params[name].dtype)
        return OrderedDict((k, new.get(k, v)) for k, v in state_dict.items())

    def _act_node(
        self,
        node: Node,
        params: Mapping[str, torch.Tensor],
        transforms: Mapping[str, Transform],
        internal: Mapping[str, Mapping[str, torch.Tensor]],
    ) -> Mapping[str, torch.Tensor]:
        """One node's moved parameters (``params`` itself when nothing moves them)."""
        st = self._st
        ins = [transforms[t] for t in st.graph.inputs(node.name)]
        t_out = transforms[node.name]
        mine = internal.get(node.name)
        if not mine and t_out.is_identity and all(t.is_identity for t in ins):
            return params
        rule = st.rules[node.name]
        if st.specs[node.name].internal:
            return rule.act(node, dict(params), ins, t_out, dict(mine or {}))  # type: ignore[call-arg]
        return rule.act(node, dict(params), ins, t_out)

    # -- display (symlab/symmetry/display.py) -------------------------------------------------
    def _product(self, latex: bool) -> str:
        return product_str(self, latex)

    def __repr__(self) -> str:
        return group_repr(self)

    def order_str(self) -> str:
        """The order as a short product, e.g. ``128!^2·2^256`` (exact value: :attr:`order`)."""
        return order_str(self)

    def _repr_latex_(self) -> str:
        return f"${product_str(self, True)}$"
