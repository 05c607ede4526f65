"""Why two models agree: the data they share, the denoiser they approximate, and when (chapter 5).

* :func:`pair_study`: two networks on the same or on disjoint training data, from the same noise.
* Patch-size calibration of local denoisers against a network (:func:`calibrate_patch_sizes`), the
  closest analytic denoiser to a network's samples (:func:`closest_denoiser`, :func:`leaderboard`),
  and :func:`closed_form_study`, which chooses every closed form's free parameters on calibration
  seeds and ranks them all against one network (:func:`median_rows`: a line per closed form across N).
* GL and RP along training from a sweep's snapshots (:func:`training_time_study`), the samples'
  quality along training (:func:`quality_along_training`), and :func:`dip_study`: RP between two
  widths across the memorization-generalization transition, with each width's GL and whether it settled.
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
from .sampling import Samples, generate, record_trajectory
from .snapshots import sample_at_steps
from .training import training_data

__all__ = ["PAIR_KINDS", "PairStudy", "pair_study", "PatchCalibration", "calibrate_patch_sizes", "closest_denoiser",
           "choose_smoothing", "Leaderboard", "leaderboard", "CEILING", "ClosedFormStudy", "closed_form_study",
           "median_rows", "TrainingTimeStudy", "training_time_study", "QualityAlongTraining",
           "quality_along_training", "DipStudy", "dip_study", "longer_vs_wide"]


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


    def verdicts(self, rule: SameImageRule) -> str:
        """Per N: RP of the shared pair against the disjoint pair across the threshold's interval
        (:meth:`SameImageRule.rp_range` of each, and :meth:`SameImageRule.ordering`: "higher" at
        every threshold of the interval, or "at the threshold only")."""
        lines = []
        for n, sh, dj in zip(self.pair_n, self.shared, self.disjoint):
            (a0, a1), (b0, b1) = rule.rp_range(sh.similarities), rule.rp_range(dj.similarities)
            lines.append(f"N={n}: RP same data {a0:.2f}-{a1:.2f}, disjoint {b0:.2f}-{b1:.2f} across the threshold's "
                         f"interval; same vs disjoint: {rule.ordering(sh.similarities, dj.similarities)}")
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
                      equivariant: bool = False, fixed_patch: bool = False, other: torch.nn.Module | None = None,
                      descriptor="pixel", sampler: str = "heun", steps: int = 18,
                      batch_size: int = 256) -> ClosedFormStudy:
    """Rank closed-form denoisers of ``train_images`` (``(N, C, H, W)`` in [-1, 1], the network's
    training set of size ``n``) by how close their samples from ``seeds`` are to ``network``'s
    (:func:`leaderboard`).

    Candidates, in this order: D*, smoothed D* (smoothing chosen among ``smoothings`` and 0), the
    Gaussian denoiser, the position-bound local denoiser with a patch size per noise level (chosen
    among ``patch_sizes`` along the network's trajectories), with ``equivariant`` also the
    equivariant one (and with ``fixed_patch``, which needs ``equivariant``, a fixed 3x3 equivariant
    one), and a blend ``w local + (1 - w) Gaussian``
    (``w`` chosen among ``blend_weights``). All choices use ``calibration_seeds``, which the
    comparison does not. ``other`` (another training seed's network), when given, is the ceiling row.
    """
    if fixed_patch and not equivariant:
        raise ValueError("fixed_patch adds the fixed 3x3 equivariant local denoiser: it needs equivariant=True")
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
        if eq and fixed_patch:
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
    step, where the sweep has a second seed with snapshots, and ``gl_second[N]`` that second seed's
    GL; ``samples[(N, step)]`` the first seed's samples.
    """

    steps: list[int]
    n_train: list[int]
    gl: dict[int, Scores]
    rp_optimal: dict[int, Scores]
    rp_seeds: dict[int, Scores]
    samples: dict[tuple[int, int], Samples] = field(default_factory=dict)
    gl_second: dict[int, Scores] = field(default_factory=dict)

    def _gl(self, n: int, second: bool) -> list[float]:
        if second and n not in self.gl_second:
            raise ValueError(f"no second training seed at N={n} (it has one at {sorted(self.gl_second)})")
        return Scores((self.gl_second if second else self.gl)[n]).values

    def onset(self, n: int, level: float = 0.5, second: bool = False) -> float | None:
        """The training step where GL first falls to ``level`` (memorization sets in), linearly
        interpolated between snapshots; ``None`` when it never does within training. ``second``:
        of the second training seed (:attr:`gl_second`)."""
        gl = self._gl(n, second)
        for i in range(1, len(gl)):
            if gl[i] <= level < gl[i - 1]:
                frac = (gl[i - 1] - level) / (gl[i - 1] - gl[i])
                return self.steps[i - 1] + frac * (self.steps[i] - self.steps[i - 1])
        return float(self.steps[0]) if gl and gl[0] <= level else None

    def bracket(self, n: int, level: float = 0.5, second: bool = False) -> tuple[int, int] | None:
        """The two snapshot steps around the onset: the last with GL above ``level`` and the first
        with GL at or below it (the interpolated :meth:`onset` lies between them); ``(0, first
        step)`` when GL is already at or below ``level`` at the first snapshot; ``None`` when GL never
        falls to ``level`` within training (no onset)."""
        gl = self._gl(n, second)
        for i in range(1, len(gl)):
            if gl[i] <= level < gl[i - 1]:
                return self.steps[i - 1], self.steps[i]
        return (0, self.steps[0]) if gl and gl[0] <= level else None

    def onset_fit(self, level: float = 0.5, second: bool = False) -> tuple[float, float, list[int]]:
        """Least-squares line ``onset = a + b N`` through the N whose onset falls inside training:
        returns ``(a, b, those N)`` (``nan`` when fewer than two N have one)."""
        ns = self.n_train if not second else [n for n in self.n_train if n in self.gl_second]
        pts = [(n, self.onset(n, level, second)) for n in ns]
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
    sweep has that replicate, whose GL it also scores). The models must be trained (:func:`reprodiff.regimes.load_sweep` with replicates)."""
    from tqdm.auto import tqdm

    if not sweep.snapshots:
        raise ValueError(f"sweep {sweep.name!r} saves no snapshots")
    size = next(iter(sweep.sizes))
    configs, replicates = sweep.model_configs(), sweep.replicate_configs()
    n_train = [n for n in sweep.n_train if n != max(sweep.n_train)]
    replicated = {n for n, label, seed in sweep.replicates if label == size and seed == second_seed}
    at = [*sweep.snapshots, sweep.base.steps]
    desc = get_descriptor(rule.descriptor)
    gl, rp_opt, rp_seeds, samples, gl_second = {}, {}, {}, {}, {}
    bar = tqdm(total=(len(n_train) + len(replicated)) * len(at), desc="sampling snapshots", disable=not progress)
    for n in n_train:
        cfg = configs[(size, n)]
        train = training_data(cfg)[0].images
        shape = tuple(train.shape[1:])
        optimal = generate(OptimalDenoiser(train), seeds, shape, sampler=sampler, steps=steps, batch_size=batch_size)
        kw = dict(sampler=sampler, sampling_steps=steps, batch_size=batch_size)
        mine = sample_at_steps(cfg, at, seeds, shape, name=f"{size} N={n} step {{step}}", **kw)
        samples.update({(n, k): s for k, s in zip(at, mine)})
        feats = desc(train)  # once per N: every snapshot of both seeds is scored against it (SSCD at 320x320)
        gl[n] = Scores(gl_score(s, train, desc, threshold=rule, train_features=feats) for s in mine)
        rp_opt[n] = Scores(rp_score(s, optimal, desc, threshold=rule) for s in mine)
        bar.update(len(at))
        if n in replicated:
            other = sample_at_steps(replicates[(size, n, second_seed)], at, seeds, shape,
                                    name=f"{size} N={n} seed {second_seed} step {{step}}", **kw)
            rp_seeds[n] = Scores(rp_score(s, t, desc, threshold=rule) for s, t in zip(mine, other))
            gl_second[n] = Scores(gl_score(t, train, desc, threshold=rule, train_features=feats) for t in other)
            bar.update(len(at))
    bar.close()
    return TrainingTimeStudy(at, n_train, gl, rp_opt, rp_seeds, samples, gl_second)


@dataclass
class QualityAlongTraining:
    """A digit classifier's confidence in one model's samples along training, beside its ceiling and a null.

    ``confidence[N]``: mean top-class probability of the samples at each of ``steps`` (from a
    :class:`TrainingTimeStudy`); ``ceiling``: the same on held-out real images, with the classifier's
    ``accuracy`` there; ``null[N]``: the confidence in the Gaussian denoiser's samples of the same
    training set from the same seeds (a closed form that never copies and draws blurry blends).
    """

    steps: list[int]
    n_train: list[int]
    confidence: dict[int, list[float]]
    ceiling: float
    accuracy: float
    null: dict[int, float]

    def table(self) -> str:
        """Confidence at each step (rows) and N (columns), then the null's row and the real-data ceiling."""
        width = max(10, *(len(f"conf N={n}") + 2 for n in self.n_train))
        lines = [f"{'step':>8s}  " + "".join(f"{f'conf N={n}':>{width}s}" for n in self.n_train)]
        for i, step in enumerate(self.steps):
            lines.append(f"{step:8d}  " + "".join(f"{self.confidence[n][i]:{width}.2f}" for n in self.n_train))
        lines.append(f"{'Gaussian':>8s}  " + "".join(f"{self.null[n]:{width}.2f}" for n in self.n_train))
        lines.append(f"classifier confidence in held-out real digits (the ceiling): {self.ceiling:.2f} "
                     f"(accuracy {self.accuracy:.2f}); row 'Gaussian': the Gaussian denoiser of each training set, "
                     "same seeds (the null)")
        return "\n".join(lines)


def quality_along_training(times: TrainingTimeStudy, sweep, classifier, ceiling: float, accuracy: float,
                           seeds: Sequence[int] | range, *, sampler: str = "heun", steps: int = 18,
                           batch_size: int = 256) -> QualityAlongTraining:
    """Rate the samples of ``times`` (its first seed, every N and step) with ``classifier`` (a
    :class:`reprodiff.metrics.QualityClassifier`, e.g. from
    :func:`reprodiff.experiments.quality_classifier`, which also returns ``accuracy`` and the real-data
    ``ceiling``), and the Gaussian denoiser of each N's training set (the first size of ``sweep``, the
    :class:`reprodiff.configs.SweepConfig` that ``times`` came from) sampled from ``seeds``."""
    configs = sweep.model_configs()
    size = next(iter(sweep.sizes))
    conf, null = {}, {}
    for n in times.n_train:
        missing = [k for k in times.steps if (n, k) not in times.samples]
        if missing:
            raise ValueError(f"the training-time study holds no samples at N={n}, steps {missing}")
        conf[n] = [classifier.confidence(times.samples[(n, k)].images) for k in times.steps]
        train = training_data(configs[(size, n)])[0].images
        gauss = generate(GaussianDenoiser.from_data(train), seeds, tuple(train.shape[1:]), sampler=sampler,
                         steps=steps, batch_size=batch_size, cache_samples=False)
        null[n] = classifier.confidence(gauss.images)
    return QualityAlongTraining(list(times.steps), list(times.n_train), conf, ceiling, accuracy, null)


# ----------------------------------------------------------------------------- the RP dip across the transition


@dataclass
class DipStudy:
    """RP against N between the two finished widths of a sweep, with each width's GL, where its GL
    crosses 0.5, and whether the small width's GL had settled by the end of training.

    Zhang et al. explain the dip in RP between two widths by the two models leaving memorization at
    different N. ``n_train``: every N of the sweep; ``pair``: the sweep's RP pair of the two widths
    and ``rp_end`` its RP at each N; ``gl[name]``: each width's GL at each N; ``crossings[label]``:
    N where each width's GL crosses 0.5 (``None``: not within the sweep); ``settle[N]``: for the
    small width at the N with snapshots, ``(step, GL at that snapshot, GL at the end)`` for the last
    snapshot before the end; ``tolerance``: the largest change of GL over that stretch still called
    stable; ``small`` and ``wide``: short model names.
    """

    n_train: list[int]
    small: str
    wide: str
    pair: str
    rp_end: Scores
    gl: dict[str, list[float]]
    crossings: dict[str, float | None]
    settle: dict[int, tuple[int, float, float]]
    tolerance: float = 0.05
    #: ``settle`` for the wide width (from :func:`last_snapshot_gl`); empty when it was not measured
    settle_wide: dict[int, tuple[int, float, float]] = field(default_factory=dict)

    def stable(self, n: int, wide: bool = False) -> bool | None:
        """Whether the small (``wide``: the wide) width's GL changed by at most :attr:`tolerance`
        between its last snapshot and the end of training at ``n`` (``None``: no snapshots at that N)."""
        settle = self.settle_wide if wide else self.settle
        if n not in settle:
            return None
        _, before, end = settle[n]
        return abs(end - before) <= self.tolerance

    def curves(self) -> dict[str, tuple[list[float], list[float], list[float]]]:
        """``{label: (values, lower, upper)}``, for :func:`reprodiff.plots.curve_with_band`."""
        return {f"{self.pair} (both at the end of training)": self.rp_end.band()}

    def summary(self) -> str:
        """Where each GL crosses 0.5."""
        return "\n".join(f"GL crosses 0.5: {k} at N ~ {v:.0f}" if v else
                         f"GL crosses 0.5: {k} not within N <= {self.n_train[-1]}" for k, v in self.crossings.items())

    def table(self, rule: SameImageRule | None = None) -> str:
        """One row per N: RP with its 95% interval (and, given the same-image ``rule`` with a
        threshold interval, RP's range across that interval), both widths' GL, and the small width's GL
        at its last snapshot and at the end with the verdict "stable" / "still moving" ("no
        snapshots" where it saved none)."""
        widths = [(self.small, self.settle, False)] + ([(self.wide, self.settle_wide, True)] if self.settle_wide else [])
        heads = []
        for name, settle, _ in widths:
            step = next((v[0] for v in settle.values()), None)
            heads.append(f"{f'{name} GL step {step} -> end':>26s}")
        head = (f"{'N':>6s}  {'RP':>18s}  " + (f"{'RP across thr.':>14s}  " if rule else "")
                + f"{'GL ' + self.small:>10s}  {'GL ' + self.wide:>10s}  " + "  ".join(heads))
        lines = [head]
        for i, n in enumerate(self.n_train):
            sc = self.rp_end[i]
            rng = ""
            if rule:
                lo, hi = rule.rp_range(sc.similarities)
                rng = f"{f'{lo:.2f}-{hi:.2f}':>14s}  "
            moved = []
            for _, settle, wide in widths:
                if n in settle:
                    _, before, end = settle[n]
                    moved.append(f"{before:.2f} -> {end:.2f} " + ("stable" if self.stable(n, wide) else "still moving"))
                else:
                    moved.append("no snapshots")
            lines.append(f"{n:6d}  {sc.interval():>18s}  {rng}{self.gl[self.small][i]:10.2f}  "
                         f"{self.gl[self.wide][i]:10.2f}  " + "  ".join(f"{m:>26s}" for m in moved))
        who = "each width's GL" if self.settle_wide else f"{self.small}'s GL"
        lines.append(f"stable: {who} changed by at most {self.tolerance:.2f} from its last snapshot to the end of "
                     "training" + ("" if self.settle_wide else f"; {self.wide} saved no snapshots") + (
                         "; RP across thr.: RP at the ends of the threshold's 95% interval" if rule else ""))
        return "\n".join(lines)

    def lowest(self) -> int:
        """The N of the lowest RP strictly between the smallest and the largest N (the dip's bottom)."""
        inner = range(1, len(self.n_train) - 1)
        if not inner:
            raise ValueError("the dip needs at least three N")
        return self.n_train[min(inner, key=lambda i: self.rp_end[i].value)]

    def verdicts(self, rule: SameImageRule) -> str:
        """The dip's bottom (:meth:`lowest`) against both ends: RP with intervals, the threshold-free
        median similarity with its interval, and :meth:`SameImageRule.ordering` across the
        threshold's interval ("lower" at every threshold, or "at the threshold only")."""
        def at(n: int) -> Score:
            return self.rp_end[self.n_train.index(n)]
        bottom = self.lowest()
        lines = []
        for end in (self.n_train[0], self.n_train[-1]):
            a, b = at(bottom), at(end)
            lines.append(f"RP at N={bottom} {a.interval()} vs N={end} {b.interval()}: "
                         f"{rule.ordering(a.similarities, b.similarities)} across the threshold's interval; "
                         f"medians {_median_interval(a)} vs {_median_interval(b)}")
        return "\n".join(lines)


    def headline(self) -> str:
        """RP at the smallest N, at the dip's bottom (:meth:`lowest`) and at the largest N, with intervals."""
        ends = [(n, self.rp_end[self.n_train.index(n)]) for n in (self.n_train[0], self.lowest(), self.n_train[-1])]
        return (f"RP {self.pair}: " + ", ".join(f"{s.interval()} at N={n}" for n, s in ends)
                + f" (lowest at N={ends[1][0]})")


def longer_vs_wide(sweep, longer: TrainingTimeStudy, rule: SameImageRule) -> str:
    """For each N of ``longer`` (the small width trained past the sweep's length, a
    :class:`TrainingTimeStudy`) that ``sweep`` (a two-width :class:`reprodiff.regimes.SweepResult`)
    also has: RP of its finished samples with the wide width's finished ones from the same seeds, and
    its GL at the last two snapshots, one line each."""
    small, wide = sweep.sizes
    lines = []
    for n in longer.n_train:
        if n not in sweep.n_train:
            continue
        last, before = longer.steps[-1], longer.steps[-2]
        gl = Scores(longer.gl[n]).values
        mine = longer.samples[(n, last)]
        other = Samples(sweep.samples[(wide, n)].by_seed(mine.seeds.tolist()), mine.seeds)  # the same seeds
        rp = rp_score(mine, other, rule.descriptor, threshold=rule)
        lines.append(f"N={n}: {short_name(small)} trained {last:,} steps (GL {gl[-2]:.2f} at step {before:,}, "
                     f"{gl[-1]:.2f} at {last:,}) vs {short_name(wide)}: RP {rp.interval()}")
    return "\n".join(lines)


def last_snapshot_gl(sweep, label: str, seeds: Sequence[int] | range, rule: SameImageRule, *, sampler: str = "heun",
                     steps: int = 18, batch_size: int = 256) -> dict[int, tuple[int, float]]:
    """GL of size ``label``'s models of ``sweep`` (a :class:`reprodiff.configs.SweepConfig`) at their last
    snapshot, ``{N: (step, GL)}`` for every N whose model saved snapshots: beside the finished model's
    GL it tells whether that width had settled by the end of training (:func:`dip_study`'s
    ``wide_last``). The models must be trained."""
    desc = get_descriptor(rule.descriptor)
    out = {}
    for (size, n), cfg in sweep.model_configs().items():
        if size != label or not cfg.snapshots:
            continue
        train = training_data(cfg)[0].images
        step = max(cfg.snapshots)
        (s,) = sample_at_steps(cfg, [step], seeds, tuple(train.shape[1:]), name=f"{short_name(label)} N={n} step {step}",
                               sampler=sampler, sampling_steps=steps, batch_size=batch_size)
        out[n] = (step, gl_score(s, train, desc, threshold=rule).value)
    return out


def dip_study(sweep, times: TrainingTimeStudy, rule: SameImageRule, *, tolerance: float = 0.05,
              wide_last: Mapping[int, tuple[int, float]] | None = None) -> DipStudy:
    """From a two-width :class:`reprodiff.regimes.SweepResult` ``sweep`` and the small width's
    :class:`TrainingTimeStudy` ``times``: RP of the two finished widths at every N of the sweep,
    both widths' GL and GL = 0.5 crossings, and, at the N with snapshots, the small width's GL at
    its last snapshot before the end beside its final GL (stable when they differ by at most
    ``tolerance``). ``wide_last`` (:func:`last_snapshot_gl` of the wide width) adds the same check for
    the wide width. ``rule`` is the same-image rule the sweep was scored with. Models are named by
    their short names (:attr:`reprodiff.configs.SizeLabel.short`)."""
    small, wide = sweep.sizes
    s_small, s_wide = short_name(small), short_name(wide)
    if rule.threshold != sweep.rule.threshold:
        raise ValueError(f"the sweep was scored at threshold {sweep.rule.threshold}, not {rule.threshold}")
    settle = {}
    if len(times.steps) >= 2:
        for n in times.n_train:
            if n in sweep.n_train:
                gl = Scores(times.gl[n]).values
                settle[n] = (times.steps[-2], gl[-2], gl[-1])
    crossings = {f"{s_small} (end)": sweep.gl_crossing(small, 0.5), f"{s_wide} (end)": sweep.gl_crossing(wide, 0.5)}
    pair = next(iter(sweep.rp))
    gl = {s_small: Scores(sweep.gl[small]).values, s_wide: Scores(sweep.gl[wide]).values}
    settle_wide = {n: (step, before, gl[s_wide][sweep.n_train.index(n)])
                   for n, (step, before) in (wide_last or {}).items() if n in sweep.n_train}
    return DipStudy(list(sweep.n_train), s_small, s_wide, pair, Scores(sweep.rp[pair]), gl, crossings, settle,
                    tolerance, settle_wide)
