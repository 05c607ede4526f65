"""One frozen config per chapter's experiment, with named profiles.

``cpu`` (the default, what CI and the published book run) trains small models on scikit-learn's
offline 8x8 digits and measures with the calibrated pixel descriptor; ``gpu`` (Colab) uses real
datasets downloaded by torchvision, wider UNets and the SSCD descriptor. Profiles change scale,
never the code path. Chapters share models through the cache because their configs share the
:func:`digits_model` base.
"""

from __future__ import annotations

from dataclasses import dataclass

from .training import TrainConfig

__all__ = ["PROFILES", "SameNoiseConfig", "get_config", "digits_model", "check_resources"]

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
    offline ``gpu`` run stops here with a clear message instead of after minutes of work.
    """
    from .metrics import get_descriptor
    from .training import training_data

    seen = set()
    for m in models:
        key = (m.dataset, m.n_train, m.holdout, m.subset_seed)
        if key not in seen:
            training_data(m)
            seen.add(key)
    get_descriptor(descriptor)

