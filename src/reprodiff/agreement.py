"""Why two models agree: the data they share, the denoiser they approximate, and when (chapter 5).

* :func:`pair_study`: two networks on the same or on disjoint training data, from the same noise.
* Patch-size calibration of local denoisers against a network (:func:`calibrate_patch_sizes`), the
  closest analytic denoiser to a network's samples (:func:`closest_denoiser`, :func:`leaderboard`),
  and :func:`closed_form_study`, which chooses every closed form's free parameters on calibration
  seeds and ranks them all against one network (:func:`median_rows`: a line per closed form across N).
* GL and RP along training from a sweep's snapshots (:func:`training_time_study`), and
  :func:`dip_study`: where the RP dip across the memorization-generalization transition comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from .configs import short_name
from .denoisers import (BlendedDenoiser, GaussianDenoiser, LocalDenoiser, OptimalDenoiser,
                        SmoothedOptimalDenoiser)
from .metrics import (Descriptor, SameImageRule, Score, Scores, bootstrap_ci, get_descriptor, gl_score,
                      paired_similarity, rp_score)
from .regimes import gl_crossing
from .sampling import Samples, generate, record_trajectory
from .snapshots import sample_at_steps
from .training import training_data

__all__ = ["PAIR_KINDS", "PairStudy", "pair_study", "PatchCalibration", "calibrate_patch_sizes", "closest_denoiser",
           "choose_smoothing", "Leaderboard", "leaderboard", "CEILING", "ClosedFormStudy", "closed_form_study",
           "median_rows", "TrainingTimeStudy", "training_time_study", "DipStudy", "dip_study"]


# ----------------------------------------------------------------------------- shared or disjoint training data

#: the three models at each N: two training seeds on one subset, and the second seed on another subset
PAIR_KINDS = ("shared a", "shared b", "disjoint b")


@dataclass
class PairStudy:
    """RP of two networks on shared and on disjoint training data, per N.

    ``shared[i]`` and ``disjoint[i]``: RP at ``pair_n[i]`` of ``"shared a"`` with ``"shared b"`` and
    with ``"disjoint b"``; ``gl[(N, kind)]``: GL of each model against its own training set;
    ``samples["N={N} {kind}"]``: the samples.
    """

    pair_n: list[int]
    shared: Scores
    disjoint: Scores
    gl: dict[tuple[int, str], Score]
    samples: dict[str, Samples]

    def table(self) -> str:
        """RP of both pairs with their intervals and the three models' GL, one row per N; then the
        threshold-free view, each pair's median similarity with a bootstrap interval."""
        lines = [f"{'N':>6s}  {'RP same data':>20s}  {'RP disjoint data':>20s}  {'GL a':>6s}  {'GL b':>6s}  "
                 f"{'GL b disjoint':>13s}"]
        for n, sh, dj in zip(self.pair_n, self.shared, self.disjoint):
            lines.append(f"{n:6d}  {sh.interval():>20s}  {dj.interval():>20s}  {self.gl[(n, 'shared a')].value:6.2f}"
                         f"  {self.gl[(n, 'shared b')].value:6.2f}  {self.gl[(n, 'disjoint b')].value:13.2f}")
        lines.append(f"{'N':>6s}  {'median same data':>22s}  {'median disjoint data':>22s}")
        for n, sh, dj in zip(self.pair_n, self.shared, self.disjoint):
            lines.append(f"{n:6d}  " + "  ".join(f"{_median_interval(s):>22s}" for s in (sh, dj)))
        return "\n".join(lines)


def _median_interval(score: Score) -> str:
    """A score's median paired similarity with its bootstrap 95% interval: ``0.912 [0.900, 0.925]``."""
    lo, hi = bootstrap_ci(score.similarities, statistic="median")
    return f"{float(score.similarities.median()):.3f} [{lo:.3f}, {hi:.3f}]"


