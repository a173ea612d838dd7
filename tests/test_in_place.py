"""In-place writes (issue 13): a write whose result is discarded or whose tensor is read again
afterwards is read as the write (never dead-code-eliminated into the group of the unwritten
function), a write nothing reads is dropped, a write into a slice is read as the cat of the
tensor's pieces (through torch.export), and a write through an alias read afterwards is
refused with a named error; through torch.fx and torch.export alike."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from ops_contexts import export_only
from torch import nn

import symlab as sl
from symlab.errors import UnsupportedOpError


def discarded_relu(s, x):  # the call's result discarded: h itself is written
    h = s.a(x)
    F.relu(h, inplace=True)
    return s.b(h)


def discarded_module(s, x):
    h = s.a(x)
    s.act(h)
    return s.b(h)


def positional_inplace(s, x):
    h = s.a(x)
    F.relu(h, True)
    return s.b(h)


def alias_augmented(s, x):  # g is h: ``h += …`` writes what g reads
    h = s.a(x)
    g = h
    h += s.c(x)
    return s.b(torch.tanh(g))


def read_before_and_after(s, x):
    h = s.a(x)
    y = s.b(h)
    s.act(h)
    return y * s.b(h)


def dead_write(s, x):  # nothing reads h after the write: it cannot change the outputs
    h = s.a(x)
    y = s.b(h)
    F.relu(h, inplace=True)
    return y


def view_write(s, x):
    h = s.a(x)
    h[:, 1].zero_()
    return s.b(h)


def setitem(s, x):
    h = s.a(x)
    h.__setitem__((slice(None), 0), 0.0)
    return s.b(h)


class Net(nn.Module):
    def __init__(self, forward) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(3, 4)
        self.act = nn.ReLU(inplace=True)
        self.fn = forward

    def forward(self, x):
        return self.fn(self, x)


def _x() -> torch.Tensor:
    return torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _worst(model: nn.Module, G: sl.SymmetryGroup, x: torch.Tensor) -> float:
    """Independent check: the moved state_dict loaded into a copy (each run on a fresh input,
    as the writes change it)."""
    with torch.no_grad():
        ref = model(x.clone())
        worst = 0.0
        for i in range(6):
            moved = copy.deepcopy(model)
            moved.load_state_dict(G.act(G.sample(i), model.state_dict()))
            worst = max(worst, float((moved(x.clone()) - ref).abs().max()))
    return worst


SOUND = {
    discarded_relu: ["S_4", "R_{>0}^4"],
    discarded_module: ["S_4", "R_{>0}^4"],
    positional_inplace: ["S_4", "R_{>0}^4"],
    alias_augmented: ["S_4", "{±1}^4"],
    read_before_and_after: ["S_4", "R_{>0}^4"],
    dead_write: ["GL_4"],
}


@pytest.mark.parametrize("forward", list(SOUND), ids=lambda f: f.__name__)
def test_writes_are_read_through_torch_fx(forward):
    torch.manual_seed(0)
    model, x = Net(forward).double().eval(), _x()
    G = sl.symmetries(model, x)
    assert G.graph.frontend == "torch.fx"
    assert [f.short() for f in G.factors] == SOUND[forward]
    assert _worst(model, G, x) < 1e-12


@pytest.mark.parametrize("forward", [discarded_relu, discarded_module, alias_augmented])
def test_writes_through_torch_export(forward):
    torch.manual_seed(0)
    model, x = Net(forward).double().eval(), _x()
    with export_only():
        G = sl.symmetries(model, x)
    assert G.graph.frontend == "torch.export"
    assert [f.short() for f in G.factors] == SOUND[forward]
    assert _worst(model, G, x) < 1e-12


@pytest.mark.parametrize("forward", [view_write, setitem], ids=lambda f: f.__name__)
@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
def test_writes_through_a_view_read_afterwards_are_read_as_pieces(forward, export):
    """A unit zeroed through a view: torch.fx hands the model to torch.export, which reads
    the write as the cat of the tensor's pieces (symlab.frontend.scattered). The units left
    are not all of ``a``'s, so ``a``'s space stays fixed; what remains holds on the model."""
    torch.manual_seed(0)
    model, x = Net(forward).double().eval(), _x()
    if export:
        with export_only():
            G = sl.symmetries(model, x)
    else:
        G = sl.symmetries(model, x)
    assert G.graph.frontend == "torch.export"
    assert any(n.name.startswith("@cat") for n in G.graph.nodes())  # the pieces
    assert _worst(model, G, x) < 1e-12


@pytest.mark.parametrize("forward", [discarded_relu, alias_augmented, view_write])
def test_control_the_unwritten_reading_is_unsound(forward):
    """Negative control: the group of the function without the write (``b ∘ a``, GL on the
    hidden units) changes the real model's outputs: what the old reading derived."""
    torch.manual_seed(0)
    model, x = Net(forward).double().eval(), _x()
    plain = Net(lambda s, x: s.b(s.a(x))).double().eval()
    plain.load_state_dict(model.state_dict())
    G = sl.symmetries(plain, x)
    assert [f.short() for f in G.factors] == ["GL_4"]
    assert _worst(model, G, x) > 1e-3


