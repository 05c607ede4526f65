"""Experiment drivers shared by chapters: each is a few package calls with a tidy result.

They exist so chapters narrate instead of looping: the loops over models, samplers and step counts
live here, tested, and every returned number carries its measurement statement.
"""

from __future__ import annotations

import functools

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from .metrics import (Descriptor, QualityClassifier, RPMatrix, SameImageRule, Score, SeedSpread, bootstrap_ci,
                      get_descriptor, gl_score, paired_similarity, rp_score, same_image_rule, seed_spread,
                      within_label_similarity)
from .sampling import (CallRecorder, Samples, _resolve_device, generate, karras_sigmas, network_calls, record_calls,
                       run_sampler, sample_euler, seed_noise)

__all__ = ["book_rule", "quality_classifier", "gpu_time_estimate", "chapter_time_estimate", "SIDE_STUDIES", "SSCD_FLOPS", "PAPER_FIGURE2", "sample_models", "SamplerStudy", "sampler_study", "stochastic_control", "SweepResult", "load_sweep",
           "regime_sweep", "classify_regimes", "ReferenceStudy", "reference_study", "trajectory_gap",
           "InverseStudy", "inverse_study", "dps_sensitivity", "GuidanceStudy", "guidance_study",
           "PatchCalibration", "calibrate_patch_sizes", "closest_denoiser", "choose_smoothing", "Leaderboard",
           "leaderboard",
           "TrainingTimeStudy", "training_time_study", "gl_crossing"]


def book_rule(dataset: str, descriptor: str | Descriptor = "pixel", profile: str = "cpu") -> SameImageRule:
    """The book's one same-image rule for ``dataset`` and ``descriptor``: every chapter's RP and GL use it.

    SSCD keeps the paper's 0.6. The pixel descriptor is calibrated on the dataset's reference split
    (:func:`reprodiff.configs.reference_split`: the largest training set of the book's sweep and its
    held-out images; ``profile`` picks the sweep) at the book's quantile,
    :data:`reprodiff.configs.SAME_IMAGE_QUANTILE`.
    """
    from .configs import SAME_IMAGE_QUANTILE, reference_split
    from .training import training_data

    desc = get_descriptor(descriptor)
    if getattr(desc, "fixed_threshold", None) is not None:  # nothing to load
        return same_image_rule(torch.zeros(0), torch.zeros(0), desc, dataset=dataset)
    train, held = training_data(reference_split(dataset, profile))
    return same_image_rule(train.images, held.images, desc, SAME_IMAGE_QUANTILE, dataset=dataset)


def quality_classifier(dataset: str, profile: str = "cpu") -> tuple[QualityClassifier, float, float]:
    """A :class:`~reprodiff.metrics.QualityClassifier` fitted on ``dataset``'s reference training set
    (:func:`reprodiff.configs.reference_split` under ``profile``).

    Returns ``(classifier, accuracy, confidence)`` where the last two are measured on the held-out
    images: the real-data ceiling of the confidence a set of samples can reach. At most 5,000
    training images are used (all of the digits; a pixel MLP is a weak judge of CIFAR-10, which its
    printed accuracy makes plain).
    """
    from .configs import reference_split
    from .training import training_data

    train, held = training_data(reference_split(dataset, profile))
    train = train.select(torch.arange(min(len(train), 5000)))  # enough for a rating; CIFAR-10 would take long
    clf = QualityClassifier(train.images, train.labels)
    return clf, clf.accuracy(held.images, held.labels), clf.confidence(held.images)


def sample_models(models: Mapping[str, torch.nn.Module], seeds: Sequence[int] | range, shape: Sequence[int], *,
                  sampler: str = "heun", steps: int = 18, batch_size: int = 256, progress: bool = False,
                  **kwargs) -> list[Samples]:
    """Sample every model from the same seeds with the same sampler; one :class:`Samples` per model."""
    return [generate(m, seeds, shape, sampler=sampler, steps=steps, name=name, batch_size=batch_size,
                     progress=progress, **kwargs) for name, m in models.items()]


@dataclass
class SamplerStudy:
    """RP of one model's samples under several samplers and step counts against a fine reference."""

    rows: list[dict]
    reference: Samples
    threshold: float
    threshold_rule: str

    def curve(self, sampler: str) -> tuple[list[int], list[float], list[float], list[float]]:
        """``(network_calls, rp, lower, upper)`` for one sampler, by increasing step count."""
        r = [row for row in self.rows if row["sampler"] == sampler]
        return ([x["nfe"] for x in r], [x["rp"] for x in r], [x["lower"] for x in r], [x["upper"] for x in r])

    def table(self) -> str:
        """Rows: sampler; columns: steps; cells: RP / median similarity to the reference."""
        steps = sorted({r["steps"] for r in self.rows})
        lines = ["sampler     " + "".join(f"{s:>12d}" for s in steps) + "   (steps; cell = RP / median similarity)"]
        for sampler in dict.fromkeys(r["sampler"] for r in self.rows):
            cells = {r["steps"]: r for r in self.rows if r["sampler"] == sampler}
            lines.append(f"{sampler:10s}  " + "".join(f"{cells[s]['rp']:5.2f} / {cells[s]['median']:.3f}" if s in cells
                                                      else " " * 12 for s in steps))
        return "\n".join(lines)

    def min_nfe(self, sampler: str, level: float) -> int | None:
        """Fewest network calls at which ``sampler`` reaches RP >= ``level`` against the reference."""
        hits = [row["nfe"] for row in self.rows if row["sampler"] == sampler and row["rp"] >= level]
        return min(hits) if hits else None


def sampler_study(model: torch.nn.Module, seeds: Sequence[int] | range, shape: Sequence[int], *,
                  samplers: Sequence[str], step_counts: Sequence[int], threshold: float, threshold_rule: str,
                  descriptor: str | Descriptor = "pixel", reference_steps: int = 200,
                  batch_size: int = 256) -> SamplerStudy:
    """How few steps keep a sampler reproducing the ODE's own answer?

    The reference is Heun with ``reference_steps`` steps (an accurate ODE solution); each sampler at
    each step count is scored against it with the given threshold.
    """
    ref = generate(model, seeds, shape, sampler="heun", steps=reference_steps, name=f"heun-{reference_steps}",
                   batch_size=batch_size)
    rows = []
    for sampler in samplers:
        for steps in step_counts:
            s = generate(model, seeds, shape, sampler=sampler, steps=steps, name=f"{sampler}-{steps}",
                         batch_size=batch_size)
            score = rp_score(s, ref, descriptor, threshold=threshold, threshold_rule=threshold_rule)
            rows.append(dict(sampler=sampler, steps=steps, nfe=network_calls(sampler, steps), rp=score.value,
                             lower=score.ci[0], upper=score.ci[1], median=float(score.similarities.median())))
    return SamplerStudy(rows, ref, threshold, threshold_rule)


def stochastic_control(model_a: torch.nn.Module, model_b: torch.nn.Module, seeds: Sequence[int] | range,
                       shape: Sequence[int], *, threshold: float, threshold_rule: str, steps: int = 18,
                       descriptor: str | Descriptor = "pixel", batch_size: int = 256,
                       names: tuple[str, str] = ("A", "B")) -> tuple[Score, Score, list[Samples]]:
    """Same initial noise, but a stochastic sampler that injects fresh noise at every step.

    Returns ``(rp between the two models, rp of model A with itself under two noise streams,
    [A stream 1, A stream 2, B stream 2])``. Each model draws its own injected noise, as it would
    in practice; the initial noise is shared exactly as in the deterministic experiments.
    """
    kw = dict(sampler="euler-ancestral", steps=steps, batch_size=batch_size)
    a1 = generate(model_a, seeds, shape, step_noise_stream=1, name=f"{names[0]} (injected noise 1)", **kw)
    a2 = generate(model_a, seeds, shape, step_noise_stream=2, name=f"{names[0]} (injected noise 2)", **kw)
    b2 = generate(model_b, seeds, shape, step_noise_stream=3, name=f"{names[1]} (injected noise 3)", **kw)
    between = rp_score(a2, b2, descriptor, threshold=threshold, threshold_rule=threshold_rule)
    within = rp_score(a1, a2, descriptor, threshold=threshold, threshold_rule=threshold_rule)
    return between, within, [a1, a2, b2]


