"""One frozen config per chapter's experiment, with named profiles.

``cpu`` (the default, what CI and the published book run) trains small models on scikit-learn's
offline 8x8 digits and measures with the calibrated pixel descriptor; ``gpu`` runs the same recipes
on CIFAR-10 with the SSCD descriptor, each chapter sized for a free Colab T4 (estimates:
:func:`reprodiff.experiments.chapter_time_estimate`); ``paper`` trains wider models ten times
longer, for several GPUs; ``smoke`` is the ``gpu`` configuration at toy scale, run on offline
stand-ins (:mod:`reprodiff.smoke`) so the test suite executes the gpu code path on a CPU. Profiles
change scale, never the code path. Chapters share models through the cache because their configs
share the :func:`digits_model` (and :func:`cifar_model`) base.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass, replace

from .controls import VAEConfig
from .training import TrainConfig

__all__ = ["PROFILES", "SameNoiseConfig", "ZooConfig", "SweepConfig", "RegimesConfig", "TheoryConfig",
           "AgreementConfig", "InverseTask",
           "InverseConfig", "ExplorerConfig", "FineTuneConfig", "ConditionalConfig", "get_config", "profile_models",
           "digits_model", "cifar_model", "paper_model", "check_resources", "reference_split", "SAME_IMAGE_QUANTILE"]

#: the quantile of the same-image rule (:func:`reprodiff.metrics.same_image_rule`), one for the whole book
SAME_IMAGE_QUANTILE = 0.99

PROFILES = ("cpu", "gpu", "paper", "smoke")


def digits_model(backbone: str, objective: str = "edm", **overrides) -> TrainConfig:
    """The cpu profile's standard digits model: 1,500 digits (297 held out), 600 steps at batch 64.

    It is exactly the largest model of chapter 3's sweep, so chapters 1-4 share it through the
    cache, and every chapter has the same held-out digits to calibrate its same-image rule on.
    At 600 steps the held-out x0 error of the 1,500-digit models is within 2% of its 1,200-step value
    (``benchmarks/convergence.md``), at half the training time of the book's first recipe.
    """
    base = dict(dataset="digits", holdout=297, n_train=1500, backbone=backbone, objective=objective, steps=600,
                batch_size=64, lr=2e-3)
    base.update(overrides)
    return TrainConfig(**base)


def cifar_model(backbone: str, objective: str = "edm", **overrides) -> TrainConfig:
    """The gpu profile's standard CIFAR-10 model (downloads CIFAR-10 on first use): 49,000 training
    images, 1,000 held out (the split of the sweep's largest N), 4,000 steps at batch 128, sized for a
    free Colab T4 (:func:`reprodiff.experiments.chapter_time_estimate`). The paper profile trains
    ten times longer (:func:`paper_model`)."""
    base = dict(dataset="cifar10", holdout=1000, n_train=49_000, backbone=backbone, objective=objective,
                steps=4000, batch_size=128, lr=1e-3, dropout=0.1, checkpoint_every=1000)
    base.update(overrides)
    return TrainConfig(**base)


def paper_model(backbone: str, objective: str = "edm", **overrides) -> TrainConfig:
    """The paper profile's CIFAR-10 model: :func:`cifar_model` trained 40,000 steps (several GPUs)."""
    return cifar_model(backbone, objective, **{"steps": 40_000, "checkpoint_every": 2000, **overrides})


@dataclass(frozen=True)
class SameNoiseConfig:
    """Chapter 1: pairs of different models, sampled from the same seeds with a deterministic sampler.

    ``pairs`` are independently trained (architecture A, architecture B) pairs: the first is the
    chapter's main pair, the others repeat it with other training seeds. ``same_arch`` is a pair of
    one architecture trained from two seeds.
    """

    profile: str
    models: dict[str, TrainConfig]
    pairs: tuple[tuple[str, str], ...]
    same_arch: tuple[str, str]
    n_seeds: int
    grid_seeds: int = 10
    sampler: str = "heun"
    steps: int = 18
    descriptor: str = "pixel"
    batch_size: int = 256
    notes: str = ""

    def __post_init__(self) -> None:
        unknown = {n for p in (*self.pairs, self.same_arch) for n in p} - set(self.models)
        if unknown or not self.pairs:
            raise ValueError(f"pairs must name models of the config (unknown: {sorted(unknown)})")

    @property
    def dataset(self) -> str:
        return next(iter(self.models.values())).dataset

    def summary(self) -> str:
        lines = [f"profile: {self.profile}  ({self.notes})"]
        for name, m in self.models.items():
            n = "all" if m.n_train is None else m.n_train
            lines.append(f"  model {name!r}: {m.backbone} / {m.objective} objective, {m.dataset} (N={n}), "
                         f"{m.steps:,} steps x batch {m.batch_size}, seed {m.seed}")
        lines.append("pairs: " + "; ".join(f"{a} vs {b}" for a, b in self.pairs)
                     + f"; same architecture: {self.same_arch[0]} vs {self.same_arch[1]}")
        lines.append(f"sampling: {self.sampler}, {self.steps} steps, seeds 0-{self.n_seeds - 1}")
        lines.append(f"similarity: {self.descriptor} descriptor, the book's same-image rule")
        return "\n".join(lines)


@dataclass(frozen=True)
class ZooConfig:
    """Chapter 2: a model zoo differing in architecture and objective, samplers, and two controls."""

    profile: str
    models: dict[str, TrainConfig]
    n_seeds: int
    sampler: str = "heun"
    steps: int = 18
    descriptor: str = "pixel"
    sampler_model: str = ""
    samplers: tuple[str, ...] = ("euler", "ddim", "heun", "dpmpp-2m")
    step_counts: tuple[int, ...] = (2, 3, 5, 8, 12, 18, 30)
    reference_steps: int = 100
    vaes: dict[str, VAEConfig] | None = None
    pretrained: dict[str, str] | None = None  # name -> Hub id (or folder) of a public DDPM checkpoint
    grid_seeds: int = 8
    batch_size: int = 256
    notes: str = ""

    def summary(self) -> str:
        lines = [f"profile: {self.profile}  ({self.notes})", f"{len(self.models)} diffusion models:"]
        for name, m in self.models.items():
            lines.append(f"  {name:16s} {m.backbone:13s} {m.objective:4s} objective, {m.steps:,} steps x "
                         f"batch {m.batch_size}, seed {m.seed}")
        lines.append(f"sampling: {self.sampler}-{self.steps}, seeds 0-{self.n_seeds - 1}; sampler study on "
                     f"{self.sampler_model!r}: {', '.join(self.samplers)} at {self.step_counts} steps vs "
                     f"heun-{self.reference_steps} reference")
        if self.vaes:
            lines.append("non-diffusion control: " + ", ".join(f"{k} ({v.hidden} hidden, latent {v.latent})"
                                                               for k, v in self.vaes.items()))
        if self.pretrained:
            lines.append("public checkpoints, not trained here: " + ", ".join(f"{k} ({v})" for k, v in self.pretrained.items()))
        lines.append(f"similarity: {self.descriptor} descriptor, the book's same-image rule")
        return "\n".join(lines)


@dataclass(frozen=True)
class SweepConfig:
    """A sweep over nested training-set sizes: one model per (size label, N).

    ``base`` fixes everything but the backbone, ``n_train`` and the seed; model size ``i`` (in the
    order of ``sizes``) trains with seed ``i``, so the two models at one N differ in width *and*
    initialisation. ``base.holdout`` images are kept out of every subset (they calibrate the
    same-image rule and GL's ceiling). ``replicates`` are extra ``(N, size label, seed)`` models
    that repeat a point of the sweep with other training seeds. The first size's models below the
    largest N also save their EMA weights at ``snapshots`` (training steps; chapter 5 follows GL and
    RP through training with them). The largest N is left out because its model is the one the
    other chapters share (a snapshot schedule is part of a model's hash).
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
        snapshots = self.snapshots if label == next(iter(self.sizes)) and n != max(self.n_train) else ()
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
class RegimesConfig:
    """Chapter 3: RP and GL against training-set size, on real data and on MoLRG.

    RP and GL use one same-image rule per dataset (:func:`reprodiff.experiments.book_rule`),
    calibrated on the held-out images against the sweep's largest training set. Regimes are read
    off the GL curves:
    memorization where every model's GL <= ``memorization_gl``, generalization where every model's
    GL >= ``generalization_gl``.
    """

    profile: str
    sweeps: tuple[SweepConfig, ...]
    n_seeds: int = 256
    sampler: str = "heun"
    steps: int = 18
    descriptor: str = "pixel"
    memorization_gl: float = 0.1
    generalization_gl: float = 0.8
    grid_seeds: int = 6
    batch_size: int = 256
    notes: str = ""

    def sweep(self, name: str) -> SweepConfig:
        for s in self.sweeps:
            if s.name == name:
                return s
        raise KeyError(f"no sweep {name!r}; this profile has {', '.join(s.name for s in self.sweeps)}")

    def sweep_kwargs(self, sweep: SweepConfig) -> dict:
        """Keyword arguments of :func:`reprodiff.experiments.regime_sweep` for one of the sweeps."""
        return dict(name=sweep.name, sampler=self.sampler, steps=self.steps, batch_size=self.batch_size)

    def descriptor_for(self, sweep: SweepConfig) -> str:
        """MoLRG is always scored in pixel space: it has no images for SSCD to see."""
        return "pixel" if sweep.base.dataset == "molrg" else self.descriptor

    def all_models(self) -> list[TrainConfig]:
        return [c for s in self.sweeps for c in (*s.model_configs().values(), *s.replicate_configs().values())]

    def summary(self) -> str:
        lines = [f"profile: {self.profile}  ({self.notes})"]
        lines += [s.summary() for s in self.sweeps]
        lines.append(f"sampling: {self.sampler}-{self.steps}, seeds 0-{self.n_seeds - 1}")
        lines.append(f"similarity: {self.descriptor} descriptor (MoLRG: pixel); RP and GL share the book's "
                     "same-image rule, one threshold per dataset")
        lines.append(f"regimes: memorization where GL <= {self.memorization_gl} for every model, generalization where "
                     f"GL >= {self.generalization_gl}")
        return "\n".join(lines)


@dataclass(frozen=True)
class TheoryConfig:
    """Chapter 4: trained models against the analytic denoisers, on chapter 3's models."""

    profile: str
    regimes: RegimesConfig
    n_seeds: int = 256
    trajectory_seeds: int = 64
    explorer_seeds: int = 64
    notes: str = ""

    def summary(self) -> str:
        r = self.regimes
        return "\n".join([f"profile: {self.profile}  ({self.notes})", "models: chapter 3's sweeps (cached when it ran)",
                          *[s.summary() for s in r.sweeps],
                          f"sampling: {r.sampler}-{r.steps}, seeds 0-{self.n_seeds - 1}; trajectories for "
                          f"{self.trajectory_seeds} seeds; explorer over seeds 0-{self.explorer_seeds - 1}",
                          f"similarity: {r.descriptor} descriptor (MoLRG: pixel), the book's same-image rule"])


@dataclass(frozen=True)
class AgreementConfig:
    """Chapter 5: what makes two networks agree, on chapter 3's sweep (its first, real-image sweep).

    ``pair_n``: training-set sizes at which two models of ``size`` (seeds ``pair_seeds``) train on the
    *same* subset and on *disjoint* subsets (the second model's subset starts where the first's
    ends, ``subset_offset=N``); where the sweep already has the point and the replicate they come
    from chapter 3's cache. The snapshots of the sweep's models follow GL and RP through training.
    ``leaderboard_n``: where the closed-form denoisers are compared with the trained model from the
    same noise (``n_seeds`` seeds; their free parameters, patch sizes per noise level and D*'s
    smoothing, are chosen on ``calibration_seeds`` seeds from ``calibration_start`` on, which the
    comparison never uses); the equivariant local denoiser, whose cost grows like ``N``, runs at
    ``equivariant_n`` only; the blend of the position-bound local denoiser and the Gaussian denoiser
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
        """The sweep with ``onset_n`` added: its models at the sweep's own N are chapter 3's."""
        return replace(self.sweep, n_train=tuple(sorted({*self.sweep.n_train, *self.onset_n})))

    @property
    def onset_models(self) -> dict[str, TrainConfig]:
        """The training-time study's extra models, ``{"N=32 onset": config, ...}``."""
        configs = self.onset_sweep.model_configs()
        return {f"N={n} onset": configs[(self.size, n)] for n in self.onset_n if n not in self.sweep.n_train}

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
            f"profile: {self.profile}  ({self.notes})",
            f"models: chapter 3's {s.name} sweep (cached when it ran); {self.size} snapshots at steps "
            f"{', '.join(map(str, s.snapshots))} of {s.base.steps:,}",
            f"pairs: {self.size}, seeds {self.pair_seeds}, on the same and on disjoint subsets at N = "
            f"{', '.join(map(str, self.pair_n))}",
            *([f"memorization onset: also {self.size} at N = {', '.join(map(str, self.onset_n))} (same recipe, "
               "snapshots)"] if self.onset_n else []),
            *([f"onset line tested at N = {', '.join(map(str, self.extend_n))}: {self.size} trained "
               f"{self.extend_steps:,} steps"] if self.extend_n else []),
            f"closed forms vs the trained model at N = {', '.join(map(str, self.leaderboard_n))} (equivariant local "
            f"denoiser at N = {', '.join(map(str, self.equivariant_n)) or 'none'}); parameters chosen on "
            f"{self.calibration_seeds} seeds from {self.calibration_start}",
            f"sampling: {self.regimes.sampler}-{self.regimes.steps}, seeds 0-{self.n_seeds - 1}; "
            f"{self.regimes.descriptor} descriptor, the book's same-image rule"])


