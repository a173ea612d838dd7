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
# # 04 · Linear mode connectivity and merging
#
# Two networks trained from different seeds are *linearly mode connected* when the straight
# path $\theta(\alpha) = (1-\alpha)\theta_A + \alpha\theta_B$ has no loss barrier. For standard
# nets it usually has one — until B's hidden units are permuted into A's order (Git Re-Basin,
# Ainsworth et al. 2023). This notebook, on MNIST-1D (built offline) with small MLPs:
#
# 1. naive vs weight-matched interpolation, with the four barrier definitions symlab names;
# 2. REPAIR (Jordan et al. 2023): variance collapse at the midpoint, and its fix;
# 3. merging three models, and the loss over the simplex they span;
# 4. a trained Bézier curve between unaligned runs.
#
# Runs in well under a minute on a laptop CPU.

# %%
import copy
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

import symlab as sl

SMALL = os.environ.get("SYMLAB_SMALL", "0") == "1"
torch.set_num_threads(1)

data = sl.data.load("mnist1d")  # 4000 train / 1000 test signals of length 40, 10 classes
config = sl.train.TrainConfig(
    optimizer="adam", lr=1e-3, epochs=10 if SMALL else 30, batch_size=128, progress=False
)
WIDTH = 128
models = []
for seed in range(3):
    model = sl.nn.MLP([40, WIDTH, WIDTH, 10], "relu", seed=seed)
    result = sl.train.train(model, data, config, data_seed=seed)
    models.append(model.eval())
    print(f"seed {seed}: test loss {result.test_loss:.3f}, accuracy {result.test_acc:.3f}")
a, b, c = models
G = sl.symmetries(a)
print(G)

# %% [markdown]
# ## 1. Naive vs aligned interpolation
#
# `sl.align.weight_matching` finds permutations of B's units maximising
# $\sum_\ell \langle W^A_\ell, P_\ell W^B_\ell P_{\ell-1}^\top\rangle$; `apply_model` returns B
# in A's unit order (the same function as B). `sl.connect.interpolate` evaluates the path on
# the test split.

# %%
alignment = sl.align.weight_matching(a.state_dict(), b.state_dict(), G, seed=0)
print(alignment)
b_aligned = alignment.apply_model(b)
x_test = data.x_test
with torch.no_grad():
    assert torch.allclose(b(x_test), b_aligned(x_test), atol=1e-5)  # same function

N_ALPHAS = 11 if SMALL else 25  # Git Re-Basin uses 25
naive = sl.connect.interpolate(a, b, data, n_alphas=N_ALPHAS, label="naive")
aligned = sl.connect.interpolate(a, b_aligned, data, n_alphas=N_ALPHAS, label="weight matching")
repaired = sl.connect.interpolate(
    a, b_aligned, data, n_alphas=N_ALPHAS, repair=True, label="weight matching + REPAIR"
)
curves = [naive, aligned, repaired]

fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for curve in curves:
    curve.plot(axes[0])
    curve.plot(axes[1], metric="error")
axes[0].set_title("test loss")
axes[1].set_title("test error")
plt.tight_layout()
plt.show()

# %% [markdown]
# Barrier definitions differ between papers; symlab names each (see the docs' *Concepts*
# page): `"loss"` ($\max_\alpha L - \frac12(L_A + L_B)$, Git Re-Basin), `"weighted"`
# (Entezari et al.: against the linear interpolation of the endpoint losses), `"error"`
# (Frankle et al.; "stable" below 2 points) and `"relative_accuracy_drop"` (Bürgin et al., %).

# %%
kinds = list(sl.connect.BARRIERS)
print(f"{'path':<26}" + "".join(f"{k:>24}" for k in kinds))
for curve in curves:
    print(f"{curve.label:<26}" + "".join(f"{curve.barrier(k):>24.3f}" for k in kinds))
assert aligned.barrier("loss") < naive.barrier("loss")

# %% [markdown]
# ## 2. REPAIR: variance collapse
#
# Averaging two aligned but not identical units shrinks the variance of their activations
# (the average of imperfectly correlated signals). REPAIR rescales each unit of the
# interpolated network so that its pre-activation mean and standard deviation are the
# interpolation of the endpoints' (`sl.connect.repair`; for BatchNorm nets it recomputes the
# statistics, `sl.connect.reset_bn_stats`).