# ----------------------------------------------------------------------------- regimes (chapter 3)


def classify_regimes(n_train: Sequence[int], gl: Mapping[str, Sequence[float]], memorization_gl: float,
                     generalization_gl: float) -> list[str]:
    """Label each N from the measured GL of every model at that N.

    ``"memorization"`` when every model's GL <= ``memorization_gl``, ``"generalization"`` when every
    model's GL >= ``generalization_gl``, ``"transition"`` otherwise.
    """
    if any(len(v) != len(n_train) for v in gl.values()):
        raise ValueError(f"every GL curve needs one value per N ({len(n_train)})")
    labels = []
    for values in zip(*gl.values()):  # every model's GL at one N
        if all(v <= memorization_gl for v in values):
            labels.append("memorization")
        elif all(v >= generalization_gl for v in values):
            labels.append("generalization")
        else:
            labels.append("transition")
    return labels


def regime_spans(n_train: Sequence[int], labels: Sequence[str]) -> list[tuple[float, float, str]]:
    """Shaded ``(x0, x1, label)`` spans on a log axis: each N owns the interval to the geometric
    midpoints with its neighbours; consecutive N with one label merge."""
    n = list(n_train)
    edges = [n[0] / math.sqrt(n[1] / n[0])] if len(n) > 1 else [n[0] / 1.5]
    edges += [math.sqrt(a * b) for a, b in zip(n, n[1:])]
    edges.append(n[-1] * math.sqrt(n[-1] / n[-2]) if len(n) > 1 else n[0] * 1.5)
    spans: list[tuple[float, float, str]] = []
    for i, label in enumerate(labels):
        if spans and spans[-1][2] == label:
            spans[-1] = (spans[-1][0], edges[i + 1], label)
        else:
            spans.append((edges[i], edges[i + 1], label))
    return spans


def load_sweep(sweep, progress: bool = True, replicates: bool = False):
    """The models of a :class:`reprodiff.configs.SweepConfig` (missing ones trained in parallel),
    its nested training sets ``{N: images}`` and its held-out images; with ``replicates=True`` also
    the extra training seeds, ``{(size, N, seed): model}``, as a fourth element."""
    from .training import load_or_train_many, training_data

    if not sweep.base.holdout:  # before any training
        raise ValueError(f"sweep {sweep.name!r} holds nothing out (holdout=0): GL and RP need held-out images")
    configs = sweep.model_configs()
    extra = sweep.replicate_configs() if replicates else {}
    trained = load_or_train_many([*configs.values(), *extra.values()], progress=progress)
    models = dict(zip(configs, trained[:len(configs)]))
    extra_models = dict(zip(extra, trained[len(configs):]))
    first = next(iter(sweep.sizes))
    train_sets = {n: training_data(configs[(first, n)])[0].images for n in sweep.n_train}
    heldout = training_data(configs[(first, sweep.n_train[0])])[1]
    if replicates:
        return models, train_sets, heldout.images, extra_models
    return models, train_sets, heldout.images


def gl_crossing(n_train: Sequence[int], gl: Sequence[float], level: float = 0.5) -> float | None:
    """N at which GL values along ``n_train`` first rise through ``level`` (interpolated in log N), or None."""
    for n0, v0, n1, v1 in zip(n_train, gl, n_train[1:], gl[1:]):
        if v0 < level <= v1:
            t = (level - v0) / (v1 - v0)
            return 2 ** (math.log2(n0) + t * (math.log2(n1) - math.log2(n0)))
    return None


@dataclass
class SweepResult:
    """Everything measured along one sweep over training-set sizes, under one same-image rule.

    ``gl[size]`` and ``rp[pair]`` hold one :class:`Score` per N (in ``n_train`` order);
    ``gl_ceiling`` the GL of the *held-out real images* per N (what a model that draws new real
    images would score); ``quality[size]`` the classifier confidence of each model's samples per N
    (``quality_ceiling``: of held-out real images); ``rp_seeds[N]`` the RP of every cross-size pair
    of training seeds at the N that have replicates; ``samples[(size, N)]`` the generated images;
    ``nearest[(size, N)]`` each sample's nearest training image (index into ``train_sets[N]``).
    """

    name: str
    n_train: list[int]
    sizes: list[str]
    samples: dict[tuple[str, int], Samples]
    train_sets: dict[int, torch.Tensor]
    heldout: torch.Tensor
    gl: dict[str, list[Score]]
    rp: dict[str, list[Score]]
    nearest: dict[tuple[str, int], torch.Tensor]
    rule: SameImageRule
    gl_ceiling: list[Score] = field(default_factory=list)
    quality: dict[str, list[float]] = field(default_factory=dict)
    quality_ceiling: float | None = None
    rp_seeds: dict[int, SeedSpread] = field(default_factory=dict)
    per_pair_null: dict[int, float] = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        return self.rule.threshold

    @property
    def threshold_rule(self) -> str:
        return self.rule.rule

    def curves(self, kind: str) -> dict[str, tuple[list[float], list[float], list[float]]]:
        """``{label: (values, lower, upper)}`` of ``"gl"`` or ``"rp"``, for :func:`reprodiff.plots.curve_with_band`."""
        scores = {"gl": self.gl, "rp": self.rp}[kind]
        return {k: ([s.value for s in v], [s.ci[0] for s in v], [s.ci[1] for s in v]) for k, v in scores.items()}

    def regimes(self, memorization_gl: float, generalization_gl: float) -> list[str]:
        return classify_regimes(self.n_train, {k: [s.value for s in v] for k, v in self.gl.items()},
                                memorization_gl, generalization_gl)

    def spans(self, memorization_gl: float, generalization_gl: float) -> list[tuple[float, float, str]]:
        return regime_spans(self.n_train, self.regimes(memorization_gl, generalization_gl))

    def rp_minimum(self, pair: str) -> int:
        """Index into ``n_train`` of the lowest RP of ``pair`` (the first, on ties)."""
        scores = self.rp[pair]
        return min(range(len(scores)), key=lambda k: scores[k].value)

    def dip(self, pair: str) -> str:
        """Whether RP dips in the transition: is the minimum's interval below both ends' intervals?"""
        rp, i = self.rp[pair], self.rp_minimum(pair)
        first, last, low = rp[0], rp[-1], rp[i]
        below = low.ci[1] < first.ci[0] and low.ci[1] < last.ci[0]
        return (f"RP {pair}: {first.value:.2f} at N={self.n_train[0]}, minimum {low.value:.2f} "
                f"[{low.ci[0]:.2f}, {low.ci[1]:.2f}] at N={self.n_train[i]}, {last.value:.2f} at N={self.n_train[-1]}: "
                + ("a dip (its interval lies below both ends')" if below and 0 < i < len(rp) - 1
                   else "no dip resolved (the minimum's interval overlaps an end's, or sits at an end)"))

    def gl_crossing(self, size: str, level: float = 0.5) -> float | None:
        """N at which ``size``'s GL first rises through ``level`` (interpolated in log N), or None."""
        return gl_crossing(self.n_train, [s.value for s in self.gl[size]], level)

    def regime_edges(self, memorization_gl: float, generalization_gl: float) -> tuple[int | None, int | None]:
        """(largest N of the memorization regime, smallest N of the generalization regime); None if absent."""
        labels = self.regimes(memorization_gl, generalization_gl)
        mem = [n for n, lab in zip(self.n_train, labels) if lab == "memorization"]
        gen = [n for n, lab in zip(self.n_train, labels) if lab == "generalization"]
        return (max(mem) if mem else None), (min(gen) if gen else None)

    def table(self, memorization_gl: float, generalization_gl: float) -> str:
        """One row per N: GL per size and of held-out real images (the ceiling), RP per pair (95%
        Wilson intervals), sample quality per size when measured, and the regime."""
        regimes = self.regimes(memorization_gl, generalization_gl)
        short = [k.split(" ")[0] for k in self.gl]
        cols = [f"GL {k}" for k in short] + (["GL real"] if self.gl_ceiling else []) + [f"RP {k}" for k in self.rp]
        qcols = [f"conf {k}" for k in short] if self.quality else []
        head = f"{'N':>6s}  " + "".join(f"{c:>18s}" for c in cols) + "".join(f"{c:>10s}" for c in qcols) + "   regime"
        lines = [head]
        for i, n in enumerate(self.n_train):
            cells = [s[i] for s in self.gl.values()] + ([self.gl_ceiling[i]] if self.gl_ceiling else []) + \
                [s[i] for s in self.rp.values()]
            row = "".join(f"{c.value:6.2f} [{c.ci[0]:.2f},{c.ci[1]:.2f}]" for c in cells)
            q = "".join(f"{v[i]:10.2f}" for v in self.quality.values())
            lines.append(f"{n:6d}  {row}{q}   {regimes[i]}")
        if self.quality_ceiling is not None:
            lines.append(f"(conf: mean top-class probability of a digit classifier; held-out real images: "
                         f"{self.quality_ceiling:.2f})")
        return "\n".join(lines)


