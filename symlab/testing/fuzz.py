"""A model fuzzer: plain ``nn.Module`` code written the way users write it, derived and checked.

:func:`generate` writes the Python source of a random model — functional calls and modules,
``cat`` of differently-activated branches (or the same branches written into the slices of a
new tensor, now and then with a slice left unwritten), in-place writes after ops that may
return their input (some through ``out=``), both operands the same tensor, 0-dim /
one-element / per-unit parameters, linear layers on raw parameters (``F.linear``,
``h @ W.T + b``, ``torch.addmm``, an einsum; some reading a called Linear's weight), gates cut
from one fused projection (``chunk``, ``split``, ``tensor_split``, slices, ``narrow``), rows
picked by a mask, ``nonzero`` or ``argsort`` of the input or an integer buffer (or by a mask
of the hidden units themselves), ``addcmul``/``addcdiv`` of per-unit parameters, subclassed
layers (:data:`~symlab.testing.fuzz_ops.PREAMBLE`), residuals, convs and linears, pools and
flattens, softmax heads — from a seed. :func:`run_one` builds it
in float64 and eval mode with generic parameters and running statistics, derives its group and
checks sampled elements *independently* (the moved ``state_dict`` loaded into a copy of the
model), classifying it as ``sound``, ``refused`` (a named :class:`~symlab.errors.SymlabError`),
``crash`` (any other exception), ``unsound`` (an element changes the outputs, with the norm
factors that hold only up to eps left out) or ``eps`` (only such a factor does); ``invalid``
when torch itself refuses the generated model (a generator bug) and ``overflow`` when its
outputs are not finite (random weights compounding through ``pow``, ``sinh``, ``exp``: nothing
to check).

Run many from the command line, in chunks: ``python -m symlab.testing.fuzz START COUNT``.
"""

from __future__ import annotations

import copy
import random
import re
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn

from symlab.api import symmetries
from symlab.errors import SymlabError
from symlab.testing.fuzz_ops import ACT_MODULES, COMMON_CALLS, PREAMBLE, UNARY_CALLS

__all__ = ["FuzzModel", "FuzzResult", "generate", "run_many", "run_one"]


@dataclass
class FuzzModel:
    """A generated model: its source, input shape and the ops it uses."""

    seed: int
    source: str
    input_shape: tuple[int, ...]
    ops: set[str] = field(default_factory=set)


def _op_id(template: str) -> str:
    t = template.replace("{h}.", "Tensor.").replace("-{h}", "neg").replace("{h} ** 2", "pow")
    return re.sub(r"\(.*", "", t)


#: modules a generated model may call twice (one module, one weight, two places)
_REUSABLE = ("nn.Linear(", "nn.Conv2d(", "nn.LayerNorm(", "nn.RMSNorm(", "nn.BatchNorm", "PlainLN(")


