"""Issue 15, item 1 (API): the mistakes a new user makes first each get a named SymlabError
that names the argument, says what was expected and what to do — never a raw torch error."""

from __future__ import annotations

import pytest
import torch

import symlab as sl
from symlab import errors
from symlab.nn import MLP, zoo


def test_check_invariance_refuses_inputs_of_the_wrong_width():
    net = MLP([4, 8, 2], dtype=torch.float64)
    G = sl.symmetries(net)
    with pytest.raises(errors.DataError, match=r"inputs of shape \(3, 5\).*do not run through MLP"):
        sl.check_invariance(net, G, torch.randn(3, 5, dtype=torch.float64))
    assert sl.check_invariance(net, G, torch.randn(3, 4, dtype=torch.float64)).passed  # control


def test_average_state_dicts_refuses_different_widths():
    a, b = MLP([4, 8, 2]).state_dict(), MLP([4, 9, 2]).state_dict()
    with pytest.raises(errors.ArchitectureMismatchError, match=r"sds\[1\].*layers.0.linear.weight"):
        sl.connect.average_state_dicts([a, b])
    with pytest.raises(errors.ArgumentError, match="sds is empty"):
        sl.connect.average_state_dicts([])
    with pytest.raises(errors.ArgumentError, match="3 weights for 2 state_dicts"):
        sl.connect.average_state_dicts([a, a], weights=[0.2, 0.3, 0.5])
    avg = sl.connect.average_state_dicts([a, MLP([4, 8, 2], seed=1).state_dict()])  # control
    assert avg.keys() == a.keys()


def test_merge_needs_two_models():
    a = MLP([4, 8, 2])
    G = sl.symmetries(a)
    with pytest.raises(errors.ArgumentError, match=r"has 1 model\(s\).*at least two") as info:
        sl.connect.merge([a], G)
    assert isinstance(info.value, ValueError)  # still a ValueError for old callers
    with pytest.raises(errors.ArgumentError, match="reference=5"):
        sl.connect.merge([a, MLP([4, 8, 2], seed=1)], G, reference=5)
    with pytest.raises(errors.ArchitectureMismatchError, match=r"models\[1\]"):
        sl.connect.merge([a, MLP([4, 9, 2])], G)


def test_symmetries_of_a_name_says_how_to_build_the_model():
    with pytest.raises(errors.ModelTypeError, match=r'sl\.nn\.zoo\.get\("resnet20"\)') as info:
        sl.symmetries("resnet20")
    assert isinstance(info.value, TypeError)
    with pytest.raises(errors.ModelTypeError, match=r"sl\.nn\.zoo\.get\(name\).*'resnet20'"):
        sl.symmetries("no-such-net")
    with pytest.raises(errors.ModelTypeError, match="got the class MLP"):
        sl.symmetries(MLP)
    with pytest.raises(errors.ModelTypeError, match="got a int"):
        sl.trace(3)
    # the suggested call works
    kw = zoo.tiny("resnet20")
    assert sl.symmetries(zoo.get("resnet20", **kw), zoo.example_input("resnet20", **kw)).factors


def test_mlp_refuses_an_example_input_of_the_wrong_shape():
    net = MLP([4, 8, 2])
    for bad in (torch.randn(2, 5), torch.randn(4), torch.zeros(2, 4, dtype=torch.long)):
        with pytest.raises(errors.ExampleInputError, match="takes 4 features"):
            sl.symmetries(net, bad)
    with pytest.raises(errors.ExampleInputError, match="1 input"):
        sl.symmetries(net, (torch.randn(2, 4), torch.randn(2, 4)))
    assert sl.symmetries(net, torch.randn(2, 4)).order == sl.symmetries(net).order  # control


def test_example_input_must_be_tensors():
    with pytest.raises(errors.ExampleInputError, match="got list"):
        sl.symmetries(torch.nn.Conv2d(1, 2, 3), [torch.randn(1, 1, 4, 4)])


def test_zoo_cnn_without_an_input_says_none_was_given():
    net = zoo.get("cnn", widths=(4, 6, 6))
    with pytest.raises(errors.ExampleInputError, match="none was given") as info:
        sl.symmetries(net)
    assert "the example input does not run" not in str(info.value)
    assert "'head'" in str(info.value)  # names the layer the made-up input came from
    assert sl.symmetries(net, zoo.example_input("cnn")).factors  # control: with an input


class _Plain(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(3, 5), torch.nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def test_a_model_that_runs_on_a_made_up_input_still_needs_none():
    assert sl.symmetries(_Plain()).order == sl.sympy.factorial(5)
    assert sl.symmetries(_Plain().double()).order == sl.sympy.factorial(5)  # dtype of its layer


def test_from_tensors_without_a_test_split_points_at_the_cause():
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    data = sl.data.from_tensors(x, y, num_classes=2)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    with pytest.raises(errors.DataError, match=r"no test examples.*x_test= and y_test="):
        sl.connect.interpolate(a, b, data, 3)
    with pytest.raises(errors.DataError, match="x_test="):
        sl.train.evaluate(a, data)
    assert sl.connect.interpolate(a, b, data, 3, split="train").loss.shape == (3,)  # control


def test_interpolating_on_data_of_the_wrong_width_is_a_named_error():
    a, b = sl.nn.MLP([3, 6, 2], seed=0), sl.nn.MLP([3, 6, 2], seed=1)
    y = torch.randint(0, 2, (20,))
    for kw in ({}, {"strategy": "vmap"}, {"repair": True}):
        with pytest.raises(errors.DataError, match=r"interpolate: inputs of shape \(20, 5\)"):
            sl.connect.interpolate(a, b, (torch.randn(20, 5), y), n_alphas=3, **kw)
    curve = sl.connect.interpolate(a, b, (torch.randn(20, 3), y), n_alphas=3)  # the right width
    assert curve.loss.shape == (3,)


def test_a_path_needs_its_two_ends():
    a, b = MLP([3, 6, 2], seed=0), MLP([3, 6, 2], seed=1)
    data = (torch.randn(20, 3), torch.randint(0, 2, (20,)))
    for n in (1, 0, 2.5, True):
        with pytest.raises(errors.DataError, match="n_alphas must be an integer >= 2"):
            sl.connect.interpolate(a, b, data, n_alphas=n)
    one = sl.connect.interpolate(a, b, data, alphas=torch.tensor([0.5]))  # one explicit point
    with pytest.raises(errors.DataError, match="compares the path with its two ends"):
        one.barrier("loss")
    ends = sl.connect.interpolate(a, b, data, n_alphas=2)  # Git Re-Basin: max - mean of the ends
    assert ends.barrier("loss") == pytest.approx(float(ends.loss.max() - ends.loss.mean()))
