"""The head symmetries of attention with rotary embeddings and grouped queries.

**Rotary embeddings** (Su et al., "RoFormer", 2021). Query ``q_m = R_m W_Q x_m`` and key
``k_n = R_n W_K x_n`` are rotated by ``R_t = ⊕_p rot(t θ_p)``, one plane rotation per pair of
head dimensions; the score is ``q_mᵀ k_n = (W_Q x_m)ᵀ R_{n-m} (W_K x_n)``. A map
``W_Q ↦ A W_Q``, ``W_K ↦ B W_K`` keeps every score iff ``Aᵀ R_t B = R_t`` for every offset
``t``: ``t = 0`` gives ``B = A⁻ᵀ``, and then ``A`` must commute with every ``R_t``. For distinct
frequencies (no ``θ_p t`` a multiple of π for all ``t``) the commutant of the rotations is the
block-diagonal matrices whose blocks commute with a plane rotation: ``aI + bJ`` (``J`` the
quarter turn), i.e. one non-zero complex number per pair, acting as a rotation and a scale of
the pair (and ``A⁻ᵀ = A / (a² + b²)`` is of the same form). Dimensions the embedding leaves
alone (partial rotary, GPT-NeoX) keep GL among themselves and do not mix with rotated ones.
So GL_d on ``(W_Q, W_K)`` shrinks to ``(C*)^{r/2} × GL_{d-r}`` per head; ``(W_V, W_O)`` keep
GL_d; head permutations survive (every head turns by the same angles). A key bias is no longer
free (it is rotated with the key).

**Grouped-query attention** (Ainslie et al., EMNLP 2023): ``G`` key/value heads, each read by
``n`` query heads. Query head ``(g, j)`` scores against key ``g``, so a map of key ``g``
(``B_g``) needs ``B_g⁻ᵀ`` on *every* query head of group ``g``, and likewise a map ``N_g`` of
value ``g`` needs ``N_g⁻¹`` on the output columns of every query head of the group: the GL
factors come one per group. Heads move by the wreath product ``S_n ≀ S_G``: permute the groups
(keys, values and their query heads together) and, independently inside each group, its query
heads (with their output columns).

**ALiBi** (Press et al., "Train Short, Test Long: Attention with Linear Biases", ICLR 2022) adds
a fixed bias ``m_h (j - i)`` to the scores of head ``h``, with a different slope per head. The
scores' maps above are untouched (GL per head survives), but a head permutation must carry
each head's bias to a head with the same bias: with ALiBi's distinct slopes only the identity.
Such blocks (``attrs['head_bias']``) have no head permutations.

**QK-norm** (Henry et al., Findings of EMNLP 2020; Dehghani et al., ICML 2023): an RMSNorm or
LayerNorm of the queries or keys (``attrs['qk_norm']``) commutes only with maps that keep its
statistic and its weight, so such blocks claim no maps of the queries and keys (no GL, no
complex scalings; the sign flips of a pair that an RMSNorm commutes with are not derived);
head permutations and the values' GL survive.

``attention_internal`` lists the internal factors; ``head_maps`` turns an element's values
into the per-head permutations and matrices the attention actions apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from symlab.graph.archgraph import Node
from symlab.symmetry.spec import InternalFactor

__all__ = ["HeadMaps", "attention_internal", "head_maps", "rope_matrix"]


def _heads(node: Node) -> tuple[int, int, int]:
    hq = int(node.attrs["num_heads"])
    hkv = int(node.attrs.get("num_kv_heads", hq))
    return hq, hkv, hq // hkv


def attention_internal(node: Node, d_qk: int, d_v: int) -> list[InternalFactor]:
    """The internal factors of an attention node: head permutations (groups, and queries within
    a group), per group the maps of queries/keys (GL, or complex scalings on rotary pairs and GL
    on the rest) and of values/output (GL).

    >>> from symlab.graph.archgraph import Node
    >>> node = Node("attn", "attention_linear", 16, attrs={"num_heads": 4, "num_kv_heads": 2,
    ...             "rope_layout": "half", "rope_dims": 4})
    >>> for f in attention_internal(node, 4, 4):
    ...     print(f.suffix, f.kind, f.size, f.copies)
    heads permutation 2 1
    qheads permutation 2 2
    qk_rot complex_scaling 2 2
    vo GL 4 2
    """
    _hq, hkv, n = _heads(node)
    out = []
    if not node.attrs.get("head_bias"):  # ALiBi slopes tell heads apart: no permutations
        out.append(InternalFactor("heads", "permutation", hkv))
        if n > 1:
            out.append(InternalFactor("qheads", "permutation", n, copies=hkv))
    r = int(node.attrs.get("rope_dims", 0)) if node.attrs.get("rope_layout") else 0
    if not node.attrs.get("qk_norm"):  # normalised queries or keys: no map of them survives
        if r:
            out.append(InternalFactor("qk_rot", "complex_scaling", r // 2, copies=hkv))
        if d_qk > r:
            out.append(InternalFactor("qk", "GL", d_qk - r, copies=hkv))
    out.append(InternalFactor("vo", "GL", d_v, copies=hkv))
    return out


def rope_matrix(z: torch.Tensor, layout: str, d: int, rest: torch.Tensor | None) -> torch.Tensor:
    """``(copies, d, d)`` matrices: ``aI + bJ`` on each rotary pair (``z = a + bi``, pairs
    ``(i, i + r/2)`` for the half layout, ``(2i, 2i + 1)`` interleaved) and ``rest`` (GL) on the
    dimensions after the first ``r = 2·z.shape[-1]``.

    >>> m = rope_matrix(torch.tensor([[2 + 1j]]), "half", 3, torch.tensor([[[5.0]]]))
    >>> m[0]
    tensor([[ 2., -1.,  0.],
            [ 1.,  2.,  0.],
            [ 0.,  0.,  5.]], dtype=torch.float64)
    """
    c, p = z.shape
    m = torch.zeros(c, d, d, dtype=torch.float64)
    idx = torch.arange(p)
    i, j = (idx, idx + p) if layout == "half" else (2 * idx, 2 * idx + 1)
    a, b = z.real.double(), z.imag.double()
    m[:, i, i], m[:, j, j], m[:, i, j], m[:, j, i] = a, a, -b, b
    if rest is not None:
        m[:, 2 * p :, 2 * p :] = rest.double()
    else:  # the unrotated dimensions stay put
        m[:, 2 * p :, 2 * p :] = torch.eye(d - 2 * p, dtype=torch.float64)
    return m


@dataclass(frozen=True)
class HeadMaps:
    """Per-projection head permutations (new head ``i`` reads old head ``perm[i]``) and
    per-head matrices (applied after the permutation): queries, keys, values and the output's
    columns (``mo`` are the value maps of each query head, inverted by the action)."""

    q_perm: torch.Tensor | None
    kv_perm: torch.Tensor | None
    mq: torch.Tensor | None
    mk: torch.Tensor | None
    mv: torch.Tensor | None
    mo: torch.Tensor | None


def head_maps(node: Node, internal: dict[str, torch.Tensor], d_qk: int) -> HeadMaps:
    """The maps of one element's internal values (see :func:`attention_internal`)."""
    _hq, hkv, n = _heads(node)
    pi, sigma = internal.get("heads"), internal.get("qheads")
    q_perm = pi
    if n > 1:
        pi_ = torch.arange(hkv) if pi is None else pi
        sig = torch.arange(n).expand(hkv, n) if sigma is None else sigma
        q_perm = (pi_[:, None] * n + sig).reshape(-1)
    z, gl = internal.get("qk_rot"), internal.get("qk")
    layout = node.attrs.get("rope_layout")
    if layout and (z is not None or gl is not None):  # either part may be given alone
        if z is None:
            z = torch.ones(hkv, int(node.attrs["rope_dims"]) // 2, dtype=torch.complex128)
        mq = rope_matrix(z, str(layout), d_qk, gl)
    else:
        mq = gl
    mk = None if mq is None else torch.linalg.inv(mq).transpose(-1, -2)
    mv = internal.get("vo")
    if n > 1:
        return HeadMaps(q_perm, pi, _expand(mq, n), mk, mv, _expand(mv, n))
    return HeadMaps(q_perm, pi, mq, mk, mv, mv)


def _expand(m: torch.Tensor | None, n: int) -> torch.Tensor | None:
    return None if m is None else m.repeat_interleave(n, dim=0)
