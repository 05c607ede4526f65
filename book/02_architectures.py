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
# # 2. Architectures, objectives and samplers
#
# *Mirrors the cross-model RP matrix of {cite:t}`zhang2024emergence` (Section 2), where models that
# differ in architecture, framework and training procedure, all trained on CIFAR-10, map the same
# noise to nearly the same image: off-diagonal RP 0.70-0.91, mean 0.82.*
#
# Chapter 1 compared two UNets that differed only in width. Here we build a small **model zoo**
# that differs along the paper's axes: UNet width, depth and attention, a transformer backbone
# (U-ViT, {cite:p}`bao2023uvit`), and the three training frameworks that dominate the literature,
# epsilon-prediction {cite:p}`ho2020ddpm`, v-prediction {cite:p}`salimans2022progressive` and
# EDM {cite:p}`karras2022edm`. Then we vary the *sampler* instead of the model, and finally we
# look at two controls that show what **non**-reproducibility looks like under the same metric: a
# stochastic sampler, and a non-diffusion generator (a VAE) decoding a shared latent.
#
# **Time to run.** `cpu` profile on 2 CPU cores (the README's latest run; other machines in its
# table): 1.1 min once the book's models are trained (`python -m reprodiff train --book`, which
# `make build` and `make test` run first), ~3 min alone from an empty cache (it then trains the 9
# models it uses: 5 single-core minutes, two at a time). `gpu` profile: the same seven recipes and
# two VAEs on CIFAR-10, and three public CIFAR-10 DDPM checkpoints; about 17 minutes on a Colab T4
# by the step-cost estimate (not yet timed on a GPU).

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
import matplotlib.pyplot as plt
import torch

from reprodiff import generate, get_config, load_or_train_many
from reprodiff.controls import decode_seeds
from reprodiff.denoisers import GaussianDenoiser, OptimalDenoiser, x0_error
from reprodiff.experiments import book_rule, sample_models, sampler_study, stochastic_control, training_progress
from reprodiff.metrics import compare_rp, error_matrix, paired_similarity, rp_matrix, rp_score
from reprodiff.plots import curve_with_band, rp_heatmap, same_noise_grid, training_progress_figure
from reprodiff.profiles import check_resources
from reprodiff.sampling import network_calls
from reprodiff.training import training_data

cfg = get_config("architectures", PROFILE)
print(cfg.summary())

# %% [markdown]
# ## The zoo
#
# Seven diffusion models, every one trained on chapter 1's 1,500 training digits at batch 64,
# through `load_or_train_many` (the first three are chapter 1's models, from the cache). They
# differ in what the paper varies:
#
# - **architecture**: UNets of two widths, a UNet with self-attention, and a U-ViT whose time
#   embedding enters as a token and whose blocks are transformer blocks;
# - **objective**: the same UNet-XS trained to predict the noise (epsilon, VP schedule), the
#   velocity (v, cosine schedule) or the clean image (EDM). In the package all three are
#   *preconditioning* wrappers around the same backbone, so each becomes a denoiser
#   $D(x, \sigma)$ with the same signature, and the same sampler runs on all of them;
# - **training seed**: a second UNet-XS from another seed, the yardstick for everything else.
#
# One difference was chosen by measurement and is stated here: the U-ViT trains 2,400 steps, the
# UNets 600 (all at learning rate 2e-3). At 600 steps the transformer is the zoo's worst denoiser
# and agrees with no UNet; a section below follows it along its training to show why it gets four
# times the steps. Each model's training loss belongs to its own objective (epsilon, v and EDM
# losses weight noise levels differently), so losses are not compared across models. Instead the
# table reports one quantity for all: the RMS error of each model's clean-image estimate
# $D(y + \sigma n, \sigma)$ on the 297 **held-out** digits at three noise levels, beside the two
# analytic references of chapter 1.

# %%
check_resources(list(cfg.models.values()), cfg.descriptor)
train, heldout = training_data(next(iter(cfg.models.values())))
# missing models train in parallel, with the VAEs of a later section in the same pool
trained = load_or_train_many({**cfg.models, **(cfg.vaes or {})})
models = {name: trained[name] for name in cfg.models}
references = {"Gaussian": GaussianDenoiser.from_data(train.images), "D*": OptimalDenoiser(train.images)}
sigmas = (0.1, 0.5, 2.0)
print(f"{'':16s}{'parameters':>11s}{'lr':>8s}   x0 RMS error on held-out digits at sigma = "
      + ", ".join(map(str, sigmas)))
