"""The schema of the book's experiments: one frozen config class per chapter's experiment.

Each class names what its chapter trains (:class:`reprodiff.training.TrainConfig` recipes, sweeps over
training-set size, VAE controls) and how it measures: one :class:`Sampling` (sampler and steps, seeds,
descriptor, batch size), whose fields read as the config's own (``cfg.n_seeds``). The
values of every profile (``cpu``, ``gpu``, ``paper``, ``smoke``) live in :mod:`reprodiff.profiles`;
``get_config`` there picks one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import checks
from .controls import VAEConfig
from .training import TrainConfig

__all__ = ["Sampling", "SameNoiseConfig", "ZooConfig", "SizeLabel", "short_name", "SweepConfig", "RegimesConfig",
           "TheoryConfig", "AgreementConfig", "InverseTask", "InverseConfig", "ExplorerConfig", "FineTuneConfig", "ConditionalConfig"]


@dataclass(frozen=True)
class Sampling:
    """How a chapter samples and scores: ``n_seeds`` seeds (0 to ``n_seeds - 1``) through ``sampler`` with
    ``steps`` steps, ``batch_size`` samples at a time, compared under ``descriptor``."""

    n_seeds: int
    sampler: str = "heun"
    steps: int = 18
    descriptor: str = "pixel"
    batch_size: int = 256

    @property
    def label(self) -> str:
        """``"heun-18"``."""
        return f"{self.sampler}-{self.steps}"

    @property
    def seeds(self) -> str:
        """``"seeds 0-511"``."""
        return f"seeds 0-{self.n_seeds - 1}"

    def summary(self, sep: str = ", ") -> str:
        """``"sampling: heun-18, seeds 0-511"`` (``sep`` between the two): a chapter summary's sampling line."""
        return f"sampling: {self.label}{sep}{self.seeds}"

    @property
    def scored(self) -> str:
        """``"pixel descriptor, the book's same-image rule"``: how samples are compared."""
        return f"{self.descriptor} descriptor, the book's same-image rule"

    @property
    def similarity(self) -> str:
        """The summary line saying how samples are compared."""
        return f"similarity: {self.scored}"


class _Chapter:
    """A chapter's config: it runs under a ``profile`` (with its ``notes``), the first line of its ``summary()``."""

    profile: str
    notes: str

    @property
    def profile_line(self) -> str:
        """``"profile: cpu  (8x8 digits, offline)"``."""
        return f"profile: {self.profile}  ({self.notes})"


def _of_sampling(name: str) -> property:
    return property(lambda self: getattr(self.sampling, name), doc=f"``sampling.{name}``")


class _Measured(_Chapter):
    """A chapter config that samples and scores with its own :class:`Sampling` (``sampling``), whose
    fields read as the config's own: ``cfg.n_seeds``, ``cfg.sampler``, ``cfg.descriptor``, ``cfg.batch_size``."""

    sampling: Sampling
    n_seeds, sampler = _of_sampling("n_seeds"), _of_sampling("sampler")
    descriptor, batch_size = _of_sampling("descriptor"), _of_sampling("batch_size")


class _Sampled(_Measured):
    """:class:`_Measured` with ``cfg.steps``, the sampler's steps (a fine-tune's ``steps`` are its training steps)."""

    steps = _of_sampling("steps")


class _OnRegimes(_Chapter):
    """A chapter on chapter 3's models (``regimes``): it samples them as chapter 3 does, on its own ``n_seeds``."""

    regimes: RegimesConfig
    n_seeds: int

    @property
    def sampling(self) -> Sampling:
        return replace(self.regimes.sampling, n_seeds=self.n_seeds)


@dataclass(frozen=True)
class SameNoiseConfig(_Sampled):
    """Chapter 1: pairs of different models, sampled from the same seeds with a deterministic sampler.

    ``pairs`` are independently trained (architecture A, architecture B) pairs: the first is the
    chapter's main pair, the others repeat it with other training seeds. ``same_arch`` is a pair of
    one architecture trained from two seeds.
    """

    profile: str
    models: dict[str, TrainConfig]
    pairs: tuple[tuple[str, str], ...]
    same_arch: tuple[str, str]
    sampling: Sampling
    grid_seeds: int = 10
    notes: str = ""

    def __post_init__(self) -> None:
        unknown = {n for p in (*self.pairs, self.same_arch) for n in p} - set(self.models)
        if unknown or not self.pairs:
            raise ValueError(f"pairs must name models of the config (unknown: {sorted(unknown)})")

    @property
    def dataset(self) -> str:
        return next(iter(self.models.values())).dataset

    def summary(self) -> str:
        lines = [self.profile_line]
        for name, m in self.models.items():
            n = "all" if m.n_train is None else m.n_train
            lines.append(f"  model {name!r}: {m.backbone} / {m.objective} objective, {m.dataset} (N={n}), "
                         f"{m.steps:,} steps x batch {m.batch_size}, seed {m.seed}")
        lines.append("pairs: " + "; ".join(f"{a} vs {b}" for a, b in self.pairs)
                     + f"; same architecture: {self.same_arch[0]} vs {self.same_arch[1]}")
        lines.append(f"sampling: {self.sampler}, {self.steps} steps, {self.sampling.seeds}")
        lines.append(self.sampling.similarity)
        return "\n".join(lines)


