# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. Theory: the optimal denoiser, and what generalizing models converge to instead
#
# *Mirrors the theory section of {cite:t}`zhang2024emergence`: for a finite training set the
# loss-minimising denoiser has a closed form, its deterministic sampler can only return training
# images, and trained UNets approach it in the memorization regime (RP between a UNet and this
# optimal denoiser ~0.5 at N = 2^6, falling to ~0 by 2^13-2^14; wider networks stay closer
# longer).*
#
# Chapter 3 found reproducibility at both ends of the training-set-size axis. This chapter asks
# *what* the models agree on. In the memorization regime the answer is exact: there is one
# denoiser that minimises the training loss, every well-trained model approaches it, and it maps
# each noise to a training image. In the generalization regime we compare the models with two
# analytic references that *can* generalize: the linear denoiser of a Gaussian fitted to the
# training set {cite:p}`li2024gaussian`, and, on synthetic MoLRG data, the true denoiser of the
# data distribution {cite:p}`wang2024molrg`.
#
# **Time to run.** `cpu` profile on 2 CPU cores (the README's latest run; other machines in its
# table): 0.2 min once the book's models are trained (`python -m reprodiff train --book`, which
# `make build` and `make test` run first), ~7 min alone from an empty cache (it then trains the 38
# models it uses: 14 single-core minutes, two at a time). `gpu` profile: the analytic denoisers on
# CIFAR-10 subsets of up to 49,000 images; minutes on a GPU once chapter 3's models exist, about 13
# minutes alone by the step-cost estimate (not yet timed on a GPU).

# %% tags=["remove-cell"]
# Colab bootstrap (hidden in the book): install this book's package, then report the hardware.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "reprodiff @ git+https://github.com/reprodiff/reprodiff"],
                   check=True)
from reprodiff.notebook import runtime_report

print(runtime_report())

# %% tags=["parameters"]
PROFILE = "cpu"

# %%
import time

import matplotlib.pyplot as plt
from IPython.display import display

from reprodiff import get_config
from reprodiff.data import MoLRG
from reprodiff.configs import short_name
from reprodiff.denoisers import GaussianDenoiser, OptimalDenoiser
from reprodiff.experiments import book_rule
from reprodiff.explore import ReferenceExplorer, reference_row
from reprodiff.low_rank_mixture import mixture_references, mixture_summary, subspace_energies
from reprodiff.metrics import gl_score
from reprodiff.notebook import show_source
from reprodiff.plots import curve_with_band, image_grid, trajectory_gap_figure
from reprodiff.profiles import check_resources
from reprodiff.regimes import load_sweep, reference_study, regime_sweep, trajectory_gap
from reprodiff.sampling import generate

cfg = get_config("theory", PROFILE)
reg = cfg.regimes
print(cfg.summary())

# %% [markdown]
# ## The optimal denoiser of a training set
#
# A denoiser $D(x;\sigma)$ is trained to minimise $\mathbb{E}\,\|D(y + \sigma n;\sigma) - y\|^2$
# over training images $y$ and Gaussian noise $n$. When the data distribution is the *empirical*
# one, uniform over $N$ training images $y_1, \dots, y_N$, the minimiser is the posterior mean,
# which has a closed form {cite:p}`karras2022edm`:
#
# $$
# D^*(x;\sigma) = \sum_{i=1}^N w_i(x)\, y_i, \qquad
# w_i(x) = \operatorname{softmax}_i\!\left(-\frac{\|x - y_i\|^2}{2\sigma^2}\right).
# $$
#
# It is a softmax-weighted average of the training images. As $\sigma \to 0$ the weights collapse
# onto the nearest training image, so the probability-flow ODE driven by $D^*$ ends *on* a training
# image: it cannot generalize. The package computes it in a streaming way: the softmax is
# accumulated over chunks of the training set with a running maximum (an online log-sum-exp), so
# memory grows with the chunk, not with $N$, and the logits use $x \cdot y_i - \|y_i\|^2/2$, which
# differs from $-\|x-y_i\|^2/2$ only by a constant per row:

# %%
show_source(OptimalDenoiser.forward)