class _Gen:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        # sharing and tying draw from their own stream: the rest of model ``seed`` is the same
        # with or without them
        self.share = random.Random(seed * 7919 + 17)
        self.parts = random.Random(seed * 104729 + 3)  # concatenations written into slices
        self.outs = random.Random(seed * 104729 + 7)  # in-place writes through out=
        self.hand = random.Random(seed * 104729 + 11)  # linear layers written by hand
        self.cut = random.Random(seed * 104729 + 13)  # fused projections cut in parts
        self.pick = random.Random(seed * 104729 + 17)  # rows picked by tensors
        self.fused = random.Random(seed * 104729 + 19)  # addcmul / addcdiv
        self.slices = random.Random(seed * 104729 + 23)  # writes into slices of a result
        self.attn = random.Random(seed * 104729 + 29)  # attention over the rows
        self.picked = False
        self.made: dict[str, str] = {}
        self.init: list[str] = []
        self.fwd: list[str] = []
        self.ops: set[str] = set()
        self.n = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def mod(self, expr: str, op: str | None = None) -> str:
        if expr in self.made and expr.startswith(_REUSABLE) and self.share.random() < 0.2:
            self.ops.add("module-reused")
            return self.made[expr]
        attr = self.name("m")
        self.init.append(f"self.{attr} = {expr}")
        self.ops.add(op or re.sub(r"\(.*", "", expr))
        self.made.setdefault(expr, f"self.{attr}")
        return f"self.{attr}"

    def param(self, shape: tuple[int, ...], positive: bool = False) -> str:
        attr = self.name("p")
        value = f"torch.rand({shape}) + 0.5" if positive else f"torch.randn({shape})"
        self.init.append(f"self.{attr} = nn.Parameter({value})")
        return f"self.{attr}"

    def line(self, expr: str, op: str) -> None:
        self.fwd.append(f"h = {expr}")
        self.ops.add(op)

    def in_place(self, w: int) -> None:
        """``g`` read from ``h`` by an op that may return ``h`` itself (or a copy, or a view),
        then ``h`` written in place, then either read: the write must be seen through ``g``
        exactly where ``g`` is ``h``'s memory."""
        r = self.r
        view = r.choice(["F.dropout(h, 0.5, False)", "h.type_as(h)", "h.double()",
                         "h.contiguous()", "h.clone()", "h.view(h.shape)", "h",
                         "torch.einsum('ij->ij', h)", "h + 0.0", "nn.Identity()",
                         "nn.Dropout(0.3)", "nn.Flatten(1)"])  # fmt: skip
        op = f"in-place:{_op_id(view)}"
        if view.startswith("nn."):  # a module that may return its input (or a view of it)
            view = self.mod(view) + "(h)"
        shape = r.choice([(w,), (1, w), ()])
        write = r.choice([f"h.add_({self.param(shape)})", f"h.mul_({self.param(shape, True)})",
                          "F.relu(h, inplace=True)", "h.tanh_()"])  # fmt: skip
        if self.outs.random() < 0.3:  # the same write through out=
            write = re.sub(r"h\.(add|mul)_\((.*)\)$", r"torch.\1(h, \2, out=h)", write)
            write = write.replace("h.tanh_()", "torch.tanh(h, out=h)")
            write = write.replace("F.relu(h, inplace=True)", "torch.clamp(h, min=0.0, out=h)")
            op += "-out"
        self.fwd += [f"g = {view}", write]
        self.line(r.choice(["g", "g + h", "h", "g * 2.0"]), op)

    def assembled(self, fa: str, fb: str, wa: int, wb: int) -> None:
        """``torch.cat([fa, fb], -1)`` written into the slices of a new tensor (in either
        order, with ``copy_`` or ``t[i] = v``), or, now and then, a write left out: the rest
        keeps its zeros, which must never be read as one cat of the parts (each write is then
        a cat of the tensor's pieces)."""
        r = self.parts
        new = r.choice(["h.new_empty(h.shape[0], {w})", "h.new_zeros(h.shape[0], {w})",
                        "torch.zeros(h.shape[0], {w}, dtype=h.dtype)"])  # fmt: skip
        copy_ = r.random() < 0.5
        writes = [(f"o[:, :{wa}]", fa), (f"o[:, {wa}:]", fb)]
        if r.random() < 0.5:
            writes.reverse()
        if r.random() < 0.1:
            writes, new = writes[:1], new.replace("new_empty", "new_zeros")
        self.fwd.append("o = " + new.format(w=wa + wb))
        for dest, value in writes:
            self.fwd.append(f"{dest}.copy_({value})" if copy_ else f"{dest} = {value}")
        form = "copy_" if copy_ else "setitem"
        self.line("o", f"assembled:{form}{'' if len(writes) == 2 else '-gap'}")

    def hand_linear(self, w: int, w2: int) -> None:
        """A linear layer on raw parameters: ``F.linear``, or (drawn from its own stream) the
        product written by hand — ``h @ W.T + b``, ``h @ W``, ``torch.addmm``, an einsum —
        now and then with the weight read a second time (which must keep it fixed) or taken
        from a Linear the model also calls (weight sharing)."""
        form = self.hand.randrange(6)
        if form == 0:
            wp, bp = self.param((w2, w)), self.param((w2,))
            self.line(f"F.linear(h, {wp}, {bp})", "F.linear-param")
            return
        stored_in_out = form in (2, 3)
        wp = self.param((w, w2) if stored_in_out else (w2, w))
        bp = self.param((w2,))
        if not stored_in_out and self.hand.random() < 0.2:  # a called Linear's weight read
            wp = f"{self.mod(f'nn.Linear({w}, {w2})')}.weight"  # by hand too: shared
        expr, op = [
            (f"h @ {wp}.T + {bp}", "hand:W.T"),
            (f"h @ {wp}", "hand:W"),
            (f"torch.addmm({bp}, h, {wp})", "hand:addmm"),
            (f"torch.einsum('bi,oi->bo', h, {wp}) + {bp}", "hand:einsum"),
            (f"torch.matmul(h, {wp}.transpose(0, 1))", "hand:transpose"),
        ][form - 1]
        if self.hand.random() < 0.15:  # the weight read again: one tensor, two readers
            expr, op = f"{expr} + {wp}.sum() * 0.1", f"{op}-read-twice"
        if wp.endswith(".weight"):
            expr, op = f"{expr} + F.relu({wp[:-7]}(h))", f"{op}-shared"
        self.line(expr, op)

    def fused_gate(self, w: int, w2: int) -> None:
        """A gated unit from one fused projection cut in two (GEGLU's ``chunk``, ``split``,
        ``tensor_split``, slices, ``narrow``), drawn from its own stream; now and then the cut
        overlaps, which must fix the projection, never derive a symmetry of it."""
        r = self.cut
        fused = self.mod(f"nn.Linear({w}, {2 * w2})")
        self.fwd.append(f"f = {fused}(h)")
        form = r.choice(["chunk", "split", "tensor_split", "slices", "narrow", "overlap"])
        a, b = {
            "chunk": ("f.chunk(2, -1)[0]", "f.chunk(2, -1)[1]"),
            "split": ("torch.split(f, {w2}, dim=-1)[0]", "torch.split(f, {w2}, dim=-1)[1]"),
            "tensor_split": ("f.tensor_split(2, -1)[0]", "f.tensor_split(2, -1)[1]"),
            "slices": ("f[..., :{w2}]", "f[:, {w2}:]"),
            "narrow": ("f.narrow(-1, 0, {w2})", "f.narrow(-1, {w2}, {w2})"),
            "overlap": ("f[:, :{w2}]", "f[:, {w2} - 1:-1]"),
        }[form]
        a, b = a.format(w2=w2), b.format(w2=w2)
        gate = r.choice(["F.gelu({})", "F.silu({})", "torch.sigmoid({})", "F.relu({})"])
        pair = (gate.format(b), a) if r.random() < 0.5 else (a, gate.format(b))
        self.line(f"{pair[0]} * {pair[1]}", f"cut:{form}")

    def row_pick(self) -> None:
        """Rows of ``h`` picked by tensors (advanced indexing of the batch axis; at least two,
        for the batch norms the model is warmed up with), drawn from its own stream, at most
        once per model: by a mask or the ``nonzero`` of the input, its
        ``argsort``, an integer buffer, or (which must keep ``h`` fixed) a mask of ``h``
        itself."""
        r = self.pick
        self.picked = True
        form = r.choice(["mask", "mask", "nonzero", "argsort", "buffer", "hidden"])
        attr = ""
        if form == "buffer":
            attr = self.name("i")
            rows = [r.randrange(4) for _ in range(r.randint(2, 6))]  # (batches of 4 or 8)
            self.init.append(f"self.register_buffer('{attr}', torch.tensor({rows}))")
        end = ", :]" if r.random() < 0.3 else "]"  # h[i, :] or h[i]
        expr = {
            "mask": "h[x0[:, 0] >= x0[:, 0].median()" + end,  # at least half the rows: never empty
            "nonzero": "h[torch.nonzero(x0[:, 0] >= x0[:, 0].median()).squeeze(-1)" + end,
            "argsort": "h[x0[:, 0].argsort()" + end,
            "buffer": f"h[self.{attr}" + end,
            "hidden": "torch.cat([h[:1], h[1:][h[1:, 0] >= h[1:, 0].mean()]])",  # 2+ rows
        }[form]
        self.line(expr, f"pick:{form}")

    def slice_write(self, w: int) -> None:
        """A write into a slice of a tensor the model computed (drawn from its own stream):
        ``g = lin(h)``, then part of ``g``'s units or rows overwritten (by a function of that
        part, a parameter, a slice of ``h``, zeros) or changed in place (``add_``, ``mul_``,
        the write's own result read too), then ``g`` read."""
        r = self.slices
        g = f"{self.mod(f'nn.Linear({w}, {w})')}(h)"
        a = r.randrange(w)
        b = r.randint(a + 1, w)
        cut = f"g[:, {a}:{b}]"
        form = r.choice(["set", "add_", "mul_", "zero", "rows", "param", "other", "result"])
        write = {
            "set": f"{cut} = torch.tanh({cut})",
            "add_": f"{cut}.add_({self.param((b - a,))})",
            "mul_": f"{cut}.mul_(2.0)",
            "zero": f"g[:, {a}] = 0.0",
            "rows": "g[1:] = torch.tanh(g[1:])",
            "param": f"{cut} = {self.param((b - a,))}",
            "other": f"{cut} = h[:, {a}:{b}]",
            "result": f"y = {cut}.mul_(1.5)",
        }[form]
        self.fwd += [f"g = {g}", write]
        self.line("g + y.sum(-1, keepdim=True)" if form == "result" else "g", f"slice-write:{form}")

    def attention(self, w: int) -> None:
        """Multi-head attention over the rows of ``h`` read as one sequence (drawn from its own
        stream): separate projections, or one Linear whose rows hold each head's query, key
        and value rows in turn (GPT-NeoX); queries, keys or values maybe normalised (over each
        head or over all heads; by hand, ``nn.RMSNorm`` or ``nn.LayerNorm``; a norm of the
        values is a near miss), fewer key/value heads, the scores maybe soft-capped, the
        queries maybe scaled by one number per position; read back as rows."""
        r = self.attn
        heads, hd = r.choice([(2, 2), (2, 3), (3, 2), (4, 1)])
        kv = r.choice([heads, 1])  # all heads, or one key/value head for all
        fused = kv == heads and r.random() < 0.3
        bias = r.random() < 0.5
        o = self.mod(f"nn.Linear({heads * hd}, {w})")
        norm, scope = r.choice(["none", "hand", "rms", "ln"]), r.choice(["head", "full"])
        scope = "head" if fused else scope
        on = r.choice(["q", "k", "qk", "qk", "v"]) if norm != "none" else ""
        lines = ["t = h[None]"]
        if fused:
            qkv = self.mod(f"nn.Linear({w}, {3 * heads * hd}, bias={bias})")
            lines.append(
                f"q, k, v = {qkv}(t).view(1, -1, {heads}, {3 * hd}).transpose(1, 2).chunk(3, -1)"
            )
        for p, n in (("q", heads), ("k", kv), ("v", kv)):
            normed = self._normed(p, norm, hd if scope == "head" else n * hd) if p in on else ""
            if not fused:
                lines.append(f"{p} = {self.mod(f'nn.Linear({w}, {n * hd}, bias={bias})')}(t)")
            if normed and scope == "full":
                lines.append(f"{p} = {normed}")
            if not fused:
                lines.append(f"{p} = {p}.view(1, -1, {n}, {hd}).transpose(1, 2)")
            if normed and scope == "head":
                lines.append(f"{p} = {normed}")
        if r.random() < 0.3:
            lines.append(
                "q = q * (1 + 0.1 * torch.arange(q.shape[2], dtype=q.dtype)).view(1, 1, -1, 1)"
            )
        if kv < heads:
            n = heads // kv  # transformers' repeat_kv
            rep = f"[:, :, None].expand(1, {kv}, {n}, -1, {hd}).reshape(1, {heads}, -1, {hd})"
            lines += [f"k = k{rep}", f"v = v{rep}"]
        lines.append(f"s = q @ k.transpose(-2, -1) * {hd**-0.5}")
        cap = r.random() < 0.3
        if cap:
            lines.append("s = torch.tanh(s / 2.0) * 2.0")
        lines.append(f"y = (s.softmax(-1) @ v).transpose(1, 2).reshape(1, -1, {heads * hd})")
        self.fwd += lines
        tags = ["by-head" if fused else "", norm, scope if on else "", on,
                "gqa" if kv < heads else "", "cap" if cap else ""]  # fmt: skip
        self.line(f"{o}(y)[0]", "attention:" + "-".join(t for t in tags if t))

    def _normed(self, p: str, norm: str, width: int) -> str:
        """``p`` normalised over its last axis of ``width`` units: by hand or by a module."""
        if norm == "hand":
            g = self.param((width,))
            return f"{g} * ({p} * torch.rsqrt({p}.pow(2).mean(-1, keepdim=True) + 1e-6))"
        cls = "nn.RMSNorm" if norm == "rms" else "nn.LayerNorm"
        return f"{self.mod(f'{cls}({width})')}({p})"

    # -- vectors ---------------------------------------------------------------------------
    def act(self, glu: bool = False) -> str:
        """An elementwise call template; GLU (which halves the width) only when ``glu``. Half
        the time one of the everyday activations, so that most models reach derivation."""
        if self.r.random() < 0.5:
            t = self.r.choice(COMMON_CALLS)
            self.ops.add(_op_id(t))
            return t
        if self.r.random() < 0.5:
            t = self.r.choice(UNARY_CALLS)
            self.ops.add(_op_id(t))
            return t
        expr = self.r.choice([a for a in ACT_MODULES if glu or "GLU" not in a])
        return self.mod(expr) + "({h})"

    def vec_step(self, w: int) -> int:
        r, k = self.r, self.r.randrange(11)
        w2 = r.randint(2, 5)
        if k == 0:
            cls = r.choice(["nn.Linear", "nn.Linear", "ScaledLinear", "OffsetLinear"])
            self.line(f"{self.mod(f'{cls}({w}, {w2}, bias={r.random() < 0.8})')}(h)", cls)
            return w2
        if k == 1:
            self.line(self.act(glu=w % 2 == 0).format(h="h"), "act")
            return (
                w // 2
                if self.init
                and self.init[-1].endswith("nn.GLU()")
                and self.fwd[-1].startswith(f"h = {self.init[-1].split(' =')[0]}")
                else w
            )
        if k == 2:
            norm = r.choice(
                [
                    f"nn.LayerNorm({w})",
                    f"nn.BatchNorm1d({w})",
                    f"NormAct1d({w})",
                    f"nn.RMSNorm({w})",
                    f"PlainLN({w})",
                    f"nn.LayerNorm({w}, elementwise_affine=False)",
                ]
            )
            self.line(f"{self.mod(norm)}(h)", re.sub(r"\(.*", "", norm))
            return w
        if k == 3:
            lin = self.mod(f"nn.Linear({w}, {w})")
            self.line(f"h + {lin}({self.act().format(h='h')})", "residual")
            return w
        if k == 4:
            a, b = self.mod(f"nn.Linear({w}, {w2})"), self.mod(f"nn.Linear({w}, {w})")
            fa, fb = self.act().format(h=f"{a}(h)"), self.act().format(h=f"{b}(h)")
            if self.parts.random() < 0.3:
                self.assembled(fa, fb, w2, w)
            else:
                self.line(f"torch.cat([{fa}, {fb}], -1)", "torch.cat")
            return w2 + w
        if k == 5 and r.random() < 0.3:
            self.in_place(w)
            return w
        if k == 5:
            expr, op = r.choice(
                [
                    ("h * h", "mul-self"),
                    ("h + h", "add-self"),
                    ("torch.cat([h, h], -1)", "cat-self"),
                    ("h - h", "sub-self"),
                    ("h * h.sigmoid()", "swish-by-hand"),
                ]
            )
            self.line(expr, op)
            return 2 * w if "cat" in expr else w
        if k == 6:
            shape = r.choice([(), (1,), (w,), (1, w), (1, 1)])
            p = self.param(shape, positive=True)
            expr = r.choice([f"h * {p}", f"{p} * h", f"h / {p}", f"h + {p}", f"h - {p}"])
            op = f"param{len(shape)}-{expr.split()[1] if expr[0] == 'h' else 'r*'}"
            if self.fused.random() < 0.3:  # the same parameter through addcmul / addcdiv
                expr, op = self.fused.choice([
                    (f"torch.addcmul({p}, h, {p}, value=0.5)", "addcmul"),
                    (f"h.addcmul(h, {p})", "addcmul-method"),
                    (f"torch.addcmul(h, {p}, h)", "addcmul-self"),
                    (f"torch.addcdiv(h, {p}, h.abs() + 1.0)", "addcdiv"),
                    (f"torch.addcdiv({p}, h, {p})", "addcdiv-param"),
                ])  # fmt: skip
            self.line(expr, op)
            return w
        if k == 7 and self.cut.random() < 0.4:
            self.fused_gate(w, w2)
            return w2
        if k == 7:
            a, b = self.mod(f"nn.Linear({w}, {w2})"), self.mod(f"nn.Linear({w}, {w2})")
            self.line(f"F.silu({a}(h)) * {b}(h)", "gated")
            return w2
        if k == 8:
            expr = r.choice(
                [
                    "h - h.mean(-1, keepdim=True)",
                    "F.softmax(h, -1)",
                    "F.log_softmax(h, dim=-1)",
                    f"h @ self.{self.param((w, w))[5:]}",
                    "F.normalize(h, dim=-1)",
                    "h.unsqueeze(1).squeeze(1)",
                    "h.view(h.shape[0], -1)",
                    "torch.stack([h, h], 1).sum(1)",
                    "h.transpose(0, 1).t()",
                ]
            )
            self.line(expr, _op_id(expr.replace("h", "{h}", 1)))
            return w
        if k == 9 and r.random() < 0.3:
            self.hand_linear(w, w2)
            return w2
        if k == 9:  # a sigmoid over a concatenation of differently-activated branches
            a, b = self.mod(f"nn.Linear({w}, {w2})"), self.mod(f"nn.Linear({w}, {w})")
            self.line(f"torch.sigmoid(torch.cat([F.relu({a}(h)), {b}(h)], -1))", "sigmoid-cat")
            return w2 + w
        self.line(f"{self.mod(f'nn.Dropout({r.choice([0.1, 0.5])})')}(h)", "nn.Dropout")
        if not self.picked and self.pick.random() < 0.5:
            self.row_pick()
        if self.slices.random() < 0.3:
            self.slice_write(w)
        if self.attn.random() < 0.3:
            self.attention(w)
        return w

    # -- feature maps ----------------------------------------------------------------------
    def map_step(self, c: int, hw: int) -> tuple[int, int]:
        r, k = self.r, self.r.randrange(10)
        c2 = r.randint(2, 4)
        if k == 0:
            cls = r.choice(["nn.Conv2d", "nn.Conv2d", "WSConv", "ScaledConv", "TwiceConv"])
            kern, pad = r.choice([(1, 0), (3, 1), (3, 0), (2, 0)])
            if hw - kern + 1 + 2 * pad < 2:
                kern, pad = 1, 0
            if cls == "WSConv" and c * kern * kern < 2:  # one weight per filter: nothing to
                cls = "nn.Conv2d"  # standardise (batch_norm refuses a single value)
            bias = r.random() < 0.8
            self.line(
                f"{self.mod(f'{cls}({c}, {c2}, {kern}, padding={pad}, bias={bias})')}(h)", cls
            )
            return c2, hw - kern + 1 + 2 * pad
        if k == 1:
            self.line(self.act().format(h="h"), "act")
            return c, hw
        if k == 2:
            norm = r.choice(
                [
                    f"nn.BatchNorm2d({c})",
                    f"NormAct({c})",
                    f"nn.GroupNorm(1, {c})",
                    f"GNAct(1, {c})",
                    f"nn.InstanceNorm2d({c}, affine=True)",
                ]
            )
            self.line(f"{self.mod(norm)}(h)", re.sub(r"\(.*", "", norm))
            return c, hw
        if k == 3:
            conv = self.mod(f"nn.Conv2d({c}, {c}, 3, padding=1)")
            self.line(f"h + {conv}({self.act().format(h='h')})", "residual-conv")
            return c, hw
        if k == 4:
            a, b = self.mod(f"nn.Conv2d({c}, {c2}, 1)"), self.mod(f"nn.Conv2d({c}, {c}, 1)")
            fa, fb = self.act().format(h=f"{a}(h)"), self.act().format(h=f"{b}(h)")
            self.line(f"torch.cat([{fa}, {fb}], 1)", "torch.cat")
            return c2 + c, hw
        if k == 5:
            expr = r.choice(
                [
                    "h * h",
                    "h + h",
                    "torch.cat([h, h], 1)",
                    f"h * self.{self.param(r.choice([(), (1,), (1, c, 1, 1)]), True)[5:]}",
                ]
            )
            self.line(expr, "map-" + expr[:7])
            return (2 * c if "cat" in expr else c), hw
        if k == 6 and hw >= 4:
            pool = r.choice(
                [
                    "nn.MaxPool2d(2)",
                    "nn.AvgPool2d(2)",
                    "nn.AdaptiveAvgPool2d(2)",
                    "nn.AdaptiveMaxPool2d(2)",
                ]
            )
            self.line(f"{self.mod(pool)}(h)", re.sub(r"\(.*", "", pool))
            return c, 2 if "Adaptive" in pool else hw // 2
        if k == 7:
            se = self.mod(f"nn.Conv2d({c}, {c}, 1)")
            self.line(f"h * torch.sigmoid({se}(h.mean((2, 3), keepdim=True)))", "se")
            return c, hw
        if k == 8:
            pad = r.choice(
                [
                    "nn.ZeroPad2d(1)",
                    "nn.ReflectionPad2d(1)",
                    "nn.Upsample(scale_factor=2)",
                    "F.avg_pool2d(h, 3, 1, 1)",
                ]
            )
            if pad.startswith("F.") or hw >= 8:
                self.line("F.avg_pool2d(h, 3, 1, 1)", "F.avg_pool2d")
                return c, hw
            self.line(f"{self.mod(pad)}(h)", re.sub(r"\(.*", "", pad))
            return c, hw * 2 if "Upsample" in pad else hw + 2
        if k == 9 and r.random() < 0.5:  # a sigmoid read by an unpadded conv
            conv = self.mod(f"nn.Conv2d({c}, {c2}, 1)")
            self.line(f"{conv}(torch.sigmoid(h))", "sigmoid-conv1x1")
            return c2, hw
        if k == 9:
            dw = self.mod(f"nn.Conv2d({c}, {c}, 3, padding=1, groups={c})")
            self.line(f"{dw}(h)", "depthwise")
            return c, hw
        return c, hw

    def to_vec(self, c: int, hw: int) -> int:
        expr = self.r.choice(
            [
                "h.mean((2, 3))",
                "torch.flatten(h, 1)",
                "h.amax((2, 3))",
                "F.adaptive_avg_pool2d(h, 1).flatten(1)",
                "h.view(h.shape[0], -1)",
                "h.sum((2, 3))",
            ]
        )
        self.line(expr, _op_id(expr.replace("h", "{h}", 1)))
        return c * hw * hw if "flatten(h" in expr or "view" in expr else c