@dataclass(frozen=True)
class ZooConfig(_Sampled):
    """Chapter 2: a model zoo differing in architecture and objective, samplers, and two controls."""

    profile: str
    models: dict[str, TrainConfig]
    sampling: Sampling
    sampler_model: str = ""
    samplers: tuple[str, ...] = ("euler", "ddim", "heun", "dpmpp-2m")
    step_counts: tuple[int, ...] = (2, 3, 5, 8, 12, 18, 30)
    reference_steps: int = 100
    #: seeds of the sampler study (the first ones of the chapter's); 0: all of them
    sampler_seeds: int = 0
    vaes: dict[str, VAEConfig] | None = None
    pretrained: dict[str, str] | None = None  # name -> Hub id (or folder) of a public DDPM checkpoint
    grid_seeds: int = 8
    notes: str = ""

    def __post_init__(self) -> None:
        checks.first_count("sampler_seeds", self.sampler_seeds, self.n_seeds, "n_seeds")

    @property
    def sampler_seed_count(self) -> int:
        """How many of the chapter's seeds the sampler study uses."""
        return self.sampler_seeds or self.n_seeds

    def summary(self) -> str:
        lines = [self.profile_line, f"{len(self.models)} diffusion models:"]
        for name, m in self.models.items():
            lines.append(f"  {name:16s} {m.backbone:13s} {m.objective:4s} objective, {m.steps:,} steps x "
                         f"batch {m.batch_size}, seed {m.seed}")
        lines.append(f"{self.sampling.summary()}; sampler study on "
                     f"{self.sampler_model!r}, seeds 0-{self.sampler_seed_count - 1}: {', '.join(self.samplers)} "
                     f"at {self.step_counts} steps vs heun-{self.reference_steps} reference")
        if self.vaes:
            lines.append("non-diffusion control: " + ", ".join(f"{k} ({v.hidden} hidden, latent {v.latent})"
                                                               for k, v in self.vaes.items()))
        if self.pretrained:
            lines.append("public checkpoints, not trained here: " + ", ".join(f"{k} ({v})" for k, v in self.pretrained.items()))
        lines.append(self.sampling.similarity)
        return "\n".join(lines)


class SizeLabel(str):
    """A model size's display label, ``"UNet-XS (0.16M)"``, that keeps its parts as data: ``short``
    (``"UNet-XS"``, for narrow tables and legends) and ``params`` (``"0.16M"``, its parameter count).
    It is the plain label string (equal, hashed and printed as one), so it keys dicts as before."""

    short: str
    params: str

    def __new__(cls, short: str, params: str):
        label = super().__new__(cls, f"{short} ({params})")
        label.short, label.params = short, params
        return label

    def __getnewargs__(self) -> tuple[str, str]:  # pickle (worker pools) rebuilds it from its parts
        return self.short, self.params


def short_name(label: str) -> str:
    """The short name of a size label (:attr:`SizeLabel.short`); a plain string is its own short name."""
    return label.short if isinstance(label, SizeLabel) else label


