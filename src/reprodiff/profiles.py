"""The book's named profiles: the model recipes, zoos and sweeps every chapter config is built from.

``cpu`` (the default, what CI and the published book run) trains small models on scikit-learn's
offline 8x8 digits and measures with the calibrated pixel descriptor; ``gpu`` runs the same recipes
on CIFAR-10 with the SSCD descriptor, each chapter sized for a free Colab T4 (estimates:
:func:`reprodiff.estimate.chapter_time_estimate`); ``paper`` trains wider models ten times
longer, for several GPUs; ``smoke`` is the ``gpu`` configuration at toy scale, run on offline
stand-ins (:mod:`reprodiff.smoke`) so the test suite executes the gpu code path on a CPU. Profiles
change scale, never the code path. Chapters share models through the cache because their configs
share the :func:`digits_model` (and :func:`cifar_model`) base. The config classes are in
:mod:`reprodiff.configs`; :func:`get_config` picks one chapter's under one profile.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace

from .configs import (AgreementConfig, ConditionalConfig, ExplorerConfig, FineTuneConfig, InverseConfig, InverseTask,
                      RegimesConfig, SameNoiseConfig, Sampling, SizeLabel, SweepConfig, TheoryConfig, ZooConfig)
from .controls import VAEConfig
from .data import ResourceUnavailableError
from .metrics import get_descriptor
from .smoke import ddpm_model_dir, text_model_dir
from .training import TrainConfig, training_data

__all__ = ["PROFILES", "EXPERIMENTS", "SAME_IMAGE_QUANTILE", "digits_model", "cifar_model", "paper_model", "get_config",
           "profile_models", "book_models", "reference_split", "check_resources"]

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
    free Colab T4 (:func:`reprodiff.estimate.chapter_time_estimate`). The paper profile trains
    ten times longer (:func:`paper_model`)."""
    base = dict(dataset="cifar10", holdout=1000, n_train=49_000, backbone=backbone, objective=objective,
                steps=4000, batch_size=128, lr=1e-3, dropout=0.1, checkpoint_every=1000)
    base.update(overrides)
    return TrainConfig(**base)


def paper_model(backbone: str, objective: str = "edm", **overrides) -> TrainConfig:
    """The paper profile's CIFAR-10 model: :func:`cifar_model` trained 40,000 steps (several GPUs)."""
    return cifar_model(backbone, objective, **{"steps": 40_000, "checkpoint_every": 2000, **overrides})


_CPU_ZOO = {
    # the two chapter-1 models (cached when chapter 1 ran first)
    "UNet-XS edm": digits_model("unet-xs"),
    "UNet-S edm": digits_model("unet-s", seed=1),
    # the same architecture from another training seed (chapter 1's replicate)
    "UNet-XS edm s2": digits_model("unet-xs", seed=2),
    # architectures (a deeper UNet, "unet-xs-deep", is registered too; left out to fit 6 minutes)
    "UNet-XS attn": digits_model("unet-xs-attn", seed=3),
    # at the UNets' 600 steps the U-ViT is the zoo's worst denoiser and agrees with no UNet; trained
    # 2,400 steps it reaches their held-out x0 error (chapter 2 follows it along training)
    "U-ViT-XS edm": digits_model("uvit-xs", seed=4, steps=2400, snapshots=(300, 600, 1200, 1800)),
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
    "U-ViT-XS edm": cifar_model("uvit-xs", seed=4, snapshots=(1000, 2000, 3000)),  # chapter 2 follows it
    "UNet-XS eps": cifar_model("unet-xs", "eps", seed=5),
    "UNet-XS v": cifar_model("unet-xs", "v", seed=6),
}
# paper: wider models trained ten times longer (accelerate launch on several GPUs)
_PAPER_ZOO = {
    "UNet-M edm": paper_model("unet-m"),
    "UNet-L edm": paper_model("unet-l", seed=1),
    "UNet-M eps": paper_model("unet-m", "eps", seed=2),
    "UNet-M v": paper_model("unet-m", "v", seed=3),
    "U-ViT-M edm": paper_model("uvit-m", seed=4, snapshots=(10_000, 20_000, 30_000)),
}