def pair_study(models: Mapping[str, torch.nn.Module], pair_n: Sequence[int],
               configs: Callable[[int], Mapping[str, object]], seeds: Sequence[int] | range,
               shape: Sequence[int], rule: SameImageRule, *, sampler: str = "heun", steps: int = 18,
               batch_size: int = 256) -> PairStudy:
    """Sample every model of ``models`` (keyed ``"N={N} {kind}"`` for each N of ``pair_n`` and kind of
    :data:`PAIR_KINDS`) from ``seeds`` and score the shared and disjoint pairs at each N under the
    same-image ``rule``; ``configs(N)`` maps each kind to its :class:`reprodiff.training.TrainConfig`
    (e.g. :meth:`reprodiff.configs.AgreementConfig.pair_configs`), whose training set GL compares with."""
    samples = {k: generate(m, seeds, shape, sampler=sampler, steps=steps, batch_size=batch_size, name=k)
               for k, m in models.items()}
    shared, disjoint, gl = Scores(), Scores(), {}
    for n in pair_n:
        a, b, d = (samples[f"N={n} {k}"] for k in PAIR_KINDS)
        shared.append(rp_score(a, b, rule.descriptor, threshold=rule))
        disjoint.append(rp_score(a, d, rule.descriptor, threshold=rule))
        for k, cfg in configs(n).items():
            gl[(n, k)] = gl_score(samples[f"N={n} {k}"], training_data(cfg)[0].images, rule.descriptor,
                                  threshold=rule)
    return PairStudy(list(pair_n), shared, disjoint, gl, samples)


