"""Make ``import torchvision`` work where its compiled ops do not load.

torch 2.13's only torchvision wheel (0.28.0) is built against CUDA; beside the CPU build of
torch its ``_C.so`` fails to load, and ``import torchvision`` (which ``timm`` and
``transformers`` import too) then raises ``RuntimeError: operator torchvision::nms does not
exist``: ``torchvision/_meta_registrations.py`` registers fake kernels for ``nms`` and ``qnms``
without checking that the library loaded. :func:`ensure_torchvision_importable` tries to load
the library first and, where it cannot, declares those two op schemas (no kernels) with
``torch.library`` so that the import goes through. The classification models, which are plain
``nn.Module`` code, then work; calling ``torchvision.ops.nms`` raises torch's "no kernel"
error, as it should. Where the library loads (a matching install) nothing is declared.
"""

from __future__ import annotations

import importlib.util
import sys
from glob import glob

import torch

__all__ = ["ensure_torchvision_importable"]

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBRARY: list[torch.library.Library] = []  # kept alive: the declarations last as long as it


def ensure_torchvision_importable() -> bool:
    """Declare torchvision's ``nms``/``qnms`` schemas when its compiled library cannot load;
    True if anything was declared. Call it before the first ``import torchvision`` (or
    ``timm``, ``transformers``); a no-op without torchvision, after the import, or twice.

    >>> ensure_torchvision_importable() in (True, False)
    True
    """
    if _LIBRARY or "torchvision" in sys.modules:
        return False
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    for path in sorted(p for f in spec.submodule_search_locations for p in glob(f"{f}/_C*.so")):
        try:
            torch.ops.load_library(path)
            return False  # it loads: torchvision's own import will find it loaded
        except OSError:
            break
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name, schema in _SCHEMAS.items():
        try:
            torch._C._get_schema(f"torchvision::{name}", "")
        except RuntimeError:
            lib.define(schema)
    _LIBRARY.append(lib)
    return True