# Chapter 3/4 sweeps. cpu: 297 digits held out (the remaining 1,500 are the largest N); the models are
# chapter 1's standard digits model at every N. Three N sit inside the transition; one N per regime
# has extra training seeds (at N = 1,500 they are chapter 1's replicates, cached).
_XS, _S = SizeLabel("UNet-XS", "0.16M"), SizeLabel("UNet-S", "0.63M")
_DIGIT_SWEEP = SweepConfig(
    "digits",
    replace(digits_model("unet-xs"), n_train=None),
    {_XS: "unet-xs", _S: "unet-s"},
    (16, 64, 96, 128, 1500),
    replicates=((16, _XS, 2), (16, _XS, 4), (128, _XS, 2), (128, _XS, 4),
                (1500, _XS, 2), (1500, _XS, 4), (1500, _S, 3), (1500, _S, 5)),
    snapshots=(50, 100, 150, 200, 250, 300, 400, 500),
)
_MX, _MS = SizeLabel("MLP-XS", "0.15M"), SizeLabel("MLP-S", "0.56M")
_MOLRG_SWEEP = SweepConfig(
    "molrg",
    TrainConfig(dataset="molrg", holdout=512, objective="edm", steps=2000, batch_size=128, lr=1e-3),
    {_MX: "mlp-xs", _MS: "mlp-s"},
    # N = 4,096 left out: between 1,024 and 16,384 every curve of chapters 3 and 4 is flat (GL and RP
    # 1.00, RP to D* 0.00, to the Gaussian 1.00 at all three in the run of 2026-12-07)
    (16, 32, 64, 128, 256, 1024, 16384),
    replicates=((16, _MX, 2), (16, _MX, 4), (64, _MX, 2), (64, _MX, 4), (16384, _MX, 2), (16384, _MX, 4)),
)
# gpu: the paper's CIFAR-10 sweep thinned to four N and 1,500 steps, to fit a Colab T4 (estimate in chapter 3)
_CIFAR_SWEEP = SweepConfig(
    "cifar10",
    TrainConfig(dataset="cifar10", holdout=1000, objective="edm", steps=1500, batch_size=128, lr=1e-3,
                checkpoint_every=1000),
    {SizeLabel("UNet-XS", "0.16M"): "unet-xs", SizeLabel("UNet-S", "0.64M"): "unet-s"},
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


def _sscd(n_seeds: int, **kw) -> Sampling:
    """The gpu and paper profiles' measurement: SSCD features."""
    return Sampling(n_seeds, descriptor="sscd", **kw)


def _twins(zoo: dict[str, TrainConfig], names: tuple[str, ...]) -> dict[str, dict[str, TrainConfig]]:
    """A conditional study's ``models`` and ``unconditional``: the zoo's ``names`` with labels, and as they are."""
    return dict(models={k: replace(zoo[k], conditional=True) for k in names}, unconditional={k: zoo[k] for k in names})


_DPS = "dpmpp-2m"  # the DPS solver: DPM-Solver++(2M) steps, each followed by a measurement step

_GPU_NOTES = "CIFAR-10 and SSCD; needs a GPU and internet; sized for a free Colab T4"
_PAPER_NOTES = "CIFAR-10 and SSCD at the paper's scale; several GPUs (accelerate launch)"

_REGIMES_CPU = RegimesConfig(profile="cpu", sweeps=(_DIGIT_SWEEP, _MOLRG_SWEEP),
                             notes="8x8 digits and MoLRG, offline")
_REGIMES_GPU = RegimesConfig(profile="gpu", sweeps=(_CIFAR_SWEEP, _MOLRG_SWEEP), sampling=_sscd(500, batch_size=500),
                             notes="CIFAR-10 and SSCD; needs a GPU and internet")
_REGIMES_PAPER = RegimesConfig(profile="paper", sweeps=(_PAPER_CIFAR_SWEEP, _MOLRG_SWEEP),
                               sampling=_sscd(1000, batch_size=500), notes=_PAPER_NOTES)


_CIFAR_TASKS = {"box inpainting": InverseTask("box-inpainting", dict(top=8, left=8, height=16, width=16)),
                "random inpainting": InverseTask("random-inpainting", dict(observed=0.3)),
                "4x super-resolution": InverseTask("super-resolution", dict(factor=4)),
                "deblurring": InverseTask("deblurring", dict(size=9, width=2.0))}
# the public DPS code's scales on 256x256 images lie at 0.3-1; the step scale is tuned per task around them
_CIFAR_ZETAS = (0.1, 0.3, 0.5, 1.0, 2.0)

_CONFIGS = {
    "same_noise": {
        "cpu": SameNoiseConfig(
            profile="cpu",
            models={"UNet-XS s0": digits_model("unet-xs"), "UNet-S s1": digits_model("unet-s", seed=1),
                    "UNet-XS s2": digits_model("unet-xs", seed=2), "UNet-S s3": digits_model("unet-s", seed=3),
                    "UNet-XS s4": digits_model("unet-xs", seed=4), "UNet-S s5": digits_model("unet-s", seed=5)},
            pairs=(("UNet-XS s0", "UNet-S s1"), ("UNet-XS s2", "UNet-S s3"), ("UNet-XS s4", "UNet-S s5")),
            same_arch=("UNet-XS s0", "UNet-XS s2"),
            sampling=Sampling(512), notes="8x8 digits, offline",
        ),
        "gpu": SameNoiseConfig(
            profile="gpu",
            models={"UNet-XS s0": cifar_model("unet-xs"), "UNet-S s1": cifar_model("unet-s", seed=1),
                    "UNet-XS s2": cifar_model("unet-xs", seed=2)},
            pairs=(("UNet-XS s0", "UNet-S s1"),), same_arch=("UNet-XS s0", "UNet-XS s2"),
            sampling=_sscd(2000, batch_size=500), notes=_GPU_NOTES,
        ),
        "paper": SameNoiseConfig(
            profile="paper",
            models={"UNet-M s0": paper_model("unet-m"), "UNet-L s1": paper_model("unet-l", seed=1),
                    "UNet-M s2": paper_model("unet-m", seed=2)},
            pairs=(("UNet-M s0", "UNet-L s1"),), same_arch=("UNet-M s0", "UNet-M s2"),
            sampling=_sscd(10_000, batch_size=500), notes=_PAPER_NOTES,
        ),
    },
    "architectures": {
        "cpu": ZooConfig(
            # the sampler study on the first 256 seeds: its cells are 0 or near 1 for most samplers and steps
            # (Wilson intervals +-0.03 there), and its reference alone is 199 network calls per image
            profile="cpu", models=_CPU_ZOO, sampling=Sampling(512), sampler_model="UNet-XS edm", sampler_seeds=256,
            vaes={"VAE-256": VAEConfig(hidden=256, seed=0, steps=2000), "VAE-512": VAEConfig(hidden=512, seed=1, steps=2000)},
            notes="8x8 digits, offline",
        ),
        "gpu": ZooConfig(
            profile="gpu", models=_GPU_ZOO, sampling=_sscd(1000, batch_size=500), sampler_model="UNet-XS edm",
            vaes={"VAE-A": VAEConfig(dataset="cifar10", hidden=1024, latent=64, steps=4000, seed=0),
                  "VAE-B": VAEConfig(dataset="cifar10", hidden=2048, latent=64, steps=4000, seed=1)},
            pretrained=_PUBLIC_CIFAR10, notes=_GPU_NOTES,
        ),
        "paper": ZooConfig(
            profile="paper", models=_PAPER_ZOO, sampling=_sscd(10_000, batch_size=500), sampler_model="UNet-M edm",
            vaes={"VAE-A": VAEConfig(dataset="cifar10", hidden=1024, latent=64, steps=20_000, seed=0),
                  "VAE-B": VAEConfig(dataset="cifar10", hidden=2048, latent=64, steps=20_000, seed=1)},
            pretrained=_PUBLIC_CIFAR10, notes=_PAPER_NOTES,
        ),
    },
    "regimes": {"cpu": _REGIMES_CPU, "gpu": _REGIMES_GPU, "paper": _REGIMES_PAPER},
    "inverse": {
        "cpu": InverseConfig(
            profile="cpu", models={k: _CPU_ZOO[k] for k in ("UNet-XS edm", "UNet-S edm", "UNet-XS attn", "UNet-XS v",
                                                            "UNet-XS edm s2")},
            tasks={"box inpainting": InverseTask("box-inpainting", dict(top=4, left=0, height=4, width=8)),
                   "random inpainting": InverseTask("random-inpainting", dict(observed=0.3)),
                   "2x super-resolution": InverseTask("super-resolution", dict(factor=2)),
                   "deblurring": InverseTask("deblurring", dict(size=5, width=1.0))},
            sampling=Sampling(256, sampler=_DPS, steps=20), sensitivity_models=("UNet-XS edm", "UNet-XS attn"),
            same_arch=("UNet-XS edm", "UNet-XS edm s2"), step_counts=(5, 10, 20), posterior_seeds=128,
            notes="8x8 digits, offline",
        ),
        "gpu": InverseConfig(
            profile="gpu", models={k: _GPU_ZOO[k] for k in ("UNet-XS edm", "UNet-S edm", "UNet-XS attn", "UNet-XS v",
                                                            "UNet-XS edm s2")},
            tasks=_CIFAR_TASKS, sampling=_sscd(500, sampler=_DPS, steps=50, batch_size=100),
            sensitivity_models=("UNet-XS edm", "UNet-XS attn"), tuning_zetas=_CIFAR_ZETAS, tuning_seeds=64,
            same_arch=("UNet-XS edm", "UNet-XS edm s2"), sensitivity_seeds=128, notes=_GPU_NOTES,
        ),
        "paper": InverseConfig(
            profile="paper",
            models={**{k: _PAPER_ZOO[k] for k in ("UNet-M edm", "UNet-L edm", "UNet-M eps", "UNet-M v")},
                    "UNet-M edm s5": paper_model("unet-m", seed=5)},  # the same architecture, another seed
            # 1,000 held-out images: 896 scored, 104 for choosing zeta
            tasks=_CIFAR_TASKS, sampling=_sscd(896, sampler=_DPS, steps=50, batch_size=100),
            sensitivity_models=("UNet-M edm", "UNet-M eps"), tuning_zetas=_CIFAR_ZETAS, tuning_seeds=104,
            same_arch=("UNet-M edm", "UNet-M edm s5"), sensitivity_seeds=256, notes=_PAPER_NOTES,
        ),
    },
    "explorer": {
        "cpu": ExplorerConfig(
            profile="cpu", models=dict(_CPU_ZOO),
            audit={f"UNet-XS N={n}": _DIGIT_SWEEP.model_configs()[(_XS, n)] for n in (16, 1500)},
            proxy=("UNet-XS edm", "UNet-S edm"), interpolation_pairs=32, notes="8x8 digits, offline",
        ),
        "gpu": ExplorerConfig(
            profile="gpu", models=dict(_GPU_ZOO),
            audit={f"UNet-XS N={n}": _CIFAR_SWEEP.model_configs()[("UNet-XS (0.16M)", n)] for n in (64, 49000)},
            proxy=("UNet-XS edm", "UNet-S edm"), sampling=_sscd(1000, batch_size=250), notes=_GPU_NOTES,
        ),
        "paper": ExplorerConfig(
            profile="paper", models=dict(_PAPER_ZOO),
            audit={f"UNet-XS N={n}": _PAPER_CIFAR_SWEEP.model_configs()[("UNet-XS (0.16M)", n)] for n in (64, 49000)},
            proxy=("UNet-M edm", "UNet-L edm"), sampling=_sscd(2000, batch_size=250), notes=_PAPER_NOTES,
        ),
    },
    "fine_tuning": {
        "cpu": FineTuneConfig(profile="cpu", base=_CPU_ZOO["UNet-XS edm"], target=(5, 6, 7, 8, 9), steps=400,
                              lr=1e-3, lora_lr=3e-3, ranks=(1, 4, 16), snapshots=(25, 50, 100, 200),
                              notes="8x8 digits, offline"),
        "gpu": FineTuneConfig(profile="gpu", base=_GPU_ZOO["UNet-XS edm"], target=(3, 5), steps=1000, lr=2e-4,
                              lora_lr=1e-3, ranks=(4, 16, 64), snapshots=(50, 100, 250, 500),
                              sampling=_sscd(1000, batch_size=250), notes="CIFAR-10 cats and dogs; " + _GPU_NOTES),
        "paper": FineTuneConfig(profile="paper", base=_PAPER_ZOO["UNet-M edm"], target=(3, 5), steps=4000, lr=2e-4,
                                lora_lr=1e-3, ranks=(4, 16, 64), snapshots=(250, 500, 1000, 2000),
                                sampling=_sscd(1000, batch_size=250), notes="CIFAR-10 cats and dogs; " + _PAPER_NOTES),
    },
    "conditional": {
        "cpu": ConditionalConfig(
            profile="cpu",
            **_twins(_CPU_ZOO, ("UNet-XS edm", "UNet-XS attn", "UNet-XS v")),
            regime_sweep=_DIGIT_SWEEP, regime_n=(64, 128), regime_seeds_count=250, guidance_scales=(0.0, 1.0, 2.0, 4.0),
            notes="8x8 digits, offline",
        ),
        "gpu": ConditionalConfig(
            profile="gpu",
            **_twins(_GPU_ZOO, ("UNet-XS edm", "UNet-XS attn", "UNet-XS v")),
            regime_sweep=_CIFAR_SWEEP, regime_n=(512,), sampling=_sscd(1000, batch_size=500),
            text_models=_TEXT_MODELS, prompts=_PROMPTS, text_seeds=10,
            notes="Stable Diffusion (text-to-image) too; " + _GPU_NOTES,
        ),
        "paper": ConditionalConfig(
            profile="paper",
            **_twins(_PAPER_ZOO, ("UNet-M edm", "UNet-M eps", "U-ViT-M edm")),
            regime_sweep=_PAPER_CIFAR_SWEEP, regime_n=(1024,), sampling=_sscd(2000, batch_size=500),
            text_models=_TEXT_MODELS, prompts=_PROMPTS, text_seeds=50,
            notes="Stable Diffusion (text-to-image) too; " + _PAPER_NOTES,
        ),
    },
    "agreement": {
        "cpu": AgreementConfig(profile="cpu", regimes=_REGIMES_CPU, pair_n=(16, 128, 750),
                               leaderboard_n=(16, 128, 1500), equivariant_n=(16, 128), fixed_patch_n=(16,),
                               onset_n=(24, 32, 48),
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

#: every experiment the book configures, in chapter order (the keys :func:`get_config` takes)
EXPERIMENTS = tuple(_CONFIGS)


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
    "checkpoint_every": lambda v: 2, "hidden": lambda v: 64, "n_seeds": lambda v: 12, "control_seeds": lambda v: 8, "grid_seeds": lambda v: min(v, 4),
    "gallery_seeds": lambda v: min(v, 4), "sensitivity_seeds": lambda v: 8, "trajectory_seeds": lambda v: 4,
    "explorer_seeds": lambda v: 4, "interpolation_pairs": lambda v: 2, "frames": lambda v: 3,
    "reference_steps": lambda v: 6, "step_counts": lambda v: v[:2], "text_seeds": lambda v: 2, "text_steps": lambda v: 3,
    "snapshots": lambda v: tuple(range(1, min(len(v), 5) + 1)), "patch_sizes": lambda v: v[:3],
    "smoothing": lambda v: v[:2], "calibration_seeds": lambda v: 4, "tuning_seeds": lambda v: 4,
    "tuning_zetas": lambda v: v[:2], "posterior_samples": lambda v: 2,
}
_SMOKE_SAMPLING = {"batch_size": 8, "steps": 3}  # a chapter's Sampling: 12 seeds in two batches, 3 sampler steps


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
        elif f.name in ("regime_n", "pair_n", "leaderboard_n", "equivariant_n", "fixed_patch_n", "onset_n"):
            changes[f.name] = tuple(_smoke_n(n, dataset) for n in v)
        elif isinstance(value, SweepConfig) and f.name == "sizes":
            changes[f.name] = {label: _SMOKE_BACKBONES.get(b, b) for label, b in v.items()}
        elif isinstance(value, SweepConfig) and f.name == "replicates":
            changes[f.name] = tuple((_smoke_n(n, value.base.dataset), label, seed) for n, label, seed in v)
        elif f.name == "steps" and isinstance(value, (TrainConfig, VAEConfig, FineTuneConfig)):
            changes[f.name] = 6  # training steps
        elif isinstance(value, Sampling) and f.name in _SMOKE_SAMPLING:
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

        changes["text_models"] = {name: str(text_model_dir(i)) for i, name in enumerate(value.text_models)}
    if isinstance(value, ZooConfig) and value.pretrained:

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
