"""Explicit noise and deterministic samplers of the probability-flow ODE.

Noise is data: :func:`noise_for_seeds` draws sample k from its own generator seeded with k (on CPU),
so sample k is the same whatever the batch size, order or device. Samplers take that noise as an
argument and never draw randomness themselves; the one stochastic sampler takes its per-step noise
explicitly too. All samplers integrate ``dx/dsigma = (x - D(x, sigma)) / sigma`` (EDM's ODE) on a
shared sigma grid, keep the state in float64 (as the paper's sampler does) and call the denoiser in
the model's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import torch

from .denoisers import Denoiser

__all__ = [
    "Samples",
    "noise_for_seeds",
    "karras_sigmas",
    "SAMPLERS",
    "sample_euler",
    "sample_heun",
    "sample_ddim",
    "sample_dpmpp_2m",
    "sample_euler_ancestral",
    "generate",
]


@dataclass
class Samples:
    """Generated images with the seed ids of their initial noise (pairing is by seed, never by order).

    ``images``: ``(B, C, H, W)`` float32, nominally in [-1, 1]; ``seeds``: ``(B,)`` int64;
    ``labels``: optional ``(B,)`` class labels; ``name``: which model/sampler made them.
    """

    images: torch.Tensor
    seeds: torch.Tensor
    name: str = ""
    labels: torch.Tensor | None = None
    sampler: str = ""
    #: descriptor name -> features in sorted-seed order (filled by reprodiff.metrics)
    features: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.seeds = torch.as_tensor(self.seeds, dtype=torch.int64)
        if self.images.shape[0] != self.seeds.shape[0]:
            raise ValueError("one seed per image is required")
        if torch.unique(self.seeds).numel() != self.seeds.numel():
            raise ValueError("seed ids must be unique within a set of samples")

    def __len__(self) -> int:
        return self.seeds.shape[0]

    def by_seed(self, seeds: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Images for the requested seed ids, in that order (KeyError if one is missing)."""
        index = {int(s): i for i, s in enumerate(self.seeds)}
        try:
            return self.images[[index[int(s)] for s in seeds]]
        except KeyError as exc:
            raise KeyError(f"seed {exc.args[0]} not in samples {self.name!r}") from None


def noise_for_seeds(seeds: Iterable[int], shape: Sequence[int], dtype: torch.dtype = torch.float32,
                    stream: int = 0) -> torch.Tensor:
    """Standard normal noise, one independent generator per seed: ``(len(seeds), *shape)`` on CPU.

    ``stream`` selects an independent noise stream for the same seeds (e.g. the per-step noise of a
    stochastic sampler), so initial noise and injected noise never coincide.
    """
    seeds = [int(s) for s in seeds]
    out = torch.empty((len(seeds), *shape), dtype=dtype)
    for i, s in enumerate(seeds):
        if s < 0:
            raise ValueError(f"seeds must be non-negative, got {s}")
        g = torch.Generator().manual_seed(s + stream * 1_000_003_489)
        out[i] = torch.randn(tuple(shape), generator=g, dtype=dtype)
    return out


def karras_sigmas(steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """EDM's time grid: ``steps`` sigmas from ``sigma_max`` to ``sigma_min`` (rho-spaced) plus a final 0.

    Returns a float64 tensor of shape ``(steps + 1,)``.
    """
    if steps < 1:
        raise ValueError("steps must be >= 1")
    i = torch.arange(steps, dtype=torch.float64)
    inv = 1.0 / rho
    ramp = i / max(steps - 1, 1)
    s = (sigma_max**inv + ramp * (sigma_min**inv - sigma_max**inv)) ** rho
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)])


def _call(denoiser: Denoiser, x: torch.Tensor, sigma: torch.Tensor, cond, dtype) -> torch.Tensor:
    return denoiser(x.to(dtype), sigma.to(dtype), cond).to(torch.float64)


