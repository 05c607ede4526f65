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
# # 8. Fine-tuned models stay reproducible
#
# *Mirrors the fine-tuning experiments in Section 4 of {cite:t}`zhang2024emergence`: models
# fine-tuned from one pretrained model, fully or with LoRA {cite:p}`hu2022lora`, keep mapping the
# same noise to the same image.*
#
# Most diffusion models in use were not trained from scratch: they start from a pretrained model
# and are fine-tuned on new data, often with a low-rank adapter (LoRA) that trains a few percent
# of the weights. Does the noise-to-image map survive that? This chapter fine-tunes one base model,
# trained on all ten digit classes, to the digits 5-9 only: twice with every weight trainable
# (two seeds, so that "fine-tuned vs fine-tuned" has a same-method baseline) and with LoRA at three
# ranks. Two models trained from scratch on the same digits are the reference. We ask three
# questions: do the fine-tuned models agree with one another, with the from-scratch models, and
# with the base they started from?
#
# **Time to run.** `cpu` profile on 2 CPU cores (the README's latest run; other machines in its
# table): 0.8 min once the book's models are trained (`python -m reprodiff train --book`, which
# `make build` and `make test` run first), ~2 min alone from an empty cache (it then trains the 8
# models it uses: 2 single-core minutes, two at a time). `gpu` profile: CIFAR-10 cats and dogs from
# chapter 2's UNet-XS with SSCD; about 9 minutes alone on a Colab T4 by the step-cost estimate (not
# yet timed).

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

from reprodiff import get_config, load_or_train_many
from reprodiff.denoisers import GaussianDenoiser, OptimalDenoiser
from reprodiff.experiments import book_rule, quality_classifier
from reprodiff.fine_tuning import drift_summary, lora_table, rp_table, split_by_base, training_table
from reprodiff.metrics import (get_descriptor, gl_score, in_classes, null_similarity, paired_similarity, rp_matrix,
                               rp_score, survival)
from reprodiff.notebook import show_source
from reprodiff.plots import drift_figure, image_grid, rp_heatmap, survival_curves
from reprodiff.profiles import check_resources
from reprodiff.sampling import Samples, generate
from reprodiff.snapshots import rp_along_steps, sample_at_steps
from reprodiff.training import add_lora, training_data

cfg = get_config("fine_tuning", PROFILE)
print(cfg.summary())

# %% [markdown]
# ## The base and its fine-tunes
#
# A fine-tune is an ordinary training config that names its base: its checkpoint's name includes
# the base's hash, so a changed base can never be mistaken for the one a fine-tune started from,
# and a fine-tune whose base is missing stops before training. The base is the narrow UNet of
# chapters 1-3, trained on 1,500 digits of every class. The fine-tunes see only the digits 5-9 (the
# base's training digits of those classes). The LoRA models train only low-rank adapters that
# peft {cite:p}`mangrulkar2022peft` adds to every convolution and time projection of the UNet:

# %%
show_source(add_lora)

# %%
check_resources(list(cfg.models.values()), cfg.descriptor)
models = load_or_train_many(cfg.models)  # the base from the cache; fine-tunes train two at a time
scratch, scratch2 = (f"scratch s{s}" for s in cfg.scratch_seeds)
target_train, target_held = training_data(cfg.models[scratch])
shape = target_train.shape
print(f"fine-tuning set: {len(target_train)} digits of classes {cfg.target}; "
      f"{len(target_held)} held-out digits of those classes")
print(training_table(models, target_held.images, sigma=0.5))

# %% [markdown]
# The held-out error is the RMS error of each model's clean-image estimate at noise level 0.5 on
# held-out digits 5-9 (lower is better). By it the fine-tunes and the from-scratch models are about
# equally good denoisers of the digits 5-9 (0.220-0.227), all better at them than the base (0.231):
# the comparisons below are between equally trained denoisers, not between a good and a poor one. The training times are what each model took on one core
# while another model trained on the other (the base's is from whichever chapter trained it).
# LoRA trains a small fraction of the weights, but on this CPU a step is no cheaper: the adapters
# add work to every adapted layer, and the frozen weights still need their gradients with respect
# to the activations.
#
# ## Same noise, before and after fine-tuning
#
# Each column starts every model from the same noise with the same deterministic sampler.

# %%
seeds = range(cfg.n_seeds)
samples = {name: generate(m, seeds, shape, sampler=cfg.sampler, steps=cfg.sampling_steps, name=name,
                          batch_size=cfg.batch_size) for name, m in models.items()}
grid_seeds = list(range(cfg.grid_seeds))
fig = image_grid({name: s.images[:cfg.grid_seeds] for name, s in samples.items()},
                 [f"seed {k}" for k in grid_seeds], scale=0.8,
                 title=f"Same noise per column: the base, five fine-tunes to the digits 5-9, "
                       f"and two models trained on them from scratch ({cfg.sampler}-{cfg.sampling_steps})")