class _ZooChapter:
    """What chapters 7 and 9 share: they run chapter 2's models (``models``) under a ``profile``."""

    @property
    def dataset(self) -> str:
        return next(iter(self.models.values())).dataset

    def _header(self) -> list[str]:
        lines = [f"profile: {self.profile}  ({self.notes})", "models (chapter 2's, from the cache when it ran):"]
        return lines + [f"  {name:14s} {m.backbone} / {m.objective}, seed {m.seed}" for name, m in self.models.items()]


@dataclass(frozen=True)
class InverseTask:
    """One inverse problem: an operator of :data:`reprodiff.inverse.OPERATORS` with its arguments, and
    the DPS step scale ``zeta`` it is solved with."""

    operator: str
    kwargs: dict
    zeta: float


@dataclass(frozen=True)
class InverseConfig(_ZooChapter):
    """Chapter 7: the same inverse problems solved by several models from the same noise (chapter 2's
    models, through the cache), with closed-form baselines, a stochastic control and a sensitivity
    study of the DPS step scale and the number of steps on ``sensitivity_models``."""

    profile: str
    models: dict[str, TrainConfig]
    tasks: dict[str, InverseTask]
    n_seeds: int
    noise_std: float = 0.05
    steps: int = 20
    zetas: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0, 3.0)
    step_counts: tuple[int, ...] = (5, 10, 20, 40)
    sensitivity_task: str = "box inpainting"
    sensitivity_models: tuple[str, str] = ("", "")
    sensitivity_seeds: int = 128
    grid_seeds: int = 8
    descriptor: str = "pixel"
    batch_size: int = 256
    notes: str = ""

    def __post_init__(self) -> None:
        if len(self.models) < 2:
            raise ValueError("an inverse-problem study compares at least two models")
        if self.sensitivity_task not in self.tasks or not set(self.sensitivity_models) <= set(self.models):
            raise ValueError("the sensitivity study must name one of the config's tasks and two of its models")

    def summary(self) -> str:
        lines = self._header()
        lines.append(f"tasks (measurement noise sigma_y = {self.noise_std:g}):")
        lines += [f"  {name:20s} DPS step scale zeta = {t.zeta:g}" for name, t in self.tasks.items()]
        lines.append(f"solver: deterministic DPS with DPM-Solver++(2M), {self.steps} steps")
        lines.append(f"seeds 0-{self.n_seeds - 1}: seed k reconstructs held-out image k")
        lines.append(f"sensitivity on {self.sensitivity_task}, {' vs '.join(self.sensitivity_models)}:")
        lines.append(f"  zeta in {self.zetas} x steps in {self.step_counts}, {self.sensitivity_seeds} seeds")
        lines.append(f"similarity: {self.descriptor} descriptor, the book's same-image rule")
        return "\n".join(lines)