@dataclass(frozen=True)
class SweepConfig:
    """A sweep over nested training-set sizes: one model per (size label, N).

    ``base`` fixes everything but the backbone, ``n_train`` and the seed; model size ``i`` (in the
    order of ``sizes``) trains with seed ``i``, so the two models at one N differ in width *and*
    initialisation. ``base.holdout`` images are kept out of every subset (they calibrate the
    same-image rule and GL's ceiling). ``replicates`` are extra ``(N, size label, seed)`` models
    that repeat a point of the sweep with other training seeds. The models below the largest N also
    save their EMA weights at ``snapshots`` (training steps; chapter 5 follows the first size's GL
    and RP through training with them, and checks from the last one whether each width's GL had
    settled). The largest N is left out because its model is the one the other chapters share (a
    snapshot schedule is part of a model's hash).
    """

    name: str
    base: TrainConfig
    sizes: dict[str, str]  # label -> backbone name
    n_train: tuple[int, ...]
    replicates: tuple[tuple[int, str, int], ...] = ()
    snapshots: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for n, label, seed in self.replicates:
            if n not in self.n_train or label not in self.sizes:
                raise ValueError(f"replicate {(n, label, seed)} is not a point of sweep {self.name!r}")
            if seed == list(self.sizes).index(label):
                raise ValueError(f"replicate {(n, label, seed)} repeats the sweep's own seed")

    def _config(self, label: str, n: int, seed: int) -> TrainConfig:
        snapshots = self.snapshots if n != max(self.n_train) else ()
        return replace(self.base, backbone=self.sizes[label], n_train=n, seed=seed, snapshots=snapshots)

    def model_configs(self) -> dict[tuple[str, int], TrainConfig]:
        return {(label, n): self._config(label, n, i) for i, label in enumerate(self.sizes) for n in self.n_train}

    def replicate_configs(self) -> dict[tuple[str, int, int], TrainConfig]:
        """``{(size label, N, seed): config}`` of the extra training seeds."""
        return {(label, n, seed): self._config(label, n, seed) for n, label, seed in self.replicates}

    def reference(self) -> TrainConfig:
        """The split of the largest training set: the one the same-image rule is calibrated on."""
        return replace(self.base, n_train=max(self.n_train))

    def summary(self) -> str:
        b = self.base
        sizes = ", ".join(f"{k} ({v})" for k, v in self.sizes.items())
        reps = sorted({n for n, _, _ in self.replicates})
        extra = f"; extra training seeds at N = {', '.join(map(str, reps))}" if reps else ""
        return (f"{self.name}: N = {', '.join(map(str, self.n_train))} (nested subsets, {b.holdout} held out); "
                f"models: {sizes}; {b.objective} objective, {b.steps:,} steps x batch {b.batch_size}, lr {b.lr:g}"
                f"{extra}")


@dataclass(frozen=True)
class RegimesConfig(_Sampled):
    """Chapter 3: RP and GL against training-set size, on real data and on MoLRG.

    RP and GL use one same-image rule per dataset (:func:`reprodiff.experiments.book_rule`),
    calibrated on the held-out images against the sweep's largest training set. Regimes are read
    off the GL curves:
    memorization where every model's GL <= ``memorization_gl``, generalization where every model's
    GL >= ``generalization_gl``.
    """

    profile: str
    sweeps: tuple[SweepConfig, ...]
    sampling: Sampling = Sampling(n_seeds=256)
    memorization_gl: float = 0.1
    generalization_gl: float = 0.8
    grid_seeds: int = 6
    notes: str = ""

    def sweep(self, name: str) -> SweepConfig:
        for s in self.sweeps:
            if s.name == name:
                return s
        raise KeyError(f"no sweep {name!r}; this profile has {', '.join(s.name for s in self.sweeps)}")

    def sweep_kwargs(self, sweep: SweepConfig) -> dict:
        """Keyword arguments of :func:`reprodiff.regimes.regime_sweep` for one of the sweeps."""
        return dict(name=sweep.name, sampler=self.sampler, steps=self.steps, batch_size=self.batch_size)

    def descriptor_for(self, sweep: SweepConfig) -> str:
        """MoLRG is always scored in pixel space: it has no images for SSCD to see."""
        return "pixel" if sweep.base.dataset == "molrg" else self.descriptor

    def all_models(self) -> list[TrainConfig]:
        return [c for s in self.sweeps for c in (*s.model_configs().values(), *s.replicate_configs().values())]

    def summary(self) -> str:
        lines = [self.profile_line]
        lines += [s.summary() for s in self.sweeps]
        lines.append(self.sampling.summary())
        lines.append(f"similarity: {self.descriptor} descriptor (MoLRG: pixel); RP and GL share the book's "
                     "same-image rule, one threshold per dataset")
        lines.append(f"regimes: memorization where GL <= {self.memorization_gl} for every model, generalization where "
                     f"GL >= {self.generalization_gl}")
        return "\n".join(lines)


@dataclass(frozen=True)
class TheoryConfig(_OnRegimes):
    """Chapter 4: trained models against the analytic denoisers, on chapter 3's models."""

    profile: str
    regimes: RegimesConfig
    n_seeds: int = 256
    trajectory_seeds: int = 64
    explorer_seeds: int = 64
    notes: str = ""

    def summary(self) -> str:
        r = self.regimes
        return "\n".join([self.profile_line, "models: chapter 3's sweeps (cached when it ran)",
                          *[s.summary() for s in r.sweeps],
                          f"{self.sampling.summary()}; trajectories for "
                          f"{self.trajectory_seeds} seeds; explorer over seeds 0-{self.explorer_seeds - 1}",
                          f"similarity: {r.descriptor} descriptor (MoLRG: pixel), the book's same-image rule"])


