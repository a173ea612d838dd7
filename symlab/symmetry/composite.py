"""The map of a block tensor (a concatenation, or a flatten after a convolution) from the maps
of its parts."""

from __future__ import annotations

import torch

from symlab.symmetry.derive import Structure
from symlab.symmetry.transform import Transform

__all__ = ["concat_transform"]


def concat_transform(parts: list[Transform], st: Structure, name: str) -> Transform:
    """The map of a block tensor: parts side by side, each unit repeated ``repeat`` times."""
    if all(p.is_identity for p in parts):
        return Transform()
    r = st.repeat.get(name, 1)
    widths = [int(st.graph.node(q).width) for q in st.composite[name]]
    perm, scale, shift, offset = [], [], [], 0
    any_gl = any(p.scale is not None and p.scale.ndim == 2 for p in parts)
    for p, n in zip(parts, widths, strict=True):
        idx = p.perm if p.perm is not None else torch.arange(n)
        perm.append(((idx * r)[:, None] + torch.arange(r)).reshape(-1) + offset)
        s = p.scale if p.scale is not None else torch.ones(n, dtype=torch.float64)
        if any_gl:
            m = torch.diag(s) if s.ndim == 1 else s.contiguous()  # inverses are column-major
            scale.append(torch.kron(m, torch.eye(r, dtype=m.dtype)))  # kron needs contiguity
        else:
            scale.append(s.repeat_interleave(r))
        c = p.shift if p.shift is not None else torch.zeros(n, dtype=torch.float64)
        shift.append(c.repeat_interleave(r))
        offset += n * r
    return Transform(
        torch.cat(perm),
        torch.block_diag(*scale) if any_gl else torch.cat(scale),
        torch.cat(shift) if any(p.shift is not None for p in parts) else None,
    )
