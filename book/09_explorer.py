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
# # 9. Exploring the noise space
#
# *Beyond the paper: {cite:t}`zhang2024emergence` name three implications of reproducibility
# (training efficiency, model privacy, controllable generation) without measuring them. This
# chapter lets you play with the shared noise-to-image map and measures two of its uses.*
#
# If different models map the same noise to the same image, the initial noise is a *code* that
# they share: a seed means the same digit to every model. This chapter explores that code. First
# by hand, with an explorer that samples every model of chapter 2 from the noise you pick; then by
# walking along a path between two noises; then by measuring what the code is good for: choosing
# seeds with a cheap model for an expensive one, and auditing a model for copies of its training
# images.
#
# **Time to run.** `cpu` profile on 2 CPU cores (the README's latest run; other machines in its
# table): 0.8 min once the book's models are trained (`python -m reprodiff train --book`, which
# `make build` and `make test` run first), ~3 min alone from an empty cache (it then trains the 8
# models it uses: 5 single-core minutes, two at a time). `gpu` profile: chapter 2's CIFAR-10 models
# and SSCD; about 15 minutes alone on a Colab T4 by the step-cost estimate (not yet timed).

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
import torch
from IPython.display import display

from reprodiff import get_config, load_or_train_many
from reprodiff.denoisers import GaussianDenoiser
from reprodiff.experiments import book_rule, quality_classifier
from reprodiff.explore import (NoiseExplorer, interpolation_study, label_agreement, proxy_study,
                               replication_audit, slerp)
from reprodiff.metrics import Scores
from reprodiff.notebook import show_source
from reprodiff.plots import curve_with_band, image_grid
from reprodiff.profiles import check_resources
from reprodiff.sampling import Samples, generate
from reprodiff.training import training_data

cfg = get_config("explorer", PROFILE)
print(cfg.summary())

# %%
check_resources(list(cfg.models.values()) + list(cfg.audit.values()), cfg.descriptor)
models = load_or_train_many({**cfg.models, **cfg.audit})  # chapters 2 and 3's models, from the cache
audit_models = {name: models.pop(name) for name in cfg.audit}
train, heldout = training_data(next(iter(cfg.models.values())))
shape = train.shape
rule = book_rule(cfg.dataset, cfg.descriptor, profile=PROFILE)
classifier, real_accuracy, _ = quality_classifier(cfg.dataset, profile=PROFILE)
print(rule)
print(f"digit classifier: accuracy {real_accuracy:.2f} on the held-out real images")

# %% [markdown]
# ## Every model, one noise
#
# Pick a seed: every chosen model starts from that seed's noise and runs the chosen deterministic
# sampler. Change the sampler or the number of steps and watch what moves; change the seed and
# watch all models change together. (The explorer needs a live kernel: run the chapter in Jupyter
# or on Colab. Models that take a class label, as chapter 6's will, also get a label and a
# guidance scale.)

# %% tags=["remove-output"]
explorer = NoiseExplorer(models, shape, steps=cfg.steps)
display(explorer.widget)
explorer.update()

# %% [markdown]
# For the page you are reading, the same view precomputed: the seven models (rows) from the first
# seeds (columns).

# %%
gallery_seeds = list(range(cfg.gallery_seeds))
gallery = {name: generate(m, gallery_seeds, shape, sampler=cfg.sampler, steps=cfg.steps).images
           for name, m in models.items()}
fig = image_grid(gallery, [f"seed {k}" for k in gallery_seeds], scale=0.8,
                 title=f"Same noise per column, {cfg.sampler}-{cfg.steps}")

# %% [markdown]
# ## Walking between two noises
#
# A straight line between two Gaussian noises passes through points that are too short to be
# noise (in $d$ dimensions a noise has norm about $\sqrt d$; the midpoint of two nearly orthogonal
# ones has norm about $\sqrt{d/2}$). Spherical interpolation keeps the norm:

# %%
show_source(slerp)