for name, m in {**models, **references}.items():
    params = f"{m.info['parameters']:,}" if name in models else "analytic"
    lr = f"{m.config.lr:g}" if name in models else ""
    errors = x0_error(m, heldout.images, sigmas)
    print(f"{name:16s}{params:>11s}{lr:>8s}   " + "   ".join(f"{e:.3f}" for e in errors))

# %% [markdown]
# ## Same noise, seven models
#
# Every model starts from the same noise for each seed, and is sampled with EDM's Heun sampler
# (18 steps).

# %%
seeds = range(cfg.n_seeds)
samples = sample_models(models, seeds, train.shape, sampler=cfg.sampler,
                        steps=cfg.steps, batch_size=cfg.batch_size)
print(f"{cfg.sampler}-{cfg.steps}: {network_calls(cfg.sampler, cfg.steps)} network calls per image")
fig = same_noise_grid(samples, list(range(cfg.grid_seeds)),
                      title="Rows: models. Columns: shared initial noise")

# %% [markdown]
# ## The RP matrix
#
# As in chapter 1 the descriptor is pixel correlation and "the same image" is the book's rule. The
# matrix has two extra rows and columns: chapter 1's references, the **Gaussian denoiser** and the
# optimal denoiser **D\*** of the training digits, sampled from the same seeds. A diffusion model
# that agreed with another only as much as with a linear map would not be evidence of anything.
# The left heatmap is the RP score (higher = more reproducible); the right one is its pixel-space
# twin, the median per-seed mean absolute error in pixel units of $[-1, 1]$ (lower = closer),
# which needs no threshold at all.

# %%
rule = book_rule(next(iter(cfg.models.values())).dataset, cfg.descriptor, profile=PROFILE)
ref_samples = [generate(d, seeds, train.shape, sampler=cfg.sampler, steps=cfg.steps, name=name,
                        batch_size=cfg.batch_size) for name, d in references.items()]
zoo = rp_matrix(samples + ref_samples, cfg.descriptor, threshold=rule)
mae = error_matrix(samples + ref_samples, "mae")
fig, axes = plt.subplots(1, 2, figsize=(15, 6.2))
rp_heatmap(zoo.values, zoo.labels, title=f"RP score (same seed; threshold {rule.threshold:.3f})", ax=axes[0])
rp_heatmap(mae, zoo.labels, title="median pixel MAE (same seed)", ax=axes[1], vmax=float(mae.max()))
fig.tight_layout()
print(rule)
nets = len(samples)
net_rp = torch.tensor([zoo.values[i, j].item() for i in range(nets) for j in range(i + 1, nets)])
gauss_rp = zoo.values[:nets, nets]
print(f"RP between diffusion models: min {net_rp.min():.2f}, mean {net_rp.mean():.2f}, max {net_rp.max():.2f}")
print(f"RP of each model with the Gaussian denoiser: max {gauss_rp.max():.2f}; with D*: max "
      f"{zoo.values[:nets, nets + 1].max():.2f}")

# %% [markdown]
# Each cell is a fraction of 512 seed pairs, with a Wilson 95% interval. The lowest and highest
# pairs of diffusion models, with their intervals:

# %%
pairs = sorted((zoo.values[i, j].item(), i, j) for i in range(nets) for j in range(i + 1, nets))
for value, i, j in pairs[:3] + pairs[-3:]:
    print(f"{zoo.labels[i]:>14s} vs {zoo.labels[j]:14s} RP {value:.2f} "
          f"[{zoo.lower[i, j]:.2f}, {zoo.upper[i, j]:.2f}]")

# %% [markdown]
# The threshold itself is uncertain: it is an order statistic of 297 held-out images, and its
# bootstrap interval (printed with the rule above) is wide enough to turn the UNet pairs' RP of
# 0.49-0.56 into anything from 0.29 to 0.63 (below). So a ranking read off the matrix is checked at
# every threshold of that interval (`compare_rp`): *higher* or *lower* means it holds across the
# interval, *at the threshold only* means it flips inside it, *a tie* means it does not even hold
# at the threshold. Beside it, each side's median seed-pair similarity with a bootstrap interval,
# which needs no threshold. A group (every pair of one kind) is above another only if each of its
# pairs is above each of the other's.

# %%
sim = {(a.name, b.name): paired_similarity(a, b, cfg.descriptor) for i, a in enumerate(samples + ref_samples)
       for b in (samples + ref_samples)[i + 1:]}