@dataclass(frozen=True)
class ExplorerConfig(_ZooChapter):
    """Chapter 9: the noise space explored with chapter 2's models (``models``), a cheap model as a
    proxy for an expensive one, and a replication audit of chapter 3's models at the smallest and
    largest training sets (``audit``: label -> model)."""

    profile: str
    models: dict[str, TrainConfig]
    audit: dict[str, TrainConfig]
    proxy: tuple[str, str]  # (cheap, expensive), names in ``models``
    proxy_target: int = 3
    n_seeds: int = 512
    gallery_seeds: int = 10
    interpolation_pairs: int = 64
    frames: int = 9
    sampler: str = "heun"
    steps: int = 18
    descriptor: str = "pixel"
    batch_size: int = 256
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
        lines.append(f"sampling: {self.sampler}-{self.steps}; seeds 0-{self.n_seeds - 1}; "
                     f"{self.interpolation_pairs} interpolation paths of {self.frames} frames")
        lines.append(f"proxy: {self.proxy[0]} chooses seeds of class {self.proxy_target} for {self.proxy[1]}")
        lines.append(f"similarity: {self.descriptor} descriptor, the book's same-image rule")
        return "\n".join(lines)


@dataclass(frozen=True)
class FineTuneConfig:
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
    n_seeds: int = 512
    grid_seeds: int = 10
    sampler: str = "heun"
    sampling_steps: int = 18
    descriptor: str = "pixel"
    batch_size: int = 256
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
        lines = [f"profile: {self.profile}  ({self.notes})",
                 f"base: {b.backbone} / {b.objective}, seed {b.seed}: {b.steps:,} steps on {b.n_train or 'all'} "
                 f"{b.dataset} images, every class",
                 f"target: classes {', '.join(map(str, self.target))} (every training image of them)",
                 f"full fine-tuning: seeds {self.seeds[0]} and {self.seeds[1]}, {self.steps} steps, lr {self.lr:g}",
                 f"LoRA (peft) ranks {', '.join(map(str, self.ranks))}: {self.steps} steps, lr {self.lora_lr:g}",
                 f"snapshots at steps {', '.join(map(str, self.snapshots))}",
                 f"from scratch on the target: the base's recipe ({b.steps:,} steps), seeds "
                 f"{self.scratch_seeds[0]} and {self.scratch_seeds[1]}",
                 f"sampling: {self.sampler}-{self.sampling_steps}; seeds 0-{self.n_seeds - 1}",
                 f"similarity: {self.descriptor} descriptor, the book's same-image rule"]
        return "\n".join(lines)


