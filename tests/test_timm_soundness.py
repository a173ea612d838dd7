"""The twelve timm models issue 13 found unsound (BatchNormAct2d and ScaledStdConv2d read as
their base classes) derive a sound group: random weights and running statistics, float64,
eval mode, one 64 × 64 image, never a download. A cheap subset runs in CI, all twelve behind
``slow``."""

from __future__ import annotations

import pytest

from symlab.testing._torchvision_compat import ensure_torchvision_importable
from symlab.testing.zoo_models import ZooCase, _build_timm
from symlab.testing.zoo_report import run_case

ensure_torchvision_importable()  # timm imports torchvision, whose CUDA ops cannot load here
pytest.importorskip("timm")

ISSUE_13 = [
    "resnext26ts", "nf_resnet26", "mobilenetv3_small_100", "mobilenetv2_050", "efficientnet_b0",
    "mnasnet_050", "lcnet_050", "ghostnet_100", "rexnet_100", "regnetx_002", "regnety_002",
    "cspresnet50",
]  # fmt: skip
CHEAP = ["lcnet_050", "regnetx_002", "mobilenetv3_small_100"]


def _check(name: str) -> None:
    r = run_case(ZooCase("timm", name, lambda: _build_timm(name)), samples=3, time_limit=None)
    assert r.outcome == "derived and sound", (r.outcome, r.detail)


@pytest.mark.parametrize("name", CHEAP)
def test_issue_13_timm_models_cheap(name: str) -> None:
    _check(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ISSUE_13 if n not in CHEAP])
def test_issue_13_timm_models(name: str) -> None:
    _check(name)


def test_control_a_wrong_rule_makes_a_timm_model_unsound(monkeypatch):
    """Negative control: with ReLU claimed linear, the check finds regnetx_002 unsound."""
    from symlab.symmetry import builtin_rules
    from symlab.symmetry.spec import ANY

    monkeypatch.setitem(builtin_rules.ACTIVATION_ADMITS, "relu", ANY)
    r = run_case(ZooCase("timm", "regnetx_002", lambda: _build_timm("regnetx_002")), samples=3)
    assert r.outcome == "unsound", (r.outcome, r.detail)