#: Zhang et al. 2024, Figure 2 (CIFAR-10, SSCD > 0.6), read off the official figure; rows match
#: :func:`paper_row`
PAPER_FIGURE2 = {
    "memorization (GL ~ 0) up to": "N = 2^10 for every width",
    "generalization (GL >= 0.97) from": "N = 2^14",
    "larger model memorizes longer": "GL at 2^12: 0.86 / 0.28 / 0.05 (64 / 128 / 256 ch.)",
    "RP at the smallest N": "~0.6-0.7 (2^6)",
    "RP minimum": "0.02-0.18 near 2^13",
    "RP at the largest N": "0.6-0.85 (2^15)",
}


def paper_row(sweep: "SweepResult", memorization_gl: float, generalization_gl: float, at: int | None = None) -> list[str]:
    """This sweep's answers to the rows of :data:`PAPER_FIGURE2` (GL of each size at ``at``,
    default: the N where the sizes' GL differ most)."""
    mem, gen = sweep.regime_edges(memorization_gl, generalization_gl)
    if at is None:
        gaps = [max(v[i].value for v in sweep.gl.values()) - min(v[i].value for v in sweep.gl.values())
                for i in range(len(sweep.n_train))]
        at = sweep.n_train[max(range(len(gaps)), key=gaps.__getitem__)]
    i_at = sweep.n_train.index(at)
    gl_at = " / ".join(f"{v[i_at].value:.2f}" for v in sweep.gl.values())
    pair = next(iter(sweep.rp))
    rp, i = sweep.rp[pair], sweep.rp_minimum(pair)
    return [f"N = {mem}" if mem else "not reached", f"N = {gen}" if gen else "not reached",
            f"GL at {at}: {gl_at} (small / large)", f"{rp[0].value:.2f} (N={sweep.n_train[0]})",
            f"{rp[i].value:.2f} at N={sweep.n_train[i]}", f"{rp[-1].value:.2f} (N={sweep.n_train[-1]})"]


def gpu_time_estimate(sweep, shape: tuple[int, int, int], n_seeds: int, *, flops_per_s: float = 4e12,
                      launch_s: float = 10e-6, sampler_calls: int = 35, overhead_min: float = 2.0) -> tuple[float, list[str]]:
    """Estimated minutes to train and sample a :class:`reprodiff.configs.SweepConfig` on a GPU.

    Counts the FLOPs and operators of one training step of each model on the CPU
    (:func:`reprodiff.training.step_cost`) and converts them with two stated assumptions: a sustained
    ``flops_per_s`` (default 4 TFLOP/s, half a T4's float32 peak) and ``launch_s`` per operator when
    a model is too small to fill the GPU. Sampling: ``n_seeds`` x ``sampler_calls`` forward passes
    per model (a forward pass taken as a third of a training step). Returns ``(minutes, lines)``.
    """
    from .training import step_cost

    total, lines = 0.0, []
    configs = {**sweep.model_configs(), **sweep.replicate_configs()}
    for label in sweep.sizes:
        mine = [c for k, c in configs.items() if k[0] == label]
        flops, calls = step_cost(mine[0], shape)
        per_step = max(flops / flops_per_s, calls * launch_s)
        minutes = per_step * sum(c.steps for c in mine) / 60
        total += minutes
        lines.append(f"{label}: {flops / 1e9:.0f} GFLOP and {calls} operators per step at batch {mine[0].batch_size} "
                     f"-> ~{per_step * 1e3:.0f} ms/step, {minutes:.1f} min for {len(mine)} models x {mine[0].steps:,} steps")
    sample_flops = sum(step_cost(c, shape)[0] / 3 / c.batch_size for c in configs.values())
    sampling = sample_flops * sampler_calls * n_seeds / flops_per_s / 60
    lines.append(f"sampling {n_seeds:,} seeds x {sampler_calls} network calls for all {len(configs)} models: "
                 f"~{sampling:.1f} min")
    total += sampling + overhead_min
    lines.append(f"estimated total: ~{total:.0f} min (+{overhead_min:g} min for downloads and descriptor features)")
    return total, lines


#: FLOPs of one SSCD forward pass (a ResNet-50 at 320x320: ~8.2 GFLOP at 224 px, times (320/224)^2); an assumption
SSCD_FLOPS = 16.7e9

_SHAPES = {"cifar10": (3, 32, 32), "digits": (1, 8, 8), "molrg": (1, 8, 8), "mnist": (1, 28, 28),
           "fashion-mnist": (1, 28, 28)}


@functools.lru_cache(maxsize=None)
def _step_cost(backbone: str, objective: str, conditional: bool, batch_size: int, shape: tuple[int, int, int]):
    from .training import TrainConfig, step_cost

    return step_cost(TrainConfig(backbone=backbone, objective=objective, conditional=conditional,
                                 batch_size=batch_size), shape)


#: what one side study costs: ``(label, single-image network passes, images the descriptor embeds)``
SideStudy = tuple[str, float, int]


def _zoo_side(cfg, steps: int, calls: int, n_conditional: int) -> list[SideStudy]:
    from .sampling import network_calls

    grid = sum(network_calls(sampler, k) for sampler in cfg.samplers for k in cfg.step_counts)
    reference = network_calls("heun", cfg.reference_steps)
    cells = len(cfg.samplers) * len(cfg.step_counts) + 1
    return [("sampler study", cfg.n_seeds * (grid + reference), cfg.n_seeds * cells),
            ("stochastic control", 3 * cfg.n_seeds * cfg.steps, 3 * cfg.n_seeds)]


def _theory_side(cfg, steps: int, calls: int, n_conditional: int) -> list[SideStudy]:
    return [("trajectory gaps", 3 * cfg.trajectory_seeds * steps, 0)]  # three models, Euler: one call per step


def _agreement_side(cfg, steps: int, calls: int, n_conditional: int) -> list[SideStudy]:
    per_n = (cfg.calibration_seeds + cfg.n_seeds) * calls  # calibration samples, the other training seed
    per_n += cfg.calibration_seeds * steps * (1 + bool(cfg.equivariant_n))  # calibrate_patch_sizes' trajectories
    return [("leaderboards", len(cfg.leaderboard_n) * per_n, len(cfg.leaderboard_n) * 2 * cfg.n_seeds)]


