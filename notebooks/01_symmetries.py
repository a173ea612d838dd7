# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Symmetries of an architecture
#
# A *parameter symmetry* is a transformation $g$ of the weights with $f(x; g\cdot\theta) =
# f(x; \theta)$ for every input $x$. symlab derives the group of all such transformations from the
# architecture alone, then proves sampled elements on the real model. This notebook:
#
# 1. derives groups of MLPs with **symbolic widths** (orders as sympy expressions);
# 2. traces a CNN and a transformer block with `torch.fx` and draws the graph;
# 3. samples a group element and verifies invariance on the model;
# 4. registers a rule for a custom module.
#
# Runs in a few seconds on a laptop CPU.

# %%
import os

import matplotlib.pyplot as plt
import networkx as nx
import sympy as sp
import torch
from torch import nn

import symlab as sl

SMALL = os.environ.get("SYMLAB_SMALL", "0") == "1"  # CI sets this; nothing here is slow anyway
torch.set_num_threads(1)
torch.manual_seed(0)

# %% [markdown]
# ## 1. MLPs with symbolic widths
#
# `sl.graph.mlp` builds an architecture graph; widths may be sympy symbols. Each hidden layer of
# width $n$ contributes $n!$ permutations; what else it contributes depends on the activation
# (the *intertwiner group*, Godfrey et al. 2022).

# %%
n, m = sp.symbols("n m", positive=True, integer=True)
G = sl.symmetries(sl.graph.mlp([784, n, m, 10], activation="relu"))
print("order     :", G.order)  # factorial(m)*factorial(n)
print("dimension :", G.dimension)  # m + n positive scalings

# %%
rows = []
for act in ["relu", "tanh", "sigmoid", "gelu", "identity"]:
    Ga = sl.symmetries(sl.graph.mlp([5, n, 3], activation=act))
    rows.append((act, Ga.order, Ga.dimension, ", ".join(f.kind for f in Ga.factors)))
print(f"{'activation':<10} {'order':<20} {'dim':<6} factors")
for act, order, dim, kinds in rows:
    print(f"{act:<10} {sp.sstr(order):<20} {sp.sstr(dim):<6} {kinds}")

# %% [markdown]
# Substituting numbers gives the concrete group; `log10_order` is the size of its discrete part.
# Git Re-Basin's MNIST MLP (three hidden layers of 512) has about $10^{3500}$ permutation
# symmetries:

# %%
G512 = sl.symmetries(sl.graph.mlp([784, 512, 512, 512, 10], activation="relu"))
print(f"log10 |discrete part| = {G512.log10_order:.1f}, continuous dimension = {G512.dimension}")

# %% [markdown]
# ## 2. Tracing real modules: a CNN and a transformer block
#
# Any `nn.Module` is traced with `torch.fx` from an example input. The tiny CNN from the model
# zoo has BatchNorm, so each channel also has a scale and a sign that BatchNorm divides out
# (exact only up to its `eps`, hence `exact=False` on those factors).

# %%
from symlab.nn import zoo

kw = zoo.tiny("cnn")  # {"widths": (4, 6, 6)}
cnn = zoo.get("cnn", **kw, seed=0).double().eval()
x_img = zoo.example_input("cnn", 8, **kw).double()
G_cnn = sl.symmetries(cnn, x_img)
print(G_cnn)

# %% [markdown]
# `sl.trace` returns the `ArchGraph` that derivation runs on; `.nx` is a `networkx.DiGraph`
# whose nodes carry the op and width, so drawing it takes a few lines.


# %%
def draw(graph, ax, title):
    """Draw an ArchGraph top to bottom; skip connections (residual adds) in red."""
    g = graph.nx
    for layer, names in enumerate(nx.topological_generations(g)):
        for name in names:
            g.nodes[name]["layer"] = layer
    pos = nx.multipartite_layout(g, subset_key="layer", align="horizontal", scale=-1)
    labels = {k: f"{k}\n{d['node'].op}[{d['node'].width}]" for k, d in g.nodes(data=True)}
    skip = [(u, v) for u, v in g.edges if g.nodes[v]["layer"] - g.nodes[u]["layer"] > 1]
    step = [e for e in g.edges if e not in skip]
    nx.draw_networkx_edges(g, pos, step, ax=ax, node_size=1200, edge_color="0.6")
    nx.draw_networkx_edges(
        g, pos, skip, ax=ax, node_size=1200, edge_color="tab:red", connectionstyle="arc3,rad=0.6"
    )
    nx.draw_networkx_labels(g, pos, labels, ax=ax, font_size=6)
    ax.set_title(title)
    ax.axis("off")


block = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).double().eval()
x_tok = torch.randn(4, 5, 16, dtype=torch.float64)

fig, axes = plt.subplots(1, 2, figsize=(10, 8))
draw(sl.trace(cnn, x_img), axes[0], "tiny CNN")
draw(sl.trace(block, x_tok), axes[1], "TransformerEncoderLayer")
plt.tight_layout()
plt.show()