def sims_of(keep):  # the seed-pair similarities of every model pair (a, b) that keep(a, b) accepts
    return [s for (a, b), s in sim.items() if keep(a, b)]


unets = [name for name, c in cfg.models.items() if c.backbone.startswith("unet")]
eps = next(name for name in unets if cfg.models[name].objective == "eps")
others = set(unets) - {eps}
print(compare_rp(rule, sims_of(lambda a, b: b in models), sims_of(lambda a, b: a in models and b in references),
                 ("diffusion pairs", "model vs Gaussian or D*")))
print(compare_rp(rule, sims_of(lambda a, b: eps in (a, b) and {a, b} <= set(unets)),
                 sims_of(lambda a, b: {a, b} <= others), (f"{eps} with the other UNets", "the other UNet pairs")))

# %% [markdown]
# Both rankings hold at every threshold of the interval. Every pair of diffusion models is above
# every model paired with a closed form (RP 0.02-0.63 against 0.00-0.03 across the interval), but
# the median alone barely separates them: the lowest median of a diffusion pair (0.949) is level
# with the highest of a model and a closed form (0.948), their intervals overlapping. For the
# weakest pairs of models, agreeing more with each other than with a closed form is a finding of
# the strict rule, not of typical similarity. The epsilon UNet's pairs are below the other UNet pairs by both measures (RP 0.06-0.35 against
# 0.29-0.63 across the interval; medians 0.955-0.967 against 0.981-0.984, intervals apart).

# %% [markdown]
# ## The transformer: another architecture, or an under-trained one?
#
# The paper finds transformers (U-ViT) agreeing with UNets (RP 0.7-0.9 on CIFAR-10). A small U-ViT
# trained for the UNets' 600 steps here agrees with none of them, which could mean that the
# architecture maps noise to images differently, or only that it has not learnt the denoiser yet.
# The U-ViT of the zoo saved its weights along its 2,400 steps; at each saved step we measure its
# held-out x0 error (as in the table at the top) and sample it from the same 512 seeds, and score
# RP against each UNet of the zoo. The UNets' own errors come last: the mark to reach.

# %%
uvit = next(name for name, c in cfg.models.items() if c.backbone.startswith("uvit"))
references_of = {name: (models[name], s) for name, s in zip(models, samples) if name in unets}
progress = training_progress(cfg.models[uvit], references_of, heldout.images, seeds, train.shape, rule,
                             descriptor=cfg.descriptor, sampler=cfg.sampler, steps=cfg.steps,
                             batch_size=cfg.batch_size, name=uvit)
print(progress.table())
unet_pairs = [zoo.values[i, j].item() for i, a in enumerate(zoo.labels) for j, b in enumerate(zoo.labels)
              if i < j and a in unets and b in unets]
print(f"RP between the UNets themselves: {min(unet_pairs):.2f}-{max(unet_pairs):.2f}")
fig = training_progress_figure(progress, (min(unet_pairs), max(unet_pairs)))

# %% [markdown]
# The same comparisons across the threshold's interval: the finished U-ViT's pairs with the UNets
# against the UNet pairs (leaving out the epsilon UNet, which agrees less with the other UNets), and its
# agreement with each UNet at the last saved step against the one before.

# %%
uvit_pairs = sims_of(lambda a, b: uvit in (a, b) and eps not in (a, b) and {a, b} <= set(models))
uvit_vs_unets = compare_rp(rule, uvit_pairs, sims_of(lambda a, b: {a, b} <= others),
                           (f"{uvit} with the UNets other than {eps}", "the UNet pairs without it"))
print(uvit_vs_unets)
print(compare_rp(rule, uvit_pairs, sims_of(lambda a, b: eps in (a, b) and {a, b} <= set(unets)),
                 (f"{uvit} with the UNets other than {eps}", f"{eps} with the other UNets")))
for comparison in progress.compare_steps(rule):
    print(comparison)