def _conditional_side(cfg, steps: int, calls: int, n_conditional: int) -> list[SideStudy]:
    images = n_conditional * len(cfg.guidance_scales) * cfg.n_seeds
    return [("guidance scales", images * calls * 2, images)]  # a guided call: conditional and unconditional


def _inverse_side(cfg, steps: int, calls: int, n_conditional: int) -> list[SideStudy]:
    grid = sum(3 * k for k in cfg.step_counts) * len(cfg.zetas)  # a DPS step: forward and backward, 3 passes
    images = 2 * cfg.sensitivity_seeds * len(cfg.zetas) * len(cfg.step_counts)
    return [("DPS sensitivity", 2 * cfg.sensitivity_seeds * grid, images)]


def _explorer_side(cfg, steps: int, calls: int, n_conditional: int) -> list[SideStudy]:
    frames = cfg.interpolation_pairs * cfg.frames
    return [("interpolations", len(cfg.models) * frames * calls, len(cfg.models) * frames),
            ("proxy study", 3 * cfg.n_seeds * calls, 3 * cfg.n_seeds)]  # cheap all, expensive chosen and all


#: experiment -> the sampling its chapter does besides the main one, read off its config
#: (``fn(cfg, sampler steps, network calls per sample, conditional models)``). Closed-form denoisers
#: (D*, the local and Gaussian denoisers) run where their training images are and are not counted.
SIDE_STUDIES: dict[str, Callable[..., list[SideStudy]]] = {
    "architectures": _zoo_side, "theory": _theory_side, "agreement": _agreement_side,
    "conditional": _conditional_side, "inverse": _inverse_side, "explorer": _explorer_side,
}


def chapter_time_estimate(experiment: str, profile: str = "gpu", *, flops_per_s: float = 4e12, launch_s: float = 10e-6,
                          overhead_min: float = 2.0) -> tuple[float, list[str]]:
    """Estimated minutes for one chapter under ``profile`` on a GPU, run alone from an empty cache.

    Training: every model the chapter loads (:func:`reprodiff.configs.profile_models`), each step
    costed by :func:`reprodiff.training.step_cost` (counted FLOPs and operators) and converted with
    two assumptions: a sustained ``flops_per_s`` (default 4 TFLOP/s, half a T4's float32 peak) and
    ``launch_s`` per operator for a model too small to fill the GPU. Sampling: the chapter's main
    sampling (``n_seeds`` seeds, its sampler's network calls, a forward pass taken as a third of a
    training step; DPS, a forward and a backward pass per step on every task, as three) for every model,
    and its side studies (:data:`SIDE_STUDIES`: sampler sweeps, guidance scales, the DPS
    sensitivity grid, calibration and trajectories) at the chapter's mean cost per image. SSCD runs
    on the GPU (:func:`reprodiff.metrics.get_descriptor`): :data:`SSCD_FLOPS` per image for every
    sample, side-study sample and training set it is compared with, and the held-out images of a
    regime sweep.
    ``overhead_min`` covers downloads. Returns ``(minutes, lines)``.
    """
    from .configs import get_config, profile_models
    from .sampling import network_calls

    cfg = get_config(experiment, profile)
    models = {m.hash: m for name, m in profile_models(profile).items() if name.startswith(f"{experiment}: ")}
    reg = getattr(cfg, "regimes", cfg)
    n_seeds = cfg.n_seeds
    if experiment == "inverse":  # DPS: one DPM-Solver++(2M) step per call, with a gradient, on every task
        calls = 3 * getattr(cfg, "steps", 18) * len(cfg.tasks)
    else:
        steps = getattr(cfg, "sampling_steps", getattr(reg, "steps", 18))
        calls = network_calls(getattr(reg, "sampler", "heun"), steps)
    train_s = sample_s = per_image_s = 0.0
    for m in models.values():
        flops, ops = _step_cost(m.backbone, m.objective, m.conditional, m.batch_size, _SHAPES[m.dataset])
        train_s += max(flops / flops_per_s, ops * launch_s) * m.steps
        one = max(flops / 3 / m.batch_size / flops_per_s, ops / 3 * launch_s / 256)  # one image, one call
        sample_s += one * n_seeds * calls
        per_image_s += one / max(len(models), 1)
    n_conditional = sum(m.conditional for m in models.values())
    sides = SIDE_STUDIES[experiment](cfg, getattr(reg, "steps", 18), calls, n_conditional) \
        if experiment in SIDE_STUDIES else []
    side_s = sum(passes for _, passes, _ in sides) * per_image_s
    sscd = getattr(reg, "descriptor", "pixel") == "sscd"
    imaged = [m for m in models.values() if m.dataset != "molrg"]  # MoLRG is scored in pixel space
    train_sets = sorted({m.n_train or 0 for m in imaged})
    # the held-out images are GL's ceiling in the regime sweeps (chapters 3, 4 and 5)
    swept = hasattr(cfg, "regimes") or experiment == "regimes"
    holdout = max((m.holdout or 0 for m in imaged), default=0) if swept else 0
    embedded = n_seeds * len(imaged) + sum(train_sets) + holdout + sum(e for _, _, e in sides) if sscd else 0
    sscd_s = SSCD_FLOPS * embedded / flops_per_s
    total = (train_s + sample_s + side_s + sscd_s) / 60 + overhead_min
    side_text = ", ".join(f"{label} ~{passes * per_image_s / 60:.1f} min" for label, passes, _ in sides) or "none"
    lines = [f"{experiment} ({profile}): {len(models)} models, training ~{train_s / 60:.1f} min; sampling "
             f"{n_seeds:,} seeds x {calls} network passes ~{sample_s / 60:.1f} min; side studies: {side_text}; SSCD "
             f"features of {embedded:,} images on the GPU ~{sscd_s / 60:.1f} min; +{overhead_min:g} min downloads: "
             f"~{total:.0f} min"]
    return total, lines