@dataclass(frozen=True)
class AgreementConfig(_OnRegimes):
    """Chapter 5: what makes two networks agree, on chapter 3's sweep (its first, real-image sweep).

    ``pair_n``: training-set sizes at which two models of ``size`` (seeds ``pair_seeds``) train on the
    *same* subset and on *disjoint* subsets (the second model's subset starts where the first's
    ends, ``subset_offset=N``); where the sweep already has the point and the replicate they come
    from chapter 3's cache. The snapshots of the sweep's models follow GL and RP through training.
    ``leaderboard_n``: where the closed-form denoisers are compared with the trained model from the
    same noise (``n_seeds`` seeds; their free parameters, patch sizes per noise level and D*'s
    smoothing, are chosen on ``calibration_seeds`` seeds from ``calibration_start`` on, which the
    comparison never uses); the equivariant local denoiser, whose cost grows like ``N``, runs at
    ``equivariant_n`` only, and the fixed 3x3 equivariant one at ``fixed_patch_n`` (a part of
    ``equivariant_n``) only; the blend of the position-bound local denoiser and the Gaussian denoiser
    takes the weight among ``blend_weights`` that the calibration seeds prefer. ``onset_n``: extra
    training-set sizes below the sweep's largest, trained with the sweep's recipe and snapshots
    (first size, first seed) for the training-time study only, so the memorization onset is
    measured at more N than the sweep has. ``extend_n``: N at which the same model also trains for
    ``extend_steps`` steps (with the sweep's snapshots plus one every 200 steps after the sweep's
    last step), to test the onset line beyond the sweep's training length; its first
    ``sweep.base.steps`` steps are the sweep model's (constant learning rate after
    warm-up), but it is a separate training run.
    """

    profile: str
    regimes: RegimesConfig
    pair_n: tuple[int, ...]
    leaderboard_n: tuple[int, ...]
    equivariant_n: tuple[int, ...] = ()
    fixed_patch_n: tuple[int, ...] = ()
    onset_n: tuple[int, ...] = ()
    extend_n: tuple[int, ...] = ()
    extend_steps: int = 0
    pair_seeds: tuple[int, int] = (0, 2)
    patch_sizes: tuple[int, ...] = (1, 3, 5, 7, 9, 15)
    smoothing: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)  # per-pixel standard deviations of the input perturbation
    blend_weights: tuple[float, ...] = (0.25, 0.5, 0.75)  # weight of the local denoiser in its blend with the Gaussian
    n_seeds: int = 128
    calibration_seeds: int = 32
    calibration_start: int = 10_000
    notes: str = ""

    def __post_init__(self) -> None:
        sweep = self.sweep
        stray = [n for n in (*self.leaderboard_n, *self.equivariant_n) if n not in sweep.n_train]
        if stray or not set(self.equivariant_n) <= set(self.leaderboard_n):
            raise ValueError(f"leaderboard N must be points of sweep {sweep.name!r} ({sweep.n_train}), and the "
                             f"equivariant N a part of them; got {self.leaderboard_n} and {self.equivariant_n}")
        if not set(self.fixed_patch_n) <= set(self.equivariant_n):
            raise ValueError(f"the fixed-patch N must be a part of the equivariant N {self.equivariant_n}; "
                             f"got {self.fixed_patch_n}")
        if not all(0 < w < 1 for w in self.blend_weights):
            raise ValueError(f"blend weights must lie strictly between 0 and 1, got {self.blend_weights}")
        if any(n >= max(sweep.n_train) or n < 1 for n in self.onset_n):
            raise ValueError(f"onset N must lie between 1 and the sweep's largest N ({max(sweep.n_train)}), "
                             f"got {self.onset_n}")
        if self.extend_n and (self.extend_steps <= sweep.base.steps
                              or any(n >= max(sweep.n_train) or n < 1 for n in self.extend_n)):
            raise ValueError(f"extend_n needs N below the sweep's largest ({max(sweep.n_train)}) and extend_steps "
                             f"beyond its {sweep.base.steps} steps; got {self.extend_n} and {self.extend_steps}")

    @property
    def sweep(self) -> SweepConfig:
        return self.regimes.sweeps[0]

    @property
    def size(self) -> str:
        """The model size the chapter follows: the sweep's first (the one with snapshots)."""
        return next(iter(self.sweep.sizes))

    def pair_configs(self, n: int) -> dict[str, TrainConfig]:
        """``{"shared a", "shared b", "disjoint b"}`` at ``n``: disjoint b is shared b on the next N images."""
        a, b = (self.sweep._config(self.size, n, seed) for seed in self.pair_seeds)
        return {"shared a": a, "shared b": b, "disjoint b": replace(b, subset_offset=n)}

    @property
    def pair_models(self) -> dict[str, TrainConfig]:
        """The pairs' models, ``{"N=16 shared a": config, ...}`` (some are chapter 3's)."""
        return {f"N={n} {k}": v for n in self.pair_n for k, v in self.pair_configs(n).items()}

    @property
    def onset_sweep(self) -> SweepConfig:
        """The sweep with ``onset_n`` added, each also with the second pair seed (``pair_seeds[1]``),
        so the onset line can be fitted for two training seeds: its models at the sweep's own N are
        chapter 3's."""
        s = self.sweep
        extra = tuple((n, self.size, self.pair_seeds[1]) for n in self.onset_n
                      if n not in s.n_train and (n, self.size, self.pair_seeds[1]) not in s.replicates)
        return replace(s, n_train=tuple(sorted({*s.n_train, *self.onset_n})), replicates=(*s.replicates, *extra))

    @property
    def onset_models(self) -> dict[str, TrainConfig]:
        """The training-time study's extra models, ``{"N=32 onset": config, "N=32 onset seed 2": config,
        ...}``: the sweep's recipe at each of ``onset_n`` for the first seed and the second pair seed."""
        s = self.onset_sweep
        configs, reps = s.model_configs(), s.replicate_configs()
        seed = self.pair_seeds[1]
        out = {}
        for n in self.onset_n:
            if n not in self.sweep.n_train:
                out[f"N={n} onset"] = configs[(self.size, n)]
                out[f"N={n} onset seed {seed}"] = reps[(self.size, n, seed)]
        return out

    @property
    def extended_sweep(self) -> SweepConfig:
        """The sweep at ``extend_n`` (and its largest N, untrained here), ``extend_steps`` long."""
        s = self.sweep
        later = tuple(range(s.base.steps, self.extend_steps, 200))
        return replace(s, base=replace(s.base, steps=self.extend_steps), n_train=(*self.extend_n, max(s.n_train)),
                       replicates=(), snapshots=tuple(sorted({*s.snapshots, *later})))

    @property
    def extended_models(self) -> dict[str, TrainConfig]:
        """``{"N=64, 1200 steps": config, ...}``: the models trained past the sweep's length."""
        if not self.extend_n:  # no extended sweep to build (extend_steps is unset)
            return {}
        configs = self.extended_sweep.model_configs()
        return {f"N={n}, {self.extend_steps} steps": configs[(self.size, n)] for n in self.extend_n}

    @property
    def models(self) -> dict[str, TrainConfig]:
        """Every model this chapter trains beyond chapter 3's sweep: the pairs', the onset and the
        extended models."""
        return {**self.pair_models, **self.onset_models, **self.extended_models}

    def summary(self) -> str:
        s = self.sweep
        return "\n".join([
            self.profile_line,
            f"models: chapter 3's {s.name} sweep (cached when it ran); {self.size} snapshots at steps "
            f"{', '.join(map(str, s.snapshots))} of {s.base.steps:,}",
            f"pairs: {self.size}, seeds {self.pair_seeds}, on the same and on disjoint subsets at N = "
            f"{', '.join(map(str, self.pair_n))}",
            *([f"memorization onset: also {self.size} at N = {', '.join(map(str, self.onset_n))} (same recipe, "
               "snapshots)"] if self.onset_n else []),
            *([f"onset line tested at N = {', '.join(map(str, self.extend_n))}: {self.size} trained "
               f"{self.extend_steps:,} steps"] if self.extend_n else []),
            f"closed forms vs the trained model at N = {', '.join(map(str, self.leaderboard_n))} (equivariant local "
            f"denoiser at N = {', '.join(map(str, self.equivariant_n)) or 'none'}, its fixed 3x3 patch at N = "
            f"{', '.join(map(str, self.fixed_patch_n)) or 'none'}); parameters chosen on "
            f"{self.calibration_seeds} seeds from {self.calibration_start}",
            f"{self.sampling.summary()}; {self.sampling.scored}"])