def generate(seed: int) -> FuzzModel:
    """The source of a random model (a class ``Net``) and its input shape.

    >>> m = generate(0)
    >>> "class Net(nn.Module)" in m.source and len(m.input_shape) in (2, 4)
    True
    """
    g = _Gen(seed)
    r = g.r
    if r.random() < 0.5:
        d = w = r.randint(2, 5)
        shape: tuple[int, ...] = (8, d)
    else:
        c, hw = r.randint(1, 3), r.choice([4, 5, 6])
        shape = (4, c, hw, hw)
        for _ in range(r.randint(1, 4)):
            c, hw = g.map_step(c, hw)
        w = g.to_vec(c, hw)
    for _ in range(r.randint(1, 5)):
        w = g.vec_step(w)
    k = r.randint(1, 3)
    g.line(f"{g.mod(f'nn.Linear({w}, {k})')}(h)", "nn.Linear")
    head = r.choice(["", "", "F.softmax(h, -1)", "F.log_softmax(h, -1)", "h.softmax(dim=1)"])
    if head:
        g.line(head, _op_id(head.replace("h", "{h}", 1)))
    if g.share.random() < 0.3:
        g.init.append(f"tie_params(self, {seed})")
        g.ops.add("tied-params")
    if g.picked:  # the input, for the masks that pick rows
        g.fwd.insert(0, "x0 = h.flatten(1)")
    if random.Random(seed * 104729 + 5).random() < 0.25:  # its own stream: the rest unchanged
        g.fwd.insert(0, "assert h.shape[0] > 0")  # stops torch.fx: read through torch.export
        g.ops.add("export")
    body = "\n".join(
        ["class Net(nn.Module):", "    def __init__(self):", "        super().__init__()"]
        + [f"        {ln}" for ln in g.init]
        + ["", "    def forward(self, h):"]
        + [f"        {ln}" for ln in g.fwd]
        + ["        return h", ""]
    )
    return FuzzModel(seed, PREAMBLE + "\n\n" + body, shape, g.ops)