def regime_sweep(models: Mapping[tuple[str, int], torch.nn.Module], train_sets: Mapping[int, torch.Tensor],
                 heldout: torch.Tensor, seeds: Sequence[int] | range, rule: SameImageRule, *, name: str = "",
                 sampler: str = "heun", steps: int = 18, batch_size: int = 256,
                 replicates: Mapping[tuple[str, int, int], torch.nn.Module] | None = None,
                 classifier: QualityClassifier | None = None, progress: bool = True) -> SweepResult:
    """Sample every model of a sweep from the same seeds, then score GL per model and RP per pair.

    Args:
        models: ``{(size label, N): model}``; every size must have a model at every N.
        train_sets: ``{N: (N, C, H, W) training images}`` (nested subsets).
        heldout: real images kept out of every training set; their GL at each N is the ceiling.
        rule: the same-image rule (:func:`book_rule`): RP's "reproduced" and GL's "copy" both.
        replicates: ``{(size label, N, seed): model}`` extra training seeds; at each such N, RP is
            also measured for every cross-size pair of seeds (``rp_seeds``).
        classifier: rates sample quality (``quality``), e.g. from :func:`quality_classifier`.
    """
    from tqdm.auto import tqdm

    desc = get_descriptor(rule.descriptor)
    sizes = list(dict.fromkeys(k[0] for k in models))
    n_train = sorted({k[1] for k in models})
    missing = [(s, n) for s in sizes for n in n_train if (s, n) not in models]
    if missing:
        raise ValueError(f"the sweep is not a full grid: no model for {missing}")
    replicates = dict(replicates or {})
    stray = [k for k in replicates if k[0] not in sizes or k[1] not in n_train]
    if stray:
        raise ValueError(f"replicates {stray} are not points of the sweep")
    shape = tuple(heldout.shape[1:])
    samples, nearest, extra = {}, {}, {}
    gl: dict[str, list[Score]] = {s: [] for s in sizes}
    todo = [(k, models[k]) for k in models] + [(k, m) for k, m in replicates.items()]
    for key, model in tqdm(todo, desc=f"sampling {len(todo)} models", disable=not progress):
        label = f"{key[0]} N={key[1]}" + (f" seed {key[2]}" if len(key) == 3 else "")
        s = generate(model, seeds, shape, sampler=sampler, steps=steps, batch_size=batch_size, name=label)
        (samples if len(key) == 2 else extra)[key] = s
    gl_ceiling = []
    real = Samples(heldout, torch.arange(len(heldout)), name="held-out real images")  # GL's ceiling
    for n in n_train:
        train_features = desc(train_sets[n])  # once per N, shared by every size
        for size in sizes:
            score = gl_score(samples[(size, n)], train_sets[n], desc, threshold=rule, train_features=train_features)
            gl[size].append(score)
            nearest[(size, n)] = score.nearest
        gl_ceiling.append(gl_score(real, train_sets[n], desc, threshold=rule, train_features=train_features))
    rp: dict[str, list[Score]] = {}
    per_pair_null = {}
    for i, a in enumerate(sizes):
        for b in sizes[i + 1:]:
            label = f"{a.split(' ')[0]} vs {b.split(' ')[0]}"
            rp[label] = [rp_score(samples[(a, n)], samples[(b, n)], desc, threshold=rule) for n in n_train]
            if getattr(desc, "fixed_threshold", None) is None and not per_pair_null:
                # what per-pair calibration would have chosen at each N (shown in chapter 3)
                per_pair_null = {n: rp_score(samples[(a, n)], samples[(b, n)], desc).threshold for n in n_train}
    rp_seeds = {}
    for n in sorted({k[1] for k in replicates}):
        runs = {size: [samples[(size, n)]] + [s for k, s in extra.items() if k[0] == size and k[1] == n]
                for size in sizes}
        pairs = [rp_score(x, y, desc, threshold=rule) for i, a in enumerate(sizes) for b in sizes[i + 1:]
                 for x in runs[a] for y in runs[b]]
        rp_seeds[n] = seed_spread(pairs)
    quality, quality_ceiling = {}, None
    if classifier is not None:
        quality = {size: [classifier.confidence(samples[(size, n)].images) for n in n_train] for size in sizes}
        quality_ceiling = classifier.confidence(heldout)
    return SweepResult(name, n_train, sizes, samples, dict(train_sets), heldout, gl, rp, nearest, rule, gl_ceiling,
                       quality, quality_ceiling, rp_seeds, per_pair_null)


# ----------------------------------------------------------------------------- theory (chapter 4)


@dataclass
class ReferenceStudy:
    """RP of trained models against analytic denoisers sampled from the same seeds.

    ``rp[reference][size]`` is one :class:`Score` per N; ``samples[(reference, N)]`` the analytic
    denoiser's samples (``reference`` e.g. ``"D*"``, ``"Gaussian"``, ``"true"``).
    """

    n_train: list[int]
    rp: dict[str, dict[str, list[Score]]]
    samples: dict[tuple[str, int], Samples]

    def curves(self, reference: str) -> dict[str, tuple[list[float], list[float], list[float]]]:
        return {size: ([s.value for s in v], [s.ci[0] for s in v], [s.ci[1] for s in v])
                for size, v in self.rp[reference].items()}

    def table(self) -> str:
        refs = list(self.rp)
        sizes = list(next(iter(self.rp.values())))
        cols = [f"{r} | {s.split(' ')[0]}" for r in refs for s in sizes]
        lines = [f"{'N':>6s}  " + "".join(f"{c:>20s}" for c in cols)]
        for i, n in enumerate(self.n_train):
            cells = [self.rp[r][s][i] for r in refs for s in sizes]
            lines.append(f"{n:6d}  " + "".join(f"{c.value:8.2f} [{c.ci[0]:.2f},{c.ci[1]:.2f}]" for c in cells))
        return "\n".join(lines)


def reference_study(sweep: SweepResult, references: Mapping[str, Mapping[int, torch.nn.Module]], *,
                    sampler: str = "heun", steps: int = 18, descriptor: str | Descriptor = "pixel",
                    batch_size: int = 256) -> ReferenceStudy:
    """Sample each analytic denoiser (one per N, e.g. ``{"D*": {N: OptimalDenoiser(...)}}``) from the
    sweep's seeds and score every trained model against it with the sweep's RP threshold."""
    any_samples = next(iter(sweep.samples.values()))
    seeds, shape = any_samples.seeds, tuple(any_samples.images.shape[1:])
    rp: dict[str, dict[str, list[Score]]] = {}
    samples: dict[tuple[str, int], Samples] = {}
    for ref, per_n in references.items():
        rp[ref] = {size: [] for size in sweep.sizes}
        by_denoiser: dict[int, Samples] = {}  # one denoiser shared by every N (e.g. the true one) samples once
        for n in sweep.n_train:
            den = per_n[n]
            if id(den) not in by_denoiser:
                by_denoiser[id(den)] = generate(den, seeds, shape, sampler=sampler, steps=steps,
                                                batch_size=batch_size, name=f"{ref} N={n}")
            samples[(ref, n)] = s = by_denoiser[id(den)]
            for size in sweep.sizes:
                rp[ref][size].append(rp_score(sweep.samples[(size, n)], s, descriptor, threshold=sweep.rule))
    return ReferenceStudy(sweep.n_train, rp, samples)