# %%
classifier, real_accuracy, _ = quality_classifier(cfg.dataset, profile=PROFILE)
in_target = {name: float(in_classes(classifier, s, cfg.target).double().mean()) for name, s in samples.items()}
print(f"digit classifier: accuracy {real_accuracy:.2f} on held-out real digits")
print("fraction of samples classified as a digit 5-9:")
for name, v in in_target.items():
    print(f"  {name:11s} {v:.2f}")

# %% [markdown]
# The base draws a digit 5-9 from about half of the seeds, as it should. After 400 steps the full
# fine-tunes draw one from nearly every seed, close to the from-scratch models; the LoRA models get
# there less completely, rank 1 least (0.82; ranks 4 and 16 both 0.89). In the grid, where the
# base drew a 5-9 the fine-tunes often kept it (a section below measures how often); where it drew
# a 0-4, they drew some other digit, and the fine-tunes tend to draw the *same* other digit.

# %% [markdown]
# ## One rule, and the null on a narrower target
#
# The book's same-image rule is unchanged: two digits are the same image when their pixel
# correlation exceeds what 99% of held-out real digits reach with their nearest training digit.
# On a narrower target the **null** deserves a look: samples of *different* seeds now come from
# five classes instead of ten, so they could look more alike by chance (the more so the narrower
# the target; a single class would raise it most). The curves below give, for each kind of pair,
# the fraction of the 512 seed pairs more similar than $t$, for every $t$.

# %%
desc = get_descriptor(cfg.descriptor)
rule = book_rule(cfg.dataset, cfg.descriptor, profile=PROFILE)
full, other = (f"full s{s}" for s in cfg.seeds)
lora = f"LoRA r{cfg.ranks[len(cfg.ranks) // 2]}"
pairs = {
    f"{full} vs {other} (same method, another seed)": paired_similarity(samples[full], samples[other], desc),
    f"{full} vs {lora} (same training seed)": paired_similarity(samples[full], samples[lora], desc),
    f"{scratch} vs {scratch2} (from scratch, two seeds)": paired_similarity(samples[scratch], samples[scratch2], desc),
    f"{full} vs {scratch}": paired_similarity(samples[full], samples[scratch], desc),
    f"{full} vs base": paired_similarity(samples[full], samples["base"], desc),
    f"{full} vs {other}, different seeds (null)": null_similarity(samples[full], samples[other], desc),
    f"base vs {scratch}, different seeds (null)": null_similarity(samples["base"], samples[scratch], desc),
}
fig = survival_curves(pairs, rule.threshold, xlim=(0.8, 1.0), title="Fraction of pairs more similar than t",
                      xlabel=f"threshold t ({desc.name} similarity)")
print(rule)
for label, sims in pairs.items():
    print(f"median similarity, {label}: {sims.median():.3f}")

# %% [markdown]
# Three things to read off. Two fine-tunes of one base (the first two curves) agree more tightly
# than two models trained from scratch on the same digits (the third; RP below confirms it). A
# fine-tune is related to its base (far above the null) but much less often the same image. And
# the null barely moved: five classes instead of ten raise the median similarity of different-seed
# pairs only a little, and essentially none of them reaches the threshold.

# %% [markdown]
# ## RP among the fine-tunes, to the from-scratch models, and to the base
#
# RP of every pair of models by the book's rule (the diagonal is 1 by definition), and the same
# numbers with their 95% intervals for the pairs discussed below, with the two closed forms of the
# fine-tuning set as baselines, sampled from the same seeds: the Gaussian denoiser and the optimal
# denoiser D\* of the 737 training digits 5-9 (chapters 1 and 4). A fine-tune that agreed with
# another only as often as with these would show nothing about fine-tuning.

# %%
names = list(samples)
matrix = rp_matrix([samples[n] for n in names], desc, threshold=rule)
fig, ax = plt.subplots(figsize=(6.2, 5.2))
rp_heatmap(matrix.values, names, title=f"RP by the book's rule (threshold {rule.threshold:.3f})", ax=ax)
fig.tight_layout()

fine_tunes = [n for n in names if n not in ("base", scratch, scratch2)]
closed = {name: generate(d, seeds, shape, sampler=cfg.sampler, steps=cfg.sampling_steps, name=name,
                         batch_size=cfg.batch_size)
          for name, d in {"Gaussian 5-9": GaussianDenoiser.from_data(target_train.images),
                          "D* 5-9": OptimalDenoiser(target_train.images)}.items()}
rp = {(a, b): rp_score(samples[a], {**samples, **closed}[b], desc, threshold=rule)
      for a in [*fine_tunes, scratch] for b in [*fine_tunes, scratch, scratch2, "base", *closed] if a != b}
