"""One frozen config per chapter's experiment, with named profiles.

``cpu`` (the default, what CI and the published book run) trains small models on scikit-learn's
offline 8x8 digits and measures with the calibrated pixel descriptor; ``gpu`` (Colab) uses real
datasets downloaded by torchvision, wider UNets and the SSCD descriptor. Profiles change scale,
never the code path. Chapters share models through the cache because their configs share the
:func:`digits_model` base.
"""

from __future__ import annotations

from dataclasses import dataclass

from .controls import VAEConfig
from .training import TrainConfig

__all__ = ["PROFILES", "SameNoiseConfig", "ZooConfig", "get_config", "digits_model", "check_resources"]

PROFILES = ("cpu", "gpu")


def digits_model(backbone: str, objective: str = "edm", **overrides) -> TrainConfig:
    """The cpu profile's standard digits model: all 1,797 digits, 1,200 steps at batch 128.

    1,200 steps is where 8x8 digit samples have settled on this scale (cpu-notes: ~1,000), and
    keeps two small UNets inside a chapter's 5-minute budget on 2 cores.
    """
    base = dict(dataset="digits", backbone=backbone, objective=objective, steps=1200, batch_size=128, lr=2e-3)
    base.update(overrides)
    return TrainConfig(**base)


def cifar_model(backbone: str, objective: str = "edm", **overrides) -> TrainConfig:
    """The gpu profile's standard CIFAR-10 model (downloads CIFAR-10 on first use)."""
    base = dict(dataset="cifar10", backbone=backbone, objective=objective, steps=40_000, batch_size=128,
                lr=1e-3, dropout=0.1, checkpoint_every=2000)
    base.update(overrides)
    return TrainConfig(**base)


@dataclass(frozen=True)
class SameNoiseConfig:
    """Chapter 1: two different models, sampled from the same seeds with a deterministic sampler."""

    profile: str
    models: dict[str, TrainConfig]
    n_seeds: int
    grid_seeds: int = 10
    sampler: str = "heun"
    steps: int = 18
    descriptor: str = "pixel"
    null_quantile: float = 0.99
    batch_size: int = 256
    notes: str = ""

    def summary(self) -> str:
        lines = [f"profile: {self.profile}  ({self.notes})"]
        for name, m in self.models.items():
            n = "all" if m.n_train is None else m.n_train
            lines.append(f"  model {name!r}: {m.backbone} / {m.objective} objective, {m.dataset} (N={n}), "
                         f"{m.steps:,} steps x batch {m.batch_size}, seed {m.seed}")
        lines.append(f"sampling: {self.sampler}, {self.steps} steps, seeds 0-{self.n_seeds - 1}")
        rule = "paper's 0.6" if self.descriptor == "sscd" else f"{100 * self.null_quantile:g}th pct of the different-seed null"
        lines.append(f"similarity: {self.descriptor} descriptor, threshold = {rule}")
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
    null_quantile: float = 0.99
    sampler_model: str = ""
    samplers: tuple[str, ...] = ("euler", "ddim", "heun", "dpmpp-2m")
    step_counts: tuple[int, ...] = (2, 3, 5, 8, 12, 18, 30)
    reference_steps: int = 100
    vaes: dict[str, VAEConfig] | None = None
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
        rule = "paper's 0.6" if self.descriptor == "sscd" else f"{100 * self.null_quantile:g}th pct of the pooled null"
        lines.append(f"similarity: {self.descriptor} descriptor, threshold = {rule}")
        return "\n".join(lines)


_CPU_ZOO = {
    # the two chapter-1 models (cached when chapter 1 ran first)
    "UNet-XS edm": digits_model("unet-xs"),
    "UNet-S edm": digits_model("unet-s", seed=1),
    # architectures (a deeper UNet, "unet-xs-deep", is registered too; left out to fit 6 minutes)
    "UNet-XS attn": digits_model("unet-xs-attn", seed=3),
    "U-ViT-XS edm": digits_model("uvit-xs", seed=4, lr=1e-3),
    # objectives on one backbone
    "UNet-XS eps": digits_model("unet-xs", "eps", seed=5),
    "UNet-XS v": digits_model("unet-xs", "v", seed=6),
}

_GPU_ZOO = {
    "UNet-M edm": cifar_model("unet-m"),
    "UNet-L edm": cifar_model("unet-l", seed=1),
    "UNet-M eps": cifar_model("unet-m", "eps", seed=2),
    "UNet-M v": cifar_model("unet-m", "v", seed=3),
    "U-ViT-M edm": cifar_model("uvit-m", seed=4),
}


_CONFIGS = {
    "same_noise": {
        "cpu": SameNoiseConfig(
            profile="cpu",
            models={"UNet-XS (0.16M)": digits_model("unet-xs"), "UNet-S (0.63M)": digits_model("unet-s", seed=1)},
            n_seeds=512, notes="8x8 digits, offline; ~4 min on 2 CPU cores",
        ),
        "gpu": SameNoiseConfig(
            profile="gpu",
            models={"UNet-M": cifar_model("unet-m"), "UNet-L": cifar_model("unet-l", seed=1)},
            n_seeds=10_000, descriptor="sscd", batch_size=500, notes="CIFAR-10 and SSCD; needs a GPU and internet",
        ),
    },
    "architectures": {
        "cpu": ZooConfig(
            profile="cpu", models=_CPU_ZOO, n_seeds=512, sampler_model="UNet-XS edm",
            vaes={"VAE-256": VAEConfig(hidden=256, seed=0, steps=2000), "VAE-512": VAEConfig(hidden=512, seed=1, steps=2000)},
            notes="8x8 digits, offline",
        ),
        "gpu": ZooConfig(
            profile="gpu", models=_GPU_ZOO, n_seeds=10_000, descriptor="sscd", sampler_model="UNet-M edm",
            vaes={"VAE-A": VAEConfig(dataset="cifar10", hidden=1024, latent=64, steps=20_000, seed=0),
                  "VAE-B": VAEConfig(dataset="cifar10", hidden=2048, latent=64, steps=20_000, seed=1)},
            batch_size=500, notes="CIFAR-10 and SSCD; needs a GPU and internet",
        ),
    },
}


def get_config(experiment: str, profile: str = "cpu"):
    """The config of ``experiment`` (e.g. ``"same_noise"``) under ``profile`` (``"cpu"`` or ``"gpu"``)."""
    if experiment not in _CONFIGS:
        raise ValueError(f"unknown experiment {experiment!r}; choose one of {', '.join(_CONFIGS)}")
    if profile not in _CONFIGS[experiment]:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(_CONFIGS[experiment])}")
    return _CONFIGS[experiment][profile]


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
