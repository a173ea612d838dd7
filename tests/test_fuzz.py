"""The model fuzzer (issue 13): a small deterministic run in CI finds no crash and no unsound
group, and a negative control shows its independent check catches a wrong rule."""

import ast

import pytest
import torch

from symlab.symmetry import builtin_rules
from symlab.symmetry.spec import ANY
from symlab.testing.fuzz import PREAMBLE, FuzzModel, _error, build, generate, run_many, run_one


def test_fuzzed_models_are_sound_or_refused():
    counts, ops, bad = run_many(0, 60)
    assert not bad, [(r.seed, r.status, r.detail[:300]) for r in bad]
    assert counts["sound"] >= 10 and counts["refused"] >= 5
    assert len(ops) >= 60


def test_generation_is_deterministic_and_varied():
    assert generate(7).source == generate(7).source
    assert len({generate(s).source for s in range(20)}) == 20


_GELU = (
    PREAMBLE
    + """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, h):
        return self.b(F.gelu(self.a(h)))
"""
)


def test_negative_control_a_wrong_rule_is_caught(monkeypatch):
    model = FuzzModel(0, _GELU, (8, 3))
    assert run_one(0, model=model).status == "sound"
    monkeypatch.setitem(builtin_rules.ACTIVATION_ADMITS, "gelu", ANY)  # gelu claimed linear
    assert run_one(0, model=model).status == "unsound"


@pytest.mark.slow
def test_fuzz_deep():
    torch.set_num_threads(1)
    _, _, bad = run_many(100_000, 2000)
    assert not bad, [(r.seed, r.status, r.detail[:300]) for r in bad]


def test_fuzzer_ties_and_reuses_parameters():
    """Some generated models tie two parameters (one tensor, two keys) or call a module twice,
    and two tied keys moved apart count as unsound (loading would silently keep one)."""
    ops = [generate(s).ops for s in range(60)]
    assert sum("tied-params" in o for o in ops) >= 5
    assert sum("module-reused" in o for o in ops) >= 2
    source = _GELU.replace(
        "self.b = nn.Linear(3, 4), nn.Linear(4, 2)",
        "self.b = nn.Linear(3, 4), nn.Linear(4, 2)\n"
        "        self.c = nn.Linear(3, 4)\n"
        "        self.c.bias = self.a.bias",
    )
    source = source.replace(
        "return self.b(F.gelu(self.a(h)))", "return self.b(F.gelu(self.a(h)) + self.c(h))"
    )
    model, x = build(FuzzModel(0, source, (8, 3)))
    with torch.no_grad():
        ref = model(x)
    sd = dict(model.state_dict())
    assert _error(model, sd, x, ref) < 1e-12
    sd["c.bias"] = sd["a.bias"] + 1.0
    assert _error(model, sd, x, ref) == float("inf")


def test_fuzzer_writes_concatenations_into_slices():
    """Some concatenations are written into the slices of a new tensor (``copy_`` or
    ``t[i] = v``), a few with a slice left unwritten in a zero tensor; those are read write
    by write (each a cat of the tensor's pieces), never as one cat of the parts, and never
    unsound."""
    ops = [generate(s).ops for s in range(200)]
    assert sum("assembled:copy_" in o for o in ops) >= 3
    assert sum("assembled:setitem" in o for o in ops) >= 3
    gaps = [s for s in range(400) if any(o.endswith("-gap") for o in generate(s).ops)]
    assert gaps
    assert {run_one(s).status for s in gaps[:3]} <= {"sound", "refused", "overflow", "invalid"}


def test_fuzzer_writes_into_slices_of_results():
    """Some models overwrite part of a Linear's output (``g[:, a:b] = ...``, ``.add_``,
    ``g[:, i] = 0``, rows, the write's result read too): read write by write as cats of
    pieces, or refused (a cut along rows a mask picked), never unsound."""
    seeds = [s for s in range(200) if any(o.startswith("slice-write:") for o in generate(s).ops)]
    assert len(seeds) >= 10
    assert len({o for s in seeds for o in generate(s).ops if o.startswith("slice-write:")}) >= 5
    statuses = [run_one(s).status for s in seeds[:6]]
    assert set(statuses) <= {"sound", "refused", "overflow"} and "sound" in statuses


def test_fuzzer_writes_in_place_through_out():
    """Some in-place writes are written through ``out=`` (``torch.mul(h, p, out=h)``); none
    is unsound."""
    seeds = [s for s in range(400) if any(o.endswith("-out") for o in generate(s).ops)]
    assert len(seeds) >= 5
    assert {run_one(s).status for s in seeds[:5]} <= {"sound", "refused", "overflow"}


def test_generated_models_are_valid_torch():
    """Seeds whose models torch itself refused (a WSConv with one weight per filter: batch_norm
    over a single value) now generate valid models, and they are sound; a model whose outputs
    overflow is classed apart (not a failure of symlab, nothing to check)."""
    torch.set_num_threads(1)
    for seed in (50174, 60507):
        assert "WSConv" not in generate(seed).ops
        assert run_one(seed).status == "sound"
    assert run_one(5587).status == "overflow"  # exp, then sinh: infinite, nothing to check


def test_command_line(capsys):
    from symlab.testing.fuzz import _main

    threads = torch.get_num_threads()
    _main(["3", "2"])
    out = capsys.readouterr().out
    assert "COUNTS" in out and "BAD" not in out
    counts = ast.literal_eval(out.split("COUNTS ")[1].splitlines()[0])
    assert sum(counts.values()) == 2
    assert torch.get_num_threads() == threads  # the caller's setting is given back
    with pytest.raises(SystemExit) as exc:
        _main(["--help"])
    assert exc.value.code == 0 and "first seed" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        _main(["three", "2"])
    assert exc.value.code == 2  # a usage error, not a traceback