class _ZooChapter(_Chapter):
    """What chapters 7 and 9 share: they run chapter 2's models (``models``) under a ``profile``."""

    @property
    def dataset(self) -> str:
        return next(iter(self.models.values())).dataset

    def _header(self) -> list[str]:
        lines = [self.profile_line, "models (chapter 2's, from the cache when it ran):"]
        return lines + [f"  {name:14s} {m.backbone} / {m.objective}, seed {m.seed}" for name, m in self.models.items()]


@dataclass(frozen=True)
class InverseTask:
    """One inverse problem: an operator of :data:`reprodiff.inverse.OPERATORS` with its arguments (the
    DPS step scale is chosen per task on images that are not scored: ``InverseConfig.tuning_zetas``)."""

    operator: str
    kwargs: dict


@dataclass(frozen=True)
class InverseConfig(_ZooChapter, _Sampled):
    """Chapter 7: the same inverse problems solved by several models from the same noise (chapter 2's
    models, through the cache), with closed-form baselines, a stochastic control and a sensitivity
    study of the DPS step scale and the number of steps on ``sensitivity_models``.

    Each task's step scale is the one of ``tuning_zetas`` whose reconstructions by the two
    ``sensitivity_models`` explain the measurement closest to its noise level
    (:func:`reprodiff.experiments.choose_zeta`), on ``tuning_seeds`` held-out images after the
    ``n_seeds`` scored ones.
    ``same_arch`` names two of ``models`` that differ only in the training seed (the same-architecture
    reference); ``posterior_samples`` reconstructions of the first model are averaged per measurement,
    on the first ``posterior_seeds`` scored images (0: all ``n_seeds`` of them)."""

    profile: str
    models: dict[str, TrainConfig]
    tasks: dict[str, InverseTask]
    sampling: Sampling  # the DPS solver's: DPM-Solver++(2M) with a measurement step
    noise_std: float = 0.05
    zetas: tuple[float, ...] = (0.0, 0.3, 0.5, 1.0, 2.0)
    step_counts: tuple[int, ...] = (5, 10, 20, 40)
    sensitivity_task: str = "box inpainting"
    sensitivity_models: tuple[str, str] = ("", "")
    sensitivity_seeds: int = 128
    tuning_zetas: tuple[float, ...] = (0.3, 0.5, 0.7, 1.0, 2.0, 3.0)
    tuning_seeds: int = 41
    posterior_samples: int = 4
    posterior_seeds: int = 0
    same_arch: tuple[str, str] = ("", "")
    grid_seeds: int = 8
    notes: str = ""

    def __post_init__(self) -> None:
        if len(self.models) < 2:
            raise ValueError("an inverse-problem study compares at least two models")
        if self.sensitivity_task not in self.tasks or not set(self.sensitivity_models) <= set(self.models):
            raise ValueError("the sensitivity study must name one of the config's tasks and two of its models")
        if not set(self.same_arch) <= set(self.models) or self.same_arch[0] == self.same_arch[1]:
            raise ValueError("same_arch must name two of the config's models")
        checks.first_count("posterior_seeds", self.posterior_seeds, self.n_seeds, "n_seeds")

    def summary(self) -> str:
        lines = self._header()
        lines.append(f"tasks (measurement noise sigma_y = {self.noise_std:g}):")
        lines += [f"  {name:20s} {t.operator} {t.kwargs}" for name, t in self.tasks.items()]
        lines.append(f"solver: deterministic DPS with DPM-Solver++(2M), {self.steps} steps")
        lines.append(f"{self.sampling.seeds}: seed k reconstructs held-out image k (scored)")
        lines.append(f"zeta per task: of {self.tuning_zetas}, the residual closest to the noise floor")
        lines.append(f"  on held-out images {self.n_seeds}-{self.n_seeds + self.tuning_seeds - 1} (not scored)")
        lines.append(f"same architecture, other training seed: {' vs '.join(self.same_arch)}")
        on = f"seeds 0-{self.posterior_seeds - 1}" if self.posterior_seeds else "every scored seed"
        lines.append(f"posterior mean estimate: the mean of {self.posterior_samples} reconstructions of "
                     f"{next(iter(self.models))}, on {on}")
        lines.append(f"sensitivity on {self.sensitivity_task}, {' vs '.join(self.sensitivity_models)}:")
        lines.append(f"  zeta in {self.zetas} x steps in {self.step_counts}, {self.sensitivity_seeds} seeds")
        lines.append(self.sampling.similarity)
        return "\n".join(lines)


