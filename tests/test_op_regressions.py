"""Regression tests for the op-level soundness holes a fuzzer found (issue 13), each failing on
the code before its fix, and the sigmoid flips closed through LayerNorm, pools and flattens
(checked by brute force)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import symlab as sl


def _sound(model, x, samples=8):
    model = model.double().eval()
    G = sl.symmetries(model, x)
    rep = sl.check_invariance(model, G, x, samples=samples, seed=1, raise_on_failure=False)
    assert rep.passed, rep
    return G


def _x(*shape, seed=0, scale=2.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).double() * scale


def _torch_init(seed):
    torch.manual_seed(seed)


class _SigmoidAfterCat(nn.Module):
    def __init__(self, branch: str, bias: bool) -> None:
        super().__init__()
        self.branch = branch
        self.fa, self.fb = nn.Linear(3, 2), nn.Linear(3, 2)
        self.out = nn.Linear(4, 2, bias=bias)

    def forward(self, x):
        a = {"relu": F.relu, "identity": lambda t: t, "tanh": torch.tanh}[self.branch](self.fa(x))
        return self.out(torch.sigmoid(torch.cat([a, self.fb(x)], -1)))


@pytest.mark.parametrize("branch", ["relu", "identity", "tanh"])
@pytest.mark.parametrize("bias", [True, False])
def test_bug1_sigmoid_after_cat_is_a_flip_with_its_bias_shift(branch, bias):
    _torch_init(0)
    G = _sound(_SigmoidAfterCat(branch, bias), _x(32, 3))
    kinds = {f.kind for f in G.factors}
    assert "sign" not in kinds  # a sigmoid's sign change is a flip, never a plain sign
    assert ("flip" in kinds) == bias  # without a bias nothing absorbs the shift


class _Square(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc0, self.out = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x):
        x = self.fc0(x)
        x = x * x
        return self.out(x)


def test_bug2_x_times_x_is_not_linear():
    _torch_init(0)
    G = _sound(_Square(), _x(32, 3))
    assert [f.kind for f in G.factors] == ["permutation"]


class _CatTwice(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc0, self.out = nn.Linear(3, width), nn.Linear(2 * width, 1)

    def forward(self, x):
        x = torch.tanh(self.fc0(x))
        return self.out(torch.cat([x, x], -1))


@pytest.mark.parametrize("width", [1, 3])
def test_bug3_cat_of_a_tensor_with_itself_keeps_its_width(width):
    _torch_init(0)
    model = _CatTwice(width).double()
    G = _sound(model, _x(16, 3))
    moved = G.act(G.sample(0), model.state_dict())
    assert moved["out.weight"].shape == (1, 2 * width)
    assert any(f.kind == "sign" for f in G.factors)  # both copies flip together


class _ZeroDimScale(nn.Module):
    def __init__(self, where: str, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.where = where
        self.fc0, self.out = nn.Linear(3, 3), nn.Linear(3, 2)
        self.alpha = nn.Parameter(torch.full(shape, 1.7))

    def forward(self, x):
        h = self.fc0(x)
        a = self.alpha
        ops = {"mul": lambda: h * a, "rmul": lambda: a * h, "div": lambda: h / a,
               "add": lambda: h + a}  # fmt: skip
        h = ops[self.where]()
        return self.out(torch.relu(h))


@pytest.mark.parametrize("where", ["mul", "rmul", "div", "add"])
@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
def test_bug4_zero_dim_and_one_element_parameters(where, shape):
    _torch_init(0)
    model = _ZeroDimScale(where, shape).double()
    G = _sound(model, _x(32, 3))
    moved = G.act(G.sample(0), model.state_dict())
    assert torch.equal(moved["alpha"], model.alpha.detach())  # the constant never moves
    assert G.order > 1


class _SigmoidIntoConv(nn.Module):
    def __init__(self, kernel: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.head = nn.Conv2d(3, 2, kernel, padding=padding)

    def forward(self, x):
        return self.head(torch.sigmoid(self.conv(x)))


@pytest.mark.parametrize(("kernel", "padding"), [(1, 0), (3, 0), (3, 1), (2, 0)])
def test_bug5_sigmoid_flip_into_a_conv_bias(kernel, padding):
    _torch_init(0)
    G = _sound(_SigmoidIntoConv(kernel, padding), _x(4, 2, 6, 6))
    assert any(f.kind == "flip" for f in G.factors) == (padding == 0)  # padding breaks it


# ---- sigmoid flips closed through LayerNorm, pools and flattens (deliverable 3) ----------


class _SigmoidThen(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        if kind == "layernorm":
            self.fc0, self.norm, self.out = nn.Linear(3, 3), nn.LayerNorm(3), nn.Linear(3, 2)
        else:
            self.fc0 = nn.Conv2d(2, 3, 3, padding=1 if kind != "flatten" else 0)
            self.pool = {"mean": None, "adaptive": nn.AdaptiveAvgPool2d(1), "flatten": None,
                         "zero_pad_avg": nn.AvgPool2d(3, padding=1)}[kind]  # fmt: skip
            self.out = nn.Linear(3 * 4 if kind == "flatten" else 3, 2)

    def forward(self, x):
        h = torch.sigmoid(self.fc0(x))
        if self.kind == "layernorm":
            return self.out(self.norm(h))
        if self.kind == "mean":
            return self.out(h.mean((2, 3)))
        if self.kind == "flatten":
            return self.out(torch.flatten(h, 1))
        return self.out(self.pool(h).mean((2, 3)))


@pytest.mark.parametrize(
    ("kind", "signs"),
    [("layernorm", 2), ("mean", 8), ("adaptive", 8), ("flatten", 8), ("zero_pad_avg", 1)],
)
def test_sigmoid_flips_pass_norms_pools_and_flattens_as_brute_force_says(kind, signs):
    _torch_init(0)
    model = _SigmoidThen(kind).double().eval()
    x = _x(32, 3) if kind == "layernorm" else _x(6, 2, 4, 4)
    G = _sound(model, x)
    bf = sl.brute_force_group(model, x)
    missed, extra = bf.compare(G)
    assert not extra.signs and not extra.permutations
    assert not missed.signs and not missed.permutations
    assert len(bf.signs) == signs


def test_negative_control_a_flip_without_its_shift_breaks_the_function():
    """The check can fail: flip a sigmoid unit without shifting the next bias."""
    _torch_init(0)
    model = _SigmoidThen("mean").double().eval()
    x = _x(6, 2, 6, 4)
    sd = dict(model.state_dict())
    sd["fc0.weight"] = sd["fc0.weight"] * torch.tensor([-1.0, 1, 1]).double()[:, None, None, None]
    sd["fc0.bias"] = sd["fc0.bias"] * torch.tensor([-1.0, 1, 1]).double()
    sd["out.weight"] = sd["out.weight"] * torch.tensor([-1.0, 1, 1]).double()
    with torch.no_grad():
        ref, out = model(x), torch.func.functional_call(model, sd, (x,))
    assert float((out - ref).abs().max()) > 1e-2


class _ParamOnNestedCat(nn.Module):
    """Found by the fuzzer: a parameter added to a concatenation of concatenations becomes a
    block tensor listed before the blocks it is made of."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.randn(8))
        self.out = nn.Linear(8, 2)

    def forward(self, h):
        h = torch.cat([h, h], -1)
        h = torch.cat([h, h], -1)
        return self.out(h + h - self.p)


