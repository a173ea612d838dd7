"""The coverage census of real models (symlab.testing.model_zoo_report, ``symlab coverage``):
a small fixed sample in CI — every model derived and sound or refused with a named error, never
a crash or an unsound group — and the whole census behind the ``slow`` marker."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from symlab.frontend.inputs import ExampleInputs
from symlab.testing.zoo_models import ZooCase, installed_families
from symlab.testing.zoo_report import OUTCOMES, ZooReport, model_zoo_report, run_case

#: (family, model) that are derived and sound today: a regression here is a bug.
DERIVED = [
    ("transformers: base model", "megatron-bert"),
    ("transformers: base model", "mpt"),
    ("transformers: sequence classification", "data2vec-text"),
    ("torchvision", "squeezenet1_0"),
    ("timm", "deit_tiny_patch16_224"),
]
#: Refused today (with a named error); may become derived.
OTHERS = [("transformers: base model", "llama"), ("torchvision", "efficientnet_b0")]


def test_small_census_has_no_crash_and_nothing_unsound() -> None:
    assert set(installed_families()) >= {f for f, _ in DERIVED}  # the models extra installs them
    report = ZooReport()
    for family, name in DERIVED + OTHERS:
        report.results += model_zoo_report([family], names=[name], samples=2).results
    assert len(report.results) == len(DERIVED + OTHERS)
    table = report.table()
    assert not [r for r in report.results if r.outcome not in OUTCOMES[:2]], table
    derived = {(r.family, r.name) for r in report.results if r.outcome == "derived and sound"}
    assert derived >= set(DERIVED), table
    for r in report.results:
        if r.outcome == "refused":
            assert r.detail.split(":")[0].endswith("Error"), r.detail  # a named symlab error


class _Flip(nn.Module):
    """y = relu(W2 relu(W1 x)) with a wrong rule registered nowhere: used to show that the
    census's own check sees an unsound group (negative control)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def test_the_census_check_sees_an_unsound_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: a group that wrongly claims tanh-like sign flips for a ReLU layer is
    reported unsound, and a crash while deriving is reported as a crash."""
    from symlab.symmetry import builtin_rules
    from symlab.symmetry.spec import Admits, Mag, Sign

    case = ZooCase("toy", "relu-mlp", lambda: (_Flip(), ExampleInputs((torch.randn(5, 3),))))
    assert run_case(case).outcome == "derived and sound"
    monkeypatch.setitem(builtin_rules.ACTIVATION_ADMITS, "relu", Admits(Mag.NONE, Sign.DIAG))
    assert run_case(case).outcome == "unsound"
    monkeypatch.setattr("symlab.testing.zoo_report.symmetries", lambda *a: [][1])
    assert run_case(case).outcome == "crash"


class _ByDtype(nn.Module):
    """A model whose forward differs by dtype: float64 a ReLU, float32 ``how``."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how, self.fc1, self.fc2 = how, nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if x.dtype == torch.float64:
            return self.fc2(torch.relu(h))
        return self.fc2(torch.tanh(h) if self.how == "tanh" else torch.rsqrt(h.abs() + 1))


@pytest.mark.parametrize(
    "how,outcome",
    [("tanh", "derived and sound"), ("rsqrt", "refused")],
    ids=["other-group", "refused"],
)
def test_the_census_derives_in_float32_too(
    how: str, outcome: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The census checks in float64 but derives the model as users build it, in float32, as
    well: a refusal there (the Llama-family RMSNorm in float32 was one, unseen by a float64-only
    census) is reported; a different group is noted and checked on the float32 model, where a
    wrong one is reported unsound (negative control: tanh given scalings and signs)."""
    from symlab.symmetry import builtin_rules
    from symlab.symmetry.spec import Admits, Mag, Sign

    case = ZooCase("toy", how, lambda: (_ByDtype(how), ExampleInputs((torch.randn(5, 3),))))
    r = run_case(case)
    assert r.outcome == outcome, r.detail
    assert "float32" in r.detail
    if how == "tanh":
        monkeypatch.setitem(builtin_rules.ACTIVATION_ADMITS, "tanh", Admits(Mag.DIAG, Sign.DIAG))
        r = run_case(case)
        assert r.outcome == "unsound" and "in float32" in r.detail, r.detail


@pytest.mark.slow
def test_full_census() -> None:
    """The whole census (every installed family): never a crash, never an unsound group; the
    table (with the fraction derived and sound per family) is printed."""
    report = model_zoo_report(progress=True)
    print(report.table())
    assert not [r for r in report.results if r.outcome in ("crash", "unsound")], report.table()