# -- ops that may return their input itself ------------------------------------------------
# Each reads h into g, then h is written in place and g read afterwards. The op's schema (or
# its name) promises a new tensor, but here it returns h itself (eval-mode dropout, a cast to
# the dtype h already has, a one-operand einsum, an item of broadcast_tensors): g sees the
# write, so reading the write as out of place would derive the unwritten function's group.
MAY_RETURN_INPUT = {
    "dropout": lambda h, x: F.dropout(h, 0.5, training=False),
    "type_as": lambda h, x: h.type_as(x),
    "double": lambda h, x: h.double(),
    "to": lambda h, x: h.to(torch.float64),
    "einsum": lambda h, x: torch.einsum("ij->ij", h),
    "broadcast_tensors": lambda h, x: torch.broadcast_tensors(x[:, :1], h)[1],
}


def _written_after(op):
    def forward(s, x):
        h = s.a(x)
        g = op(h, x)
        h += s.c(x)
        return s.b(torch.tanh(g))

    return forward


@pytest.mark.parametrize("name", list(MAY_RETURN_INPUT))
@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
def test_a_write_seen_through_an_op_returning_its_input_is_refused(name, export):
    torch.manual_seed(0)
    model, x = Net(_written_after(MAY_RETURN_INPUT[name])).double().eval(), _x()
    with torch.no_grad():  # the premise: g is h, so the write changes what b reads
        h = model.a(x)
        assert MAY_RETURN_INPUT[name](h, x).data_ptr() == h.data_ptr()
    # refused by name: the write, or (torch.export) an op it has no mapping for
    with pytest.raises(UnsupportedOpError, match="in-place|has no mapping"):
        if export:
            with export_only():
                sl.symmetries(model, x)
        else:
            sl.symmetries(model, x)


@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
def test_control_a_fresh_copy_is_read_with_the_write(export):
    """Control: through ``clone`` g is a new tensor, and the group (h's units shared by a and
    c, signs through tanh) holds on the real model."""
    torch.manual_seed(0)
    model, x = Net(_written_after(lambda h, x: h.clone())).double().eval(), _x()
    if export:
        with export_only():
            G = sl.symmetries(model, x)
    else:
        G = sl.symmetries(model, x)
    assert [f.short() for f in G.factors] == ["S_4", "{±1}^4"]
    assert _worst(model, G, x) < 1e-12