def test_a_parameter_added_to_nested_concatenations_moves_with_its_blocks():
    _torch_init(0)
    G = _sound(_ParamOnNestedCat(), _x(16, 2))
    assert G.order == 1 and G.dimension == 0  # the inputs are fixed: nothing moves, no crash


def test_a_parameter_read_through_an_attribute_is_not_moved_behind_its_reader():
    """``h @ self.wte.weight.T`` (an output layer tied by hand to an embedding): the weight
    must never move behind the product's back — deriving GL on the embedding alone changed the
    outputs (relative error 2.45). The product is now read as a linear layer sharing the
    embedding's table, tied axis by axis: one permutation moves the table's features and the
    hidden units the product reads, and nothing else (brute force finds nothing more)."""

    class TiedByHand(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.fc = nn.Embedding(10, 6), nn.Linear(6, 6)

        def forward(self, ids):
            return torch.relu(self.fc(self.wte(ids))) @ self.wte.weight.T

    torch.manual_seed(0)
    model, ids = TiedByHand().double().eval(), torch.randint(0, 10, (3, 5))
    G = sl.symmetries(model, ids)
    assert sl.check_invariance(model, G, ids, samples=8).passed
    assert [f.short() for f in G.factors] == ["S_6"]
    assert {k for k, _ in G.factors[0].axes} == {"wte.weight", "fc.weight", "fc.bias"}
    _, extra = sl.brute_force_group(model, ids).compare(G)
    assert not extra.permutations and not extra.signs