@dataclass(frozen=True)
class ExplorerConfig(_ZooChapter, _Sampled):
    """Chapter 9: the noise space explored with chapter 2's models (``models``), a cheap model as a
    proxy for an expensive one, and a replication audit of chapter 3's models at the smallest and
    largest training sets (``audit``: label -> model)."""

    profile: str
    models: dict[str, TrainConfig]
    audit: dict[str, TrainConfig]
    proxy: tuple[str, str]  # (cheap, expensive), names in ``models``
    proxy_target: int = 3
    sampling: Sampling = Sampling(n_seeds=512)
    gallery_seeds: int = 10
    interpolation_pairs: int = 64
    frames: int = 9
    notes: str = ""

    def __post_init__(self) -> None:
        if len(self.models) < 2:
            raise ValueError("the explorer compares at least two models")
        if not set(self.proxy) <= set(self.models) or self.proxy[0] == self.proxy[1]:
            raise ValueError("the proxy study names two different models of the config (cheap, expensive)")
        if self.frames < 2 or self.interpolation_pairs < 1:
            raise ValueError("an interpolation needs at least 2 frames and one seed pair")

    def summary(self) -> str:
        lines = self._header()
        lines.append("replication audit (chapter 3's models):")
        lines += [f"  {name:16s} {m.backbone}, seed {m.seed}" for name, m in self.audit.items()]
        lines.append(f"{self.sampling.summary('; ')}; "
                     f"{self.interpolation_pairs} interpolation paths of {self.frames} frames")
        lines.append(f"proxy: {self.proxy[0]} chooses seeds of class {self.proxy_target} for {self.proxy[1]}")
        lines.append(self.sampling.similarity)
        return "\n".join(lines)


