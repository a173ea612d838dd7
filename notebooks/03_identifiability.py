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
# # 03 · Identifiability: when can two runs be merged without alignment?
#
# Two independently trained runs of a standard MLP compute similar functions with their hidden
# units in unrelated orders, so averaging their weights directly ("unaligned") fails. W-asymmetric
# layers (Lim et al. 2024) fix some weights of every unit to random values, shared by the runs;
# the units become distinguishable, and training tends to put "the same" unit in the same place.
#
# Bürgin, Herbst, Lin and Jegelka (ICML 2026) make this measurable with two measures, and
# symlab reports both per layer. *Function classes*: after removing the structural gauges
# (scales, signs), B's unit functions are placed in A's slots; the layer is identifiable when
# the identity is already the optimal placement. *Activation correlation*: the mean correlation
# of matched units at the identity, against the optimal and a random matching. Each gives
#
# $$\text{score} = \operatorname{clip}\Big(\frac{\text{random} - \text{identity}}
# {\text{random} - \text{optimal}}, 0, 1\Big)$$
#
# (costs; for correlations the signs flip), and `predict_alignment_free` predicts a low-loss
# unaligned path when every layer's function-class score is $\ge 0.9$ and the runs' gauges
# agree (or, for a layer whose read-out both runs share, when the midpoint's bending is within
# the tolerance: the last section) — a prediction we check against the measured barrier.
#
# Setting: the paper's *coherence sandbox* (a ReLU teacher of two latent variables embedded in
# 20 dimensions), one hidden layer of 64 units, AdamW. Runs in about a minute.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

import symlab as sl

SMALL = os.environ.get("SYMLAB_SMALL", "0") == "1"
torch.set_num_threads(1)

SEEDS = [0, 1, 2] if SMALL else [0, 1, 2, 3, 4]
data = sl.data.load("coherence", seed=0)
print(data.x_train.shape, data.x_test.shape, data.task)

config = sl.train.TrainConfig(
    optimizer="adamw", lr=1e-2, weight_decay=1e-2, epochs=40, batch_size=64, progress=False
)


def make(family, seed):
    # The mask and fixed values come from mask_seed (default 0): shared by every run, as they
    # must be for runs that are to be merged. `seed` only changes the initialisation.
    asym = {"num_fixed": [16, 0], "kappa": 2.0} if family == "W-asymmetric" else None
    return sl.nn.MLP([20, 64, 1], "relu", asym=asym, seed=seed)


runs = {}
for family in ["standard", "W-asymmetric"]:
    runs[family] = []
    for s in SEEDS:
        model = make(family, s)
        result = sl.train.train(model, data, config, data_seed=s)
        runs[family].append(model.eval())
        print(f"{family:<13} seed {s}: test MSE {result.test_loss:.2e}")

# %% [markdown]
# ## Symmetry groups
#
# The standard net has $64!$ permutations (and scalings) of its hidden units. In the
# W-asymmetric net, 16 random fixed inputs per unit tell the units apart, and symlab's colour
# refinement leaves only the identity permutation.

# %%
for family, models in runs.items():
    G = sl.symmetries(models[0])
    perm = [f for f in G.factors if f.kind == "permutation"]
    print(
        f"{family:<13} log10|G_discrete| = {G.log10_order:6.1f}; permutation factors: "
        f"{[(f.name, f.size) for f in perm]}"
    )

# %% [markdown]
# ## Identifiability per layer
#
# `sl.identify.identifiability(a, b, data)` compares the two runs on the test split; the report
# has one row per space of hidden units, with the correlation measure on the left and the
# function-class measure on the right (its score under the move cost, the paper's class-centred
# cost beside it — "degenerate" where every unit shares one class — and ν(U), the coherence of
# the layer's input support).

# %%
reports = {family: sl.identify.identifiability(m[0], m[1], data) for family, m in runs.items()}
for family, report in reports.items():
    print(family)
    print(report, "\n")

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3), sharey=True)
for ax, (family, report) in zip(axes, reports.items(), strict=True):
    layer = next(iter(report.layers.values()))
    scores = [layer.score, layer.function_class.score]
    ax.bar(["correlation", "function classes"], scores, color=["0.6", "tab:blue"])
    ax.set_ylim(0, 1.05)
    ax.set_title(family)
axes[0].set_ylabel("identifiability score")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Prediction vs measured unaligned barrier
#
# `sl.identify.test_prediction` makes the prediction, then measures the unaligned barrier
# $\max_\alpha L(\theta(\alpha)) - \max(L(\theta_A), L(\theta_B))$ (the paper's, `"max_endpoint"`)
# with `sl.connect.interpolate` (21 points, the paper's choice), checks that both endpoints
# trained, and says whether prediction and measurement agree. Every pair of runs:

# %%
rows = []
for family, models in runs.items():
    for i in range(len(models)):
        for j in range(i + 1, len(models)):
            rep = sl.identify.identifiability(models[i], models[j], data)
            check = sl.identify.test_prediction(models[i], models[j], data, report=rep)
            score = rep.function_class_score
            rows.append((family, i, j, score, check.barrier, check.agree, check.curve))
            print(
                f"{family:<13} runs {i},{j}: function-class score {score:.2f}, correlation "
                f"{rep.score:.2f}, unaligned barrier {check.barrier:.4f}, prediction "
                f"{'agrees' if check.agree else 'DISAGREES'}"
                + ("" if check.trained else f" (not counted: {check.endpoints.reason})")
            )

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
colors = {"standard": "tab:red", "W-asymmetric": "tab:blue"}
for family, i, j, score, barrier, agree, curve in rows:
    axes[0].scatter(score, barrier, color=colors[family], marker="o" if agree else "x")
    if (i, j) == (0, 1):
        curve.plot(axes[1], label=family, color=colors[family])
axes[0].axvline(0.9, ls="--", color="0.5")
axes[0].set_xlabel("function-class score (least layer)")
axes[0].set_ylabel("unaligned barrier (max_endpoint)")
axes[0].set_title("prediction threshold 0.9 (dashed)")
for family, c in colors.items():
    axes[0].scatter([], [], color=c, label=family)
axes[0].legend()
axes[1].set_yscale("log")
axes[1].set_title("test MSE along the unaligned path, runs 0→1")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What this shows, and what it does not
#
# * Standard runs: score ≈ 0 under both measures (the identity is no better than a random
#   matching) and a clear unaligned barrier. W-asymmetric runs: scores near 1 and a flat
#   unaligned path (they fit a little worse: fixed weights cost capacity).
# * The predictor is empirical (the paper's claim, tested here on a handful of seeds), not a
#   theorem. Try deeper nets (`[20, 64, 64, 1]` with `num_fixed=[16, 16, 0]`) or other
#   `kappa`/`num_fixed`: identifiability can stay high while the barrier grows past the 0.1
#   tolerance, and then `check.agree` is `False`.
# * Where identifiability is low, align first: `sl.align.activation_matching` or
#   `sl.align.weight_matching` (notebook 04).

# %%
scores = {f: np.mean([r[3] for r in rows if r[0] == f]) for f in runs}
print({f: round(float(v), 2) for f, v in scores.items()})
assert scores["standard"] < 0.5 < scores["W-asymmetric"]

# %% [markdown]
# ## Effective symmetries: beyond the structural group
#
# The structural group counts the permutations that leave the network's function unchanged
# *for every input*. On the data's support more units can exchange their functions: unit $i$
# can realise unit $j$'s function at a norm cost $C_{ij}$ (the least $\lVert w\rVert^2$ of its
# trainable weights), and a swap costs $T_{ij} = C_{ij} + C_{ji} - C_{ii} - C_{jj}$. The
# *effective group* of a layer is generated by the swaps costing at most ε (1 % of a unit's own
# cost): `sl.identify.effective_group`. It always contains the structural permutations.
#
# Below: a masked layer (each unit trains on 3 of the 20 inputs, κ = 0, like the paper's
# sandbox) on the sandbox at coherence 1 (each latent on one input) and at coherence 1/10
# (spread over ten inputs), beside the standard layer.


# %%
def masked(seed):
    return sl.nn.MLP([20, 64, 1], "relu", asym={"num_fixed": [17, 0], "kappa": 0.0}, seed=seed)


sandbox_config = sl.train.TrainConfig(
    optimizer="adamw",
    lr=1e-2,
    weight_decay=1e-2,
    epochs=30 if SMALL else 60,
    batch_size=128,
    progress=False,
)
sandboxes = {c: sl.data.load("coherence", seed=0, copies=c) for c in (1, 10)}
masked_runs = {}
for copies, ds in sandboxes.items():
    masked_runs[copies] = []
    for s in (0, 1):
        m = masked(s)
        sl.train.train(m, ds, sandbox_config, data_seed=s)
        masked_runs[copies].append(m.eval())