class _ThroughModule(nn.Module):
    """``g = self.m(h)`` with a module that may return ``h`` itself (``nn.Identity``,
    ``nn.Dropout`` in eval mode) or a view of it (``nn.Flatten``), then ``h`` written."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.a, self.b, self.c, self.m = nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(3, 4), m

    def forward(self, x):
        h = self.a(x)
        g = self.m(h)
        h += self.c(x)
        return self.b(torch.tanh(g))


@pytest.mark.parametrize(
    "module", [nn.Identity, lambda: nn.Dropout(0.5), lambda: nn.Flatten(1)],
    ids=["Identity", "Dropout", "Flatten"],
)  # fmt: skip
@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
def test_a_write_seen_through_a_module_returning_its_input(module, export):
    """torch.fx keeps the module as a call and hands the model to torch.export, which inlines
    it (g is h in its graph, or a view of it): refused by name, or read with the write and
    sound."""
    torch.manual_seed(0)
    model, x = _ThroughModule(module()).double().eval(), _x()
    try:
        if export:
            with export_only():
                G = sl.symmetries(model, x)
        else:
            G = sl.symmetries(model, x)
    except UnsupportedOpError as err:
        assert "in-place" in str(err)
        return
    assert G.graph.frontend == "torch.export"  # never torch.fx's reading of the call
    assert _worst(model, G, x) < 1e-12


class _NormAct(nn.BatchNorm1d):
    """timm's BatchNormAct: ``F.batch_norm``, then a drop layer (``nn.Identity``), then an
    in-place ReLU on that output; the block's input is read again by a residual add."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.drop, self.act = nn.Identity(), nn.ReLU(inplace=True)

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         False, 0.0, self.eps)  # fmt: skip
        return self.act(self.drop(x))