# %% [markdown]
# The transformer block: the feed-forward units permute and scale (ReLU); the two heads
# permute; and within each head any invertible $A$ acts as $W_Q \to W_Q A$,
# $W_K \to W_K A^{-T}$ (and likewise $W_V$, $W_O$). The residual stream touches the block's
# input and output, so it is fixed here.

# %%
G_block = sl.symmetries(block, x_tok)
print(G_block)
for f in G_block.factors:
    print(f"{f.name:<22} {f.kind:<12} size {f.size}  exact={f.exact}")

# %% [markdown]
# ## 3. Sample an element, act, verify
#
# `G.sample` draws a random element (uniform permutations and signs, log-uniform scalings,
# random GL blocks); `G.act` transforms a `state_dict`; `sl.check_invariance` does this for
# several samples and compares the model's outputs.

# %%
h = G_block.sample(torch.Generator().manual_seed(0))
moved = G_block.act(h, block.state_dict())
changed = max((moved[k] - v).abs().max().item() for k, v in block.state_dict().items())
twin = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).double().eval()
twin.load_state_dict(moved)
with torch.no_grad():
    out_err = (twin(x_tok) - block(x_tok)).abs().max().item()
print(f"largest weight change {changed:.2f}; largest output change {out_err:.1e}")
assert changed > 0.1 and out_err < 1e-10

# %%
for name, model, x in [("CNN", cnn, x_img), ("transformer block", block, x_tok)]:
    G_m = sl.symmetries(model, x)
    report = sl.check_invariance(model, G_m, x)
    print(f"{name:<18} {report}")
    assert report.passed

# %% [markdown]
# A negative control: acting on only *part* of the model (here, permuting the first
# feed-forward layer's rows but not the second layer's columns) is not a symmetry, and the
# outputs change.

# %%
sd = block.state_dict()
broken = dict(sd, **{"linear1.weight": sd["linear1.weight"].flip(0)})
twin.load_state_dict(broken)
with torch.no_grad():
    print(f"output change without compensation: {(twin(x_tok) - block(x_tok)).abs().max():.2f}")

# %% [markdown]
# ## 4. Your own module: register a rule
#
# symlab *fails closed*: an op without a rule raises `UnsupportedOpError` naming the node and
# your source line, rather than assuming the op is harmless.


# %%
class Abs(nn.Module):
    """x ↦ |x|, an activation symlab does not know."""

    def forward(self, x):
        return x.abs()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(3, 5), Abs(), nn.Linear(5, 2)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


net = Net().double()
x = torch.randn(32, 3, dtype=torch.float64)
try:
    sl.symmetries(net, x)
except sl.errors.UnsupportedOpError as e:
    print("UnsupportedOpError:", str(e)[:160], "...")

# %% [markdown]
# Teaching symlab about `Abs` takes three calls:
#
# * `declare_leaf(Abs)` — trace the module as one op instead of tracing into it;
# * `register_module_op(Abs, read)` — `read(module, width_in)` returns `(op, width, attrs)`;
# * `@sl.symmetry.rule("op")` — the rule: which tensors are tied and what they admit.
#
# $|cx| = c|x|$ for $c > 0$, so $|\cdot|$ admits positive per-unit scalings tied across it,
# exactly like ReLU: the input and output of the op are tied and admit `Mag.DIAG`.

# %%
from symlab.frontend import declare_leaf, register_module_op
from symlab.symmetry import Admits, Mag, OpSymmetry, Sign


@sl.symmetry.rule("notebook_abs")
def abs_rule(node, graph):
    x_in = graph.inputs(node.name)[0]
    return OpSymmetry(
        tie=[(x_in, node.name)],
        admits=[(x_in, Admits(Mag.DIAG, Sign.NONE), "|cx| = c|x| for c > 0")],
    )


register_module_op(Abs, lambda module, width: ("notebook_abs", width, {}))
declare_leaf(Abs)

G_net = sl.symmetries(net, x)
print(G_net)
print(sl.check_invariance(net, G_net, x))

# %% [markdown]
# `check_invariance` proves the rule *sound* (nothing false derived). For completeness on tiny
# nets, `sl.brute_force_group` tries every joint permutation and sign pattern of the hidden
# units and keeps those that leave the outputs unchanged; `compare` lists what the derived
# group misses and what it has in excess (both empty here).
#
# A caveat worth knowing: $|\cdot|$ also lets you flip the sign of a row of `fc1` with *no*
# compensation in `fc2`. Neither this rule nor the brute-force oracle (which compensates every
# sign in the next layer) models that kind of symmetry, so it is not reported — a rule may
# under-claim, never over-claim.

# %%
brute = sl.brute_force_group(net, x)
missing, extra = brute.compare(G_net)
print(
    f"brute force: {brute.order} elements; derived group misses {len(missing.permutations)}, "
    f"has {len(extra.permutations)} extra"
)
assert not missing.permutations and not extra.permutations
