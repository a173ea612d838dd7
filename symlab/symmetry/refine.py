"""Colour refinement over units, to find which units fixed data cannot tell apart.

Units of each permutation space start with one colour; each round a unit's new colour is its old
colour together with, for every fixed tensor touching its space, the multiset of
``(colour of the other index, value)`` along its slice (1-dimensional Weisfeiler–Leman). The
stable colouring is a necessary condition for an automorphism. Inside each colour class, units
are then grouped by *verified transpositions* — swapping two units leaves every fixed tensor
unchanged — so every permutation returned is a proven automorphism of the fixed data (sound);
for random fixed data the result is trivial, for data that do not tell units apart it is the
full symmetric group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["refine_units"]

Item = tuple[np.ndarray, tuple[str | None, ...]]


def _axis_colours(
    axes: tuple[str | None, ...], shape: tuple[int, ...], colours: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    out = []
    for ax, n in zip(axes, shape, strict=True):
        if ax is not None and ax in colours:
            out.append(colours[ax].astype(np.float64))
        else:  # an axis that never moves: every index is its own colour
            out.append(-1.0 - np.arange(n, dtype=np.float64))
    return out


def _signature(
    x: np.ndarray, axis: int, axes: tuple[str | None, ...], colours: Mapping[str, np.ndarray]
) -> np.ndarray:
    """Per unit along ``axis``: an id of the sorted multiset of (other-index colours, value)."""
    cols = _axis_colours(axes, x.shape, colours)
    xa = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    others = [c for i, c in enumerate(cols) if i != axis]
    if others:
        grids = np.meshgrid(*others, indexing="ij")
        key = np.stack([g.reshape(-1) for g in grids], 0)  # (k, m)
        combined = np.unique(key.T, axis=0, return_inverse=True)[1].reshape(-1)
    else:
        combined = np.zeros(1)
    keys = np.broadcast_to(combined.astype(np.float64), xa.shape)
    order = np.lexsort((xa, keys), axis=1) if xa.shape[1] else np.zeros_like(xa, dtype=int)
    rows = np.concatenate(
        [np.take_along_axis(keys, order, 1), np.take_along_axis(xa, order, 1)], axis=1
    )
    if sum(a == axes[axis] for a in axes) > 1:  # the same space on several axes: add diagonal
        idx = np.arange(x.shape[axis])
        diag_axes = [i for i, a in enumerate(axes) if a == axes[axis]]
        sel = tuple(idx if i in diag_axes else 0 for i in range(x.ndim))
        rows = np.concatenate([rows, x[sel][:, None]], axis=1)
    return np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1)


def _swap_ok(items: Sequence[Item], space: str, u: int, v: int) -> bool:
    for x, axes in items:
        hits = [i for i, a in enumerate(axes) if a == space]
        if not hits:
            continue
        if len(hits) == 1:
            a = hits[0]
            if not np.array_equal(np.take(x, u, axis=a), np.take(x, v, axis=a)):
                return False
            continue
        perm = np.arange(x.shape[hits[0]])
        perm[[u, v]] = perm[[v, u]]
        y = x
        for a in hits:
            y = np.take(y, perm, axis=a)
        if not np.array_equal(x, y):
            return False
    return True


def refine_units(sizes: Mapping[str, int], items: Sequence[Item]) -> dict[str, list[list[int]]]:
    """Blocks of interchangeable units per space named in ``items``' axes.

    ``sizes`` maps each movable space to its width; ``items`` are fixed arrays with, per axis,
    the space it runs along (or None). Returns, for every space touched by an item, a partition
    of its units into blocks whose every permutation preserves all items.

    >>> x = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]])
    >>> refine_units({"h": 3}, [(x, ("h", None))])["h"]
    [[0, 1], [2]]
    """
    touched = sorted({a for _, axes in items for a in axes if a is not None and a in sizes})
    colours = {k: np.zeros(sizes[k], dtype=np.int64) for k in touched}
    while True:
        new = {}
        for k in touched:
            feats = [colours[k]]
            for x, axes in items:
                for i, a in enumerate(axes):
                    if a == k:
                        feats.append(_signature(x, i, axes, colours))
            new[k] = np.unique(np.stack(feats, 1), axis=0, return_inverse=True)[1].reshape(-1)
        done = all(len(np.unique(new[k])) == len(np.unique(colours[k])) for k in touched)
        colours = new
        if done:
            break
    blocks: dict[str, list[list[int]]] = {}
    for k in touched:
        relevant = [it for it in items if k in it[1]]
        out: list[list[int]] = []
        for c in np.unique(colours[k]):
            members = np.flatnonzero(colours[k] == c).tolist()
            sub: list[list[int]] = []
            for u in members:
                for blk in sub:
                    if _swap_ok(relevant, k, blk[0], u):
                        blk.append(u)
                        break
                else:
                    sub.append([u])
            out.extend(sub)
        blocks[k] = sorted(out)
    return blocks