# %% [markdown]
# At the UNets' 600 steps the U-ViT's x0 error is the zoo's worst and it reproduces no UNet on any
# seed. Its agreement rises as its error falls, by RP and by the threshold-free median alike: RP
# 0.06-0.13 to the UNets at step 1,200 and 0.10-0.25 at 1,800, medians from 0.882-0.897 at step
# 600 to 0.943-0.958 at 1,200 and 0.948-0.967 at 1,800. At 2,400 steps, its x0 error inside the
# UNets' range, it reproduces the EDM, v and attention UNets on a quarter to a third of seeds
# (0.25-0.31), the epsilon UNet on fewer (0.09). That is below the other UNet pairs (0.49-0.56) at every threshold of
# the interval, and by the median too (0.967-0.970 against 0.981-0.984, intervals apart); against
# the epsilon UNet's pairs with the other UNets (0.17-0.27) it is a tie already at the threshold.
# Between the last two saved steps RP still rose for five of the six UNets at every threshold of
# the interval (for the epsilon UNet, 0.10 to 0.09, the change is at the threshold only), but for
# every UNet the two steps' median intervals overlap: whether the U-ViT was still closing the gap
# at 2,400 steps is not settled by this run.
#
# What the measurement settles: the U-ViT's total disagreement at 600 steps was a matter of its
# training, not of the architecture alone; trained to the UNets' x0 error, the same architecture
# reproduces them on some seeds, and along this one run agreement rose as denoising error fell.
# What it leaves open: at matched x0 error the U-ViT still agrees with the UNets less than they
# agree with one another. One run of one transformer cannot say how much of that gap is the
# architecture; a second training seed, or a U-ViT trained longer still, would.

# %% [markdown]
# ## Samplers
#
# The paper's claim also holds along the third axis: the same model integrated by different
# deterministic solvers lands on the same image, because they all approximate the same ODE
# solution. We sample one model with Euler, DDIM (which is an Euler step in other coordinates,
# {cite:p}`song2021ddim`), EDM's Heun and DPM-Solver++(2M) {cite:p}`lu2022dpmsolverpp` at several
# step counts, on the chapter's first 256 seeds (seeds 0-255 in the summary above), and score each
# against an accurate reference (Heun with 100 steps) with the zoo's threshold. Each cell of the
# table is the RP score and the median similarity to the reference.

# %%
model = models[cfg.sampler_model]
study = sampler_study(model, range(cfg.sampler_seed_count), train.shape, samplers=cfg.samplers,
                      step_counts=cfg.step_counts, threshold=rule.threshold,
                      threshold_rule=rule.rule, descriptor=cfg.descriptor,
                      reference_steps=cfg.reference_steps, batch_size=cfg.batch_size)
fig, ax = plt.subplots(figsize=(6.5, 3.6))
for name in cfg.samplers:
    nfe, rp, lo, hi = study.curve(name)
    curve_with_band(nfe, {name: (rp, lo, hi)}, xlabel="network calls (NFE)",
                    ylabel=f"RP vs heun-{cfg.reference_steps}", ax=ax)
print(study.table())
for name in cfg.samplers:
    lenient, strict = study.min_nfe_range(name, 0.9, rule)
    print(f"{name:9s} first reaches RP >= 0.9 against the reference at {study.min_nfe(name, 0.9)} network calls "
          f"({lenient} to {strict} across the threshold's interval)")
for steps in cfg.step_counts:  # the paper's sampler against the quickest one, step count by step count
    print(compare_rp(rule, study.similarities("heun", steps), study.similarities("dpmpp-2m", steps),
                     (f"heun-{steps}", f"dpmpp-2m-{steps}")))

# %% [markdown]
# Every solver converges to the reference's images: at the book's threshold every solver
# reproduces at least 90% of seeds from 12 steps on; at every threshold of its interval each one
# first gets there by 18 steps; and the median similarity keeps climbing towards 1 as steps are
# added. DDIM and Euler give identical numbers, as they should: DDIM's update is an Euler step in
# other coordinates. DPM-Solver++ reaches RP 0.9 with the fewest network calls, 8 at every
# threshold of the interval, against 15 for Heun and 12 to 18 for Euler and DDIM (12 at the book's
# threshold, 18 at the interval's strict end): which of Euler and Heun gets there first is a
# finding at the threshold only. Heun, the paper's sampler, is the worst at 2-5 steps (lowest
# median similarity, its interval apart from DPM-Solver++'s). At 8 and 12 steps it beats
# DPM-Solver++ in RP at every threshold of the interval (1.00 against 0.96 at 8 steps, 1.00
# against 0.99 at 12), while the median similarity ranks the two the other way at 8 steps (0.995
# against 0.996); from 18 steps on both are at RP 1.00, a tie. From 8 steps on both sit closer to
# the reference than Euler/DDIM at the same number of steps (higher median similarity). So the
# *sampler* is not a source of disagreement once it has converged: the differences in the zoo
# above come from the models.
#
# ## Controls: what non-reproducibility looks like
#
# **(a) A stochastic sampler.** The ancestral Euler sampler injects fresh Gaussian noise at every
# step. Both models still start from the same initial noise, but each draws its own injected
# noise, as it would in practice. We score the two chapter-1 UNets against each other, and one
# UNet against itself under two injected-noise streams, by the same rule.