# %% [markdown]
# We walk from seed $2k$ to seed $2k+1$ in nine frames, for 32 pairs, and sample every model at
# every step. Two numbers along the walk: how similar consecutive frames of one model are (is the
# map smooth?), and RP between models at each step (is it the same map all along, or only at the
# endpoints?).

# %%
pairs = [(2 * k, 2 * k + 1) for k in range(cfg.interpolation_pairs)]
walk = interpolation_study(models, shape, pairs, cfg.frames, rule=rule, descriptor=cfg.descriptor,
                           sampler=cfg.sampler, steps=cfg.steps, batch_size=cfg.batch_size)
t_labels = [f"t={float(t):.2f}" for t in walk.t]
for path in range(2):
    fig = image_grid({name: f[path] for name, f in walk.frames.items()}, t_labels, scale=0.7,
                     title=f"from seed {pairs[path][0]} (t=0) to seed {pairs[path][1]} (t=1)")

# %%
unets = [name for name, c in cfg.models.items() if c.backbone.startswith("unet")]
walk_unets = walk.agreement_among(unets, rule=rule, descriptor=cfg.descriptor)
fig = curve_with_band(walk.t.tolist(), {"all model pairs": Scores(walk.agreement).band(),
                                        f"UNet pairs only ({len(unets)} models)": Scores(walk_unets).band()},
                      xlabel="position along the path t", ylabel="RP between models", logx=False)
print(f"RP between models along the path: {' '.join(f'{s.value:.2f}' for s in walk.agreement)}")
print(f"  UNet pairs only: {' '.join(f'{s.value:.2f}' for s in walk_unets)}")
smooth = torch.stack(list(walk.smoothness.values()))
print(f"similarity of consecutive frames (mean over models and paths): min {smooth.mean(0).min():.3f}, "
      f"max {smooth.mean(0).max():.3f}; lowest single model step {smooth.min():.3f}")

# %% [markdown]
# Two things to read off. The frames of one model change gradually: consecutive frames are far
# more alike than two unrelated samples are (chapter 1's null pairs), and each path morphs one
# digit into another through a few intermediate shapes. And the agreement between models holds
# all along the path, not only at the two seeds' noises: a point halfway along the arc between two
# independent noises is itself distributed (approximately) like a fresh noise, and the models treat
# it as one. RP moves from one $t$ to the next by no more than its interval (32 paths) allows, with
# no sign of a collapse between the endpoints. The map from noise to image that the models share is
# a continuous one. The pooled curve counts the six pairs with the U-ViT, which reproduces the UNets
# less often than they reproduce one another (chapter 2); the second curve is the UNet pairs alone.
#
# ## The noise decides what is drawn
#
# If the noise is a shared code, it should fix at least *which digit* a model draws. The package's
# digit classifier (a small MLP trained on the real training digits) labels every model's sample
# for 512 seeds; we count how often two models draw the same digit from the same noise, and, as
# the chance level for this mix of digits, from different noises.

# %%
seeds = range(cfg.n_seeds)
samples = {name: generate(m, seeds, shape, sampler=cfg.sampler, steps=cfg.steps, name=name,
                          batch_size=cfg.batch_size) for name, m in models.items()}
agree = label_agreement(samples, classifier)
agree_unets = label_agreement({name: samples[name] for name in unets}, classifier)
print(f"same digit, same noise: {agree['same noise']:.2f} of model pairs x seeds; "
      f"different noise: {agree['other noise']:.2f}")
print(f"  UNet pairs only: same noise {agree_unets['same noise']:.2f}, different noise {agree_unets['other noise']:.2f}")