@dataclass
class FuzzResult:
    """The class of one fuzzed model (see the module docstring) and what explains it."""

    seed: int
    status: str
    detail: str = ""
    ops: set[str] = field(default_factory=set)


def build(m: FuzzModel) -> tuple[nn.Module, torch.Tensor]:
    """The model of ``m`` in float64, eval mode, generic parameters and running statistics."""
    namespace: dict[str, object] = {}
    exec(compile(m.source, f"<fuzz {m.seed}>", "exec"), namespace)
    torch.manual_seed(m.seed)
    model = namespace["Net"]().double()  # type: ignore[operator]
    g = torch.Generator().manual_seed(m.seed)
    x = torch.randn(m.input_shape, generator=g, dtype=torch.float64) * 1.5
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.8)
        model.train()
        model(x * 1.2 + 0.3)
    return model.eval(), x


def _error(
    model: nn.Module, sd: dict[str, torch.Tensor], x: torch.Tensor, ref: torch.Tensor
) -> float:
    """The relative change of the outputs with the moved ``sd`` loaded into a copy of the
    model; infinite where two keys of one tied parameter were moved apart (loading would keep
    one of them silently)."""
    tied: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        tied.setdefault(id(p), []).append(name)
    for first, *rest in tied.values():
        if any(not torch.equal(sd[k], sd[first]) for k in rest):
            return float("inf")
    moved = copy.deepcopy(model)
    moved.load_state_dict(sd)
    with torch.no_grad():
        out = moved(x.clone())  # a model may write into its input
    return float((out - ref).abs().max() / (ref.abs().max() + 1e-30))