@dataclass(frozen=True)
class FineTuneConfig(_Measured):
    """Chapter 8: one ``base`` model fine-tuned to the classes ``target``, fully (two seeds) and with
    LoRA at several ``ranks``, against two models trained from scratch on the target classes.

    Every fine-tune trains ``steps`` steps on every non-held-out image of the target classes and
    saves its EMA at ``snapshots`` (the drift from the base); the from-scratch models are the
    base's recipe on the target classes, from two seeds (their RP is the baseline of two models that
    share the data but not the start). :attr:`models` lists them all, the base first.
    """

    profile: str
    base: TrainConfig
    target: tuple[int, ...]
    steps: int
    lr: float
    lora_lr: float
    ranks: tuple[int, ...]
    snapshots: tuple[int, ...]
    warmup: int = 50
    seeds: tuple[int, int] = (0, 1)
    scratch_seeds: tuple[int, int] = (7, 8)
    sampling: Sampling = Sampling(n_seeds=512)
    grid_seeds: int = 10
    notes: str = ""

    def __post_init__(self) -> None:
        if not self.ranks or min(self.ranks) < 1:
            raise ValueError(f"LoRA ranks must be positive, got {self.ranks}")
        if len(set(self.seeds)) != 2 or len(set(self.scratch_seeds)) != 2:
            raise ValueError("two full fine-tunes and two from-scratch models, each pair from two seeds")
        self.fine_tune(max(self.ranks))  # TrainConfig checks the target classes and the snapshot steps

    @property
    def dataset(self) -> str:
        return self.base.dataset

    @property
    def sampling_steps(self) -> int:
        """The sampler's steps (``steps`` are the fine-tune's training steps)."""
        return self.sampling.steps

    def fine_tune(self, rank: int = 0, seed: int | None = None) -> TrainConfig:
        """The fine-tune of the base: full (``rank`` 0) or LoRA of that rank."""
        return replace(self.base, base=self.base, classes=self.target, n_train=None, steps=self.steps,
                       lr=self.lora_lr if rank else self.lr, warmup=self.warmup, lora_rank=rank,
                       seed=self.seeds[0] if seed is None else seed, snapshots=self.snapshots,
                       checkpoint_every=max(self.steps // 2, 1))

    @property
    def models(self) -> dict[str, TrainConfig]:
        out = {"base": self.base}
        out.update({f"full s{s}": self.fine_tune(0, s) for s in self.seeds})
        out.update({f"LoRA r{r}": self.fine_tune(r) for r in self.ranks})
        out.update({f"scratch s{s}": replace(self.base, classes=self.target, n_train=None, seed=s)
                    for s in self.scratch_seeds})
        return out

    def summary(self) -> str:
        b = self.base
        lines = [self.profile_line,
                 f"base: {b.backbone} / {b.objective}, seed {b.seed}: {b.steps:,} steps on {b.n_train or 'all'} "
                 f"{b.dataset} images, every class",
                 f"target: classes {', '.join(map(str, self.target))} (every training image of them)",
                 f"full fine-tuning: seeds {self.seeds[0]} and {self.seeds[1]}, {self.steps} steps, lr {self.lr:g}",
                 f"LoRA (peft) ranks {', '.join(map(str, self.ranks))}: {self.steps} steps, lr {self.lora_lr:g}",
                 f"snapshots at steps {', '.join(map(str, self.snapshots))}",
                 f"from scratch on the target: the base's recipe ({b.steps:,} steps), seeds "
                 f"{self.scratch_seeds[0]} and {self.scratch_seeds[1]}",
                 self.sampling.summary("; "), self.sampling.similarity]
        return "\n".join(lines)


@dataclass(frozen=True)
class ConditionalConfig(_Sampled):
    """Chapter 6: class-conditional models (label dropout, classifier-free guidance) from the same noise.

    ``models`` are the conditional models, each the conditional twin of the ``unconditional`` model
    of the same name (same recipe and training seed, plus labels; chapter 2's models on the cpu
    profile, so they come from the cache). ``regime_models`` repeat chapter 3's sweep points at each
    of ``regime_n`` (one N or several; the first is the one the chapter shows in pictures) with and
    without labels, from ``regime_seeds``. Seed k draws class
    ``k % num_classes``. ``text_models`` (gpu profile) are diffusers text-to-image checkpoints
    sampled from the same latent noise and ``prompts``.
    """

    profile: str
    models: dict[str, TrainConfig]
    unconditional: dict[str, TrainConfig]
    regime_sweep: SweepConfig
    regime_n: tuple[int, ...]
    regime_seeds: tuple[int, int] = (0, 2)  # the cpu sweep has both at N = 128 (point and replicate)
    #: how many of the chapter's seeds (the first ones) the regimes section samples; 0: all of them
    regime_seeds_count: int = 0
    guidance: float = 1.0
    guidance_scales: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
    #: the shared-null control (one unconditional estimate guides every model): its scales and its
    #: seeds (the first ``control_seeds`` of the chapter's)
    control_scales: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    control_seeds: int = 250
    sampling: Sampling = Sampling(n_seeds=500, batch_size=250)
    grid_seeds: int = 10
    text_models: dict[str, str] | None = None
    prompts: tuple[str, ...] = ()
    text_seeds: int = 0
    text_steps: int = 50
    text_guidance: float = 7.5
    notes: str = ""

    def __post_init__(self) -> None:
        if len(self.models) < 2 or set(self.models) != set(self.unconditional):
            raise ValueError("at least two conditional models, each named in unconditional= too")
        if not all(m.conditional for m in self.models.values()) or any(m.conditional for m in self.unconditional.values()):
            raise ValueError("models= must be class-conditional and unconditional= must not")
        if self.guidance not in self.guidance_scales or min(self.guidance_scales) != 0:
            raise ValueError("guidance_scales must include 0 (no guidance) and the default guidance")
        if not set(self.control_scales) <= set(self.guidance_scales) or not 0 < self.control_seeds <= self.n_seeds:
            raise ValueError("the shared-null control runs on some of guidance_scales and at most n_seeds seeds")
        checks.first_count("regime_seeds_count", self.regime_seeds_count, self.n_seeds, "n_seeds")
        if isinstance(self.regime_n, int):
            object.__setattr__(self, "regime_n", (self.regime_n,))
        if not self.regime_n or len(set(self.regime_n)) != len(self.regime_n):
            raise ValueError(f"regime_n must name one or more distinct N, got {self.regime_n}")
        for n in self.regime_n:
            self.regime_models(n)  # the sweep must have the point (and the replicate) asked for

    @property
    def dataset(self) -> str:
        return next(iter(self.models.values())).dataset

    @property
    def regime_seed_count(self) -> int:
        """How many of the chapter's seeds (the first ones) the regimes section samples."""
        return self.regime_seeds_count or self.n_seeds

    def regime_models(self, n: int | None = None) -> dict[str, TrainConfig]:
        """``{"unconditional s0": ..., "conditional s0": ...}`` at ``n`` training images (default: the
        first of ``regime_n``): the unconditional ones are the sweep's narrow model at that N with each
        of ``regime_seeds`` (on the cpu profile chapter 3's own sweep point and replicate, so they come
        from its cache), the conditional ones the same configs with labels."""
        s, label = self.regime_sweep, next(iter(self.regime_sweep.sizes))
        n = self.regime_n[0] if n is None else n
        if n not in s.n_train:
            raise ValueError(f"sweep {s.name!r} has no point N = {n} (it has {s.n_train})")
        out = {}
        for seed in self.regime_seeds:
            uncond = s._config(label, n, seed)
            out[f"unconditional s{seed}"] = uncond
            out[f"conditional s{seed}"] = replace(uncond, conditional=True)
        return out

    def all_models(self) -> dict[str, TrainConfig]:
        """Every model the chapter loads: ``"conditional UNet-XS edm"``, ``"unconditional ..."``, ``"N=64 ..."`` (each N of ``regime_n``)."""
        out = {f"conditional {k}": v for k, v in self.models.items()}
        out.update({f"unconditional {k}": v for k, v in self.unconditional.items()})
        for n in self.regime_n:
            out.update({f"N={n} {k}": v for k, v in self.regime_models(n).items()})
        return out

    def summary(self) -> str:
        dropout = next(iter(self.models.values())).label_dropout
        lines = [self.profile_line,
                 f"class-conditional models, label dropout {dropout:g} (the null label trains the unconditional mode):"]
        lines += [f"  {name:14s} {m.backbone} / {m.objective}, seed {m.seed}" for name, m in self.models.items()]
        lines.append("  each with an unconditional twin of the same name: the same config without labels")
        lines.append(f"regimes: N = {', '.join(map(str, self.regime_n))}, training seeds {self.regime_seeds}, with and "
                     f"without labels (chapter 3's {self.regime_sweep.name} sweep point{'s' if len(self.regime_n) > 1 else ''}); "
                     f"sampling seeds 0-{self.regime_seed_count - 1}")
        lines.append(f"{self.sampling.summary('; ')}, seed k draws class k % 10")
        lines.append(f"guidance: w in {', '.join(f'{w:g}' for w in self.guidance_scales)}; default w = {self.guidance:g}")
        lines.append(f"shared-null control: w in {', '.join(f'{w:g}' for w in self.control_scales)}, "
                     f"seeds 0-{self.control_seeds - 1}")
        if self.text_models:
            lines.append("text-to-image: " + ", ".join(f"{k} ({v})" for k, v in self.text_models.items())
                         + f"; {len(self.prompts)} prompts x {self.text_seeds} seeds, DDIM-{self.text_steps}, "
                         f"guidance {self.text_guidance:g}")
        lines.append(self.sampling.similarity)
        return "\n".join(lines)