# %% [markdown]
# Even where two models do not draw the *same image* by the book's strict rule (RP between these
# models is well below the label agreement; chapter 2 has the full matrix), they mostly draw the
# same *digit*, several times more often than chance; the UNet pairs alone, at a similar rate. The seed carries the class and the pose; the models differ
# in the strokes.
#
# ## A cheap model as a proxy for an expensive one
#
# Suppose you want many images of one class from an expensive unconditional model. Because the
# models share the code, a cheap model can search the noise space for you: sample every seed with
# the cheap model, keep the seeds whose image is the class you want, and run the expensive model
# on those seeds only. How often does the expensive model then draw the class, compared with
# seeds picked at random, and what does it cost per image of the class, both timed in this run?

# %%
cheap, expensive = cfg.proxy
proxy = proxy_study(models[cheap], models[expensive], shape, seeds, classifier=classifier,
                    target=cfg.proxy_target, rule=rule, descriptor=cfg.descriptor, sampler=cfg.sampler,
                    steps=cfg.steps, batch_size=cfg.batch_size)
p = proxy.precision
print(f"{cheap} chose {len(proxy.chosen)} of {proxy.n_seeds} seeds for class {proxy.target}")
print(f"{expensive} draws class {proxy.target} on {p.interval()} of them")
print(f"  (on a random seed: {proxy.base_rate:.2f}); the same image (RP) on {proxy.rp.value:.2f}")
print(f"time: {cheap} on every seed {proxy.cheap_seconds:.1f} s, {expensive} on the chosen seeds "
      f"{proxy.chosen_seconds:.1f} s,")
print(f"  {expensive} on every seed {proxy.expensive_seconds:.1f} s")
print(f"cost per image of class {proxy.target}, proxy / {expensive} alone: {proxy.cost_ratio:.2f}")
gaussian = GaussianDenoiser.from_data(train.images)  # fitted, not trained: the free proxy
free = proxy_study(gaussian, models[expensive], shape, seeds, classifier=classifier, target=cfg.proxy_target,
                   rule=rule, descriptor=cfg.descriptor, sampler=cfg.sampler, steps=cfg.steps,
                   batch_size=cfg.batch_size, allow_empty=True, baseline=proxy)
print(f"{free.summary('Gaussian denoiser', expensive)}; it chose {len(free.chosen)} of {free.n_seeds} seeds, "
      f"in {free.cheap_seconds:.1f} s")

# %% [markdown]
# The seeds the cheap model chooses give the expensive model's class several times as often as
# random seeds do, so the cost per image of the class drops by the printed factor: the proxy pays
# for one cheap pass over every seed and one expensive pass over the few it keeps.
#
# The free baseline is a proxy that costs nothing to train: the Gaussian denoiser, fitted to the
# training digits' mean and covariance (chapter 4), sampled from the same seeds. It chooses worse
# (the expensive model draws the class on fewer of its seeds) but its pass over every seed costs
# almost nothing, so per image of the class it comes out cheaper than the trained proxy here. On
# 8x8 digits a UNet-XS is only a few times cheaper than a UNet-S; the trained proxy pays off over
# the free one when it is much cheaper than the model it serves, or when a chosen seed must hit the
# class more reliably. This is the paper's "controllable generation" put to work: the noise is a
# code that one model, or a closed form, can read for another.
#
# ## A replication audit
#
# The same-image rule that scores reproducibility also flags privacy leaks: a sample that is the
# same image as a training image is a copy. GL, the generalization score, is the fraction of
# samples that are not. Here is the audit of two of chapter 3's UNet-XS models, trained on 16 and
# on 1,500 digits, over 512 seeds; for the first, the flagged samples beside the training images
# they copy.

# %%
audits = {}
for name, m in audit_models.items():
    n_train = cfg.audit[name].n_train
    audit_train, _ = training_data(cfg.audit[name])
    s = generate(m, seeds, shape, sampler=cfg.sampler, steps=cfg.steps, name=name, batch_size=cfg.batch_size)
    audits[name] = replication_audit(s, audit_train.images, rule=rule, descriptor=cfg.descriptor)
    a = audits[name]
    print(f"{name}: {len(a.flagged)} of {len(s)} samples flagged as copies (GL {a.gl.interval()})")