@dataclass(frozen=True)
class ConditionalConfig:
    """Chapter 6: class-conditional models (label dropout, classifier-free guidance) from the same noise.

    ``models`` are the conditional models, each the conditional twin of the ``unconditional`` model
    of the same name (same recipe and training seed, plus labels; chapter 2's models on the cpu
    profile, so they come from the cache). ``regime_models`` repeat chapter 3's sweep point at
    ``regime_n`` training images with and without labels, from ``regime_seeds``. Seed k draws class
    ``k % num_classes``. ``text_models`` (gpu profile) are diffusers text-to-image checkpoints
    sampled from the same latent noise and ``prompts``.
    """

    profile: str
    models: dict[str, TrainConfig]
    unconditional: dict[str, TrainConfig]
    regime_sweep: SweepConfig
    regime_n: int
    regime_seeds: tuple[int, int] = (0, 2)  # the cpu sweep has both at N = 128 (point and replicate)
    guidance: float = 1.0
    guidance_scales: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
    n_seeds: int = 500
    grid_seeds: int = 10
    sampler: str = "heun"
    steps: int = 18
    descriptor: str = "pixel"
    batch_size: int = 250
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
        self.regime_models()  # the sweep must have the point (and the replicate) asked for

    @property
    def dataset(self) -> str:
        return next(iter(self.models.values())).dataset

    def regime_models(self) -> dict[str, TrainConfig]:
        """``{"unconditional s0": ..., "conditional s0": ...}`` at ``regime_n``: the unconditional ones are
        the sweep's narrow model at that N with each of ``regime_seeds`` (on the cpu profile chapter 3's
        own sweep point and replicate, so they come from its cache), the conditional ones the same
        configs with labels."""
        s, label = self.regime_sweep, next(iter(self.regime_sweep.sizes))
        if self.regime_n not in s.n_train:
            raise ValueError(f"sweep {s.name!r} has no point N = {self.regime_n} (it has {s.n_train})")
        out = {}
        for seed in self.regime_seeds:
            uncond = s._config(label, self.regime_n, seed)
            out[f"unconditional s{seed}"] = uncond
            out[f"conditional s{seed}"] = replace(uncond, conditional=True)
        return out

    def all_models(self) -> dict[str, TrainConfig]:
        """Every model the chapter loads: ``"conditional UNet-XS edm"``, ``"unconditional ..."``, ``"N=128 ..."``."""
        out = {f"conditional {k}": v for k, v in self.models.items()}
        out.update({f"unconditional {k}": v for k, v in self.unconditional.items()})
        out.update({f"N={self.regime_n} {k}": v for k, v in self.regime_models().items()})
        return out

    def summary(self) -> str:
        dropout = next(iter(self.models.values())).label_dropout
        lines = [f"profile: {self.profile}  ({self.notes})",
                 f"class-conditional models, label dropout {dropout:g} (the null label trains the unconditional mode):"]
        lines += [f"  {name:14s} {m.backbone} / {m.objective}, seed {m.seed}" for name, m in self.models.items()]
        lines.append("  each with an unconditional twin of the same name: the same config without labels")
        lines.append(f"regimes: N = {self.regime_n}, seeds {self.regime_seeds}, with and without labels "
                     f"(chapter 3's {self.regime_sweep.name} sweep point)")
        lines.append(f"sampling: {self.sampler}-{self.steps}; seeds 0-{self.n_seeds - 1}, seed k draws class k % 10")
        lines.append(f"guidance: w in {', '.join(f'{w:g}' for w in self.guidance_scales)}; default w = {self.guidance:g}")
        if self.text_models:
            lines.append("text-to-image: " + ", ".join(f"{k} ({v})" for k, v in self.text_models.items())
                         + f"; {len(self.prompts)} prompts x {self.text_seeds} seeds, DDIM-{self.text_steps}, "
                         f"guidance {self.text_guidance:g}")
        lines.append(f"similarity: {self.descriptor} descriptor, the book's same-image rule")
        return "\n".join(lines)


_CPU_ZOO = {
    # the two chapter-1 models (cached when chapter 1 ran first)
    "UNet-XS edm": digits_model("unet-xs"),
    "UNet-S edm": digits_model("unet-s", seed=1),
    # the same architecture from another training seed (chapter 1's replicate)
    "UNet-XS edm s2": digits_model("unet-xs", seed=2),
    # architectures (a deeper UNet, "unet-xs-deep", is registered too; left out to fit 6 minutes)
    "UNet-XS attn": digits_model("unet-xs-attn", seed=3),
    "U-ViT-XS edm": digits_model("uvit-xs", seed=4, lr=1e-3),
    # objectives on one backbone
    "UNet-XS eps": digits_model("unet-xs", "eps", seed=5),
    "UNet-XS v": digits_model("unet-xs", "v", seed=6),
}

# public CIFAR-10 DDPM checkpoints (diffusers DDPMPipeline, 32x32, epsilon on a discrete schedule), released
# independently of each other: the paper's Figure 1 compares such models. Only their configs have been read
# here (offline); the smoke profile swaps in tiny local stand-ins.
_PUBLIC_CIFAR10 = {"DDPM (Ho et al.)": "google/ddpm-cifar10-32", "DDPM-EMA (diffusers example)": "pcuenq/ddpm-ema-cifar",
                   "DDPM (community)": "shalpin87/diffusion_cifar"}

# gpu: the cpu zoo's recipes (same names, seeds and objectives) on CIFAR-10, sized for a Colab T4
_GPU_ZOO = {
    "UNet-XS edm": cifar_model("unet-xs"),
    "UNet-S edm": cifar_model("unet-s", seed=1),
    "UNet-XS edm s2": cifar_model("unet-xs", seed=2),
    "UNet-XS attn": cifar_model("unet-xs-attn", seed=3),
    "U-ViT-XS edm": cifar_model("uvit-xs", seed=4),
    "UNet-XS eps": cifar_model("unet-xs", "eps", seed=5),
    "UNet-XS v": cifar_model("unet-xs", "v", seed=6),
}
# paper: wider models trained ten times longer (accelerate launch on several GPUs)
_PAPER_ZOO = {
    "UNet-M edm": paper_model("unet-m"),
    "UNet-L edm": paper_model("unet-l", seed=1),
    "UNet-M eps": paper_model("unet-m", "eps", seed=2),
    "UNet-M v": paper_model("unet-m", "v", seed=3),
    "U-ViT-M edm": paper_model("uvit-m", seed=4),
}