def trajectory_gap(model: torch.nn.Module, references: Mapping[str, torch.nn.Module], seeds: Sequence[int] | range,
                   shape: Sequence[int], *, steps: int = 18) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Where along the sampling trajectory does a trained model depart from an analytic denoiser?

    Runs the Euler sampler with ``model`` and, at every noise level sigma of its own trajectory,
    compares the model's denoised estimate with each reference's estimate at the *same* point
    ``x_sigma``. Returns ``(sigmas, {reference: (n_sigmas, n_seeds) RMS pixel distance})``.
    """
    rec = _record_trajectory(model, seeds, shape, steps)
    with torch.no_grad():
        gaps: dict[str, list[torch.Tensor]] = {r: [] for r in references}
        sigmas = []
        for x, s, out in rec.calls:
            mine = out.double().cpu()  # the model's estimate, as the sampler used it
            for r, den in references.items():
                other = den(x.to(_resolve_device(den)).float(), s).double().cpu()  # each denoiser where it lives
                gaps[r].append(((mine - other) ** 2).flatten(1).mean(1).sqrt())
            sigmas.append(s)
    return sigmas, {r: torch.stack(v) for r, v in gaps.items()}


def _record_trajectory(model: torch.nn.Module, seeds: Sequence[int] | range, shape: Sequence[int],
                       steps: int) -> CallRecorder:
    """``model``'s Euler trajectory from ``seeds`` in one batch, on the model's device: every
    ``(x, sigma, x0_hat)`` it evaluated, in ``.calls`` (tensors on that device)."""
    seeds = torch.tensor(list(seeds), dtype=torch.int64)
    rec = record_calls(model)
    with torch.no_grad():
        run_sampler(sample_euler, rec, seed_noise(seeds, shape), karras_sigmas(steps), n=len(seeds),
                    batch_size=max(len(seeds), 1), seeds=seeds,
                    what=f"the Euler-{steps} trajectory of {type(model).__name__}")
    return rec


# ----------------------------------------------------------------------------- why models agree (chapter 5)


@dataclass
class PatchCalibration:
    """The patch size per noise level that best matches a network (:func:`calibrate_patch_sizes`).

    ``schedule`` is ``((sigma, size), ...)`` for :class:`reprodiff.denoisers.LocalDenoiser`;
    ``errors[sigma][size]`` the mean squared difference from the network's denoised estimate.
    """

    schedule: tuple[tuple[float, int], ...]
    errors: dict[float, dict[int, float]]

    def table(self) -> str:
        sizes = list(next(iter(self.errors.values())))
        lines = [f"{'sigma':>8s}  " + "".join(f"{f'{k}x{k}':>8s}" for k in sizes) + "   best"]
        for sigma, errs in self.errors.items():
            best = min(errs, key=errs.get)
            lines.append(f"{sigma:8.3f}  " + "".join(f"{errs[k]:8.4f}" for k in sizes) + f"   {best}x{best}")
        return "\n".join(lines)


def calibrate_patch_sizes(model: torch.nn.Module, train_images: torch.Tensor, seeds: Sequence[int] | range,
                          shape: Sequence[int], sizes: Sequence[int], *, equivariant: bool = True,
                          steps: int = 18) -> PatchCalibration:
    """At each noise level of the sampler, the patch size whose local denoiser is closest to ``model``.

    Runs the Euler sampler with ``model`` from ``seeds`` (use seeds that the comparison will not) and,
    at every point ``x_sigma`` of its own trajectory, compares the network's denoised estimate with
    :class:`reprodiff.denoisers.LocalDenoiser`'s for every size in ``sizes`` (mean squared pixel
    difference). The best size per sigma is the schedule: Kamb & Ganguli's calibration of the
    effective receptive field of a network, here fitted to this network on held-out seeds.
    """
    from .denoisers import LocalDenoiser

    if not sizes:
        raise ValueError("calibrate_patch_sizes needs at least one candidate patch size")
    rec = _record_trajectory(model, seeds, shape, steps)
    with torch.no_grad():
        locals_ = {k: LocalDenoiser(train_images, k, equivariant=equivariant) for k in sizes}
        errors = {s: {k: float(((den(x.to(train_images.device), s) - out.to(train_images.device)).double() ** 2).mean())
                      for k, den in locals_.items()}
                  for x, s, out in rec.calls}
    schedule = tuple((s, min(e, key=e.get)) for s, e in errors.items())
    return PatchCalibration(schedule, errors)


def closest_denoiser(reference: Samples, candidates: Mapping[Any, Any], *, sampler: str = "heun", steps: int = 18,
                     descriptor: str | Descriptor = "pixel", batch_size: int = 256) -> tuple[Any, dict[Any, float]]:
    """The candidate denoiser whose samples from ``reference``'s seeds are closest to ``reference`` (a
    network's samples, on seeds the comparison will not use), by median paired similarity: returns
    its key and every candidate's median. Ties go to the first candidate."""
    shape, seeds = tuple(reference.images.shape[1:]), reference.seeds
    medians = {}
    for key, den in candidates.items():
        out = generate(den, seeds, shape, sampler=sampler, steps=steps, batch_size=batch_size)
        medians[key] = float(paired_similarity(reference, out, descriptor).median())
    return max(medians, key=medians.get), medians


def choose_smoothing(reference: Samples, train_images: torch.Tensor, smoothings: Sequence[float], *,
                     sampler: str = "heun", steps: int = 18, descriptor: str | Descriptor = "pixel",
                     batch_size: int = 256) -> tuple[float, dict[float, float]]:
    """The smoothing of :class:`reprodiff.denoisers.SmoothedOptimalDenoiser` whose samples are closest
    to ``reference`` (:func:`closest_denoiser`): returns the best value (0, plain D*, is always a
    candidate) and the median similarity of each."""
    from .denoisers import SmoothedOptimalDenoiser

    candidates = {s: SmoothedOptimalDenoiser(train_images, s) for s in sorted({0.0, *map(float, smoothings)})}
    return closest_denoiser(reference, candidates, sampler=sampler, steps=steps, descriptor=descriptor,
                            batch_size=batch_size)


@dataclass
class Leaderboard:
    """Closed-form denoisers ranked by how close their samples are to a network's from the same noise.

    ``similarity[name]`` holds the paired similarity (book descriptor) of each seed's sample with the
    network's; ``r2[name]`` is the fraction of the network's pixel variance (around its mean sample)
    the candidate's samples explain, ``1 - sum ||a - b||^2 / sum ||a - mean(a)||^2``. ``ceilings``
    names rows that are not closed forms (another trained network): shown, never ranked.
    """

    n: int
    similarity: dict[str, torch.Tensor]
    r2: dict[str, float]
    ceilings: tuple[str, ...] = ()

    def medians(self) -> dict[str, tuple[float, float, float]]:
        """``{name: (median, low, high)}``: each row's median similarity with a bootstrap interval."""
        return {k: (float(v.median()), *bootstrap_ci(v, statistic="median")) for k, v in self.similarity.items()}

    def ranking(self) -> list[str]:
        """Closed forms by median similarity, best first."""
        med = {k: float(v.median()) for k, v in self.similarity.items() if k not in self.ceilings}
        return sorted(med, key=med.get, reverse=True)

    def winner(self) -> tuple[str, float]:
        """The best closed form and its margin over the runner-up (difference of medians)."""
        rank = self.ranking()
        med = {k: float(self.similarity[k].median()) for k in rank}
        return rank[0], (med[rank[0]] - med[rank[1]]) if len(rank) > 1 else math.nan

    def table(self) -> str:
        med = self.medians()
        order = [*self.ceilings, *self.ranking()]
        lines = [f"N = {self.n}: similarity to the network's sample from the same noise",
                 f"  {'':34s}{'median [95% CI]':>22s}{'r^2':>8s}"]
        for k in order:
            m, lo, hi = med[k]
            lines.append(f"  {k:34s}{f'{m:.3f} [{lo:.3f}, {hi:.3f}]':>22s}{self.r2[k]:8.2f}")
        return "\n".join(lines)


def leaderboard(network: Samples, candidates: Mapping[str, Samples], n: int, *,
                descriptor: str | Descriptor = "pixel", ceilings: Sequence[str] = ()) -> Leaderboard:
    """Score every candidate's samples against ``network``'s, seed by seed (see :class:`Leaderboard`)."""
    a = network.images.double().flatten(1)
    total = float(((a - a.mean(0)) ** 2).sum())
    sims, r2 = {}, {}
    for name, cand in candidates.items():
        sims[name] = paired_similarity(network, cand, descriptor)
        b = cand.by_seed(network.seeds).double().flatten(1)
        r2[name] = 1 - float(((a - b) ** 2).sum()) / total
    return Leaderboard(n, sims, r2, tuple(ceilings))


@dataclass
class TrainingTimeStudy:
    """GL and RP of one sweep's models along training, from the snapshots they saved.

    ``gl[N]`` and ``rp_optimal[N]`` (the model against D* of its training set) hold one
    :class:`Score` per step of ``steps``; ``rp_seeds[N]`` the RP of two training seeds at the same
    step, where the sweep has a second seed with snapshots; ``samples[(N, step)]`` the first seed's
    samples.
    """

    steps: list[int]
    n_train: list[int]
    gl: dict[int, list[Score]]
    rp_optimal: dict[int, list[Score]]
    rp_seeds: dict[int, list[Score]]
    samples: dict[tuple[int, int], Samples] = field(default_factory=dict)

    def onset(self, n: int, level: float = 0.5) -> float | None:
        """The training step where GL first falls to ``level`` (memorization sets in), linearly
        interpolated between snapshots; ``None`` when it never does within training."""
        gl = [s.value for s in self.gl[n]]
        for i in range(1, len(gl)):
            if gl[i] <= level < gl[i - 1]:
                frac = (gl[i - 1] - level) / (gl[i - 1] - gl[i])
                return self.steps[i - 1] + frac * (self.steps[i] - self.steps[i - 1])
        return float(self.steps[0]) if gl and gl[0] <= level else None

    def onset_fit(self, level: float = 0.5) -> tuple[float, float, list[int]]:
        """Least-squares line ``onset = a + b N`` through the N whose onset falls inside training:
        returns ``(a, b, those N)`` (``nan`` when fewer than two N have one)."""
        pts = [(n, self.onset(n, level)) for n in self.n_train]
        pts = [(n, t) for n, t in pts if t is not None]
        if len(pts) < 2:
            return math.nan, math.nan, [n for n, _ in pts]
        x = torch.tensor([float(n) for n, _ in pts], dtype=torch.float64)
        y = torch.tensor([t for _, t in pts], dtype=torch.float64)
        b = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
        return float(y.mean()) - b * float(x.mean()), b, [n for n, _ in pts]

    def table(self) -> str:
        """GL at each step (rows) and N (columns)."""
        width = max(10, *(len(f"GL N={n}") + 2 for n in self.n_train))
        lines = [f"{'step':>6s}  " + "".join(f"{f'GL N={n}':>{width}s}" for n in self.n_train)]
        for i, step in enumerate(self.steps):
            lines.append(f"{step:6d}  " + "".join(f"{self.gl[n][i].value:{width}.2f}" for n in self.n_train))
        return "\n".join(lines)