print(rp_table(rp, [*fine_tunes, scratch], (full, other, scratch2, "base", *closed)))

# %% [markdown]
# Neither closed form of the digits 5-9 gives any model's image (RP at most 0.01 in the last two
# columns). The fine-tunes agree with one another at least as often as the two from-scratch models
# agree with each other, and with a from-scratch model somewhat less often. The full fine-tunes agree
# with their base least (0.20): fine-tuning to new classes moves most of the noise-to-image map.
# So do LoRA ranks 4 and 16, but LoRA rank 1 agrees with its base (0.44 [0.40,0.48]) about as
# often as with the from-scratch models (0.41 and 0.40). The LoRA models agree most with one
# another (the heatmap) and, at ranks 4 and 16, next with `full s0`: all of them trained with
# seed 0, on the same batches and the same noise. The section on LoRA rank separates that from
# the method.

# %% [markdown]
# ## What survives of the base
#
# About half of the base's samples are already a digit 5-9. For those seeds a fine-tune has no
# reason to change the image; for the others it must draw another digit. RP to the base, split by
# the class the base drew from each seed:

# %%
base_in_target = in_classes(classifier, samples["base"], cfg.target)
print(split_by_base({name: samples[name] for name in fine_tunes}, samples["base"], base_in_target, desc,
                    rule.threshold))

# %% [markdown]
# The base's image survives far more often where it was already a target digit (on 0.36-0.37 of
# those seeds for the full fine-tunes, 0.50-0.67 for LoRA) than elsewhere (0.02 for the full
# fine-tunes, 0.06-0.19 for LoRA): what a fine-tune keeps of its base is mostly the part of the
# map that already served the new task. Even there, the full fine-tunes keep the same image on
# only about a third of the seeds. The low-rank adapters keep more of it than full fine-tuning
# does.

# %% [markdown]
# ## The drift from the base
#
# Every fine-tune saved its EMA weights at steps 25, 50, 100 and 200 of its 400 (a snapshot
# schedule in its config: one training run, no retraining). Sampling those snapshots from the same
# first 256 seeds shows the noise-to-image map moving away from the base's.

# %%
curve_seeds = range(min(256, cfg.n_seeds))
steps = [0, *cfg.snapshots, cfg.steps]
first = {name: s.select(curve_seeds) for name, s in samples.items()}
# step 0 is the base, the last step the finished model (both sampled above)
drift = {name: sample_at_steps(cfg.models[name], steps, curve_seeds, shape, name=f"{name}@{{step}}",
                               sampler=cfg.sampler, sampling_steps=cfg.sampling_steps, batch_size=cfg.batch_size,
                               given={0: first["base"], cfg.steps: first[name]}) for name in (full, other, lora)}
rp_steps = {label: rp_along_steps(a, b, desc, rule)
            for label, (a, b) in {f"{full} vs base": (drift[full], first["base"]),
                                  f"{full} vs {other} (same step)": (drift[full], drift[other]),
                                  f"{full} vs {scratch}": (drift[full], first[scratch]),
                                  f"{lora} vs {full} (same step)": (drift[lora], drift[full])}.items()}
fractions = {name: [float(in_classes(classifier, s, cfg.target).double().mean()) for s in drift[name]]
             for name in drift}
fig = drift_figure(steps, rp_steps)
print(drift_summary(steps, rp_steps, fractions, cfg.target))

# %% [markdown]
# RP to the base falls fast, most of the way within the first 100 steps. The two full fine-tunes
# start as one model (both are the base at step 0), part company over the first 100 steps (RP
# 0.86 at step 25, 0.61 at step 100; they see different batches and noise), and then stay near the
# level they end at (0.64 at step 200, 0.70 at 400): they leave the base along different paths
# toward the same place. Meanwhile `full s0` comes closer to the from-scratch model, which never
# saw the base at all, up to step 200 (RP 0.19 at the base, 0.54 at step 200), and holds there
# (0.54 at step 400).

# %% [markdown]
# ## LoRA rank, and what the training seed shares
#
# A rank-$r$ adapter lets each adapted layer change its weights only along $r$ directions. The
# LoRA models train with seed 0, as `full s0` does: the same training seed draws the same
# mini-batches and the same noise, so the two differ *only* in what is trainable. `full s1` draws
# other batches and other noise. RP to each and to the base, with each rank's trainable weights and
# the fraction of its samples that are a digit 5-9:

# %%
loras = [f"LoRA r{r}" for r in cfg.ranks]
print(lora_table(models, rp, in_target, loras, (full, other, "base")))

