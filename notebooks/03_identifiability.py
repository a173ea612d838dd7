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
# Bürgin, Herbst, Lin and Jegelka (ICML 2026) make this measurable: a layer is *identifiable*
# when the activation-matching objective between two runs (the mean correlation of matched
# units) is already (close to) optimal at the identity. symlab reports, per layer,
#
# $$\text{score} = \operatorname{clip}\Big(\frac{\text{identity} - \text{random}}
# {\text{optimal} - \text{random}}, 0, 1\Big),$$
#
# and predicts that unaligned interpolation is low-loss exactly when every layer scores
# $\ge 0.9$ — an empirical predictor, which we check against the measured barrier.
#
# Setting: the paper's *coherence sandbox* (a ReLU teacher of two latent variables embedded in
# 20 dimensions), one hidden layer of 64 units, AdamW. Runs in about ten seconds.

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
# `sl.identify.identifiability(a, b, data)` compares the two runs' unit activations on the test
# split; the report has one row per space of hidden units.

# %%
reports = {family: sl.identify.identifiability(m[0], m[1], data) for family, m in runs.items()}
for family, report in reports.items():
    print(family)
    print(report, "\n")

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3), sharey=True)
for ax, (family, report) in zip(axes, reports.items(), strict=True):
    layer = next(iter(report.layers.values()))
    values = [layer.random, layer.identity, layer.optimal]
    ax.bar(["random", "identity", "optimal"], values, color=["0.7", "tab:blue", "tab:green"])
    ax.set_title(f"{family}: score {layer.score:.2f}")
axes[0].set_ylabel("mean matched correlation")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Prediction vs measured unaligned barrier
#
# `sl.identify.test_prediction` makes the prediction, then measures the unaligned loss barrier
# $\max_\alpha L(\theta(\alpha)) - \tfrac12 (L(\theta_A) + L(\theta_B))$ with
# `sl.connect.interpolate` (21 points, the paper's choice) and says whether the two agree.
# Every pair of runs:

# %%
rows = []
for family, models in runs.items():
    for i in range(len(models)):
        for j in range(i + 1, len(models)):
            rep = sl.identify.identifiability(models[i], models[j], data)
            check = sl.identify.test_prediction(models[i], models[j], data, report=rep)
            rows.append((family, i, j, rep.score, check.barrier, check.agree, check.curve))
            print(
                f"{family:<13} runs {i},{j}: score {rep.score:.2f}, unaligned barrier "
                f"{check.barrier:.4f}, prediction {'agrees' if check.agree else 'DISAGREES'}"
            )

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
colors = {"standard": "tab:red", "W-asymmetric": "tab:blue"}
for family, i, j, score, barrier, agree, curve in rows:
    axes[0].scatter(score, barrier, color=colors[family], marker="o" if agree else "x")
    if (i, j) == (0, 1):
        curve.plot(axes[1], label=family, color=colors[family])
axes[0].axvline(0.9, ls="--", color="0.5")
axes[0].set_xlabel("identifiability score (least layer)")
axes[0].set_ylabel("unaligned loss barrier")
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
# * Standard runs: score ≈ 0 (the identity is no better than a random matching) and a clear
#   unaligned barrier. W-asymmetric runs: score ≈ 0.95 and a flat unaligned path (they fit a
#   little worse: fixed weights cost capacity).
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
