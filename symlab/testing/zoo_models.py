"""Real models no one here wrote, built tiny: the cases of the coverage census.

Each :class:`ZooCase` builds one model with random weights from a tiny configuration — nothing
is downloaded (``HF_HUB_OFFLINE=1``) — and the example input it is called on:

* **transformers**: every model type of ``MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES``
  (text models), as its base model (``AutoModel.from_config``) and its sequence-classification
  head, from ``AutoConfig.for_model(model_type, **tiny)``; called on ``input_ids`` and an
  ``attention_mask`` with padding;
* **timm**: one small model per module of ``timm.list_models`` (a family),
  ``timm.create_model(name, pretrained=False)`` on 64 × 64 images where it accepts them;
* **torchvision**: the smallest classification model of each family of
  ``torchvision.models.list_models``.

A model over :data:`MAX_PARAMS` parameters (3 M for text, 30 M for vision; counted on the meta
device, before any memory is spent) is not built. Which libraries are installed decides which
cases exist.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from symlab.frontend.inputs import ExampleInputs
from symlab.testing._torchvision_compat import ensure_torchvision_importable

__all__ = ["FAMILIES", "MAX_PARAMS", "ZooCase", "installed_families", "zoo_cases"]

MAX_PARAMS = {"text": 3_000_000, "vision": 30_000_000}
FAMILIES = ("transformers: base model", "transformers: sequence classification", "timm",
            "torchvision")  # fmt: skip
_LIBRARY = {"transformers": "transformers", "timm": "timm", "torchvision": "torchvision"}

TINY_TEXT: dict[str, Any] = {
    "vocab_size": 96, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
    "num_key_value_heads": 2, "intermediate_size": 32, "max_position_embeddings": 64,
    "num_labels": 3, "pad_token_id": 0, "d_model": 16, "n_embd": 16, "n_layer": 2, "n_head": 2,
    "num_layers": 2, "num_heads": 2, "d_ff": 32, "d_kv": 8, "encoder_layers": 2,
    "decoder_layers": 2, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
    "encoder_ffn_dim": 32, "decoder_ffn_dim": 32, "embedding_size": 16, "n_positions": 64,
    "ffn_dim": 32, "n_inner": 32, "num_decoder_layers": 2, "type_vocab_size": 2,
    "layer_norm_eps": 1e-30, "rms_norm_eps": 1e-30, "layer_norm_epsilon": 1e-30,
    "norm_eps": 1e-30, "initializer_range": 0.2, "use_cache": False,
}  # fmt: skip
"""The tiny text configuration: every common spelling of each size (unused ones are ignored),
normalisation eps negligible so that invariance is checked to float64 rounding, and no cache of
keys and values (a ``DynamicCache`` output, which torch.export cannot return)."""


@dataclass(frozen=True)
class ZooCase:
    """One census case: ``build()`` returns ``(model, example inputs)``.

    >>> case = ZooCase("mine", "mlp", lambda: (nn.Linear(3, 2), ExampleInputs((torch.ones(1, 3),))))
    >>> case.build()[0].out_features
    2
    """

    family: str
    name: str
    build: Callable[[], tuple[nn.Module, ExampleInputs]]


def installed_families() -> list[str]:
    """The census families whose library is installed.

    >>> set(installed_families()) <= set(FAMILIES)
    True
    """
    have = {k for k, mod in _LIBRARY.items() if importlib.util.find_spec(mod) is not None}
    return [f for f in FAMILIES if f.split(":")[0] in have]


def zoo_cases(
    families: list[str] | None = None, limit: int | None = None, names: list[str] | None = None
) -> list[ZooCase]:
    """The cases of ``families`` (default: all installed), at most ``limit`` per family, spread
    evenly over each family's list (sorted by name) when limited; only those called ``names``
    if given.

    >>> zoo_cases(["no such family"])
    []
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    chosen = installed_families() if families is None else families
    out: list[ZooCase] = []
    for family in chosen:
        if family not in installed_families():
            continue
        cases = sorted(_CASES[family](), key=lambda c: c.name)
        if names is not None:
            cases = [c for c in cases if c.name in names]
        if limit is not None and len(cases) > limit:
            step = len(cases) / limit
            cases = [cases[int(i * step)] for i in range(limit)]
        out.extend(cases)
    return out


# -- transformers -----------------------------------------------------------------------------
def _transformers_cases(head: str) -> Iterator[ZooCase]:
    ensure_torchvision_importable()
    from transformers.models.auto import modeling_auto

    family = "transformers: base model" if head == "base" else \
        "transformers: sequence classification"  # fmt: skip
    for model_type in modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        yield ZooCase(family, model_type, lambda t=model_type: _build_text(t, head))