def run_one(seed: int, samples: int = 3, model: FuzzModel | None = None) -> FuzzResult:
    """Generate (or take ``model``), derive and independently check model ``seed``."""
    m = generate(seed) if model is None else model
    try:
        model, x = build(m)
        with torch.no_grad():
            ref = model(x.clone())  # a model may write into its input
        if not bool(torch.isfinite(ref).all()):
            return FuzzResult(seed, "overflow", "non-finite outputs", m.ops)
    except Exception as e:
        return FuzzResult(seed, "invalid", f"{type(e).__name__}: {e}", m.ops)
    try:
        G = symmetries(model, x)
    except SymlabError as e:
        return FuzzResult(seed, "refused", f"{type(e).__name__}: {str(e)[:160]}", m.ops)
    except Exception as e:
        return FuzzResult(seed, "crash", f"derive: {type(e).__name__}: {e}", m.ops)
    try:
        sd = model.state_dict()
        eps = max((float(getattr(mod, "eps", 0.0) or 0.0) for mod in model.modules()), default=0)
        inexact = {f.name for f in G.factors if not f.exact}
        for i in range(samples):
            h = G.sample(seed * 31 + i)
            exact_part = G.element({k: v for k, v in h.values.items() if k not in inexact})
            if _error(model, G.act(exact_part, sd), x, ref) > 1e-6:
                return FuzzResult(seed, "unsound", f"element {i}", m.ops)
            if inexact and _error(model, G.act(h, sd), x, ref) > max(1e-6, 100 * eps):
                return FuzzResult(seed, "eps", f"element {i}: norm factors near eps", m.ops)
    except Exception as e:
        return FuzzResult(seed, "crash", f"check: {type(e).__name__}: {e}", m.ops)
    return FuzzResult(seed, "sound", "", m.ops)