class _PreAct(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.norm, self.b = nn.Linear(3, 4), _NormAct(4), nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.a(x)
        return self.head(self.b(self.norm(h)) + h)  # h read after the ReLU wrote the norm's


def test_a_write_into_a_fresh_result_through_an_identity_is_read():
    """The ReLU writes the batch norm's new output (through nn.Identity, which returns it),
    not ``h``: the write is read as an out-of-place ReLU (timm's resnetv2, dpn)."""
    torch.manual_seed(0)
    model, x = _PreAct().double().eval(), _x()
    model.norm.eps = 1e-12  # its scale invariance holds up to eps
    with torch.no_grad():
        model.norm.running_mean.uniform_(-1, 1)
        model.norm.running_var.uniform_(0.5, 2)
    G = sl.symmetries(model, x)
    twin = _PreAct().double().eval()
    twin.load_state_dict(model.state_dict())
    twin.norm.act, twin.norm.eps = nn.ReLU(), 1e-12  # out of place
    names = [f.name for f in G.factors]
    assert names == [f.name for f in sl.symmetries(twin, x).factors]
    assert "P[a]" in names  # the residual stream's units, through the norm and the ReLU
    assert _worst(model, G, x) < 1e-9


def method_writes(s, x):  # tensor methods writing in place, each read by what follows
    h = s.a(x)
    h.mul_(2.0)
    h.add_(s.c(x))
    return s.b(h.tanh_())


def test_in_place_methods_are_read_as_their_out_of_place_methods():
    """``h.mul_(2.0)``, ``h.add_(…)``, ``h.tanh_()``: once every later reader reads the write,
    each is its out-of-place method; both front-ends give the out-of-place twin's group."""
    torch.manual_seed(0)
    model, x = Net(method_writes).double().eval(), _x()
    twin = Net(lambda s, x: s.b(torch.tanh(s.a(x) * 2.0 + s.c(x)))).double().eval()
    twin.load_state_dict(model.state_dict())
    want = [f.short() for f in sl.symmetries(twin, x).factors]
    assert want == ["S_4", "{±1}^4"]
    for export in (False, True):
        if export:
            with export_only():
                G = sl.symmetries(model, x)
        else:
            G = sl.symmetries(model, x)
        assert G.graph.frontend == ("torch.export" if export else "torch.fx")
        assert [f.short() for f in G.factors] == want
        assert _worst(model, G, x) < 1e-12


class IntoTraceTimeTensor(nn.Module):
    """``h`` written into a tensor made from constants alone, which torch.fx computes while
    tracing: what the forward reads from it afterwards torch.fx would bake in with the values
    from before the write, and ``c`` would seem to read a constant."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.a, self.c, self.d = nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(4, 2)

    def forward(self, x):
        h = self.a(x)
        out = torch.zeros(5, 4, dtype=torch.float64)
        if self.how == "copy_":
            out.copy_(h)
        elif self.how == "add_":
            out.add_(h)
        else:  # half of it: the other half stays zero
            out[:, :2].copy_(h[:, :2])
        return self.c(torch.relu(h)) + self.d(torch.relu(out))


@pytest.mark.parametrize("how", ["copy_", "add_", "half"])
def test_a_write_into_a_tensor_torch_fx_made_while_tracing_goes_to_torch_export(how):
    torch.manual_seed(0)
    model = IntoTraceTimeTensor(how).double().eval()
    x = torch.randn(5, 3, dtype=torch.float64)
    try:
        G = sl.symmetries(model, x)
    except UnsupportedOpError as e:  # refused by torch.export's reader: never a wrong group
        assert how == "half" and "in-place" in str(e)
        return
    assert G.graph.frontend == "torch.export"
    if how == "copy_":  # out is h: a's units are read by c and d alike
        assert {f.name for f in G.factors} == {"P[a]", "scale[a]"}
    assert sl.check_invariance(model, G, x).passed


class ModuleWritesTraceTimeTensor(nn.Module):
    """An in-place module on a tensor made from constants: torch.fx runs the module as a node
    at run time but computed the product below while tracing, with the values before it."""

    def __init__(self):
        super().__init__()
        self.a, self.c, self.act = nn.Linear(3, 4), nn.Linear(4, 2), nn.ReLU(inplace=True)

    def forward(self, x):
        scale = torch.tensor([-1.0, 2.0, -3.0, 4.0], dtype=torch.float64)
        self.act(scale)  # [0, 2, 0, 4] when the model runs
        return self.c(torch.tanh(self.a(x)) * scale)


def test_an_in_place_module_on_a_trace_time_tensor_goes_to_torch_export():
    model = ModuleWritesTraceTimeTensor().double().eval()
    x = torch.randn(5, 3, dtype=torch.float64)
    G = sl.symmetries(model, x)
    assert G.graph.frontend == "torch.export"
    assert sl.check_invariance(model, G, x).passed


class SizesReadEarlier(nn.Module):
    """Sizes read from the input before a write into a tensor computed from it (timm's
    csatv2: ``b, c, h, w = x.shape``, ``x.mul(std).add_(mean)``, then ``reshape(b, ...)``):
    numbers share no memory with the written tensor."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)
        self.register_buffer("std", torch.full((4,), 2.0))

    def forward(self, x):
        n, d = x.shape
        h = x.mul(self.std)
        h.add_(1.0)
        return self.b(torch.relu(self.a(h.reshape(n, d))))


def test_sizes_read_before_a_write_do_not_block_it():
    model = SizesReadEarlier().double().eval()
    x = torch.randn(5, 4, dtype=torch.float64)
    G = sl.symmetries(model, x)
    assert G.graph.frontend == "torch.fx"
    assert {f.name for f in G.factors} == {"P[a]", "scale[a]"}
    assert sl.check_invariance(model, G, x).passed


class OutWrite(nn.Module):
    """``torch.mul(h, 2.0, out=buf)``: a write into ``buf`` (b's output) through ``out=``,
    then ``buf`` read (it holds a's units now), or a view of it taken before the write."""

    def __init__(self, view_first, guarded):
        super().__init__()
        self.view_first, self.guarded = view_first, guarded
        self.a, self.b, self.c = nn.Linear(3, 4), nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        if self.guarded:
            assert x.shape[-1] == 3
        h, buf = self.a(x), self.b(x)
        v = buf.view(5, 4) if self.view_first else buf
        torch.mul(h, 2.0, out=buf)
        return self.c(torch.tanh(v))


@pytest.mark.parametrize("guarded", [False, True])
@pytest.mark.parametrize("view_first", [False, True])
def test_a_write_through_out_is_followed_or_refused(view_first, guarded):
    torch.manual_seed(0)
    model = OutWrite(view_first, guarded).double().eval()
    x = torch.randn(5, 3, dtype=torch.float64)
    if view_first:  # the view sees the write: refused by name, never b's group
        with pytest.raises(UnsupportedOpError, match="out=y"):
            sl.symmetries(model, x)
        return
    G = sl.symmetries(model, x)
    assert G.graph.frontend == "torch.export"  # torch.fx's reader does not follow out=
    assert {f.name for f in G.factors} == {"P[a]", "sign[a]"}  # c reads a's units
    assert sl.check_invariance(model, G, x).passed