def _build_text(model_type: str, head: str) -> tuple[nn.Module, ExampleInputs]:
    import transformers

    transformers.logging.set_verbosity_error()
    cfg = transformers.AutoConfig.for_model(model_type, **TINY_TEXT)
    for sub in ("text_config", "encoder", "decoder"):
        inner = getattr(cfg, sub, None)
        if isinstance(inner, transformers.PretrainedConfig):
            for k, v in TINY_TEXT.items():
                if hasattr(inner, k):
                    setattr(inner, k, v)
    auto = transformers.AutoModel if head == "base" else \
        transformers.AutoModelForSequenceClassification  # fmt: skip
    model = _capped(lambda: auto.from_config(cfg), "text")
    vocab = int(getattr(cfg, "vocab_size", TINY_TEXT["vocab_size"]) or TINY_TEXT["vocab_size"])
    g = torch.Generator().manual_seed(0)
    special = {getattr(cfg, k, None) for k in ("pad_token_id", "eos_token_id", "bos_token_id")}
    ids = torch.randint(0, min(vocab, TINY_TEXT["vocab_size"]), (2, 7), generator=g)
    for s in special:  # no special token inside the text, an end-of-sequence token at its end
        if isinstance(s, int):
            ids[ids == s] = next(i for i in range(1, vocab) if i not in special)
    eos = getattr(cfg, "eos_token_id", None)
    if isinstance(eos, int) and 0 <= eos < vocab:
        ids[:, -1] = eos
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding in the second row
    return model, ExampleInputs((), {"input_ids": ids, "attention_mask": mask})


def _capped(make: Callable[[], nn.Module], kind: str = "vision") -> nn.Module:
    """``make()``, after counting its parameters on the meta device (too large: ValueError)."""
    n = _count(make)
    if n > MAX_PARAMS[kind]:
        raise ValueError(f"{n} parameters at the smallest configuration (> {MAX_PARAMS[kind]})")
    torch.manual_seed(0)
    return make()


def _count(make: Callable[[], nn.Module]) -> int:
    """The number of parameters of ``make()``, built on the meta device where it can be."""
    try:
        with torch.device("meta"):
            return sum(p.numel() for p in make().parameters())
    except (NotImplementedError, RuntimeError):  # an initialiser that reads values
        return sum(p.numel() for p in make().parameters())


# -- timm -------------------------------------------------------------------------------------
_SMALL = re.compile(r"(atto|femto|pico|nano|tiny|xxs|xs|small|mini|_s\b|18|_b0|050|lite0|_t\b)")


def _timm_cases() -> Iterator[ZooCase]:
    ensure_torchvision_importable()
    import timm

    for module in sorted(timm.list_modules()):
        names = timm.list_models(module=module)
        if not names:
            continue
        small = [n for n in names if _SMALL.search(n)] or names
        name = min(small, key=lambda n: (len(n), n))
        yield ZooCase("timm", name, lambda n=name: _build_timm(n))


def _build_timm(name: str) -> tuple[nn.Module, ExampleInputs]:
    import timm

    try:
        model = _capped(lambda: timm.create_model(name, pretrained=False, num_classes=5,
                                                   img_size=64))  # fmt: skip
        size = 64
    except (TypeError, AssertionError, ValueError, RuntimeError):
        model = _capped(lambda: timm.create_model(name, pretrained=False, num_classes=5))
        size = int(model.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
        if size <= 64 or _runs(model, 64):
            size = 64
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    return model, ExampleInputs((x,))


def _runs(model: nn.Module, size: int) -> bool:
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size))
        return True
    except Exception:  # any failure: the model needs its own size
        return False


# -- torchvision ------------------------------------------------------------------------------
def _torchvision_cases() -> Iterator[ZooCase]:
    ensure_torchvision_importable()
    import torchvision.models as tvm

    by_family: dict[str, list[str]] = {}
    for name in tvm.list_models(module=tvm):
        by_family.setdefault(_torchvision_family(name), []).append(name)
    for names in by_family.values():
        name = min(names, key=lambda n: (_tv_rank(n), len(n), n))
        yield ZooCase("torchvision", name, lambda n=name: _build_torchvision(n))


_TV_SMALL = (
    "x0_5",
    "0_5",
    "1_0",
    "_t$",
    "_tiny",
    "_small",
    "_s$",
    "400mf",
    "18$",
    "11$",
    "121$",
    "b0$",
    "50_2$",
    "50_32x4d",
    "b_16",
)  # the smallest model of a family, first


def _tv_rank(name: str) -> int:
    return next((i for i, p in enumerate(_TV_SMALL) if re.search(p, name)), len(_TV_SMALL))


def _torchvision_family(name: str) -> str:
    """``resnet18`` → ``resnet``, ``mobilenet_v3_small`` → ``mobilenet_v3``, ``regnet_x_8gf`` →
    ``regnet_x``, ``wide_resnet50_2`` → ``wide_resnet``."""
    head, *rest = name.split("_")
    parts = [re.sub(r"\d.*$", "", head)]
    for p in rest:
        if re.fullmatch(r"v\d|x|y", p):
            parts.append(p)
        elif re.sub(r"\d.*$", "", p) == "resnet":
            parts.append("resnet")
        else:
            break
    return "_".join(parts)


def _build_torchvision(name: str) -> tuple[nn.Module, ExampleInputs]:
    import torchvision.models as tvm

    kwargs: dict[str, Any] = {"weights": None, "num_classes": 5}
    if name.startswith("inception") or name.startswith("googlenet"):
        kwargs |= {"aux_logits": False, "init_weights": False}
    model = _capped(lambda: tvm.get_model(name, **kwargs))
    size = 64 if _runs(model, 64) else 224
    if name.startswith("inception"):
        size = 299 if not _runs(model, 96) else 96
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    return model, ExampleInputs((x,))


_CASES: dict[str, Callable[[], Iterator[ZooCase]]] = {
    "transformers: base model": lambda: _transformers_cases("base"),
    "transformers: sequence classification": lambda: _transformers_cases("seq"),
    "timm": _timm_cases,
    "torchvision": _torchvision_cases,
}
