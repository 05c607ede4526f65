"""Memorization, transition and generalization along training-set size N (chapters 3 and 4).

A sweep trains every model size at every N (:class:`reprodiff.configs.SweepConfig`); :func:`regime_sweep`
samples them all from the same seeds and scores GL per model and RP per pair of sizes, and
:func:`paper_row` reads the paper's Figure 2 rows off the result. Chapter 4 compares the same models
with analytic denoisers (:func:`reference_study`, :func:`trajectory_gap`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch

from .configs import short_name
from .metrics import (Descriptor, QualityClassifier, SameImageRule, Scores, SeedSpread, get_descriptor, gl_score,
                      rp_score, seed_spread)
from .sampling import Samples, generate, record_trajectory, resolve_device
from .training import load_or_train_many, training_data

__all__ = ["classify_regimes", "regime_spans", "load_sweep", "gl_crossing", "SweepResult", "PAPER_FIGURE2",
           "paper_row", "regime_sweep", "ReferenceStudy", "reference_study", "trajectory_gap"]


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
    gl: dict[str, Scores]
    rp: dict[str, Scores]
    nearest: dict[tuple[str, int], torch.Tensor]
    rule: SameImageRule
    gl_ceiling: Scores = field(default_factory=Scores)
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
        return {k: Scores(v).band() for k, v in scores.items()}

    def regimes(self, memorization_gl: float, generalization_gl: float) -> list[str]:
        return classify_regimes(self.n_train, {k: Scores(v).values for k, v in self.gl.items()},
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
        return gl_crossing(self.n_train, Scores(self.gl[size]).values, level)

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
        short = [short_name(k) for k in self.gl]
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
    "memorization up to (paper: GL ~ 0)": "N = 2^10 for every width",
    "generalization from (paper: GL >= 0.97)": "N = 2^14",
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
    gl: dict[str, Scores] = {s: Scores() for s in sizes}
    todo = [(k, models[k]) for k in models] + [(k, m) for k, m in replicates.items()]
    for key, model in tqdm(todo, desc=f"sampling {len(todo)} models", disable=not progress):
        label = f"{key[0]} N={key[1]}" + (f" seed {key[2]}" if len(key) == 3 else "")
        s = generate(model, seeds, shape, sampler=sampler, steps=steps, batch_size=batch_size, name=label)
        (samples if len(key) == 2 else extra)[key] = s
    gl_ceiling = Scores()
    real = Samples(heldout, torch.arange(len(heldout)), name="held-out real images")  # GL's ceiling
    for n in n_train:
        train_features = desc(train_sets[n])  # once per N, shared by every size
        for size in sizes:
            score = gl_score(samples[(size, n)], train_sets[n], desc, threshold=rule, train_features=train_features)
            gl[size].append(score)
            nearest[(size, n)] = score.nearest
        gl_ceiling.append(gl_score(real, train_sets[n], desc, threshold=rule, train_features=train_features))
    rp: dict[str, Scores] = {}
    per_pair_null = {}
    for i, a in enumerate(sizes):
        for b in sizes[i + 1:]:
            label = f"{short_name(a)} vs {short_name(b)}"
            rp[label] = Scores(rp_score(samples[(a, n)], samples[(b, n)], desc, threshold=rule) for n in n_train)
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



# ----------------------------------------------------------------------------- analytic references (chapter 4)


@dataclass
class ReferenceStudy:
    """RP of trained models against analytic denoisers sampled from the same seeds.

    ``rp[reference][size]`` is one :class:`Score` per N; ``samples[(reference, N)]`` the analytic
    denoiser's samples (``reference`` e.g. ``"D*"``, ``"Gaussian"``, ``"true"``).
    """

    n_train: list[int]
    rp: dict[str, dict[str, Scores]]
    samples: dict[tuple[str, int], Samples]

    def curves(self, reference: str) -> dict[str, tuple[list[float], list[float], list[float]]]:
        return {size: Scores(v).band() for size, v in self.rp[reference].items()}

    def medians(self, reference: str) -> dict[str, list[float]]:
        """The threshold-free view: per size, the median similarity of the model's samples to the
        reference's from the same seeds, one value per N."""
        return {size: [float(sc.similarities.median()) for sc in v] for size, v in self.rp[reference].items()}

    def seed_spread(self, reference: str, replicates: Mapping[tuple[str, int, int], torch.nn.Module],
                    rule: SameImageRule, *, sampler: str = "heun", steps: int = 18,
                    batch_size: int = 256) -> dict[tuple[str, int], Scores]:
        """RP(model, ``reference``) over training seeds: for each (size, N) with extra training seeds
        (``replicates``: ``{(size, N, seed): model}``, as :func:`load_sweep` returns them), the study's
        own model's score first, then each extra seed's, sampled from the same seeds."""
        any_samples = next(iter(self.samples.values()))
        seeds, shape = any_samples.seeds, tuple(any_samples.images.shape[1:])
        desc = get_descriptor(rule.descriptor)
        out: dict[tuple[str, int], Scores] = {}
        for (size, n, seed), model in replicates.items():
            ref = self.samples[(reference, n)]
            if (size, n) not in out:
                out[(size, n)] = Scores([self.rp[reference][size][self.n_train.index(n)]])
            s = generate(model, seeds, shape, sampler=sampler, steps=steps, batch_size=batch_size,
                         name=f"{size} N={n} seed {seed}")
            out[(size, n)].append(rp_score(s, ref, desc, threshold=rule))
        return out

    def table(self) -> str:
        refs = list(self.rp)
        sizes = list(next(iter(self.rp.values())))
        cols = [f"{r} | {short_name(s)}" for r in refs for s in sizes]
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
    rp: dict[str, dict[str, Scores]] = {}
    samples: dict[tuple[str, int], Samples] = {}
    for ref, per_n in references.items():
        rp[ref] = {size: Scores() for size in sweep.sizes}
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
    rec = record_trajectory(model, seeds, shape, steps)
    with torch.no_grad():
        gaps: dict[str, list[torch.Tensor]] = {r: [] for r in references}
        sigmas = []
        for x, s, out in rec.calls:
            mine = out.double().cpu()  # the model's estimate, as the sampler used it
            for r, den in references.items():
                other = den(x.to(resolve_device(den)).float(), s).double().cpu()  # each denoiser where it lives
                gaps[r].append(((mine - other) ** 2).flatten(1).mean(1).sqrt())
            sigmas.append(s)
    return sigmas, {r: torch.stack(v) for r, v in gaps.items()}