# Chapter 3/4 sweeps. cpu: 297 digits held out (the remaining 1,500 are the largest N); the models are
# chapter 1's standard digits model at every N. Three N sit inside the transition; one N per regime
# has extra training seeds (at N = 1,500 they are chapter 1's replicates, cached).
_XS, _S = "UNet-XS (0.16M)", "UNet-S (0.63M)"
_DIGIT_SWEEP = SweepConfig(
    "digits",
    replace(digits_model("unet-xs"), n_train=None),
    {_XS: "unet-xs", _S: "unet-s"},
    (16, 64, 96, 128, 1500),
    replicates=((16, _XS, 2), (16, _XS, 4), (128, _XS, 2), (128, _XS, 4),
                (1500, _XS, 2), (1500, _XS, 4), (1500, _S, 3), (1500, _S, 5)),
    snapshots=(50, 100, 150, 200, 250, 300, 400, 500),
)
_MX, _MS = "MLP-XS (0.15M)", "MLP-S (0.56M)"
_MOLRG_SWEEP = SweepConfig(
    "molrg",
    TrainConfig(dataset="molrg", holdout=512, objective="edm", steps=2000, batch_size=128, lr=1e-3),
    {_MX: "mlp-xs", _MS: "mlp-s"},
    (16, 32, 64, 128, 256, 1024, 4096, 16384),
    replicates=((16, _MX, 2), (16, _MX, 4), (64, _MX, 2), (64, _MX, 4), (16384, _MX, 2), (16384, _MX, 4)),
)
# gpu: the paper's CIFAR-10 sweep thinned to four N and 1,500 steps, to fit a Colab T4 (estimate in chapter 3)
_CIFAR_SWEEP = SweepConfig(
    "cifar10",
    TrainConfig(dataset="cifar10", holdout=1000, objective="edm", steps=1500, batch_size=128, lr=1e-3,
                checkpoint_every=1000),
    {"UNet-XS (0.16M)": "unet-xs", "UNet-S (0.64M)": "unet-s"},
    (64, 512, 4096, 49000),
    snapshots=(150, 300, 450, 600, 900, 1200),
)
# paper: six N from 2^6 to 49,000, trained 4,000 steps
_PAPER_CIFAR_SWEEP = replace(_CIFAR_SWEEP, base=replace(_CIFAR_SWEEP.base, steps=4000),
                             n_train=(64, 256, 1024, 4096, 16384, 49000), snapshots=(250, 500, 1000, 1500, 2000, 3000))

# chapter 6, gpu profile: text-to-image checkpoints that share a latent space (4 x 64 x 64 at 512 px)
_TEXT_MODELS = {"SD 1.4": "CompVis/stable-diffusion-v1-4",
                "SD 1.5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
                "SD 2.1 base": "stabilityai/stable-diffusion-2-1-base"}
_PROMPTS = ("a photograph of an astronaut riding a horse", "a red bicycle leaning against a brick wall",
            "a bowl of fruit on a wooden table, oil painting", "a lighthouse on a cliff at sunset")


_GPU_NOTES = "CIFAR-10 and SSCD; needs a GPU and internet; sized for a free Colab T4"
_PAPER_NOTES = "CIFAR-10 and SSCD at the paper's scale; several GPUs (accelerate launch)"

_REGIMES_CPU = RegimesConfig(profile="cpu", sweeps=(_DIGIT_SWEEP, _MOLRG_SWEEP),
                             notes="8x8 digits and MoLRG, offline")
_REGIMES_GPU = RegimesConfig(profile="gpu", sweeps=(_CIFAR_SWEEP, _MOLRG_SWEEP), n_seeds=500, descriptor="sscd",
                             batch_size=500, notes="CIFAR-10 and SSCD; needs a GPU and internet")
_REGIMES_PAPER = RegimesConfig(profile="paper", sweeps=(_PAPER_CIFAR_SWEEP, _MOLRG_SWEEP), n_seeds=1000,
                               descriptor="sscd", batch_size=500, notes=_PAPER_NOTES)


_CIFAR_TASKS = {"box inpainting": InverseTask("box-inpainting", dict(top=8, left=8, height=16, width=16), 0.5),
                "random inpainting": InverseTask("random-inpainting", dict(observed=0.3), 0.5),
                "4x super-resolution": InverseTask("super-resolution", dict(factor=4), 0.3),
                "deblurring": InverseTask("deblurring", dict(size=9, width=2.0), 0.3)}

