"""Tied parameters (one tensor under several ``state_dict`` keys) move alike in every place,
including where an op's action reads more than the parameter's axes (a norm's weight takes its
input's sign), and a tied key no node reads (T5's ``shared.weight``) follows the one that is
read (issue 13, holes left by the first round)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import symlab as sl


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).double() * 2


class TiedNorms(nn.Module):
    """Two norms sharing one weight, fed by differently-moved inputs (a linear and a tanh of
    another linear); ``kind="cross"`` ties a norm's weight to a linear layer's bias instead."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        make = {
            "ln": lambda: nn.LayerNorm(4),
            "rms": lambda: nn.RMSNorm(4, eps=1e-6),
            "bn": lambda: nn.BatchNorm1d(4),
            "gn": lambda: nn.GroupNorm(2, 4),
            "cross": lambda: nn.LayerNorm(4),
        }[kind]
        self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 4)
        self.na, self.nb = make(), make()
        with torch.no_grad():
            self.na.weight.normal_()
        if kind == "cross":
            self.nb.weight = self.a.bias
        else:
            self.nb.weight = self.na.weight
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        u = torch.tanh(self.na(self.a(x)))
        v = self.nb(torch.tanh(self.b(x)))
        return self.out(torch.cat([u, v], -1))


@pytest.mark.parametrize("kind", ["ln", "rms", "bn", "gn", "cross"])
def test_norms_sharing_a_weight_move_it_alike(kind):
    """Before the fix, ``sign[b]`` negated ``b`` and the weight of ``nb`` (RMSNorm and LayerNorm
    absorb their input's sign in the weight) without the other copy: the output changed."""
    torch.manual_seed(0)
    model, x = TiedNorms(kind).double().eval(), _x(8, 3)
    G = sl.symmetries(model, x)
    assert len(G.graph.tied_keys) == 1
    rep = sl.check_invariance(model, G, x, samples=16, seed=1, raise_on_failure=False)
    assert rep.passed, rep
    moved = G.act(G.sample(2), model.state_dict())
    first, second = G.graph.tied_keys[0]
    assert torch.equal(moved[first], moved[second])


def test_two_layernorms_sharing_a_weight_keep_one_common_sign():
    """Same op, same weight: the two norms are tied port by port, so one sign of their inputs
    survives (moving the shared weight once), not one per input."""
    torch.manual_seed(0)
    G = sl.symmetries(TiedNorms("ln").double(), _x(8, 3))
    touching = [f for f in G.factors if f.kind == "common_sign"]
    assert len(touching) == 1 and {"a.weight", "b.weight"} <= {k for k, _ in touching[0].axes}


def test_control_one_input_sign_alone_breaks_the_tied_norm():
    """Negative control: the old ``sign[b]`` (negate ``b``, and ``nb``'s weight to absorb it)
    changes the outputs, because that weight is ``na``'s too."""
    torch.manual_seed(0)
    model, x = TiedNorms("rms").double().eval(), _x(8, 3)
    sd = {k: v for k, v in model.state_dict().items() if k != "nb.weight"}  # one tensor
    ref = torch.func.functional_call(model, sd, (x,))
    flipped = dict(sd, **{"b.weight": -sd["b.weight"], "b.bias": -sd["b.bias"],
                          "na.weight": -sd["na.weight"]})  # fmt: skip
    out = torch.func.functional_call(model, flipped, (x,))
    assert not torch.allclose(out, ref, atol=1e-3)
    untied = TiedNorms("rms").double().eval()  # the same move on untied copies is exact
    untied.nb.weight = nn.Parameter(model.na.weight.detach().clone())
    untied.load_state_dict(model.state_dict())
    sd_u = dict(untied.state_dict())
    moved_u = dict(sd_u, **{"b.weight": -sd_u["b.weight"], "b.bias": -sd_u["b.bias"],
                            "nb.weight": -sd_u["nb.weight"]})  # fmt: skip
    assert torch.allclose(torch.func.functional_call(untied, moved_u, (x,)), ref, atol=1e-12)


