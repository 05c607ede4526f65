"""Why two models agree: the data they share, the denoiser they approximate, and when (chapter 5).

Patch-size calibration of local denoisers against a network (:func:`calibrate_patch_sizes`), the
closest analytic denoiser to a network's samples (:func:`closest_denoiser`, :func:`leaderboard`),
and GL and RP along training from a sweep's snapshots (:func:`training_time_study`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from .denoisers import LocalDenoiser, OptimalDenoiser, SmoothedOptimalDenoiser
from .metrics import (Descriptor, SameImageRule, Scores, bootstrap_ci, get_descriptor, gl_score,
                      paired_similarity, rp_score)
from .sampling import Samples, generate, record_trajectory
from .training import load_model, training_data

__all__ = ["PatchCalibration", "calibrate_patch_sizes", "closest_denoiser", "choose_smoothing", "Leaderboard",
           "leaderboard", "TrainingTimeStudy", "training_time_study"]


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
    if not sizes:
        raise ValueError("calibrate_patch_sizes needs at least one candidate patch size")
    rec = record_trajectory(model, seeds, shape, steps)
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
    gl: dict[int, Scores]
    rp_optimal: dict[int, Scores]
    rp_seeds: dict[int, Scores]
    samples: dict[tuple[int, int], Samples] = field(default_factory=dict)

    def onset(self, n: int, level: float = 0.5) -> float | None:
        """The training step where GL first falls to ``level`` (memorization sets in), linearly
        interpolated between snapshots; ``None`` when it never does within training."""
        gl = Scores(self.gl[n]).values
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
    sweep has that replicate). The models must be trained (:func:`reprodiff.regimes.load_sweep` with replicates)."""
    from tqdm.auto import tqdm

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
        gl[n], rp_opt[n] = Scores(), Scores()
        mine = {}
        for k in at:
            s = generate(load_model(cfg, step=k), seeds, shape, sampler=sampler, steps=steps, batch_size=batch_size,
                         name=f"{size} N={n} step {k}")
            mine[k] = samples[(n, k)] = s
            gl[n].append(gl_score(s, train, desc, threshold=rule))
            rp_opt[n].append(rp_score(s, optimal, desc, threshold=rule))
            bar.update()
        if n in replicated:
            other = replicates[(size, n, second_seed)]
            rp_seeds[n] = Scores()
            for k in at:
                s = generate(load_model(other, step=k), seeds, shape, sampler=sampler, steps=steps,
                             batch_size=batch_size, name=f"{size} N={n} seed {second_seed} step {k}")
                rp_seeds[n].append(rp_score(mine[k], s, desc, threshold=rule))
                bar.update()
    bar.close()
    return TrainingTimeStudy(at, n_train, gl, rp_opt, rp_seeds, samples)