_CONFIGS = {
    "same_noise": {
        "cpu": SameNoiseConfig(
            profile="cpu",
            models={"UNet-XS s0": digits_model("unet-xs"), "UNet-S s1": digits_model("unet-s", seed=1),
                    "UNet-XS s2": digits_model("unet-xs", seed=2), "UNet-S s3": digits_model("unet-s", seed=3),
                    "UNet-XS s4": digits_model("unet-xs", seed=4), "UNet-S s5": digits_model("unet-s", seed=5)},
            pairs=(("UNet-XS s0", "UNet-S s1"), ("UNet-XS s2", "UNet-S s3"), ("UNet-XS s4", "UNet-S s5")),
            same_arch=("UNet-XS s0", "UNet-XS s2"),
            n_seeds=512, notes="8x8 digits, offline",
        ),
        "gpu": SameNoiseConfig(
            profile="gpu",
            models={"UNet-XS s0": cifar_model("unet-xs"), "UNet-S s1": cifar_model("unet-s", seed=1),
                    "UNet-XS s2": cifar_model("unet-xs", seed=2)},
            pairs=(("UNet-XS s0", "UNet-S s1"),), same_arch=("UNet-XS s0", "UNet-XS s2"),
            n_seeds=2000, descriptor="sscd", batch_size=500, notes=_GPU_NOTES,
        ),
        "paper": SameNoiseConfig(
            profile="paper",
            models={"UNet-M s0": paper_model("unet-m"), "UNet-L s1": paper_model("unet-l", seed=1),
                    "UNet-M s2": paper_model("unet-m", seed=2)},
            pairs=(("UNet-M s0", "UNet-L s1"),), same_arch=("UNet-M s0", "UNet-M s2"),
            n_seeds=10_000, descriptor="sscd", batch_size=500, notes=_PAPER_NOTES,
        ),
    },
    "architectures": {
        "cpu": ZooConfig(
            profile="cpu", models=_CPU_ZOO, n_seeds=512, sampler_model="UNet-XS edm",
            vaes={"VAE-256": VAEConfig(hidden=256, seed=0, steps=2000), "VAE-512": VAEConfig(hidden=512, seed=1, steps=2000)},
            notes="8x8 digits, offline",
        ),
        "gpu": ZooConfig(
            profile="gpu", models=_GPU_ZOO, n_seeds=1000, descriptor="sscd", sampler_model="UNet-XS edm",
            vaes={"VAE-A": VAEConfig(dataset="cifar10", hidden=1024, latent=64, steps=4000, seed=0),
                  "VAE-B": VAEConfig(dataset="cifar10", hidden=2048, latent=64, steps=4000, seed=1)},
            pretrained=_PUBLIC_CIFAR10, batch_size=500, notes=_GPU_NOTES,
        ),
        "paper": ZooConfig(
            profile="paper", models=_PAPER_ZOO, n_seeds=10_000, descriptor="sscd", sampler_model="UNet-M edm",
            vaes={"VAE-A": VAEConfig(dataset="cifar10", hidden=1024, latent=64, steps=20_000, seed=0),
                  "VAE-B": VAEConfig(dataset="cifar10", hidden=2048, latent=64, steps=20_000, seed=1)},
            pretrained=_PUBLIC_CIFAR10, batch_size=500, notes=_PAPER_NOTES,
        ),
    },
    "regimes": {"cpu": _REGIMES_CPU, "gpu": _REGIMES_GPU, "paper": _REGIMES_PAPER},
    "inverse": {
        "cpu": InverseConfig(
            profile="cpu", models={k: _CPU_ZOO[k] for k in ("UNet-XS edm", "UNet-S edm", "UNet-XS attn", "UNet-XS v")},
            tasks={"box inpainting": InverseTask("box-inpainting", dict(top=4, left=0, height=4, width=8), 1.0),
                   "random inpainting": InverseTask("random-inpainting", dict(observed=0.3), 1.0),
                   "2x super-resolution": InverseTask("super-resolution", dict(factor=2), 1.0),
                   "deblurring": InverseTask("deblurring", dict(size=5, width=1.0), 1.0)},
            n_seeds=256, sensitivity_models=("UNet-XS edm", "UNet-XS attn"), notes="8x8 digits, offline",
        ),
        "gpu": InverseConfig(
            profile="gpu", models={k: _GPU_ZOO[k] for k in ("UNet-XS edm", "UNet-S edm", "UNet-XS attn", "UNet-XS v")},
            tasks=_CIFAR_TASKS, n_seeds=500, steps=50, sensitivity_models=("UNet-XS edm", "UNet-XS attn"),
            sensitivity_seeds=128, descriptor="sscd", batch_size=100, notes=_GPU_NOTES,
        ),
        "paper": InverseConfig(
            profile="paper", models={k: _PAPER_ZOO[k] for k in ("UNet-M edm", "UNet-L edm", "UNet-M eps", "UNet-M v")},
            tasks=_CIFAR_TASKS, n_seeds=1000, steps=50, sensitivity_models=("UNet-M edm", "UNet-M eps"),
            sensitivity_seeds=256, descriptor="sscd", batch_size=100, notes=_PAPER_NOTES,
        ),
    },
    "explorer": {
        "cpu": ExplorerConfig(
            profile="cpu", models=dict(_CPU_ZOO),
            audit={f"UNet-XS N={n}": _DIGIT_SWEEP.model_configs()[(_XS, n)] for n in (16, 1500)},
            proxy=("UNet-XS edm", "UNet-S edm"), notes="8x8 digits, offline",
        ),
        "gpu": ExplorerConfig(
            profile="gpu", models=dict(_GPU_ZOO),
            audit={f"UNet-XS N={n}": _CIFAR_SWEEP.model_configs()[("UNet-XS (0.16M)", n)] for n in (64, 49000)},
            proxy=("UNet-XS edm", "UNet-S edm"), n_seeds=1000, descriptor="sscd", batch_size=250, notes=_GPU_NOTES,
        ),
        "paper": ExplorerConfig(
            profile="paper", models=dict(_PAPER_ZOO),
            audit={f"UNet-XS N={n}": _PAPER_CIFAR_SWEEP.model_configs()[("UNet-XS (0.16M)", n)] for n in (64, 49000)},
            proxy=("UNet-M edm", "UNet-L edm"), n_seeds=2000, descriptor="sscd", batch_size=250, notes=_PAPER_NOTES,
        ),
    },
    "fine_tuning": {
        "cpu": FineTuneConfig(profile="cpu", base=_CPU_ZOO["UNet-XS edm"], target=(5, 6, 7, 8, 9), steps=400,
                              lr=1e-3, lora_lr=3e-3, ranks=(1, 4, 16), snapshots=(25, 50, 100, 200),
                              notes="8x8 digits, offline"),
        "gpu": FineTuneConfig(profile="gpu", base=_GPU_ZOO["UNet-XS edm"], target=(3, 5), steps=1000, lr=2e-4,
                              lora_lr=1e-3, ranks=(4, 16, 64), snapshots=(50, 100, 250, 500), n_seeds=1000,
                              descriptor="sscd", batch_size=250, notes="CIFAR-10 cats and dogs; " + _GPU_NOTES),
        "paper": FineTuneConfig(profile="paper", base=_PAPER_ZOO["UNet-M edm"], target=(3, 5), steps=4000, lr=2e-4,
                                lora_lr=1e-3, ranks=(4, 16, 64), snapshots=(250, 500, 1000, 2000), n_seeds=1000,
                                descriptor="sscd", batch_size=250, notes="CIFAR-10 cats and dogs; " + _PAPER_NOTES),
    },
    "conditional": {
        "cpu": ConditionalConfig(
            profile="cpu",
            models={k: replace(_CPU_ZOO[k], conditional=True) for k in ("UNet-XS edm", "UNet-XS attn", "UNet-XS v")},
            unconditional={k: _CPU_ZOO[k] for k in ("UNet-XS edm", "UNet-XS attn", "UNet-XS v")},
            regime_sweep=_DIGIT_SWEEP, regime_n=64, notes="8x8 digits, offline",
        ),
        "gpu": ConditionalConfig(
            profile="gpu",
            models={k: replace(_GPU_ZOO[k], conditional=True) for k in ("UNet-XS edm", "UNet-XS attn", "UNet-XS v")},
            unconditional={k: _GPU_ZOO[k] for k in ("UNet-XS edm", "UNet-XS attn", "UNet-XS v")},
            regime_sweep=_CIFAR_SWEEP, regime_n=512, n_seeds=1000, descriptor="sscd", batch_size=500,
            text_models=_TEXT_MODELS, prompts=_PROMPTS, text_seeds=10,
            notes="Stable Diffusion (text-to-image) too; " + _GPU_NOTES,
        ),
        "paper": ConditionalConfig(
            profile="paper",
            models={k: replace(_PAPER_ZOO[k], conditional=True) for k in ("UNet-M edm", "UNet-M eps", "U-ViT-M edm")},
            unconditional={k: _PAPER_ZOO[k] for k in ("UNet-M edm", "UNet-M eps", "U-ViT-M edm")},
            regime_sweep=_PAPER_CIFAR_SWEEP, regime_n=1024, n_seeds=2000, descriptor="sscd", batch_size=500,
            text_models=_TEXT_MODELS, prompts=_PROMPTS, text_seeds=50,
            notes="Stable Diffusion (text-to-image) too; " + _PAPER_NOTES,
        ),
    },
    "agreement": {
        "cpu": AgreementConfig(profile="cpu", regimes=_REGIMES_CPU, pair_n=(16, 128, 750),
                               leaderboard_n=(16, 128, 1500), equivariant_n=(16, 128), onset_n=(24, 32, 48),
                               extend_n=(64,), extend_steps=1200,
                               notes="8x8 digits, offline"),
        # CIFAR-10: the local denoiser's cost grows like N x H x W x patch area, so the leaderboard
        # stops at N = 512 and 9 x 9 patches
        "gpu": AgreementConfig(profile="gpu", regimes=_REGIMES_GPU, pair_n=(64, 512, 4096), leaderboard_n=(64, 512),
                               patch_sizes=(1, 3, 5, 9), smoothing=(0.5, 1.0, 2.0, 4.0), notes=_GPU_NOTES),
        "paper": AgreementConfig(profile="paper", regimes=_REGIMES_PAPER, pair_n=(64, 1024, 16384),
                                 leaderboard_n=(64, 1024), patch_sizes=(1, 3, 5, 9), smoothing=(0.5, 1.0, 2.0, 4.0),
                                 n_seeds=500, notes=_PAPER_NOTES),
    },
    "theory": {
        "cpu": TheoryConfig(profile="cpu", regimes=_REGIMES_CPU, notes="8x8 digits and MoLRG, offline"),
        "gpu": TheoryConfig(profile="gpu", regimes=_REGIMES_GPU, n_seeds=500, notes=_GPU_NOTES),
        "paper": TheoryConfig(profile="paper", regimes=_REGIMES_PAPER, n_seeds=1000, notes=_PAPER_NOTES),
    },
}