# ----------------------------------------------------------------------------- the closed forms a network is near


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

    def margin_interval(self, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
        """Paired percentile-bootstrap interval of the winner's margin over the runner-up: the seeds are
        resampled together for both rows (each seed's two similarities come from the same noise)."""
        first, second = self.ranking()[:2]
        a, b = self.similarity[first].double(), self.similarity[second].double()
        idx = torch.randint(len(a), (n_boot, len(a)), generator=torch.Generator().manual_seed(seed))
        diff = a[idx].median(1).values - b[idx].median(1).values
        q = torch.quantile(diff, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
        return float(q[0]), float(q[1])

    def verdict(self) -> str:
        """The closest closed form when its margin's interval excludes zero; otherwise a tie of the first
        two (a winner inside the noise is a tie)."""
        rank = self.ranking()
        name, margin = self.winner()
        lo, hi = self.margin_interval()
        med = float(self.similarity[name].median())
        if lo > 0:
            return f"closest closed form {name} (median {med:.3f}, margin {margin:.3f} [{lo:.3f}, {hi:.3f}])"
        return (f"closest closed forms tied: {name} and {rank[1]} (median {med:.3f}, margin {margin:.3f} "
                f"[{lo:.3f}, {hi:.3f}])")

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


#: the leaderboard row of the other training seed's network: a ceiling, shown, never ranked
CEILING = "the other training seed (network)"


@dataclass
class ClosedFormStudy:
    """One training set's leaderboard with the parameters chosen for it.

    ``board``: the :class:`Leaderboard`; ``smoothing``: the chosen smoothing of D*; ``weight``: the
    chosen weight of the local denoiser in the blend; ``schedules[kind]``: the
    :class:`PatchCalibration` of the ``"position-bound"`` (and ``"equivariant"``) local denoiser.
    """

    board: Leaderboard
    smoothing: float
    weight: float
    schedules: dict[str, PatchCalibration]

    def schedule_summary(self) -> str:
        """One line per local denoiser: its patch size at each noise level, largest sigma first."""
        return "\n".join(f"N={self.board.n} {kind}: patch size along sigma = {cal.schedule[0][0]:.0f} ... "
                         f"{cal.schedule[-1][0]:.3f}: {[k for _, k in cal.schedule]}"
                         for kind, cal in self.schedules.items())

    def headline(self) -> str:
        """The closest closed form (or a tie, :meth:`Leaderboard.verdict`) and the ceiling's median."""
        board = self.board
        ceiling = (f"; the other network {float(board.similarity[board.ceilings[0]].median()):.3f}"
                   if board.ceilings else "")
        return f"N={board.n}: {board.verdict()}{ceiling}"


def closed_form_study(network: torch.nn.Module, train_images: torch.Tensor, n: int, seeds: Sequence[int] | range,
                      calibration_seeds: Sequence[int] | range, shape: Sequence[int], *,
                      smoothings: Sequence[float], patch_sizes: Sequence[int], blend_weights: Sequence[float],
                      equivariant: bool = False, other: torch.nn.Module | None = None, descriptor="pixel",
                      sampler: str = "heun", steps: int = 18, batch_size: int = 256) -> ClosedFormStudy:
    """Rank closed-form denoisers of ``train_images`` (``(N, C, H, W)`` in [-1, 1], the network's
    training set of size ``n``) by how close their samples from ``seeds`` are to ``network``'s
    (:func:`leaderboard`).

    Candidates, in this order: D*, smoothed D* (smoothing chosen among ``smoothings`` and 0), the
    Gaussian denoiser, the position-bound local denoiser with a patch size per noise level (chosen
    among ``patch_sizes`` along the network's trajectories), with ``equivariant`` also the
    equivariant one and a fixed 3x3 equivariant one, and a blend ``w local + (1 - w) Gaussian``
    (``w`` chosen among ``blend_weights``). All choices use ``calibration_seeds``, which the
    comparison does not. ``other`` (another training seed's network), when given, is the ceiling row.
    """
    kw = dict(sampler=sampler, steps=steps, batch_size=batch_size)
    mine = generate(network, seeds, shape, **kw)
    calib_net = generate(network, calibration_seeds, shape, **kw)
    smooth, _ = choose_smoothing(calib_net, train_images, smoothings, descriptor=descriptor, **kw)
    cands = {"D*": OptimalDenoiser(train_images),
             f"smoothed D* (s = {smooth:g})": SmoothedOptimalDenoiser(train_images, smooth),
             "Gaussian denoiser": GaussianDenoiser.from_data(train_images)}
    schedules = {}
    for eq in ((False, True) if equivariant else (False,)):
        cal = calibrate_patch_sizes(network, train_images, calibration_seeds, shape, patch_sizes, equivariant=eq,
                                    steps=steps)
        kind = "equivariant" if eq else "position-bound"
        schedules[kind] = cal
        cands[f"local, {kind}, k(sigma)"] = LocalDenoiser(train_images, cal.schedule, equivariant=eq)
        if eq:
            cands["local, equivariant, 3x3 fixed"] = LocalDenoiser(train_images, 3, equivariant=True)
    local, gauss = cands["local, position-bound, k(sigma)"], cands["Gaussian denoiser"]
    weight, _ = closest_denoiser(calib_net, {w: BlendedDenoiser(local, gauss, w) for w in blend_weights},
                                 descriptor=descriptor, **kw)
    cands[f"blend: {weight:g} local + {1 - weight:g} Gaussian"] = BlendedDenoiser(local, gauss, weight)
    samples = {k: generate(d, seeds, shape, **kw) for k, d in cands.items()}
    if other is not None:
        samples[CEILING] = generate(other, seeds, shape, **kw)
    board = leaderboard(mine, samples, n, descriptor=descriptor, ceilings=(CEILING,) if other is not None else ())
    return ClosedFormStudy(board, smooth, weight, schedules)


def median_rows(boards: Mapping[int, Leaderboard], prefixes: Mapping[str, str]) -> dict[str, list[float]]:
    """``{label: [median similarity at each board's N]}`` for the first row of each board whose name
    starts with ``prefixes[label]`` (names carry chosen parameters, e.g. the blend's weight); ``nan``
    where a board has no such row."""
    return {label: [next((float(v.median()) for k, v in board.similarity.items() if k.startswith(prefix)),
                         float("nan")) for board in boards.values()]
            for label, prefix in prefixes.items()}


# ----------------------------------------------------------------------------- along training


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
        kw = dict(sampler=sampler, sampling_steps=steps, batch_size=batch_size)
        mine = sample_at_steps(cfg, at, seeds, shape, name=f"{size} N={n} step {{step}}", **kw)
        samples.update({(n, k): s for k, s in zip(at, mine)})
        gl[n] = Scores(gl_score(s, train, desc, threshold=rule) for s in mine)
        rp_opt[n] = Scores(rp_score(s, optimal, desc, threshold=rule) for s in mine)
        bar.update(len(at))
        if n in replicated:
            other = sample_at_steps(replicates[(size, n, second_seed)], at, seeds, shape,
                                    name=f"{size} N={n} seed {second_seed} step {{step}}", **kw)
            rp_seeds[n] = Scores(rp_score(s, t, desc, threshold=rule) for s, t in zip(mine, other))
            bar.update(len(at))
    bar.close()
    return TrainingTimeStudy(at, n_train, gl, rp_opt, rp_seeds, samples)


# ----------------------------------------------------------------------------- the RP dip across the transition


@dataclass
class DipStudy:
    """RP against N for the two finished widths and for the early snapshot against the wide model.

    Zhang et al. explain the dip in RP between two widths by the two models leaving memorization at
    different N; this study marks where each model's GL crosses 0.5 and adds a pair whose crossings
    lie further apart: the small model stopped early (a training snapshot) against the wider model at
    the end of training.

    ``n_train``: the N with snapshots that the sweep also has; ``pair``: the sweep's RP pair of the
    two finished widths and ``rp_end`` its RP at ``n_train``; ``rp_early``: RP of the small model at
    step ``early`` with the wide finished model; ``crossings[label]``: N where each model's GL
    crosses 0.5 (``None``: not within ``n_train``); ``small`` and ``wide``: short model names.
    """

    n_train: list[int]
    early: int
    small: str
    wide: str
    pair: str
    rp_end: Scores
    rp_early: Scores
    crossings: dict[str, float | None]

    @property
    def early_label(self) -> str:
        return f"{self.small} at step {self.early} vs {self.wide}"

    def curves(self) -> dict[str, tuple[list[float], list[float], list[float]]]:
        """``{label: (values, lower, upper)}`` of both pairs, for :func:`reprodiff.plots.curve_with_band`."""
        return {f"{self.pair} (both at the end)": self.rp_end.band(), self.early_label: self.rp_early.band()}

    def summary(self) -> str:
        """Where each GL crosses 0.5."""
        return "\n".join(f"GL crosses 0.5: {k} at N ~ {v:.0f}" if v else
                         f"GL crosses 0.5: {k} not within N <= {self.n_train[-1]}" for k, v in self.crossings.items())

    def rp_summary(self) -> str:
        """Both pairs' RP at each N, in two decimals."""
        return "\n".join([f"RP {self.pair}: "
                          + ", ".join(f"N={n}: {s.value:.2f}" for n, s in zip(self.n_train, self.rp_end)),
                          f"RP {self.small} step {self.early} vs {self.wide}: "
                          + ", ".join(f"N={n}: {s.value:.2f}" for n, s in zip(self.n_train, self.rp_early))])


def dip_study(sweep, times: TrainingTimeStudy, seeds: Sequence[int] | range, rule: SameImageRule, *,
              at_step: float) -> DipStudy:
    """From a two-width :class:`reprodiff.regimes.SweepResult` ``sweep`` and the small width's
    :class:`TrainingTimeStudy` ``times``: the snapshot step nearest ``at_step``, RP of that
    snapshot's samples with the wide model's finished ones from the same ``seeds`` at every N both
    have, and the GL = 0.5 crossings of the small model (finished and early) and of the wide one.
    Models are named by their short names (:attr:`reprodiff.configs.SizeLabel.short`)."""
    small, wide = sweep.sizes
    s_small, s_wide = short_name(small), short_name(wide)
    early = min(times.steps, key=lambda k: abs(k - at_step))
    ns = [n for n in times.n_train if n in sweep.n_train]
    early_gl = Scores(times.gl[n][times.steps.index(early)] for n in ns)
    early_rp = Scores(rp_score(times.samples[(n, early)], Samples(sweep.samples[(wide, n)].by_seed(seeds), seeds),
                               rule.descriptor, threshold=rule) for n in ns)
    crossings = {f"{s_small} (end)": sweep.gl_crossing(small, 0.5),
                 f"{s_small} (step {early})": gl_crossing(ns, early_gl.values),
                 f"{s_wide} (end)": sweep.gl_crossing(wide, 0.5)}
    pair = next(iter(sweep.rp))
    rp_end = Scores(sweep.rp[pair][sweep.n_train.index(n)] for n in ns)
    return DipStudy(ns, early, s_small, s_wide, pair, rp_end, early_rp, crossings)