# %%
def preactivation_std(model):
    """Mean over units of the std of each hidden linear layer's output on the test data."""
    stds, hooks = [], []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "head":
            hooks.append(module.register_forward_hook(lambda m, i, o: stds.append(o.std(0))))
    with torch.no_grad():
        model(x_test)
    for hk in hooks:
        hk.remove()
    return [round(s.mean().item(), 3) for s in stds]


midpoint = aligned.model_at(0.5)
fixed = sl.connect.repair(midpoint, [a, b_aligned], [0.5, 0.5], data)
for name, model in [("A", a), ("B aligned", b_aligned), ("midpoint", midpoint),
                    ("midpoint + REPAIR", fixed)]:  # fmt: skip
    print(f"{name:<18} per-layer mean std {preactivation_std(model)}")

# %% [markdown]
# The midpoint's activations have collapsed; REPAIR restores them. Jordan et al. report
# 60–100 % barrier reductions on deeper and wider nets; on this small MLP the effect is
# modest, so read the barrier table above rather than the paper's numbers.


# %% [markdown]
# ## 3. Merging three models
#
# `sl.connect.merge` aligns every model to a reference (`method="reference"`) or re-aligns all
# of them to their running mean until nothing changes (`"iterative"`, Git Re-Basin's
# MergeMany), then averages; `repair_data=` REPAIRs the average. Sharma et al. (2024) call the
# case where one permutation per model connects it to *all* others *strong* linear
# connectivity; three-way merging tests it.


# %%
def evaluate(model):
    with torch.no_grad():
        out = model(x_test)
    loss = torch.nn.functional.cross_entropy(out, data.y_test).item()
    return loss, (out.argmax(1) == data.y_test).float().mean().item()


naive_avg = copy.deepcopy(a)
naive_avg.load_state_dict(sl.connect.average_state_dicts([m.state_dict() for m in models]))
merged = sl.connect.merge(models, G, method="iterative")
merged_repaired = sl.connect.merge(models, G, method="iterative", repair_data=data)
table = {"model A": a, "naive average of 3": naive_avg,
         f"merge (iterative, {merged.rounds} rounds)": merged.model,
         "merge + REPAIR": merged_repaired.model}  # fmt: skip
for name, model in table.items():
    loss, acc = evaluate(model)
    print(f"{name:<32} test loss {loss:.3f}  accuracy {acc:.3f}")

# %% [markdown]
# ### The loss over the simplex
#
# Every convex combination $w_A\theta_A + w_B\theta_B + w_C\theta_C$ of the three models, before
# and after aligning B and C to the merge's unit order (`sl.connect.simplex`, following Sharma
# et al.). The corners are the models (the same functions in both panels); only the interior
# changes. `Simplex.barrier` is the simplex analogue of the loss barrier:
# $\max_w L(w) - \operatorname{mean}_i L(\theta_i)$.

# %%
aligned_models = [al.apply_model(m) for al, m in zip(merged.alignments, models, strict=True)]
resolution = 6 if SMALL else 12
panels = {
    "naive": sl.connect.simplex(models, data, resolution=resolution),
    "aligned (merge)": sl.connect.simplex(aligned_models, data, resolution=resolution),
}
low = min(float(s.loss.min()) for s in panels.values())
high = max(float(s.loss.max()) for s in panels.values())
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for ax, (name, simplex) in zip(axes, panels.items(), strict=True):
    simplex.plot(ax, levels=np.linspace(low, high, 15))
    ax.set_title(f"{name}\nsimplex loss barrier {simplex.barrier('loss'):.2f}", pad=16)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Curved paths
#
# Garipov et al. (2018): even *unaligned* runs are connected by a low-loss curve. A quadratic
# Bézier curve $\theta(t) = (1-t)^2\theta_A + 2t(1-t)\theta_C + t^2\theta_B$ keeps the endpoints
# and trains the control point $\theta_C$ (from the midpoint) to minimise the expected loss
# along the curve (`sl.connect.bezier_curve`). It returns a `Curve`, so it plots and reports
# barriers like the straight paths.

# %%
bezier = sl.connect.bezier_curve(
    a, b, data, steps=150 if SMALL else 500, n_alphas=N_ALPHAS, label="Bézier (unaligned)"
)
ax = naive.plot()
bezier.plot(ax)
ax.set_title("A → B without alignment: line vs trained curve")
plt.show()
print(f"loss barrier: line {naive.barrier('loss'):.3f}, Bézier {bezier.barrier('loss'):.3f}")