# smoke: the gpu configuration at toy scale. Every model keeps its kind (a UNet with attention stays
# one, a U-ViT stays a U-ViT) at the smallest size; CIFAR-10's training-set sizes map to distinct
# small N in order (the stand-in has 600 training images); every count of seeds, steps and images
# shrinks to a few, so each chapter runs in seconds.
_SMOKE_BACKBONES = {"unet-xs": "unet-tiny", "unet-s": "unet-tiny", "unet-m": "unet-tiny", "unet-xs-deep": "unet-tiny",
                    "unet-deep": "unet-tiny", "unet-xs-attn": "unet-tiny-attn", "unet-attn": "unet-tiny-attn",
                    "unet-l": "unet-tiny-attn", "uvit-xs": "uvit-tiny", "uvit-s": "uvit-tiny", "uvit-m": "uvit-tiny",
                    "mlp-s": "mlp-xs", "mlp-m": "mlp-xs"}
_SMOKE_CIFAR_N = dict(zip(sorted(_CIFAR_SWEEP.n_train), (16, 32, 48, 64, 80, 96)[-len(_CIFAR_SWEEP.n_train):]))
_SMOKE_FIELDS = {  # field name -> its smoke value (a function of the gpu value)
    "holdout": lambda v: min(v, 40), "batch_size": lambda v: 8, "warmup": lambda v: 2,
    "checkpoint_every": lambda v: 2, "hidden": lambda v: 64, "n_seeds": lambda v: 12, "grid_seeds": lambda v: min(v, 4),
    "gallery_seeds": lambda v: min(v, 4), "sensitivity_seeds": lambda v: 8, "trajectory_seeds": lambda v: 4,
    "explorer_seeds": lambda v: 4, "interpolation_pairs": lambda v: 2, "frames": lambda v: 3,
    "reference_steps": lambda v: 6, "step_counts": lambda v: v[:2], "sampling_steps": lambda v: 3, "text_seeds": lambda v: 2, "text_steps": lambda v: 3,
    "snapshots": lambda v: tuple(range(1, min(len(v), 5) + 1)), "patch_sizes": lambda v: v[:3],
    "smoothing": lambda v: v[:2], "calibration_seeds": lambda v: 4,
}
_SMOKE_SAMPLING = {"batch_size": 8, "steps": 3}  # book-level configs: 12 seeds in two batches, 3 sampler steps


def _smoke_n(n: int | None, dataset: str) -> int | None:
    return _SMOKE_CIFAR_N.get(n, min(n, 96)) if dataset == "cifar10" and n is not None else n