class TiedHeadWithNorm(nn.Module):
    """A language model whose embedding and output layer are one tensor, with RMSNorms between
    (the norm reads the embedding's output space, the head reads the norm's)."""

    def __init__(self, norm: str) -> None:
        super().__init__()
        self.emb, self.fc = nn.Embedding(7, 4), nn.Linear(4, 4)
        self.n1 = nn.RMSNorm(4, eps=1e-6) if norm == "rms" else nn.LayerNorm(4)
        self.n2 = nn.RMSNorm(4, eps=1e-6) if norm == "rms" else nn.LayerNorm(4)
        self.head = nn.Linear(4, 7, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx):
        h = self.emb(idx)
        h = h + self.fc(torch.tanh(self.n1(h)))
        return self.head(self.n2(h))


@pytest.mark.parametrize("norm", ["rms", "ln"])
def test_tied_embedding_and_head_with_norms_between(norm):
    torch.manual_seed(0)
    model, idx = TiedHeadWithNorm(norm).double().eval(), torch.randint(0, 7, (3, 5))
    G = sl.symmetries(model, idx)
    assert G.graph.tied_keys == (("emb.weight", "head.weight"),)
    assert sl.check_invariance(model, G, idx, samples=16, seed=1).passed


class MiniT5(nn.Module):
    """T5's layout in miniature: ``shared`` is an embedding the forward never calls, whose
    weight is the weight of ``encoder.embed``: ``shared.weight`` is a key no node reads (first
    in the ``state_dict``) that is one tensor with one that is."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Embedding(7, 4)
        self.encoder = nn.Module()
        self.encoder.embed = nn.Embedding(7, 4)
        self.encoder.embed.weight = self.shared.weight
        self.encoder.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, idx):
        return self.out(torch.tanh(self.encoder.fc(self.encoder.embed(idx))))


def test_unread_tied_key_follows_the_read_one():
    """Before the fix, ``check_invariance`` passed both keys of the tie to ``functional_call``
    (a DataError), and ``act`` moved ``encoder.embed.weight`` but not ``shared.weight``."""
    torch.manual_seed(0)
    model, idx = MiniT5().double().eval(), torch.randint(0, 7, (3, 5))
    G = sl.symmetries(model, idx)
    assert G.graph.unused_keys == ("shared.weight",)
    assert G.graph.tied_keys == (("shared.weight", "encoder.embed.weight"),)
    assert sl.check_invariance(model, G, idx).passed
    moved = G.act(G.sample(0), model.state_dict())
    assert not torch.equal(moved["shared.weight"], model.shared.weight)
    assert torch.equal(moved["shared.weight"], moved["encoder.embed.weight"])
    sd = {k: v for k, v in model.state_dict().items() if k != "shared.weight"}
    assert "shared.weight" not in G.act(G.sample(0), sd)  # an absent unread key stays absent
    copy = MiniT5().double().eval()
    copy.load_state_dict(moved)  # loads back into the tied model: the same function
    ref = model(idx)
    assert torch.allclose(copy(idx), ref, atol=1e-12)
    bf = sl.brute_force_group(model, idx)  # the oracle passes the tie once too
    assert len(bf.permutations) == 24 * 24  # both 4-unit spaces permute freely


def test_t5_encoder_with_its_unread_shared_embedding():
    pytest.importorskip("transformers")
    from symlab.testing._torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(vocab_size=32, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2,
                   dropout_rate=0.0)  # fmt: skip
    torch.manual_seed(0)
    model, ids = T5EncoderModel(cfg).double().eval(), torch.randint(0, 32, (2, 5))
    G = sl.symmetries(model, ids)
    assert ("shared.weight", "encoder.embed_tokens.weight") in G.graph.tied_keys
    assert sl.check_invariance(model, G, ids, samples=4).passed


class ReusedAfterSigmoidAndTanh(nn.Module):
    """One linear layer called on a sigmoid's output and on a tanh's (fuzzer seed 166): a sign
    flip of the sigmoid's input shifts its output, which the layer absorbs into its bias
    (``b − W c``); the tanh call needs no such shift, and the bias is one tensor."""

    def __init__(self, tied: bool) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 4)
        self.f = nn.Linear(4, 4)
        if tied:  # the same layer as two modules whose parameters are both tied
            self.g = nn.Linear(4, 4)
            self.g.weight, self.g.bias = self.f.weight, self.f.bias
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        second = self.g if hasattr(self, "g") else self.f  # else: one module called twice
        h = self.f(torch.sigmoid(self.a(x))) + second(torch.tanh(self.b(x)))
        return self.out(torch.tanh(h))


@pytest.mark.parametrize("tied", [False, True], ids=["reused", "tied"])
def test_one_layer_after_a_sigmoid_and_a_tanh_keeps_no_flip(tied):
    torch.manual_seed(0)
    model, x = ReusedAfterSigmoidAndTanh(tied).double().eval(), _x(8, 3)
    G = sl.symmetries(model, x)
    kinds = {f.kind for f in G.factors if f.space == "a"}
    assert kinds == {"permutation"}  # the sigmoid's units: permuted, never flipped
    assert sl.check_invariance(model, G, x, samples=16, seed=1).passed


def test_control_the_flip_of_one_call_breaks_the_other():
    """Negative control: the flip the sigmoid call alone admits (negate ``a``'s first unit and
    ``f``'s first column, move ``f``'s bias by that column) changes the output through the
    tanh call; on the sigmoid call alone it is exact."""
    torch.manual_seed(0)
    model, x = ReusedAfterSigmoidAndTanh(tied=False).double().eval(), _x(8, 3)
    sd, ref = dict(model.state_dict()), model(x)
    moved = {k: v.clone() for k, v in sd.items()}
    moved["a.weight"][0], moved["a.bias"][0] = -sd["a.weight"][0], -sd["a.bias"][0]
    moved["f.weight"][:, 0] = -sd["f.weight"][:, 0]
    moved["f.bias"] = sd["f.bias"] + sd["f.weight"][:, 0]
    assert not torch.allclose(torch.func.functional_call(model, moved, (x,)), ref, atol=1e-3)
    f = nn.Linear(4, 4).double()
    f.load_state_dict({"weight": moved["f.weight"], "bias": moved["f.bias"]})
    a = nn.Linear(3, 4).double()
    a.load_state_dict({"weight": moved["a.weight"], "bias": moved["a.bias"]})
    assert torch.allclose(f(torch.sigmoid(a(x))), model.f(torch.sigmoid(model.a(x))), atol=1e-12)


class ScaleTiedToBias(nn.Module):
    """A one-element scale read as data (no op moves it) that is one tensor with a bias the
    group moves (fuzzer seed 200206): a sigmoid flip before ``out`` shifts ``out.bias``."""

    def __init__(self, tied: bool) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor([1.3]))
        self.a, self.out = nn.Linear(3, 4), nn.Linear(4, 1)
        if tied:
            self.out.bias = self.alpha

    def forward(self, x):
        return self.out(torch.sigmoid(self.a(self.alpha * x)))


def test_data_read_under_one_key_and_moved_under_another_is_refused():
    torch.manual_seed(0)
    with pytest.raises(sl.errors.UnsupportedOpError, match=r"one tensor with \['out.bias'\]"):
        sl.symmetries(ScaleTiedToBias(tied=True).double(), _x(8, 3))


def test_control_untied_the_bias_moves():
    """Negative control: untied, the flips move ``out.bias``, which as ``alpha`` would rescale
    the input."""
    torch.manual_seed(0)
    model, x = ScaleTiedToBias(tied=False).double().eval(), _x(8, 3)
    G = sl.symmetries(model, x)
    assert any(f.kind == "flip" for f in G.factors)
    sd = model.state_dict()
    assert not torch.equal(G.act(G.sample(0), sd)["out.bias"], sd["out.bias"])
    assert sl.check_invariance(model, G, x).passed


class NormWeightIsItsBias(nn.Module):
    """A functional LayerNorm passed one tensor as weight and bias (fuzzer seed 203910): one
    call reads one key in two roles, the weight taking its input's sign and the bias not."""

    def __init__(self, tied: bool) -> None:
        super().__init__()
        self.a, self.n, self.out = nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2)
        with torch.no_grad():
            self.n.weight.normal_()
        if tied:
            self.n.bias = self.n.weight

    def forward(self, x):
        h = F.layer_norm(torch.tanh(self.a(x)), (4,), self.n.weight, self.n.bias)
        return self.out(torch.tanh(h))


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_one_call_reading_one_tensor_in_two_roles(tied):
    torch.manual_seed(0)
    model, x = NormWeightIsItsBias(tied).double().eval(), _x(8, 3)
    G = sl.symmetries(model, x)
    signs = [f for f in G.factors if "sign" in f.kind and any(k == "a.weight" for k, _ in f.axes)]
    assert bool(signs) is not tied  # the input's sign, absorbed by the weight alone: untied only
    assert sl.check_invariance(model, G, x, samples=16, seed=1).passed
