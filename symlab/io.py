"""Save and load derived symmetry groups and alignments, without pickle.

A file is one safetensors file: its tensors are the numbers (the fixed data the derivation
read, an alignment's permutations and group element), its metadata is JSON (the architecture
graph, the list of factors, the format and symlab version). Loading rebuilds the graph and
derives the group from it again — deterministic, and much cheaper than tracing the model — and
refuses the file when this symlab derives different factors from it (a fail-closed check, so a
group saved by an older symlab can never act differently without a word).

>>> import tempfile, pathlib, torch, symlab as sl
>>> net = sl.nn.MLP([3, 4, 2], seed=0); G = sl.symmetries(net)
>>> path = save_group(G, pathlib.Path(tempfile.mkdtemp()) / "mlp.safetensors")
>>> H = load_group(path, model=net)
>>> h, k = G.sample(0), H.sample(0)
>>> all(torch.equal(G.act(h, net.state_dict())[n], H.act(k, net.state_dict())[n])
...     for n in net.state_dict())
True
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from symlab.align.alignment import Alignment
from symlab.errors import (
    ArchitectureMismatchError,
    ArgumentError,
    FileFormatError,
    StateDictError,
)
from symlab.graph.serialize import graph_from_dict, graph_to_dict
from symlab.symmetry.group import SymmetryGroup

__all__ = ["group_digest", "load_alignment", "load_group", "save_alignment", "save_group"]

GROUP_FORMAT = "symlab.SymmetryGroup"
ALIGNMENT_FORMAT = "symlab.Alignment"
VERSION = 1


def _factor_list(G: SymmetryGroup) -> list[list[Any]]:
    return [
        [f.name, f.kind, str(f.size), f.space, [list(a) for a in f.axes],
         None if f.blocks is None else [list(b) for b in f.blocks], f.exact, f.copies,
         f.internal]
        for f in G.factors
    ]  # fmt: skip


def group_digest(G: SymmetryGroup) -> str:
    """SHA-256 of what defines ``G``: its graph, fixed data and factors. Two groups with equal
    digests act identically.

    >>> import symlab as sl
    >>> G = sl.symmetries(sl.nn.MLP([3, 4, 2]))
    >>> group_digest(G) == group_digest(sl.symmetries(sl.nn.MLP([3, 4, 2], seed=1)))
    True
    >>> group_digest(G) == group_digest(sl.symmetries(sl.nn.MLP([3, 5, 2])))
    False
    """
    h = hashlib.sha256()
    h.update(json.dumps([graph_to_dict(G.graph), _factor_list(G)], sort_keys=True).encode())
    for key in sorted(G.fixed_data):
        t = G.fixed_data[key].contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _group_parts(G: SymmetryGroup) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    meta = {
        "graph": json.dumps(graph_to_dict(G.graph)),
        "factors": json.dumps(_factor_list(G)),
        "digest": group_digest(G),
    }
    return meta, {f"fixed/{k}": v for k, v in G.fixed_data.items()}


def _symlab_version() -> str:
    try:
        return importlib.metadata.version("symlab")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


def _write(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, str]
           ) -> Path:  # fmt: skip
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ArgumentError(f"path {str(path)!r} must end in .safetensors")
    meta = {"version": str(VERSION), "symlab": _symlab_version(), **meta}
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)  # the file appears only once complete
    except OSError as err:
        raise ArgumentError(
            f"cannot write {str(path)!r} ({err.strerror or err}); pass a path you can write to"
        ) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    return path


def _read(path: str | os.PathLike[str], fmt: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError) as err:
        raise FileFormatError(f"{str(path)!r} is not a readable safetensors file ({err})") from None
    if meta.get("format") != fmt:
        found = meta.get("format", "no symlab format")
        raise FileFormatError(f"{str(path)!r} holds {found!r}, not a saved {fmt.split('.')[-1]}")
    if meta.get("version") != str(VERSION):
        raise FileFormatError(
            f"{str(path)!r} has format version {meta.get('version')!r}; this symlab reads "
            f"version {VERSION} (saved by symlab {meta.get('symlab', '?')})"
        )
    return meta, tensors


def save_group(G: SymmetryGroup, path: str | os.PathLike[str]) -> Path:
    """Write ``G`` to ``path`` (``.safetensors``): its graph, factors and fixed data.

    >>> import tempfile, pathlib, symlab as sl
    >>> G = sl.symmetries(sl.nn.MLP([3, 4, 2]))
    >>> save_group(G, pathlib.Path(tempfile.mkdtemp()) / "g.safetensors").name
    'g.safetensors'
    """
    if not isinstance(G, SymmetryGroup):
        raise ArgumentError(f"save_group: G must be a SymmetryGroup, got {type(G).__name__}")
    meta, tensors = _group_parts(G)
    return _write(path, tensors, {"format": GROUP_FORMAT, **meta})


def _group_from(meta: Mapping[str, str], tensors: Mapping[str, torch.Tensor], path: Any
                ) -> SymmetryGroup:  # fmt: skip
    try:
        graph = graph_from_dict(json.loads(meta["graph"]))
        saved_factors = json.loads(meta["factors"])
    except (KeyError, json.JSONDecodeError) as err:
        raise FileFormatError(f"{str(path)!r}: the saved group is incomplete ({err})") from None
    fixed = {k.removeprefix("fixed/"): v for k, v in tensors.items() if k.startswith("fixed/")}
    G = SymmetryGroup.from_graph(graph, fixed if fixed else None)
    if _factor_list(G) != saved_factors or group_digest(G) != meta.get("digest"):
        raise FileFormatError(
            f"{str(path)!r} was saved by symlab {meta.get('symlab', '?')}, and this symlab "
            "derives a different group from its graph; derive the group again from the model "
            "(sl.symmetries) and save it anew"
        )
    return G


def _check_model(G: SymmetryGroup, model: nn.Module, path: Any) -> None:
    """Refuse a model of another architecture than the one ``G`` was derived from."""
    from symlab.nn.graphnet import GraphNet

    where = f"{str(path)!r} holds the symmetry group of another architecture"
    if isinstance(model, GraphNet) and model.graph != G.graph:
        raise ArchitectureMismatchError(f"{where}: {type(model).__name__}'s graph differs")
    sd = model.state_dict()
    try:
        G.check_state_dict(sd)
    except StateDictError as err:
        raise ArchitectureMismatchError(f"{where} than {type(model).__name__}: {err}") from None
    for key, value in G.fixed_data.items():
        if not torch.equal(sd[key].detach().cpu(), value):
            raise ArchitectureMismatchError(
                f"{where}: the fixed data {key!r} of {type(model).__name__} differ from the "
                "file's (another mask or gate seed?)"
            )


def load_group(path: str | os.PathLike[str], model: nn.Module | None = None) -> SymmetryGroup:
    """The group :func:`save_group` wrote; with ``model``, check that it is the model's.

    The model is checked by its parameters (names, shapes, fixed data; symlab MLPs by their
    whole graph), not by its code: to prove the loaded group on the model, run
    ``sl.check_invariance(model, G, x)``.

    Raises:
        FileFormatError: not a saved group, damaged, or derived differently by this symlab.
        ArchitectureMismatchError: ``model`` is not of the architecture the file holds.

    >>> import tempfile, pathlib, symlab as sl
    >>> path = save_group(sl.symmetries(sl.nn.MLP([3, 4, 2])),
    ...                   pathlib.Path(tempfile.mkdtemp()) / "g.safetensors")
    >>> load_group(path).order
    24
    >>> try:
    ...     load_group(path, model=sl.nn.MLP([3, 5, 2]))
    ... except sl.errors.ArchitectureMismatchError as err:
    ...     print("another architecture" in str(err))
    True
    """
    meta, tensors = _read(path, GROUP_FORMAT)
    G = _group_from(meta, tensors, path)
    if model is not None:
        _check_model(G, model, path)
    return G


def _json_info(info: Mapping[str, Any]) -> str:
    def plain(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return v.tolist()
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if v is None or isinstance(v, bool | int | float | str):
            return v
        return repr(v)

    return json.dumps(plain(dict(info)))


def save_alignment(al: Alignment, path: str | os.PathLike[str]) -> Path:
    """Write ``al`` to ``path`` (``.safetensors``) with its group, so that the file stands on its
    own. Tensors in ``al.info`` are stored as lists, other objects by their ``repr``.

    >>> import tempfile, pathlib, torch, symlab as sl
    >>> net = sl.nn.MLP([3, 4, 2], seed=0); G = sl.symmetries(net); sd = net.state_dict()
    >>> moved = G.act(G.element({"P[layers.0.linear]": torch.tensor([1, 0, 3, 2])}), sd)
    >>> al = sl.align.weight_matching(sd, moved, G)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.safetensors"
    >>> back = load_alignment(save_alignment(al, path))
    >>> back.perms["P[layers.0.linear]"].tolist(), back.method
    ([1, 0, 3, 2], 'weight_matching')
    """
    if not isinstance(al, Alignment):
        raise ArgumentError(
            f"save_alignment: al must be an Alignment, got {type(al).__name__} (an optimal "
            "transport alignment: save al.to_alignment())"
        )
    meta, tensors = _group_parts(al.group)
    tensors |= {f"perm/{k}": v for k, v in al.perms.items()}
    tensors |= {f"element/{k}": v for k, v in al.element.values.items()}
    meta |= {
        "format": ALIGNMENT_FORMAT,
        "objective": json.dumps(al.objective),
        "trace": json.dumps(list(al.trace)),
        "method": al.method,
        "info": _json_info(al.info),
        "perms": json.dumps(list(al.perms)),
    }
    return _write(path, tensors, meta)


def load_alignment(path: str | os.PathLike[str], group: SymmetryGroup | None = None) -> Alignment:
    """The alignment :func:`save_alignment` wrote, in ``group`` when given (which must be the
    group it was found in) or in the group saved with it.

    Raises:
        FileFormatError: not a saved alignment, or damaged.
        ArchitectureMismatchError: ``group`` is not the alignment's group.

    >>> import tempfile, pathlib, torch, symlab as sl
    >>> net = sl.nn.MLP([3, 4, 2]); G = sl.symmetries(net); sd = net.state_dict()
    >>> path = save_alignment(sl.align.weight_matching(sd, sd, G),
    ...                       pathlib.Path(tempfile.mkdtemp()) / "a.safetensors")
    >>> load_alignment(path, G).group is G
    True
    """
    meta, tensors = _read(path, ALIGNMENT_FORMAT)
    if group is None:
        G = _group_from(meta, tensors, path)
    elif group_digest(group) != meta.get("digest"):
        raise ArchitectureMismatchError(
            f"{str(path)!r} holds an alignment in another symmetry group than the one given "
            "(another architecture or other fixed data); pass the group it was found in, or "
            "none to use the group saved with it"
        )
    else:
        G = group
    try:
        names = json.loads(meta["perms"])
        element = G.element({f.name: tensors[f"element/{f.name}"] for f in G.factors})
        perms = {k: tensors[f"perm/{k}"] for k in names}
        return Alignment(
            G, perms, element, float(json.loads(meta["objective"])),
            [float(v) for v in json.loads(meta["trace"])], meta["method"],
            json.loads(meta["info"]),
        )  # fmt: skip
    except (KeyError, json.JSONDecodeError, TypeError, ValueError) as err:
        raise FileFormatError(f"{str(path)!r}: the saved alignment is incomplete ({err})") from None