def run_many(start: int, count: int) -> tuple[Counter[str], set[str], list[FuzzResult]]:
    """Run seeds ``start .. start + count``: counts per class, the distinct ops used, and the
    crashes and unsound results.

    >>> counts, ops, bad = run_many(0, 2)
    >>> sum(counts.values()), bad
    (2, [])
    """
    counts: Counter[str] = Counter()
    ops: set[str] = set()
    bad = []
    for seed in range(start, start + count):
        res = run_one(seed)
        counts[res.status] += 1
        ops |= res.ops
        if res.status in ("crash", "unsound", "invalid"):
            bad.append(res)
    return counts, ops, bad


def _main(argv: list[str] | None = None) -> None:
    """``python -m symlab.testing.fuzz START COUNT``: run seeds START .. START + COUNT and print
    the crashes and unsound results, the counts per class and the ops used."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m symlab.testing.fuzz",
        description="Derive and check the groups of generated models, seed by seed.",
    )
    parser.add_argument("start", type=int, help="first seed")
    parser.add_argument("count", type=int, help="number of seeds")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: one thread is the fastest
    try:
        counts, ops, bad = run_many(args.start, args.count)
    finally:
        torch.set_num_threads(threads)
    for res in bad:
        print("BAD", res.seed, res.status, res.detail[:300].replace("\n", " "))
    print("COUNTS", dict(counts))
    print("OPS", len(ops), sorted(ops))


if __name__ == "__main__":  # pragma: no cover
    _main()