# %% [markdown]
# The naive formula materialises a (batch, N, pixels) tensor; at N = 1,500 digits and a batch of
# 256 that is already 188 MiB in float64, and it grows linearly with N. The streamed version needs
# (batch x chunk) logits. The package's benchmark (`python benchmarks/bench.py --only dstar`)
# compares the two for speed and peak memory. Here are the sizes for this chapter's largest
# training set, after loading chapter 3's training sets and models (from the cache when chapter 3
# ran first, otherwise trained now):

# %%
check_resources(reg.all_models(), reg.descriptor)
digits = reg.sweeps[0]  # real images: digits (cpu) or CIFAR-10 (gpu)
t0 = time.perf_counter()
models, train_sets, heldout, extra_seeds = load_sweep(digits, replicates=True)
print(f"chapter 3's {len(models)} models ready in {time.perf_counter() - t0:.0f} s")
n_max = max(train_sets)
pixels = train_sets[n_max][0].numel()
print(f"naive D* working set at N={n_max}, batch {reg.batch_size}: "
      f"{reg.batch_size * n_max * pixels * 8 / 2**20:.0f} MiB; streamed: "
      f"{reg.batch_size * min(OptimalDenoiser(train_sets[n_max]).chunk_size, n_max) * 8 / 2**20:.1f} MiB of logits")

# %% [markdown]
# ## Samples of D* are training images
#
# We sample $D^*$ of the smallest and the largest digit training set from the same 256 seeds as the
# trained models, with the same Heun sampler, and score GL exactly as in chapter 3 (the book's
# same-image rule).

# %%
seeds = range(cfg.n_seeds)
shape = tuple(heldout.shape[1:])
rule = book_rule(digits.base.dataset, reg.descriptor_for(digits), profile=PROFILE)
dstar = {n: OptimalDenoiser(train_sets[n]) for n in digits.n_train}
for n in (min(train_sets), n_max):
    s = generate(dstar[n], seeds, shape, sampler=reg.sampler, steps=reg.steps, name=f"D* N={n}",
                 batch_size=reg.batch_size)
    gl = gl_score(s, train_sets[n], rule.descriptor, threshold=rule)
    print(f"D* at N={n}: {gl}")
    print(f"   nearest-training similarity: median {gl.similarities.median():.4f}, "
          f"min {gl.similarities.min():.4f}")
fig = image_grid({f"D* samples (N={n_max})": s.images[:10],
                  "nearest training image": train_sets[n_max][gl.nearest[:10]]},
                 [f"seed {k}" for k in range(10)], scale=0.8)

# %% [markdown]
# Even with all 1,500 digits, every sample of $D^*$ is a training digit to within rounding. A
# model that generalizes must therefore *fail* to minimise its training loss exactly: it has to be
# a worse fit to the empirical distribution than $D^*$ is.
#
# ## Do trained models approach D*?
#
# We load chapter 3's models (or train them, if this chapter runs alone), sample them from the
# same seeds and compute RP between each model and $D^*$ of its own training set, by the book's
# same-image rule. Next to it: RP between each model and the **Gaussian denoiser** of its training set,
# the posterior mean if the data were Gaussian with the training set's mean and covariance,
#
# $$
# D_{\mathcal{N}}(x;\sigma) = \mu + \Sigma\,(\Sigma + \sigma^2 I)^{-1}(x - \mu),
# $$
#
# a linear map that {cite:t}`li2024gaussian` found generalizing diffusion models to be close to.
# Unlike $D^*$ it does not collapse onto training images: it generalizes, crudely.

# %%
t0 = time.perf_counter()
sweep = regime_sweep(models, train_sets, heldout, seeds, rule, **reg.sweep_kwargs(digits), progress=False)
gauss = {n: GaussianDenoiser.from_data(train_sets[n]) for n in digits.n_train}
study = reference_study(sweep, {"D*": dstar, "Gaussian": gauss}, sampler=reg.sampler, steps=reg.steps,
                        descriptor=rule.descriptor, batch_size=reg.batch_size)
print(f"models sampled and scored in {time.perf_counter() - t0:.0f} s")
spans = sweep.spans(reg.memorization_gl, reg.generalization_gl)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
curve_with_band(sweep.n_train, study.curves("D*"), xlabel="training-set size N",
                ylabel="RP score", title="RP(model, D*): the memorizing reference", ax=axes[0], shade=spans)