# the same audit of real digits that no model saw, against the full training set: the rule flags about
# 1% of them by construction (its threshold is the 99th percentile of exactly these similarities)
ceiling = replication_audit(Samples(heldout.images, torch.arange(len(heldout))), train.images, rule=rule,
                            descriptor=cfg.descriptor)
print(f"held-out real digits against the {len(train):,} training digits: {len(ceiling.flagged)} of "
      f"{len(heldout)} flagged (GL {ceiling.gl.value:.2f}): what an audit flags in data nobody copied")
first = audits[next(iter(audits))]
show = first.flagged[:10]
fig = image_grid({"flagged sample": first.samples.by_seed(show), "training image": first.copies[:10]},
                 [f"seed {int(k)}" for k in show], scale=0.8, title=f"{next(iter(audits))}: flagged copies")

# %% [markdown]
# The model trained on 16 digits copies a training digit from almost every noise, and the audit
# shows which one, sample by sample (the grid shows the ten flagged samples most alike their
# training image, most alike first). The model trained on 1,500 digits, the same network, copies
# none under the same rule. What an audit flags in data that nobody copied is its floor: the
# held-out real digits, audited against the 1,500 training digits, are flagged at about the 1% the
# rule's threshold (their 99th percentile) puts there by construction. GL summarises an audit; the
# flagged list is its evidence. The rule
# flags pixel-level copies of 8x8 digits; in the `gpu` profile SSCD at 0.6 also flags near-copies
# that are shifted or recoloured, which is what a privacy audit of real images needs.
#
# ## Headline
#
# The numbers this chapter stands on (checked by the book's regression tests):

# %% tags=["nbval-check-output"]
mid = len(walk.agreement) // 2
print(rule)
print("interpolation: RP between models " + ", ".join(
    f"{walk.agreement[k].interval()} at "
    f"t={float(walk.t[k]):.2f}" for k in (0, mid, len(walk.agreement) - 1)))
print("  UNet pairs only: " + ", ".join(f"{walk_unets[k].interval()} at t={float(walk.t[k]):.2f}"
                                     for k in (0, mid, len(walk_unets) - 1)))
print(f"same digit from the same noise {agree['same noise']:.2f}, from different noise {agree['other noise']:.2f}")
print(f"  UNet pairs only: same digit from the same noise {agree_unets['same noise']:.2f}, "
      f"from different noise {agree_unets['other noise']:.2f}")
print(f"proxy {cheap} -> {expensive}, class {proxy.target}: precision {p.interval()} "
      f"vs {proxy.base_rate:.2f} at random")
print(free.summary("Gaussian denoiser", expensive, cost=False))  # timings stay out of the checked headline
for name, a in audits.items():
    print(f"audit {name}: {len(a.flagged)} of {len(a.samples)} flagged, GL {a.gl.value:.2f}")
print(f"audit held-out real digits: {len(ceiling.flagged)} of {len(heldout)} flagged, GL {ceiling.gl.value:.2f}")

# %% [markdown]
# ## Summary
#
# - The explorer samples every model from the noise you choose; on the static page, the gallery
#   shows the same thing for the first seeds.
# - Along a spherical path between two noises, each model's images change gradually and the
#   models keep agreeing as they do at the endpoints: the shared noise-to-image map is continuous.
# - The same noise fixes the digit far more often than the same image: models that disagree on
#   strokes still agree on what to draw.
# - A cheap model can choose seeds for an expensive one: its picks are the wanted class several
#   times more often than random seeds, at a fraction of the cost per image. The Gaussian denoiser,
#   which costs nothing to train, chooses less precisely but, at this scale, more cheaply.
# - The same-image rule doubles as a replication audit: it lists a memorizing model's copies with
#   the training images they copy, and finds none for the same network trained on enough data.
#
# ## References
#
# Cited here: {cite:p}`zhang2024emergence`; full entries are in the bibliography on the
# {doc}`landing page <index>`.