def training_time_study(sweep, seeds: Sequence[int] | range, rule: SameImageRule, *, second_seed: int | None = None,
                        sampler: str = "heun", steps: int = 18, batch_size: int = 256,
                        progress: bool = True) -> TrainingTimeStudy:
    """Sample the first size's model of ``sweep`` (a :class:`reprodiff.configs.SweepConfig`) at each of
    its snapshot steps and at the end, for every N with snapshots; score GL against its training set
    and RP against D*'s samples (and against the ``second_seed`` model's same-step samples where the
    sweep has that replicate). The models must be trained (:func:`load_sweep` with replicates)."""
    from tqdm.auto import tqdm

    from .denoisers import OptimalDenoiser
    from .snapshots import sample_at_steps
    from .training import training_data

    if not sweep.snapshots:
        raise ValueError(f"sweep {sweep.name!r} saves no snapshots")
    size = next(iter(sweep.sizes))
    configs, replicates = sweep.model_configs(), sweep.replicate_configs()
    n_train = [n for n in sweep.n_train if n != max(sweep.n_train)]
    replicated = {n for n, label, seed in sweep.replicates if label == size and seed == second_seed}
    at = [*sweep.snapshots, sweep.base.steps]
    desc = get_descriptor(rule.descriptor)
    gl, rp_opt, rp_seeds, samples = {}, {}, {}, {}
    bar = tqdm(total=(len(n_train) + len(replicated)) * len(at), desc="sampling snapshots", disable=not progress)
    for n in n_train:
        cfg = configs[(size, n)]
        train = training_data(cfg)[0].images
        shape = tuple(train.shape[1:])
        optimal = generate(OptimalDenoiser(train), seeds, shape, sampler=sampler, steps=steps, batch_size=batch_size)
        kw = dict(sampler=sampler, sampling_steps=steps, batch_size=batch_size)
        mine = sample_at_steps(cfg, at, seeds, shape, name=f"{size} N={n} step {{step}}", **kw)
        samples.update({(n, k): s for k, s in zip(at, mine)})
        gl[n] = [gl_score(s, train, desc, threshold=rule) for s in mine]
        rp_opt[n] = [rp_score(s, optimal, desc, threshold=rule) for s in mine]
        bar.update(len(at))
        if n in replicated:
            other = sample_at_steps(replicates[(size, n, second_seed)], at, seeds, shape,
                                    name=f"{size} N={n} seed {second_seed} step {{step}}", **kw)
            rp_seeds[n] = [rp_score(s, t, desc, threshold=rule) for s, t in zip(mine, other)]
            bar.update(len(at))
    bar.close()
    return TrainingTimeStudy(at, n_train, gl, rp_opt, rp_seeds, samples)


# ----------------------------------------------------------------------------- inverse problems (chapter 7)


@dataclass
class InverseStudy:
    """One inverse problem solved by several models from the same noise, with its baselines.

    ``reconstructions``: model -> deterministic DPS reconstructions (reconstruction k from seed k's
    noise answers measurement k of ground truth k). ``baselines``: closed forms that use no
    diffusion model (``A^+ y``, the Gaussian posterior mean). ``controls``: RP of the first model
    with itself from *other* initial noise (same measurement), and of the stochastic solver
    between models and within one model.
    """

    task: str
    truth: torch.Tensor
    measurement: torch.Tensor
    reconstructions: dict[str, Samples]
    baselines: dict[str, Samples]
    rp: RPMatrix
    vs_baselines: dict[str, list[Score]]
    controls: dict[str, Score]
    psnr: dict[str, float]
    residual: dict[str, float]
    noise_floor: float

    @property
    def model_rp(self) -> torch.Tensor:
        """RP of every pair of models, ``(M * (M - 1) / 2,)``."""
        m = len(self.reconstructions)
        return torch.tensor([self.rp.values[i, j].item() for i in range(m) for j in range(i + 1, m)])

    def pair_similarities(self) -> dict[str, torch.Tensor]:
        """Seed-paired similarities for the survival curves: every model pair pooled, the first model
        against each baseline, and the controls."""
        names = list(self.reconstructions)
        first = self.reconstructions[names[0]]
        curves = {"model vs model (all pairs)": torch.cat([
            paired_similarity(self.reconstructions[a], self.reconstructions[b], self.rp.descriptor)
            for i, a in enumerate(names) for b in names[i + 1:]])}
        curves.update({f"{names[0]} vs {b}": paired_similarity(first, s, self.rp.descriptor)
                       for b, s in self.baselines.items()})
        curves.update({k: v.similarities for k, v in self.controls.items()})
        return curves

    def table(self) -> str:
        """Per model and baseline: mean PSNR to the ground truth, mean measurement residual, and RP
        with the first model."""
        first = list(self.reconstructions)[0]
        lines = [f"{self.task}: {len(self.truth)} held-out images",
                 f"measurement noise floor ||noise|| = {self.noise_floor:.3f}",
                 f"{'':26s}{'PSNR (dB)':>10s}{'||y - A x||':>13s}   RP with {first}"]
        for i, name in enumerate(self.reconstructions):
            rp = "" if i == 0 else (f"{self.rp.values[0, i]:.2f} [{self.rp.lower[0, i]:.2f}, "
                                    f"{self.rp.upper[0, i]:.2f}]")
            lines.append(f"{name:26s}{self.psnr[name]:10.1f}{self.residual[name]:13.3f}   {rp}")
        for name, scores in self.vs_baselines.items():
            s = scores[0]
            lines.append(f"{name:26s}{self.psnr[name]:10.1f}{self.residual[name]:13.3f}   "
                         f"{s.value:.2f} [{s.ci[0]:.2f}, {s.ci[1]:.2f}]")
        return "\n".join(lines)

    def headline(self) -> str:
        rp = self.model_rp
        best_base = max((max(s.value for s in v), k) for k, v in self.vs_baselines.items())
        c = self.controls
        return (f"{self.task}: RP between models {rp.min():.2f}-{rp.max():.2f} (mean {rp.mean():.2f}); "
                f"same model, other noise {c['same model, other noise'].value:.2f}; stochastic solver "
                f"{c['stochastic, between models'].value:.2f}; model vs {best_base[1]} at most {best_base[0]:.2f}; "
                f"mean PSNR {sum(self.psnr[m] for m in self.reconstructions) / len(self.reconstructions):.1f} dB")