medians = {ref: study.medians(ref) for ref in ("D*", "Gaussian")}
curve_with_band(sweep.n_train, {f"to {ref}, {short_name(size)}": (m, m, m) for ref, per_size in medians.items()
                                for size, m in per_size.items()},
                xlabel="training-set size N", ylabel="median similarity (same seed)",
                title="Threshold-free: median similarity to D* and to the Gaussian denoiser", ax=axes[1],
                shade=spans)
axes[1].set_ylim(0.75, 1.005)
fig.tight_layout()
print(study.table())
print("threshold-free view, median similarity of each model's samples to each reference's, by N:")
for ref, per_size in medians.items():
    for size, meds in per_size.items():
        print(f"  {ref:8s} {size:16s}" + "".join(f"{m:6.2f}" for m in meds))
print(f"  (N = {', '.join(map(str, digits.n_train))}; same-image threshold {sweep.threshold:.3f})")
spread = study.seed_spread("D*", extra_seeds, rule, sampler=reg.sampler, steps=reg.steps, batch_size=reg.batch_size)
for (size, n), scores in spread.items():
    print(f"RP({short_name(size)}, D*) at N={n} over {len(scores)} training seeds: "
          f"{', '.join(f'{v:.2f}' for v in scores.values)}")

# %% [markdown]
# **Memorizing models follow D\*.** At the smallest N each model reproduces $D^*$'s sample for
# about 60% of the seeds (0.58 and 0.61, and 0.56-0.61 over three training seeds of the narrow
# UNet; the paper reports ~0.5 at N = 2^6), about as often as the
# two models reproduce each other (0.62 in chapter 3, intervals overlapping): when a model does not
# land on $D^*$'s training digit, it lands on another training digit. As N grows, RP with $D^*$
# falls to near 0 once the models generalize (0.01 and 0.06 at N = 96, the first N of chapter 3's
# generalization regime) and to 0.00 for both widths from N = 128 on, as in the paper. The
# wider UNet lets go of $D^*$ later: its RP with $D^*$ is above the narrow one's at N = 64 (0.34
# against 0.15) and N = 96 (0.06 against 0.01), with intervals apart, matching chapter 3's finding
# that it memorizes longer.
#
# **Close to the Gaussian denoiser, never the same image.** RP with the **Gaussian denoiser** is 0
# at every N (the table's last columns): by the book's rule no sample of a trained UNet is the image
# the linear denoiser draws from the same noise. The threshold-free medians (the right panel, and
# printed under the table) show what does change:
# the similarity to $D^*$'s sample falls from 1.00 as N grows, the similarity to the Gaussian
# denoiser's sample rises, and the two cross just after chapter 3's transition (N = 64): between
# N = 64 and 96 for the narrow UNet, between N = 96 and 128 for the wider one. Generalizing UNets
# are therefore *nearer* the linear denoiser of their training set's mean and covariance than its
# optimal denoiser, the observation of {cite:t}`li2024gaussian`,
# but on digits they are not that linear map: what they add beyond the mean and covariance is
# exactly what makes two of them agree on the same image (chapter 1) where they and the Gaussian
# denoiser do not.
#
# ## Where along the trajectory do models leave D*?
#
# RP looks only at the end of sampling. To see *when* a model departs from $D^*$, we run the wider
# model's own sampling trajectory and, at every noise level $\sigma$ along it, compare its denoised
# estimate $D_\theta(x_\sigma;\sigma)$ with $D^*(x_\sigma;\sigma)$ and with the Gaussian denoiser's
# estimate at the *same* point. The curves are medians over 64 seeds of the RMS pixel difference
# (pixels in $[-1, 1]$).