# %%
names = list(models)[:2]
between, within, stoch = stochastic_control(
    models[names[0]], models[names[1]], seeds, train.shape, threshold=rule.threshold,
    threshold_rule=rule.rule, steps=cfg.steps, descriptor=cfg.descriptor,
    batch_size=cfg.batch_size, names=tuple(names))
print(between)
print(within)
print("RP across the threshold's interval: between models {:.2f}-{:.2f}, within one model {:.2f}-{:.2f}".format(
    *rule.rp_range(between.similarities), *rule.rp_range(within.similarities)))
fig = same_noise_grid(stoch, list(range(cfg.grid_seeds)),
                      title="Stochastic sampler: same initial noise, fresh injected noise")

# %% [markdown]
# **(b) A non-diffusion generator.** Two small VAEs of different widths, trained on the same
# digits, decode the *same* latent code $z_k$ (drawn from seed $k$). Each VAE alone is a
# deterministic map from a Gaussian latent to an image, just like a diffusion model with a
# deterministic sampler, so the question "same latent, same image?" is asked in exactly the same
# way.

# %%
vaes = {name: trained[name] for name in cfg.vaes}  # trained with the diffusion models above
vae_samples = [decode_seeds(v, seeds, name) for name, v in vaes.items()]
vae_rp = rp_score(*vae_samples, cfg.descriptor, threshold=rule)
print(vae_rp)
print(f"median similarity of the two VAEs' images from the same latent: {vae_rp.similarities.median():.3f}; "
      "RP across the threshold's interval {:.2f}-{:.2f}".format(*rule.rp_range(vae_rp.similarities)))
fig = same_noise_grid(vae_samples, list(range(cfg.grid_seeds)),
                      title="Two VAEs decoding the same latent codes")

# %% [markdown]
# ## Putting the numbers side by side

# %%
bars = {"diffusion, min pair": net_rp.min().item(), "diffusion, mean": net_rp.mean().item(),
        "model vs Gaussian denoiser, max": gauss_rp.max().item(),
        "stochastic sampler": between.value, "VAEs, shared latent": vae_rp.value}
fig, ax = plt.subplots(figsize=(6.5, 3.0))
ax.barh(list(bars), list(bars.values()), color=["black", "black", "tab:purple", "tab:gray", "tab:gray"])
ax.set_xlim(0, 1)
ax.set_xlabel(f"RP score (threshold {zoo.threshold:.2f}, {zoo.n} seed pairs)")
ax.invert_yaxis()
fig.tight_layout()

# %% [markdown]
# ## Discussion
#
# - **Across architectures and objectives**, the UNets (two widths, two seeds, attention, three
#   objectives) reproduce one another on roughly a sixth to a half of seeds (0.17-0.56 in the
#   matrix), by a rule that no model reaches with the Gaussian denoiser or with D\*: the matrix's
#   last two rows and columns are at most 0.01, and every diffusion pair stays above them at every
#   threshold of the rule's interval. The median similarity alone would not show this much (the
#   closest model-closed-form pair is level with the weakest diffusion pair). The **U-ViT**,
#   trained to the UNets' x0 error, reproduces them on 0.09-0.31 of seeds; at the UNets' 600 steps
#   it reproduced none, and along its training its agreement rose as its error fell (the section
#   above). At matched error it still agrees with the UNets less than they agree with one another,
#   at every threshold of the interval and by the median. The epsilon-prediction UNet, the zoo's
#   worst denoiser at the middle noise level, also agrees less: its pairs with the other UNets are
#   0.17-0.27, every other UNet pair 0.49-0.56, lower at every threshold of the interval. Both point
#   the way the paper's account predicts: reproducibility grows as models learn the denoiser, so an
#   RP matrix should be read beside the models' denoising errors.
# - **Samplers** are not a source of disagreement once they have converged; every solver here gets
#   there within 18 network calls at every threshold of the interval (DPM-Solver++ in 8, Heun in
#   15, Euler and DDIM in 12 to 18). Whether the second-order Heun converges quicker than
#   first-order Euler on this grid depends on where inside its interval the threshold lies.
# - **Both controls collapse** under the same metric and threshold, and at every threshold of its
#   interval: fresh noise injected during sampling decides the image, and two VAEs assign unrelated
#   images to the same latent code.
#
# **Where the toy scale differs from the paper.** Our images are 8x8 digits, our models have
# 0.16-0.63M parameters and train for minutes, and our descriptor is pixel correlation with the
# book's same-image threshold (calibrated on held-out real digits), not SSCD at 0.6. A pixel
# correlation higher than 99% of held-out real digits reach with their nearest training digit is a
# much stricter notion of "the same image" than SSCD's (which tolerates small shifts and texture
# changes), so our RP values are lower than the paper's and should be read beside the baselines in
# the matrix. The `gpu` profile trains the same recipes on CIFAR-10 and scores them with SSCD at
# the paper's threshold on 1,000 seeds.