def _prepare(noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    return noise.to(torch.float64) * sigmas[0]


def sample_euler(denoiser: Denoiser, noise: torch.Tensor, sigmas: torch.Tensor, cond=None,
                 model_dtype: torch.dtype = torch.float32, trajectory: list | None = None) -> torch.Tensor:
    """First-order Euler steps of the probability-flow ODE (one network call per step).

    Args:
        noise: ``(B, C, H, W)`` unit-variance initial noise (scaled here by ``sigmas[0]``).
        sigmas: decreasing grid ending in 0, e.g. :func:`karras_sigmas`.
        trajectory: if a list is given, ``(sigma, x, x0_hat)`` for every step is appended to it.

    Returns: ``(B, C, H, W)`` float64 final sample.
    """
    x = _prepare(noise, sigmas)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x0 = _call(denoiser, x, s, cond, model_dtype)
        if trajectory is not None:
            trajectory.append((float(s), x.clone(), x0.clone()))
        x = x0 + (s_next / s) * (x - x0)  # = x + (s_next - s) * (x - x0) / s
    return x


def sample_ddim(denoiser: Denoiser, noise: torch.Tensor, sigmas: torch.Tensor, cond=None,
                model_dtype: torch.dtype = torch.float32, trajectory: list | None = None) -> torch.Tensor:
    """DDIM with eta = 0 (Song et al. 2021), written in its own variance-preserving coordinates.

    ``x_t = alpha x0 + sqrt(1 - alpha^2) eps`` with ``alpha = 1/sqrt(1 + sigma^2)``. Karras et al.
    (2022) showed this update is exactly an Euler step of the ODE in ``x / alpha``; we keep the
    DDIM form to make that equivalence a tested fact rather than an assumption.
    """
    x = _prepare(noise, sigmas)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x0 = _call(denoiser, x, s, cond, model_dtype)
        if trajectory is not None:
            trajectory.append((float(s), x.clone(), x0.clone()))
        a, a_next = 1 / (1 + s**2).sqrt(), 1 / (1 + s_next**2).sqrt()
        x_t = a * x
        eps = (x_t - a * x0) / (1 - a**2).sqrt()
        x = (a_next * x0 + (1 - a_next**2).sqrt() * eps) / a_next
    return x


def sample_heun(denoiser: Denoiser, noise: torch.Tensor, sigmas: torch.Tensor, cond=None,
                model_dtype: torch.dtype = torch.float32, trajectory: list | None = None) -> torch.Tensor:
    """EDM's deterministic 2nd-order Heun sampler (Karras et al. 2022, Algorithm 1 without churn).

    With the default 18-step grid it makes 35 network calls, the paper's setting.
    """
    x = _prepare(noise, sigmas)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x0 = _call(denoiser, x, s, cond, model_dtype)
        if trajectory is not None:
            trajectory.append((float(s), x.clone(), x0.clone()))
        d = (x - x0) / s
        x_euler = x + (s_next - s) * d
        if s_next > 0:
            d_next = (x_euler - _call(denoiser, x_euler, s_next, cond, model_dtype)) / s_next
            x = x + (s_next - s) * 0.5 * (d + d_next)
        else:
            x = x_euler
    return x


def sample_dpmpp_2m(denoiser: Denoiser, noise: torch.Tensor, sigmas: torch.Tensor, cond=None,
                    model_dtype: torch.dtype = torch.float32, trajectory: list | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022): multistep 2nd order in ``lambda = -log sigma``, data prediction.

    One network call per step; the previous step's ``x0_hat`` supplies the second-order correction.
    """
    x = _prepare(noise, sigmas)
    prev_x0, prev_h = None, None
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x0 = _call(denoiser, x, s, cond, model_dtype)
        if trajectory is not None:
            trajectory.append((float(s), x.clone(), x0.clone()))
        if s_next == 0:
            x = x0
            break
        h = (s / s_next).log()  # lambda_next - lambda
        if prev_x0 is None:
            d = x0
        else:
            r = prev_h / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0
        x = (s_next / s) * x - torch.expm1(-h) * d
        prev_x0, prev_h = x0, h
    return x


def sample_euler_ancestral(denoiser: Denoiser, noise: torch.Tensor, sigmas: torch.Tensor, cond=None,
                           model_dtype: torch.dtype = torch.float32, trajectory: list | None = None,
                           step_noise: torch.Tensor | None = None) -> torch.Tensor:
    """A *stochastic* control: ancestral Euler steps that inject fresh noise at every step.

    Args:
        step_noise: ``(steps, B, C, H, W)`` unit noise injected at each step (required: the sampler
            draws nothing itself). Different ``step_noise`` for the same initial ``noise`` gives a
            different image, which is what breaks reproducibility.
    """
    if step_noise is None or step_noise.shape[:2] != (len(sigmas) - 1, noise.shape[0]):
        raise ValueError("sample_euler_ancestral needs step_noise of shape (steps, B, ...)")
    x = _prepare(noise, sigmas)
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        x0 = _call(denoiser, x, s, cond, model_dtype)
        if trajectory is not None:
            trajectory.append((float(s), x.clone(), x0.clone()))
        s_up = torch.minimum(s_next, (s_next**2 * (s**2 - s_next**2) / s**2).sqrt())
        s_down = (s_next**2 - s_up**2).sqrt()
        x = x0 + (s_down / s) * (x - x0) + s_up * step_noise[i].to(torch.float64)
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "ddim": sample_ddim,
    "heun": sample_heun,
    "dpmpp-2m": sample_dpmpp_2m,
    "euler-ancestral": sample_euler_ancestral,
}


def network_calls(sampler: str, steps: int) -> int:
    """Number of denoiser evaluations a sampler makes on a grid of ``steps`` sigmas (plus the final 0)."""
    return 2 * steps - 1 if sampler == "heun" else steps


@torch.no_grad()
def generate(denoiser: Denoiser, seeds: Sequence[int] | torch.Tensor, shape: Sequence[int], *,
             sampler: str = "heun", steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0,
             labels: torch.Tensor | None = None, batch_size: int = 256, noise_stream: int = 0,
             step_noise_stream: int | None = None, device: str | torch.device = "cpu",
             name: str = "", progress: bool = False) -> Samples:
    """Sample one image per seed with a given sampler: the book's everyday entry point.

    Args:
        seeds: seed ids; sample k starts from ``noise_for_seeds([k], shape)``.
        shape: ``(C, H, W)``.
        labels: ``(len(seeds),)`` class labels for conditional models.
        step_noise_stream: for ``euler-ancestral`` only, which noise stream supplies the injected
            noise (two models given different streams see different fresh noise).

    Returns: :class:`Samples` with float32 images clamped to [-1, 1].
    """
    from tqdm.auto import tqdm

    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    stochastic = sampler == "euler-ancestral"
    if stochastic and step_noise_stream is None:
        raise ValueError("the stochastic sampler needs step_noise_stream (its injected noise is explicit)")
    seeds = torch.as_tensor(list(map(int, seeds)), dtype=torch.int64)
    if labels is not None and labels.shape != seeds.shape:
        raise ValueError("labels must have one entry per seed")
    sigmas = karras_sigmas(steps, sigma_min, sigma_max).to(device)
    fn = SAMPLERS[sampler]
    model = denoiser.eval() if hasattr(denoiser, "eval") else denoiser
    outs = []
    starts = range(0, len(seeds), batch_size)
    for start in tqdm(starts, desc=f"sampling {name or sampler}", disable=not progress, leave=False):
        chunk = seeds[start:start + batch_size]
        noise = noise_for_seeds(chunk.tolist(), shape, stream=noise_stream).to(device)
        cond = None if labels is None else labels[start:start + batch_size].to(device)
        kwargs = {}
        if stochastic:
            per_seed = noise_for_seeds(chunk.tolist(), (steps, *shape), stream=1 + step_noise_stream)
            kwargs["step_noise"] = per_seed.transpose(0, 1).to(device)
        with flush_denormal():
            outs.append(fn(model, noise, sigmas, cond, **kwargs).float().clamp(-1, 1).cpu())
    return Samples(torch.cat(outs), seeds, name=name, labels=labels, sampler=f"{sampler}-{steps}")


class flush_denormal:
    """Flush denormal floats to zero inside the block (10-40x slowdowns on CPU otherwise).

    It acts on the calling thread only, which is why CPU training runs single-threaded
    (see :func:`reprodiff.training.cpu_threads`).
    """

    def __enter__(self):
        torch.set_flush_denormal(True)
        return self

    def __exit__(self, *exc):
        # torch cannot report the previous state; restoring 'off' is what a fresh process has
        torch.set_flush_denormal(False)
        return False