def inverse_study(models: Mapping[str, torch.nn.Module], op, truth: torch.Tensor, prior: torch.nn.Module, *,
                  rule: SameImageRule, noise_std: float, zeta: float, steps: int = 20, task: str = "",
                  descriptor: str | Descriptor = "pixel", batch_size: int = 256) -> InverseStudy:
    """Measure ``truth`` with ``op`` (noise ``noise_std``; image k's noise from seed k) and solve it with
    every model from the same noise (seed k for image k), plus the baselines and controls of
    :class:`InverseStudy`. ``prior`` is the Gaussian denoiser whose prior the posterior-mean baseline uses."""
    from .inverse import gaussian_posterior_mean, measure, pseudo_inverse, reconstruct, residual_norm
    from .metrics import psnr, rp_matrix

    shape = tuple(truth.shape[1:])
    seeds = torch.arange(len(truth))
    y = measure(op, truth, noise_std, seeds)
    kw = dict(zeta=zeta, steps=steps, batch_size=batch_size)
    recs = {name: reconstruct(m, op, y, seeds, shape, name=name, **kw) for name, m in models.items()}
    baselines = {"A^+ y (least squares)": Samples(pseudo_inverse(op, y, shape), seeds, "A^+ y (least squares)"),
                 "Gaussian posterior mean": Samples(gaussian_posterior_mean(op, y, prior, noise_std, shape), seeds,
                                                    "Gaussian posterior mean")}
    rp = rp_matrix(list(recs.values()), descriptor, threshold=rule)
    vs = {b: [rp_score(r, s, descriptor, threshold=rule) for r in recs.values()] for b, s in baselines.items()}
    names = list(models)
    first, second = models[names[0]], models[names[1]]
    other = reconstruct(first, op, y, seeds, shape, noise_stream=7, name=f"{names[0]} (other noise)", **kw)
    stoch = [reconstruct(m, op, y, seeds, shape, step_noise_stream=k, name=f"{n} (stochastic {k})", **kw)
             for m, n, k in ((first, names[0], 1), (first, names[0], 2), (second, names[1], 3))]
    controls = {"same model, other noise": rp_score(recs[names[0]], other, descriptor, threshold=rule),
                "stochastic, between models": rp_score(stoch[1], stoch[2], descriptor, threshold=rule),
                "stochastic, same model": rp_score(stoch[0], stoch[1], descriptor, threshold=rule)}
    everything = {**recs, **baselines}
    floor = float(residual_norm(op, truth, y).mean())
    return InverseStudy(task or str(op), truth, y, recs, baselines, rp, vs, controls,
                        {k: float(psnr(s.images, truth).mean()) for k, s in everything.items()},
                        {k: float(residual_norm(op, s.images, y).mean()) for k, s in everything.items()}, floor)


def dps_sensitivity(model_a: torch.nn.Module, model_b: torch.nn.Module, op, truth: torch.Tensor, *,
                    rule: SameImageRule, noise_std: float, zetas: Sequence[float], step_counts: Sequence[int],
                    descriptor: str | Descriptor = "pixel", batch_size: int = 256) -> dict[tuple[float, int], dict]:
    """RP between two models and their mean PSNR and residual, for every ``(zeta, steps)``.

    Returns ``{(zeta, steps): {"rp": Score, "psnr": float, "residual": float}}`` (PSNR and residual
    averaged over both models)."""
    from .inverse import measure, reconstruct, residual_norm
    from .metrics import psnr

    shape = tuple(truth.shape[1:])
    seeds = torch.arange(len(truth))
    y = measure(op, truth, noise_std, seeds)
    out = {}
    for zeta in zetas:
        for steps in step_counts:
            a, b = (reconstruct(m, op, y, seeds, shape, zeta=zeta, steps=steps, batch_size=batch_size)
                    for m in (model_a, model_b))
            out[(zeta, steps)] = dict(
                rp=rp_score(a, b, descriptor, threshold=rule),
                psnr=float((psnr(a.images, truth).mean() + psnr(b.images, truth).mean()) / 2),
                residual=float((residual_norm(op, a.images, y).mean() + residual_norm(op, b.images, y).mean()) / 2))
    return out


@dataclass
class GuidanceStudy:
    """Class-conditional models sampled with classifier-free guidance at several scales ``w``, all
    from the same seeds and labels. Per scale: every model's samples, RP of every pair of models,
    each model's label accuracy (the book's digit classifier) and within-label similarity
    (:func:`~reprodiff.metrics.within_label_similarity`), and, when a closed-form ``reference`` was
    given, each model's RP to it."""

    scales: list[float]
    samples: dict[float, dict[str, Samples]]
    rp: dict[float, dict[tuple[str, str], Score]]
    accuracy: dict[float, dict[str, float]]
    similarity: dict[float, dict[str, float]]
    reference: dict[float, dict[str, Score]] | None = None
    reference_name: str = ""
    reference_samples: dict[float, Samples] = field(default_factory=dict)

    def mean_rp(self, w: float) -> float:
        """RP averaged over the pairs of models at scale ``w``."""
        return sum(s.value for s in self.rp[w].values()) / len(self.rp[w])

    def table(self) -> str:
        names = list(self.samples[self.scales[0]])
        ref = bool(self.reference)
        lines = [f"{'w':>5s}  {'RP between':>10s}  {'label':>8s}  {'within-label':>12s}" + (f"  {'RP to':>10s}" if ref else ""),
                 f"{'':5s}  {'models':>10s}  {'accuracy':>8s}  {'similarity':>12s}"
                 + (f"  {self.reference_name[:10]:>10s}" if ref else "")]
        for w in self.scales:
            acc = sum(self.accuracy[w].values()) / len(names)
            sim = sum(self.similarity[w].values()) / len(names)
            row = f"{w:5g}  {self.mean_rp(w):10.2f}  {acc:8.2f}  {sim:12.3f}"
            if ref:
                row += f"  {sum(s.value for s in self.reference[w].values()) / len(names):10.2f}"
            lines.append(row)
        return "\n".join(lines) + f"\n(means over the {len(names)} models, RP between models over their pairs)"


def guidance_study(models: Mapping[str, torch.nn.Module], seeds: Sequence[int] | range, labels: torch.Tensor,
                   shape: Sequence[int], scales: Sequence[float], rule: SameImageRule, classifier: QualityClassifier,
                   *, reference: torch.nn.Module | None = None, reference_name: str = "reference",
                   sampler: str = "heun", steps: int = 18, batch_size: int = 256,
                   descriptor: str | Descriptor = "pixel", progress: bool = False) -> GuidanceStudy:
    """Sample every class-conditional model (and the optional closed-form ``reference``) with
    classifier-free guidance at each scale in ``scales``, from the same ``seeds`` and ``labels``.

    Every model is checked to be class-conditional before any sampling (:class:`~reprodiff.denoisers.Guided`).
    """
    from tqdm.auto import tqdm

    from .denoisers import Guided

    if len(models) < 2:
        raise ValueError("a guidance study compares at least two models")
    scales = [float(w) for w in scales]
    for m in (*models.values(), *([reference] if reference is not None else [])):
        for w in scales:
            Guided(m, w)  # unconditional model or bad scale: fail here, before sampling
    desc = get_descriptor(descriptor)
    names = list(models)
    out = GuidanceStudy(scales, {}, {}, {}, {}, {} if reference is not None else None, reference_name)
    for w in tqdm(scales, desc="guidance scales", disable=not progress):
        kw = dict(labels=labels, sampler=sampler, steps=steps, batch_size=batch_size)
        s = {n: generate(Guided(m, w), seeds, shape, name=f"{n}, w={w:g}", **kw) for n, m in models.items()}
        out.samples[w] = s
        out.rp[w] = {(a, b): rp_score(s[a], s[b], desc, threshold=rule)
                     for i, a in enumerate(names) for b in names[i + 1:]}
        out.accuracy[w] = {n: classifier.accuracy(x.images, labels) for n, x in s.items()}
        out.similarity[w] = {n: within_label_similarity(x, desc) for n, x in s.items()}
        if reference is not None:
            ref = generate(Guided(reference, w), seeds, shape, name=f"{reference_name}, w={w:g}", **kw)
            out.reference_samples[w] = ref
            out.reference[w] = {n: rp_score(x, ref, desc, threshold=rule) for n, x in s.items()}
    return out