# %% [markdown]
# ## Models nobody here trained
#
# The paper's Figure 1 starts from CIFAR-10 models that different people trained and released. The
# `gpu` profile does the same with public DDPM checkpoints from the Hugging Face Hub (their ids are
# in the config): each is a diffusers `UNet2DModel` that predicts the noise of a discrete DDPM
# schedule {cite:p}`ho2020ddpm`. `load_diffusers_denoiser` turns one into a denoiser of the book's
# signature: the schedule's step $t$ becomes the noise level
# $\sigma_t = \sqrt{(1 - \bar\alpha_t)/\bar\alpha_t}$, and a noise level between two steps becomes
# a fractional step, so the same seeds, the same Heun sampler and the same rule apply, with no
# training at all. The package's tests check that its DDIM on such a model reproduces diffusers' own
# DDIM sampler from the same noise. On the cpu profile nothing is downloaded; the calls are printed.

# %%
from reprodiff.pretrained import load_diffusers_denoiser

if cfg.pretrained:  # the gpu profile (and its toy-scale smoke twin)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    public = {name: load_diffusers_denoiser(source, device=device) for name, source in cfg.pretrained.items()}
    public_shape = next(iter(public.values())).shape
    # one grid for every model: EDM's [0.002, 80], narrowed to the noise levels they all were trained on
    lo = max([0.002] + [m.sigma_min for m in public.values()])
    hi = min([80.0] + [m.sigma_max for m in public.values()])
    public_samples = sample_models(public, seeds, public_shape, sampler=cfg.sampler, steps=cfg.steps,
                                   batch_size=cfg.batch_size, sigma_min=lo, sigma_max=hi)
    public_rp = rp_matrix(public_samples, cfg.descriptor, threshold=rule)
    print(f"{cfg.sampler}-{cfg.steps} on sigma in [{lo:.3g}, {hi:.3g}], seeds 0-{cfg.n_seeds - 1}")
    print(public_rp)
    fig = same_noise_grid(public_samples, list(range(cfg.grid_seeds)),
                          title="Public checkpoints. Columns: shared initial noise")
else:
    gpu_zoo = get_config("architectures", "gpu")
    print("This section needs the gpu profile (a GPU and access to the Hugging Face Hub). The calls it makes:\n")
    print("public = {")
    for name, source in gpu_zoo.pretrained.items():
        print(f"    {name!r}: load_diffusers_denoiser({source!r}, device='cuda'),")
    print("}")
    print(f"samples = sample_models(public, range({gpu_zoo.n_seeds}), (3, 32, 32), sampler={gpu_zoo.sampler!r}, "
          f"steps={gpu_zoo.steps}, sigma_min=..., sigma_max=...)")
    print("rp_matrix(samples, 'sscd', threshold=book_rule('cifar10', 'sscd'))")

# %% [markdown]
# ## Headline

# %% tags=["nbval-check-output"]
print(rule)
print(f"diffusion zoo ({nets} models, {zoo.n} seed pairs): RP between models min {net_rp.min():.2f}, "
      f"mean {net_rp.mean():.2f}; model vs Gaussian denoiser at most {gauss_rp.max():.2f}, "
      f"model vs D* at most {zoo.values[:nets, nets + 1].max():.2f}")
print(f"stochastic sampler control: RP {between.value:.2f} between models, "
      f"{within.value:.2f} within one model")
print(f"VAE shared-latent control: RP {vae_rp.value:.2f}")
print(progress.headline((min(unet_pairs), max(unet_pairs))))
print(uvit_vs_unets)
