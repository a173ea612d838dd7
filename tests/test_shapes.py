"""symlab.frontend.shapes: the same node metadata as torch.fx's ShapeProp, on fake tensors (no
values computed, nothing of the model written) or for real, convolutions skipped only where no
node looks at values."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from symlab.frontend.shapes import graph_module, record_shapes, shape_only_ok
from symlab.frontend.tracer import Tracer
from symlab.nn import zoo


def _gm(model: nn.Module) -> fx.GraphModule:
    graph = Tracer().trace(model)
    graph.owning_module = model
    return fx.GraphModule(model, graph)


def _metas(gm: fx.GraphModule) -> list[dict]:
    return [{k: n.meta.get(k) for k in ("tensor_meta", "type")} for n in gm.graph.nodes]


def _modules(gm: fx.GraphModule) -> dict:
    return {n: gm.get_submodule(n.target) for n in gm.graph.nodes if n.op == "call_module"}


def _same_as_shapeprop(model: nn.Module, *inputs: torch.Tensor) -> fx.GraphModule:
    fake, ours, theirs = _gm(model), _gm(model), _gm(model)
    out_fake = record_shapes(fake, inputs)
    out = record_shapes(ours, inputs, fake=False)
    with torch.no_grad():
        ref = ShapeProp(theirs).propagate(*inputs)
    assert _metas(ours) == _metas(theirs) == _metas(fake)
    assert type(out) is type(ref) and out_fake.shape == ref.shape
    return ours


_ZOO = ["cnn", "cnn1d", "resnet20", "vgg16", "wasym_resnet20", "transformer", "hand_transformer"]


@pytest.mark.parametrize("name", _ZOO)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_zoo_metadata_equals_shapeprop(name: str, mode: str) -> None:
    kw = zoo.tiny(name)
    model = getattr(zoo.get(name, **kw), mode)()
    _same_as_shapeprop(model, zoo.example_input(name, batch=2, **kw))


def test_eval_cnn_skips_convolutions_unless_hooked() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, (1, 3), dilation=(1, 2), padding="same"), nn.Conv2d(4, 5, 3),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 2),
    ).eval()  # fmt: skip
    gm = _same_as_shapeprop(model, torch.randn(2, 3, 9, 11))
    assert shape_only_ok(gm, _modules(gm))
    calls = []
    model[0].register_forward_hook(lambda *a: calls.append(1))
    gm = _same_as_shapeprop(model, torch.randn(2, 3, 9, 11))
    assert not shape_only_ok(gm, _modules(gm)) and calls  # a hooked module runs for real


def test_values_matter_in_train_mode_batch_norm_and_tensor_indexing() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).train()
    twin = copy.deepcopy(model)
    gm = _gm(model)
    assert not shape_only_ok(gm, _modules(gm))
    x = torch.randn(4, 1, 5, 5)
    before = model[1].running_mean.clone()
    record_shapes(gm, (x,))  # on fake tensors: the running statistics are not touched
    assert torch.equal(model[1].running_mean, before)
    record_shapes(gm, (x,), fake=False)  # running statistics updated from the real activations
    with torch.no_grad():
        ShapeProp(_gm(twin)).propagate(x)
    assert torch.equal(model[1].running_mean, twin[1].running_mean)
    assert torch.equal(model[1].running_var, twin[1].running_var)

    class Masked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x).flatten(1)
            return y[y > 0]  # data-dependent shape

    gm = _same_as_shapeprop(Masked().eval(), torch.randn(1, 1, 5, 5))
    assert not shape_only_ok(gm, _modules(gm))


def test_errors_match_shapeprop() -> None:
    gm = _gm(nn.Sequential(nn.Conv2d(3, 4, 5)).eval())
    for bad in (torch.randn(1, 2, 8, 8), torch.randn(1, 3, 3, 3)):  # channels, too small
        with pytest.raises(RuntimeError, match="ShapeProp error for: node=%_0") as info:
            record_shapes(gm, (bad,))  # fake tensors fail too: the real run says why
        assert isinstance(info.value.__cause__, RuntimeError)


def test_graph_module_drops_dead_code_like_fx() -> None:
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            _ = torch.relu(self.a(x)) * 2  # dead
            return self.b(x)

    model = Unused()
    ours = graph_module(model, Tracer().trace(model))
    ref = Tracer().trace(model)
    ref.owning_module = model
    ref.eliminate_dead_code()
    assert [n.format_node() for n in ours.graph.nodes] == [n.format_node() for n in ref.nodes]
    assert len(ours.graph.nodes) == 3  # x, b, output: a, relu and mul gone
    x = torch.randn(2, 3)
    assert torch.equal(ours(x), model(x))  # its code is generated on the first call


def test_the_callers_input_is_never_touched() -> None:
    model = nn.Sequential(
        nn.BatchNorm2d(2), nn.ReLU(inplace=True), nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3),
        nn.ReLU(inplace=True),
    ).eval()  # fmt: skip
    x = torch.randn(1, 2, 5, 5)
    kept = x.clone()
    gm = _same_as_shapeprop(model, x)
    assert shape_only_ok(gm, _modules(gm)) and torch.equal(x, kept)


def test_fake_run_time_does_not_grow_with_the_input() -> None:
    """Shapes of a 4096 × 4096 image through a CNN without computing one convolution: the fake
    run never allocates the activations (a real run would need gigabytes)."""
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3))
    gm = _gm(model.train())  # train mode: a real run would compute every convolution
    x = torch.empty(8, 3, 4096, 4096, device="meta")  # no memory: only a fake run can read it
    record_shapes(gm, (x,))
    assert tuple(list(gm.graph.nodes)[-2].meta["tensor_meta"].shape) == (8, 64, 4094, 4094)