# %% [markdown]
# Against `full s1`, which saw other batches and other noise, LoRA of rank 4 or 16 agrees about as
# often as the two full fine-tunes agree with each other (0.66 and 0.71 against 0.68, within the
# intervals); rank 1 agrees less often (0.57 [0.53,0.61]). Against `full s0`, which saw the same
# batches and noise, agreement rises with the rank: the more an adapter can change, the closer it
# comes to the full fine-tune trained on the same draws. At ranks 4 and 16 that same-seed RP lies
# above the other-seed RP by more than the intervals (at rank 1 the two are within them), so part
# of what "LoRA reproduces the full fine-tune" measures is the shared training randomness; a fair
# comparison uses another seed. Rank 1 keeps the most of the base (RP 0.44, against 0.33 and
# 0.29) and reaches the target classes least often (0.82, against 0.89 for both higher ranks);
# between ranks 4 and 16 the RP to the base lies within the intervals.

# %% [markdown]
# ## Did the fine-tunes memorize their small training set?
#
# Fine-tuning on a few hundred images is where copying is a real risk. GL by the same rule, now
# against the fine-tuning set: the fraction of samples that are *not* the same image as any
# fine-tuning digit. Its ceiling is what held-out digits 5-9 score.

# %%
real = Samples(target_held.images, torch.arange(len(target_held)), name="held-out digits 5-9")
held_gl = gl_score(real, target_train.images, desc, threshold=rule).value
gl = {name: gl_score(samples[name], target_train.images, desc, threshold=rule)
      for name in [*fine_tunes, scratch, scratch2]}
print(f"held-out digits 5-9 (the ceiling): GL {held_gl:.2f}")
for name, s in gl.items():
    print(f"{name:10s} GL {s.interval()}")

# %% [markdown]
# No model copies its fine-tuning digits: a few hundred images and 400 steps stay far from the
# memorization regime of chapter 3, which only its smallest training set reaches, each of its
# digits seen thousands of times.

# %% [markdown]
# ## Headline
#
# The numbers this chapter stands on (checked by the book's regression tests):

# %% tags=["nbval-check-output"]
print(rule)
print(f"RP full vs full (two training seeds): {rp[(full, other)].interval()}")
print(f"RP full vs LoRA, another training seed ({other}): "
      + ", ".join(f"r{r} {rp[(n, other)].interval()}" for r, n in zip(cfg.ranks, loras)))
print(f"RP full vs LoRA, the same training seed ({full}): "
      + ", ".join(f"r{r} {rp[(n, full)].interval()}" for r, n in zip(cfg.ranks, loras)))
print(f"RP to the from-scratch model ({scratch}): " + ", ".join(f"{n} {rp[(n, scratch)].value:.2f}" for n in fine_tunes)
      + f"; two from-scratch models: {rp[(scratch, scratch2)].interval()}")
print("RP to the base: " + ", ".join(f"{n} {rp[(n, 'base')].value:.2f}" for n in fine_tunes))
print("RP to the closed forms of the digits 5-9, at most: " + ", ".join(
    f"{c} {max(rp[(n, c)].value for n in [*fine_tunes, scratch]):.2f}" for c in closed))
print(f"null (different seeds) median similarity {pairs[f'{full} vs {other}, different seeds (null)'].median():.2f}; "
      f"RP of the null pairs {float(survival(pairs[f'{full} vs {other}, different seeds (null)'], [rule.threshold])):.2f}")
print("GL on the fine-tuning set: " + ", ".join(f"{n} {gl[n].value:.2f}" for n in gl) + f" (held-out {held_gl:.2f})")

# %% [markdown]
# ## Summary
#
# - Fine-tuned models stay reproducible: two full fine-tunes of one base, and LoRA adapters of
#   every rank tried, map the same noise to the same digit at least as often as two models trained
#   from scratch on the same digits do (the two full fine-tunes more often), while different
#   noises essentially never give the same digit.
# - The map they share is not the base's: fine-tuning to new classes replaces most of it, keeping
#   the base's image mainly where it was already a target digit. The full fine-tunes and LoRA
#   ranks 4 and 16 end up closer to a model that never saw the base than to the base itself;
#   LoRA rank 1 ends up about as close to one as to the other.
# - Comparing LoRA of rank 4 or 16 with a full fine-tune trained on the same batches and noise
#   overstates their agreement; against another training seed, those ranks agree with full
#   fine-tuning as much as full fine-tuning agrees with itself, and rank 1 less. Rank 1 stays
#   closest to the base.
# - On a target of five classes the different-seed null hardly rises, and no fine-tune copies its
#   fine-tuning digits (GL 1 on the fine-tuning set).
#
# The `gpu` profile runs the same chapter on CIFAR-10: chapter 2's UNet-XS fine-tuned to cats and
# dogs with SSCD as the descriptor.
#
# ## References
#
# Cited here: {cite:p}`zhang2024emergence,hu2022lora,mangrulkar2022peft`; full entries are in the
# bibliography on the {doc}`landing page <index>`.