# %%
wide = list(digits.sizes)[-1]
picks = [digits.n_train[0], digits.n_train[len(digits.n_train) // 2], n_max]
gaps = {n: trajectory_gap(models[(wide, n)], {"D*": dstar[n], "Gaussian": gauss[n]}, range(cfg.trajectory_seeds),
                         shape, steps=reg.steps) for n in picks}
fig = trajectory_gap_figure(gaps, wide)

# %% [markdown]
# At the very highest noise levels every model differs from both references by about 0.2-0.3: there
# both references return (nearly) the training mean, and the networks are least trained there
# (EDM's training noise levels concentrate around sigma ~ 0.3 and rarely exceed 10). That error
# barely moves the trajectory, because an ODE step scales it by the relative step in sigma. The
# informative part is below sigma ~ 3:
#
# - with 16 training digits the model's estimate stays close to $D^*$'s all the way down, yet the
#   small error left is enough that its final sample is $D^*$'s by the book's strict rule on only
#   about 60% of seeds (RP 0.58 above): close to the optimal denoiser, not the same map;
# - with 96 or 1,500 digits the model leaves $D^*$ between sigma ~ 3 and ~ 0.5, where $D^*$
#   commits to one training image, and never returns: the gap at the end is the distance from the
#   model's new digit to its nearest training digit;
# - against the Gaussian denoiser every model agrees at high and at low noise and departs in
#   between (sigma ~ 0.3-3), where digit shapes are decided and a linear denoiser cannot represent
#   them; the departure is smallest for the model trained on the most digits.
#
# ## MoLRG: where the true denoiser is known
#
# On real digits we can compare models with $D^*$, but not with the denoiser of the *true* digit
# distribution, which nobody knows. On MoLRG data we can: each sample is a Gaussian point in one of
# four random 8-dimensional subspaces, and the exact posterior-mean denoiser of that mixture is a
# closed-form function (the package's `MoLRGDenoiser`). So both regimes become analytic:
# memorization is convergence to $D^*$ of the training samples, generalization is convergence to
# the true denoiser. We reuse chapter 3's MoLRG sweep (two MLP widths, N = 16 ... 16,384).

# %%
mix = reg.sweep("molrg")
mix_models, mix_sets, mix_held = load_sweep(mix)
mix_rule = book_rule(mix.base.dataset, reg.descriptor_for(mix), profile=PROFILE)
mix_sweep = regime_sweep(mix_models, mix_sets, mix_held, seeds, mix_rule, **reg.sweep_kwargs(mix), progress=False)
base = mix.base
mixture = MoLRG(num_classes=base.molrg_classes, dim=base.molrg_dim, seed=base.molrg_seed)
mix_study = reference_study(mix_sweep, mixture_references(mix_sets, mixture.denoiser()), sampler=reg.sampler,
                            steps=reg.steps, descriptor="pixel", batch_size=reg.batch_size)
mix_spans = mix_sweep.spans(reg.memorization_gl, reg.generalization_gl)
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), sharey=True)
for ax, ref in zip(axes, ("D*", "true", "Gaussian")):
    curve_with_band(mix.n_train, mix_study.curves(ref), xlabel="training-set size N", ylabel="RP score",
                    title=f"MoLRG: RP(model, {ref} denoiser)", ax=ax, shade=mix_spans)
fig.tight_layout()
print(f"threshold {mix_sweep.threshold:.3f} ({mix_sweep.threshold_rule})")
print(mix_study.table())
energy = subspace_energies(mixture, mix_sweep, mix_study)
print(mixture_summary(mix_sweep, mix_study, energy))

# %% [markdown]
# **What the MoLRG models converge to.** RP with $D^*$ falls from 0.74-0.81 at N = 16 to at most
# 0.03 at N = 128 and 0 from N = 256. RP with the **true** denoiser of the mixture is 0 at every N
# for the narrow MLP, and never above 0.08 (at N = 256) for the wide one: the MLPs almost never draw
# the true denoiser's sample for a seed.
# What they draw instead is read off two threshold-free numbers. From N = 1,024 on, both MLPs are,
# within rounding, the **Gaussian denoiser** of their training set (RP 1.00, median similarity
# 1.00): a linear map whose samples spread over the span of all four subspaces. Their *subspace
# energy*, the largest fraction of a sample lying in one component's subspace, says the same: about
# 0.5 for the MLPs and for the Gaussian denoiser, against 0.99 for the true mixture. The model
# closest to the mixture is the wider MLP early in the generalization regime: at N = 256 it keeps
# almost all of its samples' energy in one subspace (0.96), and its samples are more similar to the
# true denoiser's there (median 0.88) than at any other N.
#
# So on MoLRG, at this model size and training budget, generalization means learning the
# **Gaussian approximation** of the mixture, not the mixture. This is the observation of
# {cite:t}`li2024gaussian` in its cleanest form, and it explains chapter 3's RP of 1 on MoLRG: two
# models that both become one linear map agree on every seed. Whether longer training or a
# structured architecture {cite:p}`wang2024molrg` would learn the mixture itself is beyond this
# chapter's budget; the headline below reports the model against both references, by name.
#
# ## Explore a seed
#
# Pick a seed and a training-set size: the row shows what the wider digit model, $D^*$, the
# Gaussian denoiser make of that seed's noise, and the training image nearest to the model's
# sample. The sliders are live when the notebook runs (on Colab, say); a static page has no kernel
# to draw new rows, so the book hides them and shows precomputed rows for seed 0 instead.