for name, model, ds in [
    ("standard", runs["standard"][0], data),
    ("masked, ν = 1", masked_runs[1][0], sandboxes[1]),
    ("masked, ν = 1/10", masked_runs[10][0], sandboxes[10]),
]:
    eg = sl.identify.effective_group(model, ds, "layers.0.linear")
    print(
        f"{name:<17} log10|structural| {eg.structural_log10_order:6.1f}  log10|effective| "
        f"{eg.log10_order:6.1f}  identifiable units {int(eg.identifiable.sum())}/{eg.n}"
    )

# %% [markdown]
# The masked layers have (almost) no structural permutations left, yet large effective groups:
# "large families of approximately equivalent solutions even in structurally asymmetric models".
#
# ## Effective alignment
#
# Structural alignment can only move units within the derived group — for the masked nets,
# nowhere. `sl.align.effective_matching` moves B's unit *functions* into A's slots across
# effective symmetries and re-realises each at least norm inside its new slot's class (its mask
# stays); the function of B on the data is unchanged (`residual`). Barriers of the paths from A:

# %%
for copies, (a, b) in masked_runs.items():
    ds = sandboxes[copies]
    G = sl.symmetries(a)
    wm = sl.align.weight_matching(a.state_dict(), b.state_dict(), G, seed=0).apply_model(b)
    eff = sl.align.effective_matching(a, b, ds, G)
    bars = {
        name: sl.connect.interpolate(a, m, ds, 21).barrier("max_endpoint")
        for name, m in [("none", b), ("structural", wm), ("effective", eff.apply_model(b))]
    }
    rep = sl.identify.identifiability(a, b, ds, G)
    print(
        f"coherence 1/{copies}: barriers "
        + ", ".join(f"{k} {v:.4f}" for k, v in bars.items())
        + f"; residual {eff.residual:.1e}; function-class score {rep.function_class_score:.2f}"
    )
    if copies == 10:
        assert bars["effective"] < 0.5 * bars["structural"]

# %% [markdown]
# The unaligned and the structurally aligned paths cross a barrier, and the effective alignment
# removes it: the runs differ by an effective symmetry that no structural group contains — the
# gap between structural and effective symmetries that Bürgin et al. study. (With this
# trainable read-out the barrier is not smaller at coherence 1; with the paper's fixed read-out,
# E3's and E8's sandbox, it is.) Experiment E8 (`symlab experiment run e8`) runs this across
# coherences, κ and widths, with swap-cost distributions against the data's intrinsic dimension.

# %% [markdown]
# ## When both runs share the read-out, bending decides
#
# The paper's sandbox reads its hidden units with a *fixed* sum, $y = \sum_h
# \mathrm{ReLU}((W \odot M)x + b)$. Then the order of the units cannot matter to what reads them:
# at the midpoint the next layer computes $\tfrac12(W_Ah_A + W_Bh_B) - \tfrac14(W_A - W_B)(h_A -
# h_B) - \bar W\delta$, and with $W_A = W_B$ only the *bending* $\delta$ of the ReLU between the
# runs' pre-activations is left. `sl.identify.consumer_check` finds such layers by stitching
# (the rest of run A fed run B's layer gives run B's output, and so on), and the prediction then
# compares the bending with the tolerance instead of asking for identifiable units. The masked
# units below are not identifiable at any coherence, yet the unaligned path is flat at coherence
# 1/2 and not at 1/10 — and the bending says so.


# %%
class SumSandbox(torch.nn.Module):
    """The paper's sandbox: a masked ReLU layer (κ = 0) read by a fixed sum."""

    def __init__(self, seed):
        super().__init__()
        self.hidden = sl.nn.WAsymLinear(20, 64, num_fixed=17, kappa=0.0, seed=0, init_seed=seed)
        self.head = sl.nn.WAsymLinear(64, 1, num_fixed=64, kappa=0.0, bias=False, seed=0)
        with torch.no_grad():
            self.head.fixed.fill_(1.0)

    def forward(self, x):
        return self.head(torch.relu(self.hidden(x)))


for copies in (2, 10):
    ds = sl.data.load("coherence", seed=0, copies=copies)
    a, b = SumSandbox(0), SumSandbox(1)
    for s, m in enumerate((a, b)):
        sl.train.train(m, ds, sandbox_config, data_seed=s)
    check = sl.identify.test_prediction(a.eval(), b.eval(), ds)
    layer = check.prediction.layers["hidden"]
    print(
        f"coherence 1/{copies}: function-class score {layer['score']:.2f}, shared read-out "
        f"{layer['shared_consumer']}, bending {layer['bending']:.3f}, measured barrier "
        f"{check.barrier:.3f} — prediction {'agrees' if check.agree else 'DISAGREES'}"
    )
    assert layer["shared_consumer"]
