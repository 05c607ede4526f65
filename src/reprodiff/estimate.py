"""What a chapter costs on a GPU this machine does not have: counted FLOPs and operators, two assumptions.

:func:`step_cost` measures one training step of a model on the CPU (FLOPs and dispatched operators);
:func:`chapter_time_estimate` turns the steps, samples and descriptor features of a chapter into
minutes, and :func:`sweep_time_estimate` breaks one regime sweep down by model size. Both price a
sample with one formula, :func:`sample_seconds`.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

from .denoisers import denoising_loss, draw_noise
from .profiles import get_config, profile_models
from .sampling import network_calls
from .training import TrainConfig, build_model

__all__ = ["step_cost", "sample_seconds", "sweep_time_estimate", "chapter_time_estimate", "SIDE_STUDIES", "SSCD_FLOPS"]


def step_cost(cfg: TrainConfig, shape: tuple[int, int, int], num_classes: int = 10) -> tuple[float, int]:
    """Measured cost of one training step of ``cfg``'s model: ``(FLOPs, aten operator calls)``.

    Runs one forward + backward of the loss on a batch of 2 on CPU, counting matmul/convolution
    FLOPs with torch's ``FlopCounterMode`` (scaled to ``cfg.batch_size``) and every dispatched
    operator (each is at least one GPU kernel launch). Used to estimate GPU run times on hardware
    this machine does not have: time per step ~ max(FLOPs / sustained FLOP/s, calls x launch cost).
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    class _Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            _Count.calls += 1
            return func(*args, **(kwargs or {}))

    model = build_model(cfg, shape, num_classes)
    y = torch.zeros(2, *shape)
    cond = torch.zeros(2, dtype=torch.int64) if cfg.conditional else None
    sigma, noise = draw_noise(model.objective, y.shape, torch.Generator().manual_seed(0))
    flops = FlopCounterMode(display=False)
    with flops, _Count():
        denoising_loss(model, model.objective, y, sigma, noise, cond).backward()
    return flops.get_total_flops() / 2 * cfg.batch_size, _Count.calls


def sample_seconds(flops: float, ops: int, batch_size: int, *, flops_per_s: float = 4e12,
                   launch_s: float = 10e-6) -> float:
    """Seconds of one network call on one image, from one training step's ``(flops, ops)`` at
    ``batch_size`` (:func:`step_cost`): a forward pass is taken as a third of a training step, and
    an operator's ``launch_s`` is shared by a sampling batch of 256 images when the model is too small
    to fill the GPU; the larger of the two wins."""
    return max(flops / 3 / batch_size / flops_per_s, ops / 3 * launch_s / 256)


def sweep_time_estimate(sweep, shape: tuple[int, int, int], n_seeds: int, *, flops_per_s: float = 4e12,
                        launch_s: float = 10e-6, sampler_calls: int = 35,
                        overhead_min: float = 2.0) -> tuple[float, list[str]]:
    """Estimated minutes to train and sample a :class:`reprodiff.configs.SweepConfig` on a GPU, by model size.

    Counts the FLOPs and operators of one training step of each model on the CPU (:func:`step_cost`)
    and converts them with two stated assumptions: a sustained ``flops_per_s`` (default 4 TFLOP/s,
    half a T4's float32 peak) and ``launch_s`` per operator when a model is too small to fill the
    GPU. Sampling: ``n_seeds`` x ``sampler_calls`` network calls per model, each priced by
    :func:`sample_seconds` (as in :func:`chapter_time_estimate`). Returns ``(minutes, lines)``.
    """
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
    one_call = sum(sample_seconds(*step_cost(c, shape), c.batch_size, flops_per_s=flops_per_s,
                                  launch_s=launch_s) for c in configs.values())
    sampling = one_call * sampler_calls * n_seeds / 60
    lines.append(f"sampling {n_seeds:,} seeds x {sampler_calls} network calls for all {len(configs)} models: "
                 f"~{sampling:.1f} min")
    total += sampling + overhead_min
    lines.append(f"estimated total: ~{total:.0f} min (+{overhead_min:g} min for downloads and descriptor features)")
    return total, lines


#: FLOPs of one SSCD forward pass (a ResNet-50 at 320x320: ~8.2 GFLOP at 224 px, times (320/224)^2); an assumption
SSCD_FLOPS = 16.7e9

_SHAPES = {"cifar10": (3, 32, 32), "digits": (1, 8, 8), "molrg": (1, 8, 8)}


@functools.lru_cache(maxsize=None)
def _step_cost(backbone: str, objective: str, conditional: bool, batch_size: int, shape: tuple[int, int, int]):
    return step_cost(TrainConfig(backbone=backbone, objective=objective, conditional=conditional,
                                 batch_size=batch_size), shape)


#: what one side study costs: ``(label, single-image network passes, images the descriptor embeds)``
SideStudy = tuple[str, float, int]


def _zoo_side(cfg, steps: int, calls: int, n_conditional: int) -> list[SideStudy]:
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
    tuning = 2 * cfg.tuning_seeds * len(cfg.tuning_zetas) * len(cfg.tasks)  # two models, every task
    extra = (cfg.posterior_samples - 2) * (cfg.posterior_seeds or cfg.n_seeds) * len(cfg.tasks)  # its other noises
    return [("DPS sensitivity", 2 * cfg.sensitivity_seeds * grid, images),
            ("zeta tuning", tuning * 3 * cfg.steps, tuning),
            ("posterior mean estimate", max(extra, 0) * 3 * cfg.steps, 0)]  # scored by PSNR, not SSCD


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

    Training: every model the chapter loads (:func:`reprodiff.profiles.profile_models`), each step
    costed by :func:`step_cost` (counted FLOPs and operators) and converted with
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
    cfg = get_config(experiment, profile)
    models = {m.hash: m for name, m in profile_models(profile).items() if name.startswith(f"{experiment}: ")}
    sampling = cfg.sampling
    n_seeds = sampling.n_seeds
    if experiment == "inverse":  # DPS: one DPM-Solver++(2M) step per call, with a gradient, on every task
        calls = 3 * sampling.steps * len(cfg.tasks)
    else:
        calls = network_calls(sampling.sampler, sampling.steps)
    train_s = sample_s = per_image_s = 0.0
    for m in models.values():
        flops, ops = _step_cost(m.backbone, m.objective, m.conditional, m.batch_size, _SHAPES[m.dataset])
        train_s += max(flops / flops_per_s, ops * launch_s) * m.steps
        one = sample_seconds(flops, ops, m.batch_size, flops_per_s=flops_per_s, launch_s=launch_s)
        sample_s += one * n_seeds * calls
        per_image_s += one / max(len(models), 1)
    n_conditional = sum(m.conditional for m in models.values())
    sides = SIDE_STUDIES[experiment](cfg, sampling.steps, calls, n_conditional) if experiment in SIDE_STUDIES else []
    side_s = sum(passes for _, passes, _ in sides) * per_image_s
    sscd = sampling.descriptor == "sscd"
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