def _smoke(value, dataset: str = ""):
    """The smoke scale of a gpu config value: dataclasses field by field, containers item by item."""
    if isinstance(value, dict):
        return {k: _smoke(v, dataset) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_smoke(v, dataset) for v in value)
    if not is_dataclass(value):
        return value
    dataset = value.base.dataset if isinstance(value, SweepConfig) else value.sweep.base.dataset \
        if isinstance(value, AgreementConfig) else getattr(value, "dataset", dataset)
    changes = {}
    for f in fields(value):
        v = getattr(value, f.name)
        if isinstance(value, TrainConfig) and f.name == "backbone":
            changes[f.name] = _SMOKE_BACKBONES.get(v, v)
        elif f.name == "n_train":
            changes[f.name] = tuple(_smoke_n(n, dataset) for n in v) if isinstance(v, tuple) else _smoke_n(v, dataset)
        elif f.name in ("regime_n",):
            changes[f.name] = _smoke_n(v, dataset)
        elif f.name in ("pair_n", "leaderboard_n", "equivariant_n", "onset_n"):
            changes[f.name] = tuple(_smoke_n(n, dataset) for n in v)
        elif isinstance(value, SweepConfig) and f.name == "sizes":
            changes[f.name] = {label: _SMOKE_BACKBONES.get(b, b) for label, b in v.items()}
        elif isinstance(value, SweepConfig) and f.name == "replicates":
            changes[f.name] = tuple((_smoke_n(n, value.base.dataset), label, seed) for n, label, seed in v)
        elif f.name == "steps" and isinstance(value, (TrainConfig, VAEConfig, FineTuneConfig)):
            changes[f.name] = 6  # training steps
        elif f.name in _SMOKE_SAMPLING and not isinstance(value, (TrainConfig, VAEConfig, FineTuneConfig, SweepConfig)):
            changes[f.name] = _SMOKE_SAMPLING[f.name]
        elif f.name in _SMOKE_FIELDS and v is not None:
            changes[f.name] = _SMOKE_FIELDS[f.name](v)
        elif f.name == "profile":
            changes[f.name] = "smoke"
        elif f.name == "notes":
            changes[f.name] = "the gpu configuration at toy scale, on offline stand-ins (scripts/gpu-check --profile smoke)"
        else:
            changes[f.name] = _smoke(v, dataset)
    if isinstance(value, ConditionalConfig) and value.text_models:
        from .smoke import text_model_dir

        changes["text_models"] = {name: str(text_model_dir(i)) for i, name in enumerate(value.text_models)}
    if isinstance(value, ZooConfig) and value.pretrained:
        from .smoke import ddpm_model_dir

        changes["pretrained"] = {name: str(ddpm_model_dir(i)) for i, name in enumerate(value.pretrained)}
    return replace(value, **changes)


def get_config(experiment: str, profile: str = "cpu"):
    """The config of ``experiment`` (e.g. ``"same_noise"``) under ``profile`` (``"cpu"``, ``"gpu"``, or
    ``"smoke"``: the gpu config at toy scale, see :mod:`reprodiff.smoke`)."""
    if experiment not in _CONFIGS:
        raise ValueError(f"unknown experiment {experiment!r}; choose one of {', '.join(_CONFIGS)}")
    if profile == "smoke":
        return _smoke(_CONFIGS[experiment]["gpu"])
    if profile not in _CONFIGS[experiment]:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return _CONFIGS[experiment][profile]


def profile_models(profile: str) -> dict[str, TrainConfig]:
    """Every diffusion model the book's chapters train under ``profile``, ``{"experiment: name": config}``
    (a model shared by several chapters appears once per chapter)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    out = {}
    for experiment in _CONFIGS:
        cfg = get_config(experiment, profile)
        if isinstance(cfg, ConditionalConfig):
            out.update({f"{experiment}: {name}": m for name, m in cfg.all_models().items()})
        elif hasattr(cfg, "models"):
            out.update({f"{experiment}: {name}": m for name, m in cfg.models.items()})
        sweeps = cfg.sweeps if hasattr(cfg, "sweeps") else cfg.regimes.sweeps if hasattr(cfg, "regimes") else ()
        for sweep in sweeps:
            out.update({f"{experiment}: {sweep.name} {label} N={n}": m
                        for (label, n), m in sweep.model_configs().items()})
            out.update({f"{experiment}: {sweep.name} {label} N={n} seed {seed}": m
                        for (label, n, seed), m in sweep.replicate_configs().items()})
    return out


def book_models(profile: str = "cpu") -> list:
    """Every model the book's chapters train under ``profile``, each once: the diffusion models of
    :func:`profile_models` (fine-tunes after their bases) and chapter 2's VAE controls. What
    ``python -m reprodiff train --book`` trains in one pool before the chapters run."""
    models = {m.hash: m for m in profile_models(profile).values()}
    models.update({v.hash: v for v in get_config("architectures", profile).vaes.values()})
    return list(models.values())


def reference_split(dataset: str, profile: str = "cpu") -> TrainConfig:
    """The training/held-out split on which ``dataset``'s same-image rule is calibrated: the largest
    training set of the book's sweep on that dataset (digits: 1,500 trained, 297 held out); the
    ``smoke`` profile has its own, small one."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    for sweep in (_DIGIT_SWEEP, _MOLRG_SWEEP, _PAPER_CIFAR_SWEEP if profile == "paper" else _CIFAR_SWEEP):
        if sweep.base.dataset == dataset:
            return (_smoke(sweep) if profile == "smoke" else sweep).reference()
    raise ValueError(f"the book calibrates no same-image rule on {dataset!r}; choose digits, molrg or cifar10")


def check_resources(models: list[TrainConfig] | tuple[TrainConfig, ...], descriptor: str = "pixel") -> None:
    """Fail fast, before any training, if a dataset or the descriptor cannot be obtained.

    Loads each distinct dataset (downloading it if needed) and instantiates the descriptor, so an
    offline ``gpu`` run stops here with one message naming everything it could not get, instead of
    after minutes of work.

    Raises:
        ResourceUnavailableError: listing every missing dataset and descriptor.
    """
    from .data import ResourceUnavailableError
    from .metrics import get_descriptor
    from .training import training_data

    problems, seen = [], set()
    for m in models:
        key = (m.dataset, m.n_train, m.holdout, m.subset_seed)
        if key in seen:
            continue
        seen.add(key)
        try:
            training_data(m)
        except ResourceUnavailableError as exc:
            if str(exc) not in problems:
                problems.append(str(exc))
    try:
        get_descriptor(descriptor)
    except ResourceUnavailableError as exc:
        problems.append(str(exc))
    if problems:
        raise ResourceUnavailableError("this profile cannot run here:\n- " + "\n- ".join(problems))