# %% tags=["remove-output"]
explorer = ReferenceExplorer(sweep, study, wide, max_seed=cfg.explorer_seeds - 1, name=wide.short)
display(explorer.widget)
explorer.update()

# %% [markdown]
# The precomputed row for the static page, seed 0 at the smallest and largest N:

# %%
for n in (digits.n_train[0], n_max):
    fig = reference_row(sweep, study, wide, 0, n, name=wide.short)

# %% [markdown]
# ## Summary
#
# - The optimal denoiser of a training set has a closed form; its deterministic sampler returns a
#   training image for every seed, even with all 1,500 digits.
# - Memorizing models follow it: at the smallest N, each UNet reproduces $D^*$'s sample for about
#   60% of the seeds and tracks its estimate along the whole trajectory.
# - Generalizing models leave $D^*$ where it commits to a training image (sigma ~ 0.5-3): RP with
#   $D^*$ falls to 0. They move towards the Gaussian denoiser of their training data in median
#   similarity, crossing over just after the transition, but by the book's rule they never produce
#   the Gaussian denoiser's image: the agreement between two UNets is more than agreement on the data's
#   mean and covariance.
# - On MoLRG, where the true denoiser is known, memorization gives way to generalization, but what
#   small MLPs generalize to at this budget is the Gaussian approximation of the mixture (RP 1 with
#   it, subspace energy like its), not the true mixture denoiser; that is why every pair of them
#   agrees.
#
# ## Headline
#
# The numbers this chapter stands on (checked by the book's regression tests):

# %% tags=["nbval-check-output"]
lo, hi = digits.n_train[0], n_max
print(sweep.rule)
for size in digits.sizes:
    d, g = study.rp["D*"][size], study.rp["Gaussian"][size]
    seeds_lo = spread.get((size, lo))
    over_seeds = f" (over {len(seeds_lo)} training seeds {min(seeds_lo.values):.2f}-{max(seeds_lo.values):.2f})" \
        if seeds_lo else ""
    print(f"{size}: RP(model, D*) {d[0].value:.2f} at N={lo}{over_seeds}, {d[-1].value:.2f} at N={hi}; "
          f"RP(model, Gaussian) {g[0].value:.2f} at N={lo}, {g[-1].value:.2f} at N={hi}; "
          f"RP(model, other width) {sweep.rp[next(iter(sweep.rp))][-1].value:.2f} at N={hi}")
    meds = {ref: float(study.rp[ref][size][-1].similarities.median()) for ref in ("D*", "Gaussian")}
    print(f"  median similarity at N={hi}: to D* {meds['D*']:.3f}, to Gaussian {meds['Gaussian']:.3f}")
print(mix_sweep.rule)
print(f"MoLRG subspace energy at N={mix.n_train[-1]} (1 = on the mixture): "
      + ", ".join(f"{short_name(k)} {v[-1]:.2f}" for k, v in energy.items()))
for size in mix.sizes:
    cells = {ref: mix_study.rp[ref][size][-1] for ref in ("Gaussian", "true")}
    meds = {ref: float(c.similarities.median()) for ref, c in cells.items()}
    print(f"MoLRG {size} at N={mix.n_train[-1]}: RP(model, Gaussian approximation) {cells['Gaussian'].value:.2f} "
          f"(median {meds['Gaussian']:.2f}); RP(model, true mixture denoiser) {cells['true'].value:.2f} "
          f"(median {meds['true']:.2f})")
